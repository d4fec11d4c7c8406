import StateTree
import TestSupport
import Testing

@Suite("Stored state tree: versions written as deltas, read back, pruned")
struct StoredTreeTests {
    /// The store's rules, as the SQLite tables keep them: nodes keyed by version ‖ hash,
    /// stale marks by the version that dropped them, one root per version.
    struct Store {
        struct Key: Hashable {
            let version: UInt64
            let hash: StateHash
        }
        var nodes: [Key: [UInt8]] = [:]
        var stale: [(since: UInt64, key: Key)] = []
        var roots: [UInt64: NodeRef] = [:]

        mutating func write(_ delta: TreeDelta) {
            for n in delta.nodes { nodes[Key(version: n.version, hash: n.hash)] = n.body }
            for s in delta.stale { stale.append((delta.version, Key(version: s.version, hash: s.hash))) }
            roots[delta.version] = delta.root
        }

        /// Keeps every version from `floor` on.
        mutating func prune(below floor: UInt64) {
            for s in stale where s.since <= floor { nodes[s.key] = nil }
            stale.removeAll { $0.since <= floor }
            roots = roots.filter { $0.key >= floor }
        }

        func fetch(_ version: UInt64, _ hash: StateHash) -> [UInt8]? { nodes[Key(version: version, hash: hash)] }
    }

    static func key(_ i: Int) -> [UInt8] { Array("k/\(i)".utf8) }

    @Test("deltas every few versions rebuild each version exactly; pruning keeps the retained ones whole and only them")
    func deltasLoadAndPrune() throws {
        var rng = SeededRandom(state: 99)
        var tree = SparseMerkleTree()
        var store = Store()
        var persisted: (tree: SparseMerkleTree, version: UInt64)?
        var roots: [UInt64: StateHash] = [:]
        for version in UInt64(1)...40 {
            var batch: [[UInt8]: [UInt8]?] = [:]
            for _ in 0..<Int(rng.next() % 30 + 1) {
                batch[Self.key(Int(rng.next() % 200))] = rng.chance(0.2) ? nil : [UInt8(truncatingIfNeeded: rng.next())]
            }
            tree.apply(batch, version: version)
            guard version % 4 == 0 else { continue }
            store.write(tree.delta(from: persisted?.tree, persistedVersion: persisted?.version, version: version))
            persisted = (tree, version)
            roots[version] = tree.rootHash
            let loaded = try SparseMerkleTree.load(root: store.roots[version]!, fetch: store.fetch)
            #expect(loaded.rootHash == tree.rootHash)
            var a: [StateLeaf] = []
            var b: [StateLeaf] = []
            loaded.visitLeaves { a.append($0) }
            tree.visitLeaves { b.append($0) }
            #expect(a == b)
        }
        let before = store.nodes.count
        store.prune(below: 28)
        #expect(store.nodes.count < before, "stale nodes of pruned versions are deleted")
        for version in [28, 32, 36, 40] as [UInt64] {
            let loaded = try SparseMerkleTree.load(root: store.roots[version]!, fetch: store.fetch)
            #expect(loaded.rootHash == roots[version], "version \(version) survives pruning")
        }
        #expect(store.roots[24] == nil)
        // A later delta from a loaded tree continues the same store.
        var reloaded = try SparseMerkleTree.load(root: store.roots[40]!, fetch: store.fetch)
        reloaded.apply([Self.key(1): [1, 2, 3]], version: 41)
        store.write(
            reloaded.delta(
                from: try SparseMerkleTree.load(root: store.roots[40]!, fetch: store.fetch), persistedVersion: 40,
                version: 41))
        #expect(try SparseMerkleTree.load(root: store.roots[41]!, fetch: store.fetch).rootHash == reloaded.rootHash)
    }

    @Test("ranges read from a stored version equal the in-memory ones and verify; a corrupted node is refused")
    func storedRanges() throws {
        var tree = SparseMerkleTree()
        tree.apply(
            Dictionary(uniqueKeysWithValues: (0..<500).map { (Self.key($0), Optional([UInt8($0 % 256)])) }), version: 1)
        var store = Store()
        store.write(tree.delta(from: nil, persistedVersion: nil, version: 1))
        for depth in [0, 2, 5, 9, 256] {
            var prefix = StateHash.of(Self.key(7))
            if depth < 256 { prefix = prefix.truncated(toBits: depth) }
            let stored = try #require(
                try SparseMerkleTree.range(
                    root: store.roots[1]!, prefix: prefix, depth: depth, limit: 1_000, fetch: store.fetch))
            let memory = tree.range(prefix: prefix, depth: depth)
            #expect(stored.leaves == memory.leaves && stored.proof == memory.proof)
            try stored.proof.verify(range: prefix, depth: depth, leaves: stored.leaves, root: tree.rootHash)
        }
        #expect(
            try SparseMerkleTree.range(
                root: store.roots[1]!, prefix: .placeholder, depth: 0, limit: 10, fetch: store.fetch) == nil,
            "over the limit")
        // Flip a byte of one stored leaf: loading finds it.
        let victim = store.nodes.first { $0.value.first == 0 }!.key
        store.nodes[victim]![5] ^= 1
        #expect(throws: (any Error).self) { try SparseMerkleTree.load(root: store.roots[1]!, fetch: store.fetch) }
    }
}
