import Consensus
import Execution
import Ledger
import NodeCrypto
import Testing

/// The ledger as the chain machine's application: what a block's execution returns, the
/// next epoch's configuration, and the payload a leader draws from the DAG.
@Suite("Execution: the ledger behind the chain state machine")
struct LedgerExecutionTests {
    let alice = Ed25519.PrivateKey()
    let bob = Ed25519.PrivateKey()
    let proposer = Ed25519.PrivateKey()

    func tx(_ key: Ed25519.PrivateKey, _ seq: UInt64, preds: [TxID] = [], amount: UInt64 = 1) -> Transaction {
        Transaction(
            chainID: "c", author: key, seq: seq, fee: 1, payload: .transfer(to: bob.publicKey, amount: amount),
            predecessors: preds)
    }

    func block(_ payload: [[UInt8]], round: Round = 1) -> Block {
        let genesis = QuorumCert.genesis(epoch: 1, blockID: .of([1]), stateID: .of([2]))
        return Block(epoch: 1, round: round, author: proposer.publicKey, payload: payload, qc: genesis)
    }

    var execution: LedgerExecution {
        LedgerExecution { system, block, state in
            ConsensusConfig(
                chainID: "c", epoch: system.epoch,
                validators: ValidatorSet(system.validators.map { Validator(id: $0.id, power: $0.power) }),
                genesisBlockID: block, genesisStateID: state)
        }
    }

    @Test("a transaction whose signature was never verified is checked; a forged one fails without effect")
    func forgedSignatureFails() throws {
        let state = LedgerState(chainID: "c", balances: [alice.publicKey: 100])
        let good = tx(alice, 1)
        var forged = tx(alice, 2, preds: [good.id], amount: 50).encoded
        forged[forged.count - 1] ^= 1  // the signature's last byte
        let result = execution.execute(block([good.encoded, forged]), on: state, pool: TransactionDAG(chainID: "c"))
        #expect(result.failed == 1)
        #expect(result.state.balance(of: bob.publicKey) == 1, "only the good transfer moved funds")
        #expect(result.stateID.bytes == result.state.root, "the state id is the ledger root")
        #expect(result.stateID != LedgerExecution.stateID(state))
        #expect(!result.endsEpoch)
        // Receipts come through the interface: one per transaction, with its code, log and gas.
        #expect(result.receipts.map(\.id) == [good.id.bytes, try Transaction.decode(forged).id.bytes])
        #expect(result.receipts.map(\.code) == [0, LedgerState.Receipt.Code.invalid.rawValue])
        #expect(result.receipts[1].log == "invalid signature" && result.receipts[0].log == nil)
        #expect(result.receipts[0].gas > 0)
    }

    @Test("a payload follows the DAG's causal order, skips what the parent executed, and keeps both caps")
    func payloadOrderAndCaps() throws {
        var dag = TransactionDAG(chainID: "c")
        var previous: [TxID] = []
        var all: [Transaction] = []
        for seq in UInt64(1)...6 {
            let t = tx(alice, seq, preds: previous)
            all.append(t)
            previous = [t.id]
            _ = dag.insert(t, source: "test")
        }
        try #require(dag.count == 6)
        var parent = LedgerState(chainID: "c", balances: [alice.publicKey: 100])
        var exec = execution
        let full = exec.payload(on: parent, committed: parent, pool: dag, budget: 1 << 20, maxCount: 100)
        #expect(full == all.map(\.encoded), "every transaction, in causal order")
        let two = exec.payload(on: parent, committed: parent, pool: dag, budget: 1 << 20, maxCount: 2)
        #expect(two == all.prefix(2).map(\.encoded))
        let three = all.prefix(3).reduce(0) { $0 + $1.encoded.count }
        let budgeted = exec.payload(on: parent, committed: parent, pool: dag, budget: three + 1, maxCount: 100)
        #expect(budgeted.count == 3, "the byte budget cuts the payload")
        // On a parent that executed the first three, the payload starts at the fourth.
        _ = parent.executeBlock(all.prefix(3).map(\.encoded), proposer: proposer.publicKey)
        let rest = exec.payload(on: parent, committed: parent, pool: dag, budget: 1 << 20, maxCount: 100)
        #expect(rest == all.suffix(3).map(\.encoded))
        #expect(exec.payload(on: parent, committed: parent, pool: dag, budget: 0, maxCount: 100).isEmpty)
    }

    @Test("the block that ends an epoch names the next epoch's validators from the state")
    func epochEnd() throws {
        let validators = [alice, bob].map {
            SystemState.ValidatorInfo(id: $0.publicKey, power: 1, bitcoinKey: [UInt8](repeating: 2, count: 33))
        }
        let state = LedgerState(
            chainID: "c", balances: [:], system: SystemState(epoch: 1, epochLength: 2, validators: validators))
        let first = execution.execute(block([]), on: state, pool: TransactionDAG(chainID: "c"))
        #expect(!first.endsEpoch)
        let last = block([], round: 2)
        let second = execution.execute(last, on: first.state, pool: TransactionDAG(chainID: "c"))
        #expect(second.endsEpoch)
        let next = execution.nextEpochConfig(after: last, state: second.state, stateID: second.stateID)
        #expect(next.epoch == 2)
        #expect(next.genesisBlockID == last.id && next.genesisStateID == second.stateID)
        #expect(Set(next.validators.validators.map(\.id)) == [alice.publicKey, bob.publicKey])
    }
}
