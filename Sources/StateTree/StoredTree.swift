import Wire

/// A reference to a stored node: its kind, the version that created it and its hash
/// (the storage key is version ‖ hash, as in Jellyfish's node keys, so a node that is
/// recreated later is a new row and pruning never deletes a live one).
///
///     ref   = u8 kind (0 empty | 1 leaf | 2 inner) ‖ [u64 version ‖ hash (32)]
///     leaf  = u8 0 ‖ bytes16 key ‖ bytes32 value
///     inner = u8 1 ‖ ref left ‖ ref right
public struct NodeRef: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case empty = 0
        case leaf = 1
        case inner = 2
    }
    public let kind: Kind
    public let version: UInt64
    public let hash: StateHash

    public static let empty = NodeRef(kind: .empty, version: 0, hash: .placeholder)

    init(kind: Kind, version: UInt64, hash: StateHash) {
        self.kind = kind
        self.version = version
        self.hash = hash
    }

    init(_ tree: Subtree) {
        switch tree {
        case .empty: self = .empty
        case .leaf(let l): self.init(kind: .leaf, version: l.version, hash: l.hash)
        case .inner(let n): self.init(kind: .inner, version: n.version, hash: n.hash)
        }
    }

    public func encode(_ w: inout WireWriter) {
        w.u8(kind.rawValue)
        guard kind != .empty else { return }
        w.u64(version)
        w.fixed(hash.bytes)
    }

    public var encoded: [UInt8] {
        var w = WireWriter(capacity: 41)
        encode(&w)
        return w.bytes
    }

    public static func decode(_ r: inout WireReader) throws(WireError) -> NodeRef {
        guard let kind = Kind(rawValue: try r.u8("node kind")) else { throw WireError("unknown node kind") }
        guard kind != .empty else { return .empty }
        return NodeRef(kind: kind, version: try r.u64("node version"), hash: try RangeProof.hash(&r))
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> NodeRef {
        var r = WireReader(bytes)
        let ref = try decode(&r)
        try r.finish()
        return ref
    }
}

/// The largest value a stored leaf may hold (a contract's code is kept outside the tree).
public let maxStateValueBytes = 1 << 24

/// A node as stored.
public enum StoredNode: Sendable, Equatable {
    case leaf(StateLeaf)
    case inner(left: NodeRef, right: NodeRef)

    public var encoded: [UInt8] {
        var w = WireWriter(capacity: 96)
        switch self {
        case .leaf(let leaf):
            w.u8(0)
            leaf.encode(&w)
        case .inner(let left, let right):
            w.u8(1)
            left.encode(&w)
            right.encode(&w)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> StoredNode {
        var r = WireReader(bytes)
        let node: StoredNode
        switch try r.u8("node tag") {
        case 0: node = .leaf(try StateLeaf.decode(&r, maxValue: maxStateValueBytes))
        case 1: node = .inner(left: try NodeRef.decode(&r), right: try NodeRef.decode(&r))
        case let t: throw WireError("unknown node tag \(t)")
        }
        try r.finish()
        return node
    }

    /// The hash this node has, recomputed from its body.
    var hash: StateHash {
        switch self {
        case .leaf(let leaf): leaf.hash
        case .inner(let l, let r): .inner(l.hash, r.hash)
        }
    }
}

/// What to write for a new persisted version: the nodes created since the last one,
/// the nodes of the last one this version no longer uses (stale from this version on),
/// and the root.
public struct TreeDelta: Sendable {
    public var version: UInt64
    public var root: NodeRef
    public var nodes: [(version: UInt64, hash: StateHash, body: [UInt8])] = []
    public var stale: [(version: UInt64, hash: StateHash)] = []
}

public struct StoredTreeError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension SparseMerkleTree {
    /// The root's reference (what a store keeps per version).
    public var rootRef: NodeRef { NodeRef(root) }

    /// The writes that take a store holding `persisted` (at version `persistedVersion`;
    /// nil: an empty store) to this tree as `version`. Cost: the nodes that differ.
    public func delta(from persisted: SparseMerkleTree?, persistedVersion: UInt64?, version: UInt64) -> TreeDelta {
        var delta = TreeDelta(version: version, root: rootRef)
        // A node created after the persisted version is new; one from before it is
        // stored already, with its whole subtree.
        var live: Set<ObjectIdentifier> = []
        func isNew(_ v: UInt64) -> Bool { persistedVersion.map { v > $0 } ?? true }
        func collect(_ tree: Subtree) {
            switch tree {
            case .empty: return
            case .leaf(let l):
                guard isNew(l.version) else {
                    live.insert(ObjectIdentifier(l))
                    return
                }
                delta.nodes.append((l.version, l.hash, StoredNode.leaf(l.leaf).encoded))
            case .inner(let n):
                guard isNew(n.version) else {
                    live.insert(ObjectIdentifier(n))
                    return
                }
                delta.nodes.append(
                    (n.version, n.hash, StoredNode.inner(left: NodeRef(n.left), right: NodeRef(n.right)).encoded))
                collect(n.left)
                collect(n.right)
            }
        }
        collect(root)
        guard let persisted else { return delta }
        // Nodes of the persisted tree that the new one no longer reaches.
        func retire(_ tree: Subtree) {
            switch tree {
            case .empty: return
            case .leaf(let l):
                if !live.contains(ObjectIdentifier(l)) { delta.stale.append((l.version, l.hash)) }
            case .inner(let n):
                guard !live.contains(ObjectIdentifier(n)) else { return }
                delta.stale.append((n.version, n.hash))
                retire(n.left)
                retire(n.right)
            }
        }
        retire(persisted.root)
        return delta
    }

    /// Reads a stored version back, checking every node's hash against its reference.
    public static func load(root: NodeRef, fetch: (UInt64, StateHash) throws -> [UInt8]?) throws -> SparseMerkleTree {
        func node(_ ref: NodeRef, depth: Int) throws -> Subtree {
            guard ref.kind != .empty else { return .empty }
            guard depth <= 256 else { throw StoredTreeError("stored tree deeper than 256") }
            guard let body = try fetch(ref.version, ref.hash) else {
                throw StoredTreeError("stored node \(ref.hash) of version \(ref.version) is missing")
            }
            let stored = try StoredNode.decode(body)
            guard stored.hash == ref.hash else {
                throw StoredTreeError("stored node \(ref.hash) does not hash to its key")
            }
            switch (stored, ref.kind) {
            case (.leaf(let leaf), .leaf): return .leaf(LeafNode(leaf, version: ref.version))
            case (.inner(let l, let r), .inner):
                return .inner(
                    InnerNode(try node(l, depth: depth + 1), try node(r, depth: depth + 1), version: ref.version))
            default: throw StoredTreeError("stored node \(ref.hash) is not the kind its parent says")
            }
        }
        var tree = SparseMerkleTree()
        tree.root = try node(root, depth: 0)
        return tree
    }

    /// `range(prefix:depth:)` over a stored version, reading only the path and the range.
    public static func range(
        root: NodeRef, prefix: StateHash, depth: Int, limit: Int, fetch: (UInt64, StateHash) throws -> [UInt8]?
    ) throws -> (leaves: [StateLeaf], proof: RangeProof)? {
        precondition((0...256).contains(depth), "a prefix has 0 to 256 bits")
        let prefix = prefix.truncated(toBits: depth)
        func read(_ ref: NodeRef) throws -> StoredNode {
            guard let body = try fetch(ref.version, ref.hash) else {
                throw StoredTreeError("stored node \(ref.hash) of version \(ref.version) is missing")
            }
            return try StoredNode.decode(body)
        }
        var ref = root
        var siblings: [StateHash] = []
        var node: StoredNode?
        while siblings.count < depth, ref.kind == .inner {
            guard case .inner(let l, let r) = try read(ref) else {
                throw StoredTreeError("a stored inner node is a leaf")
            }
            let right = prefix.bit(siblings.count)
            siblings.append(right ? l.hash : r.hash)
            ref = right ? r : l
        }
        if ref.kind == .leaf { node = try read(ref) }
        var leaves: [StateLeaf] = []
        var terminal = RangeProof.Terminal.leaves
        if siblings.count == depth {
            // The whole subtree, in key-hash order (left first), up to the limit.
            var stack = [ref]
            while let next = stack.popLast() {
                switch next.kind {
                case .empty: continue
                case .leaf, .inner:
                    switch try read(next) {
                    case .leaf(let leaf):
                        leaves.append(leaf)
                        if leaves.count > limit { return nil }
                    case .inner(let l, let r):
                        stack.append(r)
                        stack.append(l)
                    }
                }
            }
        } else if case .leaf(let leaf) = node {
            if leaf.keyHash.sharesPrefix(with: prefix, bits: depth) {
                leaves = [leaf]
            } else {
                terminal = .otherLeaf(keyHash: leaf.keyHash, valueHash: leaf.valueHash)
            }
        }
        return (leaves, RangeProof(prefix: prefix, depth: depth, siblings: siblings, terminal: terminal))
    }
}
