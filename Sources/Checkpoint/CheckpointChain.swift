import Bitcoin
import NodeCrypto

/// The light client's check of the checkpoint chain (`p2pnode checkpoint verify`): from
/// the genesis coin, each checkpoint spends the previous one's output 0, reveals a
/// `multi_a` leaf over sorted keys with k = ⌊2n/3⌋ + 1 that commits to the spent output,
/// and carries a payload whose (epoch, round) moves forward. Where the epoch's validator
/// keys are known (the genesis file; a node's `getepoch`), the revealed keys must be them.
public enum CheckpointChain {
    public struct Entry: Sendable, Equatable {
        public let txid: String
        public let payload: CheckpointPayload
        /// Keys of the coin this checkpoint spent, and how many signed.
        public let keys: [[UInt8]]
        public let signatures: Int
    }

    /// Walks `spends` (in order) from `start`, the genesis coin's outpoint, whose output
    /// is `startScript` holding `startValue`. Every signature is verified (BIP340, script
    /// path). Returns the verified entries and, if the walk stopped, why (the entries
    /// before it are still verified).
    public static func verify(
        start: OutPoint, startScript: Script, startValue: UInt64, spends: [BitcoinTransaction],
        keysForEpoch: (UInt64) -> [[UInt8]]?
    ) -> (entries: [Entry], problem: String?) {
        var coin = start
        var coinScript = startScript
        var coinValue = startValue
        var entries: [Entry] = []
        var last: (epoch: UInt64, round: UInt64)?
        for tx in spends {
            let txid = tx.displayTxid
            guard tx.inputs.count == 1, tx.inputs[0].previousOutput == coin else {
                return (entries, "\(txid) does not spend the checkpoint coin \(coin)")
            }
            let witness = tx.inputs[0].witness
            guard witness.count >= 3, let control = witness.last else {
                return (entries, "\(txid): not a script-path spend")
            }
            let leaf = Script(bytes: witness[witness.count - 2])
            guard let (threshold, keys) = leaf.multiA else { return (entries, "\(txid): the leaf is not multi_a") }
            guard let outputKey = coinScript.witnessProgram?.program, coinScript.isP2TR,
                TaprootOutput.verify(controlBlock: control, leaf: leaf, outputKey: outputKey),
                Array(control[1..<33]) == TaprootOutput.unspendableKey
            else { return (entries, "\(txid): the leaf is not committed in the coin, or the key path is spendable") }
            guard keys == keys.sorted(by: { $0.lexicographicallyPrecedes($1) }),
                threshold == CheckpointCoin.threshold(validators: keys.count)
            else {
                return (entries, "\(txid): threshold \(threshold) of \(keys.count) is not ⌊2n/3⌋+1 over sorted keys")
            }
            let signatures = witness.dropLast(2).filter { !$0.isEmpty }.count
            guard signatures >= threshold, witness.count - 2 == keys.count else {
                return (entries, "\(txid): \(signatures) signatures for a threshold of \(threshold)")
            }
            // The witness lists signatures in reverse key order.
            guard
                let digest = try? tx.taprootSighash(
                    index: 0, spent: [TxOut(value: coinValue, scriptPubKey: coinScript)], type: .default,
                    scriptSpend: .init(leafHash: TapLeaf(script: leaf, version: control[0] & 0xFE).hash))
            else { return (entries, "\(txid): cannot compute its signature hash") }
            for (key, signature) in zip(keys, witness.dropLast(2).reversed()) where !signature.isEmpty {
                guard isDefaultSchnorrSignature(signature, by: key, over: digest) else {
                    return (entries, "\(txid): an invalid signature by \(key.hex.prefix(16))")
                }
            }
            guard tx.outputs.count == 2, let payload = try? CheckpointPayload(script: tx.outputs[1].scriptPubKey) else {
                return (entries, "\(txid): output 1 is not a checkpoint payload")
            }
            if let expected = keysForEpoch(payload.epoch),
                expected.sorted(by: { $0.lexicographicallyPrecedes($1) }) != keys
            {
                return (entries, "\(txid): the coin's keys are not epoch \(payload.epoch)'s validators")
            }
            if let last, (payload.epoch, payload.round) <= (last.epoch, last.round) {
                return (entries, "\(txid): epoch \(payload.epoch) round \(payload.round) does not follow \(last)")
            }
            last = (payload.epoch, payload.round)
            entries.append(Entry(txid: txid, payload: payload, keys: keys, signatures: signatures))
            coin = OutPoint(txid: tx.txid, vout: 0)
            coinScript = tx.outputs[0].scriptPubKey
            coinValue = tx.outputs[0].value
        }
        return (entries, nil)
    }
}
