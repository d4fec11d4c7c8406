import Consensus
import Execution
import Ledger
import NodeCrypto
import Testing

/// Pruning the BFT-CRDT below what the committed state settled (issue 20): what goes,
/// what stays, and that a pruned DAG still serves consensus and anti-entropy.
@Suite("DAG pruning: settled transactions leave; what can still run stays")
struct DAGPruneTests {
    let alice = Ed25519.PrivateKey()
    let bob = Ed25519.PrivateKey()
    let proposer = Ed25519.PrivateKey()

    func tx(_ key: Ed25519.PrivateKey, _ seq: UInt64, preds: [TxID] = [], amount: UInt64 = 1) -> Transaction {
        Transaction(
            chainID: "c", author: key, seq: seq, fee: 1, payload: .transfer(to: bob.publicKey, amount: amount),
            predecessors: preds)
    }

    func dag(_ txs: [Transaction]) -> TransactionDAG {
        var d = TransactionDAG(chainID: "c")
        for t in txs { _ = d.insert(t, source: "t") }
        return d
    }

    @Test("prune removes exactly the ids given; digest, count and heads equal a DAG that never had them")
    func pruneMatchesFreshDAG() {
        let a1 = tx(alice, 1)
        let a2 = tx(alice, 2, preds: [a1.id])
        let b1 = tx(bob, 1, preds: [a1.id])
        let a3 = tx(alice, 3, preds: [a2.id, b1.id])
        var d = dag([a1, a2, b1, a3])
        #expect(d.count == 4)
        let removed = d.prune([a1.id, a2.id, try! TxID(bytes: [UInt8](repeating: 9, count: 32))])
        #expect(Set(removed) == [a1.id, a2.id], "an unknown id is ignored")
        #expect(d.count == 2 && !d.contains(a1.id) && d.contains(b1.id) && d.contains(a3.id))
        #expect(d.order == [b1.id, a3.id], "what remains keeps its acceptance order")
        #expect(d.generation == 1 && d.prunedCount == 2)
        // The same set built afresh (stored rows reloaded) gives the same digest and heads.
        var fresh = TransactionDAG(chainID: "c")
        _ = fresh.insertStored(b1)
        _ = fresh.insertStored(a3)
        #expect(d.digest() == fresh.digest())
        #expect(d.heads == fresh.heads && d.heads == [a3.id])
        #expect(d.prune([]).isEmpty && d.generation == 1, "nothing removed: positions stay valid")
    }

    @Test("a settled transaction is a duplicate before its signature is checked; others are judged as before")
    func settledIsRefusedCheaply() {
        var d = TransactionDAG(chainID: "c")
        var forged = tx(alice, 1).encoded
        forged[forged.count - 1] ^= 1
        #expect(d.insert(encoded: forged, source: "p", settled: { _ in true }) == .settled)
        #expect(d.rejection(try! Transaction.decode(forged).id) == nil, "nothing remembered against it")
        guard case .rejected = d.insert(encoded: forged, source: "p", settled: { _ in false }) else {
            Issue.record("a forged, unsettled transaction must be rejected")
            return
        }
    }

    @Test("a stored transaction whose predecessors were pruned reloads; from a peer it would wait for them")
    func storedReloadsWithoutPrunedPredecessors() {
        let a1 = tx(alice, 1)
        let a2 = tx(alice, 2, preds: [a1.id])
        var stored = TransactionDAG(chainID: "c")
        guard case .accepted = stored.insertStored(a2) else {
            Issue.record("reload refused")
            return
        }
        var fromPeer = TransactionDAG(chainID: "c")
        #expect(fromPeer.insert(a2, source: "p") == .pending(missing: [a1.id]))
    }

    @Test("a kept transaction that only a pruned one named becomes a head again, as after a reload")
    func headsAfterPrune() {
        let a1 = tx(alice, 1)
        let rival = tx(alice, 2, preds: [a1.id], amount: 3)
        let b1 = tx(bob, 1)
        var d = dag([a1, b1, rival])
        #expect(d.heads == [b1.id, rival.id].sorted())
        d.prune([rival.id])
        var reloaded = TransactionDAG(chainID: "c")
        _ = reloaded.insertStored(a1)
        _ = reloaded.insertStored(b1)
        #expect(d.heads == reloaded.heads && d.heads == [a1.id, b1.id].sorted())
    }

    @Test(
        "a gossiped batch holding a settled entry is not forwarded as it is; what it brought goes out in our own batch")
    func settledEntryIsNotVouchedFor() throws {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 100])
        let a1 = tx(alice, 1)
        _ = state.executeBlock([a1.encoded], proposer: proposer.publicKey, signatureChecked: { _ in true })
        var sync = LedgerSync(dag: TransactionDAG(chainID: "c"))
        sync.committed = state
        // A forged rival of the executed a1 (settled here, so not verified) and a fresh one.
        var forged = tx(alice, 1, amount: 9).encoded
        forged[forged.count - 1] ^= 1
        let fresh = tx(bob, 1)
        let batch = Array(LedgerSync.batchPayload([forged, fresh.encoded]).dropFirst())
        let (verdict, _) = sync.gossipBatchReceived(batch, from: 1, source: "p")
        #expect(verdict == .ignore, "forwarding would vouch for the unverified entry")
        #expect(sync.dag.contains(fresh.id))
        let out = sync.takeBroadcasts()
        #expect(out.count == 1, "the fresh transaction is gossiped in our own batch")
        // A node that has not settled it (no committed state yet) rejects the forgery.
        var other = LedgerSync(dag: TransactionDAG(chainID: "c"))
        guard case .reject = other.gossipBatchReceived(batch, from: 1, source: "p").0 else {
            Issue.record("the forgery must be rejected where it is not settled")
            return
        }
    }

    @Test("a sync batch that brings nothing new is not followed by another request, even marked 'more'")
    func noEndlessSync() throws {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 100])
        let a1 = tx(alice, 1)
        let rival = tx(alice, 1, amount: 2)
        _ = state.executeBlock([a1.encoded], proposer: proposer.publicKey, signatureChecked: { _ in true })
        var pruned = LedgerSync(dag: dag([a1]))
        pruned.committed = state
        // A peer that has not pruned the rival sends it, saying there is more.
        let message = SyncMessage.batch(more: true, [rival.encoded]).encoded()
        let actions = pruned.directReceived(message, from: 1, source: "p")
        #expect(!actions.contains { if case .sendDirect = $0 { true } else { false } })
        // And a node that has settled the rival does not send it to a peer that asks.
        var holder = LedgerSync(dag: dag([a1, rival]))
        holder.committed = state
        let request = SyncMessage.syncRequest(heads: []).encoded()
        let answer = holder.directReceived(request, from: 2, source: "q")
        for case .sendDirect(_, let payload) in answer {
            guard case .batch(_, let txs) = try SyncMessage.decode(payload) else { continue }
            #expect(!txs.contains(rival.encoded))
        }
    }

    var execution: LedgerExecution {
        LedgerExecution { system, block, state in
            ConsensusConfig(
                chainID: "c", epoch: system.epoch,
                validators: ValidatorSet(system.validators.map { Validator(id: $0.id, power: $0.power) }),
                genesisBlockID: block, genesisStateID: state)
        }
    }

    @Test("LedgerSync prunes what the committed state superseded, keeps what executed recently and what can run")
    func syncPrunesSuperseded() throws {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 100])
        let a1 = tx(alice, 1)
        let rival = tx(alice, 1, amount: 2)  // the same seq: never runs once a1 has
        let a2 = tx(alice, 2, preds: [a1.id])
        var sync = LedgerSync(dag: dag([a1, rival, a2]))
        #expect(sync.dag.count == 3)
        _ = state.executeBlock([a1.encoded], proposer: proposer.publicKey, signatureChecked: { _ in true })
        sync.committed = state
        // a1 executed recently (a new transaction may still name it); a2 can run next.
        #expect(sync.settledIDs() == [rival.id])
        #expect(sync.prune(Set(sync.settledIDs())) == [rival.id])
        #expect(sync.dag.contains(a1.id) && sync.dag.contains(a2.id) && !sync.dag.contains(rival.id))
        // The rival again, from a peer or a client: refused, not re-accepted.
        let (verdict, actions) = sync.gossipReceived(rival.encoded, from: 1, source: "p")
        #expect(verdict == .ignore && actions.isEmpty && !sync.dag.contains(rival.id))
        let (result, _) = sync.submit(rival.encoded)
        guard case .failure(let error) = result else {
            Issue.record("a superseded transaction must be refused at submission")
            return
        }
        #expect(error.description.contains("already committed"))
    }

    @Test("after a prune the leader's payload still finds what can run (its scan position is reset)")
    func payloadAfterPrune() {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 1_000])
        var txs: [Transaction] = []
        var prev: [TxID] = []
        for seq in UInt64(1)...20 {
            let t = tx(alice, seq, preds: prev)
            txs.append(t)
            prev = [t.id]
        }
        var pool = dag(txs)
        var exec = execution
        // Commit the first 15; the leader's scan moves past them.
        _ = state.executeBlock(
            txs[0..<15].map(\.encoded), proposer: proposer.publicKey, signatureChecked: { _ in true })
        let before = exec.payload(on: state, committed: state, pool: pool, budget: 1 << 20, maxCount: 100)
        #expect(before == txs[15..<20].map(\.encoded))
        // Prune the first 10 (as if they had left the recent-id window): positions shift by 10.
        pool.prune(Set(txs[0..<10].map(\.id)))
        let after = exec.payload(on: state, committed: state, pool: pool, budget: 1 << 20, maxCount: 100)
        #expect(after == txs[15..<20].map(\.encoded), "a stale position would skip runnable transactions")
    }
}
