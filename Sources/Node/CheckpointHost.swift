import Bitcoin
import Checkpoint
import Consensus
import Foundation
import Ledger
import Logging
import NodeCrypto
import Synchronization

/// Runs the checkpoint protocol for the node (issue 8, docs/architecture.md §Checkpoints):
/// feeds commits and Bitcoin observations to the pure `CheckpointInitiator` and
/// `CheckpointFollower`, judges requests with `CheckpointRules` against the node's own
/// committed chain, and returns what to send. Sockets and esplora stay in `NodeRuntime`.
///
/// Messages travel as gossip (topic 4) in an envelope signed by the sender's node key,
/// so a bad request is charged to the validator that made it, not to the peers that
/// relayed it: `u8 4 || sender (32) || Ed25519 signature (64) || CheckpointMessage`,
/// the signature over "sidenode/checkpoint/v1" || chain_id || message.
struct CheckpointHost {
    static let gossipTopic: UInt8 = 4
    static let domain = Array("sidenode/checkpoint/v1".utf8)
    /// Seconds a validator waits to commit a request's block before refusing it.
    static let waitLimit: Double = 20

    enum Action {
        /// A gossip payload (topic byte included) for every node.
        case gossip([UInt8])
        /// Fully signed: broadcast it through esplora. `sinceCommit`: seconds since its
        /// block committed here, if known (the commit → broadcast figure).
        case broadcast(BitcoinTransaction, CheckpointPayload, sinceCommit: Double?)
        /// A validator sent a request this node refused.
        case penalize(ValidatorID, String)
    }

    let settings: CheckpointInitiator.Settings
    /// Bitcoin blocks deep a checkpoint must be before the coin moves on (config
    /// `bitcoin.confirmations`: 1 on regtest, 3 elsewhere by default).
    var depth = 1
    private let chainID: String
    private let identity: Ed25519.PrivateKey
    private let bitcoinKey: Secp256k1.PrivateKey
    private let logger: Logger
    private(set) var follower: CheckpointFollower
    private(set) var initiator: CheckpointInitiator
    /// The rate from esplora's estimates (refreshed by the runtime); the operator's override wins.
    var estimatedFeeRate: Double?
    var feeRateOverride: Double?
    private(set) var bitcoinTip: Int?
    /// Confirmed outputs paying the current coin's script (not the coin itself), by
    /// outpoint: the next checkpoint sweeps them in (`p2pnode checkpoint fund --node`).
    var topUps: [OutPoint: UInt64] = [:]
    /// Requests seen, by txid: who sent it and the block its QC commits (for records).
    private var requests: [String: (initiator: String, block: Hash32, at: Double)] = [:]
    /// (sender, txid) of requests refused with blame, and when.
    private var blamed: [String: Double] = [:]
    /// Others' requests this node signed, gathering the flooded co-signatures: a fully
    /// signed checkpoint its initiator has not put in the mempool `bystanderDelay` seconds
    /// later is broadcast from here (a withholding initiator cannot stall checkpoints).
    private var watching:
        [(
            sender: ValidatorID, collector: CheckpointCollector,
            finished: (BitcoinTransaction, CheckpointPayload, Double)?
        )] =
            []
    /// Seconds a fully signed checkpoint may stay out of the mempool before a bystander
    /// broadcasts it: two Bitcoin polls (the runtime sets it), so that it is rarely sent twice.
    var bystanderDelay: Double = 10
    /// Requests this validator could not judge yet (its node had not committed the block,
    /// or does not follow the coin it spends yet), oldest first.
    private var waiting = WaitingRequests<ValidatorID>(perSender: 2)
    /// When recent heights committed here, for the commit → broadcast figure.
    private var commitTimes: [UInt64: Double] = [:]
    private var coins: [Epoch: CheckpointCoin] = [:]
    private var lastRejection: String?

    var fault: CheckpointFault?

    init(
        genesis: Genesis, follower: CheckpointFollower, identity: Ed25519.PrivateKey, bitcoinKey: Secp256k1.PrivateKey,
        logger: Logger
    ) {
        let p = genesis.checkpoint
        settings = CheckpointInitiator.Settings(
            intervalBlocks: p.interval_blocks, timeout: p.timeout_seconds,
            policy: CheckpointPolicy(
                minFeeRate: Double(p.fee_rate_min), maxFeeRate: Double(p.fee_rate_max), feeTolerance: p.feeTolerance,
                bumpAfterBlocks: p.bumpAfterBlocks))
        chainID = genesis.chain_id
        self.follower = follower
        self.identity = identity
        self.bitcoinKey = bitcoinKey
        self.logger = logger
        initiator = CheckpointInitiator(settings: settings)
        if let last = follower.last {
            // The next one is due `interval_blocks` after the height it anchored.
            initiator.seenOnBitcoin(
                height: last.height ?? 0, epoch: last.epoch, round: last.round, bitcoinHeight: last.bitcoinHeight ?? 0)
        }
    }

    /// An epoch's coin, from its validators' Bitcoin keys (nil if the epoch is unknown here).
    static func coin(epoch: Epoch, chain: ConsensusHost) -> CheckpointCoin? {
        guard let system = chain.system(epoch: epoch) else { return nil }
        return try? chain.genesis.checkpointCoin(validators: system.validators.map { ($0.bitcoinKey, $0.power) })
    }

    private mutating func coin(epoch: Epoch, chain: ConsensusHost) -> CheckpointCoin? {
        if let coin = coins[epoch] { return coin }
        let coin = Self.coin(epoch: epoch, chain: chain)
        // A cache of recent epochs' coins (epochs can be short): old ones are recomputed.
        if coins.count >= 64 {
            let following = follower.coinEpoch
            coins = coins.filter { $0.key + 8 >= epoch || $0.key == following }
        }
        coins[epoch] = coin
        return coin
    }

    var feeRate: Double {
        min(
            max(feeRateOverride ?? estimatedFeeRate ?? settings.policy.minFeeRate, settings.policy.minFeeRate),
            settings.policy.maxFeeRate)
    }

    // MARK: Consensus and Bitcoin events

    /// Commits taken from the consensus host.
    mutating func committed(_ events: [(height: UInt64, qc: QuorumCert, endsEpoch: Bool, at: Double)], now: Double) {
        for event in events {
            commitTimes[event.height] = event.at
            initiator.committed(height: event.height, qc: event.qc, endsEpoch: event.endsEpoch, now: now)
        }
        if commitTimes.count > 2_000 {
            let keep = commitTimes.keys.sorted().suffix(1_000)
            commitTimes = commitTimes.filter { keep.contains($0.key) }
        }
    }

    mutating func bitcoinTip(_ height: Int) { bitcoinTip = height }

    /// A transaction spending the followed coin, from esplora; `confirmedAt` its block height.
    /// Returns whether the coin moved (the caller then asks about the new coin at once).
    mutating func spendSeen(
        _ tx: BitcoinTransaction, confirmedAt: Int?, blockHash: String?, prevouts: [OutPoint: TxOut] = [:],
        chain: ConsensusHost, now: Double
    ) -> Bool {
        let txid = tx.displayTxid
        let hadAlarm = follower.alarm != nil
        let outcome = follower.spendSeen(
            tx, confirmedAt: confirmedAt, coinForEpoch: { Self.coin(epoch: $0, chain: chain) },
            initiator: requests[txid]?.initiator, bitcoinTip: bitcoinTip, blockHash: blockHash, depth: depth,
            prevouts: prevouts)
        if !hadAlarm, let alarm = follower.alarm {
            logger.critical(
                "checkpoint coin spent against the rules: checkpointing stopped; see docs/checkpoints.md \"The coin was spent against the rules\"",
                metadata: ["alarm": "\(alarm)"])
        }
        switch outcome {
        case .adopted(let record):
            // k keys of the coin certified a state this chain never committed for that QC.
            if let own = chain.committed(anchoring: record.epoch, round: record.round),
                let state = own.qc.commitInfo.commitStateID, state.bytes.hex != record.commitStateID
            {
                follower.raiseAlarm(
                    "\(record.txid) anchors state \(record.commitStateID.prefix(16)) for epoch \(record.epoch) round \(record.round); this chain committed \(state.bytes.hex.prefix(16))"
                )
                logger.critical(
                    "checkpoint on Bitcoin contradicts this node's chain: checkpointing stopped; see docs/checkpoints.md",
                    metadata: ["alarm": "\(follower.alarm ?? "")"])
            }
            let anchored = anchoredHeight(record, chain: chain)
            initiator.seenOnBitcoin(
                height: anchored ?? 0, epoch: record.epoch, round: record.round, bitcoinHeight: confirmedAt ?? 0)
            follower.anchorLast(at: initiator.checkpointedHeight)
            logger.notice(
                "checkpoint confirmed on Bitcoin",
                metadata: [
                    "txid": "\(record.txid)", "epoch": "\(record.epoch)", "round": "\(record.round)",
                    "commit_state_id": "\(record.commitStateID.prefix(16))", "bitcoin_height": "\(confirmedAt ?? 0)",
                    "signatures": "\(record.signatures)", "fee": "\(record.fee)",
                ])
            requests = requests.filter { now - $0.value.at < 3_600 }
            return true
        case .inMempool:
            initiator.requestSeen(now: now)  // an attempt in flight: no handoff while it waits for a block
            return false
        case .rejected(let reason):
            // Said once: the coin stays where it is and the same spend is seen at every poll.
            if reason != lastRejection {
                lastRejection = reason
                logger.warning(
                    "a spend of the checkpoint coin is not a valid checkpoint", metadata: ["reason": "\(reason)"])
            }
            return false
        case .notYet(let reason):
            logger.debug("checkpoint spend not judgeable yet", metadata: ["reason": "\(reason)"])
            return false
        }
    }

    /// The consensus height whose QC a checkpoint record anchors: found through the
    /// request's QC if this node saw it, else through the epoch records (an epoch's end).
    private func anchoredHeight(_ record: CheckpointFollower.Record, chain: ConsensusHost) -> UInt64? {
        if let end = chain.end(ofEpoch: record.epoch), end.qc.commitInfo.round == record.round { return end.height }
        if let request = requests[record.txid], let height = chain.committed(blockID: request.block)?.height {
            return height
        }
        // Not seen asked for here (this node was down, or restarted): its own chain says.
        return chain.committed(anchoring: record.epoch, round: record.round)?.height
    }

    /// The coin is unspent (a mempool spend was replaced or dropped).
    mutating func coinUnspent() { follower.unspent() }

    /// The last checkpoint is no longer in Bitcoin's best chain (a reorg): the coin goes
    /// back to the one it spent, and what is due is worked out again from there.
    mutating func lastOrphaned(now: Double) {
        guard let record = follower.orphaned() else { return }
        logger.warning(
            "checkpoint orphaned by a Bitcoin reorg: following the coin it spent again",
            metadata: ["txid": "\(record.txid)", "epoch": "\(record.epoch)", "round": "\(record.round)"])
        initiator = CheckpointInitiator(settings: settings)
        if let last = follower.last {
            initiator.seenOnBitcoin(
                height: last.height ?? 0, epoch: last.epoch, round: last.round, bitcoinHeight: last.bitcoinHeight ?? 0)
        }
    }

    /// How many more checkpoints the coin can pay for at the current fee rate (each pays
    /// the fee out of the coin; the coin must stay above the dust limit).
    func checkpointsLeft(chain: ConsensusHost) -> Int? {
        guard let current = coins[follower.coinEpoch] ?? Self.coin(epoch: follower.coinEpoch, chain: chain) else {
            return nil
        }
        let fee = feeRate * Double(CheckpointTransaction.virtualSize(current: current, next: current))
        let spendable = Double(follower.coinValue) - Double(CheckpointTransaction.dustLimit)
        return max(0, Int((spendable / max(fee, 1)).rounded(.down)))
    }

    /// The last checkpoint was mined again in another block after a reorg.
    mutating func reconfirmed(height: Int, hash: String) { follower.reconfirmedLast(height: height, hash: hash) }

    /// Node ids of the coin's key holders: the validators of the epoch whose set locks it
    /// (their checkpoint messages are heard even once they have left the set).
    func coinHolders(chain: ConsensusHost) -> Set<ValidatorID> {
        Set(chain.system(epoch: follower.coinEpoch)?.validators.map(\.id) ?? [])
    }

    /// Whether checkpointing is stopped here: the coin was spent against the rules.
    var halted: Bool { follower.alarm != nil }

    // MARK: Protocol steps

    /// Called every few hundred milliseconds: lead a due checkpoint, and judge requests
    /// that were waiting for this node to commit their block.
    mutating func tick(now: Double, chain: ConsensusHost) -> [Action] {
        var out: [Action] = []
        // An epoch ended after the coin's epoch began and its checkpoint is not on Bitcoin
        // (after a restart, or a node that caught up past it): it goes first.
        let epoch = chain.core.config.epoch
        if follower.coinEpoch < epoch, let end = chain.end(ofEpoch: epoch - 1) {
            initiator.epochEndPending(height: end.height, qc: end.qc)
        }
        for item in waiting.takeAll() {
            out += judge(item.request, from: item.sender, since: item.since, now: now, chain: chain).0
        }
        // Fully signed checkpoints of others that are still not in the mempool: broadcast.
        watching.removeAll { $0.collector.request.psbt.unsignedTx.inputs.first?.previousOutput != follower.coin }
        for i in watching.indices {
            guard let (tx, payload, at) = watching[i].finished, now - at >= bystanderDelay else { continue }
            watching[i].finished = nil
            if follower.unconfirmed?.txid == tx.displayTxid { continue }
            logger.notice(
                "checkpoint: fully signed but not in the mempool after \(Int(bystanderDelay)) s: broadcasting it here",
                metadata: ["txid": "\(tx.displayTxid)"])
            out.append(.broadcast(tx, payload, sinceCommit: nil))
        }
        // The wrong-state-id fault plays a Byzantine validator: whenever it leads a round
        // and one is due, it asks, whatever attempts it has seen.
        if fault == .wrongStateID { initiator.requestSeen(now: -.greatestFiniteMagnitude) }
        guard chain.leadsCurrentRound, !halted, let bitcoinTip else { return out }
        let stuck = stuckCheckpoint(chain: chain, bitcoinHeight: bitcoinTip)
        guard let target = initiator.nextTarget(stuck: stuck),
            let view = view(for: target, chain: chain, bitcoinHeight: bitcoinTip)
        else { return out }
        for action in initiator.leading(now: now, view: view, key: bitcoinKey, feeRate: feeRate, stuck: stuck) {
            out += perform(action, now: now, chain: chain)
        }
        return out
    }

    /// The checkpoint of the followed coin waiting in the mempool, with the QC it anchors
    /// (from this node's own chain), for a fee bump by whoever leads.
    private func stuckCheckpoint(chain: ConsensusHost, bitcoinHeight: Int) -> CheckpointInitiator.Stuck? {
        guard let record = follower.unconfirmed, record.bitcoinHeight == nil, let rate = record.feeRate,
            let qc = qc(epoch: record.epoch, round: record.round, chain: chain)
        else { return nil }
        return CheckpointInitiator.Stuck(
            qc: qc, fee: record.fee, feeRate: rate,
            blocksWaiting: bitcoinHeight - (record.firstSeenAtBitcoinHeight ?? bitcoinHeight))
    }

    /// The commit QC with this epoch and round, from a request seen or the chain.
    private func qc(epoch: Epoch, round: Round, chain: ConsensusHost) -> QuorumCert? {
        if let end = chain.end(ofEpoch: epoch), end.qc.commitInfo.round == round { return end.qc }
        return chain.committed(anchoring: epoch, round: round)?.qc
    }

    /// What this node would judge a bump against: the mempool spend and how long it waited.
    private var pendingSpend: PendingSpend? {
        guard let record = follower.unconfirmed, record.bitcoinHeight == nil, let rate = record.feeRate,
            let tip = bitcoinTip
        else { return nil }
        return PendingSpend(feeRate: rate, blocksWaiting: tip - (record.firstSeenAtBitcoinHeight ?? tip))
    }

    private mutating func perform(_ action: CheckpointInitiator.Action, now: Double, chain: ConsensusHost) -> [Action] {
        switch action {
        case .requestSignatures(var request):
            if fault == .wrongStateID,
                let payload = try? CheckpointPayload(script: request.psbt.unsignedTx.outputs[1].scriptPubKey),
                let wrong = try? CheckpointPayload(
                    epoch: payload.epoch, round: payload.round, commitStateID: payload.commitStateID.map { $0 ^ 0x5a })
            {
                var psbt = request.psbt
                psbt.unsignedTx.outputs[1] = TxOut(value: 0, scriptPubKey: wrong.script)
                request = CheckpointRequest(psbt: psbt, qc: request.qc)
            }
            let txid = request.psbt.unsignedTx.displayTxid
            requests[txid] = (identity.publicKey.hex, request.qc.voteInfo.parentID, now)
            logger.info(
                "checkpoint: asking the validators to sign",
                metadata: [
                    "txid": "\(txid)", "epoch": "\(request.qc.commitInfo.epoch)",
                    "round": "\(request.qc.commitInfo.round)",
                    "fee": "\(initiator.currentFee ?? 0)",
                ])
            return [.gossip(envelope(.request(request)))]
        case .broadcast(let tx, let payload):
            if fault == .withholdBroadcast {
                logger.warning(
                    "checkpoint: fully signed, withheld (test fault)", metadata: ["txid": "\(tx.displayTxid)"])
                return []
            }
            let block = requests[tx.displayTxid].flatMap { chain.committed(blockID: $0.block) }
            return [.broadcast(tx, payload, sinceCommit: block.flatMap { commitTimes[$0.height] }.map { now - $0 })]
        }
    }

    /// What this node knows for a checkpoint of `qc`: the QC's epoch configuration, its
    /// own state at that block, the followed coin, where output 0 must pay, who may ask
    /// (the leaders from the QC's round to a little past this node's round), whether it is
    /// due by this node's history, and its own fee estimate.
    private mutating func view(for qc: QuorumCert, chain: ConsensusHost, bitcoinHeight: Int) -> CheckpointView? {
        let epoch = qc.commitInfo.epoch
        guard let config = chain.config(epoch: epoch), let current = coin(epoch: follower.coinEpoch, chain: chain)
        else { return nil }
        var states: [Hash32: Hash32] = [:]
        var endsEpoch = false
        var certifiedHeight: UInt64?
        if let own = chain.committed(certifiedBy: qc) {
            states[qc.voteInfo.parentID] = own.stateID
            endsEpoch = own.endsEpoch
            certifiedHeight = own.height
        }
        guard let next = coin(epoch: endsEpoch ? epoch + 1 : epoch, chain: chain) else { return nil }
        let core = chain.core
        let rounds = settings.policy.askingRounds(
            qcEpoch: epoch, qcRound: qc.commitInfo.round, epoch: core.config.epoch, round: core.currentRound,
            span: UInt64(4 * max(1, core.config.validators.validators.count)))
        let leaders = Set(rounds.map { core.leader(of: $0) })
        let complete = rounds.lowerBound <= (epoch == core.config.epoch ? qc.commitInfo.round : 1)
        return CheckpointView(
            config: config, committedStates: states, coin: follower.coin, coinValue: follower.coinValue,
            currentCoin: current, nextCoin: next, bitcoinHeight: bitcoinHeight,
            lastCheckpointHeight: follower.last?.bitcoinHeight,
            lastCheckpoint: follower.last.map { ($0.epoch, $0.round) }, leaders: leaders,
            certifiedHeight: certifiedHeight, endsEpoch: endsEpoch, dueFromHeight: initiator.nextDueHeight,
            ownFeeRate: feeRate, pending: pendingSpend, topUps: topUps, leadersComplete: complete)
    }

    /// A checkpoint message from the gossip layer, already authenticated (`open`).
    mutating func received(
        _ message: CheckpointMessage, from sender: ValidatorID, now: Double, chain: ConsensusHost
    ) -> [Action] {
        switch message {
        case .request(let request):
            let txid = request.psbt.unsignedTx.displayTxid
            // A request refused with blame is not judged again for that sender: a replay (the
            // gossip layer forgets after its seen-TTL) must not charge the validator twice.
            // Others are judged again (a re-ask after the timeout may be signable now).
            if blamed["\(sender.hex)/\(txid)"] != nil { return [] }
            // Only a request judged signable is an attempt (`settle`): one that is refused
            // or waits must not hold the other leaders back for the timeout.
            return judge(request, from: sender, since: now, now: now, chain: chain).0
        case .signature(let psbt):
            var out: [Action] = []
            for action in initiator.signatureReceived(psbt) { out += perform(action, now: now, chain: chain) }
            // Requests this node signed: with k signatures, the checkpoint is broadcast here
            // too if its initiator withholds it (`tick`).
            for i in watching.indices where watching[i].collector.add(psbt) {
                if let (tx, payload) = watching[i].collector.finish() { watching[i].finished = (tx, payload, now) }
            }
            return out
        case .refusal(let txid, let reason):
            if requests[txid]?.initiator == identity.publicKey.hex {
                logger.warning(
                    "checkpoint: a validator refused to sign",
                    metadata: ["validator": "\(sender.hex.prefix(16))", "txid": "\(txid)", "reason": "\(reason)"])
            }
            return []
        }
    }

    /// Step 2 of the protocol: sign, refuse (and charge the sender), or wait for this
    /// node to commit the block (bounded). Also says whether it was refused.
    private mutating func judge(
        _ request: CheckpointRequest, from sender: ValidatorID, since: Double, now: Double, chain: ConsensusHost
    ) -> ([Action], refused: Bool) {
        // Any holder of one of the coin's keys judges (a validator of the coin's epoch, even
        // one that has left the set since: `isSigner`, checked below once the coin is known).
        guard sender != identity.publicKey else { return ([], false) }
        // The coin was spent against the rules: nothing more is signed until an operator acts.
        if let alarm = follower.alarm {
            return settle(
                .stale("checkpointing is stopped here: \(alarm)"), request: request, signed: nil, from: sender,
                since: since, now: now)
        }
        // A checkpoint of a QC no later than the last one on Bitcoin (a replay, or a view
        // that lags): not signed, nobody blamed.
        if let last = follower.last,
            (request.qc.commitInfo.epoch, request.qc.commitInfo.round) <= (last.epoch, last.round)
        {
            return settle(
                .stale(
                    "epoch \(request.qc.commitInfo.epoch) round \(request.qc.commitInfo.round) is not after the last checkpoint"
                ),
                request: request, signed: nil, from: sender, since: since, now: now)
        }
        // A coin the checkpoints have already moved on from: a replay, not a lag.
        if let input = request.psbt.unsignedTx.inputs.first?.previousOutput,
            follower.records.contains(where: { $0.spent?.txid == input.displayTxid && $0.spent?.vout == input.vout })
        {
            return settle(
                .stale("it spends \(input), a coin already checkpointed past"), request: request, signed: nil,
                from: sender, since: since, now: now)
        }
        // A QC of an earlier epoch that did not end it is no longer due (a replay).
        if request.qc.commitInfo.epoch < chain.core.config.epoch,
            chain.end(ofEpoch: request.qc.commitInfo.epoch)?.qc.commitInfo != request.qc.commitInfo
        {
            return settle(
                .stale("epoch \(request.qc.commitInfo.epoch) is over and this is not its last QC"), request: request,
                signed: nil, from: sender, since: since, now: now)
        }
        // This node's poll of Bitcoin may lag the initiator's: a request spending another
        // coin (perhaps the one the last checkpoint created) waits for the follower to
        // move, as it would for a block not yet committed here.
        if request.psbt.unsignedTx.inputs.first?.previousOutput != follower.coin {
            return settle(
                .wait("it spends another coin than \(follower.coin), the one this node follows"), request: request,
                signed: nil, from: sender, since: since, now: now, blameWhenExpired: true)
        }
        guard let current = coin(epoch: follower.coinEpoch, chain: chain),
            current.keys.contains(bitcoinKey.xOnlyPublicKey.rawRepresentation)
        else { return ([], false) }  // not a signer of the coin: nothing to judge
        let verdict: CheckpointRules.Verdict
        var signed: PSBT?
        if let bitcoinTip, let view = view(for: request.qc, chain: chain, bitcoinHeight: bitcoinTip) {
            if request.qc.commitInfo.epoch < follower.coinEpoch {
                verdict = .stale(
                    "the coin is already locked by epoch \(follower.coinEpoch)'s set, past epoch \(request.qc.commitInfo.epoch)"
                )
            } else {
                (verdict, signed) = CheckpointRules.cosign(
                    request, from: sender, view: view, policy: settings.policy, key: bitcoinKey)
            }
        } else {
            verdict = .wait("epoch \(request.qc.commitInfo.epoch) or the Bitcoin tip is not known here yet")
        }
        return settle(verdict, request: request, signed: signed, from: sender, since: since, now: now)
    }

    /// Acts on a verdict: the signature out, a bounded wait, or a refusal. A request for a
    /// coin this node still does not follow when the wait ends is blamed
    /// (`blameWhenExpired`): every node polls Bitcoin, so one that is 20 s behind the
    /// initiator's view is rare, and such requests would otherwise be free to send.
    private mutating func settle(
        _ verdict: CheckpointRules.Verdict, request: CheckpointRequest, signed: PSBT?, from sender: ValidatorID,
        since: Double, now: Double, blameWhenExpired: Bool = false
    ) -> ([Action], refused: Bool) {
        let txid = request.psbt.unsignedTx.displayTxid
        switch verdict {
        case .sign:
            // Judged signable: an attempt in flight, so no later leader starts one now.
            initiator.requestSeen(now: now)
            // The latest signable requester of a txid is the one driving it (after a handoff,
            // a later leader asks for the very same transaction).
            requests[txid] = (sender.hex, request.qc.voteInfo.parentID, now)
            if requests.count > 1_000 { requests = requests.filter { now - $0.value.at < 600 } }
            if let signed, let coin = coins[follower.coinEpoch],
                !watching.contains(where: { $0.collector.request.psbt.unsignedTx == request.psbt.unsignedTx })
            {
                var collector = CheckpointCollector(request: request, coin: coin)
                _ = collector.add(signed)
                // At most two per sender (an honest initiator has one in flight, two across
                // a bump): a sender streaming variants cannot push others' out.
                let mine = watching.indices.filter { watching[$0].sender == sender }
                if mine.count >= 2 { watching.remove(at: mine[0]) }
                watching.append((sender, collector, nil))
                if watching.count > 64 { watching.removeFirst() }
            }
            logger.info(
                "checkpoint: signed",
                metadata: [
                    "txid": "\(txid)", "initiator": "\(sender.hex.prefix(16))",
                    "round": "\(request.qc.commitInfo.round)",
                ])
            return (signed.map { [.gossip(envelope(.signature($0)))] } ?? [], false)
        case .wait(let why):
            if now - since < Self.waitLimit {
                waiting.add(request, from: sender, since: since)
                return ([], false)
            }
            if blameWhenExpired { remember(blame: "\(sender.hex)/\(txid)", now: now) }
            return (
                refuse(txid, from: sender, reason: "waited \(Int(Self.waitLimit)) s: \(why)", blame: blameWhenExpired),
                true
            )
        case .stale(let why):
            return (refuse(txid, from: sender, reason: why, blame: false), true)
        case .refuse(let why):
            remember(blame: "\(sender.hex)/\(txid)", now: now)
            return (refuse(txid, from: sender, reason: why, blame: true), true)
        }
    }

    /// Bounded: past 4,096 entries the older half goes (a sender over budget is scored
    /// down by the gossip layer long before).
    private mutating func remember(blame key: String, now: Double) {
        blamed[key] = now
        guard blamed.count > 4_096 else { return }
        let cutoff = blamed.values.sorted()[blamed.count / 2]
        blamed = blamed.filter { $0.value > cutoff }
    }

    /// Tells the initiator why; a request that breaks a rule no honest view breaks also
    /// scores its sender down, one whose view merely differs (stale) does not.
    private func refuse(_ txid: String, from sender: ValidatorID, reason: String, blame: Bool) -> [Action] {
        let metadata: Logger.Metadata = [
            "txid": "\(txid)", "initiator": "\(sender.hex.prefix(16))", "reason": "\(reason)",
        ]
        guard blame else {
            logger.info("checkpoint: not signed (views differ)", metadata: metadata)
            return [.gossip(envelope(.refusal(txid: txid, reason: reason)))]
        }
        logger.warning("checkpoint: refused to sign", metadata: metadata)
        return [
            .gossip(envelope(.refusal(txid: txid, reason: reason))),
            .penalize(sender, "checkpoint request refused: \(reason)"),
        ]
    }

    // MARK: Envelope

    func envelope(_ message: CheckpointMessage) -> [UInt8] {
        let body = message.encoded()
        let signature = identity.signature(for: Self.domain + Array(chainID.utf8) + body)
        return [Self.gossipTopic] + identity.publicKey.rawRepresentation + signature.rawRepresentation + body
    }

    /// Checks a gossip payload's envelope: the sender and its signature over the message.
    static func open(_ payload: [UInt8], chainID: String) throws(WireErrorText) -> (ValidatorID, CheckpointMessage) {
        guard payload.count > 97, payload[0] == gossipTopic else {
            throw WireErrorText("truncated checkpoint envelope")
        }
        guard let sender = try? Ed25519.PublicKey(rawRepresentation: Array(payload[1..<33])),
            let signature = try? Ed25519.Signature(rawRepresentation: Array(payload[33..<97]))
        else { throw WireErrorText("bad sender key in a checkpoint envelope") }
        let body = Array(payload[97...])
        guard sender.isValidSignature(signature, for: domain + Array(chainID.utf8) + body) else {
            throw WireErrorText("bad signature on a checkpoint message")
        }
        do {
            return (sender, try CheckpointMessage.decode(body))
        } catch {
            throw WireErrorText("malformed checkpoint message: \(error)")
        }
    }
}

/// Misbehaviour for end-to-end tests only, as CometBFT's e2e "misbehaviors": a validator
/// that asks, whenever it leads a round while a checkpoint is due, for signatures on a wrong
/// state id, or one that
/// collects signatures and never broadcasts (then is killed mid-flow). Only the test build
/// of the node (`p2pnode-faulty`, Tests/FaultyNode) sets it, through `TestFaults`; the
/// shipped `p2pnode` has no switch for it.
public enum CheckpointFault: String, Sendable, CaseIterable {
    case wrongStateID = "wrong-state-id"
    case withholdBroadcast = "withhold-broadcast"
}

/// Where the test build of the node sets its misbehaviour before running the CLI.
public enum TestFaults {
    private static let checkpointFault = Mutex<CheckpointFault?>(nil)

    public static var checkpoint: CheckpointFault? {
        get { checkpointFault.withLock { $0 } }
        set { checkpointFault.withLock { $0 = newValue } }
    }
}

/// Why a checkpoint envelope was dropped.
struct WireErrorText: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
