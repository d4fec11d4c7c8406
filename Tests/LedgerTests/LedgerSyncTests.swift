import Ledger
import NodeCrypto
import Testing

/// n data transactions by one author, each naming the previous one.
func dataChain(_ n: Int, author: Ed25519.PrivateKey) -> [Transaction] {
    var out: [Transaction] = []
    for seq in 1...UInt64(n) {
        out.append(
            Transaction(
                chainID: "c", author: author, seq: seq, fee: 0, payload: .data([UInt8(seq & 0xff)]),
                predecessors: out.last.map { [$0.id] } ?? []))
    }
    return out
}

@Suite("Anti-entropy: heads decide what is fetched")
struct LedgerSyncTests {
    let author = Ed25519.PrivateKey()

    func chain(_ n: Int) -> [Transaction] { dataChain(n, author: author) }

    func sync(_ txs: ArraySlice<Transaction>) -> LedgerSync {
        var dag = TransactionDAG(chainID: "c")
        for tx in txs { _ = dag.insert(tx, source: "t") }
        return LedgerSync(dag: dag)
    }

    @Test("a peer that is behind (all its heads known) triggers no request; one that is ahead does")
    func headsRule() throws {
        let txs = chain(6)
        var ahead = sync(txs[...])
        var behind = sync(txs[..<3])
        // `ahead` hears from `behind`: different digests, but nothing to fetch.
        #expect(ahead.directReceived(behind.headsAnnouncement(), from: 1, source: "b").isEmpty)
        // `behind` hears from `ahead`: an unknown head, so it asks, and the answer fills the gap.
        let request = behind.directReceived(ahead.headsAnnouncement(), from: 1, source: "a")
        guard case .sendDirect(_, let ask)? = request.first else {
            Issue.record("expected a sync request, got \(request)")
            return
        }
        let answer = ahead.directReceived(ask, from: 2, source: "b")
        guard case .sendDirect(_, let batch)? = answer.first else {
            Issue.record("expected a batch, got \(answer)")
            return
        }
        _ = behind.directReceived(batch, from: 1, source: "a")
        #expect(behind.dag.count == 6)
        #expect(behind.dag.digest() == ahead.dag.digest(), "same set, same digest")
        #expect(ahead.directReceived(behind.headsAnnouncement(), from: 1, source: "b").isEmpty)
    }

    @Test("the digest does not depend on arrival order and changes with every transaction")
    func digestIsOrderFree() {
        let a = Ed25519.PrivateKey()
        let b = Ed25519.PrivateKey()
        let txs = [a, b, a, b].enumerated().map { i, key in
            Transaction(
                chainID: "c", author: key, seq: UInt64(i / 2 + 1), fee: 0, payload: .data([UInt8(i)]), predecessors: [])
        }
        var forward = TransactionDAG(chainID: "c")
        var backward = TransactionDAG(chainID: "c")
        var seen: Set<[UInt8]> = [forward.digest()]
        for tx in txs {
            _ = forward.insert(tx, source: "t")
            seen.insert(forward.digest())
        }
        for tx in txs.reversed() { _ = backward.insert(tx, source: "t") }
        #expect(forward.digest() == backward.digest())
        #expect(seen.count == txs.count + 1)
    }
}

@Suite("Batched transaction gossip")
struct LedgerBatchGossipTests {
    let author = Ed25519.PrivateKey()

    func chain(_ n: Int) -> [Transaction] { dataChain(n, author: author) }

    @Test("submissions leave in one batch that a peer accepts whole; a repeat is ignored")
    func submitAndReceive() throws {
        let txs = chain(20)
        var origin = LedgerSync(dag: TransactionDAG(chainID: "c"))
        for tx in txs { _ = origin.submit(tx.encoded) }
        let out = origin.takeBroadcasts()
        #expect(out.count == 1)
        #expect(origin.takeBroadcasts().isEmpty, "the outbox empties")
        guard case .broadcast(let payload)? = out.first else { throw BatchError() }
        #expect(payload.first == LedgerSync.batchTopic)
        var peer = LedgerSync(dag: TransactionDAG(chainID: "c"))
        let (verdict, actions) = peer.gossipBatchReceived(Array(payload.dropFirst()), from: 1, source: "o")
        #expect(verdict == .accept)
        #expect(actions == [.persist(txs)])
        #expect(peer.dag.count == 20)
        #expect(peer.gossipBatchReceived(Array(payload.dropFirst()), from: 2, source: "x").0 == .ignore)
    }

    @Test("a forged transaction rejects the batch but the valid ones are kept; malformed batches are rejected")
    func badBatches() {
        let txs = chain(3)
        var forged = txs[2].encoded
        forged[forged.count - 1] ^= 1
        let payload = LedgerSync.batchPayload([txs[0].encoded, txs[1].encoded, forged])
        var peer = LedgerSync(dag: TransactionDAG(chainID: "c"))
        let (verdict, _) = peer.gossipBatchReceived(Array(payload.dropFirst()), from: 1, source: "o")
        guard case .reject = verdict else {
            Issue.record("expected reject, got \(verdict)")
            return
        }
        #expect(peer.dag.count == 2)
        for body: [UInt8] in [[], [0, 0], [0, 1], [0, 1, 0, 0, 0, 9, 1], Array(payload.dropFirst()) + [0]] {
            guard case .reject = peer.gossipBatchReceived(body, from: 1, source: "o").0 else {
                Issue.record("accepted malformed batch \(body.prefix(8))")
                continue
            }
        }
    }

    @Test("a batch whose predecessors are unknown asks the sender for them")
    func pendingAsks() {
        let txs = chain(3)
        var peer = LedgerSync(dag: TransactionDAG(chainID: "c"))
        let (verdict, actions) = peer.gossipBatchReceived(
            Array(LedgerSync.batchPayload([txs[2].encoded]).dropFirst()), from: 7, source: "o")
        #expect(verdict == .ignore)
        #expect(actions == [.sendDirect(connection: 7, payload: SyncMessage.getTransactions([txs[1].id]).encoded())])
    }
}

struct BatchError: Error {}

@Suite("Predecessors handed to new transactions")
struct PredecessorChoiceTests {
    let alice = Ed25519.PrivateKey()
    let mallory = Ed25519.PrivateKey()
    let proposer = Ed25519.PrivateKey()

    func transfer(
        _ seq: UInt64, predecessors: [TxID], from key: Ed25519.PrivateKey? = nil, fee: UInt64 = 1
    )
        -> Transaction
    {
        Transaction(
            chainID: "c", author: key ?? alice, seq: seq, fee: fee,
            payload: .transfer(to: proposer.publicKey, amount: 1),
            predecessors: predecessors)
    }

    /// A head that will never run (a seq gap from an unfunded key, its id ground to sort
    /// first) must not be handed out: a transaction naming it could never execute.
    @Test func aHeadThatNeverRunsIsNotNamed() throws {
        var sync = LedgerSync(dag: TransactionDAG(chainID: "c"))
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 100])
        #expect(sync.predecessorsForNewTransaction(executed: nil).isEmpty, "no committed state: no predecessors")

        let first = transfer(1, predecessors: [])
        _ = sync.dag.insert(first, source: "t")
        #expect(state.execute([first.encoded], proposer: proposer.publicKey).map(\.code) == [.ok])
        var spam = transfer(5, predecessors: [], from: mallory)
        for nonce in 0..<UInt64(4096) where spam.id >= first.id {
            spam = transfer(5, predecessors: [], from: mallory, fee: 1 + nonce)
        }
        #expect(spam.id < first.id, "the spam head sorts first")
        _ = sync.dag.insert(spam, source: "mallory")
        #expect(sync.dag.heads.first == spam.id, "the old choice, the lowest heads, named it")

        let chosen = sync.predecessorsForNewTransaction(executed: state)
        #expect(chosen == [first.id])
        let next = transfer(2, predecessors: chosen)
        #expect(sync.dag.insert(next, source: "t") == .accepted([next]))
        #expect(state.execute([next.encoded], proposer: proposer.publicKey).map(\.code) == [.ok])
        // What naming the spam head would have done:
        let poisoned = transfer(3, predecessors: [spam.id])
        #expect(state.execute([poisoned.encoded], proposer: proposer.publicKey).map(\.code) == [.missingPredecessor])
    }

    @Test func executedHeadsComeNewestFirst() {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 100, mallory.publicKey: 100])
        var sync = LedgerSync(dag: TransactionDAG(chainID: "c"))
        // Two independent heads, executed in this order: a then b.
        let a = transfer(1, predecessors: [])
        let b = transfer(1, predecessors: [], from: mallory)
        for tx in [a, b] { _ = sync.dag.insert(tx, source: "t") }
        #expect(Set(state.execute([a.encoded, b.encoded], proposer: proposer.publicKey).map(\.code)) == [.ok])
        #expect(state.executionAge(of: b.id) == 0)
        #expect(state.executionAge(of: a.id) == 1)
        #expect(sync.predecessorsForNewTransaction(executed: state) == [b.id, a.id])
    }

    /// A head that ran more than half a window ago is not named: by the time a client's
    /// transaction runs, it may have left the window the predecessor rule reads.
    @Test func aHeadNearTheEndOfTheWindowIsNotNamed() {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 1_000_000, mallory.publicKey: 10])
        var sync = LedgerSync(dag: TransactionDAG(chainID: "c"))
        let old = transfer(1, predecessors: [], from: mallory, fee: 0)
        _ = sync.dag.insertStored(old)
        _ = state.execute([old.encoded], proposer: proposer.publicKey, signatureChecked: { _ in true })
        var last: Transaction?
        let count = Int(LedgerState.recentWindow / 2) + 1
        var block: [[UInt8]] = []
        for seq in 1...UInt64(count) {
            let tx = Transaction(
                chainID: "c", author: alice, seq: seq, fee: 0, payload: .data([]),
                predecessors: last.map { [$0.id] } ?? [])
            _ = sync.dag.insertStored(tx)
            block.append(tx.encoded)
            last = tx
        }
        let codes = state.execute(block, proposer: proposer.publicKey, signatureChecked: { _ in true }).map(\.code)
        #expect(Set(codes) == [.ok])
        #expect(state.executionAge(of: old.id) == UInt64(count))
        #expect(sync.dag.unorderedHeads == [old.id, last!.id])
        #expect(sync.predecessorsForNewTransaction(executed: state) == [last!.id])
    }

    @Test func withNoExecutedHeadTheNewestExecutedThisDAGHoldsIsNamed() {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 100])
        var txs: [Transaction] = []
        for seq in 1...UInt64(40) { txs.append(transfer(seq, predecessors: txs.last.map { [$0.id] } ?? [])) }
        #expect(Set(state.execute(txs.map(\.encoded), proposer: proposer.publicKey).map(\.code)) == [.ok])
        #expect(state.latestExecuted(limit: 3) == [txs[39].id, txs[38].id, txs[37].id])
        #expect(state.latestExecuted(limit: 0).isEmpty)
        #expect(state.latestExecuted(limit: 100).count == 40)

        // The DAG holds a pending transaction (not executed) and, like a node that joined
        // by snapshot, only the older half of what executed.
        var sync = LedgerSync(dag: TransactionDAG(chainID: "c"))
        for tx in txs[..<20] { _ = sync.dag.insert(tx, source: "t") }
        let pending = transfer(41, predecessors: [txs[19].id])
        _ = sync.dag.insert(pending, source: "t")
        #expect(sync.dag.unorderedHeads == [pending.id])
        // txs[19] is in the window but not a head; the newest executed ones are not held.
        #expect(sync.predecessorsForNewTransaction(executed: state).isEmpty)
        for tx in txs[20...] { _ = sync.dag.insert(tx, source: "t") }
        #expect(sync.predecessorsForNewTransaction(executed: state) == [txs[39].id])
    }
}
