import Ledger
import NodeCrypto
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
        #expect(receipts[5].failure == "already executed")
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
            let proof = try #require(a.proof(for: key))
            #expect(proof.verify(root: a.root))
            let forged = StateProof(account: key, balance: proof.balance + 1, seq: proof.seq, path: proof.path)
            #expect(!forged.verify(root: a.root), "a different balance does not verify")
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
        #expect(a.proof(for: proposer) == nil)
    }
}
