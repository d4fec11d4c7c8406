import Wire

/// A proof that a list of leaves is exactly the set of keys whose hash starts with a
/// given prefix, under a given root. A single key is the 256-bit prefix: membership is
/// one leaf, absence none. Chunks of a state snapshot are prefixes of a few bits.
///
/// The verifier rebuilds the node where the path to the prefix ends and folds the
/// sibling hashes up to the root:
/// - with one sibling per prefix bit, that node is the canonical subtree of the leaves;
/// - with fewer, the path ended early at a leaf or an empty subtree: the leaves are that
///   one leaf or none, or (`otherLeaf`) a leaf whose key shares only the path's bits,
///   which proves the prefix empty.
public struct RangeProof: Sendable, Equatable {
    public enum Terminal: Sendable, Equatable {
        /// The leaves themselves give the node where the path ends.
        case leaves
        /// The path ends at this leaf, outside the prefix: the range is empty.
        case otherLeaf(keyHash: StateHash, valueHash: StateHash)
    }

    /// Only the first `depth` bits count; the rest are zero.
    public let prefix: StateHash
    public let depth: Int
    /// From the root down, one per level passed (at most `depth`).
    public let siblings: [StateHash]
    public let terminal: Terminal

    public init(prefix: StateHash, depth: Int, siblings: [StateHash], terminal: Terminal) {
        self.prefix = prefix
        self.depth = depth
        self.siblings = siblings
        self.terminal = terminal
    }

    public struct Failure: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Checks that `value` is what `key` holds under `root` (nil: the key is absent).
    public func verify(key: [UInt8], value: [UInt8]?, root: StateHash) throws(Failure) {
        guard depth == 256, prefix == .of(key) else { throw Failure("the proof is for another key") }
        try verify(leaves: value.map { [StateLeaf(key: key, value: $0)] } ?? [], root: root)
    }

    /// Checks that `leaves` are all the keys under the range asked for (the first `depth`
    /// bits of `prefix`) and nothing else, with these values, under `root`.
    public func verify(range prefix: StateHash, depth: Int, leaves: [StateLeaf], root: StateHash) throws(Failure) {
        guard depth == self.depth, (0...256).contains(depth), prefix.truncated(toBits: depth) == self.prefix else {
            throw Failure("the proof is for another range")
        }
        try verify(leaves: leaves, root: root)
    }

    /// Checks that `leaves` are all the keys under this proof's own prefix, under `root`.
    /// A caller must also check that the prefix is the one it asked for (the methods above).
    func verify(leaves: [StateLeaf], root: StateHash) throws(Failure) {
        guard (0...256).contains(depth), siblings.count <= depth else { throw Failure("malformed proof") }
        guard prefix == prefix.truncated(toBits: depth) else { throw Failure("prefix has bits past its depth") }
        var previous: StateHash?
        for leaf in leaves {
            // A leaf's hashes are recomputed here, never taken from the prover.
            let fresh = StateLeaf(key: leaf.key, value: leaf.value)
            guard fresh.keyHash == leaf.keyHash, fresh.valueHash == leaf.valueHash else {
                throw Failure("a leaf's hashes do not match its key and value")
            }
            guard leaf.keyHash.sharesPrefix(with: prefix, bits: depth) else {
                throw Failure("a leaf lies outside the range")
            }
            if let previous, !(previous < leaf.keyHash) { throw Failure("leaves out of order or repeated") }
            previous = leaf.keyHash
        }
        var node: StateHash
        switch terminal {
        case .leaves where siblings.count == depth:
            node = Self.canonical(leaves.map { ($0.keyHash, $0.hash) }[...], depth: depth).hash
        case .leaves:
            guard leaves.count <= 1 else { throw Failure("the path ends at one leaf, not \(leaves.count)") }
            node = leaves.first?.hash ?? .placeholder
        case .otherLeaf(let keyHash, let valueHash):
            guard leaves.isEmpty, siblings.count < depth else { throw Failure("malformed absence proof") }
            guard keyHash.sharesPrefix(with: prefix, bits: siblings.count),
                !keyHash.sharesPrefix(with: prefix, bits: depth)
            else { throw Failure("the other leaf is not where the path ends") }
            node = .leaf(keyHash: keyHash, valueHash: valueHash)
        }
        for level in stride(from: siblings.count - 1, through: 0, by: -1) {
            node = prefix.bit(level) ? .inner(siblings[level], node) : .inner(node, siblings[level])
        }
        guard node == root else { throw Failure("the proof does not lead to the root") }
    }

    enum Shape {
        case empty
        case leaf(StateHash)
        case inner(StateHash)
        var hash: StateHash {
            switch self {
            case .empty: .placeholder
            case .leaf(let h), .inner(let h): h
            }
        }
    }

    /// The canonical subtree hash of sorted leaves sharing their first `depth` bits
    /// (the same shape `SparseMerkleTree.build` makes).
    static func canonical(_ leaves: ArraySlice<(keyHash: StateHash, hash: StateHash)>, depth: Int) -> Shape {
        switch leaves.count {
        case 0: return .empty
        case 1: return .leaf(leaves.first!.hash)
        default:
            guard depth < 256 else { return .inner(.placeholder) }  // only with a repeated key, refused above
            let split = leaves.firstIndex { $0.keyHash.bit(depth) } ?? leaves.endIndex
            let (l, r) = (canonical(leaves[..<split], depth: depth + 1), canonical(leaves[split...], depth: depth + 1))
            switch (l, r) {
            case (.empty, .leaf): return r
            case (.leaf, .empty): return l
            default: return .inner(.inner(l.hash, r.hash))
            }
        }
    }
}

// MARK: Encoding

extension RangeProof {
    /// u16 depth ‖ prefix (32) ‖ u16 n ‖ n × sibling (32) ‖ u8 terminal (0 leaves; 1 other
    /// leaf ‖ key hash ‖ value hash).
    public func encode(_ w: inout WireWriter) {
        w.u16(UInt16(depth))
        w.fixed(prefix.bytes)
        w.u16(UInt16(siblings.count))
        for s in siblings { w.fixed(s.bytes) }
        switch terminal {
        case .leaves: w.u8(0)
        case .otherLeaf(let k, let v):
            w.u8(1)
            w.fixed(k.bytes)
            w.fixed(v.bytes)
        }
    }

    public var encoded: [UInt8] {
        var w = WireWriter(capacity: 40 + siblings.count * 32)
        encode(&w)
        return w.bytes
    }

    public static func decode(_ r: inout WireReader) throws(WireError) -> RangeProof {
        let depth = Int(try r.u16("proof depth"))
        guard depth <= 256 else { throw WireError("proof depth \(depth) over 256") }
        let prefix = try hash(&r)
        let n = Int(try r.u16("sibling count"))
        guard n <= depth else { throw WireError("\(n) siblings for depth \(depth)") }
        var siblings: [StateHash] = []
        siblings.reserveCapacity(n)
        for _ in 0..<n { siblings.append(try hash(&r)) }
        let terminal: Terminal
        switch try r.u8("proof terminal") {
        case 0: terminal = .leaves
        case 1: terminal = .otherLeaf(keyHash: try hash(&r), valueHash: try hash(&r))
        case let t: throw WireError("unknown proof terminal \(t)")
        }
        return RangeProof(prefix: prefix, depth: depth, siblings: siblings, terminal: terminal)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> RangeProof {
        var r = WireReader(bytes)
        let proof = try decode(&r)
        try r.finish()
        return proof
    }

    static func hash(_ r: inout WireReader) throws(WireError) -> StateHash {
        StateHash(bytes: try r.fixed(32, "hash"))!
    }
}

extension StateLeaf {
    /// bytes16 key ‖ bytes32 value.
    public func encode(_ w: inout WireWriter) {
        w.bytes16(key)
        w.bytes32(value)
    }

    public static func decode(_ r: inout WireReader, maxValue: Int) throws(WireError) -> StateLeaf {
        StateLeaf(key: try r.bytes16(max: 1_024, "key"), value: try r.bytes32(max: maxValue, "value"))
    }

    /// Bytes of its encoding (the u16 and u32 lengths included).
    public var encodedSize: Int { key.count + value.count + 6 }

    /// A list of leaves: u32 n ‖ n × leaf (chunks, stored states, a download's kept chunks).
    public static func encode(_ leaves: [StateLeaf], _ w: inout WireWriter) {
        w.u32(UInt32(leaves.count))
        for l in leaves { l.encode(&w) }
    }

    /// A list of at most `maxCount` leaves; a longer one is refused before anything is read.
    public static func decodeList(
        _ r: inout WireReader, maxCount: Int, maxValue: Int
    ) throws(WireError)
        -> [StateLeaf]
    {
        let n = Int(try r.u32("leaf count"))
        guard n <= maxCount else { throw WireError("\(n) leaves, at most \(maxCount)") }
        var leaves: [StateLeaf] = []
        leaves.reserveCapacity(min(n, 4_096))
        for _ in 0..<n { leaves.append(try decode(&r, maxValue: maxValue)) }
        return leaves
    }
}
