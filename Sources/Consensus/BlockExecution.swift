/// What the chain state machine needs of the application: run a block on its parent's
/// state, name the next epoch's validators, and choose a payload. The node plugs in
/// the ledger (module `Execution`); the simulator plugs in a model ledger. Both run
/// behind the same `ChainMachine`, so the simulator drives the code that ships.
public protocol BlockExecution: Sendable {
    /// The application state after a block (a value: the machine keeps one per
    /// uncommitted block and drops it when a sibling commits).
    associatedtype State: Sendable
    /// The read-only source a leader draws transactions from (the transaction DAG).
    associatedtype Pool

    /// Runs `block`'s payload on `state`. Transactions the pool already verified need
    /// no second signature check; everything else is checked here.
    func execute(_ block: Block, on state: State, pool: Pool) -> ExecutedBlock<State>

    /// The configuration of the epoch that begins after `last` (state `state`, id
    /// `stateID`): its validators are the ones the committed state names.
    func nextEpochConfig(after last: Block, state: State, stateID: Hash32) -> ConsensusConfig

    /// Transactions to propose on top of `parent` (not executed there, each after its
    /// predecessors), within `budget` bytes and `maxCount` transactions. `committed` is
    /// the committed state (everything it executed can be skipped for good).
    mutating func payload(on parent: State, committed: State, pool: Pool, budget: Int, maxCount: Int) -> [[UInt8]]
}

/// One transaction's result as the application reports it; the chain machine passes it
/// on with the commit and does not interpret it.
public struct ExecutionReceipt: Sendable, Equatable {
    /// The transaction's id (its hash, as the application defines it).
    public let id: [UInt8]
    /// 0 on success; otherwise the application's failure code.
    public let code: UInt32
    /// Why it failed (nil on success).
    public let log: String?
    public let gas: UInt64
    /// What the application reports beyond the code (a contract's events), as JSON.
    public let output: String?

    public init(id: [UInt8], code: UInt32, log: String?, gas: UInt64, output: String? = nil) {
        self.id = id
        self.code = code
        self.log = log
        self.gas = gas
        self.output = output
    }
}

/// A block's execution result.
public struct ExecutedBlock<State: Sendable>: Sendable {
    public var state: State
    /// The state id the block's voters certify (`commit_state_id` once it commits).
    public var stateID: Hash32
    /// The block ends its epoch (a validator change, or the epoch's length reached).
    public var endsEpoch: Bool
    /// Transactions that failed the rules (they stay in the block, without effect).
    public var failed: Int
    /// One per transaction of the payload, in order.
    public var receipts: [ExecutionReceipt]

    public init(state: State, stateID: Hash32, endsEpoch: Bool, failed: Int, receipts: [ExecutionReceipt] = []) {
        self.state = state
        self.stateID = stateID
        self.endsEpoch = endsEpoch
        self.failed = failed
        self.receipts = receipts
    }
}

/// A committed block as the chain store keeps it.
public struct CommittedRecord: Sendable, Equatable {
    public let height: UInt64
    public let block: Block
    public let stateID: Hash32
    /// The QC that committed it (a 2-chain QC, or the QC of an epoch-change proof).
    public let commitQC: QuorumCert

    public init(height: UInt64, block: Block, stateID: Hash32, commitQC: QuorumCert) {
        self.height = height
        self.block = block
        self.stateID = stateID
        self.commitQC = commitQC
    }
}

/// What the chain state machine reads of the committed chain (to serve catch-up and
/// block requests). Writes never go through here: the machine returns them as
/// actions, which its driver carries out before the messages that depend on them.
public protocol ChainStoreReader {
    /// Committed blocks from `height` on, in order, at most `limit`; it stops early at
    /// a gap.
    func committed(from height: UInt64, limit: Int) throws -> [CommittedRecord]
    func committed(id: Hash32) throws -> CommittedRecord?
    /// The proof of the epoch that ended with the block at `height`, if one did.
    func epochChange(endingAt height: UInt64) throws -> EpochChangeProof?
}
