import Ledger
import NodeCrypto
import TestSupport
import Testing

typealias Seeded = SeededRandom

/// A random history: honest transactions referencing earlier ones, an equivocating
/// author, and invalid transactions (forged, wrong chain, children of invalid ones).
struct History {
    var all: [Transaction] = []
    var valid: Set<TxID> = []
    var invalid: Set<TxID> = []
    var malformed: [[UInt8]] = []

    init(seed: UInt64, size: Int, chain: String = "chain") {
        var rng = Seeded(state: seed)
        let authors = (0..<4).map { _ in Ed25519.PrivateKey() }
        var seqs = [UInt64](repeating: 0, count: authors.count)
        var lastByAuthor: [Int: TxID] = [:]
        for n in 0..<size {
            let a = Int(rng.next() % UInt64(authors.count))
            var preds: [TxID] = []
            let validSoFar = all.filter { valid.contains($0.id) }
            for _ in 0..<Int(rng.next() % 4) where !validSoFar.isEmpty {
                preds.append(validSoFar[Int(rng.next() % UInt64(validSoFar.count))].id)
            }
            if let own = lastByAuthor[a] { preds.append(own) }
            let roll = rng.next() % 20
            if roll == 0, !all.isEmpty {
                // A child of an invalid transaction is invalid too.
                if let bad = all.first(where: { invalid.contains($0.id) }) {
                    let tx = Transaction(
                        chainID: chain, author: authors[a], seq: 1000 + UInt64(n), fee: 0,
                        payload: .data([UInt8(n & 0xff)]),
                        predecessors: preds + [bad.id])
                    all.append(tx)
                    invalid.insert(tx.id)
                    continue
                }
            }
            if roll == 1 {
                let tx = Transaction(
                    chainID: "other-chain", author: authors[a], seq: 1, fee: 0, payload: .data([1]), predecessors: preds
                )
                all.append(tx)
                invalid.insert(tx.id)
                continue
            }
            if roll == 2 {
                var bytes = Transaction(
                    chainID: chain, author: authors[a], seq: 5, fee: 0, payload: .data([UInt8(n & 0xff), 7]),
                    predecessors: preds
                ).encoded
                bytes[1 + 2 + chain.utf8.count + 32 + 8 + 7] ^= 0x10  // the fee: forged
                let forged = try! Transaction.decode(bytes)
                all.append(forged)
                invalid.insert(forged.id)
                continue
            }
            if roll == 3 { malformed.append(Array(SecureRandom.bytes(Int(rng.next() % 200)))) }
            seqs[a] += 1
            var seq = seqs[a]
            if roll == 4 && seq > 1 { seq -= 1 }  // equivocation: reuse a seq on a parallel branch
            if roll == 4 { preds.removeAll { $0 == lastByAuthor[a] } }
            let tx = Transaction(
                chainID: chain, author: authors[a], seq: seq, fee: UInt64(n), payload: .data([UInt8(n & 0xff)]),
                predecessors: preds)
            all.append(tx)
            valid.insert(tx.id)
            if roll != 4 { lastByAuthor[a] = tx.id }
        }
    }
}

@Suite("BFT-CRDT convergence (seeded property tests)")
struct DAGConvergenceTests {
    @Test("random delivery orders with duplicates and drops-then-resync converge", arguments: Array(UInt64(1)...25))
    func convergence(seed: UInt64) {
        let history = History(seed: seed, size: 60)
        var rng = Seeded(state: seed &* 7919)
        var replicas = (0..<4).map { _ in TransactionDAG(chainID: "chain") }
        for r in replicas.indices {
            // Deliver in a random order, with duplicates and (for odd replicas) drops.
            var deliveries = history.all.map(\.encoded) + history.malformed
            deliveries += deliveries.prefix(10)
            deliveries.shuffle(using: &rng)
            for bytes in deliveries {
                if r % 2 == 1 && rng.next() % 5 == 0 { continue }
                _ = replicas[r].insert(encoded: bytes, source: "peer\(rng.next() % 3)")
            }
        }
        // Anti-entropy: every replica pulls what it lacks from every other, twice round.
        for _ in 0..<2 {
            for a in replicas.indices {
                for b in replicas.indices where a != b {
                    let missing = replicas[b].missing(givenHeads: replicas[a].heads, limit: 10_000)
                    for tx in missing { _ = replicas[a].insert(tx, source: "sync") }
                }
            }
        }
        let expected = history.valid
        var digests: Set<[UInt8]> = []
        for r in replicas.indices {
            #expect(Set(replicas[r].order) == expected, "replica \(r) holds exactly the valid transactions")
            // Only descendants of invalid transactions that a replica never received stay pending.
            #expect(Set(replicas[r].pendingIDs).isSubset(of: history.invalid))
            digests.insert(replicas[r].digest())
            for id in history.invalid {
                #expect(!replicas[r].contains(id), "invalid \(id.hex.prefix(8)) rejected by replica \(r)")
            }
        }
        #expect(digests.count == 1, "all replicas have the same digest")
        let equivocations = Set(replicas.map { $0.equivocations.map(\.transactions) })
        #expect(equivocations.count == 1, "every replica records the same equivocations")
    }

    @Test func equivocationKeepsBothAndIsRecorded() {
        let author = Ed25519.PrivateKey()
        var dag = TransactionDAG(chainID: "c")
        let a = Transaction(chainID: "c", author: author, seq: 1, fee: 0, payload: .data([1]), predecessors: [])
        let b = Transaction(chainID: "c", author: author, seq: 1, fee: 0, payload: .data([2]), predecessors: [])
        #expect(dag.insert(a, source: "x") == .accepted([a]))
        #expect(dag.insert(b, source: "x") == .accepted([b]))
        #expect(dag.count == 2)
        #expect(dag.equivocations.count == 1)
        #expect(Set(dag.equivocations[0].transactions) == [a.id, b.id])
        #expect(dag.nextSeq(for: author.publicKey) == 2)
    }

    @Test func orphansArePendingUntilTheirPredecessorsArriveAndAreBounded() {
        let author = Ed25519.PrivateKey()
        var limits = TransactionDAG.Limits()
        limits.maxPendingPerSource = 50
        limits.maxPending = 80
        var dag = TransactionDAG(chainID: "c", limits: limits)
        let root = Transaction(chainID: "c", author: author, seq: 1, fee: 0, payload: .data([0]), predecessors: [])
        let child = Transaction(
            chainID: "c", author: author, seq: 2, fee: 0, payload: .data([1]), predecessors: [root.id])
        #expect(dag.insert(child, source: "p") == .pending(missing: [root.id]))
        #expect(dag.missingPredecessors == [root.id])
        #expect(dag.insert(root, source: "p") == .accepted([root, child]))
        #expect(dag.heads == [child.id])
        // A flood of orphans referencing ids nobody has: memory stays bounded.
        let flooder = Ed25519.PrivateKey()
        for i in 0..<300 {
            let ghost = try! TxID(bytes: SecureRandom.bytes(32))
            _ = dag.insert(
                Transaction(
                    chainID: "c", author: flooder, seq: UInt64(i + 1), fee: 0, payload: .data([]), predecessors: [ghost]
                ),
                source: i % 2 == 0 ? "evil" : "evil2")
            #expect(dag.pendingCount <= 80)
        }
        #expect(dag.pendingCount <= 80)
        #expect(dag.count == 2)
    }

    @Test func seqMustGrowAlongTheAuthorsOwnChain() {
        let author = Ed25519.PrivateKey()
        var dag = TransactionDAG(chainID: "c")
        let first = Transaction(chainID: "c", author: author, seq: 5, fee: 0, payload: .data([0]), predecessors: [])
        _ = dag.insert(first, source: "x")
        let backwards = Transaction(
            chainID: "c", author: author, seq: 5, fee: 0, payload: .data([1]), predecessors: [first.id])
        guard case .rejected(let reason) = dag.insert(backwards, source: "x") else {
            Issue.record("a seq that does not grow over the author's own predecessor must be rejected")
            return
        }
        #expect(reason.contains("seq"))
        // Its descendants are rejected too, by everyone, whenever they arrive.
        let grandchild = Transaction(
            chainID: "c", author: Ed25519.PrivateKey(), seq: 1, fee: 0, payload: .data([2]),
            predecessors: [backwards.id])
        guard case .rejected = dag.insert(grandchild, source: "y") else {
            Issue.record("a child of a rejected transaction must be rejected")
            return
        }
    }

    @Test func missingGivesExactlyWhatThePeerLacks() {
        let author = Ed25519.PrivateKey()
        var full = TransactionDAG(chainID: "c")
        var partial = TransactionDAG(chainID: "c")
        var previous: [TxID] = []
        for i in 1...30 {
            let tx = Transaction(
                chainID: "c", author: author, seq: UInt64(i), fee: 0, payload: .data([UInt8(i)]), predecessors: previous
            )
            _ = full.insert(tx, source: "x")
            if i <= 12 { _ = partial.insert(tx, source: "x") }
            previous = [tx.id]
        }
        let missing = full.missing(givenHeads: partial.heads, limit: 100)
        #expect(missing.count == 18)
        #expect(full.missing(givenHeads: partial.heads, limit: 5).count == 5)
        for tx in missing { _ = partial.insert(tx, source: "sync") }
        #expect(partial.digest() == full.digest())
        #expect(full.missing(givenHeads: full.heads, limit: 100).isEmpty)
    }
}
