import NodeCrypto

/// The chain state machine: everything a node decides around the consensus core,
/// with no sockets, clocks or disks inside. It runs blocks through the application
/// (`BlockExecution`), keeps round timers and the leader's proposal delay, chooses
/// payloads, checks commits against its own execution, switches epochs, buffers
/// next-epoch messages, and runs catch-up (status, verified ranges, serving them).
///
/// Events come in with the time (`Inputs.now`, seconds on the node's clock); actions
/// come out in the order they must happen: a `persist…` action precedes every message
/// that depends on it, so a driver that carries them out in order never sends what it
/// has not recorded. The node's `ConsensusHost` and the simulator both drive this type.
public struct ChainMachine<Execution: BlockExecution>: Sendable {
    /// Timing and storage knobs (the node's defaults; the simulator may change them).
    public struct Options: Sendable {
        /// Seconds between committed-height reports to neighbours; nil: never (no catch-up).
        public var statusInterval: Double? = 1
        /// After start, live consensus traffic waits this long for a neighbour's height,
        /// so a node far behind syncs by verified ranges instead of chasing ancestors.
        public var initialStatusWait: Double = 3
        /// A leader with nothing to propose waits this long (an idle chain does not race
        /// through empty blocks).
        public var minBlockInterval: Double = 0.2
        /// A commit that reaches a multiple of this height carries a state snapshot.
        public var snapshotInterval: UInt64 = 100

        public init() {}
    }

    /// Where the machine starts: the committed tip and what the disk kept.
    public struct Recovery: Sendable {
        public var config: ConsensusConfig
        public var committedState: Execution.State
        public var committedHeight: UInt64
        /// The core's recovered state (safety, pending blocks, the committed tip).
        public var core: RecoveredState
        /// The QC that committed the tip (what proves this node's height to others).
        public var tipCommitQC: QuorumCert?

        public init(
            config: ConsensusConfig, committedState: Execution.State, committedHeight: UInt64, core: RecoveredState,
            tipCommitQC: QuorumCert?
        ) {
            self.config = config
            self.committedState = committedState
            self.committedHeight = committedHeight
            self.core = core
            self.tipCommitQC = tipCommitQC
        }
    }

    /// What an event needs besides the message: the time, the transaction pool, and the
    /// committed chain to serve from.
    public struct Inputs {
        public var now: Double
        public var pool: Execution.Pool
        public var store: any ChainStoreReader

        public init(now: Double, pool: Execution.Pool, store: any ChainStoreReader) {
            self.now = now
            self.pool = pool
            self.store = store
        }
    }

    /// Blocks that committed, for the store to record in one transaction.
    public struct Commit: Sendable {
        public let records: [CommittedRecord]
        public let qc: QuorumCert
        /// The state after the last block.
        public let state: Execution.State
        /// The commit reaches a snapshot height: store `state` with it.
        public let snapshotDue: Bool
        /// The last block ended its epoch: the proof, and the epoch that follows.
        public let epochChange: (proof: EpochChangeProof, next: ConsensusConfig)?
        /// Applied from a verified catch-up range rather than committed by this node's core.
        public let byCatchUp: Bool
        /// Transactions that failed the rules in these blocks.
        public let failedTransactions: Int
        /// Each block's receipts, aligned with `records` (empty for a block executed
        /// before a restart: its receipts were stored then).
        public let receipts: [[ExecutionReceipt]]

        public var height: UInt64 { records.last?.height ?? 0 }
    }

    /// Things worth an operator's attention (the driver logs them).
    public enum Note: Sendable, Equatable {
        case catchingUp(height: UInt64, target: UInt64)
        case caughtUp(height: UInt64)
        case invalidRange(String)
        case epochBegins(epoch: Epoch, height: UInt64, validators: Int, isValidator: Bool)
        /// A committed block whose state was no longer held was executed again.
        case reexecuted(Hash32)
    }

    public enum Action: Sendable {
        /// Votes and timeouts reach the next leader through the mesh when it is not a
        /// neighbour (`floodIfUnreachable`); block and range traffic goes to a neighbour only.
        case send(to: ValidatorID, ConsensusMessage, floodIfUnreachable: Bool)
        case broadcast(ConsensusMessage)
        /// To every connected peer (chain status).
        case toNeighbours(ConsensusMessage)
        /// The peer served something invalid.
        case penalize(peer: ValidatorID, reason: String)
        /// The peer did not serve what it claimed (a lighter score).
        case discourage(peer: ValidatorID, reason: String)
        /// Signed proof of misbehaviour (two proposals or votes in one round).
        case evidence(String)
        case persistSafety(SafetyState)
        case persistBlock(Block)
        case persistCommit(Commit)
        case note(Note)
        /// The node must stop: its execution disagrees with what a quorum certified.
        case halt(String)
    }

    public private(set) var core: ConsensusCore
    public private(set) var catchUp = CatchUp()
    public private(set) var committedState: Execution.State
    public private(set) var committedHeight: UInt64
    /// The QC that committed the committed tip.
    public private(set) var tipCommitQC: QuorumCert?
    /// Set when the machine halted; it takes no more events.
    public private(set) var halted: String?
    /// Counters since start (for the admin API and metrics).
    public private(set) var failedTransactions = 0
    public private(set) var committedTransactions = 0
    public private(set) var catchUpBlocks = 0
    public private(set) var catchUpTransactions = 0

    public let options: Options
    private var execution: Execution
    private let key: Ed25519.PrivateKey
    /// The state after each executed block, and its id (computed once, on execution).
    private var states: [Hash32: (state: Execution.State, id: Hash32, receipts: [ExecutionReceipt])] = [:]
    /// Committed blocks of this epoch, newest last (reputation after a catch-up restart).
    private var recent: [Block]
    private var timers: [Round: Double] = [:]
    /// A round this node leads, and when to propose for it.
    private var proposalDue: (round: Round, at: Double)?
    /// Payload scans `poolGrew` made for the round whose proposal waits.
    private var poolScans: (round: Round, count: Int) = (0, 0)
    static var maxPoolScansPerRound: Int { 4 }
    private var lastStatusSent = -Double.infinity
    private var heardStatus = false
    private let startedAt: Double
    private var futureMessages = NextEpochBuffer()

    public init(execution: Execution, key: Ed25519.PrivateKey, recovered: Recovery, options: Options, now: Double) {
        self.execution = execution
        self.key = key
        self.options = options
        self.startedAt = now
        committedState = recovered.committedState
        committedHeight = recovered.committedHeight
        tipCommitQC = recovered.tipCommitQC
        recent = recovered.core.recentCommitted
        core = ConsensusCore(config: recovered.config, key: key, recovered: recovered.core)
        catchUp.enteredEpoch(recovered.config.epoch)
        states[core.committedBlockID] = (recovered.committedState, recovered.core.committedStateID, [])
    }

    public var config: ConsensusConfig { core.config }
    public var isValidator: Bool { core.config.validators.contains(core.me) }
    /// A validator leading the current round, and following consensus live.
    public var leadsCurrentRound: Bool {
        isValidator && !catchUp.syncing && core.leader(of: core.currentRound) == core.me
    }

    /// The earliest time at which `tick` has something to do (for a simulator's scheduler).
    public var nextDeadline: Double? {
        guard halted == nil else { return nil }
        // While syncing, round timers wait (tick fires none of them).
        var times = catchUp.syncing ? [] : Array(timers.values)
        if let due = proposalDue, !catchUp.syncing { times.append(due.at) }
        if let interval = options.statusInterval { times.append(lastStatusSent + interval) }
        return times.min()
    }

    /// The chain status this node reports: its committed height, proven by the commit QC.
    public var chainStatus: ConsensusMessage {
        .chainStatus(height: committedHeight, round: core.committedRound, epoch: core.config.epoch, proof: tipCommitQC)
    }

    // MARK: Events

    public mutating func start(_ inputs: Inputs) throws -> [Action] {
        guard halted == nil else { return [] }
        return try run(core.start(), inputs)
    }

    /// The driver could not carry out an action (a write failed): the core has moved on
    /// past what is on disk, so the machine takes no more events — it would otherwise
    /// re-send a vote or timeout that was never recorded.
    public mutating func fail(_ reason: String) {
        if halted == nil { halted = reason }
    }

    /// A consensus message from the network: `peer` is the validator whose direct channel
    /// it came on, nil when it was flooded. The core's `provenance` decides whom it counts
    /// as from (and verifies its signature, once: the core does not verify it again); the
    /// verdict comes back for the transport (relay, ignore, or charge the peer).
    public mutating func received(
        _ message: ConsensusMessage, directFrom peer: ValidatorID?, _ inputs: Inputs
    ) throws
        -> (verdict: ConsensusCore.Provenance, actions: [Action])
    {
        guard halted == nil else { return (.stale, []) }
        let verdict = core.provenance(of: message, directFrom: peer)
        switch verdict {
        case .accept(let sender):
            return (verdict, try received(message, from: sender, authenticated: message.signer != nil, inputs))
        case .later(let sender):
            return (verdict, try received(message, from: sender, authenticated: false, inputs))
        case .stale, .forged:
            return (verdict, [])
        }
    }

    /// A message whose sender is established (the signer, or the peer for block and range
    /// traffic); `authenticated` when its signature was just verified.
    private mutating func received(
        _ message: ConsensusMessage, from sender: ValidatorID, authenticated: Bool, _ inputs: Inputs
    ) throws -> [Action] {
        let now = inputs.now
        switch message {
        case .chainStatus(let height, _, let epoch, let proof):
            heardStatus = true
            return try follow(
                catchUp.statusReceived(
                    from: sender, height: height, epoch: epoch, proof: proof, localHeight: committedHeight,
                    localRound: core.committedRound, config: core.config, now: now), inputs)
        case .getCommitted(let height, let count):
            return try serveRange(from: height, count: count, to: sender, store: inputs.store)
        case .committedRange(let height, let blocks, let proof, let suffix):
            guard catchUp.isAwaited(from: sender, height: height) else { return [] }
            // Consensus committed meanwhile: not the peer's fault, ask again from the new tip.
            guard height == committedHeight + 1 else {
                return try follow(catchUp.superseded(localHeight: committedHeight, now: now), inputs)
            }
            // A probe (this node stays in consensus) replaces the core at the new tip; it
            // must then be started, as catch-up's end starts it.
            let probing = !catchUp.syncing
            let before = committedHeight
            var out = try applyRange(blocks, proof: proof, suffix: suffix, inputs)
            // Only a range that was applied replaced the core; a refused one left the live
            // core running, which must not be started again.
            if probing && !catchUp.syncing && halted == nil && committedHeight > before {
                out += try run(core.start() + replayFuture(), inputs)
            }
            return out
        default:
            // The next epoch's messages (this node has not seen its epoch end yet) wait
            // for it; they cannot be checked before the epoch's validators are known.
            if let epoch = message.epoch, epoch > core.config.epoch {
                futureMessages.offer(message, from: sender, current: core.config.epoch)
                return []
            }
            // While syncing, live traffic is for rounds this node cannot judge yet.
            guard !catchUp.syncing, heardStatus || now - startedAt > options.initialStatusWait else { return [] }
            return try run(core.receive(message, from: sender, authenticated: authenticated), inputs)
        }
    }

    /// A neighbour connected: tell it this node's height at once.
    public func peerConnected(_ peer: ValidatorID) -> [Action] {
        [.send(to: peer, chainStatus, floodIfUnreachable: false)]
    }

    /// A neighbour disconnected.
    public mutating func peerGone(_ peer: ValidatorID, _ inputs: Inputs) throws -> [Action] {
        guard halted == nil else { return [] }
        return try follow(catchUp.peerGone(peer, localHeight: committedHeight, now: inputs.now), inputs)
    }

    /// Reports the height, retries catch-up, fires due round timers and a due proposal.
    public mutating func tick(_ inputs: Inputs) throws -> [Action] {
        guard halted == nil else { return [] }
        let now = inputs.now
        var out: [Action] = []
        if let interval = options.statusInterval, now - lastStatusSent >= interval {
            lastStatusSent = now
            out.append(.toNeighbours(chainStatus))
        }
        out += try follow(catchUp.tick(localHeight: committedHeight, now: now), inputs)
        if catchUp.syncing { return out }
        for (round, deadline) in timers.sorted(by: { $0.key < $1.key }) where deadline <= now {
            timers[round] = nil
            out += try run(core.timeoutFired(round: round), inputs)
        }
        if let due = proposalDue, due.at <= now {
            proposalDue = nil
            let batch = payload(inputs.pool)
            out += try run(core.proposePayload(round: due.round, payload: batch), inputs)
        }
        return out
    }

    /// New transactions reached the pool. A leader that is waiting out the block
    /// interval for want of transactions proposes at once instead: at low load a
    /// transaction then waits for three message delays, not for a timer.
    public mutating func poolGrew(_ inputs: Inputs) throws -> [Action] {
        guard halted == nil, !catchUp.syncing, let due = proposalDue else { return [] }
        // A payload scan walks the pool's uncommitted tail: a few per waiting round at
        // most, whatever peers send (the timer proposes anyway).
        if poolScans.round != due.round { poolScans = (due.round, 0) }
        guard poolScans.count < Self.maxPoolScansPerRound else { return [] }
        poolScans.count += 1
        let batch = payload(inputs.pool)
        guard !batch.isEmpty else { return [] }
        proposalDue = nil
        return try run(core.proposePayload(round: due.round, payload: batch), inputs)
    }

    /// The round whose proposal waits for transactions or the block interval, if any.
    public var proposalWaiting: Round? { proposalDue?.round }

    // MARK: The core's actions

    /// Carries out the core's actions in order, turning its requests (execute, payload,
    /// commit) into calls on the application and its writes into persist actions.
    private mutating func run(_ initial: [ConsensusCore.Action], _ inputs: Inputs) throws -> [Action] {
        var queue = initial
        var out: [Action] = []
        while !queue.isEmpty, halted == nil {
            let action = queue.removeFirst()
            switch action {
            case .send(let to, let message):
                let flood: Bool
                switch message {
                case .proposal, .vote, .timeout: flood = true
                default: flood = false
                }
                out.append(.send(to: to, message, floodIfUnreachable: flood))
            case .broadcast(let message):
                out.append(.broadcast(message))
            case .persistSafety(let safety):
                out.append(.persistSafety(safety))
            case .persistBlock(let block):
                out.append(.persistBlock(block))
            case .scheduleTimeout(let round, let after):
                timers = timers.filter { $0.key >= round }
                timers[round] = inputs.now + after
            case .execute(let block, _):
                guard let parent = states[block.parentID] else { continue }
                let result = execution.execute(block, on: parent.state, pool: inputs.pool)
                failedTransactions += result.failed
                states[block.id] = (result.state, result.stateID, result.receipts)
                queue += core.blockExecuted(id: block.id, stateID: result.stateID, endsEpoch: result.endsEpoch)
            case .requestPayload(let round):
                // Transactions waiting, or certified blocks with transactions that still
                // need the next blocks to commit (2-chain): propose now (latency). Neither:
                // wait the block interval.
                let batch = payload(inputs.pool)
                if batch.isEmpty && !uncommittedTransactions() {
                    proposalDue = (round, inputs.now + options.minBlockInterval)
                } else {
                    queue += core.proposePayload(round: round, payload: batch)
                }
            case .commit(let blocks, let qc, let epochChange):
                let (commit, notes) = commit(blocks, qc, epochChange: epochChange, inputs)
                out += notes
                guard let commit else { break }
                out.append(.persistCommit(commit))
                if let change = commit.epochChange, let last = blocks.last {
                    // The old core is finished: what it still asked for no longer matters.
                    out += startNextEpoch(change.next, after: last)
                    queue = core.start() + replayFuture()
                }
            case .fetchBlock(let id, let from):
                out.append(.send(to: from, .blockRequest(id), floodIfUnreachable: false))
            case .serveCommittedBlock(let id, let to):
                if let stored = try inputs.store.committed(id: id) {
                    out.append(.send(to: to, .blockResponse(stored.block), floodIfUnreachable: false))
                }
            case .evidence(let text):
                out.append(.evidence(text))
            case .diverged(let reason):
                // Never continue on a state the network does not share.
                halted = reason
            }
        }
        if let halted { out.append(.halt(halted)) }
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

    /// A payload on the highest certified block, within the voters' caps.
    private mutating func payload(_ pool: Execution.Pool) -> [[UInt8]] {
        guard let parent = states[core.highQC.blockID]?.state else { return [] }
        let budget = min(
            core.config.maxBlockBytes,
            core.config.maxUncommittedBytes - core.uncommittedBytes(through: core.highQC.blockID))
        return execution.payload(
            on: parent, committed: committedState, pool: pool, budget: max(0, budget),
            maxCount: core.config.maxBlockTransactions)
    }

    /// The core committed `blocks`: their records, checked against this node's execution.
    private mutating func commit(
        _ blocks: [Block], _ qc: QuorumCert, epochChange: EpochChangeProof?, _ inputs: Inputs
    ) -> (Commit?, [Action]) {
        guard let last = blocks.last else { return (nil, []) }
        // Every committed block's state id is recorded (a restart replays against each).
        // One whose state is no longer held is executed again from its parent's, exactly
        // as live execution did; never recorded as zero.
        var state = committedState
        var ids: [Hash32] = []
        var receipts: [[ExecutionReceipt]] = []
        var failed = 0
        var notes: [Action] = []
        for block in blocks {
            if let known = states[block.id] {
                state = known.state
                ids.append(known.id)
                receipts.append(known.receipts)
            } else {
                notes.append(.note(.reexecuted(block.id)))
                let result = execution.execute(block, on: state, pool: inputs.pool)
                // A block that ends its epoch commits only as the last of an epoch change.
                if result.endsEpoch && (block.id != last.id || epochChange == nil) {
                    halted = "re-executed block \(block.id.hex) ends its epoch, but the core did not end it there"
                    return (nil, notes)
                }
                state = result.state
                failed += result.failed
                ids.append(result.stateID)
                receipts.append(result.receipts)
            }
        }
        let lastID = ids[ids.count - 1]
        if qc.voteInfo.parentID == last.id, let certified = qc.commitInfo.commitStateID, certified != lastID {
            halted =
                "the commit QC certifies state \(certified.hex) for block \(last.id.hex), "
                + "this node's execution gives \(lastID.hex)"
            return (nil, notes)
        }
        var records: [CommittedRecord] = []
        for (block, stateID) in zip(blocks, ids) {
            records.append(
                .init(height: committedHeight + UInt64(records.count) + 1, block: block, stateID: stateID, commitQC: qc)
            )
        }
        committedHeight += UInt64(blocks.count)
        committedState = state
        tipCommitQC = qc
        committedTransactions += blocks.reduce(0) { $0 + $1.payload.count }
        failedTransactions += failed
        remember(blocks)
        // Keep the committed block's state and its descendants' only.
        states = states.filter { id, _ in id == last.id || (core.block(id)?.round ?? 0) > last.round }
        let next = epochChange.map {
            (proof: $0, next: execution.nextEpochConfig(after: last, state: state, stateID: lastID))
        }
        let commit = Commit(
            records: records, qc: qc, state: state, snapshotDue: snapshotDue(records), epochChange: next,
            byCatchUp: false, failedTransactions: failed, receipts: receipts)
        return (commit, notes)
    }

    private func snapshotDue(_ records: [CommittedRecord]) -> Bool {
        records.contains { $0.height % options.snapshotInterval == 0 }
    }

    /// Keeps the newest committed blocks of this epoch for reputation-based election.
    private mutating func remember(_ blocks: [Block]) {
        recent += blocks.filter { $0.epoch == core.config.epoch }
        let keep = 10 * core.config.validators.validators.count + 48
        if recent.count > keep { recent.removeFirst(recent.count - keep) }
    }

    // MARK: Epochs

    /// The committed block `last` ended the epoch: a fresh core for the next epoch on top
    /// of it. The safety state starts afresh (signatures name their epoch); rounds start at 1.
    private mutating func startNextEpoch(_ config: ConsensusConfig, after last: Block) -> [Action] {
        replaceCore(ConsensusCore(config: config, key: key), tip: last.id, stateID: config.genesisStateID)
        recent = []
        catchUp.enteredEpoch(config.epoch)
        lastStatusSent = -.infinity  // tell the neighbours at the next tick
        return [
            .note(
                .epochBegins(
                    epoch: config.epoch, height: committedHeight, validators: config.validators.validators.count,
                    isValidator: isValidator))
        ]
    }

    /// A new core on the committed tip (after catch-up, or for a new epoch): what the old
    /// one had in flight — states of uncommitted blocks, timers, a due proposal — goes.
    private mutating func replaceCore(_ new: ConsensusCore, tip: Hash32, stateID: Hash32) {
        core = new
        states = [tip: (committedState, stateID, [])]
        timers = [:]
        proposalDue = nil
    }

    /// Messages of the epoch just entered that arrived early (after a sync, if syncing).
    private mutating func replayFuture() -> [ConsensusCore.Action] {
        let ready = futureMessages.take(entering: core.config.epoch)
        guard !catchUp.syncing else {
            futureMessages.putBack(ready, current: core.config.epoch)
            return []
        }
        return ready.flatMap { core.receive($0.0, from: $0.1) }
    }

    // MARK: Catch-up

    /// Turns catch-up actions into network actions, and restarts consensus when catch-up
    /// has just finished.
    private mutating func follow(_ actions: [CatchUp.Action], _ inputs: Inputs) throws -> [Action] {
        var out: [Action] = []
        for action in actions {
            switch action {
            case .request(let peer, let height, let count):
                out.append(.send(to: peer, .getCommitted(height: height, count: count), floodIfUnreachable: false))
            case .penalize(let peer, let reason):
                out.append(.penalize(peer: peer, reason: reason))
            case .discourage(let peer, let reason):
                out.append(.discourage(peer: peer, reason: reason))
            }
        }
        if catchUp.syncing && !inCatchUp {
            inCatchUp = true
            out.append(.note(.catchingUp(height: committedHeight, target: catchUp.target)))
        } else if !catchUp.syncing && inCatchUp {
            inCatchUp = false
            out.append(.note(.caughtUp(height: committedHeight)))
            out += try run(core.start() + replayFuture(), inputs)
        }
        return out
    }

    private var inCatchUp = false

    /// Answers `getCommitted`: blocks from `height` on, ending where a stored commit QC
    /// commits the last of them, within the message budget.
    private func serveRange(
        from height: UInt64, count: UInt16, to peer: ValidatorID, store: any ChainStoreReader
    )
        throws -> [Action]
    {
        guard height >= 1, height <= committedHeight,
            let range = try Self.committedRange(store: store, from: height, count: count)
        else { return [] }
        let message = ConsensusMessage.committedRange(
            height: height, blocks: range.blocks, proof: range.proof, suffix: range.suffix)
        return [.send(to: peer, message, floodIfUnreachable: false)]
    }

    /// What one answer can carry at all (the gossip limit less the QC and suffix).
    public static var rangeLimit: Int { 3 * 1024 * 1024 + 768 * 1024 }

    /// Up to about `count` stored committed blocks from `height` on, cut where a stored
    /// commit QC commits the last of them, within the message budget; nil when no such
    /// cut exists. A range stops at the end of an epoch, with the epoch-change proof.
    public static func committedRange(
        store: any ChainStoreReader, from height: UInt64, count: UInt16
    ) throws -> (blocks: [Block], proof: QuorumCert, suffix: [Block])? {
        var blocks: [Block] = []
        var bytes = 0
        var end: (count: Int, proof: QuorumCert, suffix: [Block])?
        // Commit groups are short; read a little past `count` to reach the end of one.
        for stored in try store.committed(from: height, limit: Int(count) + 32) {
            // Heights pruned here, or below the snapshot this node joined by, are not
            // served: a range starts at the height asked for and has no gaps.
            guard stored.height == height + UInt64(blocks.count) else { break }
            bytes += stored.block.encoded().count
            // The first commit group always goes whole: voters keep every uncommitted
            // branch within the budget, so one large block cannot stall catch-up.
            if blocks.count >= Int(CatchUp.maxRangeBlocks)
                || bytes > (end == nil ? Self.rangeLimit : CatchUp.rangeBudget)
            {
                break
            }
            // A damaged epoch record ends what can be served (the reader says why).
            let epochEnd: EpochChangeProof?
            do { epochEnd = try store.epochChange(endingAt: stored.height) } catch { break }
            blocks.append(stored.block)
            if let proof = epochEnd {
                end = (blocks.count, proof.commitQC, proof.suffix)
                break
            }
            if stored.commitQC.voteInfo.parentID == stored.block.id {
                end = (blocks.count, stored.commitQC, [])
                if blocks.count >= Int(count) { break }
            }
        }
        guard let end else { return nil }
        return (Array(blocks.prefix(end.count)), end.proof, end.suffix)
    }

    /// Verifies an awaited range against the committed tip, executes it, and moves
    /// consensus to the new tip.
    private mutating func applyRange(
        _ blocks: [Block], proof: QuorumCert, suffix: [Block], _ inputs: Inputs
    ) throws
        -> [Action]
    {
        var state = committedState
        var stateIDs: [Hash32] = []
        var receipts: [[ExecutionReceipt]] = []
        var failed = 0
        var endsEpoch = false
        let execution = self.execution
        let problem = CatchUp.verifyRange(
            blocks, proof: proof, suffix: suffix, after: core.committedBlockID, config: core.config
        ) { block in
            let result = execution.execute(block, on: state, pool: inputs.pool)
            state = result.state
            failed += result.failed
            endsEpoch = result.endsEpoch
            stateIDs.append(result.stateID)
            receipts.append(result.receipts)
            return (result.stateID, result.endsEpoch)
        }
        if let problem {
            return [.note(.invalidRange(problem))]
                + (try follow(catchUp.failed(reason: problem, localHeight: committedHeight, now: inputs.now), inputs))
        }
        var records: [CommittedRecord] = []
        for (block, stateID) in zip(blocks, stateIDs) {
            records.append(
                .init(
                    height: committedHeight + UInt64(records.count) + 1, block: block, stateID: stateID, commitQC: proof
                ))
        }
        let last = blocks[blocks.count - 1]
        let lastID = stateIDs[stateIDs.count - 1]
        let transactions = blocks.reduce(0) { $0 + $1.payload.count }
        committedHeight += UInt64(blocks.count)
        committedState = state
        tipCommitQC = proof
        committedTransactions += transactions
        failedTransactions += failed
        catchUpBlocks += blocks.count
        catchUpTransactions += transactions
        let next =
            endsEpoch
            ? (
                proof: EpochChangeProof(suffix: suffix, commitQC: proof),
                next: execution.nextEpochConfig(after: last, state: state, stateID: lastID)
            ) : nil
        var out: [Action] = [
            .persistCommit(
                Commit(
                    records: records, qc: proof, state: state, snapshotDue: snapshotDue(records), epochChange: next,
                    byCatchUp: true, failedTransactions: failed, receipts: Array(receipts.prefix(records.count))))
        ]
        if let next {
            // Synced across the end of an epoch: the next range is checked against the
            // next epoch's validators, which the verified state names.
            out += startNextEpoch(next.next, after: last)
        } else {
            remember(blocks)
            // Consensus restarts from the new tip, keeping its safety state (it never signs
            // below what it signed before).
            replaceCore(
                ConsensusCore(
                    config: core.config, key: key,
                    recovered: RecoveredState(
                        safety: core.safety, blocks: [], committedBlockID: last.id, committedRound: last.round,
                        committedStateID: lastID, recentCommitted: recent)),
                tip: last.id, stateID: lastID)
        }
        return out + (try follow(catchUp.applied(localHeight: committedHeight, now: inputs.now), inputs))
    }
}
