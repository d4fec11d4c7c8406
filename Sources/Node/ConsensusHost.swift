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
        /// The peer did not serve what it claimed (a lighter score: it may be cut off).
        case discourage(peer: ValidatorID, reason: String)
        /// Signed proof of misbehaviour (two proposals or votes in one round).
        case evidence(String)
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
    /// The state after each executed block and its id (the root is costly: computed
    /// once, when the block executes).
    private var states: [Hash32: (ledger: LedgerState, id: Hash32)] = [:]
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
        let first = genesis.consensusConfig()
        try store.saveEpoch(
            .init(
                epoch: first.epoch, startHeight: 1, genesisBlock: first.genesisBlockID.bytes,
                genesisState: first.genesisStateID.bytes, system: genesis.initialState.system!.encoded))
        var state = genesis.initialState
        var height: UInt64 = 0
        let last = try store.lastCommitted()
        if let last {
            state = try Self.replay(store: store, to: last.height, genesisState: state)
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
            recovered.committedStateID = try Hash32(bytes: state.root)
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
        committedState = state
        committedHeight = height
        tipCommitQC = last.flatMap { try? QuorumCert.decode($0.commitQC) }
        core = ConsensusCore(config: config, key: key, recovered: recovered)
        catchUp.enteredEpoch(config.epoch)
        states[core.committedBlockID] = (state, recovered.committedStateID)
    }

    var isValidator: Bool { core.config.validators.contains(core.me) }

    /// Enough committed history for reputation-based election to agree with the others.
    static func recentCommitted(store: ConsensusStore, height: UInt64, config: ConsensusConfig) throws -> [Block] {
        let keep = UInt64(10 * config.validators.validators.count + 48)
        return try store.committed(from: height > keep ? height - keep + 1 : 1, limit: Int(keep)).map {
            try Block.decode($0.block)
        }.filter { $0.epoch == config.epoch }  // reputation starts afresh each epoch
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
                // Every signature is checked again: live execution skipped only those of
                // transactions already verified into the DAG, and a transaction with a bad
                // signature that a leader put in a block failed there — it must fail here too.
                _ = state.executeBlock(block.payload, proposer: block.author, signatureChecked: { _ in false })
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
        case .chainStatus(let height, _, let epoch, let proof):
            defer { heardStatus = true }
            return try follow(
                catchUp.statusReceived(
                    from: sender, height: height, epoch: epoch, proof: proof, localHeight: committedHeight,
                    localRound: core.committedRound, config: core.config, now: now.t), dag: dag)
        case .getCommitted(let height, let count):
            return try serveRange(from: height, count: count, to: sender)
        case .committedRange(let height, let blocks, let proof, let suffix):
            guard catchUp.isAwaited(from: sender, height: height) else { return [] }
            // Consensus committed meanwhile: not the peer's fault, ask again from the new tip.
            guard height == committedHeight + 1 else {
                return try follow(catchUp.superseded(localHeight: committedHeight, now: now.t), dag: dag)
            }
            // A probe (this node stays in consensus) replaces the core at the new tip; it
            // must then be started, as catch-up's end starts it.
            let probing = !catchUp.syncing
            var out = try applyRange(blocks, proof: proof, suffix: suffix, dag: dag)
            if probing && !catchUp.syncing { out += try run(core.start() + replayFutureMessages(), dag: dag) }
            return out
        default:
            // The next epoch's messages (this node has not seen its epoch end yet) wait
            // for it; they cannot be checked before the epoch's validators are known.
            if let epoch = message.epoch, epoch > core.config.epoch {
                futureMessages.offer(message, from: sender, current: core.config.epoch)
                return []
            }
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
        [.send(to: peer, chainStatus.encoded(), floodIfUnreachable: false)]
    }

    private var chainStatus: ConsensusMessage {
        .chainStatus(height: committedHeight, round: core.committedRound, epoch: core.config.epoch, proof: tipCommitQC)
    }

    /// The QC that committed the committed tip: what proves this node's height to others.
    private var tipCommitQC: QuorumCert?

    /// Next-epoch messages received before this node's epoch ended, replayed after.
    private var futureMessages = NextEpochBuffer()

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
            out.append(.toNeighbours(chainStatus.encoded()))
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
            case .discourage(let peer, let reason):
                out.append(.discourage(peer: peer, reason: reason))
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
            out += try run(core.start() + replayFutureMessages(), dag: dag)
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
        let message = ConsensusMessage.committedRange(
            height: height, blocks: range.blocks, proof: range.proof, suffix: range.suffix)
        return [.send(to: peer, message.encoded(), floodIfUnreachable: false)]
    }

    /// Up to about `count` stored committed blocks from `height` on, cut where a stored
    /// commit QC commits the last of them, within the message budget; nil when no such
    /// cut exists. A range stops at the end of an epoch, with the epoch-change proof.
    static func committedRange(
        store: ConsensusStore, from height: UInt64, count: UInt16
    ) throws -> (
        blocks: [Block], proof: QuorumCert, suffix: [Block]
    )? {
        var blocks: [Block] = []
        var bytes = 0
        var end: (count: Int, proof: QuorumCert, suffix: [Block])?
        // Commit groups are short; read a little past `count` to reach the end of one.
        for stored in try store.committed(from: height, limit: Int(count) + 32) {
            guard let block = try? Block.decode(stored.block), let qc = try? QuorumCert.decode(stored.commitQC) else {
                break
            }
            bytes += stored.block.count
            // The first commit group always goes whole: voters keep every uncommitted
            // branch within the budget, so one large block cannot stall catch-up.
            if blocks.count >= Int(CatchUp.maxRangeBlocks) || bytes > (end == nil ? Self.rangeLimit : rangeBudget) {
                break
            }
            blocks.append(block)
            if let epoch = try store.epoch(endingAt: stored.height) {
                guard let bytes = epoch.proof, let proof = try? EpochChangeProof.decode(bytes) else { break }
                end = (blocks.count, proof.commitQC, proof.suffix)
                break
            }
            if qc.voteInfo.parentID == block.id {
                end = (blocks.count, qc, [])
                if blocks.count >= Int(count) { break }
            }
        }
        guard let end else { return nil }
        return (Array(blocks.prefix(end.count)), end.proof, end.suffix)
    }

    static let rangeBudget = CatchUp.rangeBudget
    /// What one answer can carry at all (the gossip limit less the QC and suffix).
    static let rangeLimit = 3 * 1024 * 1024 + 768 * 1024

    /// Verifies an awaited range against the committed tip, executes it, stores it, and
    /// moves consensus to the new tip.
    private mutating func applyRange(
        _ blocks: [Block], proof: QuorumCert, suffix: [Block], dag: TransactionDAG
    ) throws
        -> [NetworkAction]
    {
        let now = Date()
        var state = committedState
        var stateIDs: [Hash32] = []
        var failed = 0
        var endsEpoch = false
        let problem = CatchUp.verifyRange(
            blocks, proof: proof, suffix: suffix, after: core.committedBlockID, config: core.config
        ) { block in
            let (receipts, ends) = state.executeBlock(
                block.payload, proposer: block.author, signatureChecked: dag.contains)
            failed += receipts.filter { $0.failure != nil }.count
            endsEpoch = ends
            let id = (try? Hash32(bytes: state.root)) ?? .zero
            stateIDs.append(id)
            return (id, ends)
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
        let last = blocks[blocks.count - 1]
        let lastID = stateIDs[stateIDs.count - 1]
        let snapshotDue = records.contains { $0.height % Self.snapshotInterval == 0 }
        try store.commit(
            records, ledgerState: snapshotDue ? state.encoded() : nil,
            epochChange: endsEpoch
                ? try epochRecord(
                    after: last, state: state, stateID: lastID, proof: EpochChangeProof(suffix: suffix, commitQC: proof)
                )
                : nil)
        let transactions = blocks.reduce(0) { $0 + $1.payload.count }
        committedHeight += UInt64(blocks.count)
        committedState = state
        tipCommitQC = proof
        committedTransactions += transactions
        commitEvents.append((committedHeight, proof, endsEpoch, Date().timeIntervalSince1970))
        if commitEvents.count > 64 { commitEvents.removeFirst(32) }
        failedTransactions += failed
        syncStats.blocks += blocks.count
        syncStats.transactions += transactions
        catchUpTotals.blocks += blocks.count
        catchUpTotals.transactions += transactions
        catchUpTotals.seconds += Date().timeIntervalSince(now)
        if endsEpoch {
            // Synced across the end of an epoch: the next range is checked against the
            // next epoch's validators, which the verified state names.
            startNextEpoch(after: last, stateID: lastID)
        } else {
            // Consensus restarts from the new tip, keeping its safety state (it never signs
            // below what it signed before).
            replaceCore(
                ConsensusCore(
                    config: core.config, key: key,
                    recovered: RecoveredState(
                        safety: core.safety, blocks: [], committedBlockID: last.id, committedRound: last.round,
                        committedStateID: lastID,
                        recentCommitted: try Self.recentCommitted(
                            store: store, height: committedHeight, config: core.config))),
                tip: last.id, stateID: lastID)
        }
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
                guard var state = states[block.parentID]?.ledger else { continue }
                // Transactions in the DAG were verified on arrival (same id, same bytes).
                let (receipts, endsEpoch) = state.executeBlock(
                    block.payload, proposer: block.author, signatureChecked: dag.contains)
                failedTransactions += receipts.filter { $0.failure != nil }.count
                let id = try Hash32(bytes: state.root)
                states[block.id] = (state, id)
                queue += core.blockExecuted(id: block.id, stateID: id, endsEpoch: endsEpoch)
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
            case .commit(let blocks, let qc, let epochChange):
                try commit(blocks, qc, epochChange: epochChange, dag: dag)
                if epochChange != nil, let last = blocks.last, let stateID = states[last.id]?.id {
                    // The old core is finished: what it still asked for no longer matters.
                    startNextEpoch(after: last, stateID: stateID)
                    queue = core.start() + replayFutureMessages()
                }
            case .fetchBlock(let id, let from):
                out.append(.send(to: from, ConsensusMessage.blockRequest(id).encoded(), floodIfUnreachable: false))
            case .serveCommittedBlock(let id, let to):
                if let stored = try store.committed(id: id.bytes), let block = try? Block.decode(stored.block) {
                    out.append(
                        .send(to: to, ConsensusMessage.blockResponse(block).encoded(), floodIfUnreachable: false))
                }
            case .evidence(let text):
                out.append(.evidence(text))
            case .diverged(let reason):
                // Never continue on a state the network does not share: stop the node.
                throw ConfigError("consensus halted: \(reason)")
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
        guard let parent = states[core.highQC.blockID]?.ledger else { return [] }
        // Everything before the cursor is committed: the scan covers only the recent tail.
        let order = dag.order
        while payloadCursor < order.count, committedState.isExecuted(order[payloadCursor]) { payloadCursor += 1 }
        var included: Set<TxID> = []
        var out: [[UInt8]] = []
        let budget = min(
            core.config.maxBlockBytes,
            core.config.maxUncommittedBytes - core.uncommittedBytes(through: core.highQC.blockID))
        var bytes = 0
        for id in order[payloadCursor...] where !parent.isExecuted(id) {
            guard let tx = dag.transaction(id),
                tx.predecessors.allSatisfy({ parent.isExecuted($0) || included.contains($0) })
            else { continue }
            // Both caps are the voters' rules (ConsensusConfig): a larger block is refused.
            if bytes + tx.encoded.count > budget { break }
            included.insert(id)
            out.append(tx.encoded)
            bytes += tx.encoded.count
            if out.count >= core.config.maxBlockTransactions { break }
        }
        return out
    }

    private mutating func commit(
        _ blocks: [Block], _ qc: QuorumCert, epochChange: EpochChangeProof?, dag: TransactionDAG
    ) throws {
        guard let last = blocks.last else { return }
        // Every committed block's state id is recorded (replay checks each). One whose
        // state this host no longer holds is executed again from its parent's, exactly
        // as live execution did; never recorded as zero.
        var ledger = committedState
        var ids: [Hash32] = []
        for block in blocks {
            if let known = states[block.id] {
                ledger = known.ledger
                ids.append(known.id)
            } else {
                logger.warning(
                    "re-executing a committed block whose state was not kept", metadata: ["block": "\(block.id)"])
                _ = ledger.executeBlock(block.payload, proposer: block.author, signatureChecked: dag.contains)
                ids.append(try Hash32(bytes: ledger.root))
            }
        }
        let state = ledger
        let lastID = ids[ids.count - 1]
        if qc.voteInfo.parentID == last.id, let certified = qc.commitInfo.commitStateID, certified != lastID {
            throw ConfigError(
                "consensus halted: the commit QC certifies state \(certified.hex) for block \(last.id.hex), "
                    + "this node's execution gives \(lastID.hex)")
        }
        var records: [ConsensusStore.CommittedBlock] = []
        let qcBytes = qc.encoded()
        for (block, stateID) in zip(blocks, ids) {
            committedHeight += 1
            records.append(
                .init(
                    height: committedHeight, id: block.id.bytes, round: block.round, block: block.encoded(),
                    stateID: stateID.bytes, commitQC: qcBytes))
        }
        let snapshotDue = records.contains { $0.height % Self.snapshotInterval == 0 }
        try store.commit(
            records, ledgerState: snapshotDue ? state.encoded() : nil,
            epochChange: try epochChange.map { try epochRecord(after: last, state: state, stateID: lastID, proof: $0) })
        committedState = state
        tipCommitQC = qc
        committedTransactions += blocks.reduce(0) { $0 + $1.payload.count }
        commitEvents.append((committedHeight, qc, epochChange != nil, Date().timeIntervalSince1970))
        if commitEvents.count > 64 { commitEvents.removeFirst(32) }
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

    // MARK: Epochs

    /// What the store records when `last` ends an epoch: its proof, and the next epoch
    /// (first height, the block and state it builds on, its validators).
    private func epochRecord(
        after last: Block, state: LedgerState, stateID: Hash32, proof: EpochChangeProof
    ) throws -> (proof: [UInt8], next: ConsensusStore.EpochRecord) {
        guard let system = state.system else { throw ConfigError("an epoch ended in a ledger without epochs") }
        return (
            proof.encoded(),
            .init(
                epoch: system.epoch, startHeight: committedHeight + 1, genesisBlock: last.id.bytes,
                genesisState: stateID.bytes, system: system.encoded)
        )
    }

    /// The committed block `last` ended the epoch: a fresh core for the next epoch, on
    /// top of it, with the validators the committed state names. The safety state starts
    /// afresh (signatures name their epoch); rounds start again at 1.
    private mutating func startNextEpoch(after last: Block, stateID: Hash32) {
        let system = committedState.system!  // an epoch ended, so the state has one
        let config = genesis.consensusConfig(system: system, genesisBlockID: last.id, genesisStateID: stateID)
        replaceCore(ConsensusCore(config: config, key: key), tip: last.id, stateID: stateID)
        catchUp.enteredEpoch(config.epoch)
        observedRound = 0
        lastStatusSent = .distantPast  // tell the neighbours at the next tick
        metrics?.epoch.set(Double(config.epoch))
        logger.notice(
            "epoch \(config.epoch) begins",
            metadata: [
                "height": "\(committedHeight)", "validators": "\(config.validators.validators.count)",
                "role": "\(isValidator ? "validator" : "full node")",
            ])
    }

    /// A new core on the committed tip (after catch-up, or for a new epoch): what the
    /// old one had in flight — states of uncommitted blocks, timers, a due proposal — goes.
    private mutating func replaceCore(_ new: ConsensusCore, tip: Hash32, stateID: Hash32) {
        core = new
        states = [tip: (committedState, stateID)]
        timers = [:]
        proposalDue = nil
        blockSeenAt = [:]
        reportedTimeouts = (0, 0)
    }

    /// Messages of the epoch just entered that arrived early.
    private mutating func replayFutureMessages() -> [ConsensusCore.Action] {
        let ready = futureMessages.take(entering: core.config.epoch)
        guard !catchUp.syncing else {
            futureMessages.putBack(ready, current: core.config.epoch)  // after the sync
            return []
        }
        return ready.flatMap { core.receive($0.0, from: $0.1) }
    }

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

    // MARK: For checkpoints

    /// Commits since the runtime last took them: the height, the QC that committed it,
    /// whether that block ends its epoch, and when (UNIX seconds).
    private(set) var commitEvents: [(height: UInt64, qc: QuorumCert, endsEpoch: Bool, at: Double)] = []

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

    /// This node is a validator leading the current round, and following consensus live.
    var leadsCurrentRound: Bool {
        isValidator && !catchUp.syncing && core.leader(of: core.currentRound) == core.me
    }
    func epochRecord(_ epoch: Epoch) throws -> ConsensusStore.EpochRecord? { try store.epoch(epoch) }
}

extension Date {
    /// Seconds since the reference date, for the pure cores' clocks.
    fileprivate var t: Double { timeIntervalSinceReferenceDate }
}
