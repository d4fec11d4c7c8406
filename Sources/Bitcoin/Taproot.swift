import NodeCrypto

/// A tapscript leaf (BIP341): a leaf version and a script.
public struct TapLeaf: Sendable, Hashable {
    /// BIP342 tapscript.
    public static let tapscriptVersion: UInt8 = 0xC0

    public let version: UInt8
    public let script: Script

    public init(script: Script, version: UInt8 = tapscriptVersion) {
        self.version = version
        self.script = script
    }

    /// tagged("TapLeaf", version || compact_size(script) || script).
    public var hash: [UInt8] {
        var w = ByteWriter()
        w.u8(version)
        w.varBytes(script.bytes)
        return Secp256k1.taggedHash("TapLeaf", w.bytes)
    }
}

/// A taproot script tree: leaves and branches (branch hashes sort their children).
public indirect enum TapTree: Sendable, Hashable {
    case leaf(TapLeaf)
    case branch(TapTree, TapTree)

    public var hash: [UInt8] {
        switch self {
        case .leaf(let leaf): return leaf.hash
        case .branch(let a, let b): return Self.branchHash(a.hash, b.hash)
        }
    }

    static func branchHash(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        Secp256k1.taggedHash("TapBranch", a.lexicographicallyPrecedes(b) ? a + b : b + a)
    }

    /// Every leaf with its Merkle path (sibling hashes from the leaf up), left to right.
    public var leavesWithPaths: [(leaf: TapLeaf, path: [[UInt8]])] {
        switch self {
        case .leaf(let leaf): return [(leaf, [])]
        case .branch(let a, let b):
            return a.leavesWithPaths.map { ($0.leaf, $0.path + [b.hash]) }
                + b.leavesWithPaths.map { ($0.leaf, $0.path + [a.hash]) }
        }
    }
}

/// A taproot output: an internal key and an optional script tree.
public struct TaprootOutput: Sendable {
    /// BIP341's provably unspendable internal key H (no known discrete logarithm):
    /// lift_x(SHA256 of the uncompressed secp256k1 generator).
    public static let unspendableKey: [UInt8] = try! Hex.decode(
        "50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0")

    public let internalKey: Secp256k1.XOnlyPublicKey
    public let tree: TapTree?
    public let outputKey: Secp256k1.XOnlyPublicKey
    public let outputKeyOddY: Bool

    public init(internalKey: Secp256k1.XOnlyPublicKey, tree: TapTree? = nil) throws(BitcoinError) {
        self.internalKey = internalKey
        self.tree = tree
        do {
            (outputKey, outputKeyOddY) = try internalKey.taprootOutputKey(merkleRoot: tree?.hash)
        } catch {
            throw BitcoinError("taproot: \(error)")
        }
    }

    public var merkleRoot: [UInt8]? { tree?.hash }
    public var scriptPubKey: Script { .p2tr(outputKey: outputKey.rawRepresentation) }

    public func address(_ network: Network) -> SegwitAddress {
        try! SegwitAddress(network: network, version: 1, program: outputKey.rawRepresentation)
    }

    /// The control block that reveals `leaf` for a script-path spend:
    /// (leaf version | parity of Q) || internal key || Merkle path.
    public func controlBlock(for leaf: TapLeaf) -> [UInt8]? {
        guard let entry = tree?.leavesWithPaths.first(where: { $0.leaf == leaf }) else { return nil }
        return [leaf.version | (outputKeyOddY ? 1 : 0)] + internalKey.rawRepresentation + entry.path.flatMap { $0 }
    }

    /// Checks a control block against an output key for a leaf (BIP341's script-path
    /// verification), independently of how the tree was built.
    public static func verify(controlBlock: [UInt8], leaf script: Script, outputKey: [UInt8]) -> Bool {
        guard controlBlock.count >= 33, (controlBlock.count - 33) % 32 == 0, (controlBlock.count - 33) / 32 <= 128,
            let internalKey = try? Secp256k1.XOnlyPublicKey(rawRepresentation: Array(controlBlock[1..<33]))
        else { return false }
        var hash = TapLeaf(script: script, version: controlBlock[0] & 0xFE).hash
        for i in stride(from: 33, to: controlBlock.count, by: 32) {
            hash = TapTree.branchHash(hash, Array(controlBlock[i..<i + 32]))
        }
        guard let output = try? internalKey.taprootOutputKey(merkleRoot: hash) else { return false }
        return output.key.rawRepresentation == outputKey && output.oddY == (controlBlock[0] & 1 == 1)
    }
}
