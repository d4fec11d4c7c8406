import Bitcoin
import Consensus
import NodeCrypto

/// A request to co-sign a checkpoint: the initiator's PSBT (with its own signature) and
/// the QC whose `commit_state_id` it anchors.
public struct CheckpointRequest: Sendable, Equatable {
    public let psbt: PSBT
    public let qc: QuorumCert

    public init(psbt: PSBT, qc: QuorumCert) {
        self.psbt = psbt
        self.qc = qc
    }
}

/// Operator policy for checkpoints (genesis `checkpoint` section and config).
public struct CheckpointPolicy: Sendable, Equatable {
    public var minFeeRate: Double
    public var maxFeeRate: Double
    /// Bitcoin blocks that must separate two checkpoints (at least 1: never two per block).
    public var minBitcoinBlocksBetween: Int
    /// A request's fee rate may be at most this many times the validator's own estimate
    /// (honest estimates from different esplora servers differ; a Byzantine initiator
    /// must not burn the coin in fees), unless it bumps a stuck checkpoint.
    public var feeTolerance: Double
    /// Bitcoin blocks a checkpoint may stay in the mempool before any leader may replace it
    /// at `bumpFactor` × its rate (BIP125: at least +1 sat/vB).
    public var bumpAfterBlocks: Int
    public var bumpFactor: Double
    /// A request may come from the leader of the QC's round or of a later one up to this
    /// many rounds past the validator's own current round (views of the round differ a little).
    public var leaderLookahead: UInt64

    public init(
        minFeeRate: Double = 1, maxFeeRate: Double = 100, minBitcoinBlocksBetween: Int = 1, feeTolerance: Double = 2,
        bumpAfterBlocks: Int = 3, bumpFactor: Double = 1.5, leaderLookahead: UInt64 = 2
    ) {
        self.minFeeRate = minFeeRate
        self.maxFeeRate = maxFeeRate
        self.minBitcoinBlocksBetween = max(1, minBitcoinBlocksBetween)
        self.feeTolerance = max(1, feeTolerance)
        self.bumpAfterBlocks = max(1, bumpAfterBlocks)
        self.bumpFactor = max(1.1, bumpFactor)
        self.leaderLookahead = leaderLookahead
    }

    /// The fee rate of a replacement for a checkpoint stuck at `rate` (BIP125: a higher
    /// rate by at least the 1 sat/vB incremental relay fee).
    public func bumped(_ rate: Double) -> Double { max(rate * bumpFactor, rate + 1) }

    /// The rate a leader replaces a stuck checkpoint at: the bump, or this node's own
    /// estimate if higher, at most the cap (nil if even the cap is not a BIP125 bump).
    public func replacementRate(stuck rate: Double, own: Double) -> Double? {
        let target = min(max(bumped(rate), own), maxFeeRate)
        return target >= rate + 1 ? target : nil
    }

    /// The highest fee rate a validator whose own estimate is `own` signs: `feeTolerance`
    /// × that, or a bump of a checkpoint stuck in the mempool for `bumpAfterBlocks` (one
    /// block of slack: the initiator's tip may be one ahead), within the genesis bounds.
    public func ceiling(own: Double, pending: PendingSpend?) -> Double {
        var ceiling = max(own, minFeeRate) * feeTolerance
        if let pending, pending.blocksWaiting >= bumpAfterBlocks - 1 {
            // +1: the replacement's fee is rounded up to whole satoshis.
            ceiling = max(ceiling, bumped(pending.feeRate) + 1, min(own, maxFeeRate) + 1)
        }
        return min(ceiling, maxFeeRate)
    }

    /// Rounds whose leader may ask for a checkpoint of a QC of (`qcEpoch`, `qcRound`) when
    /// this node is at (`epoch`, `round`): from the QC's round (the epoch's first round if
    /// the QC ended an earlier epoch) to `leaderLookahead` rounds ahead; at most `span`
    /// rounds back, beyond which every validator has led one in any case.
    public func askingRounds(
        qcEpoch: UInt64, qcRound: UInt64, epoch: UInt64, round: UInt64, span: UInt64
    )
        -> ClosedRange<UInt64>
    {
        let upper = round + leaderLookahead
        var lower = qcEpoch == epoch ? qcRound : 1
        if upper > span { lower = max(lower, upper - span) }
        return min(lower, upper)...upper
    }
}

/// A checkpoint spend of the coin that waits in the mempool, as this node saw it.
public struct PendingSpend: Sendable, Equatable {
    public var feeRate: Double
    /// Bitcoin blocks mined since this node first saw it.
    public var blocksWaiting: Int

    public init(feeRate: Double, blocksWaiting: Int) {
        self.feeRate = feeRate
        self.blocksWaiting = blocksWaiting
    }
}

/// What a validator knows when it judges a request, from its own node.
public struct CheckpointView: Sendable {
    /// The epoch's consensus configuration (its validators verify the QC).
    public let config: ConsensusConfig
    /// Committed blocks' state ids, by block id (the recent ones suffice).
    public let committedStates: [Hash32: Hash32]
    /// The coin this node follows on Bitcoin as current, and what it holds.
    public let coin: OutPoint
    public let coinValue: UInt64
    /// The coin's script (this epoch's, or the previous epoch's last checkpoint's).
    public let currentCoin: CheckpointCoin
    /// Where output 0 must pay: this epoch's coin, or the next epoch's once this one is ending.
    public let nextCoin: CheckpointCoin
    /// Bitcoin heights: the tip, and the block that confirmed the last checkpoint.
    public let bitcoinHeight: Int
    public let lastCheckpointHeight: Int?
    /// Epoch and round of the last checkpoint on Bitcoin: a new one must move forward.
    public let lastCheckpoint: (epoch: UInt64, round: UInt64)?
    /// Who may ask now: the leaders of `CheckpointPolicy.askingRounds` by this node's
    /// leader schedule.
    public let leaders: Set<ValidatorID>
    /// Whether `leaders` covers every round from the QC's on (false when the window was
    /// capped: a requester outside it may have led an earlier round, e.g. a replayed
    /// request, so it is not blamed).
    public let leadersComplete: Bool
    /// Due by this node's own history: the height of the block the QC certifies, whether
    /// it ends its epoch, and the first height due after the last checkpoint (nil where
    /// this node does not know the last checkpoint's height: then any is due).
    public let certifiedHeight: UInt64?
    public let endsEpoch: Bool
    public let dueFromHeight: UInt64?
    /// This node's own fee-rate estimate (sat/vB), and the checkpoint of this coin waiting
    /// in the mempool, if any.
    public let ownFeeRate: Double
    public let pending: PendingSpend?
    /// Outputs paying the current coin's script that this node sees confirmed (value by
    /// outpoint): a checkpoint may sweep them in.
    public let topUps: [OutPoint: UInt64]

    public init(
        config: ConsensusConfig, committedStates: [Hash32: Hash32], coin: OutPoint, coinValue: UInt64,
        currentCoin: CheckpointCoin, nextCoin: CheckpointCoin, bitcoinHeight: Int, lastCheckpointHeight: Int?,
        lastCheckpoint: (epoch: UInt64, round: UInt64)? = nil, leaders: Set<ValidatorID>, certifiedHeight: UInt64?,
        endsEpoch: Bool, dueFromHeight: UInt64?, ownFeeRate: Double, pending: PendingSpend? = nil,
        topUps: [OutPoint: UInt64] = [:], leadersComplete: Bool = true
    ) {
        self.topUps = topUps
        self.leadersComplete = leadersComplete
        self.lastCheckpoint = lastCheckpoint
        self.config = config
        self.committedStates = committedStates
        self.coin = coin
        self.coinValue = coinValue
        self.currentCoin = currentCoin
        self.nextCoin = nextCoin
        self.bitcoinHeight = bitcoinHeight
        self.lastCheckpointHeight = lastCheckpointHeight
        self.leaders = leaders
        self.certifiedHeight = certifiedHeight
        self.endsEpoch = endsEpoch
        self.dueFromHeight = dueFromHeight
        self.ownFeeRate = ownFeeRate
        self.pending = pending
    }
}

/// The validator's side of the checkpoint protocol: judge a request (step 2 of the
/// protocol in docs/architecture.md), and sign it when every rule holds.
public enum CheckpointRules {
    public enum Verdict: Sendable, Equatable {
        case sign
        /// Not yet judgeable: this node has not committed the QC's block yet (ask again
        /// shortly; a node that never commits it will refuse after a bounded wait).
        case wait(String)
        /// Not signed, and nobody's fault: the views differ (the coin moved, a checkpoint
        /// confirmed, a Bitcoin block arrived) between initiator and validator.
        case stale(String)
        /// Not signed: the request breaks a rule no honest view does (the initiator is blamed).
        case refuse(String)
    }

    public static func judge(
        _ request: CheckpointRequest, from sender: ValidatorID, view: CheckpointView, policy: CheckpointPolicy
    ) -> Verdict {
        let qc = request.qc
        // 0. Only the leader of the QC's round or of a later one asks (a later one takes
        //    over after the timeout): a validator that is not cannot ask at will.
        guard view.leaders.contains(sender) else {
            let why = "the requester leads none of the rounds from the QC's round to this node's current round"
            return view.leadersComplete ? .refuse(why) : .stale(why + " (of those this node checks)")
        }
        // 1. A valid QC of this epoch's validators that commits a state.
        guard view.config.isValid(qc), let stateID = qc.commitInfo.commitStateID else {
            return .refuse("the QC is not a valid commit QC of epoch \(view.config.epoch)")
        }
        if let last = view.lastCheckpoint, (qc.commitInfo.epoch, qc.commitInfo.round) <= (last.epoch, last.round) {
            return .stale("epoch \(qc.commitInfo.epoch) round \(qc.commitInfo.round) is not after the last checkpoint")
        }
        // 2. The state it certifies is this node's committed state at that block.
        guard let own = view.committedStates[qc.voteInfo.parentID] else {
            return .wait("block \(qc.voteInfo.parentID) is not committed here yet")
        }
        guard own == stateID else {
            return .refuse("commit_state_id \(stateID) differs from this node's \(own) at that block")
        }
        // Due by this node's own committed history: at the interval after the last
        // checkpoint, or an epoch's last block. Asking earlier spends the coin's fees for
        // nothing.
        if !view.endsEpoch, let height = view.certifiedHeight, let due = view.dueFromHeight, height < due {
            return .refuse(
                "not due: height \(height) is before \(due), the next checkpoint height by this node's chain")
        }
        let tx = request.psbt.unsignedTx
        // 3. It spends the coin this node knows as current, then any top-ups (outputs paid
        //    to the coin's script that this node sees confirmed), in the canonical order.
        guard !tx.inputs.isEmpty, tx.inputs.count <= 1 + CheckpointTransaction.maxTopUps,
            tx.inputs.count == request.psbt.inputs.count
        else {
            return .refuse("a checkpoint spends the coin and at most \(CheckpointTransaction.maxTopUps) top-ups")
        }
        guard tx.inputs[0].previousOutput == view.coin else {
            return .stale("the input is not the current checkpoint coin \(view.coin)")
        }
        let coinScript = view.currentCoin.scriptPubKey
        var topUps: [OutPoint: UInt64] = [:]
        for i in tx.inputs.indices.dropFirst() {
            let outpoint = tx.inputs[i].previousOutput
            guard outpoint != view.coin, topUps[outpoint] == nil else { return .refuse("an input appears twice") }
            guard let utxo = request.psbt.inputs[i].witnessUtxo, utxo.scriptPubKey == coinScript else {
                return .refuse("input \(i) is not a top-up: it does not pay the coin's script")
            }
            guard let value = view.topUps[outpoint] else {
                return .stale("input \(i) (\(outpoint)) is a top-up this node has not seen confirmed")
            }
            guard utxo.value == value else {
                return .refuse("input \(i) claims \(utxo.value) sats; this node sees \(value)")
            }
            let least = CheckpointTransaction.minimumTopUp(view.currentCoin, maxFeeRate: policy.maxFeeRate)
            guard value >= least else {
                return .refuse("input \(i) sweeps \(value) sats, less than its own fee at the cap (\(least))")
            }
            topUps[outpoint] = value
        }
        guard tx.inputs.dropFirst().map(\.previousOutput) == CheckpointTransaction.ordered(topUps).map(\.0) else {
            return .refuse("the top-ups are not in the canonical order (by txid, then output index)")
        }
        for (i, input) in request.psbt.inputs.enumerated() {
            // A signature under any other sighash type commits to less than the whole
            // transaction (NONE and ANYONECANPAY let anyone repay the coin elsewhere), so
            // only SIGHASH_DEFAULT is ever signed, and a request asking for another type is
            // a rule break.
            if let type = input.sighashType, type != SighashType.default.rawValue {
                return .refuse("sighash type 0x\(String(type, radix: 16)) is not SIGHASH_DEFAULT")
            }
            guard input.tapScriptSigs.values.allSatisfy({ $0.count == 64 }), input.tapKeySig == nil else {
                return .refuse("a signature in the request is not a 64-byte SIGHASH_DEFAULT script-path signature")
            }
            // Only the main leaf is signed: a request naming the recovery leaf (or any
            // other) would collect signatures for a path it has no business with.
            guard
                input.tapLeafScripts
                    == [
                        view.currentCoin.controlBlock: view.currentCoin.leaf.script.bytes + [
                            view.currentCoin.leaf.version
                        ]
                    ]
            else { return .refuse("input \(i) names a leaf other than the coin's main leaf") }
            guard tx.inputs[i].sequence == TxIn.rbfSequence else {
                return .refuse("version, lock time or sequence differ from the checkpoint format")
            }
        }
        guard let utxo = request.psbt.inputs[0].witnessUtxo,
            utxo == TxOut(value: view.coinValue, scriptPubKey: coinScript)
        else { return .refuse("the witness UTXO is not the current coin's script and value") }
        // 4. Exactly the outputs the rule gives: the next coin, then the payload.
        guard
            let payload = try? CheckpointPayload(
                epoch: qc.commitInfo.epoch, round: qc.commitInfo.round, commitStateID: stateID.bytes)
        else { return .refuse("bad state id") }
        guard tx.outputs.count == 2, tx.outputs[0].scriptPubKey == view.nextCoin.scriptPubKey,
            tx.outputs[1] == TxOut(value: 0, scriptPubKey: payload.script)
        else { return .refuse("the outputs are not [next coin, OP_RETURN of this QC's epoch, round and state]") }
        guard tx.version == 2, tx.lockTime == 0 else {
            return .refuse("version, lock time or sequence differ from the checkpoint format")
        }
        // 5. A fee rate within the bounds, measured on the signed size.
        let (spent, overflow) = topUps.values.reduce((view.coinValue, false)) {
            let sum = $0.0.addingReportingOverflow($1)
            return (sum.partialValue, $0.1 || sum.overflow)
        }
        guard !overflow else { return .refuse("the inputs add up to more than 2^64 sats") }
        guard spent > tx.outputs[0].value else { return .refuse("no fee") }
        let fee = spent - tx.outputs[0].value
        let vsize = CheckpointTransaction.virtualSize(
            current: view.currentCoin, next: view.nextCoin, topUps: tx.inputs.count - 1)
        let rate = Double(fee) / Double(vsize)
        let ceiling = policy.ceiling(own: view.ownFeeRate, pending: view.pending)
        // Above this node's own ceiling but within the genesis bounds: honest estimates may
        // differ that much, so not signed and not blamed (the fee burn is bounded either way).
        if rate >= policy.minFeeRate, rate <= policy.maxFeeRate, rate > ceiling {
            return .stale(
                "fee rate \(String(format: "%.2f", rate)) sat/vB is above \(String(format: "%.2f", ceiling)) (own estimate \(String(format: "%.2f", view.ownFeeRate)) × \(policy.feeTolerance))"
            )
        }
        guard rate >= policy.minFeeRate, rate <= ceiling else {
            return .refuse(
                "fee rate \(String(format: "%.2f", rate)) sat/vB is outside [\(policy.minFeeRate), \(String(format: "%.2f", ceiling))]"
                    + " (own estimate \(String(format: "%.2f", view.ownFeeRate)), tolerance ×\(policy.feeTolerance))"
            )
        }
        // 6. Cadence: never more than one checkpoint per Bitcoin block (or per the
        //    configured spacing).
        if let last = view.lastCheckpointHeight, view.bitcoinHeight - last < policy.minBitcoinBlocksBetween {
            return .stale(
                "too early: the last checkpoint confirmed at Bitcoin height \(last), the tip is \(view.bitcoinHeight)")
        }
        return .sign
    }

    /// Judges and, if every rule holds, adds this validator's BIP340 script-path signature.
    public static func cosign(
        _ request: CheckpointRequest, from sender: ValidatorID, view: CheckpointView, policy: CheckpointPolicy,
        key: Secp256k1.PrivateKey
    ) -> (verdict: Verdict, psbt: PSBT?) {
        let verdict = judge(request, from: sender, view: view, policy: policy)
        guard verdict == .sign else { return (verdict, nil) }
        guard view.currentCoin.keys.contains(key.xOnlyPublicKey.rawRepresentation) else {
            return (.refuse("this node's Bitcoin key is not in the coin's script"), nil)
        }
        do {
            // Sign with SIGHASH_DEFAULT whatever the PSBT says (judge refuses any other
            // type; this keeps the signer's own guarantee independent of that check).
            var unsigned = request.psbt
            for i in unsigned.inputs.indices { unsigned.inputs[i].sighashType = nil }
            var validated = try unsigned.validated()
            let slot = key.xOnlyPublicKey.rawRepresentation + view.currentCoin.leaf.hash
            guard try validated.sign(with: key) == unsigned.inputs.count,
                validated.psbt.inputs.allSatisfy({ $0.tapScriptSigs[slot]?.count == 64 })
            else { return (.refuse("nothing to sign"), nil) }
            return (.sign, validated.psbt)
        } catch {
            return (.refuse("cannot sign: \(error)"), nil)
        }
    }
}

/// Requests a validator cannot judge yet (its node has not committed the QC's block, or
/// does not follow the coin the request spends yet), each kept for at most `limit`
/// seconds. Bounded per sender, newest kept: an honest initiator has one request in
/// flight (two across a fee bump), so a flood from one validator cannot push the others'
/// requests out.
public struct WaitingRequests<Sender: Hashable & Sendable>: Sendable {
    public struct Entry: Sendable {
        public let request: CheckpointRequest
        public let sender: Sender
        public let since: Double
    }

    public let perSender: Int
    public private(set) var entries: [Entry] = []

    public init(perSender: Int = 2) { self.perSender = max(1, perSender) }

    /// Keeps `request` (first seen at `since`), dropping this sender's oldest beyond the bound.
    public mutating func add(_ request: CheckpointRequest, from sender: Sender, since: Double) {
        let mine = entries.indices.filter { entries[$0].sender == sender }
        if mine.count >= perSender { entries.remove(at: mine[0]) }
        entries.append(Entry(request: request, sender: sender, since: since))
    }

    /// Everything waiting, to judge again (what still cannot be judged is added back).
    public mutating func takeAll() -> [Entry] {
        defer { entries = [] }
        return entries
    }
}
