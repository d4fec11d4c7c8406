import NodeCrypto
import Wire

public struct ConsensusConfig: Sendable, Equatable {
    public var chainID: String
    public var epoch: Epoch
    public var validators: ValidatorSet
    /// The epoch's genesis block (never sent) and the state it leaves.
    public var genesisBlockID: Hash32
    public var genesisStateID: Hash32
    /// Round timeout: base × backoff^k, k = rounds since the last commit (capped).
    public var baseTimeout: Double = 1.0
    public var timeoutBackoff: Double = 1.5
    public var maxBackoffExponent = 4
    public var leaderElection: LeaderElection = .roundRobin
    /// A block's payload at most: transactions, and their encoded bytes. Voters refuse a
    /// larger block, so one cannot stall catch-up, whose answers carry whole blocks.
    public var maxBlockTransactions = 2_000
    public var maxBlockBytes = ConsensusConfig.defaultMaxBlockBytes
    public static let defaultMaxBlockBytes = 1 << 20
    /// The most a genesis may allow: one block, its QC and an epoch suffix of empty
    /// blocks must fit one catch-up answer under the gossip layer's 4 MiB message limit.
    public static let maxBlockBytesLimit = 2 << 20
    /// Payload bytes a chain of uncommitted blocks may hold (voters refuse a block that
    /// would take its branch past it). Every commit group is such a chain, so the first
    /// group after any height always fits one catch-up answer (`CatchUp.rangeBudget`).
    public var maxUncommittedBytes = CatchUp.rangeBudget

    public init(chainID: String, epoch: Epoch, validators: ValidatorSet, genesisBlockID: Hash32, genesisStateID: Hash32)
    {
        self.chainID = chainID
        self.epoch = epoch
        self.validators = validators
        self.genesisBlockID = genesisBlockID
        self.genesisStateID = genesisStateID
    }
}

/// How the leader of a round is chosen. Every honest validator must compute the same
/// leader, so both rules read only the round and the committed chain.
public enum LeaderElection: Sendable, Equatable {
    /// A new leader every round, in canonical validator order.
    case roundRobin
    /// Aptos-style leader reputation (ProposerAndVoter): over the committed blocks of the
    /// `window` rounds that end `excludeRounds` before this one — history every validator
    /// has committed — a validator that failed more than 10 % of the rounds it led there
    /// (the blocks' failed-author lists) weighs 1 × power, one that proposed or voted
    /// 1000 × power, the others 10 × power, and the leader is drawn by weight with a
    /// seed of the epoch and round. A crashed or silent leader thus stops being elected,
    /// so it costs few timeouts. Round-robin until that much history exists. The window
    /// is in rounds, not blocks, so it empties of a crashed validator's blocks even
    /// while timeouts slow the chain down.
    case reputation(window: Int, excludeRounds: Round)

    public static let activeWeight: UInt64 = 1000
    public static let inactiveWeight: UInt64 = 10
    public static let failedWeight: UInt64 = 1
    /// Failed share of the rounds a validator led in the window above which it weighs
    /// `failedWeight` (Aptos' `failure_threshold_percent`).
    public static let failureThresholdPercent: UInt64 = 10
}

/// What a validator brings back after a restart: its safety state and the blocks it
/// had stored since the last commit, plus that commit.
public struct RecoveredState: Sendable, Equatable {
    public var safety: SafetyState
    public var blocks: [Block]
    public var committedBlockID: Hash32
    public var committedRound: Round
    public var committedStateID: Hash32
    /// The most recent committed blocks, oldest first, for reputation-based election
    /// (at least window + excludeRounds of them when the chain has that many).
    public var recentCommitted: [Block]

    public init(
        safety: SafetyState, blocks: [Block], committedBlockID: Hash32, committedRound: Round, committedStateID: Hash32,
        recentCommitted: [Block] = []
    ) {
        self.safety = safety
        self.blocks = blocks
        self.committedBlockID = committedBlockID
        self.committedRound = committedRound
        self.committedStateID = committedStateID
        self.recentCommitted = recentCommitted
    }
}

/// DiemBFT v4 with the 2-chain commit rule, as a pure state machine: it takes
/// messages, timer expiries, execution results and payloads, and returns actions.
/// No sockets, clocks or disks: the driver sends, schedules, persists and executes.
///
/// Actions are ordered: a `persistSafety` must be durable before any later action in
/// the same list is carried out.
public struct ConsensusCore: Sendable {
    public enum Action: Sendable, Equatable {
        case send(to: ValidatorID, ConsensusMessage)
        /// To every other validator (the core handles its own copy itself).
        case broadcast(ConsensusMessage)
        case persistSafety(SafetyState)
        case persistBlock(Block)
        /// Arm the timer for `round`; answer with `timeoutFired(round:)`.
        case scheduleTimeout(round: Round, after: Double)
        /// Compute the state after `block` on top of `parentState`; answer with `blockExecuted`.
        case execute(Block, parentState: Hash32)
        /// This validator leads `round`: answer with `proposePayload(round:payload:)`.
        case requestPayload(round: Round)
        /// Blocks newly committed, oldest first, and the QC that certifies the commit.
        /// With `epochChange`, the last block ends the epoch: the core is finished and the
        /// driver starts the next epoch's core on top of that block.
        case commit([Block], QuorumCert, epochChange: EpochChangeProof?)
        case fetchBlock(Hash32, from: ValidatorID)
        /// A peer asked for a block that is no longer in the tree (committed and pruned):
        /// answer `blockResponse` from the committed store if it is there.
        case serveCommittedBlock(Hash32, to: ValidatorID)
        /// Evidence of misbehaviour (two proposals or two votes in one round).
        case evidence(String)
        /// A valid commit QC certifies a state other than this node's execution of that
        /// block: its ledger diverged. The core has stopped; the driver must halt the
        /// node rather than go on from a state the network does not share.
        case diverged(String)
    }

    public let config: ConsensusConfig
    private let key: Ed25519.PrivateKey
    public let me: ValidatorID
    private let domain: SigningDomain

    public private(set) var safety: SafetyState
    public private(set) var currentRound: Round = 0
    public private(set) var highQC: QuorumCert
    public private(set) var highCommitQC: QuorumCert
    public private(set) var lastRoundTC: TimeoutCert?
    public private(set) var committedRound: Round
    public private(set) var committedBlockID: Hash32
    /// Timeouts signed because this node's round timer expired, and because f+1 others
    /// timed out first (Bracha amplification), for metrics.
    public private(set) var timeoutsByTimer = 0
    public private(set) var timeoutsByAmplification = 0
    private var lastCommitRoundForBackoff: Round

    private var blocks: [Hash32: Block] = [:]
    private var states: [Hash32: Hash32] = [:]
    private var verifiedQCs: Set<Hash32> = []
    /// TCs verified already (every timeout and the next proposal repeat the last one).
    private var verifiedTCs: Set<Hash32> = []
    private var votes: [Round: [LedgerCommitInfo: [ValidatorID: Ed25519.Signature]]] = [:]
    private var votedBy: [Round: [ValidatorID: LedgerCommitInfo]] = [:]
    private var qcFormed: Set<Round> = []
    private var timeouts: [Round: [ValidatorID: TimeoutInfo]] = [:]
    private var amplified: Set<Round> = []
    private var tcFormed: Set<Round> = []
    private var myTimeout: [Round: TimeoutMsg] = [:]
    private var proposals: [Round: Hash32] = [:]
    private var proposed: Set<Round> = []
    private var awaitingVote: (block: Block, tc: TimeoutCert?)?
    private var waitingForParent: [Hash32: [(ProposalMsg, ValidatorID)]] = [:]
    /// Blocks asked for, and whom to ask again if the answer does not come.
    private var requested: [Hash32: ValidatorID] = [:]
    private var pendingCommit: QuorumCert?
    /// Set when a commit QC contradicted this node's execution: the core does nothing more.
    public private(set) var diverged: String?
    private var deferredPayload: (round: Round, payload: [[UInt8]])?
    /// Blocks whose execution ended the epoch, and those plus their descendants: the
    /// reconfiguration suffix, whose blocks carry no transactions and keep the state of
    /// the epoch's last block, so the chain can certify and commit it (2-chain).
    private var epochEnds: Set<Hash32> = []
    private var reconfiguration: Set<Hash32> = []
    /// Set once the epoch's last block is committed; the core then does nothing more.
    public private(set) var finishedEpoch: EpochChangeProof?
    /// Committed blocks' rounds, ids, authors and voters, oldest first (reputation).
    private var history: [CommitRecord] = []

    struct CommitRecord: Sendable {
        let round: Round
        let id: Hash32
        let author: ValidatorID
        /// Signers of the QC the block carries: the voters of its parent's round.
        let voters: [ValidatorID]
        let failed: [Block.FailedAuthor]

        init(_ block: Block) {
            round = block.round
            id = block.id
            author = block.author
            voters = block.qc.signatures.map(\.signer)
            failed = block.failedAuthors
        }
    }

    public init(config: ConsensusConfig, key: Ed25519.PrivateKey, recovered: RecoveredState? = nil) {
        self.config = config
        self.key = key
        me = key.publicKey
        domain = SigningDomain(chainID: config.chainID)
        let genesisQC = QuorumCert.genesis(
            epoch: config.epoch, blockID: config.genesisBlockID, stateID: config.genesisStateID)
        safety = recovered?.safety ?? SafetyState(epoch: config.epoch)
        highQC = safety.highQC ?? genesisQC
        highCommitQC = safety.highCommitQC ?? genesisQC
        lastRoundTC = safety.lastRoundTC
        committedRound = recovered?.committedRound ?? 0
        committedBlockID = recovered?.committedBlockID ?? config.genesisBlockID
        lastCommitRoundForBackoff = committedRound
        states[committedBlockID] = recovered?.committedStateID ?? config.genesisStateID
        verifiedQCs.insert(Self.qcKey(genesisQC))
        history = (recovered?.recentCommitted ?? []).map(CommitRecord.init)
        for block in recovered?.blocks ?? [] where block.round > committedRound {
            blocks[block.id] = block
        }
    }

    public func leader(of round: Round) -> ValidatorID {
        guard case .reputation(let window, let exclude) = config.leaderElection, round > exclude,
            let end = history.lastIndex(where: { $0.round <= round - exclude })
        else { return config.validators.leader(of: round) }
        let cutoff = round - exclude
        let records = history[...end].reversed().prefix { $0.round + Round(window) > cutoff }
        var active: Set<ValidatorID> = []
        var proposed: [ValidatorID: UInt64] = [:]
        var failed: [ValidatorID: UInt64] = [:]
        for record in records {
            active.insert(record.author)
            active.formUnion(record.voters)
            proposed[record.author, default: 0] += 1
            for f in record.failed where f.round <= cutoff && f.round + Round(window) > cutoff {
                failed[f.author, default: 0] += 1
            }
        }
        let validators = config.validators.validators
        let weights = validators.map { v -> UInt64 in
            let fails = failed[v.id] ?? 0
            let led = fails + (proposed[v.id] ?? 0)
            if fails * 100 > led * LeaderElection.failureThresholdPercent {
                return v.power * LeaderElection.failedWeight
            }
            return v.power * (active.contains(v.id) ? LeaderElection.activeWeight : LeaderElection.inactiveWeight)
        }
        var w = WireWriter()
        w.string16("sidenode-leader")
        // Epoch and round only: a block's id is its author's choice (it can grind its
        // payload until the draw favours it), so no block id feeds the seed.
        w.u64(config.epoch)
        w.u64(round)
        let seed = Hash32.of(w.bytes).bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        var pick = seed % weights.reduce(0, +)
        for (validator, weight) in zip(validators, weights) {
            if pick < weight { return validator.id }
            pick -= weight
        }
        return validators[validators.count - 1].id
    }

    /// History kept for reputation: the window, plus the blocks of the excluded rounds
    /// (one block per round at most), plus slack.
    private var historyLimit: Int {
        guard case .reputation(let window, let exclude) = config.leaderElection else { return 0 }
        return window + Int(exclude) + 8
    }
    public func block(_ id: Hash32) -> Block? { blocks[id] }

    /// The leaders of the rounds after `qcRound` and before `round` (none of them
    /// produced a certified block), the most recent `Block.maxFailedAuthors`.
    func failedAuthors(round: Round, qcRound: Round) -> [Block.FailedAuthor] {
        guard round > qcRound + 1 else { return [] }
        let first = max(qcRound + 1, round > Round(Block.maxFailedAuthors) ? round - Round(Block.maxFailedAuthors) : 0)
        return (first..<round).map { Block.FailedAuthor(round: $0, author: leader(of: $0)) }
    }

    /// Rounds back within which a late proposal still joins the tree.
    static let pastRoundWindow: Round = 8

    /// What the core holds for rounds other than the current one, for tests and metrics:
    /// every buffer is bounded by the round window, whatever peers send.
    public var bufferSizes: (votes: Int, timeouts: Int, proposals: Int, waitingForParent: Int, blocks: Int) {
        (
            votes.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } },
            timeouts.values.reduce(0) { $0 + $1.count }, proposals.count,
            waitingForParent.values.reduce(0) { $0 + $1.count }, blocks.count
        )
    }

    /// Payload bytes of `id` and its ancestors not yet committed.
    public func uncommittedBytes(through id: Hash32) -> Int {
        var total = 0
        var cursor = id
        while cursor != committedBlockID, let block = blocks[cursor] {
            total += block.payloadBytes
            cursor = block.parentID
        }
        return total
    }
    public func stateID(of id: Hash32) -> Hash32? { states[id] }

    // MARK: Start and timers

    /// Enters the first round (after genesis or a restart): re-executes recovered blocks
    /// and starts the round after the highest certificate.
    public mutating func start() -> [Action] {
        var actions: [Action] = []
        for block in blocks.values.sorted(by: { $0.round < $1.round }) {
            if let parent = states[block.parentID] { actions.append(.execute(block, parentState: parent)) }
        }
        // Resume after the highest certificate, as Aptos does: the safety state keeps the
        // node from voting again in a round it already signed, and a round entered this
        // way always allows a timeout, so the node cannot get stuck after a restart.
        actions += enterRound(max(highQC.round, lastRoundTC?.round ?? 0) + 1)
        // A vote signed just before a crash may never have left: send it again (the
        // same signed vote, so this is no equivocation), or count it here if this node
        // leads the next round.
        if let vote = safety.lastVote, vote.voteInfo.epoch == config.epoch, vote.voteInfo.round >= currentRound {
            let next = leader(of: vote.voteInfo.round + 1)
            actions += next == me ? processVote(vote, from: me, signedHere: true) : [.send(to: next, .vote(vote))]
        }
        return actions
    }

    private func timeoutDuration() -> Double {
        let gap = currentRound > lastCommitRoundForBackoff + 2 ? Int(currentRound - lastCommitRoundForBackoff - 2) : 0
        var d = config.baseTimeout
        for _ in 0..<min(gap, config.maxBackoffExponent) { d *= config.timeoutBackoff }
        return d
    }

    private mutating func enterRound(_ round: Round) -> [Action] {
        guard round > currentRound else { return [] }
        currentRound = round
        awaitingVote = nil
        // Forget per-round bookkeeping that can no longer matter.
        votes = votes.filter { $0.key + 1 >= round }
        votedBy = votedBy.filter { $0.key + 1 >= round }
        timeouts = timeouts.filter { $0.key >= round }
        myTimeout = myTimeout.filter { $0.key >= round }
        proposals = proposals.filter { $0.key + Self.pastRoundWindow >= round }
        waitingForParent = waitingForParent.filter {
            $0.value.contains { $0.0.block.round + Self.pastRoundWindow >= round }
        }
        qcFormed = qcFormed.filter { $0 + 2 >= round }
        tcFormed = tcFormed.filter { $0 + 2 >= round }
        amplified = amplified.filter { $0 + 2 >= round }
        proposed = proposed.filter { $0 >= round }
        if requested.count > 10_000 { requested.removeAll() }  // stale asks; live ones are repeated
        var actions: [Action] = [.scheduleTimeout(round: round, after: timeoutDuration())]
        if leader(of: round) == me && !proposed.contains(round) { actions.append(.requestPayload(round: round)) }
        return actions
    }

    /// The round timer expired: sign a timeout (once) and broadcast it; a timer that
    /// fires again re-broadcasts, since the first broadcast may have been lost.
    public mutating func timeoutFired(round: Round) -> [Action] {
        guard round == currentRound, finishedEpoch == nil, diverged == nil else { return [] }
        var actions: [Action] = [.scheduleTimeout(round: round, after: timeoutDuration())]
        actions += refetchMissing()
        if let existing = myTimeout[round] { return actions + [.broadcast(.timeout(existing))] }
        let signed = localTimeout()
        if !signed.isEmpty { timeoutsByTimer += 1 }
        return actions + signed
    }

    private mutating func localTimeout() -> [Action] {
        let round = currentRound
        guard myTimeout[round] == nil, config.validators.contains(me),
            SafetyRules.safeToTimeout(round: round, qcRound: highQC.round, tc: lastRoundTC, state: safety)
        else { return [] }
        safety.highestVoteRound = max(safety.highestVoteRound, round)
        safety.highQC = highQC
        safety.highCommitQC = highCommitQC
        safety.lastRoundTC = lastRoundTC
        let signature = key.signature(for: timeoutSigningBytes(round: round, highQCRound: highQC.round))
        let info = TimeoutInfo(epoch: config.epoch, round: round, highQC: highQC, sender: me, signature: signature)
        // Well-formed: the last round's TC goes along exactly when the high QC is not from round - 1.
        let tc = highQC.round + 1 == round ? nil : lastRoundTC
        let message = TimeoutMsg(info: info, lastRoundTC: tc, highCommitQC: highCommitQC)
        myTimeout[round] = message
        return [.persistSafety(safety), .broadcast(.timeout(message))] + addTimeout(info)
    }

    // MARK: Messages

    public mutating func receive(_ message: ConsensusMessage, from sender: ValidatorID) -> [Action] {
        receive(message, from: sender, authenticated: false)
    }

    /// `authenticated`: `provenance` has just verified the message's own signature (the
    /// chain machine passes it on, so a message is verified once); module-internal, so
    /// no caller outside can skip a check.
    mutating func receive(_ message: ConsensusMessage, from sender: ValidatorID, authenticated: Bool) -> [Action] {
        guard finishedEpoch == nil, diverged == nil else { return [] }
        switch message {
        case .proposal(let p): return processProposal(p, from: sender, authenticated: authenticated)
        case .vote(let v): return processVote(v, from: sender, signedHere: authenticated)
        case .timeout(let t): return processTimeout(t, from: sender, authenticated: authenticated)
        case .blockRequest(let id):
            guard let block = blocks[id] else { return [.serveCommittedBlock(id, to: sender)] }
            return [.send(to: sender, .blockResponse(block))]
        case .blockResponse(let block): return processFetchedBlock(block, from: sender)
        case .chainStatus, .getCommitted, .committedRange: return []  // catch-up: the driver's `CatchUp`
        }
    }

    private mutating func processProposal(_ p: ProposalMsg, from sender: ValidatorID, authenticated: Bool) -> [Action] {
        let block = p.block
        guard block.epoch == config.epoch, block.author == sender, config.validators.contains(sender),
            authenticated
                || sender.isValidSignature(
                    p.signature, for: domain.message("proposal", epoch: config.epoch, block.id.bytes)),
            verify(block.qc), verify(p.highCommitQC), verifyOptional(p.lastRoundTC)
        else { return [] }
        // Well-formedness: a TC of round - 1 exactly when the QC is not from round - 1.
        if block.qc.round + 1 == block.round {
            guard p.lastRoundTC == nil else { return [] }
        } else {
            guard let tc = p.lastRoundTC, tc.round + 1 == block.round else { return [] }
        }
        // Certificates first (they are valid whoever relays them): the commits they carry
        // can decide who leads this round under reputation-based election.
        var actions = processCertificate(block.qc, from: sender)
        actions += processCertificate(p.highCommitQC, from: sender)
        if let tc = p.lastRoundTC { actions += advanceRound(tc: tc, from: sender) }
        // Checked after the certificates, whose commits decide who led those rounds; and
        // a block over the caps is refused without losing the certificates it carried
        // (the QC of the last round reaches the others only through this proposal).
        guard sender == leader(of: block.round),
            block.failedAuthors == failedAuthors(round: block.round, qcRound: block.qc.round),
            block.payload.count <= config.maxBlockTransactions, block.payloadBytes <= config.maxBlockBytes
        else { return actions }
        // A valid block of a round already left (its votes can outrun it to the next
        // leader) still joins the tree: later blocks build on it.
        // One block per past round (the one seen first), within the rounds still
        // remembered: a Byzantine leader of a past round cannot make this node store
        // and execute one block after another.
        if block.round < currentRound, states[block.parentID] != nil {
            guard block.round + Self.pastRoundWindow >= currentRound else { return actions }
            if let seen = proposals[block.round] {
                guard seen == block.id else {
                    return actions + [.evidence("two proposals by \(sender.hex.prefix(16)) in round \(block.round)")]
                }
            } else {
                proposals[block.round] = block.id
            }
            return actions + insert(block)
        }
        guard block.round == currentRound else { return actions }
        if let seen = proposals[block.round] {
            if seen != block.id {
                return actions + [.evidence("two proposals by \(sender.hex.prefix(16)) in round \(block.round)")]
            }
            // The same proposal again: after a restart, answer with the identical vote.
            if let vote = safety.lastVote, vote.voteInfo.blockID == block.id {
                return actions + [.send(to: leader(of: block.round + 1), .vote(vote))]
            }
            return actions
        }
        proposals[block.round] = block.id
        guard states[block.parentID] != nil else {
            waitingForParent[block.parentID, default: []].append((p, sender))
            return actions + fetch(block.parentID, from: sender)
        }
        actions += insert(block)
        awaitingVote = (block, p.lastRoundTC)
        if states[block.id] != nil { actions += tryVote() }
        return actions
    }

    private mutating func insert(_ block: Block) -> [Action] {
        guard blocks[block.id] == nil, block.round > committedRound else { return [] }
        // After the epoch's last block only empty blocks may follow (they exist to commit it).
        guard !reconfiguration.contains(block.parentID) || block.payload.isEmpty else { return [] }
        blocks[block.id] = block
        var actions: [Action] = [.persistBlock(block)]
        if let parentState = states[block.parentID] { actions += execute(block, parentState: parentState) }
        return actions
    }

    /// Asks the driver to execute a block — unless it follows the epoch's last block, in
    /// which case it keeps that block's state without executing anything.
    private mutating func execute(_ block: Block, parentState: Hash32) -> [Action] {
        guard reconfiguration.contains(block.parentID) else { return [.execute(block, parentState: parentState)] }
        guard block.payload.isEmpty else {
            blocks[block.id] = nil  // inserted before its parent was known to end the epoch
            return []
        }
        reconfiguration.insert(block.id)
        return executed(id: block.id, stateID: parentState)
    }

    /// The driver computed the state after a block; `endsEpoch` when executing it ended
    /// the epoch (the ledger decides: a validator-set change or the epoch's length).
    public mutating func blockExecuted(id: Hash32, stateID: Hash32, endsEpoch: Bool = false) -> [Action] {
        guard blocks[id] != nil, states[id] == nil, finishedEpoch == nil else { return [] }
        if endsEpoch {
            epochEnds.insert(id)
            reconfiguration.insert(id)
        }
        return executed(id: id, stateID: stateID)
    }

    private mutating func executed(id: Hash32, stateID: Hash32) -> [Action] {
        states[id] = stateID
        var actions: [Action] = []
        // Children that waited for this state can now execute.
        for child in blocks.values where child.parentID == id && states[child.id] == nil {
            actions += execute(child, parentState: stateID)
        }
        if let waiting = waitingForParent.removeValue(forKey: id) {
            for (proposal, sender) in waiting {
                proposals[proposal.block.round] = nil
                // Verified when it arrived (it passed every check before it waited).
                actions += processProposal(proposal, from: sender, authenticated: true)
            }
        }
        if let qc = pendingCommit, states[qc.voteInfo.parentID] != nil || qc.voteInfo.parentID == committedBlockID {
            pendingCommit = nil
            actions += processCertificate(qc, from: me)
        }
        if awaitingVote?.block.id == id { actions += tryVote() }
        if let deferred = deferredPayload, deferred.round == currentRound, highQC.blockID == id {
            actions += proposePayload(round: deferred.round, payload: deferred.payload)
        }
        return actions
    }

    private mutating func tryVote() -> [Action] {
        guard let (block, tc) = awaitingVote, block.round == currentRound, let state = states[block.id],
            config.validators.contains(me)  // a full node follows the chain without signing
        else { return [] }
        awaitingVote = nil
        guard uncommittedBytes(through: block.id) <= config.maxUncommittedBytes else { return [] }
        let qcRound = block.qc.round
        guard SafetyRules.safeToVote(round: block.round, qcRound: qcRound, tc: tc, state: safety) else { return [] }
        safety.highestQCRound = max(safety.highestQCRound, qcRound)
        safety.highestVoteRound = block.round
        let info = VoteInfo(
            blockID: block.id, round: block.round, parentID: block.parentID, parentRound: qcRound, execStateID: state,
            epoch: config.epoch)
        let commitState =
            SafetyRules.commitCandidate(round: block.round, qcRound: qcRound) ? states[block.parentID] : nil
        let commitInfo = LedgerCommitInfo(
            epoch: config.epoch, round: block.round, commitStateID: commitState, voteInfoHash: info.hash)
        let signature = key.signature(for: domain.message("vote", epoch: config.epoch, commitInfo.bytes))
        let vote = VoteMsg(
            voteInfo: info, commitInfo: commitInfo, highCommitQC: highCommitQC, sender: me, signature: signature)
        safety.lastVote = vote
        safety.highQC = highQC
        safety.highCommitQC = highCommitQC
        safety.lastRoundTC = lastRoundTC
        let nextLeader = leader(of: block.round + 1)
        var actions: [Action] = [.persistSafety(safety)]
        if nextLeader == me {
            actions += processVote(vote, from: me, signedHere: true)
        } else {
            actions.append(.send(to: nextLeader, .vote(vote)))
        }
        return actions
    }

    /// `signedHere` only for the vote this core just signed itself, or one whose signature
    /// `provenance` has just verified: every vote from the network is verified, one that
    /// claims this validator's own id included (a forged "own" vote would otherwise take
    /// the real one's place in the QC).
    private mutating func processVote(_ v: VoteMsg, from sender: ValidatorID, signedHere: Bool = false) -> [Action] {
        guard v.sender == sender, v.voteInfo.epoch == config.epoch, v.commitInfo.epoch == config.epoch,
            v.commitInfo.round == v.voteInfo.round, v.commitInfo.voteInfoHash == v.voteInfo.hash,
            config.validators.contains(sender),
            signedHere
                || sender.isValidSignature(
                    v.signature, for: domain.message("vote", epoch: config.epoch, v.commitInfo.bytes)),
            verify(v.highCommitQC)
        else { return [] }
        var actions = processCertificate(v.highCommitQC, from: sender)
        let round = v.voteInfo.round
        // Only the current round's votes, the previous round's (a QC may still form) and
        // the next one's (this node may be a little behind) are kept: nothing unbounded.
        // The bound comes first: a validly signed vote for round UInt64.max must not reach
        // `round + 1`.
        guard round <= currentRound + 1, round + 1 >= currentRound, leader(of: round + 1) == me,
            !qcFormed.contains(round)
        else { return actions }
        if let previous = votedBy[round]?[sender] {
            if previous != v.commitInfo {
                actions.append(.evidence("two votes by \(sender.hex.prefix(16)) in round \(round)"))
            }
            return actions  // one signer counts once
        }
        votedBy[round, default: [:]][sender] = v.commitInfo
        votes[round, default: [:]][v.commitInfo, default: [:]][sender] = v.signature
        let signers = votes[round]![v.commitInfo]!
        guard config.validators.power(of: signers.keys) >= config.validators.quorumPower else { return actions }
        qcFormed.insert(round)
        let qc = QuorumCert(
            voteInfo: v.voteInfo, commitInfo: v.commitInfo,
            signatures: signers.map { SignerSignature(signer: $0.key, signature: $0.value) })
        verifiedQCs.insert(Self.qcKey(qc))
        return actions + processCertificate(qc, from: me)
    }

    private mutating func processTimeout(_ t: TimeoutMsg, from sender: ValidatorID, authenticated: Bool) -> [Action] {
        let info = t.info
        guard info.sender == sender, info.epoch == config.epoch, config.validators.contains(sender),
            authenticated
                || sender.isValidSignature(
                    info.signature, for: timeoutSigningBytes(round: info.round, highQCRound: info.highQC.round)),
            verify(info.highQC), verify(t.highCommitQC), verifyOptional(t.lastRoundTC)
        else { return [] }
        var actions = processCertificate(info.highQC, from: sender)
        actions += processCertificate(t.highCommitQC, from: sender)
        if let tc = t.lastRoundTC { actions += advanceRound(tc: tc, from: sender) }
        guard info.round >= currentRound, info.round <= currentRound + 1 else { return actions }
        return actions + addTimeout(info)
    }

    private mutating func addTimeout(_ info: TimeoutInfo) -> [Action] {
        let round = info.round
        guard timeouts[round]?[info.sender] == nil else { return [] }  // duplicates count once
        timeouts[round, default: [:]][info.sender] = info
        let power = config.validators.power(of: timeouts[round]!.keys)
        var actions: [Action] = []
        // Bracha amplification: f+1 timeouts mean an honest validator gave up; join once.
        if power >= config.validators.amplificationPower, round == currentRound, !amplified.contains(round) {
            amplified.insert(round)
            let signed = localTimeout()
            if !signed.isEmpty { timeoutsByAmplification += 1 }
            actions += signed
        }
        // The amplification above may itself have completed this round's TC.
        guard let collected = timeouts[round], !tcFormed.contains(round) else { return actions }
        if config.validators.power(of: collected.keys) >= config.validators.quorumPower {
            tcFormed.insert(round)
            let highest = collected.values.map(\.highQC).max { $0.round < $1.round }!
            let tc = TimeoutCert(
                epoch: config.epoch, round: round, highQC: highest,
                entries: collected.values.map {
                    TimeoutCert.Entry(signer: $0.sender, highQCRound: $0.highQC.round, signature: $0.signature)
                })
            actions += advanceRound(tc: tc, from: me)
        }
        return actions
    }

    /// A verified TC: its highest QC is a certificate like any other (this node may not
    /// have it: a QC reaches the others only through the next proposal), then the round.
    private mutating func advanceRound(tc: TimeoutCert, from sender: ValidatorID) -> [Action] {
        var actions = processCertificate(tc.highQC, from: sender)
        guard tc.round >= currentRound else { return actions }
        lastRoundTC = tc
        actions += enterRound(tc.round + 1)
        return actions
    }

    // MARK: Certificates and commits

    private mutating func processCertificate(_ qc: QuorumCert, from sender: ValidatorID) -> [Action] {
        var actions: [Action] = []
        if qc.round > highQC.round {
            if states[qc.blockID] == nil && blocks[qc.blockID] == nil && qc.round > committedRound {
                actions += fetch(qc.blockID, from: sender)
            }
            highQC = qc
        }
        // 2-chain rule: a QC commits its block's parent only when the two rounds are
        // consecutive (voters set commit_state_id only then; checked here regardless).
        if qc.commitInfo.commitStateID != nil, qc.voteInfo.round == qc.voteInfo.parentRound + 1,
            qc.voteInfo.parentRound > committedRound
        {
            if qc.round > highCommitQC.round { highCommitQC = qc }
            actions += commit(qc, from: sender)
        }
        if qc.round >= currentRound {
            lastRoundTC = nil
            actions += enterRound(qc.round + 1)
        }
        return actions
    }

    /// Commits the parent of the QC's block and every uncommitted ancestor.
    private mutating func commit(_ qc: QuorumCert, from sender: ValidatorID) -> [Action] {
        let target = qc.voteInfo.parentID
        guard states[target] != nil else {
            // Not executed here yet: commit once its ancestors arrive and execute.
            pendingCommit = qc
            let missing = blocks[target] == nil ? target : missingAncestor(of: target)
            return missing.map { fetch($0, from: sender) } ?? []
        }
        if let certified = qc.commitInfo.commitStateID, let own = states[target], certified != own {
            diverged =
                "the commit QC of round \(qc.round) certifies state \(certified.hex) for block "
                + "\(target.hex), but this node's execution gives \(own.hex)"
            return [.diverged(diverged!)]
        }
        if let block = blocks[target], block.round != qc.voteInfo.parentRound { return [] }
        var chain: [Block] = []
        var cursor = target
        while cursor != committedBlockID {
            guard let block = blocks[cursor] else {
                pendingCommit = qc
                return fetch(cursor, from: sender)
            }
            chain.append(block)
            cursor = block.parentID
        }
        chain.reverse()
        // The epoch ends exactly at its last block, whichever QC commits it: every node
        // then starts the next epoch from the same block. The blocks after it (empty,
        // same state) go into the proof that it is committed.
        var epochChange: EpochChangeProof?
        if let end = chain.firstIndex(where: { epochEnds.contains($0.id) }) {
            epochChange = EpochChangeProof(suffix: Array(chain[(end + 1)...]), commitQC: qc)
            chain = Array(chain[...end])
        }
        guard let last = chain.last else { return [] }
        committedBlockID = last.id
        committedRound = last.round
        lastCommitRoundForBackoff = currentRound
        if historyLimit > 0 {
            history += chain.map(CommitRecord.init)
            if history.count > historyLimit { history.removeFirst(history.count - historyLimit) }
        }
        // Prune what the commit made unreachable.
        for (id, block) in blocks where block.round <= committedRound && id != committedBlockID {
            blocks[id] = nil
            states[id] = nil
        }
        if let epochChange {
            finishedEpoch = epochChange
            return [.commit(chain, qc, epochChange: epochChange)]
        }
        return [.commit(chain, qc, epochChange: nil)]
    }

    /// Asks `sender` for a block. Asked again whenever something references it, since a
    /// request or its answer may be lost.
    private mutating func fetch(_ id: Hash32, from sender: ValidatorID) -> [Action] {
        guard sender != me else { return [] }
        requested[id] = sender
        return [.fetchBlock(id, from: sender)]
    }

    /// The first ancestor of `id` that is neither in the tree nor committed.
    private func missingAncestor(of id: Hash32) -> Hash32? {
        var cursor = id
        while let block = blocks[cursor] {
            if states[block.parentID] != nil { return nil }  // its chain can execute
            cursor = block.parentID
        }
        return cursor == committedBlockID ? nil : cursor
    }

    /// Re-asks for blocks still missing (a request or its answer may have been lost).
    private mutating func refetchMissing() -> [Action] {
        var wanted: Set<Hash32> = Set(waitingForParent.keys)
        if let qc = pendingCommit { wanted.insert(qc.voteInfo.parentID) }
        wanted.insert(highQC.blockID)
        var actions: [Action] = []
        for id in wanted.sorted() where states[id] == nil {
            guard let missing = blocks[id] == nil ? id : missingAncestor(of: id) else { continue }
            let peer = requested[missing] ?? leader(of: currentRound)
            actions += fetch(missing, from: peer == me ? leader(of: currentRound + 1) : peer)
        }
        return actions
    }

    private mutating func processFetchedBlock(_ block: Block, from sender: ValidatorID) -> [Action] {
        guard requested[block.id] != nil, block.epoch == config.epoch, verify(block.qc) else { return [] }
        requested[block.id] = nil
        var actions = insert(block)
        if states[block.parentID] == nil && blocks[block.parentID] == nil && block.qc.round > committedRound {
            actions += fetch(block.parentID, from: sender)
        }
        actions += processCertificate(block.qc, from: sender)
        return actions
    }

    // MARK: Proposing

    /// The payload for a round this validator leads.
    public mutating func proposePayload(round: Round, payload: [[UInt8]]) -> [Action] {
        guard finishedEpoch == nil, diverged == nil, round == currentRound, leader(of: round) == me,
            !proposed.contains(round), round > safety.lastProposedRound
        else { return [] }
        let tc: TimeoutCert?
        if highQC.round + 1 == round {
            tc = nil
        } else {
            guard let last = lastRoundTC, last.round + 1 == round else { return [] }
            tc = last
        }
        guard states[highQC.blockID] != nil else {
            // The certified block has not arrived or executed yet: propose once it has.
            deferredPayload = (round, payload)
            return []
        }
        deferredPayload = nil
        proposed.insert(round)
        let payload = reconfiguration.contains(highQC.blockID) ? [] : payload
        let block = Block(
            epoch: config.epoch, round: round, author: me, payload: payload, qc: highQC,
            failedAuthors: failedAuthors(round: round, qcRound: highQC.round))
        // Durable before the proposal leaves: after a crash this round is never led again.
        safety.lastProposedRound = round
        let signature = key.signature(for: domain.message("proposal", epoch: config.epoch, block.id.bytes))
        let proposal = ProposalMsg(block: block, lastRoundTC: tc, highCommitQC: highCommitQC, signature: signature)
        return [.persistSafety(safety), .broadcast(.proposal(proposal))]
            + processProposal(proposal, from: me, authenticated: true)
    }

    // MARK: Verification

    /// Who a consensus message from the network counts as from (docs/wire.md §5).
    public enum Provenance: Sendable, Equatable {
        /// Hand it to `receive(_:from:)` as from `sender`.
        case accept(sender: ValidatorID)
        /// A later epoch's message: not judgeable before that epoch begins here.
        case later(sender: ValidatorID)
        /// A past epoch's message: dropped, nobody blamed.
        case stale
        /// Forged or misdirected: dropped, and the peer that delivered it is to blame.
        case forged(String)
    }

    /// Establishes the sender of a message that arrived from the network. A signed
    /// message counts as from its signer only when the signature verifies: direct, only
    /// from the signer itself (nobody relays direct messages); flooded, from anyone. An
    /// unsigned message (block and range requests and answers, status) is from the
    /// peer that sent it directly, and is never flooded.
    public func provenance(of message: ConsensusMessage, directFrom peer: ValidatorID?) -> Provenance {
        guard let signer = message.signer, let epoch = message.epoch else {
            guard let peer else { return .forged("an unsigned consensus message cannot be flooded") }
            return .accept(sender: peer)
        }
        if let peer, peer != signer {
            return .forged("a direct consensus message signed by \(signer.hex.prefix(16)), not by its sender")
        }
        if epoch > config.epoch { return .later(sender: signer) }
        if epoch < config.epoch { return .stale }
        guard config.validators.contains(signer) else {
            return .forged("a consensus message of epoch \(epoch) signed by \(signer.hex.prefix(16)), not a validator")
        }
        guard isAuthentic(message) else {
            return .forged("a consensus message with an invalid signature claiming \(signer.hex.prefix(16))")
        }
        return .accept(sender: signer)
    }

    /// Whether a signed message carries a valid signature by a validator of this epoch.
    public func isAuthentic(_ message: ConsensusMessage) -> Bool {
        switch message {
        case .proposal(let p):
            return p.block.epoch == config.epoch && config.validators.contains(p.block.author)
                && p.block.author.isValidSignature(
                    p.signature, for: domain.message("proposal", epoch: config.epoch, p.block.id.bytes))
        case .vote(let v):
            return v.commitInfo.epoch == config.epoch && config.validators.contains(v.sender)
                && v.sender.isValidSignature(
                    v.signature, for: domain.message("vote", epoch: config.epoch, v.commitInfo.bytes))
        case .timeout(let t):
            return t.info.epoch == config.epoch && config.validators.contains(t.info.sender)
                && t.info.sender.isValidSignature(
                    t.info.signature, for: timeoutSigningBytes(round: t.info.round, highQCRound: t.info.highQC.round))
        case .blockRequest, .blockResponse, .chainStatus, .getCommitted, .committedRange:
            return false  // never flooded
        }
    }

    private func timeoutSigningBytes(round: Round, highQCRound: Round) -> [UInt8] {
        var w = WireWriter()
        w.u64(round)
        w.u64(highQCRound)
        return domain.message("timeout", epoch: config.epoch, w.bytes)
    }

    static func qcKey(_ qc: QuorumCert) -> Hash32 {
        var w = WireWriter()
        qc.encode(&w)
        return Hash32.of(w.bytes)
    }

    /// A QC is valid when its vote-info hash matches, its signers are distinct
    /// validators with quorum power, and every signature verifies. Verified QCs are
    /// remembered, since every message repeats a few.
    private mutating func verify(_ qc: QuorumCert) -> Bool {
        let key = Self.qcKey(qc)
        if verifiedQCs.contains(key) { return true }
        guard config.isValid(qc) else { return false }
        if verifiedQCs.count > 10_000 { verifiedQCs.removeAll() }
        verifiedQCs.insert(key)
        return true
    }

    private mutating func verifyOptional(_ tc: TimeoutCert?) -> Bool {
        guard let tc else { return true }
        return verify(tc)
    }

    private mutating func verify(_ tc: TimeoutCert) -> Bool {
        var w = WireWriter()
        tc.encode(&w)
        let key = Hash32.of(w.bytes)
        if verifiedTCs.contains(key) { return true }
        guard check(tc) else { return false }
        if verifiedTCs.count > 1_000 { verifiedTCs.removeAll() }
        verifiedTCs.insert(key)
        return true
    }

    private mutating func check(_ tc: TimeoutCert) -> Bool {
        // The claimed highest QC round must be the carried QC's, and that QC valid.
        guard tc.epoch == config.epoch, tc.highQC.round == tc.highestQCRound, tc.highQC.voteInfo.epoch == config.epoch,
            verify(tc.highQC)
        else { return false }
        let signers = tc.entries.map(\.signer)
        guard Set(signers).count == signers.count, signers.allSatisfy(config.validators.contains),
            config.validators.power(of: signers) >= config.validators.quorumPower
        else { return false }
        return tc.entries.allSatisfy {
            $0.signer.isValidSignature(
                $0.signature, for: timeoutSigningBytes(round: tc.round, highQCRound: $0.highQCRound))
        }
    }
}
