/// One key and its value as the tree holds them.
public struct StateLeaf: Sendable, Equatable {
    public let key: [UInt8]
    public let value: [UInt8]
    /// BLAKE2b-256(key): the leaf's path from the root, bit by bit.
    public let keyHash: StateHash
    public let valueHash: StateHash

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
        keyHash = .of(key)
        valueHash = .of(value)
    }

    public var hash: StateHash { .leaf(keyHash: keyHash, valueHash: valueHash) }
}

/// A tree node, shared between versions: an update copies only the path to each changed
/// key, so a state per uncommitted block costs O(changed keys × log n), not a copy.
final class LeafNode: Sendable {
    let leaf: StateLeaf
    let hash: StateHash
    /// The version (block height) that created it: the storage key with its hash.
    let version: UInt64

    init(_ leaf: StateLeaf, version: UInt64) {
        self.leaf = leaf
        hash = leaf.hash
        self.version = version
    }
}

final class InnerNode: Sendable {
    let left: Subtree
    let right: Subtree
    let hash: StateHash
    let count: Int
    let version: UInt64

    init(_ left: Subtree, _ right: Subtree, version: UInt64) {
        self.left = left
        self.right = right
        hash = .inner(left.hash, right.hash)
        count = left.count + right.count
        self.version = version
    }
}

enum Subtree: Sendable {
    case empty
    case leaf(LeafNode)
    case inner(InnerNode)

    var hash: StateHash {
        switch self {
        case .empty: .placeholder
        case .leaf(let l): l.hash
        case .inner(let n): n.hash
        }
    }

    var count: Int {
        switch self {
        case .empty: 0
        case .leaf: 1
        case .inner(let n): n.count
        }
    }

    /// The canonical parent of two subtrees: a subtree holding one leaf is that leaf
    /// itself (so depth grows with log n, not with the 256-bit key), and two empty
    /// halves are empty.
    static func join(_ left: Subtree, _ right: Subtree, version: UInt64) -> Subtree {
        switch (left, right) {
        case (.empty, .empty): .empty
        case (.leaf, .empty): left
        case (.empty, .leaf): right
        default: .inner(InnerNode(left, right, version: version))
        }
    }
}

/// A sparse Merkle tree over 256-bit key hashes (the Jellyfish/Diem design, binary):
/// a leaf's hash is BLAKE2b-256(0x00 ‖ H(key) ‖ H(value)), an inner node's
/// BLAKE2b-256(0x01 ‖ left ‖ right), an empty subtree 32 zero bytes, and a subtree
/// with one leaf is that leaf. The root is the state id; `proof` proves any key range
/// (a prefix of the key-hash space) or single key, present or absent, against it.
public struct SparseMerkleTree: Sendable {
    var root: Subtree = .empty

    public init() {}

    public var rootHash: StateHash { root.hash }
    public var count: Int { root.count }
    public var isEmpty: Bool { root.count == 0 }

    /// The value under `key`, if any.
    public func get(_ key: [UInt8]) -> [UInt8]? { leaf(keyHash: .of(key))?.value }

    public func leaf(keyHash: StateHash) -> StateLeaf? {
        var node = root
        var depth = 0
        while true {
            switch node {
            case .empty: return nil
            case .leaf(let l): return l.leaf.keyHash == keyHash ? l.leaf : nil
            case .inner(let n):
                node = keyHash.bit(depth) ? n.right : n.left
                depth += 1
            }
        }
    }

    /// One change: a value to set, or nil to delete.
    public struct Change: Sendable {
        public let keyHash: StateHash
        public let key: [UInt8]
        public let value: [UInt8]?

        public init(key: [UInt8], value: [UInt8]?) {
            self.key = key
            self.value = value
            keyHash = .of(key)
        }
    }

    /// Applies `changes` (at most one per key) as version `version`. Cost: each changed
    /// key's path, O(changes × log n) hashes.
    public mutating func apply(_ changes: [Change], version: UInt64) {
        guard !changes.isEmpty else { return }
        var sorted = changes.sorted { $0.keyHash < $1.keyHash }
        // Two changes of one key: the later one wins (two leaves with one path cannot be built).
        if zip(sorted, sorted.dropFirst()).contains(where: { $0.keyHash == $1.keyHash }) {
            var last: [StateHash: Change] = [:]
            for c in changes { last[c.keyHash] = c }
            sorted = last.values.sorted { $0.keyHash < $1.keyHash }
        }
        root = Self.update(root, depth: 0, sorted[...], version: version)
    }

    /// Sets or deletes keys (a dictionary guarantees one change per key).
    public mutating func apply(_ changes: [[UInt8]: [UInt8]?], version: UInt64) {
        apply(changes.map { Change(key: $0.key, value: $0.value) }, version: version)
    }

    static func update(_ tree: Subtree, depth: Int, _ changes: ArraySlice<Change>, version: UInt64) -> Subtree {
        guard !changes.isEmpty else { return tree }
        switch tree {
        case .empty:
            let leaves = changes.compactMap { c in
                c.value.map { LeafNode(StateLeaf(key: c.key, value: $0), version: version) }
            }
            return build(leaves[...], depth: depth, version: version)
        case .leaf(let existing):
            // Merge the one leaf with the changes; the result is small.
            var leaves: [LeafNode] = []
            var placed = false
            for c in changes {
                if !placed, existing.leaf.keyHash < c.keyHash {
                    leaves.append(existing)
                    placed = true
                }
                if c.keyHash == existing.leaf.keyHash { placed = true }
                if let v = c.value { leaves.append(LeafNode(StateLeaf(key: c.key, value: v), version: version)) }
            }
            if !placed { leaves.append(existing) }
            return build(leaves[...], depth: depth, version: version)
        case .inner(let node):
            let split = changes.firstIndex { $0.keyHash.bit(depth) } ?? changes.endIndex
            let left = update(node.left, depth: depth + 1, changes[..<split], version: version)
            let right = update(node.right, depth: depth + 1, changes[split...], version: version)
            return Subtree.join(left, right, version: version)
        }
    }

    /// The canonical subtree of sorted leaves that share their first `depth` bits.
    static func build(_ leaves: ArraySlice<LeafNode>, depth: Int, version: UInt64) -> Subtree {
        switch leaves.count {
        case 0: return .empty
        case 1: return .leaf(leaves.first!)
        default:
            // Distinct keys differ within 256 bits (a BLAKE2b collision would be needed otherwise).
            precondition(depth < 256, "two keys with one hash")
            let split = leaves.firstIndex { $0.leaf.keyHash.bit(depth) } ?? leaves.endIndex
            return Subtree.join(
                build(leaves[..<split], depth: depth + 1, version: version),
                build(leaves[split...], depth: depth + 1, version: version), version: version)
        }
    }

    /// Every leaf, in key-hash order.
    public func visitLeaves(_ body: (StateLeaf) throws -> Void) rethrows {
        try Self.walk(root, body)
    }

    static func walk(_ tree: Subtree, _ body: (StateLeaf) throws -> Void) rethrows {
        switch tree {
        case .empty: return
        case .leaf(let l): try body(l.leaf)
        case .inner(let n):
            try walk(n.left, body)
            try walk(n.right, body)
        }
    }

    /// The node where the path to `prefix` (its first `depth` bits) ends: at `depth`, or
    /// higher at a leaf or an empty subtree; with the sibling hashes passed on the way.
    func descend(to prefix: StateHash, depth: Int) -> (node: Subtree, siblings: [StateHash]) {
        var node = root
        var siblings: [StateHash] = []
        while siblings.count < depth, case .inner(let n) = node {
            let right = prefix.bit(siblings.count)
            siblings.append(right ? n.left.hash : n.right.hash)
            node = right ? n.right : n.left
        }
        return (node, siblings)
    }

    /// How many leaves lie under a prefix.
    public func count(under prefix: StateHash, depth: Int) -> Int {
        let (node, siblings) = descend(to: prefix, depth: depth)
        if siblings.count == depth { return node.count }
        if case .leaf(let l) = node, l.leaf.keyHash.sharesPrefix(with: prefix, bits: depth) { return 1 }
        return 0
    }

    /// Every leaf under a prefix (the first `depth` bits of `prefix`) with the proof that
    /// they are all of them, against `rootHash`.
    public func range(prefix: StateHash, depth: Int) -> (leaves: [StateLeaf], proof: RangeProof) {
        precondition((0...256).contains(depth), "a prefix has 0 to 256 bits")
        let prefix = prefix.truncated(toBits: depth)
        let (node, siblings) = descend(to: prefix, depth: depth)
        var leaves: [StateLeaf] = []
        var terminal = RangeProof.Terminal.leaves
        if siblings.count == depth {
            Self.walk(node) { leaves.append($0) }
        } else if case .leaf(let l) = node {
            if l.leaf.keyHash.sharesPrefix(with: prefix, bits: depth) {
                leaves = [l.leaf]
            } else {
                terminal = .otherLeaf(keyHash: l.leaf.keyHash, valueHash: l.leaf.valueHash)
            }
        }
        return (leaves, RangeProof(prefix: prefix, depth: depth, siblings: siblings, terminal: terminal))
    }

    /// The value under `key` (nil if absent) with its proof of membership or absence.
    public func proof(for key: [UInt8]) -> (value: [UInt8]?, proof: RangeProof) {
        let (leaves, proof) = range(prefix: .of(key), depth: 256)
        return (leaves.first?.value, proof)
    }
}
