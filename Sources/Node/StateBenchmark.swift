import Foundation
import NodeCrypto
import StateTree
import Storage
import Wire

/// The state root's cost per block: the sparse Merkle tree's incremental update of the
/// changed keys beside the full recompute the ledger did before (sort every account,
/// hash every leaf and node), at several state sizes, with the raw BLAKE2b-256 rate
/// measured in the same run as the bound.
public enum StateBenchmark {
    public struct Row: Sendable {
        public var accounts: Int
        public var buildSeconds: Double
        /// Mean seconds per block: 1 update of `changed` keys.
        public var incrementalSeconds: Double
        /// Mean seconds per block of the old full recompute.
        public var fullSeconds: Double
        /// Mean depth of a leaf (≈ log2 n).
        public var meanDepth: Double
        /// Writing the whole tree to a consensus store (a snapshot install), and reading
        /// it back (a restart); nil when not measured.
        public var storeSeconds: Double?
        public var loadSeconds: Double?
        public var storedNodes = 0
    }

    public struct Result: Sendable {
        public var rows: [Row]
        public var changedPerBlock: Int
        /// BLAKE2b-256 of 65 bytes (an inner node) per second, one core.
        public var hashesPerSecond: Double
    }

    static func accountKey(_ i: Int) -> [UInt8] {
        var w = WireWriter(capacity: 37)
        w.fixed(Array("bank/".utf8))
        w.fixed(BLAKE2b.hash256(Array(String(i).utf8)))
        return w.bytes
    }

    static func value(balance: UInt64) -> [UInt8] {
        var w = WireWriter(capacity: 16)
        w.u64(balance)
        w.u64(1)
        return w.bytes
    }

    public static func run(
        sizes: [Int], changed: Int, blocks: Int, fullBlocks: Int, storeIn directory: URL? = nil,
        progress: (String) -> Void = { _ in }
    ) throws -> Result {
        let clock = ContinuousClock()
        // The bound: raw hashes of an inner node's 65 bytes.
        let node = [UInt8](repeating: 7, count: 65)
        let hashStart = clock.now
        let hashCount = 300_000
        for _ in 0..<hashCount { _ = BLAKE2b.hash256(node) }
        let hashRate = Double(hashCount) / (clock.now - hashStart).inSeconds

        var rows: [Row] = []
        var rng = SystemRandomNumberGenerator()
        for n in sizes {
            progress("building a state of \(n) accounts")
            let buildStart = clock.now
            var tree = SparseMerkleTree()
            var changes: [SparseMerkleTree.Change] = []
            changes.reserveCapacity(n)
            for i in 0..<n { changes.append(.init(key: accountKey(i), value: value(balance: UInt64(i)))) }
            tree.apply(changes, version: 0)
            let buildSeconds = (clock.now - buildStart).inSeconds
            changes = []
            var balances = (0..<n).map { UInt64($0) }

            progress("\(n) accounts: \(blocks) blocks of \(changed) changed keys, incremental")
            var incremental = Duration.zero
            for b in 0..<blocks {
                var batch: [[UInt8]: [UInt8]?] = [:]
                for _ in 0..<changed {
                    let i = Int.random(in: 0..<n, using: &rng)
                    balances[i] &+= 1
                    batch[accountKey(i)] = value(balance: balances[i])
                }
                let start = clock.now
                tree.apply(batch, version: UInt64(b + 1))
                incremental += clock.now - start
            }

            progress("\(n) accounts: \(fullBlocks) full recomputes")
            var full = Duration.zero
            for _ in 0..<fullBlocks {
                let start = clock.now
                _ = fullRecompute(balances)
                full += clock.now - start
            }

            var depthSum = 0
            var leaves = 0
            tree.visitLeaves { leaf in
                depthSum += tree.range(prefix: leaf.keyHash, depth: 256).proof.siblings.count
                leaves += 1
            }
            var row = Row(
                accounts: n, buildSeconds: buildSeconds, incrementalSeconds: incremental.inSeconds / Double(blocks),
                fullSeconds: full.inSeconds / Double(fullBlocks), meanDepth: Double(depthSum) / Double(leaves))
            if let directory {
                progress("\(n) accounts: writing the tree to SQLite and reading it back")
                let path = directory.appendingPathComponent("bench-state-\(UUID().uuidString).sqlite").path
                defer {
                    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
                }
                let store = try ConsensusStore(path: path)
                let start = clock.now
                let delta = tree.delta(from: nil, persistedVersion: nil, version: UInt64(blocks))
                try store.installSnapshot(
                    block: .init(height: 1, id: [1], round: 1, block: [], stateID: tree.rootHash.bytes, commitQC: []),
                    state: .init(
                        height: 1, version: UInt64(blocks), root: delta.root.encoded,
                        nodes: delta.nodes.map { ($0.version, $0.hash.bytes, $0.body) }, stale: [], snapshot: true,
                        keepFrom: nil), epochs: [])
                row.storeSeconds = (clock.now - start).inSeconds
                row.storedNodes = delta.nodes.count
                let loadStart = clock.now
                let nodes = try store.stateNodes(upTo: UInt64(blocks))
                let loaded = try SparseMerkleTree.load(root: delta.root) { v, h in
                    nodes[.init(version: v, hash: h.bytes)]
                }
                precondition(loaded.rootHash == tree.rootHash, "the stored tree reads back to its root")
                row.loadSeconds = (clock.now - loadStart).inSeconds
            }
            rows.append(row)
        }
        return Result(rows: rows, changedPerBlock: changed, hashesPerSecond: hashRate)
    }

    /// The state root as the ledger computed it before the tree: every account sorted by
    /// key and hashed, then a binary Merkle tree over all of them, on every block.
    static func fullRecompute(_ balances: [UInt64]) -> [UInt8] {
        var leaves: [(key: [UInt8], balance: UInt64)] = balances.enumerated().map {
            (BLAKE2b.hash256(Array(String($0.offset).utf8)), $0.element)
        }
        leaves.sort { $0.key.lexicographicallyPrecedes($1.key) }
        var level = leaves.map { leaf -> [UInt8] in
            var w = WireWriter(capacity: 49)
            w.u8(0)
            w.fixed(leaf.key)
            w.u64(leaf.balance)
            w.u64(1)
            return BLAKE2b.hash256(w.bytes)
        }
        while level.count > 1 {
            var next: [[UInt8]] = []
            next.reserveCapacity(level.count / 2 + 1)
            for i in stride(from: 0, to: level.count, by: 2) {
                next.append(i + 1 < level.count ? BLAKE2b.hash256([1] + level[i] + level[i + 1]) : level[i])
            }
            level = next
        }
        return level.first ?? BLAKE2b.hash256([])
    }
}
