import Consensus
import Ledger
import NodeCrypto

/// The ledger behind consensus: blocks run on `LedgerState`, leaders draw payloads from
/// the transaction DAG, and the next epoch's validators come from the committed system
/// state. The node's chain machine runs this; so can a simulation.
public struct LedgerExecution: BlockExecution {
    public typealias State = LedgerState
    public typealias Pool = TransactionDAG

    /// An epoch's configuration from its system state, first block and first state id
    /// (the genesis file's consensus parameters with the epoch's validators).
    public let epochConfig: @Sendable (SystemState, Hash32, Hash32) -> ConsensusConfig
    /// Runs contract transactions (the `Contracts` module's engine); nil fails them.
    public let contracts: (any ContractEngine)?
    /// Index into the DAG's order before which every transaction is committed: a
    /// payload scan covers only the recent tail.
    private var cursor = 0
    /// The DAG's prune generation the cursor was taken in (pruning shifts positions).
    private var cursorGeneration = 0

    public init(
        contracts: (any ContractEngine)? = nil,
        epochConfig: @escaping @Sendable (SystemState, Hash32, Hash32) -> ConsensusConfig
    ) {
        self.contracts = contracts
        self.epochConfig = epochConfig
    }

    /// The state id of a ledger state (its root is a 32-byte BLAKE2b digest).
    public static func stateID(_ state: LedgerState) -> Hash32 { Hash32(computed: state.root) }

    public func execute(_ block: Block, on state: LedgerState, pool: TransactionDAG) -> ExecutedBlock<LedgerState> {
        var next = state
        // Transactions in the DAG were verified on arrival (same id, same bytes).
        let (receipts, ends) = next.executeBlock(
            block.payload, proposer: block.author, signatureChecked: pool.contains, contracts: contracts)
        return ExecutedBlock(
            state: next, stateID: Self.stateID(next), endsEpoch: ends,
            failed: receipts.filter { $0.failure != nil }.count,
            receipts: receipts.map {
                ExecutionReceipt(
                    id: $0.id.bytes, code: $0.code.rawValue, log: $0.failure, gas: $0.gas, output: $0.output)
            })
    }

    public func nextEpochConfig(after last: Block, state: LedgerState, stateID: Hash32) -> ConsensusConfig {
        // An epoch ended, so the state has a system part (a ledger without one never ends epochs).
        epochConfig(state.system!, last.id, stateID)
    }

    /// Transactions from the DAG that can execute on `parent`, in the DAG's causal order:
    /// each the author's next seq, after its predecessors, with its fee covered, within
    /// the caps. (A transaction that cannot run yet is left for a later block: failing it
    /// would leave no trace, and it would be proposed again.)
    public mutating func payload(
        on parent: LedgerState, committed: LedgerState, pool: TransactionDAG, budget: Int, maxCount: Int
    ) -> [[UInt8]] {
        let order = pool.order
        if cursorGeneration != pool.generation {
            cursor = 0
            cursorGeneration = pool.generation
        }
        while cursor < order.count {
            if let tx = pool.transaction(order[cursor]), !committed.isDone(tx) { break }
            cursor += 1
        }
        var included: Set<TxID> = []
        var nextSeq: [Ed25519.PublicKey: UInt64] = [:]
        var out: [[UInt8]] = []
        var bytes = 0
        var gas: UInt64 = 0
        for id in order[min(cursor, order.count)...] {
            guard let tx = pool.transaction(id) else { continue }
            // The voters' execution defers contract work past the block's gas: so does the leader.
            if case .contract(let msg) = tx.payload {
                guard msg.gasLimit <= ContractMsg.maxBlockGas - gas else { continue }
            }
            let expected = nextSeq[tx.author] ?? parent.seq(of: tx.author) + 1
            guard tx.seq == expected, parent.balance(of: tx.author) >= tx.fee,
                tx.predecessors.allSatisfy({ parent.isRecentlyExecuted($0) || included.contains($0) })
            else { continue }
            // Both caps are the voters' rules (ConsensusConfig): a larger block is refused.
            if bytes + tx.encoded.count > budget { break }
            included.insert(id)
            if case .contract(let msg) = tx.payload { gas += msg.gasLimit }
            nextSeq[tx.author] = expected + 1
            out.append(tx.encoded)
            bytes += tx.encoded.count
            if out.count >= maxCount { break }
        }
        return out
    }
}
