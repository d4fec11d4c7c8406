import Bitcoin
import NodeCrypto

/// The light client's check of the checkpoint chain (`p2pnode checkpoint verify`): from
/// the genesis coin, each checkpoint spends the previous one's output 0 through the main
/// leaf of the coin (NUMS internal key; `multi_a` with k = ⌊2n/3⌋ + 1 over sorted keys, or
/// the weighted leaf with more than two thirds of the weight) with enough valid
/// signatures, and carries a payload whose (epoch, round) moves forward and whose epoch is
/// not before the coin's. Where an epoch's coin is known (the genesis file; a node's
/// `getepoch`), the spent output must be exactly the coin of the epoch the walk has
/// reached (output 0 pays the payload epoch's set, or the next one's at an epoch's end). A spend through the recovery leaf (a relative timelock) ends the walk: the
/// coin has left checkpointing, and the entry says so.
public enum CheckpointChain {
    public struct Entry: Sendable, Equatable {
        public let txid: String
        /// nil for a recovery spend (it carries no checkpoint).
        public let payload: CheckpointPayload?
        /// Keys of the coin this checkpoint spent, and how many signed.
        public let keys: [[UInt8]]
        public let signatures: Int
        /// Spent through the recovery leaf after `recoveryBlocks` blocks.
        public var recoveryBlocks: UInt32?
        /// Sats it swept in from top-ups.
        public var toppedUp: UInt64 = 0
    }

    /// Walks `spends` (in order) from `start`, the genesis coin's outpoint, whose output
    /// is `startScript` holding `startValue`. Every signature is verified (BIP340, script
    /// path). `coinForEpoch` gives the coin an epoch's validators lock, where known.
    /// Returns the verified entries and, if the walk stopped, why (the entries before it
    /// are still verified).
    ///
    /// A checkpoint may sweep top-ups (outputs paid to the coin's script) in as extra
    /// inputs; their outputs come from `prevouts` (BIP341 signatures commit to every spent
    /// output, so they are needed to check the coin's signatures at all).
    public static func verify(
        start: OutPoint, startScript: Script, startValue: UInt64, startEpoch: UInt64 = 1,
        spends: [BitcoinTransaction], coinForEpoch: (UInt64) -> CheckpointCoin?, prevouts: [OutPoint: TxOut] = [:]
    ) -> (entries: [Entry], problem: String?) {
        // The epoch whose set locks the coin (nil once it cannot be told: an epoch whose
        // validators are not known here).
        var coinEpoch: UInt64? = startEpoch
        var coin = start
        var coinScript = startScript
        var coinValue = startValue
        var entries: [Entry] = []
        var last: (epoch: UInt64, round: UInt64)?
        for tx in spends {
            let txid = tx.displayTxid
            guard !tx.inputs.isEmpty, tx.inputs[0].previousOutput == coin else {
                return (entries, "\(txid) does not spend the checkpoint coin \(coin)")
            }
            var spent = [TxOut(value: coinValue, scriptPubKey: coinScript)]
            for input in tx.inputs.dropFirst() {
                guard let prevout = prevouts[input.previousOutput] else {
                    return (entries, "\(txid): the output its input \(input.previousOutput) spends is not known here")
                }
                guard prevout.scriptPubKey == coinScript else {
                    return (entries, "\(txid): an extra input that is not a top-up of the coin")
                }
                spent.append(prevout)
            }
            let witness = tx.inputs[0].witness
            guard witness.count >= 3, let control = witness.last else {
                return (entries, "\(txid): not a script-path spend")
            }
            let leaf = Script(bytes: witness[witness.count - 2])
            guard let script = ThresholdScript(script: leaf) else {
                return (entries, "\(txid): the leaf is not a threshold script (multi_a or weighted)")
            }
            guard let outputKey = coinScript.witnessProgram?.program, coinScript.isP2TR,
                TaprootOutput.verify(controlBlock: control, leaf: leaf, outputKey: outputKey),
                Array(control[1..<33]) == TaprootOutput.unspendableKey
            else { return (entries, "\(txid): the leaf is not committed in the coin, or the key path is spendable") }
            let keys = script.keys
            guard keys == keys.sorted(by: { $0.lexicographicallyPrecedes($1) }), witness.count - 2 == keys.count else {
                return (entries, "\(txid): the keys are not sorted, or the witness does not match them")
            }
            // The witness lists signatures in reverse key order.
            guard
                let digest = try? tx.taprootSighash(
                    index: 0, spent: spent, type: .default,
                    scriptSpend: .init(leafHash: TapLeaf(script: leaf, version: control[0] & 0xFE).hash))
            else { return (entries, "\(txid): cannot compute its signature hash") }
            var signatures = 0
            var weight: UInt64 = 0
            for (index, signature) in witness.dropLast(2).reversed().enumerated() where !signature.isEmpty {
                guard isDefaultSchnorrSignature(signature, by: keys[index], over: digest) else {
                    return (entries, "\(txid): an invalid signature by \(keys[index].hex.prefix(16))")
                }
                signatures += 1
                weight += script.weight(ofKeyAt: index)
            }
            guard weight >= script.threshold else {
                return (entries, "\(txid): signatures of weight \(weight) for a threshold of \(script.threshold)")
            }
            if let blocks = script.olderBlocks {
                // The recovery leaf: more than a third, after the coin sat unspent for `blocks`.
                guard script.threshold == CheckpointCoin.recoveryThreshold(total: script.totalWeight) else {
                    return (entries, "\(txid): a timelocked leaf whose threshold is not more than a third")
                }
                entries.append(
                    Entry(txid: txid, payload: nil, keys: keys, signatures: signatures, recoveryBlocks: blocks))
                return (entries, nil)
            }
            guard script.threshold == CheckpointCoin.threshold(total: script.totalWeight) else {
                return (
                    entries,
                    "\(txid): threshold \(script.threshold) of \(script.totalWeight) is not more than two thirds"
                )
            }
            guard tx.outputs.count == 2, let payload = try? CheckpointPayload(script: tx.outputs[1].scriptPubKey) else {
                return (entries, "\(txid): output 1 is not a checkpoint payload")
            }
            // No chain reaches the last epoch number; refusing it keeps `epoch + 1` below.
            guard payload.epoch < UInt64.max else {
                return (entries, "\(txid): epoch \(payload.epoch) is out of range")
            }
            // The coin's set checkpoints its own epoch or a later one (a set that fell behind
            // hands the coin straight to the latest set), never an earlier one.
            if let epoch = coinEpoch {
                if let expected = coinForEpoch(epoch), expected.scriptPubKey != coinScript {
                    return (entries, "\(txid): the coin it spends is not epoch \(epoch)'s validators' coin")
                }
                guard payload.epoch >= epoch else {
                    return (entries, "\(txid): epoch \(payload.epoch) is before the coin's epoch \(epoch)")
                }
            }
            if let last, (payload.epoch, payload.round) <= (last.epoch, last.round) {
                return (entries, "\(txid): epoch \(payload.epoch) round \(payload.round) does not follow \(last)")
            }
            // Output 0 pays the payload epoch's set, or the next one's at an epoch's end.
            // The payload's own epoch first: an unchanged set locks both with one script, and
            // the coin must not be taken to be ahead of the epochs it may still checkpoint.
            let candidates = [payload.epoch, payload.epoch + 1]
            let next = candidates.first { coinForEpoch($0)?.scriptPubKey == tx.outputs[0].scriptPubKey }
            if next == nil, candidates.allSatisfy({ coinForEpoch($0) != nil }) {
                return (
                    entries,
                    "\(txid): output 0 pays neither epoch \(payload.epoch)'s nor epoch \(payload.epoch + 1)'s coin"
                )
            }
            last = (payload.epoch, payload.round)
            var entry = Entry(txid: txid, payload: payload, keys: keys, signatures: signatures)
            entry.toppedUp = spent.dropFirst().reduce(0) { $0 &+ $1.value }
            entries.append(entry)
            coin = OutPoint(txid: tx.txid, vout: 0)
            coinScript = tx.outputs[0].scriptPubKey
            coinValue = tx.outputs[0].value
            coinEpoch = next
        }
        return (entries, nil)
    }
}
