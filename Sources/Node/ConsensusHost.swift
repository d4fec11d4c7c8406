import Consensus
import Execution
import Foundation
import Ledger
import Logging
import NodeCrypto
import StateSync
import StateTree
import Storage
import Wire

/// The driver of the node's chain state machine (`ChainMachine` over the ledger): it
/// recovers the machine from SQLite, feeds it messages and the clock, carries out its
/// actions — writes to SQLite before any message that depends on them leaves — logs its
/// notes, keeps metrics, and returns network actions for the runtime to send. Every
/// decision is the machine's.
struct ConsensusHost {
    /// First byte of a gossip payload carrying a proposal, vote or timeout.
    static let gossipTopic: UInt8 = 2
    /// First byte of a direct payload carrying a block request or response.
    static let directTag: UInt8 = 0x10

    typealias Machine = ChainMachine<LedgerExecution>

    /// Encoded consensus messages for the runtime to send: flooded over gossip (topic
    /// byte `gossipTopic`) or sent straight to one peer (tag `directTag`).
    enum NetworkAction {
        case broadcast([UInt8])
        case send(to: ValidatorID, [UInt8], floodIfUnreachable: Bool)
        /// To every connected peer (catch-up status).
        case toNeighbours([UInt8])
        /// The peer served something invalid.
        case penalize(peer: ValidatorID, reason: String)
        /// The peer did not serve what it claimed (a lighter score: it may be cut off).
        case discourage(peer: ValidatorID, reason: String)
        /// Signed proof of misbehaviour (two proposals or votes in one round).
        case evidence(String)
    }

    let genesis: Genesis
    private(set) var machine: Machine
    private let store: ConsensusStore
    private let logger: Logger
    var metrics: NodeMetrics?
    /// Catch-up progress since the node last started syncing.
    private var syncStats = (started: Date(), blocks: 0, transactions: 0, lastReport: Date.distantPast)
    /// Seconds spent applying catch-up ranges since start.
    private var catchUpSeconds = 0.0
    private var observedRound: Round = 0
    private var roundStartedAt = ContinuousClock.now
    private var blockSeenAt: [Hash32: ContinuousClock.Instant] = [:]
    private var reportedFailures = 0
    private var reportedTimeouts = (timer: 0, amplified: 0, epoch: Epoch(0))

    var core: ConsensusCore { machine.core }
    var committedState: LedgerState { machine.committedState }
    var committedHeight: UInt64 { machine.committedHeight }
    var catchUp: CatchUp { machine.catchUp }
    var isValidator: Bool { machine.isValidator }
    var leadsCurrentRound: Bool { machine.leadsCurrentRound }
    var failedTransactions: Int { machine.failedTransactions }
    var committedTransactions: Int { machine.committedTransactions }
    /// Blocks and transactions applied by catch-up since start, and the seconds it took.
    var catchUpTotals: (blocks: Int, transactions: Int, seconds: Double) {
        (machine.catchUpBlocks, machine.catchUpTransactions, catchUpSeconds)
    }

    /// Writes the state tree as deltas and keeps snapshots (`[state]` settings).
    private var statePersistence: StatePersistence

    init(
        genesis: Genesis, key: Ed25519.PrivateKey, store: ConsensusStore, logger: Logger,
        state settings: NodeConfiguration.StateSettings = .init(), installed: LedgerState? = nil,
        contracts: (any ContractEngine)? = nil
    ) throws {
        self.genesis = genesis
        self.store = store
        self.logger = logger
        statePersistence = StatePersistence(settings: settings)
        let first = genesis.consensusConfig()
        try store.saveEpoch(
            .init(
                epoch: first.epoch, startHeight: 1, genesisBlock: first.genesisBlockID.bytes,
                genesisState: first.genesisStateID.bytes, system: genesis.initialState.system!.encoded))
        var state = genesis.initialState
        var height: UInt64 = 0
        let last = try store.lastCommitted()
        if let last, let installed, installed.version == last.height, installed.root == last.stateID {
            // Just installed from a snapshot and written: no need to read it back.
            state = installed
            statePersistence.persisted = (installed.tree, installed.version)
            height = last.height
        } else if let last {
            let (replayed, stored) = try Self.replay(
                store: store, to: last.height, genesisState: state, contracts: contracts)
            state = replayed
            statePersistence.persisted = stored
            height = last.height
        }
        // The epoch the committed chain is in, and the block it builds on.
        guard let system = state.system, let epoch = try store.latestEpoch(), epoch.epoch == system.epoch else {
            throw ConfigError(
                "consensus store: the committed state is in epoch \(state.system?.epoch ?? 0) but no record of it is stored"
            )
        }
        let config = genesis.consensusConfig(
            system: system, genesisBlockID: try Hash32(bytes: epoch.genesisBlock),
            genesisStateID: try Hash32(bytes: epoch.genesisState))
        var recovered = RecoveredState(
            safety: SafetyState(epoch: config.epoch), blocks: [], committedBlockID: config.genesisBlockID,
            committedRound: 0, committedStateID: config.genesisStateID)
        if let last, last.height >= epoch.startHeight {
            recovered.committedBlockID = try Hash32(bytes: last.id)
            recovered.committedRound = last.round
            recovered.committedStateID = LedgerExecution.stateID(state)
            recovered.recentCommitted = try Self.recentCommitted(store: store, height: last.height, config: config)
        }
        // Safety state and pending blocks of an epoch that has ended are void: signatures
        // name their epoch, so the new epoch starts from a clean safety state.
        if let safetyBytes = try store.loadSafety() {
            let safety = try SafetyState.decode(safetyBytes)
            if safety.epoch == config.epoch {
                recovered.safety = safety
                recovered.blocks = try store.loadPending().map { try Block.decode($0) }.filter {
                    $0.epoch == config.epoch
                }
            }
        }
        var options = Machine.Options()
        options.minBlockInterval = genesis.consensus.min_block_interval
        options.snapshotInterval = Self.snapshotInterval
        let execution = LedgerExecution(contracts: contracts) { [genesis] system, block, state in
            genesis.consensusConfig(system: system, genesisBlockID: block, genesisStateID: state)
        }
        machine = Machine(
            execution: execution, key: key,
            recovered: .init(
                config: config, committedState: state, committedHeight: height, core: recovered,
                tipCommitQC: last.flatMap { try? QuorumCert.decode($0.commitQC) }),
            options: options, now: Date().t)
    }

    /// Enough committed history for reputation-based election to agree with the others.
    static func recentCommitted(store: ConsensusStore, height: UInt64, config: ConsensusConfig) throws -> [Block] {
        let keep = UInt64(10 * config.validators.validators.count + 48)
        return try store.committed(from: height > keep ? height - keep + 1 : 1, limit: Int(keep)).map {
            try Block.decode($0.block)
        }.filter { $0.epoch == config.epoch }  // reputation starts afresh each epoch
    }

    /// The state tree is written with every `snapshotInterval`-th block (as the changes
    /// since the last write); between writes a restart replays the committed blocks.
    static let snapshotInterval: UInt64 = 100

    /// The committed state at `height`: the newest stored state tree at or below it, then
    /// the blocks after it, each of which must reproduce the state id recorded with it.
    /// Also returns the stored tree the next write builds on.
    static func replay(
        store: ConsensusStore, to height: UInt64, genesisState: LedgerState, contracts: (any ContractEngine)? = nil
    ) throws -> (
        state: LedgerState, stored: (tree: SparseMerkleTree, version: UInt64)?
    ) {
        var state = genesisState
        var next: UInt64 = 1
        var stored: (tree: SparseMerkleTree, version: UInt64)?
        if let version = try store.stateVersion(atMost: height) {
            let nodes = try store.stateNodes(upTo: version.version)
            let tree = try SparseMerkleTree.load(root: try NodeRef.decode(version.root)) { v, hash in
                nodes[.init(version: v, hash: hash.bytes)]
            }
            state = try LedgerState.restore(chainID: genesisState.chainID, version: version.version, tree: tree)
            if let record = try store.committed(height: version.height), record.stateID != state.root {
                throw ConfigError(
                    "consensus store: the stored state at \(version.height) has root \(state.root.hex.prefix(16)), "
                        + "not the recorded \(record.stateID.hex.prefix(16)) (corrupted store?)")
            }
            stored = (tree, version.version)
            next = version.height + 1
        }
        while next <= height {
            let batch = try store.committed(from: next, limit: Int(min(256, height - next + 1)))
            guard !batch.isEmpty else { throw ConfigError("consensus store: committed block \(next) is missing") }
            for stored in batch {
                guard stored.height == next else {
                    throw ConfigError("consensus store: committed block \(next) is missing")
                }
                let block = try Block.decode(stored.block)
                // Every signature is checked again: live execution skipped only those of
                // transactions already verified into the DAG, and a transaction with a bad
                // signature that a leader put in a block failed there — it must fail here too.
                _ = state.executeBlock(
                    block.payload, proposer: block.author, signatureChecked: { _ in false }, contracts: contracts)
                guard state.root == stored.stateID else {
                    throw ConfigError(
                        "consensus store: replaying block \(next) gives state \(state.root.hex.prefix(16)), "
                            + "not the recorded \(stored.stateID.hex.prefix(16)) (corrupted store?)")
                }
                next += 1
            }
        }
        return (state, stored)
    }

    // MARK: Events

    private func inputs(_ dag: TransactionDAG) -> Machine.Inputs {
        .init(now: Date().t, pool: dag, store: StoredChain(store: store))
    }

    mutating func start(dag: TransactionDAG) throws -> [NetworkAction] {
        let inputs = inputs(dag)
        return try perform(machine.start(inputs))
    }

    /// A consensus message from the network, direct from `peer` or flooded (nil): the
    /// machine establishes whom it is from (docs/wire.md §5) and returns the verdict for
    /// the transport with what to send.
    mutating func received(
        _ message: ConsensusMessage, directFrom peer: ValidatorID?, dag: TransactionDAG
    ) throws
        -> (verdict: ConsensusCore.Provenance, actions: [NetworkAction])
    {
        let began = Date()
        let inputs = inputs(dag)
        let (verdict, actions) = try machine.received(message, directFrom: peer, inputs)
        let out = try perform(actions)
        if case .committedRange = message { catchUpSeconds += Date().timeIntervalSince(began) }
        return (verdict, out)
    }

    /// A neighbour connected: tell it this node's height at once.
    mutating func peerConnected(_ peer: ValidatorID) throws -> [NetworkAction] {
        try perform(machine.peerConnected(peer))
    }

    /// A neighbour disconnected.
    mutating func peerGone(_ peer: ValidatorID, dag: TransactionDAG) throws -> [NetworkAction] {
        let inputs = inputs(dag)
        return try perform(machine.peerGone(peer, inputs))
    }

    /// Transactions entered the DAG: a leader waiting for some proposes now.
    mutating func poolGrew(dag: TransactionDAG) throws -> [NetworkAction] {
        try perform(machine.poolGrew(inputs(dag)))
    }

    /// Fires due round timers, status reports and catch-up retries.
    mutating func tick(now: Date, dag: TransactionDAG) throws -> [NetworkAction] {
        let inputs = Machine.Inputs(now: now.t, pool: dag, store: StoredChain(store: store))
        return try perform(machine.tick(inputs))
    }

    // MARK: Carrying out the machine's actions

    /// Writes, in order, what the machine asks to persist, logs its notes, and returns the
    /// messages to send. Storage errors are thrown: a node that cannot persist must stop
    /// rather than send what it could not record.
    private mutating func perform(_ actions: [Machine.Action]) throws -> [NetworkAction] {
        do {
            return try carryOut(actions)
        } catch {
            // Nothing of this step leaves, and the machine takes no more events: its core
            // has moved past what is on disk.
            machine.fail("\(error)")
            throw error
        }
    }

    private mutating func carryOut(_ actions: [Machine.Action]) throws -> [NetworkAction] {
        defer { observe() }
        var out: [NetworkAction] = []
        for action in actions {
            switch action {
            case .send(let to, let message, let flood):
                out.append(.send(to: to, message.encoded(), floodIfUnreachable: flood))
            case .broadcast(let message):
                out.append(.broadcast(message.encoded()))
            case .toNeighbours(let message):
                out.append(.toNeighbours(message.encoded()))
            case .penalize(let peer, let reason):
                out.append(.penalize(peer: peer, reason: reason))
            case .discourage(let peer, let reason):
                out.append(.discourage(peer: peer, reason: reason))
            case .evidence(let text):
                out.append(.evidence(text))
            case .persistSafety(let safety):
                try store.saveSafety(safety.encoded())
            case .persistBlock(let block):
                blockSeenAt[block.id] = ContinuousClock.now
                try store.savePending(id: block.id.bytes, round: block.round, block: block.encoded())
            case .persistCommit(let commit):
                try persist(commit)
            case .note(let note):
                log(note)
            case .halt(let reason):
                // Never continue on a state the network does not share: stop the node.
                throw ConfigError("consensus halted: \(reason)")
            }
        }
        return out
    }

    private mutating func persist(_ commit: Machine.Commit) throws {
        guard let last = commit.records.last else { return }
        let qcBytes = commit.qc.encoded()
        let records = commit.records.map {
            ConsensusStore.CommittedBlock(
                height: $0.height, id: $0.block.id.bytes, round: $0.block.round, block: $0.block.encoded(),
                stateID: $0.stateID.bytes, commitQC: qcBytes)
        }
        var epochChange: (proof: [UInt8], next: ConsensusStore.EpochRecord)?
        if let change = commit.epochChange {
            guard let system = commit.state.system else {
                throw ConfigError("an epoch ended in a ledger without epochs")
            }
            epochChange = (
                change.proof.encoded(),
                .init(
                    epoch: change.next.epoch, startHeight: last.height + 1,
                    genesisBlock: change.next.genesisBlockID.bytes,
                    genesisState: change.next.genesisStateID.bytes, system: system.encoded,
                    systemProof: commit.state.proof(key: StateKey.system).proof.encoded,
                    heightProof: commit.state.proof(key: StateKey.height).proof.encoded)
            )
        }
        // Not at an epoch's end: its commit proof is the epoch-change proof, not a QC of the block.
        let snapshot = commit.epochChange == nil && statePersistence.isSnapshot(commit.records.map(\.height))
        let write =
            commit.snapshotDue || snapshot
            ? try statePersistence.write(commit.state, height: last.height, snapshot: snapshot, store: store) : nil
        var receipts: [ConsensusStore.Receipt] = []
        for (record, list) in zip(commit.records, commit.receipts) {
            for (index, r) in list.enumerated() {
                receipts.append(
                    .init(
                        height: record.height, index: index, txID: r.id, code: r.code, log: r.log, gas: r.gas,
                        output: r.output))
            }
        }
        try store.commit(records, state: write, epochChange: epochChange, receipts: receipts)
        if write != nil { statePersistence.persisted = (commit.state.tree, commit.state.version) }
        let now = Date()
        commitEvents.append((last.height, commit.qc, commit.epochChange != nil, now.timeIntervalSince1970))
        if commitEvents.count > 64 { commitEvents.removeFirst(32) }
        let transactions = commit.records.reduce(0) { $0 + $1.block.payload.count }
        if commit.byCatchUp {
            syncStats.blocks += records.count
            syncStats.transactions += transactions
            reportProgress(force: false)
        } else {
            logger.info(
                "committed",
                metadata: [
                    "height": "\(last.height)", "round": "\(last.block.round)",
                    "block": "\(last.block.id.hex.prefix(16))",
                ])
        }
        if recentLatencies.count > 512 { recentLatencies.removeFirst(256) }
        guard let metrics else { return }
        if commit.byCatchUp {
            metrics.catchUpBlocks.increment(by: Int64(records.count))
        } else {
            let seen = ContinuousClock.now
            for record in commit.records {
                if let at = blockSeenAt.removeValue(forKey: record.block.id) {
                    metrics.commitLatency.record(seen - at)
                    recentLatencies.append(seen - at)
                }
            }
            metrics.commits.increment(by: Int64(records.count))
        }
        metrics.committedHeight.set(Double(last.height))
        blockSeenAt = blockSeenAt.filter { (machine.core.block($0.key)?.round ?? 0) > last.block.round }
    }

    private mutating func log(_ note: Machine.Note) {
        switch note {
        case .catchingUp(let height, let target):
            syncStats = (Date(), 0, 0, Date())
            logger.info("behind the network: catching up", metadata: ["height": "\(height)", "target": "\(target)"])
        case .caughtUp(let height):
            reportProgress(force: true)
            logger.info("caught up; following consensus", metadata: ["height": "\(height)"])
        case .invalidRange(let reason):
            logger.warning("invalid committed range from a peer", metadata: ["reason": "\(reason)"])
        case .epochBegins(let epoch, let height, let validators, let isValidator):
            blockSeenAt = [:]
            metrics?.epoch.set(Double(epoch))
            logger.notice(
                "epoch \(epoch) begins",
                metadata: [
                    "height": "\(height)", "validators": "\(validators)",
                    "role": "\(isValidator ? "validator" : "full node")",
                ])
        case .reexecuted(let block):
            logger.warning("re-executing a committed block whose state was not kept", metadata: ["block": "\(block)"])
        }
    }

    private mutating func reportProgress(force: Bool) {
        let now = Date()
        guard force || now.timeIntervalSince(syncStats.lastReport) >= 2 else { return }
        syncStats.lastReport = now
        let seconds = max(0.001, now.timeIntervalSince(syncStats.started))
        logger.info(
            "catching up",
            metadata: [
                "height": "\(committedHeight)", "target": "\(catchUp.target)",
                "blocks_per_s": "\(String(format: "%.0f", Double(syncStats.blocks) / seconds))",
                "tx_per_s": "\(String(format: "%.0f", Double(syncStats.transactions) / seconds))",
            ])
    }

    /// Metrics from how the machine moved: round gauge and durations, TCs, timeouts,
    /// failed transactions, sync state.
    private mutating func observe() {
        guard let metrics else { return }
        let core = machine.core
        metrics.syncing.set(Double(catchUp.syncing ? 1 : 0))
        metrics.syncTarget.set(Double(catchUp.target))
        metrics.failedTransactions.increment(by: Int64(max(0, failedTransactions - reportedFailures)))
        reportedFailures = failedTransactions
        // Counters only grow: a core rebuilt by catch-up or an epoch starts its counts at zero.
        if core.config.epoch != reportedTimeouts.epoch || core.timeoutsByTimer < reportedTimeouts.timer {
            reportedTimeouts = (0, 0, core.config.epoch)
            observedRound = 0
        }
        metrics.timeoutsByTimer.increment(by: Int64(max(0, core.timeoutsByTimer - reportedTimeouts.timer)))
        metrics.timeoutsByAmplification.increment(
            by: Int64(max(0, core.timeoutsByAmplification - reportedTimeouts.amplified)))
        reportedTimeouts.timer = core.timeoutsByTimer
        reportedTimeouts.amplified = core.timeoutsByAmplification
        guard core.currentRound > observedRound else { return }
        let now = ContinuousClock.now
        if observedRound > 0 { metrics.roundDuration.record(now - roundStartedAt) }
        if let tc = core.lastRoundTC, tc.round + 1 == core.currentRound { metrics.timeoutCertificates.increment() }
        observedRound = core.currentRound
        roundStartedAt = now
        metrics.round.set(Double(observedRound))
    }

    /// Stored committed ranges (for the catch-up benchmark).
    static func committedRange(
        store: ConsensusStore, from height: UInt64, count: UInt16
    ) throws -> (
        blocks: [Block], proof: QuorumCert, suffix: [Block]
    )? {
        try Machine.committedRange(store: StoredChain(store: store), from: height, count: count)
    }

    func committedBlock(height: UInt64) throws -> ConsensusStore.CommittedBlock? { try store.committed(height: height) }

    // MARK: For checkpoints

    /// Commits since the runtime last took them: the height, the QC that committed it,
    /// whether that block ends its epoch, and when (UNIX seconds).
    private(set) var commitEvents: [(height: UInt64, qc: QuorumCert, endsEpoch: Bool, at: Double)] = []
    /// Proposal-to-commit times of the last blocks this node saw proposed (at most 512),
    /// for the status page's recent latency.
    private(set) var recentLatencies: [Duration] = []

    mutating func takeCommitEvents() -> [(height: UInt64, qc: QuorumCert, endsEpoch: Bool, at: Double)] {
        defer { commitEvents = [] }
        return commitEvents
    }

    /// An epoch's validator set, from the stored epoch records.
    func system(epoch: Epoch) -> SystemState? {
        guard let record = try? store.epoch(epoch) else { return nil }
        return try? SystemState.decode(record.system)
    }

    /// An epoch's consensus configuration (its validators check that epoch's QCs).
    func config(epoch: Epoch) -> ConsensusConfig? {
        if epoch == core.config.epoch { return core.config }
        guard let record = try? store.epoch(epoch), let system = try? SystemState.decode(record.system),
            let block = try? Hash32(bytes: record.genesisBlock), let state = try? Hash32(bytes: record.genesisState)
        else { return nil }
        return genesis.consensusConfig(system: system, genesisBlockID: block, genesisStateID: state)
    }

    /// A committed block's height and state id, and whether it ends its epoch.
    func committed(blockID: Hash32) -> (height: UInt64, stateID: Hash32, endsEpoch: Bool)? {
        guard let stored = try? store.committed(id: blockID.bytes), let state = try? Hash32(bytes: stored.stateID)
        else { return nil }
        return (stored.height, state, (try? store.epoch(endingAt: stored.height)) != nil)
    }

    /// The committed block whose state a commit QC certifies: its parent (2-chain), or for
    /// the QC that ended an epoch through the reconfiguration suffix, the epoch's last
    /// block (the empty suffix blocks keep its state and are not stored as committed).
    func committed(certifiedBy qc: QuorumCert) -> (height: UInt64, stateID: Hash32, endsEpoch: Bool)? {
        if let block = committed(blockID: qc.voteInfo.parentID) { return block }
        guard let end = end(ofEpoch: qc.commitInfo.epoch), end.qc.commitInfo == qc.commitInfo,
            let stored = try? store.committed(height: end.height), let state = try? Hash32(bytes: stored.stateID)
        else { return nil }
        return (end.height, state, true)
    }

    /// The committed block a checkpoint of (`epoch`, `round`) anchors, and the commit QC of
    /// that epoch and round: the highest block that QC committed. Commit QCs move forward
    /// with height, so a binary search over the store finds it in O(log height) reads.
    func committed(anchoring epoch: Epoch, round: Round) -> (height: UInt64, qc: QuorumCert)? {
        func key(_ height: UInt64) -> (QuorumCert, Epoch, Round)? {
            guard let stored = try? store.committed(height: height), let qc = try? QuorumCert.decode(stored.commitQC)
            else { return nil }
            return (qc, qc.commitInfo.epoch, qc.commitInfo.round)
        }
        // The greatest height whose commit QC is at or before (epoch, round). A node that
        // joined by snapshot holds the chain from the snapshot on.
        var low: UInt64 = (try? store.firstCommittedHeight()) ?? 1
        var high = committedHeight
        var found: (height: UInt64, qc: QuorumCert)?
        while low <= high {
            let mid = low + (high - low) / 2
            guard let (qc, e, r) = key(mid) else { return nil }
            if (e, r) <= (epoch, round) {
                if (e, r) == (epoch, round) { found = (mid, qc) }
                low = mid + 1
            } else {
                if mid == 0 { break }
                high = mid - 1
            }
        }
        return found
    }

    /// Where an epoch ended and the QC that committed its last block.
    func end(ofEpoch epoch: Epoch) -> (height: UInt64, qc: QuorumCert)? {
        guard let record = try? store.epoch(epoch), let height = record.endHeight, let bytes = record.proof,
            let proof = try? EpochChangeProof.decode(bytes)
        else { return nil }
        return (height, proof.commitQC)
    }

    /// `id` is a validator of the current epoch or of the one before it (whose set signs
    /// that epoch's last checkpoint, and may still hold a key of the coin).
    func isValidatorOfCurrentOrPreviousEpoch(_ id: ValidatorID) -> Bool {
        let epoch = core.config.epoch
        return core.config.validators.contains(id)
            || (epoch > 1 && system(epoch: epoch - 1)?.validators.contains { $0.id == id } == true)
    }

    func epochRecord(_ epoch: Epoch) throws -> ConsensusStore.EpochRecord? { try store.epoch(epoch) }

    func receipts(txID: [UInt8]) throws -> [ConsensusStore.Receipt] { try store.receipts(txID: txID) }

    // MARK: Serving snapshots

    /// The answer to a peer's snapshot request, from the store; `newest` is the offer
    /// (the runtime keeps it between requests).
    func answer(_ request: SnapshotMessage, newest: SnapshotDescriptor?) throws -> SnapshotMessage? {
        try SnapshotServer.answer(
            request, newest: newest, epochEnds: epochEnds(from:),
            range: { height, range in
                guard let version = try store.stateVersion(height: height), version.snapshot else {
                    return .unavailable
                }
                guard
                    let (leaves, proof) = try storedRange(
                        try NodeRef.decode(version.root), prefix: range.prefix, depth: range.depth,
                        limit: SnapshotMessage.maxChunkLeaves)
                else { return .tooLarge }
                return .leaves(leaves, proof)
            })
    }

    /// A key-hash range of a stored state version with its proof, read straight from the
    /// store; nil when it holds more than `limit` leaves.
    private func storedRange(
        _ root: NodeRef, prefix: StateHash, depth: Int, limit: Int
    ) throws -> (
        leaves: [StateLeaf], proof: RangeProof
    )? {
        try SparseMerkleTree.range(
            root: root, prefix: prefix, depth: depth, limit: limit,
            fetch: { try store.stateNode(version: $0, hash: $1.bytes) })
    }

    /// `key`'s committed value with a proof a light client checks from the genesis alone
    /// (`p2pnode verify-proof`): against the committed tip's state id and the QC that
    /// commits it.
    func certifiedProof(key: [UInt8]) throws -> CertifiedProof {
        guard let stored = try store.lastCommitted() else { throw ConfigError("nothing committed yet") }
        let block = try Block.decode(stored.block)
        let qc = try QuorumCert.decode(stored.commitQC)
        guard stored.height == committedHeight, stored.stateID == committedState.root else {
            throw ConfigError("the committed state moved on; ask again")
        }
        let (system, systemProof) = committedState.proof(key: StateKey.system)
        let root = SnapshotDescriptor(
            height: stored.height, block: block, stateID: try Hash32(bytes: stored.stateID), commitQC: qc,
            heightProof: committedState.proof(key: StateKey.height).proof, system: system ?? [],
            systemProof: systemProof)
        guard root.verify(config: core.config) == nil else {
            // The tip ended an epoch (its proof is the epoch change's): one block later it is a plain commit.
            throw ConfigError("the committed tip ends an epoch; ask again after the next block")
        }
        var ends: [EpochEnd] = []
        while UInt64(ends.count) < block.epoch - 1 {
            let more = try epochEnds(from: UInt64(ends.count) + 1)
            guard !more.isEmpty else { throw ConfigError("the end of epoch \(ends.count + 1) is not kept here") }
            ends += more
        }
        let (value, proof) = committedState.proof(key: key)
        return CertifiedProof(
            root: root, epochEnds: Array(ends.prefix(Int(block.epoch - 1))), key: key, value: value, proof: proof)
    }

    /// The height of the newest snapshot kept (cheap: for the runtime's cache).
    func newestSnapshotHeight() throws -> UInt64? { try store.snapshots().first?.height }

    /// The newest snapshot kept, as peers verify it: its block, the QC that commits it, and
    /// the proofs of the height and validators its state names.
    func newestSnapshot() throws -> SnapshotDescriptor? {
        for version in try store.snapshots() {
            guard let stored = try store.committed(height: version.height) else { continue }
            let root = try NodeRef.decode(version.root)
            func proved(_ key: [UInt8]) throws -> (value: [UInt8]?, proof: RangeProof)? {
                guard let (leaves, proof) = try storedRange(root, prefix: .of(key), depth: 256, limit: 1) else {
                    return nil
                }
                return (leaves.first?.value, proof)
            }
            guard let height = try proved(StateKey.height), let system = try proved(StateKey.system) else { continue }
            return SnapshotDescriptor(
                height: version.height, block: try Block.decode(stored.block),
                stateID: try Hash32(bytes: stored.stateID),
                commitQC: try QuorumCert.decode(stored.commitQC), heightProof: height.proof, system: system.value ?? [],
                systemProof: system.proof)
        }
        return nil
    }

    /// The ends of epochs `from` on, as many as fit one message (2 MiB).
    func epochEnds(from epoch: UInt64) throws -> [EpochEnd] {
        var out: [EpochEnd] = []
        var bytes = 0
        var e = max(epoch, 1)
        while out.count < SnapshotMessage.maxEpochEnds, let record = try store.epoch(e), let height = record.endHeight,
            let proof = record.proof, let last = record.lastBlock, let next = try store.epoch(e + 1),
            let systemProof = next.systemProof, let heightProof = next.heightProof
        {
            let end = EpochEnd(
                lastHeight: height, lastBlock: try Block.decode(last), stateID: try Hash32(bytes: next.genesisState),
                proof: try EpochChangeProof.decode(proof), system: next.system,
                systemProof: try RangeProof.decode(systemProof), heightProof: try RangeProof.decode(heightProof))
            bytes += last.count + proof.count + next.system.count + systemProof.count + 64
            if bytes > 2 << 20, !out.isEmpty { break }
            out.append(end)
            e += 1
        }
        return out
    }
}

/// The SQLite chain store as the chain machine reads it.
struct StoredChain: ChainStoreReader {
    let store: ConsensusStore

    func committed(from height: UInt64, limit: Int) throws -> [CommittedRecord] {
        var out: [CommittedRecord] = []
        for stored in try store.committed(from: height, limit: limit) {
            guard let record = Self.decode(stored) else { break }  // serve up to a damaged record
            out.append(record)
        }
        return out
    }

    func committed(id: Hash32) throws -> CommittedRecord? {
        try store.committed(id: id.bytes).flatMap(Self.decode)
    }

    func epochChange(endingAt height: UInt64) throws -> EpochChangeProof? {
        guard let record = try store.epoch(endingAt: height) else { return nil }
        guard let bytes = record.proof, let proof = try? EpochChangeProof.decode(bytes) else {
            throw ConfigError("consensus store: the proof of epoch \(record.epoch)'s end is missing or damaged")
        }
        return proof
    }

    private static func decode(_ stored: ConsensusStore.CommittedBlock) -> CommittedRecord? {
        guard let block = try? Block.decode(stored.block), let qc = try? QuorumCert.decode(stored.commitQC),
            let state = try? Hash32(bytes: stored.stateID)
        else { return nil }
        return CommittedRecord(height: stored.height, block: block, stateID: state, commitQC: qc)
    }
}

extension Date {
    /// Seconds since the reference date, for the pure cores' clocks.
    fileprivate var t: Double { timeIntervalSinceReferenceDate }
}

/// When and how the state tree is written: every `ConsensusHost.snapshotInterval` blocks
/// as the difference from the last write, a snapshot every `snapshot_interval` blocks
/// (kept for `snapshots_kept`), older versions pruned past `retained_heights`.
struct StatePersistence {
    let settings: NodeConfiguration.StateSettings
    /// The tree as last written and its version: the next write stores the difference.
    var persisted: (tree: SparseMerkleTree, version: UInt64)?

    init(settings: NodeConfiguration.StateSettings) { self.settings = settings }

    /// A commit batch that reaches a multiple of the snapshot interval is a snapshot, taken
    /// at its last block: the one its commit QC certifies.
    func isSnapshot(_ heights: [UInt64]) -> Bool { heights.contains { $0 % settings.snapshotInterval == 0 } }

    func write(
        _ state: LedgerState, height: UInt64, snapshot: Bool, store: ConsensusStore
    ) throws
        -> ConsensusStore.StateWrite
    {
        let delta = state.tree.delta(
            from: persisted?.tree, persistedVersion: persisted?.version, version: state.version)
        var keepFrom = height > settings.retainedHeights ? height - settings.retainedHeights : 0
        // The oldest snapshot still kept bounds pruning from below.
        let snapshots = (snapshot ? [height] : []) + (try store.snapshots().map(\.height))
        let oldestSnapshot = snapshots.prefix(settings.snapshotsKept).last
        if let oldestSnapshot { keepFrom = min(keepFrom, oldestSnapshot) }
        // Blocks from the oldest kept snapshot on stay, so a node can join by it; without
        // a snapshot yet, nothing is pruned.
        var blocksFrom: UInt64?
        if settings.keepBlocks > 0, height > settings.keepBlocks, let oldestSnapshot {
            blocksFrom = min(height - settings.keepBlocks, oldestSnapshot)
        }
        return ConsensusStore.StateWrite(
            height: height, version: state.version, root: delta.root.encoded,
            nodes: delta.nodes.map { ($0.version, $0.hash.bytes, $0.body) },
            stale: delta.stale.map { ($0.version, $0.hash.bytes) }, snapshot: snapshot, keepFrom: keepFrom,
            blocksFrom: blocksFrom)
    }
}
