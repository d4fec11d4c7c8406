import Bitcoin
import NodeCrypto

/// What every node follows on Bitcoin, as a pure state machine: the current checkpoint
/// coin and the checkpoints that moved it. The node's follower loop asks esplora who
/// spent the coin (`outspend`) and hands the spending transaction here; it is adopted only
/// once confirmed and only if it verifies like a light client's step (`CheckpointChain`):
/// the coin's leaf, k valid signatures, the keys of the payload's epoch, a payload that
/// moves forward. A spend still in the mempool is reported (it counts as an attempt, so
/// no later leader starts a conflicting one) but the coin stays where it is, so a fee
/// bump spends the same coin.
public struct CheckpointFollower: Sendable, Equatable, Codable {
    /// One checkpoint as this node saw it on Bitcoin.
    public struct Record: Sendable, Equatable, Codable {
        public var txid: String
        public var epoch: UInt64
        public var round: UInt64
        /// Hex of the `commit_state_id` in the OP_RETURN.
        public var commitStateID: String
        public var signatures: Int
        public var fee: UInt64
        /// Bitcoin height of the block that confirmed it; nil while in the mempool.
        public var bitcoinHeight: Int?
        /// The consensus height whose commit it anchors, once the node knows it.
        public var height: UInt64?
        /// Node id of the validator that asked for signatures, when this node saw the request.
        public var initiator: String?
        /// The final PSBT (BIP174, base64): the spent coin as witness UTXO and the witness
        /// Bitcoin carries, so anyone can audit it with another wallet.
        public var psbt: String?
        /// Its virtual size, and the Bitcoin tip when this node first saw it in the mempool
        /// (how long it has waited: any leader bumps it after `bump_after` blocks, also
        /// after a restart).
        public var vsize: Int?
        public var firstSeenAtBitcoinHeight: Int?
        /// The block that confirmed it (display hex): if that block leaves Bitcoin's best
        /// chain, the checkpoint is undone (`orphaned`).
        public var blockHash: String?
        /// The coin it spent, to go back to if it is orphaned.
        public var spent: Coin?
        /// The epoch whose set output 0 pays (this one's, or the next at an epoch's end).
        public var nextEpoch: UInt64?

        /// Satoshis per virtual byte.
        public var feeRate: Double? { vsize.map { Double(fee) / Double(max(1, $0)) } }
    }

    /// A checkpoint coin as followed: display txid, output index, value, script (hex), and
    /// the epoch whose set locks it.
    public struct Coin: Sendable, Equatable, Codable {
        public var txid: String
        public var vout: UInt32
        public var value: UInt64
        public var scriptHex: String
        public var epoch: UInt64
    }

    /// The current coin: display txid, output index, value and script (hex).
    public private(set) var coinTxid: String
    public private(set) var coinVout: UInt32
    public private(set) var coinValue: UInt64
    public private(set) var coinScriptHex: String
    /// The epoch whose validators' script locks the coin (the genesis epoch at first).
    public private(set) var coinEpoch: UInt64
    /// Confirmed checkpoints, oldest first.
    public private(set) var records: [Record] = []
    /// A spend of the coin seen in the mempool (or in a block not yet `depth` deep).
    public private(set) var unconfirmed: Record?
    /// Set when a spend of the coin that our rules reject is buried on Bitcoin: the coin is
    /// gone (valid by Bitcoin's rules, not by the checkpoint rules), so checkpointing stops
    /// until an operator acts (docs/checkpoints.md). Cleared if that spend leaves the chain.
    public private(set) var spendAlarm: String?
    /// Set when an adopted checkpoint contradicts this node's own chain; cleared only if
    /// that checkpoint is orphaned.
    public private(set) var chainAlarm: String?

    /// Why checkpointing is stopped here, if it is.
    public var alarm: String? { chainAlarm ?? spendAlarm }

    private var currentCoin: Coin {
        Coin(txid: coinTxid, vout: coinVout, value: coinValue, scriptHex: coinScriptHex, epoch: coinEpoch)
    }

    public init(coin: OutPoint, value: UInt64, script: Script, epoch: UInt64) {
        coinTxid = coin.displayTxid
        coinVout = coin.vout
        coinValue = value
        coinScriptHex = script.bytes.hex
        coinEpoch = epoch
    }

    public var coin: OutPoint { (try? OutPoint(displayTxid: coinTxid, vout: coinVout)) ?? OutPoint(txid: [], vout: 0) }
    public var coinScript: Script { Script(bytes: (try? Hex.decode(coinScriptHex)) ?? []) }
    public var last: Record? { records.last }

    /// Confirmed checkpoints kept (Bitcoin keeps them all: `checkpoint verify` walks the
    /// coin from genesis). More than a 100-block reorg can undo, few enough that the record
    /// file, rewritten on every change, stays small on a chain that checkpoints every block.
    public static let keptRecords = 1_000

    /// Drops the oldest confirmed checkpoints beyond `count` (at least 1 is kept).
    public mutating func trim(keeping count: Int) {
        let excess = records.count - max(1, count)
        if excess > 0 { records.removeFirst(excess) }
    }

    public enum Outcome: Sendable, Equatable {
        /// Confirmed and verified: the coin moved to its output 0.
        case adopted(Record)
        /// Valid, but still in the mempool.
        case inMempool(Record)
        /// Not a valid checkpoint of this chain (nothing changes; the reason is logged).
        case rejected(String)
        /// The next epoch's validators are not known here yet (this node is behind): ask again later.
        case notYet(String)
    }

    /// `tx` spends the current coin; `confirmedAt` is its block height if it is in one
    /// (`blockHash` that block). It is adopted once `depth` blocks deep by `bitcoinTip`
    /// (1: in a block). `coinForEpoch` gives an epoch's coin from the validator sets this
    /// node has (nil if it does not know that epoch yet). `initiator` is the validator this
    /// node saw ask for it, if any.
    public mutating func spendSeen(
        _ tx: BitcoinTransaction, confirmedAt: Int?, coinForEpoch: (UInt64) -> CheckpointCoin?,
        initiator: String? = nil, bitcoinTip: Int? = nil, blockHash: String? = nil, depth: Int = 1,
        prevouts: [OutPoint: TxOut] = [:]
    ) -> Outcome {
        let deep = confirmedAt.map { height in bitcoinTip.map { $0 - height + 1 >= depth } ?? true } ?? false
        let outcome = judgeSpend(
            tx, confirmedAt: confirmedAt, coinForEpoch: coinForEpoch, initiator: initiator, prevouts: prevouts)
        switch outcome {
        case .rejected(let reason) where deep:
            // Bitcoin buried a spend the rules reject: the coin is lost to checkpointing.
            spendAlarm =
                "\(tx.displayTxid) spent the checkpoint coin \(coinTxid):\(coinVout) against the rules: \(reason)"
            return outcome
        case .rejected, .notYet, .adopted:
            return outcome
        case .inMempool(var record):
            guard let confirmedAt else {
                if let seen = unconfirmed, seen.txid == record.txid {
                    // Seen before: it has waited since then.
                    record.firstSeenAtBitcoinHeight = seen.firstSeenAtBitcoinHeight ?? bitcoinTip
                    record.initiator = record.initiator ?? seen.initiator
                } else {
                    record.firstSeenAtBitcoinHeight = bitcoinTip
                }
                unconfirmed = record
                return .inMempool(record)
            }
            record.initiator = record.initiator ?? (unconfirmed?.txid == record.txid ? unconfirmed?.initiator : nil)
            record.bitcoinHeight = confirmedAt
            record.blockHash = blockHash
            guard deep else {
                // In a block, not yet deep enough: still an attempt in flight.
                record.firstSeenAtBitcoinHeight =
                    unconfirmed?.txid == record.txid ? unconfirmed?.firstSeenAtBitcoinHeight : bitcoinTip
                unconfirmed = record
                return .inMempool(record)
            }
            record.spent = currentCoin
            records.append(record)
            trim(keeping: Self.keptRecords)
            unconfirmed = nil
            coinTxid = record.txid
            coinVout = 0
            coinValue = tx.outputs[0].value
            coinScriptHex = tx.outputs[0].scriptPubKey.bytes.hex
            coinEpoch = record.nextEpoch ?? record.epoch
            return .adopted(record)
        }
    }

    /// The node found the adopted checkpoint at odds with its own chain (another state id
    /// for that QC): checkpointing stops here as for a spend against the rules.
    public mutating func raiseAlarm(_ reason: String) {
        if chainAlarm == nil { chainAlarm = reason }
    }

    /// The last checkpoint's block left Bitcoin's best chain (a reorg), or it is no
    /// longer in any block: the coin goes back to the one it spent. Returns the undone record.
    public mutating func orphaned() -> Record? {
        guard let record = records.last, let spent = record.spent else { return nil }
        records.removeLast()
        coinTxid = spent.txid
        coinVout = spent.vout
        coinValue = spent.value
        coinScriptHex = spent.scriptHex
        coinEpoch = spent.epoch
        unconfirmed = nil
        spendAlarm = nil
        chainAlarm = nil
        return record
    }

    /// The last checkpoint is in block `hash` at `height` now (re-mined after a reorg).
    public mutating func reconfirmedLast(height: Int, hash: String) {
        guard !records.isEmpty else { return }
        records[records.count - 1].bitcoinHeight = height
        records[records.count - 1].blockHash = hash
    }

    /// Verifies `tx` as the next checkpoint; a valid one comes back as `.inMempool` with
    /// its record (the caller decides on adoption) and `nextEpoch` set.
    private func judgeSpend(
        _ tx: BitcoinTransaction, confirmedAt: Int?, coinForEpoch: (UInt64) -> CheckpointCoin?, initiator: String?,
        prevouts: [OutPoint: TxOut]
    ) -> Outcome {
        let step = CheckpointChain.verify(
            start: coin, startScript: coinScript, startValue: coinValue, startEpoch: coinEpoch, spends: [tx],
            coinForEpoch: coinForEpoch, prevouts: prevouts)
        guard let entry = step.entries.first else { return .rejected(step.problem ?? "not a checkpoint") }
        guard let payload = entry.payload else {
            // Valid, but the coin has left checkpointing (its keys' recovery path).
            return .rejected(
                "\(entry.txid) moved the coin through the recovery leaf (\(entry.signatures) keys, after \(entry.recoveryBlocks ?? 0) blocks)"
            )
        }
        if let last, (payload.epoch, payload.round) <= (last.epoch, last.round) {
            return .rejected(
                "\(entry.txid): epoch \(payload.epoch) round \(payload.round) does not follow the last checkpoint"
            )
        }
        guard let own = coinForEpoch(payload.epoch) else {
            return .notYet("epoch \(payload.epoch)'s validators are not known here yet")
        }
        // Output 0 is the same epoch's coin, or the next epoch's when the epoch ended.
        let script = tx.outputs[0].scriptPubKey
        let nextEpoch: UInt64
        // The payload's own epoch first: an unchanged set locks both epochs with one script.
        if own.scriptPubKey == script {
            nextEpoch = payload.epoch
        } else if let next = coinForEpoch(payload.epoch + 1), next.scriptPubKey == script {
            nextEpoch = payload.epoch + 1
        } else if coinForEpoch(payload.epoch + 1) == nil {
            return .notYet("output 0 is not epoch \(payload.epoch)'s coin; the next epoch is not known here yet")
        } else {
            return .rejected(
                "\(entry.txid): output 0 pays neither epoch \(payload.epoch)'s nor the next epoch's coin")
        }
        // Saturating: the top-ups' values come from an esplora server, which may lie.
        let spent = coinValue.addingReportingOverflow(entry.toppedUp)
        let fee =
            spent.overflow || spent.partialValue < tx.outputs[0].value ? 0 : spent.partialValue - tx.outputs[0].value
        var record = Record(
            txid: entry.txid, epoch: payload.epoch, round: payload.round,
            commitStateID: payload.commitStateID.hex, signatures: entry.signatures,
            fee: fee, bitcoinHeight: nil, initiator: initiator,
            psbt: Self.finalPSBT(
                tx,
                spent: [TxOut(value: coinValue, scriptPubKey: coinScript)]
                    + tx.inputs.dropFirst().compactMap { prevouts[$0.previousOutput] }
            ).base64,
            vsize: tx.virtualSize)
        record.nextEpoch = nextEpoch
        return .inMempool(record)
    }

    /// The node found the consensus height the last checkpoint anchors (it is not in
    /// the transaction: the node knows it from its own chain).
    public mutating func anchorLast(at height: UInt64) {
        guard !records.isEmpty, height > 0 else { return }
        records[records.count - 1].height = height
    }

    /// The coin was not spent (any more): a mempool spend was replaced or dropped, or a
    /// rejected spend left the chain.
    public mutating func unspent() {
        unconfirmed = nil
        spendAlarm = nil
    }

    /// The finalizer's output for `tx` (BIP174: only the UTXO and the final witness left),
    /// built from what Bitcoin carries, so every node has it, not just the initiator.
    static func finalPSBT(_ tx: BitcoinTransaction, spent: [TxOut]) -> PSBT {
        var unsigned = tx
        for i in unsigned.inputs.indices { unsigned.inputs[i].witness = [] }
        var psbt = PSBT(unsignedTx: unsigned)
        for (i, output) in spent.enumerated() where i < psbt.inputs.count {
            psbt.inputs[i].witnessUtxo = output
            psbt.inputs[i].finalScriptWitness = tx.inputs[i].witness
        }
        return psbt
    }
}
