import Bitcoin
import NodeCrypto

/// What a checkpoint writes into Bitcoin (docs/wire.md §6): an OP_RETURN of
///
///     "SNCP" (4) | version (1) | epoch (u64 BE) | round (u64 BE) | commit_state_id (32)   = 53 bytes
///
/// the epoch, round and `commit_state_id` of a QC that certifies that state.
public struct CheckpointPayload: Sendable, Equatable {
    public static let magic = Array("SNCP".utf8)
    public static let version: UInt8 = 1
    public static let size = 53

    public let epoch: UInt64
    public let round: UInt64
    public let commitStateID: [UInt8]

    public init(epoch: UInt64, round: UInt64, commitStateID: [UInt8]) throws(BitcoinError) {
        guard commitStateID.count == 32 else { throw BitcoinError("checkpoint: a state id is 32 bytes") }
        self.epoch = epoch
        self.round = round
        self.commitStateID = commitStateID
    }

    public var encoded: [UInt8] {
        var out = Self.magic + [Self.version]
        for shift in stride(from: 56, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: epoch >> UInt64(shift)))
        }
        for shift in stride(from: 56, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: round >> UInt64(shift)))
        }
        return out + commitStateID
    }

    /// `OP_RETURN <53 bytes>` (a 55-byte script: within the 83-byte standard limit).
    public var script: Script { .opReturn(encoded) }

    public init(_ bytes: [UInt8]) throws(BitcoinError) {
        guard bytes.count == Self.size else { throw BitcoinError("checkpoint: \(bytes.count) bytes, not \(Self.size)") }
        guard Array(bytes.prefix(4)) == Self.magic else { throw BitcoinError("checkpoint: no SNCP magic") }
        guard bytes[4] == Self.version else { throw BitcoinError("checkpoint: unknown version \(bytes[4])") }
        func u64(_ at: Int) -> UInt64 { bytes[at..<at + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
        try self.init(epoch: u64(5), round: u64(13), commitStateID: Array(bytes[21...]))
    }

    /// The payload of a checkpoint output script, if it is one.
    public init(script: Script) throws(BitcoinError) {
        let b = script.bytes
        guard b.count == 2 + Self.size, b[0] == Script.Op.return, Int(b[1]) == Self.size else {
            throw BitcoinError("checkpoint: not an OP_RETURN of \(Self.size) bytes")
        }
        try self.init(Array(b[2...]))
    }
}

/// The checkpoint coin of an epoch: a P2TR output with the unspendable internal key H
/// (BIP341's NUMS point) and one leaf `multi_a(k, X1 … Xn)` over the epoch's validators'
/// x-only Bitcoin keys, sorted ascending (as `sortedmulti_a`), k = ⌊2n/3⌋ + 1.
///
/// The threshold counts keys, not voting power: `multi_a` cannot weigh signatures, and a
/// weighted script (Nomic's) is 10–15 % larger. With equal powers — as the genesis and
/// `p2pnode validator add` default to — it is exactly the consensus quorum.
public struct CheckpointCoin: Sendable, Equatable {
    public let keys: [[UInt8]]
    public let threshold: Int
    public let leaf: TapLeaf

    public static func threshold(validators n: Int) -> Int { 2 * n / 3 + 1 }

    public init(keys unsorted: [[UInt8]]) throws(BitcoinError) {
        let keys = unsorted.sorted { $0.lexicographicallyPrecedes($1) }
        guard Set(keys).count == keys.count else { throw BitcoinError("checkpoint coin: a key appears twice") }
        self.keys = keys
        threshold = Self.threshold(validators: keys.count)
        leaf = TapLeaf(script: try Script.multiA(threshold: threshold, keys: keys))
    }

    public var output: TaprootOutput {
        // Both keys are valid by construction (NUMS is a curve point; the leaf hashes).
        try! TaprootOutput(
            internalKey: try! Secp256k1.XOnlyPublicKey(rawRepresentation: TaprootOutput.unspendableKey),
            tree: .leaf(leaf))
    }

    public var scriptPubKey: Script { output.scriptPubKey }
    public var controlBlock: [UInt8] { output.controlBlock(for: leaf)! }
    public var descriptor: String { Descriptor.multiA(threshold: threshold, keys: keys) }
    public func address(_ network: Network) -> String { output.address(network).description }
}

/// A checkpoint transaction: the current coin in, the next coin (output 0) and the
/// OP_RETURN (output 1) out; fee = input − output 0; RBF enabled.
public enum CheckpointTransaction {
    /// The least a P2TR output may hold (Bitcoin Core's dust limit at 3 sat/vB relay).
    public static let dustLimit: UInt64 = 330

    /// An unsigned PSBT with everything a signer needs: the witness UTXO, the leaf script
    /// and control block, the NUMS internal key and the Merkle root.
    public static func psbt(
        spending coin: OutPoint, value: UInt64, of current: CheckpointCoin, to next: CheckpointCoin,
        payload: CheckpointPayload, fee: UInt64
    ) throws(BitcoinError) -> PSBT {
        guard value > fee, value - fee >= dustLimit else {
            throw BitcoinError("checkpoint: the coin's \(value) sats cannot pay a fee of \(fee) and stay above dust")
        }
        let tx = BitcoinTransaction(
            version: 2, inputs: [TxIn(previousOutput: coin, sequence: TxIn.rbfSequence)],
            outputs: [
                TxOut(value: value - fee, scriptPubKey: next.scriptPubKey),
                TxOut(value: 0, scriptPubKey: payload.script),
            ])
        var psbt = PSBT(unsignedTx: tx)
        psbt.inputs[0].witnessUtxo = TxOut(value: value, scriptPubKey: current.scriptPubKey)
        psbt.inputs[0].tapInternalKey = TaprootOutput.unspendableKey
        psbt.inputs[0].tapMerkleRoot = current.output.merkleRoot
        psbt.inputs[0].tapLeafScripts[current.controlBlock] = current.leaf.script.bytes + [current.leaf.version]
        return psbt
    }

    /// The virtual size once signed by exactly k keys: the witness holds k 64-byte
    /// signatures and n − k empty items, the leaf script and the control block.
    public static func virtualSize(current: CheckpointCoin, next: CheckpointCoin) -> Int {
        var tx = BitcoinTransaction(
            version: 2,
            inputs: [TxIn(previousOutput: OutPoint(txid: [UInt8](repeating: 0, count: 32), vout: 0))],
            outputs: [
                TxOut(value: 0, scriptPubKey: next.scriptPubKey),
                TxOut(value: 0, scriptPubKey: .opReturn([UInt8](repeating: 0, count: CheckpointPayload.size))),
            ])
        let signatures = (0..<current.keys.count).map { $0 < current.threshold ? [UInt8](repeating: 1, count: 64) : [] }
        tx.inputs[0].witness = signatures + [current.leaf.script.bytes, current.controlBlock]
        return tx.virtualSize
    }
}

/// Whether `signature` is a 64-byte BIP340 signature (SIGHASH_DEFAULT: checkpoints sign
/// nothing else) by the x-only `key` over `digest`.
func isDefaultSchnorrSignature(_ signature: [UInt8], by key: [UInt8], over digest: [UInt8]) -> Bool {
    guard signature.count == 64, let xonly = try? Secp256k1.XOnlyPublicKey(rawRepresentation: key),
        let sig = try? Secp256k1.SchnorrSignature(rawRepresentation: signature)
    else { return false }
    return xonly.isValidSchnorrSignature(sig, for: digest)
}
