import StateTree
import TestSupport
import Testing
import Wire

@Suite("Sparse Merkle tree: incremental roots, proofs of presence, absence and ranges")
struct SparseMerkleTreeTests {
    /// The root computed from scratch over a key→value map: the reference the incremental
    /// tree must equal, whatever order and batches the changes came in.
    /// Written here from the definition, independent of the tree's code: sort the leaves,
    /// split on each bit, a one-leaf subtree is the leaf, an empty one is zeros.
    static func referenceRoot(_ map: [[UInt8]: [UInt8]]) -> StateHash {
        func subtree(_ leaves: ArraySlice<StateLeaf>, _ depth: Int) -> (hash: StateHash, isLeafOrEmpty: Bool) {
            if leaves.isEmpty { return (.placeholder, true) }
            if leaves.count == 1 { return (leaves.first!.hash, true) }
            let left = leaves.filter { !$0.keyHash.bit(depth) }
            let right = leaves.filter { $0.keyHash.bit(depth) }
            let (l, r) = (subtree(left[...], depth + 1), subtree(right[...], depth + 1))
            if left.isEmpty, r.isLeafOrEmpty { return r }
            if right.isEmpty, l.isLeafOrEmpty { return l }
            return (.inner(l.hash, r.hash), false)
        }
        return subtree(map.map { StateLeaf(key: $0.key, value: $0.value) }.sorted { $0.keyHash < $1.keyHash }[...], 0)
            .hash
    }

    static func key(_ i: Int) -> [UInt8] { Array("bank/\(i)".utf8) }

    @Test("the empty tree's root is 32 zero bytes; one leaf's root is that leaf's hash")
    func smallTrees() {
        var tree = SparseMerkleTree()
        #expect(tree.rootHash == .placeholder)
        tree.apply([Self.key(1): [1]], version: 1)
        #expect(tree.rootHash == StateLeaf(key: Self.key(1), value: [1]).hash)
        tree.apply([Self.key(1): nil], version: 2)
        #expect(tree.rootHash == .placeholder, "deleting the last key empties the tree")
    }

    @Test("random batches of sets and deletes: the incremental root equals a rebuild from scratch every time")
    func incrementalEqualsRebuild() {
        var rng = SeededRandom(state: 17)
        var tree = SparseMerkleTree()
        var model: [[UInt8]: [UInt8]] = [:]
        for version in 1...60 {
            var batch: [[UInt8]: [UInt8]?] = [:]
            for _ in 0..<Int(rng.next() % 40) {
                let k = Self.key(Int(rng.next() % 300))
                batch[k] = rng.chance(0.25) ? nil : [UInt8(truncatingIfNeeded: rng.next())]
            }
            tree.apply(batch, version: UInt64(version))
            for (k, v) in batch { model[k] = v }
            #expect(tree.rootHash == Self.referenceRoot(model), "version \(version)")
            #expect(tree.count == model.count)
        }
        for (k, v) in model { #expect(tree.get(k) == v) }
        #expect(tree.get(Self.key(1_000)) == nil)
        var order: [StateHash] = []
        tree.visitLeaves { order.append($0.keyHash) }
        #expect(order == order.sorted() && order.count == model.count, "leaves come in key-hash order")
    }

    @Test("two changes of one key in one batch: the later wins, nothing traps")
    func repeatedKeyInABatch() {
        var tree = SparseMerkleTree()
        tree.apply(
            [
                .init(key: Self.key(1), value: [1]), .init(key: Self.key(2), value: [2]),
                .init(key: Self.key(1), value: [3]),
            ],
            version: 1)
        #expect(tree.get(Self.key(1)) == [3] && tree.count == 2)
        #expect(tree.rootHash == Self.referenceRoot([Self.key(1): [3], Self.key(2): [2]]))
    }

    @Test("a copy is a version: changing the copy leaves the original's root and values")
    func versionsShareStructure() {
        var a = SparseMerkleTree()
        a.apply(Dictionary(uniqueKeysWithValues: (0..<100).map { (Self.key($0), Optional([UInt8($0)])) }), version: 1)
        let rootA = a.rootHash
        var b = a
        b.apply([Self.key(5): [99], Self.key(500): [1]], version: 2)
        #expect(a.rootHash == rootA && a.get(Self.key(5)) == [5])
        #expect(b.rootHash != rootA && b.get(Self.key(5)) == [99])
    }

    @Test("present and absent keys prove against the root; a proof fails for every single-bit change")
    func singleKeyProofs() throws {
        var tree = SparseMerkleTree()
        tree.apply(
            Dictionary(uniqueKeysWithValues: (0..<64).map { (Self.key($0), Optional([UInt8($0), 7])) }), version: 1)
        let root = tree.rootHash
        for i in [0, 13, 63, 64, 99, 1_000] {
            let (value, proof) = tree.proof(for: Self.key(i))
            #expect((value != nil) == (i < 64))
            try proof.verify(key: Self.key(i), value: value, root: root)
            // A present key cannot be shown absent, nor an absent one present, nor the proof
            // be used for another key.
            #expect(throws: RangeProof.Failure.self) {
                try proof.verify(key: Self.key(i), value: value == nil ? [0] : nil, root: root)
            }
            #expect(throws: RangeProof.Failure.self) {
                try proof.verify(key: Self.key(i + 1), value: value, root: root)
            }
            // Every bit of the encoded proof, the value and the root matters.
            let bytes = proof.encoded
            for bit in 0..<(bytes.count * 8) {
                var flipped = bytes
                flipped[bit / 8] ^= 1 << UInt8(bit % 8)
                guard let forged = try? RangeProof.decode(flipped) else { continue }
                #expect(throws: RangeProof.Failure.self, "bit \(bit) of the proof for key \(i)") {
                    try forged.verify(key: Self.key(i), value: value, root: root)
                }
            }
            if let value {
                for bit in 0..<(value.count * 8) {
                    var v = value
                    v[bit / 8] ^= 1 << UInt8(bit % 8)
                    #expect(throws: RangeProof.Failure.self) {
                        try proof.verify(key: Self.key(i), value: v, root: root)
                    }
                }
            }
            for bit in 0..<256 {
                var r = root.bytes
                r[bit / 8] ^= 1 << UInt8(bit % 8)
                #expect(throws: RangeProof.Failure.self) {
                    try proof.verify(key: Self.key(i), value: value, root: StateHash(bytes: r)!)
                }
            }
        }
    }

    @Test("ranges: every prefix's leaves prove complete; a leaf dropped, added, changed or moved is caught")
    func rangeProofs() throws {
        var tree = SparseMerkleTree()
        var rng = SeededRandom(state: 5)
        for v in 1...5 {
            tree.apply(
                Dictionary(
                    (0..<200).map { _ in (Self.key(Int(rng.next() % 5_000)), Optional([UInt8(v)])) },
                    uniquingKeysWith: { a, _ in a }),
                version: UInt64(v))
        }
        var all: [StateLeaf] = []
        tree.visitLeaves { all.append($0) }
        let root = tree.rootHash
        for depth in [0, 1, 3, 6, 9, 12] {
            var union: [StateLeaf] = []
            var prefix = StateHash.placeholder
            for index in 0..<(1 << depth) {
                // The index's bits, most significant first, as the prefix.
                prefix = .placeholder
                for b in 0..<depth where (index >> (depth - 1 - b)) & 1 == 1 { prefix = prefix.settingBit(b) }
                let (leaves, proof) = tree.range(prefix: prefix, depth: depth)
                #expect(leaves == all.filter { $0.keyHash.sharesPrefix(with: prefix, bits: depth) })
                #expect(tree.count(under: prefix, depth: depth) == leaves.count)
                try proof.verify(range: prefix, depth: depth, leaves: leaves, root: root)
                // A decoded proof verifies the same way.
                try RangeProof.decode(proof.encoded).verify(range: prefix, depth: depth, leaves: leaves, root: root)
                if !leaves.isEmpty {
                    #expect(throws: RangeProof.Failure.self, "a dropped leaf") {
                        try proof.verify(range: prefix, depth: depth, leaves: Array(leaves.dropLast()), root: root)
                    }
                    var changed = leaves
                    changed[0] = StateLeaf(key: changed[0].key, value: changed[0].value + [1])
                    #expect(throws: RangeProof.Failure.self, "a changed value") {
                        try proof.verify(range: prefix, depth: depth, leaves: changed, root: root)
                    }
                    #expect(throws: RangeProof.Failure.self, "a repeated leaf") {
                        try proof.verify(range: prefix, depth: depth, leaves: leaves + [leaves.last!], root: root)
                    }
                }
                let outsider = all.first { !$0.keyHash.sharesPrefix(with: prefix, bits: depth) }
                if let outsider {
                    #expect(throws: RangeProof.Failure.self, "a leaf from another range") {
                        try proof.verify(
                            range: prefix, depth: depth,
                            leaves: (leaves + [outsider]).sorted { $0.keyHash < $1.keyHash }, root: root)
                    }
                }
                union += leaves
            }
            #expect(union == all, "the ranges of one depth partition the state")
        }
    }

    @Test("a proof's decoder refuses truncations and impossible shapes without trapping")
    func proofDecoding() throws {
        var tree = SparseMerkleTree()
        tree.apply([Self.key(1): [1], Self.key(2): [2], Self.key(3): [3]], version: 1)
        let bytes = tree.proof(for: Self.key(2)).proof.encoded
        for n in 0..<bytes.count { #expect(throws: WireError.self) { try RangeProof.decode(Array(bytes.prefix(n))) } }
        var deep = bytes
        deep[0] = 0x01
        deep[1] = 0x01  // depth 257
        #expect(throws: WireError.self) { try RangeProof.decode(deep) }
        // A prefix with bits past its depth is refused by the verifier.
        let shallow = RangeProof(prefix: StateHash.placeholder.settingBit(5), depth: 2, siblings: [], terminal: .leaves)
        #expect(throws: RangeProof.Failure.self) {
            try shallow.verify(range: StateHash.placeholder.settingBit(5), depth: 2, leaves: [], root: tree.rootHash)
        }
        // A range proof answers only the range asked for.
        let (leaves, proof) = tree.range(prefix: .placeholder, depth: 1)
        #expect(throws: RangeProof.Failure.self) {
            try proof.verify(range: StateHash.placeholder.settingBit(0), depth: 1, leaves: leaves, root: tree.rootHash)
        }
    }
}
