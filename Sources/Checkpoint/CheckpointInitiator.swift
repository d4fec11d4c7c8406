import Bitcoin
import Consensus
import NodeCrypto

/// The initiator's side of the checkpoint protocol, as a pure state machine: when a
/// checkpoint is due and this node leads the current round, it builds the PSBT for the
/// latest commit QC, signs it, asks the validators for theirs, and with k signatures
/// finalizes the transaction for broadcast. If the due checkpoint is not seen on Bitcoin
/// within `timeout` of the last attempt, the leader of a later round starts again (the
/// handoff); one stuck in the mempool is replaced at a higher fee by whoever leads once it
/// has waited `bumpAfterBlocks` Bitcoin blocks. Conflicting spends of the coin are settled by Bitcoin: every node follows
/// whichever spend it sees (`seenOnBitcoin`).
///
/// Due: every `intervalBlocks` committed blocks, and always for an epoch's last block
/// (so each epoch is checkpointed at least once and its last checkpoint moves the coin
/// to the next epoch's set). Never more than one per Bitcoin block: validators refuse
/// (`CheckpointRules`), and the initiator does not start before a new block.
public struct CheckpointInitiator: Sendable {
    public struct Settings: Sendable, Equatable {
        public var intervalBlocks: UInt64
        public var timeout: Double
        public var policy: CheckpointPolicy

        public init(intervalBlocks: UInt64, timeout: Double, policy: CheckpointPolicy) {
            self.intervalBlocks = max(1, intervalBlocks)
            self.timeout = timeout
            self.policy = policy
        }
    }

    /// A checkpoint of the coin waiting in the mempool (anyone's): the QC it anchors, its
    /// fee and rate, and how many Bitcoin blocks this node has seen pass since it first saw
    /// it. Kept by the follower, so it survives a restart.
    public struct Stuck: Sendable, Equatable {
        public var qc: QuorumCert
        public var fee: UInt64
        public var feeRate: Double
        public var blocksWaiting: Int

        public init(qc: QuorumCert, fee: UInt64, feeRate: Double, blocksWaiting: Int) {
            self.qc = qc
            self.fee = fee
            self.feeRate = feeRate
            self.blocksWaiting = blocksWaiting
        }
    }

    public enum Action: Sendable, Equatable {
        /// Send to every validator of the epoch; answers come to `signatureReceived`.
        case requestSignatures(CheckpointRequest)
        /// Fully signed: broadcast it through esplora.
        case broadcast(BitcoinTransaction, CheckpointPayload)
    }

    /// The checkpoint being collected by this node.
    struct Session: Sendable {
        var collector: CheckpointCollector
        var request: CheckpointRequest { collector.request }
        let fee: UInt64
        let rate: Double
        let bitcoinHeight: Int
        var done: Bool { collector.done }
    }

    public let settings: Settings
    /// Consensus height of the last checkpoint seen on Bitcoin (0: none yet).
    public private(set) var checkpointedHeight: UInt64 = 0
    /// Recent commits (height and the QC that committed it), oldest first. The due
    /// checkpoint anchors the first of them at or past the next multiple of the interval,
    /// so every validator that saw the same commits builds the very same transaction and
    /// concurrent initiators (leaders of neighbouring rounds) gather signatures for one txid.
    private var history: [(height: UInt64, qc: QuorumCert)] = []
    static let historyLimit = 1_024
    /// Epoch and round of the last checkpoint seen on Bitcoin.
    private var lastCheckpoint: (epoch: UInt64, round: UInt64)?
    /// The last epoch-ending block not yet checkpointed (forced).
    private var pendingEpochEnd: (height: UInt64, qc: QuorumCert)?
    /// When the due checkpoint was last attempted (by anyone, as far as this node saw).
    private var lastAttempt: Double?
    private var bitcoinHeightAtLastCheckpoint: Int?
    var session: Session?

    public init(settings: Settings) { self.settings = settings }

    public var isDue: Bool {
        dueTarget != nil
    }

    /// Whether the consensus height of the last checkpoint is known here (a node that did
    /// not see its request, and cannot find its QC, knows only its epoch and round).
    private var anchorKnown = true

    /// The first consensus height a checkpoint may anchor (other than an epoch's end), by
    /// this node's own history: the next multiple of the interval after the last
    /// checkpoint's height; nil where that height is not known here.
    public var nextDueHeight: UInt64? {
        guard anchorKnown else { return nil }
        return (checkpointedHeight / settings.intervalBlocks + 1) * settings.intervalBlocks
    }

    /// What is due: an epoch's end first; else, once the chain has passed the next
    /// multiple of the interval after the last checkpoint, the first commit at or past the
    /// latest multiple (so a chain that commits faster than Bitcoin confirms is anchored
    /// near its tip instead of falling further behind).
    private var dueTarget: (height: UInt64, qc: QuorumCert)? {
        if let end = pendingEpochEnd { return end }
        let interval = settings.intervalBlocks
        guard let latest = history.last, latest.height >= (checkpointedHeight / interval + 1) * interval else {
            return nil
        }
        let boundary = latest.height / interval * interval
        return history.first { event in
            guard event.height >= boundary else { return false }
            guard let last = lastCheckpoint else { return true }
            return (event.qc.commitInfo.epoch, event.qc.commitInfo.round) > (last.epoch, last.round)
        }
    }

    /// Consensus committed up to `height`; `qc` is the QC that committed it.
    public mutating func committed(height: UInt64, qc: QuorumCert, endsEpoch: Bool, now: Double) {
        guard qc.commitInfo.commitStateID != nil, height > (history.last?.height ?? 0) else { return }
        history.append((height, qc))
        if history.count > Self.historyLimit { history.removeFirst(history.count - Self.historyLimit) }
        // The latest epoch end goes first: its checkpoint hands the coin straight to the
        // newest set, however many epochs the coin is behind.
        if endsEpoch { pendingEpochEnd = (height, qc) }
        // `lastAttempt` is not reset when it becomes due: another validator's request for
        // it may have arrived before this node processed the commit, and starting too
        // would race that initiator.
    }

    /// An epoch ended at `height` (committed by `qc`) and the coin has not reached the
    /// next set: after a restart, or when this node caught up past it. It goes first (a
    /// later end replaces an earlier one).
    public mutating func epochEndPending(height: UInt64, qc: QuorumCert) {
        guard height > checkpointedHeight, height > pendingEpochEnd?.height ?? 0, qc.commitInfo.commitStateID != nil
        else { return }
        pendingEpochEnd = (height, qc)
    }

    /// The QC the next `leading` call would anchor: the checkpoint waiting in the mempool
    /// (for a fee bump), an epoch's end, or the latest commit. The caller builds the view's
    /// `nextCoin` for it.
    public func nextTarget(stuck: Stuck?) -> QuorumCert? {
        if let stuck { return stuck.qc }
        return dueTarget?.qc
    }

    /// Another initiator's request was judged signable, or its checkpoint is in the
    /// mempool: that counts as an attempt (no handoff yet).
    public mutating func requestSeen(now: Double) { lastAttempt = now }

    /// This node leads the current round: start a checkpoint if one is due and nobody
    /// attempted it within `timeout`, or replace one stuck in the mempool for
    /// `bumpAfterBlocks` (whoever initiated it: the state comes from what Bitcoin shows).
    /// `view` is what the node follows (coin, sets, heights).
    public mutating func leading(
        now: Double, view: CheckpointView, key: Secp256k1.PrivateKey, feeRate: Double, stuck: Stuck? = nil
    ) -> [Action] {
        let policy = settings.policy
        let topUps = Self.sweepable(view, policy: policy)
        let vsize = CheckpointTransaction.virtualSize(
            current: view.currentCoin, next: view.nextCoin, topUps: topUps.count)
        if let stuck {
            // In the mempool: wait for a block, or bump once it has waited long enough.
            guard stuck.blocksWaiting >= policy.bumpAfterBlocks,
                let rate = policy.replacementRate(stuck: stuck.feeRate, own: feeRate)
            else { return [] }  // not yet, or already at the cap: wait
            let fee = max(UInt64((rate * Double(vsize)).rounded(.up)), stuck.fee + UInt64(vsize))
            // Asked already at this fee or more (the replacement is not in the mempool yet):
            // asking again within the timeout would only repeat it.
            if let s = session, s.request.qc == stuck.qc, s.fee >= fee, let last = lastAttempt,
                now - last < settings.timeout
            {
                return []
            }
            return start(
                now: now, view: view, key: key, target: (0, stuck.qc), fee: fee, rate: Double(fee) / Double(vsize))
        }
        // Due, and not attempted within the timeout (by this node or another it heard of):
        // an attempt that timed out is replaced, whoever made it.
        guard isDue else { return [] }
        if let last = lastAttempt, now - last < settings.timeout { return [] }
        if let last = bitcoinHeightAtLastCheckpoint, view.bitcoinHeight - last < policy.minBitcoinBlocksBetween {
            return []
        }
        // The epoch's last block first: its checkpoint hands the coin to the next set.
        guard let target = dueTarget else { return [] }
        let rate = min(max(feeRate, policy.minFeeRate), policy.maxFeeRate)
        return start(
            now: now, view: view, key: key, target: target, fee: UInt64((rate * Double(vsize)).rounded(.up)), rate: rate
        )
    }

    /// Builds, signs and asks for the checkpoint of `target`'s QC at `fee`.
    private mutating func start(
        now: Double, view: CheckpointView, key: Secp256k1.PrivateKey, target: (UInt64, QuorumCert), fee: UInt64,
        rate: Double
    ) -> [Action] {
        guard let state = target.1.commitInfo.commitStateID,
            let payload = try? CheckpointPayload(
                epoch: target.1.commitInfo.epoch, round: target.1.commitInfo.round, commitStateID: state.bytes),
            let psbt = try? CheckpointTransaction.psbt(
                spending: view.coin, value: view.coinValue, of: view.currentCoin, to: view.nextCoin, payload: payload,
                fee: fee, topUps: Self.sweepable(view, policy: settings.policy)),
            var validated = try? psbt.validated(), let own = try? validated.sign(with: key),
            own == 0 || own == psbt.inputs.count
        else { return [] }
        // A leader whose key is not in the coin (the set rotated since the coin's epoch)
        // still asks: the coin's key holders sign.
        lastAttempt = now
        let request = CheckpointRequest(psbt: validated.psbt, qc: target.1)
        session = Session(
            collector: CheckpointCollector(request: request, coin: view.currentCoin),
            fee: fee, rate: rate, bitcoinHeight: view.bitcoinHeight)
        return [.requestSignatures(request)] + finishIfComplete()
    }

    /// The top-ups a checkpoint sweeps in: those worth more than their own input at the
    /// fee cap, never the coin itself, in canonical order.
    static func sweepable(_ view: CheckpointView, policy: CheckpointPolicy) -> [(OutPoint, UInt64)] {
        let least = CheckpointTransaction.minimumTopUp(view.currentCoin, maxFeeRate: policy.maxFeeRate)
        return CheckpointTransaction.ordered(view.topUps.filter { $0.key != view.coin && $0.value >= least })
    }

    /// The fee of this node's current checkpoint attempt, if any.
    public var currentFee: UInt64? { session?.fee }

    /// A validator's co-signed PSBT (see `CheckpointCollector`).
    public mutating func signatureReceived(_ psbt: PSBT) -> [Action] {
        guard var s = session, s.collector.add(psbt) else { return [] }
        session = s
        return finishIfComplete()
    }

    private mutating func finishIfComplete() -> [Action] {
        guard var s = session, let (tx, payload) = s.collector.finish() else { return [] }
        session = s
        return [.broadcast(tx, payload)]
    }

    /// A checkpoint spend of the coin was seen on Bitcoin (this node's, or another
    /// initiator's: whichever Bitcoin keeps). `height` is the consensus height it anchors
    /// if the caller knows it; with `round` it is also found among the recent commits.
    public mutating func seenOnBitcoin(height: UInt64, epoch: UInt64, round: UInt64? = nil, bitcoinHeight: Int) {
        var height = height
        if let round {
            lastCheckpoint = (epoch, round)
            if let event = history.first(where: {
                $0.qc.commitInfo.epoch == epoch && $0.qc.commitInfo.round == round
            }) {
                height = max(height, event.height)
            }
        }
        anchorKnown = height > 0
        checkpointedHeight = max(checkpointedHeight, height)
        history.removeAll { $0.height <= checkpointedHeight }
        bitcoinHeightAtLastCheckpoint = bitcoinHeight
        if let end = pendingEpochEnd, end.height <= height || epoch > end.qc.commitInfo.epoch { pendingEpochEnd = nil }
        session = nil
        lastAttempt = nil
    }
}

/// The co-signatures of one checkpoint request, gathered until they reach the coin's
/// threshold. The initiator keeps one for its own request; every validator keeps one for
/// each request it judged signable, so that a fully signed checkpoint is broadcast even
/// if its initiator withholds it (co-signatures are flooded to every node).
public struct CheckpointCollector: Sendable {
    public let request: CheckpointRequest
    public private(set) var psbt: PSBT
    public private(set) var signers: Set<[UInt8]>
    public let coin: CheckpointCoin
    /// Finalized once (later signatures are ignored).
    public private(set) var done = false

    public init(request: CheckpointRequest, coin: CheckpointCoin) {
        self.request = request
        self.coin = coin
        signers = []
        // The request's own signatures (the initiator's) count only if they verify.
        var unsigned = request.psbt
        for i in unsigned.inputs.indices { unsigned.inputs[i].tapScriptSigs = [:] }
        psbt = unsigned
        _ = add(request.psbt)
    }

    /// Adds the signatures of a co-signed copy. Those for another transaction, from keys
    /// not in the script, already counted, or missing or invalid on any input are
    /// ignored. Returns whether a key was added.
    public mutating func add(_ signed: PSBT) -> Bool {
        guard !done, signed.unsignedTx == psbt.unsignedTx, signed.inputs.count == psbt.inputs.count else {
            return false
        }
        let leafHash = coin.leaf.hash
        var added = false
        for (slot, _) in signed.inputs[0].tapScriptSigs {
            let xonly = Array(slot.prefix(32))
            guard slot.count == 64, Array(slot.suffix(32)) == leafHash, coin.keys.contains(xonly),
                !signers.contains(xonly)
            else { continue }
            // A key counts only with a valid signature on every input.
            let signatures = signed.inputs.map { $0.tapScriptSigs[slot] }
            guard
                signatures.indices.allSatisfy({ i in
                    signatures[i].map { Self.verify($0, key: xonly, psbt: psbt, input: i, leafHash: leafHash) } ?? false
                })
            else { continue }
            for i in signatures.indices { psbt.inputs[i].tapScriptSigs[slot] = signatures[i] }
            signers.insert(xonly)
            added = true
        }
        return added
    }

    /// The finalized transaction and its payload, once the signatures reach the threshold
    /// (only the first time).
    public mutating func finish() -> (BitcoinTransaction, CheckpointPayload)? {
        guard !done, coin.isSatisfied(by: signers), var validated = try? psbt.validated(),
            (try? validated.finalize()) != nil, let tx = try? validated.extract(), tx.outputs.count > 1,
            let payload = try? CheckpointPayload(script: tx.outputs[1].scriptPubKey)
        else { return nil }
        done = true
        return (tx, payload)
    }

    /// A signature must verify: a bad one from a peer would make the finalized
    /// transaction invalid.
    static func verify(_ signature: [UInt8], key: [UInt8], psbt: PSBT, input: Int, leafHash: [UInt8]) -> Bool {
        let spent = psbt.inputs.compactMap(\.witnessUtxo)
        guard spent.count == psbt.inputs.count,
            let digest = try? psbt.unsignedTx.taprootSighash(
                index: input, spent: spent, type: .default, scriptSpend: .init(leafHash: leafHash))
        else { return false }
        return isDefaultSchnorrSignature(signature, by: key, over: digest)
    }
}
