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
/// (BIP341's NUMS point) and a script tree over the epoch's validators' x-only Bitcoin
/// keys, sorted ascending (as `sortedmulti_a`):
///
/// - the main leaf, more than two thirds of the voting power: `multi_a(k, …)` with
///   k = ⌊2n/3⌋ + 1 when every power is equal, else a weighted leaf (`ThresholdScript`)
///   where each signing key adds its power and the sum must reach ⌊2W/3⌋ + 1 (`multi_a`
///   counts keys: with unequal powers k low-power keys could move the coin);
/// - optionally (genesis `checkpoint.recovery_blocks`), a recovery leaf: the same keys
///   with more than a third of the power, after the coin has been unspent for that many
///   blocks (`and_v(v:older(T), multi_a(⌊n/3⌋+1, …))`, or weighted). Only the epoch's own
///   validators can move the coin, as the design says; the recovery leaf keeps it from
///   being locked forever when too many of them lose their keys or go silent
///   (Nomic's emergency disbursal is the anchor).
///
/// Powers are weights in the script; if they add up to 2^31 or more they are scaled down
/// by a power of two (each at least 1) so that every `OP_ADD` takes 4-byte numbers.
public struct CheckpointCoin: Sendable, Equatable {
    /// The recovery leaf and its relative timelock.
    public struct Recovery: Sendable, Equatable {
        public let script: ThresholdScript
        public let leaf: TapLeaf
        public var blocks: UInt32 { script.olderBlocks ?? 0 }
    }

    /// Sorted x-only keys; `weights` aligned with them (nil: equal powers, `multi_a`).
    public let keys: [[UInt8]]
    public let weights: [UInt64]?
    public let main: ThresholdScript
    public let leaf: TapLeaf
    public let recovery: Recovery?

    public static func threshold(validators n: Int) -> Int { 2 * n / 3 + 1 }
    /// More than two thirds of `total`; more than a third for the recovery leaf.
    public static func threshold(total: UInt64) -> UInt64 { 2 * total / 3 + 1 }
    public static func recoveryThreshold(total: UInt64) -> UInt64 { total / 3 + 1 }

    /// Equal powers.
    public init(keys: [[UInt8]], recoveryBlocks: UInt32? = nil) throws(BitcoinError) {
        try self.init(validators: keys.map { ($0, 1) }, recoveryBlocks: recoveryBlocks)
    }

    public init(validators: [(key: [UInt8], power: UInt64)], recoveryBlocks: UInt32? = nil) throws(BitcoinError) {
        let sorted = validators.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        let keys = sorted.map(\.key)
        guard Set(keys).count == keys.count else { throw BitcoinError("checkpoint coin: a key appears twice") }
        guard sorted.allSatisfy({ $0.power >= 1 }) else { throw BitcoinError("checkpoint coin: a power of 0") }
        self.keys = keys
        let powers = sorted.map(\.power)
        if Set(powers).count <= 1 {
            weights = nil
        } else {
            var shift: UInt64 = 0
            func scaled() -> [UInt64] { powers.map { max(1, $0 >> shift) } }
            while scaled().reduce(0, { $0 &+ $1 }) > ThresholdScript.maxTotalWeight
                || scaled().contains(where: { $0 > ThresholdScript.maxTotalWeight })
            {
                shift += 1
            }
            weights = scaled()
        }
        let total = weights?.reduce(0, +) ?? UInt64(keys.count)
        main = try ThresholdScript(keys: keys, weights: weights, threshold: Self.threshold(total: total))
        leaf = TapLeaf(script: main.script)
        if let recoveryBlocks {
            let script = try ThresholdScript(
                keys: keys, weights: weights, threshold: Self.recoveryThreshold(total: total),
                olderBlocks: recoveryBlocks)
            recovery = Recovery(script: script, leaf: TapLeaf(script: script.script))
        } else {
            recovery = nil
        }
    }

    /// The main leaf's threshold: signatures for `multi_a`, power for a weighted leaf.
    public var threshold: Int { Int(main.threshold) }

    /// Whether these keys' signatures reach the main leaf's threshold.
    public func isSatisfied(by signers: Set<[UInt8]>) -> Bool { main.weight(of: signers) >= main.threshold }

    /// The most signatures the main leaf may need (`ThresholdScript.signaturesNeeded`).
    public var signaturesNeeded: Int { main.signaturesNeeded }

    public var tree: TapTree {
        guard let recovery else { return .leaf(leaf) }
        return .branch(.leaf(leaf), .leaf(recovery.leaf))
    }

    public var output: TaprootOutput {
        // Both keys are valid by construction (NUMS is a curve point; the leaves hash).
        try! TaprootOutput(
            internalKey: try! Secp256k1.XOnlyPublicKey(rawRepresentation: TaprootOutput.unspendableKey), tree: tree)
    }

    public var scriptPubKey: Script { output.scriptPubKey }
    public var controlBlock: [UInt8] { output.controlBlock(for: leaf)! }
    public var recoveryControlBlock: [UInt8]? { recovery.flatMap { output.controlBlock(for: $0.leaf) } }
    /// The output descriptor (BIP386 `tr` with miniscript leaves, BIP380 checksum); nil for
    /// a weighted coin, which no descriptor can express.
    public var descriptor: String? {
        guard weights == nil else { return nil }
        return Descriptor.checkpointCoin(
            threshold: threshold, keys: keys,
            recovery: recovery.map { (Int($0.script.threshold), $0.blocks) })
    }
    public func address(_ network: Network) -> String { output.address(network).description }
}

/// A checkpoint transaction: the current coin in (then any top-ups paid to its script),
/// the next coin (output 0) and the OP_RETURN (output 1) out; fee = inputs − output 0;
/// RBF enabled.
public enum CheckpointTransaction {
    /// The least a P2TR output may hold (Bitcoin Core's dust limit at 3 sat/vB relay).
    public static let dustLimit: UInt64 = 330

    /// At most this many top-ups are swept into one checkpoint (each adds an input signed
    /// by k keys; the rest wait for the next one).
    public static let maxTopUps = 10

    /// The least a top-up must hold to be swept in: what its own input costs at the
    /// genesis fee cap (each swept input carries a full k-signature witness). Dust paid
    /// to the coin's script would otherwise cost the coin more than it brings.
    public static func minimumTopUp(_ coin: CheckpointCoin, maxFeeRate: Double) -> UInt64 {
        let marginal = virtualSize(current: coin, next: coin, topUps: 1) - virtualSize(current: coin, next: coin)
        return UInt64(min((Double(marginal) * maxFeeRate).rounded(.up), Double(UInt64.max / 2)))
    }

    /// Top-ups in the order a checkpoint spends them (after the coin): by txid, then
    /// output index, so every validator builds the same transaction.
    public static func ordered(_ topUps: [OutPoint: UInt64]) -> [(OutPoint, UInt64)] {
        topUps.sorted {
            $0.key.txid == $1.key.txid ? $0.key.vout < $1.key.vout : $0.key.txid.lexicographicallyPrecedes($1.key.txid)
        }.prefix(maxTopUps).map { ($0.key, $0.value) }
    }

    /// An unsigned PSBT with everything a signer needs: the witness UTXO, the leaf script
    /// and control block, the NUMS internal key and the Merkle root. `topUps` (outputs
    /// someone paid to the coin's script) are swept in as extra inputs, in `ordered` order,
    /// and their value joins output 0.
    public static func psbt(
        spending coin: OutPoint, value: UInt64, of current: CheckpointCoin, to next: CheckpointCoin,
        payload: CheckpointPayload, fee: UInt64, topUps: [(OutPoint, UInt64)] = []
    ) throws(BitcoinError) -> PSBT {
        let total = topUps.reduce(value) { $0 &+ $1.1 }
        guard total >= value, total > fee, total - fee >= dustLimit else {
            throw BitcoinError("checkpoint: the coin's \(total) sats cannot pay a fee of \(fee) and stay above dust")
        }
        let spent = [(coin, value)] + topUps
        let tx = BitcoinTransaction(
            version: 2, inputs: spent.map { TxIn(previousOutput: $0.0, sequence: TxIn.rbfSequence) },
            outputs: [
                TxOut(value: total - fee, scriptPubKey: next.scriptPubKey),
                TxOut(value: 0, scriptPubKey: payload.script),
            ])
        var psbt = PSBT(unsignedTx: tx)
        for (i, input) in spent.enumerated() {
            psbt.inputs[i].witnessUtxo = TxOut(value: input.1, scriptPubKey: current.scriptPubKey)
            psbt.inputs[i].tapInternalKey = TaprootOutput.unspendableKey
            psbt.inputs[i].tapMerkleRoot = current.output.merkleRoot
            psbt.inputs[i].tapLeafScripts[current.controlBlock] = current.leaf.script.bytes + [current.leaf.version]
        }
        return psbt
    }

    /// The recovery spend (`p2pnode checkpoint recover`): the whole coin less `fee` to
    /// `destination` through the recovery leaf. Version 2 and nSequence = the leaf's
    /// blocks (BIP68), so Bitcoin accepts it only once the coin has been unspent that long.
    public static func recoveryPSBT(
        spending coin: OutPoint, value: UInt64, of current: CheckpointCoin, to destination: Script, fee: UInt64
    ) throws(BitcoinError) -> PSBT {
        guard let recovery = current.recovery, let control = current.recoveryControlBlock else {
            throw BitcoinError("checkpoint: this coin has no recovery leaf (genesis checkpoint.recovery_blocks)")
        }
        guard value > fee, value - fee >= dustLimit else {
            throw BitcoinError("checkpoint: the coin's \(value) sats cannot pay a fee of \(fee) and stay above dust")
        }
        let tx = BitcoinTransaction(
            version: 2, inputs: [TxIn(previousOutput: coin, sequence: recovery.blocks)],
            outputs: [TxOut(value: value - fee, scriptPubKey: destination)])
        var psbt = PSBT(unsignedTx: tx)
        psbt.inputs[0].witnessUtxo = TxOut(value: value, scriptPubKey: current.scriptPubKey)
        psbt.inputs[0].tapInternalKey = TaprootOutput.unspendableKey
        psbt.inputs[0].tapMerkleRoot = current.output.merkleRoot
        psbt.inputs[0].tapLeafScripts[control] = recovery.leaf.script.bytes + [recovery.leaf.version]
        return psbt
    }

    /// The virtual size of a recovery spend to a P2TR address with the most signatures the
    /// recovery leaf may need.
    public static func recoveryVirtualSize(_ current: CheckpointCoin) -> Int {
        guard let recovery = current.recovery, let control = current.recoveryControlBlock else { return 0 }
        return signedSize(
            inputs: 1, outputs: [TxOut(value: 0, scriptPubKey: .p2tr(outputKey: [UInt8](repeating: 0, count: 32)))],
            script: recovery.script, leaf: recovery.leaf, control: control)
    }

    /// The virtual size once signed by k keys (for a weighted leaf, the most it may take:
    /// `signaturesNeeded`): the witness holds k 64-byte signatures and n − k empty items,
    /// the leaf script and the control block.
    public static func virtualSize(current: CheckpointCoin, next: CheckpointCoin, topUps: Int = 0) -> Int {
        signedSize(
            inputs: 1 + topUps,
            outputs: [
                TxOut(value: 0, scriptPubKey: next.scriptPubKey),
                TxOut(value: 0, scriptPubKey: .opReturn([UInt8](repeating: 0, count: CheckpointPayload.size))),
            ], script: current.main, leaf: current.leaf, control: current.controlBlock)
    }

    /// A stand-in spending `inputs` coins through `leaf`, each witness with the most
    /// signatures `script` may need, to measure its size.
    private static func signedSize(
        inputs: Int, outputs: [TxOut], script: ThresholdScript, leaf: TapLeaf, control: [UInt8]
    ) -> Int {
        let needed = script.signaturesNeeded
        let signatures = (0..<script.keys.count).map { $0 < needed ? [UInt8](repeating: 1, count: 64) : [] }
        let input = TxIn(
            previousOutput: OutPoint(txid: [UInt8](repeating: 0, count: 32), vout: 0),
            witness: signatures + [leaf.script.bytes, control])
        return BitcoinTransaction(version: 2, inputs: Array(repeating: input, count: inputs), outputs: outputs)
            .virtualSize
    }
}

/// Whether `signature` is a 64-byte BIP340 signature (SIGHASH_DEFAULT: checkpoints sign
/// nothing else) by the x-only `key` over `digest`.
public func isDefaultSchnorrSignature(_ signature: [UInt8], by key: [UInt8], over digest: [UInt8]) -> Bool {
    guard signature.count == 64, let xonly = try? Secp256k1.XOnlyPublicKey(rawRepresentation: key),
        let sig = try? Secp256k1.SchnorrSignature(rawRepresentation: signature)
    else { return false }
    return xonly.isValidSchnorrSignature(sig, for: digest)
}
