import Consensus
import Foundation
import Ledger
import Logging
import NodeCrypto
import Storage
import Wire

/// Runs the pure `ConsensusCore` for the node: executes blocks on `LedgerState`,
/// builds payloads from the transaction DAG, keeps timers, and writes the safety
/// state, blocks and commits to SQLite before the messages that depend on them leave.
/// It returns network actions for the runtime to send.
struct ConsensusHost {
    /// First byte of a gossip payload carrying a proposal, vote or timeout.
    static let gossipTopic: UInt8 = 2
    /// First byte of a direct payload carrying a block request or response.
    static let directTag: UInt8 = 0x10

    /// Encoded consensus messages for the runtime to send: flooded over gossip (topic
    /// byte `gossipTopic`) or sent straight to one peer (tag `directTag`).
    enum NetworkAction {
        case broadcast([UInt8])
        case send(to: ValidatorID, [UInt8], floodIfUnreachable: Bool)
        /// To every connected peer (catch-up status).
        case toNeighbours([UInt8])
        /// The peer served something invalid.
        case penalize(peer: ValidatorID, reason: String)
    }

    let genesis: Genesis
    var core: ConsensusCore
    private let key: Ed25519.PrivateKey
    private let store: ConsensusStore
    private(set) var catchUp = CatchUp()
    private var lastStatusSent = Date.distantPast
    /// Catch-up progress since the node last started syncing.
    private var syncStats = (started: Date(), blocks: 0, transactions: 0, lastReport: Date.distantPast)
    /// Blocks and transactions applied by catch-up since start, and the seconds it took.
    private(set) var catchUpTotals = (blocks: 0, transactions: 0, seconds: 0.0)
    private let logger: Logger
    private(set) var committedState: LedgerState
    private(set) var committedHeight: UInt64
    private var states: [Hash32: LedgerState] = [:]
    private var timers: [Round: Date] = [:]
    private(set) var commitTimes: [Date] = []
    private(set) var lastCommitAt: Date?
    private(set) var failedTransactions = 0
    /// Transactions in blocks committed since this process started.
    private(set) var committedTransactions = 0
    /// A round this node leads, and when to propose for it.
    private var proposalDue: (round: Round, at: Date)?
    var metrics: NodeMetrics?
    private var observedRound: Round = 0
    private var roundStartedAt = ContinuousClock.now
    private var blockSeenAt: [Hash32: ContinuousClock.Instant] = [:]
    /// Index into the DAG's order before which every transaction is committed.
    private var payloadCursor = 0

    init(genesis: Genesis, key: Ed25519.PrivateKey, store: ConsensusStore, logger: Logger) throws {
        self.genesis = genesis
        self.key = key
        self.store = store
        self.logger = logger
        let config = genesis.consensusConfig()
        var state = genesis.initialState
        var height: UInt64 = 0
        var recovered: RecoveredState?
        if let last = try store.lastCommitted() {
            state = try Self.replay(store: store, to: last.height, genesisState: state)
            height = last.height
            recovered = RecoveredState(
                safety: SafetyState(epoch: config.epoch), blocks: [], committedBlockID: try Hash32(bytes: last.id),
                committedRound: last.round, committedStateID: try Hash32(bytes: state.root),
                recentCommitted: try Self.recentCommitted(store: store, height: last.height, config: config))
        }
        if let safetyBytes = try store.loadSafety() {
            let safety = try SafetyState.decode(safetyBytes)
            var r =
                recovered
                ?? RecoveredState(
                    safety: safety, blocks: [], committedBlockID: config.genesisBlockID, committedRound: 0,
                    committedStateID: config.genesisStateID)
            r.safety = safety
            r.blocks = try store.loadPending().map { try Block.decode($0) }
            recovered = r
        }
        committedState = state
        committedHeight = height
        core = ConsensusCore(config: config, key: key, recovered: recovered)
        states[core.committedBlockID] = state
    }

    var isValidator: Bool { core.config.validators.contains(core.me) }

    /// Enough committed history for reputation-based election to agree with the others.
    static func recentCommitted(store: ConsensusStore, height: UInt64, config: ConsensusConfig) throws -> [Block] {
        let keep = UInt64(10 * config.validators.validators.count + 48)
        return try store.committed(from: height > keep ? height - keep + 1 : 1, limit: Int(keep)).map {
            try Block.decode($0.block)
        }
    }

    /// A ledger snapshot is stored with every `snapshotInterval`-th block; between
    /// snapshots a restart replays the committed blocks.
    static let snapshotInterval: UInt64 = 100

    /// The committed state at `height`: the last snapshot, then the blocks after it,
    /// each of which must reproduce the state id recorded with it.
    static func replay(store: ConsensusStore, to height: UInt64, genesisState: LedgerState) throws -> LedgerState {
        var state = genesisState
        var next: UInt64 = 1
        if let snapshot = try store.loadLedgerState() {
            guard snapshot.height <= height else {
                throw ConfigError(
                    "consensus store: ledger snapshot at \(snapshot.height) is past the last block \(height)")
            }
            state = try LedgerState.decode(snapshot.state)
            next = snapshot.height + 1
        }
        while next <= height {
            let batch = try store.committed(from: next, limit: 256)
            guard !batch.isEmpty else { throw ConfigError("consensus store: committed block \(next) is missing") }
            for stored in batch {
                guard stored.height == next else {
                    throw ConfigError("consensus store: committed block \(next) is missing")
                }
                let block = try Block.decode(stored.block)
                // These blocks were verified and certified before they were stored; a
                // signature that did not hold would show as a different state id below.
                _ = state.execute(block.payload, proposer: block.author, signatureChecked: { _ in true })
                guard state.root == stored.stateID else {
                    throw ConfigError(
                        "consensus store: replaying block \(next) gives state \(state.root.hex.prefix(16)), "
                            + "not the recorded \(stored.stateID.hex.prefix(16)) (corrupted store?)")
                }
                next += 1
            }
        }
        return state
    }

    mutating func start(dag: TransactionDAG) throws -> [NetworkAction] {
        try run(core.start(), dag: dag)
    }

    /// A consensus message from the network; `sender` is the signer (or the peer, for
    /// block requests and responses).
    mutating func received(
        _ message: ConsensusMessage, from sender: ValidatorID, dag: TransactionDAG
    ) throws
        -> [NetworkAction]
    {
        let now = Date()
        switch message {
        case .chainStatus(let height, _):
            defer { heardStatus = true }
            return try follow(
                catchUp.statusReceived(from: sender, height: height, localHeight: committedHeight, now: now.t), dag: dag
            )
        case .getCommitted(let height, let count):
            return try serveRange(from: height, count: count, to: sender)
        case .committedRange(let height, let blocks, let proof):
            guard catchUp.isAwaited(from: sender, height: height) else { return [] }
            // Consensus committed meanwhile: not the peer's fault, ask again from the new tip.
            guard height == committedHeight + 1 else {
                return try follow(catchUp.applied(localHeight: committedHeight, now: now.t), dag: dag)
            }
            return try applyRange(blocks, proof: proof, dag: dag)
        default:
            // While syncing, live consensus traffic is for rounds this node cannot judge
            // yet; right after start, wait briefly for a neighbour's height first, so a
            // node far behind syncs by verified ranges instead of chasing ancestors one
            // block at a time.
            guard !catchUp.syncing, heardStatus || now.timeIntervalSince(startedAt) > Self.initialStatusWait else {
                return []
            }
            return try run(core.receive(message, from: sender), dag: dag)
        }
    }

    /// A neighbour connected: tell it this node's height at once.
    func peerConnected(_ peer: ValidatorID) -> [NetworkAction] {
        [
            .send(
                to: peer, ConsensusMessage.chainStatus(height: committedHeight, round: core.committedRound).encoded(),
                floodIfUnreachable: false)
        ]
    }

    private var heardStatus = false
    private let startedAt = Date()
    static let initialStatusWait: Double = 3

    /// A neighbour disconnected.
    mutating func peerGone(_ peer: ValidatorID, dag: TransactionDAG) throws -> [NetworkAction] {
        try follow(catchUp.peerGone(peer, localHeight: committedHeight, now: Date().t), dag: dag)
    }

    /// Fires due round timers.
    mutating func tick(now: Date, dag: TransactionDAG) throws -> [NetworkAction] {
        var out: [NetworkAction] = []
        if now.timeIntervalSince(lastStatusSent) >= Self.statusInterval {
            lastStatusSent = now
            out.append(
                .toNeighbours(
                    ConsensusMessage.chainStatus(height: committedHeight, round: core.committedRound).encoded()))
        }
        out += try follow(catchUp.tick(localHeight: committedHeight, now: now.t), dag: dag)
        if catchUp.syncing { return out }
        for (round, deadline) in timers.sorted(by: { $0.key < $1.key }) where deadline <= now {
            timers[round] = nil
            out += try run(core.timeoutFired(round: round), dag: dag)
        }
        if let due = proposalDue, due.at <= now {
            proposalDue = nil
            let batch = payload(dag: dag)
            out += try run(core.proposePayload(round: due.round, payload: batch), dag: dag)
        }
        return out
    }

    /// Seconds between committed-height reports to neighbours.
    static let statusInterval: Double = 1

    // MARK: Catch-up

    /// Turns catch-up actions into network actions, and restarts consensus when
    /// catch-up has just finished.
    private mutating func follow(
        _ actions: [CatchUp.Action], dag: TransactionDAG
    ) throws
        -> [NetworkAction]
    {
        var out: [NetworkAction] = []
        for action in actions {
            switch action {
            case .request(let peer, let height, let count):
                out.append(
                    .send(
                        to: peer, ConsensusMessage.getCommitted(height: height, count: count).encoded(),
                        floodIfUnreachable: false))
            case .penalize(let peer, let reason):
                out.append(.penalize(peer: peer, reason: reason))
            }
        }
        metrics?.syncing.set(Double(catchUp.syncing ? 1 : 0))
        metrics?.syncTarget.set(Double(catchUp.target))
        if catchUp.syncing && !inCatchUp {
            inCatchUp = true
            syncStats = (Date(), 0, 0, Date())
            logger.info(
                "behind the network: catching up",
                metadata: ["height": "\(committedHeight)", "target": "\(catchUp.target)"])
        } else if !catchUp.syncing && inCatchUp {
            inCatchUp = false
            reportProgress(force: true)
            logger.info("caught up; following consensus", metadata: ["height": "\(committedHeight)"])
            out += try run(core.start(), dag: dag)
        }
        return out
    }

    private var inCatchUp = false

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

    /// Answers `getCommitted`: blocks from `height` on, ending where a stored commit QC
    /// commits the last of them, within the message budget.
    private func serveRange(from height: UInt64, count: UInt16, to peer: ValidatorID) throws -> [NetworkAction] {
        guard height >= 1, height <= committedHeight,
            let range = try Self.committedRange(store: store, from: height, count: count)
        else { return [] }
        let message = ConsensusMessage.committedRange(height: height, blocks: range.blocks, proof: range.proof)
        return [.send(to: peer, message.encoded(), floodIfUnreachable: false)]
    }

    /// Up to about `count` stored committed blocks from `height` on, cut where a stored
    /// commit QC commits the last of them, within the message budget; nil when no such
    /// cut exists.
    static func committedRange(
        store: ConsensusStore, from height: UInt64, count: UInt16
    ) throws -> (
        blocks: [Block], proof: QuorumCert
    )? {
        var blocks: [Block] = []
        var bytes = 0
        var end: (count: Int, proof: QuorumCert)?
        // Commit groups are short; read a little past `count` to reach the end of one.
        for stored in try store.committed(from: height, limit: Int(count) + 32) {
            guard let block = try? Block.decode(stored.block), let qc = try? QuorumCert.decode(stored.commitQC) else {
                break
            }
            bytes += stored.block.count
            if bytes > rangeBudget || blocks.count >= Int(CatchUp.maxRangeBlocks) { break }
            blocks.append(block)
            if qc.voteInfo.parentID == block.id {
                end = (blocks.count, qc)
                if blocks.count >= Int(count) { break }
            }
        }
        guard let end else { return nil }
        return (Array(blocks.prefix(end.count)), end.proof)
    }

    /// Bytes of blocks in one range answer: under the gossip layer's 4 MiB message limit.
    static let rangeBudget = 3 * 1024 * 1024

    /// Verifies an awaited range against the committed tip, executes it, stores it, and
    /// moves consensus to the new tip.
    private mutating func applyRange(
        _ blocks: [Block], proof: QuorumCert, dag: TransactionDAG
    ) throws
        -> [NetworkAction]
    {
        let now = Date()
        var state = committedState
        var stateIDs: [Hash32] = []
        var failed = 0
        let problem = CatchUp.verifyRange(blocks, proof: proof, after: core.committedBlockID, config: core.config) {
            block in
            let receipts = state.execute(block.payload, proposer: block.author, signatureChecked: dag.contains)
            failed += receipts.filter { $0.failure != nil }.count
            let id = (try? Hash32(bytes: state.root)) ?? .zero
            stateIDs.append(id)
            return id
        }
        if let problem {
            logger.warning("invalid committed range from a peer", metadata: ["reason": "\(problem)"])
            return try follow(catchUp.failed(reason: problem, localHeight: committedHeight, now: now.t), dag: dag)
        }
        var records: [ConsensusStore.CommittedBlock] = []
        let proofBytes = proof.encoded()
        for (block, stateID) in zip(blocks, stateIDs) {
            records.append(
                .init(
                    height: committedHeight + UInt64(records.count) + 1, id: block.id.bytes, round: block.round,
                    block: block.encoded(), stateID: stateID.bytes, commitQC: proofBytes))
        }
        let snapshotDue = records.contains { $0.height % Self.snapshotInterval == 0 }
        try store.commit(records, ledgerState: snapshotDue ? state.encoded() : nil)
        let last = blocks[blocks.count - 1]
        let transactions = blocks.reduce(0) { $0 + $1.payload.count }
        committedHeight += UInt64(blocks.count)
        committedState = state
        committedTransactions += transactions
        failedTransactions += failed
        syncStats.blocks += blocks.count
        syncStats.transactions += transactions
        catchUpTotals.blocks += blocks.count
        catchUpTotals.transactions += transactions
        catchUpTotals.seconds += Date().timeIntervalSince(now)
        // Consensus restarts from the new tip, keeping its safety state (it never signs
        // below what it signed before).
        core = ConsensusCore(
            config: core.config, key: key,
            recovered: RecoveredState(
                safety: core.safety, blocks: [], committedBlockID: last.id, committedRound: last.round,
                committedStateID: stateIDs[stateIDs.count - 1],
                recentCommitted: try Self.recentCommitted(store: store, height: committedHeight, config: core.config)))
        reportedTimeouts = (0, 0)
        states = [last.id: state]
        timers = [:]
        proposalDue = nil
        blockSeenAt = [:]
        lastCommitAt = Date()
        metrics?.committedHeight.set(Double(committedHeight))
        metrics?.catchUpBlocks.increment(by: Int64(blocks.count))
        reportProgress(force: false)
        return try follow(catchUp.applied(localHeight: committedHeight, now: Date().t), dag: dag)
    }

    /// Carries out core actions in order. Storage errors are thrown: a node that cannot
    /// persist must stop rather than send what it could not record.
    private mutating func run(_ initial: [ConsensusCore.Action], dag: TransactionDAG) throws -> [NetworkAction] {
        defer { observeRound() }
        var queue = initial
        var out: [NetworkAction] = []
        while !queue.isEmpty {
            let action = queue.removeFirst()
            switch action {
            case .send(let to, let message):
                // Votes reach the next leader through the mesh if it is not a neighbour;
                // block requests and responses go to a neighbour only.
                let flood: Bool
                switch message {
                case .proposal, .vote, .timeout: flood = true
                default: flood = false
                }
                out.append(.send(to: to, message.encoded(), floodIfUnreachable: flood))
            case .broadcast(let message):
                out.append(.broadcast(message.encoded()))
            case .persistSafety(let safety):
                try store.saveSafety(safety.encoded())
            case .persistBlock(let block):
                blockSeenAt[block.id] = ContinuousClock.now
                try store.savePending(id: block.id.bytes, round: block.round, block: block.encoded())
            case .scheduleTimeout(let round, let after):
                timers = timers.filter { $0.key >= round }
                timers[round] = Date().addingTimeInterval(after)
            case .execute(let block, _):
                guard var state = states[block.parentID] else { continue }
                // Transactions in the DAG were verified on arrival (same id, same bytes).
                let receipts = state.execute(block.payload, proposer: block.author, signatureChecked: dag.contains)
                failedTransactions += receipts.filter { $0.failure != nil }.count
                states[block.id] = state
                queue += core.blockExecuted(id: block.id, stateID: try Hash32(bytes: state.root))
            case .requestPayload(let round):
                // Transactions waiting, or certified blocks with transactions that still
                // need the next blocks to commit (2-chain): propose now (latency). Neither:
                // wait the block interval, so an idle chain does not race through empty blocks.
                let batch = payload(dag: dag)
                if batch.isEmpty && !uncommittedTransactions() {
                    proposalDue = (round, Date().addingTimeInterval(genesis.consensus.min_block_interval))
                } else {
                    queue += core.proposePayload(round: round, payload: batch)
                }
            case .commit(let blocks, let qc):
                try commit(blocks, qc)
            case .fetchBlock(let id, let from):
                out.append(.send(to: from, ConsensusMessage.blockRequest(id).encoded(), floodIfUnreachable: false))
            case .serveCommittedBlock(let id, let to):
                if let stored = try store.committed(id: id.bytes), let block = try? Block.decode(stored.block) {
                    out.append(
                        .send(to: to, ConsensusMessage.blockResponse(block).encoded(), floodIfUnreachable: false))
                }
            case .evidence(let text):
                logger.warning("consensus evidence", metadata: ["evidence": "\(text)"])
            }
        }
        return out
    }

    /// Whether a block between the last commit and the highest QC carries transactions.
    private func uncommittedTransactions() -> Bool {
        var cursor = core.highQC.blockID
        while cursor != core.committedBlockID, let block = core.block(cursor) {
            if !block.payload.isEmpty { return true }
            cursor = block.parentID
        }
        return false
    }

    /// Transactions from the DAG not yet executed on the certified chain, in the
    /// DAG's causal order, each after its predecessors, up to the block size cap.
    private mutating func payload(dag: TransactionDAG) -> [[UInt8]] {
        guard let parent = states[core.highQC.blockID] else { return [] }
        // Everything before the cursor is committed: the scan covers only the recent tail.
        let order = dag.order
        while payloadCursor < order.count, committedState.isExecuted(order[payloadCursor]) { payloadCursor += 1 }
        var included: Set<TxID> = []
        var out: [[UInt8]] = []
        for id in order[payloadCursor...] where !parent.isExecuted(id) {
            guard let tx = dag.transaction(id),
                tx.predecessors.allSatisfy({ parent.isExecuted($0) || included.contains($0) })
            else { continue }
            included.insert(id)
            out.append(tx.encoded)
            if out.count >= genesis.consensus.max_block_transactions { break }
        }
        return out
    }

    private mutating func commit(_ blocks: [Block], _ qc: QuorumCert) throws {
        guard let last = blocks.last, let state = states[last.id] else {
            throw ConfigError("committed block \(blocks.last?.id.hex ?? "?") was never executed")
        }
        var records: [ConsensusStore.CommittedBlock] = []
        for block in blocks {
            committedHeight += 1
            let stateID = try states[block.id].map { try Hash32(bytes: $0.root) } ?? .zero
            records.append(
                .init(
                    height: committedHeight, id: block.id.bytes, round: block.round, block: block.encoded(),
                    stateID: stateID.bytes, commitQC: qc.encoded()))
        }
        let snapshotDue = records.contains { $0.height % Self.snapshotInterval == 0 }
        try store.commit(records, ledgerState: snapshotDue ? state.encoded() : nil)
        committedState = state
        committedTransactions += blocks.reduce(0) { $0 + $1.payload.count }
        if let metrics {
            let now = ContinuousClock.now
            for block in blocks {
                if let seen = blockSeenAt.removeValue(forKey: block.id) { metrics.commitLatency.record(now - seen) }
            }
            metrics.commits.increment(by: Int64(blocks.count))
            metrics.committedHeight.set(Double(committedHeight))
            metrics.failedTransactions.increment(by: Int64(failedTransactions) - Int64(reportedFailures))
            reportedFailures = failedTransactions
        }
        blockSeenAt = blockSeenAt.filter { (core.block($0.key)?.round ?? 0) > last.round }
        // Keep the committed block's state and its descendants' only.
        let keep = Set(states.keys.filter { id in id == last.id || (core.block(id)?.round ?? 0) > last.round })
        states = states.filter { keep.contains($0.key) }
        let now = Date()
        lastCommitAt = now
        commitTimes.append(now)
        if commitTimes.count > 1000 { commitTimes.removeFirst(500) }
        logger.info(
            "committed",
            metadata: ["height": "\(committedHeight)", "round": "\(last.round)", "block": "\(last.id.hex.prefix(16))"])
    }

    private var reportedFailures = 0
    private var reportedTimeouts = (timer: 0, amplified: 0)

    /// Round gauge, round durations and TC count, from how the core's round moved.
    private mutating func observeRound() {
        guard let metrics else { return }
        // Counters only grow: a core rebuilt by catch-up starts its counts again at zero.
        metrics.timeoutsByTimer.increment(by: Int64(max(0, core.timeoutsByTimer - reportedTimeouts.timer)))
        metrics.timeoutsByAmplification.increment(
            by: Int64(max(0, core.timeoutsByAmplification - reportedTimeouts.amplified)))
        reportedTimeouts = (core.timeoutsByTimer, core.timeoutsByAmplification)
        guard core.currentRound > observedRound else { return }
        let now = ContinuousClock.now
        if observedRound > 0 { metrics.roundDuration.record(now - roundStartedAt) }
        if let tc = core.lastRoundTC, tc.round + 1 == core.currentRound { metrics.timeoutCertificates.increment() }
        observedRound = core.currentRound
        roundStartedAt = now
        metrics.round.set(Double(observedRound))
    }

    func committedBlock(height: UInt64) throws -> ConsensusStore.CommittedBlock? { try store.committed(height: height) }
}

extension Date {
    /// Seconds since the reference date, for the pure cores' clocks.
    fileprivate var t: Double { timeIntervalSinceReferenceDate }
}
