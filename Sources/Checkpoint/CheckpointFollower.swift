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
    /// A spend of the coin seen in the mempool, not confirmed yet.
    public private(set) var unconfirmed: Record?

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

    /// `tx` spends the current coin; `confirmedAt` is its block height if it is in one.
    /// `coinForEpoch` gives an epoch's coin from the validator sets this node has
    /// (nil if it does not know that epoch yet). `initiator` is the validator this node saw
    /// ask for it, if any.
    public mutating func spendSeen(
        _ tx: BitcoinTransaction, confirmedAt: Int?, coinForEpoch: (UInt64) -> CheckpointCoin?,
        initiator: String? = nil
    ) -> Outcome {
        let step = CheckpointChain.verify(
            start: coin, startScript: coinScript, startValue: coinValue, spends: [tx],
            keysForEpoch: { coinForEpoch($0)?.keys })
        guard let entry = step.entries.first else { return .rejected(step.problem ?? "not a checkpoint") }
        if let last, (entry.payload.epoch, entry.payload.round) <= (last.epoch, last.round) {
            return .rejected(
                "\(entry.txid): epoch \(entry.payload.epoch) round \(entry.payload.round) does not follow the last checkpoint"
            )
        }
        guard let own = coinForEpoch(entry.payload.epoch) else {
            return .notYet("epoch \(entry.payload.epoch)'s validators are not known here yet")
        }
        // Output 0 is the same epoch's coin, or the next epoch's when the epoch ended.
        let script = tx.outputs[0].scriptPubKey
        let nextEpoch: UInt64
        if let next = coinForEpoch(entry.payload.epoch + 1), next.scriptPubKey == script {
            nextEpoch = entry.payload.epoch + 1
        } else if own.scriptPubKey == script {
            nextEpoch = entry.payload.epoch
        } else if coinForEpoch(entry.payload.epoch + 1) == nil {
            return .notYet("output 0 is not epoch \(entry.payload.epoch)'s coin; the next epoch is not known here yet")
        } else {
            return .rejected(
                "\(entry.txid): output 0 pays neither epoch \(entry.payload.epoch)'s nor the next epoch's coin")
        }
        var record = Record(
            txid: entry.txid, epoch: entry.payload.epoch, round: entry.payload.round,
            commitStateID: entry.payload.commitStateID.hex, signatures: entry.signatures,
            fee: coinValue - tx.outputs[0].value, bitcoinHeight: confirmedAt, initiator: initiator,
            psbt: Self.finalPSBT(tx, spent: TxOut(value: coinValue, scriptPubKey: coinScript)).base64)
        guard let confirmedAt else {
            if unconfirmed?.txid != record.txid || unconfirmed?.initiator == nil { unconfirmed = record }
            return .inMempool(unconfirmed!)
        }
        if unconfirmed?.txid == record.txid {
            record.initiator = record.initiator ?? unconfirmed?.initiator
        }
        record.bitcoinHeight = confirmedAt
        records.append(record)
        unconfirmed = nil
        coinTxid = entry.txid
        coinVout = 0
        coinValue = tx.outputs[0].value
        coinScriptHex = script.bytes.hex
        coinEpoch = nextEpoch
        return .adopted(record)
    }

    /// The node found the consensus height the last checkpoint anchors (it is not in
    /// the transaction: the node knows it from its own chain).
    public mutating func anchorLast(at height: UInt64) {
        guard !records.isEmpty, height > 0 else { return }
        records[records.count - 1].height = height
    }

    /// The coin was not spent (any more): a mempool spend was replaced or dropped.
    public mutating func unspent() { unconfirmed = nil }

    /// The finalizer's output for `tx` (BIP174: only the UTXO and the final witness left),
    /// built from what Bitcoin carries, so every node has it, not just the initiator.
    static func finalPSBT(_ tx: BitcoinTransaction, spent: TxOut) -> PSBT {
        var unsigned = tx
        unsigned.inputs[0].witness = []
        var psbt = PSBT(unsignedTx: unsigned)
        psbt.inputs[0].witnessUtxo = spent
        psbt.inputs[0].finalScriptWitness = tx.inputs[0].witness
        return psbt
    }
}
