import Ledger
import NodeCrypto
import StateTree
import Testing

@Suite("Execution: the deterministic ledger state and its Merkle root")
struct LedgerStateTests {
    let alice = Ed25519.PrivateKey()
    let bob = Ed25519.PrivateKey()
    let proposer = Ed25519.PrivateKey().publicKey

    func tx(
        _ key: Ed25519.PrivateKey, _ seq: UInt64, fee: UInt64 = 1, _ payload: TxPayload, preds: [TxID] = []
    ) -> Transaction {
        Transaction(chainID: "c", author: key, seq: seq, fee: fee, payload: payload, predecessors: preds)
    }

    @Test func transfersFeesAndFailures() {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 100])
        let t1 = tx(alice, 1, .transfer(to: bob.publicKey, amount: 30))
        let t2 = tx(alice, 3, .transfer(to: bob.publicKey, amount: 1), preds: [t1.id])  // gap in seq
        let t3 = tx(alice, 2, .transfer(to: bob.publicKey, amount: 500), preds: [t1.id])  // too much
        let t4 = tx(bob, 1, fee: 2, .data([1, 2]))
        let t5 = tx(bob, 2, fee: 1_000, .data([3]))  // cannot pay the fee
        let receipts = state.execute([t1, t2, t3, t4, t5, t1].map(\.encoded), proposer: proposer)
        #expect(receipts.map { $0.failure == nil } == [true, false, false, true, false, false])
        #expect(receipts[1].failure?.contains("bad sequence") == true)
        #expect(receipts[2].failure?.contains("insufficient balance") == true)
        #expect(receipts[4].failure?.contains("fee") == true)
        #expect(receipts[5].failure?.contains("already executed") == true)
        #expect(receipts.map(\.code) == [.ok, .badSequence, .failed, .ok, .insufficientFee, .badSequence])
        #expect(receipts[0].gas > 0 && receipts[1].gas < receipts[0].gas, "a refused transaction reads less")
        // alice: 100 - 1 fee - 30 (t1) - 1 fee (t3 paid its fee, failed its transfer) = 68
        #expect(state.balance(of: alice.publicKey) == 68)
        #expect(state.seq(of: alice.publicKey) == 2)
        // bob: 30 received - 2 fee (t4) = 28; t5 changed nothing.
        #expect(state.balance(of: bob.publicKey) == 28)
        #expect(state.seq(of: bob.publicKey) == 1)
        #expect(state.balance(of: proposer) == 4, "fees of t1, t3 and t4 go to the proposer")
    }

    @Test func invalidTransactionsFailDeterministically() {
        var state = LedgerState(chainID: "c", balances: [alice.publicKey: 10])
        let orphan = tx(alice, 1, .data([]), preds: [try! TxID(bytes: [UInt8](repeating: 7, count: 32))])
        let otherChain = Transaction(chainID: "x", author: alice, seq: 1, fee: 0, payload: .data([]), predecessors: [])
        let receipts = state.execute([orphan.encoded, otherChain.encoded, [1, 2, 3]], proposer: proposer)
        #expect(receipts.allSatisfy { $0.failure != nil })
        #expect(state.balance(of: alice.publicKey) == 10)
    }

    @Test func rootIsDeterministicAndProofsVerify() throws {
        let keys = (0..<9).map { _ in Ed25519.PrivateKey().publicKey }
        let balances = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, UInt64($0 * 10 + 1)) })
        let a = LedgerState(chainID: "c", balances: balances)
        let b = LedgerState(
            chainID: "c", balances: Dictionary(uniqueKeysWithValues: balances.reversed().map { ($0.key, $0.value) }))
        #expect(a.root == b.root, "the root does not depend on insertion order")
        for key in keys {
            let (account, proof) = a.proof(for: key)
            let value = try #require(account).encoded
            let accountKey = StateKey.account(key.rawRepresentation)
            try proof.verify(key: accountKey, value: value, root: a.stateRoot)
            var more = try #require(account)
            more.balance += 1
            #expect(throws: RangeProof.Failure.self, "a different balance does not verify") {
                try proof.verify(key: accountKey, value: more.encoded, root: a.stateRoot)
            }
            #expect(throws: RangeProof.Failure.self, "nor does absence") {
                try proof.verify(key: accountKey, value: nil, root: a.stateRoot)
            }
        }
        var changed = a
        _ = changed.execute(
            [
                Transaction(
                    chainID: "c", author: Ed25519.PrivateKey(), seq: 1, fee: 0, payload: .data([]), predecessors: []
                ).encoded
            ],
            proposer: proposer)
        #expect(changed.root != a.root, "a new account changes the root")
        let (none, absent) = a.proof(for: proposer)
        #expect(none == nil)
        try absent.verify(key: StateKey.account(proposer.rawRepresentation), value: nil, root: a.stateRoot)
    }

    @Test("duplicate detection is bounded: ids older than the window are dropped; seqs still refuse replays")
    func boundedDuplicateDetection() throws {
        let window = Int(LedgerState.recentWindow)
        let authors = (0..<4).map { _ in Ed25519.PrivateKey() }
        var state = LedgerState(
            chainID: "c", balances: Dictionary(uniqueKeysWithValues: authors.map { ($0.publicKey, 0) }))
        var all: [Transaction] = []
        // Blocks of 1,024 transactions, round-robin over four authors, until the window
        // has moved on by three buckets.
        var seqs = [UInt64](repeating: 0, count: authors.count)
        while all.count < window + 1_024 {
            var block: [[UInt8]] = []
            for _ in 0..<1_024 {
                let i = all.count % authors.count
                seqs[i] += 1
                let t = tx(authors[i], seqs[i], fee: 0, .data([]))
                all.append(t)
                block.append(t.encoded)
            }
            let (receipts, _) = state.executeBlock(block, proposer: proposer, signatureChecked: { _ in true })
            #expect(receipts.allSatisfy { $0.code == .ok })
        }
        #expect(!state.isRecentlyExecuted(all[0].id) && !state.isRecentlyExecuted(all[767].id), "out of the window")
        #expect(state.isRecentlyExecuted(all[all.count - window].id) && state.isRecentlyExecuted(all.last!.id))
        var recentBuckets = 0
        state.tree.visitLeaves { if $0.key.starts(with: Array("dag/recent/".utf8)) { recentBuckets += 1 } }
        #expect(recentBuckets == window / 256, "the dag/ module keeps exactly the window")
        // An old transaction replayed: refused by its author's seq, with no effect.
        let before = state.stateRoot
        let replay = state.execute([all[0].encoded], proposer: proposer)
        #expect(replay[0].code == .badSequence)
        #expect(state.stateRoot == before, "a refused replay changes nothing")
        // A predecessor that left the window is refused (the author re-signs on current heads).
        let late = tx(authors[0], seqs[0] + 1, fee: 0, .data([]), preds: [all[0].id])
        #expect(state.execute([late.encoded], proposer: proposer)[0].code == .missingPredecessor)
        let fresh = tx(authors[0], seqs[0] + 1, fee: 0, .data([]), preds: [all.last!.id])
        #expect(state.execute([fresh.encoded], proposer: proposer)[0].code == .ok)
        // The stored form restores the same root and the same window.
        let restored = try LedgerState.decode(state.encoded())
        #expect(restored.stateRoot == state.stateRoot && restored.isRecentlyExecuted(fresh.id))
        #expect(!restored.isRecentlyExecuted(all[0].id))
    }
}

@Suite("Ledger state: roots are fixed by the rules, not by how they are computed")
struct LedgerRootVectorTests {
    /// A fixed chain: four authors from fixed seeds, blocks of 100 transfers, data and
    /// failing transactions across bucket boundaries of the recent-id window.
    static func root() throws -> String {
        let authors = try (1...4).map { try Ed25519.PrivateKey(seed: [UInt8](repeating: UInt8($0), count: 32)) }
        let proposer = try Ed25519.PrivateKey(seed: [UInt8](repeating: 9, count: 32)).publicKey
        var state = LedgerState(
            chainID: "c", balances: Dictionary(uniqueKeysWithValues: authors.map { ($0.publicKey, 1_000) }))
        var seqs = [UInt64](repeating: 0, count: 4)
        var previous: [TxID?] = [nil, nil, nil, nil]
        for block in 0..<9 {
            var payload: [[UInt8]] = []
            for k in 0..<100 {
                let a = (block + k) % 4
                seqs[a] += 1
                let amount: UInt64 = k % 17 == 0 ? 1_000_000 : UInt64(k)  // some transfers fail
                let tx = Transaction(
                    chainID: "c", author: authors[a], seq: seqs[a], fee: 1,
                    payload: k % 5 == 0
                        ? .data([UInt8(k)]) : .transfer(to: authors[(a + 1) % 4].publicKey, amount: amount),
                    predecessors: previous[a].map { [$0] } ?? [])
                previous[a] = tx.id
                payload.append(tx.encoded)
            }
            _ = state.executeBlock(payload, proposer: proposer, signatureChecked: { _ in true })
        }
        return state.root.hex
    }

    @Test("a fixed chain of 900 transactions has the root it had before the recent-id window was buffered per block")
    func fixedChainRoot() throws {
        let root = try Self.root()
        #expect(root == "09694ec9eeb58e28a0eb18632bfc6985bb8cd4436d750604aaa0940c07f1d20c", "root \(root)")
    }
}
