import Consensus
import HeapModule
import NodeCrypto
import TestSupport
import Wire

typealias SimRNG = SeededRandom

/// A seeded simulation of N nodes in one process, each running the shipped chain state
/// machine (`ChainMachine`: the consensus core, timers, catch-up, epoch switch, future
/// buffer) over a model ledger: a virtual clock per node, a network with delay, loss,
/// duplication and partitions, and a disk per node that keeps what was persisted (a crash
/// loses everything else). Oracles run on every commit and every signed message:
/// agreement, per-signer vote monotonicity across restarts, and commit justification.
struct Simulator {
    typealias Machine = ChainMachine<ModelExecution>

    /// What a node's disk keeps; the machine reads its committed chain from here.
    struct Disk: ChainStoreReader {
        var safety: SafetyState?
        var blocks: [Hash32: Block] = [:]
        var committedID: Hash32
        var committedRound: Round = 0
        /// The committed state (the model ledger after the committed tip).
        var state: ModelLedger
        var committedState: Hash32 { state.id }
        /// The committed chain in height order, as the node's store keeps it.
        var records: [CommittedRecord] = []
        var committedBlocks: [Hash32: Block] = [:]
        var heights: [Hash32: Int] = [:]
        /// The QC that committed each block (what a catch-up range is proven by).
        var commitProofs: [Hash32: QuorumCert] = [:]
        /// The current epoch's configuration, and the proofs of the epochs that ended
        /// (by their last block).
        var config: ConsensusConfig
        var epochProofs: [Hash32: EpochChangeProof] = [:]

        func committed(from height: UInt64, limit: Int) -> [CommittedRecord] {
            guard height >= 1, height <= UInt64(records.count) else { return [] }
            let first = Int(height - 1)
            return Array(records[first..<min(records.count, first + limit)])
        }

        func committed(id: Hash32) -> CommittedRecord? { heights[id].map { records[$0] } }

        func epochChange(endingAt height: UInt64) -> EpochChangeProof? {
            guard height >= 1, height <= UInt64(records.count) else { return nil }
            return epochProofs[records[Int(height - 1)].block.id]
        }
    }

    struct Node {
        let key: Ed25519.PrivateKey
        var machine: Machine
        var disk: Disk
        var alive = true
        var incarnation = 0
        /// Committed block ids in order (what the disk recorded).
        var committed: [Hash32] = []
        var silentLeader = false
        /// Blocks applied through catch-up ranges.
        var caughtUp = 0
        /// When the node's next tick is scheduled (real time).
        var tickAt: Double?

        var core: ConsensusCore { machine.core }
        var catchUp: CatchUp { machine.catchUp }
    }

    enum Event {
        case deliver(to: Int, from: Int, ConsensusMessage)
        /// The node's machine has something due (a round timer, a proposal, a status report).
        case tick(node: Int, incarnation: Int)
        /// A message the adversary sends from the transport identity of node `transport`
        /// (direct, or flooded: then anyone could have relayed it).
        case inject(to: Int, transport: Int, ConsensusMessage, flooded: Bool)
        /// The adversary acts (Adversary.swift).
        case adversaryTick
    }

    /// Ordered by (time, seq): events at the same instant run in scheduling order,
    /// which keeps a seed's trace deterministic.
    struct Scheduled: Comparable {
        let time: Double
        let seq: Int
        let event: Event

        static func < (a: Scheduled, b: Scheduled) -> Bool { (a.time, a.seq) < (b.time, b.seq) }
        static func == (a: Scheduled, b: Scheduled) -> Bool { a.seq == b.seq }
    }

    let config: ConsensusConfig
    var rng: SimRNG
    var now: Double = 0
    var seq = 0
    /// Until this time the pool is empty (leaders wait out the block interval).
    var idlePoolUntil = 0.0
    /// The leaders' block interval when the pool is empty (default: the machine's).
    var minBlockInterval: Double?
    var queue = Heap<Scheduled>()
    var nodes: [Node] = []
    // Network model.
    var minDelay = 0.005
    var maxDelay = 0.030
    var loss = 0.0
    var duplication = 0.0
    /// Nodes in different groups cannot talk; nil means fully connected.
    var partition: [Set<Int>]?
    // Oracles and observations.
    var canonical: [Hash32] = []
    /// Every QC that committed something, in commit order (to see who signed).
    var committedQCs: [QuorumCert] = []
    var forkDetected = false
    var violations: [String] = []
    /// Per signer and epoch (rounds start again in every epoch).
    var signed: [SignerEpoch: [(round: Round, vote: LedgerCommitInfo?)]] = [:]
    struct SignerEpoch: Hashable {
        let signer: ValidatorID
        let epoch: Epoch
    }
    var byzantine: Set<ValidatorID> = []
    var timeoutCertificates = 0
    var proposalsWithTC = 0
    var commitLag: [Round] = []
    var evidence: [String] = []
    var traceHasher: [UInt8] = []
    /// Crash a node right after its n-th safety write, before anything that follows it is sent.
    var crashAfterSafetyWrite: (node: Int, count: Int)?
    var safetyWrites: [Int: Int] = [:]
    /// S10, a torn log tail: the node crashes during its n-th write (safety state, block
    /// or commit record), which is lost; it never acted on it.
    var tornWrite: (node: Int, count: Int)?
    var writes: [Int: Int] = [:]
    /// Run the catch-up protocol (status reports every second, verified ranges).
    var catchUpEnabled = false
    var catchUpPenalties = 0
    /// Nodes that serve tampered catch-up ranges (a transaction swapped in the first block).
    var corruptServers: Set<Int> = []
    // Epochs.
    var epochLength = Int.max
    /// Validator-set changes to propose, by the epoch they apply in.
    var scheduledChanges: [Epoch: [Int]] = [:]
    /// Every epoch's configuration, as the first node to enter it computed it.
    var configs: [Epoch: ConsensusConfig] = [:]
    var keys: [Ed25519.PrivateKey] = []
    /// The adversary (issue 14): the Byzantine validators it controls and what it does.
    var adversary = Adversary()
    /// Messages refused as forged by the receiver's provenance check (what the node charges
    /// to the peer that delivered them), and accepted ones the adversary forged (must stay 0).
    var forgedRefused = 0
    /// Clock rate per node: a node's clock reads real time ÷ skew, so its round timer of
    /// `after` seconds fires after `after × skew` real seconds.
    var clockSkew: [Int: Double] = [:]
    /// Links cut in one direction only: [from, to].
    var cutLinks: Set<[Int]> = []
    /// Nodes whose ledger computes other state ids than everyone else's (a bug, or a
    /// corrupted binary): they must halt rather than commit.
    var divergent: Set<Int> = []
    /// Negative control of the durability oracle: carry out a step's messages before its writes.
    var sendsBeforeWrites = false
    /// Print every proposal, vote and timeout a node sends (campaign debugging).
    var printMessages = false
    private let genesisLedger: ModelLedger
    /// Model states by id, for tests that execute blocks themselves (`execute(_:on:)`).
    private var modelStates: [Hash32: ModelLedger] = [:]

    /// `count` validators, and `fullNodes` more nodes that follow without signing (they
    /// can become validators by an epoch change).
    init(
        seed: UInt64, validators count: Int, fullNodes: Int = 0, twins: [Int] = [],
        leaderElection: LeaderElection = .roundRobin, powers: [UInt64]? = nil
    ) {
        rng = SimRNG(state: seed)
        // All nodes share this process: each signature is verified once, not once per node.
        SignatureMemo.enable()
        // Keys from the seed, so the same seed gives the same validators in the same order.
        var r = SimRNG(state: seed ^ 0xABCDEF)
        let keys = (0..<count + fullNodes).map { _ in (0..<32).map { _ in UInt8(truncatingIfNeeded: r.next()) } }
        let privateKeys = keys.map { try! Ed25519.PrivateKey(seed: $0) }
        self.keys = privateKeys
        let set = ValidatorSet(
            privateKeys.prefix(count).enumerated().map { Validator(id: $1.publicKey, power: powers?[$0] ?? 1) })
        let genesisState = Hash32.of(Array("genesis state".utf8))
        let genesisID = Hash32.of(Array("genesis block".utf8))
        var config = ConsensusConfig(
            chainID: "sim", epoch: 1, validators: set, genesisBlockID: genesisID, genesisStateID: genesisState)
        config.leaderElection = leaderElection
        self.config = config
        configs[config.epoch] = config
        genesisLedger = ModelLedger(id: genesisState, epoch: config.epoch, blocks: 0, validators: Array(0..<count))
        for key in privateKeys + twins.map({ privateKeys[$0] }) {
            let disk = Disk(committedID: genesisID, state: genesisLedger, config: config)
            nodes.append(
                Node(
                    key: key, machine: Self.machine(key: key, disk: disk, execution: nil, options: .init(), now: 0),
                    disk: disk))
        }
        for t in twins { byzantine.insert(privateKeys[t].publicKey) }
        modelStates[genesisState] = genesisLedger
    }

    /// Runs a block on a model state the simulator has seen (from the genesis on), as the
    /// nodes' machines do: the resulting state id and whether the block ends its epoch.
    mutating func execute(_ block: Block, on parentState: Hash32) -> (Hash32, Bool) {
        let parent =
            modelStates[parentState]
            ?? nodes.lazy.map(\.disk.state).first { $0.id == parentState }
            ?? ModelLedger(id: parentState, epoch: config.epoch, blocks: 0, validators: [])
        let result = execution.execute(block, on: parent, pool: [])
        modelStates[result.stateID] = result.state
        return (result.stateID, result.endsEpoch)
    }

    var validatorCount: Int { config.validators.validators.count }

    var execution: ModelExecution { execution(for: -1) }

    func execution(for i: Int) -> ModelExecution {
        ModelExecution(
            chainID: config.chainID, keys: keys.map(\.publicKey), leaderElection: config.leaderElection,
            epochLength: epochLength, divergent: divergent.contains(i))
    }

    var options: Machine.Options {
        var options = Machine.Options()
        if let minBlockInterval { options.minBlockInterval = minBlockInterval }
        // Without catch-up nobody reports a height, so nothing is waited for.
        options.statusInterval = catchUpEnabled ? 1 : nil
        if !catchUpEnabled { options.initialStatusWait = 0 }
        return options
    }

    /// A machine recovered from a disk, as the node's driver recovers it from SQLite.
    static func machine(
        key: Ed25519.PrivateKey, disk: Disk, execution: ModelExecution?, options: Machine.Options, now: Double
    ) -> Machine {
        let recovered = RecoveredState(
            safety: disk.safety ?? SafetyState(epoch: disk.config.epoch),
            blocks: disk.blocks.values.sorted { ($0.round, $0.id) < ($1.round, $1.id) },
            committedBlockID: disk.committedID, committedRound: disk.committedRound, committedStateID: disk.state.id,
            recentCommitted: disk.records.suffix(200).map(\.block).filter { $0.epoch == disk.config.epoch })
        let execution =
            execution
            ?? ModelExecution(
                chainID: disk.config.chainID, keys: [], leaderElection: .roundRobin, epochLength: .max, divergent: false
            )
        return Machine(
            execution: execution, key: key,
            recovered: .init(
                config: disk.config, committedState: disk.state, committedHeight: UInt64(disk.records.count),
                core: recovered, tipCommitQC: disk.records.last?.commitQC),
            options: options, now: now)
    }

    /// Starts every node (machines are built now, when the scenario's settings are known).
    mutating func start() {
        for i in nodes.indices {
            nodes[i].machine = Self.machine(
                key: nodes[i].key, disk: nodes[i].disk, execution: execution(for: i), options: options, now: clock(i))
            step(i) { machine, inputs in try machine.start(inputs) }
        }
        if !adversary.nodes.isEmpty { schedule(adversary.interval, .adversaryTick) }
    }

    mutating func schedule(_ delay: Double, _ event: Event) {
        seq += 1
        queue.insert(Scheduled(time: now + delay, seq: seq, event: event))
    }

    func canTalk(_ a: Int, _ b: Int) -> Bool {
        guard let partition else { return true }
        return partition.contains { $0.contains(a) && $0.contains(b) }
    }

    mutating func send(_ message: ConsensusMessage, from: Int, to: Int) {
        guard nodes[to].alive, canTalk(from, to), !cutLinks.contains([from, to]), !rng.chance(loss) else { return }
        if adversary.nodes.isEmpty == false, !adversary.nodes.contains(from) { adversary.overhear(message) }
        let copies = rng.chance(duplication) ? 2 : 1
        for _ in 0..<copies {
            let delay = minDelay + Double(rng.next() % 1000) / 1000 * (maxDelay - minDelay)
            schedule(delay, .deliver(to: to, from: from, message))
        }
    }

    func nodes(of id: ValidatorID) -> [Int] { nodes.indices.filter { nodes[$0].key.publicKey == id } }

    /// Node i's clock.
    func clock(_ i: Int) -> Double { now / (clockSkew[i] ?? 1) }

    /// What node i's leader proposes now: a unique transaction, the scheduled validator
    /// change of its epoch, or (a Byzantine leader) one transaction over the block cap.
    func pool(_ i: Int) -> [[UInt8]] {
        var w = WireWriter()
        w.u64(UInt64(i))
        w.u64(UInt64(seq))
        var payload = now < idlePoolUntil ? [] : [w.bytes]
        if adversary.oversized && adversary.nodes.contains(i) {
            // A Byzantine leader ignores the block cap: voters must refuse it.
            payload = [[UInt8](repeating: 0xEE, count: nodes[i].core.config.maxBlockBytes + 1)]
        }
        let epoch = nodes[i].core.config.epoch
        if let set = scheduledChanges[epoch] {
            payload.append(Array("SET".utf8) + [UInt8(epoch)] + set.map(UInt8.init))
        }
        return payload
    }

    /// Tells every live node that transactions reached its pool, as the node's driver
    /// does when its DAG accepts some.
    mutating func poolGrew() {
        for i in nodes.indices where nodes[i].alive {
            step(i) { machine, inputs in try machine.poolGrew(inputs) }
        }
    }

    /// Runs one event on node i's machine, carries out its actions, and schedules its next tick.
    mutating func step(_ i: Int, _ event: (inout Machine, Machine.Inputs) throws -> [Machine.Action]) {
        guard nodes[i].alive else { return }
        let actions = machineStep(i, event)
        apply(i, actions)
        scheduleTick(i)
    }

    private mutating func machineStep(
        _ i: Int, _ event: (inout Machine, Machine.Inputs) throws -> [Machine.Action]
    )
        -> [Machine.Action]
    {
        let inputs = Machine.Inputs(now: clock(i), pool: pool(i), store: nodes[i].disk)
        do {
            return try event(&nodes[i].machine, inputs)
        } catch {
            violations.append("node \(i): the machine threw \(error)")
            return []
        }
    }

    mutating func scheduleTick(_ i: Int) {
        guard nodes[i].alive, let deadline = nodes[i].machine.nextDeadline else { return }
        // A hair past the deadline on the node's clock; never at the same instant again.
        let at = max(deadline * (clockSkew[i] ?? 1) + 1e-9, now + 1e-4)
        if let scheduled = nodes[i].tickAt, scheduled <= at { return }
        // The event's own time, computed as `schedule` computes it: the tick handler
        // matches on it exactly (rounding in `at - now + now` once left a node deaf).
        let delay = at - now
        nodes[i].tickAt = now + delay
        schedule(delay, .tick(node: i, incarnation: nodes[i].incarnation))
    }

    /// Carries out node i's machine actions in order, as the node's driver does: writes to
    /// the disk (a crash may tear them), messages to the network.
    mutating func apply(_ i: Int, _ actions: [Machine.Action]) {
        let me = nodes[i].key.publicKey
        var actions = actions
        if sendsBeforeWrites {
            let messages = actions.filter {
                switch $0 {
                case .send, .broadcast: return true
                default: return false
                }
            }
            actions = messages + actions.filter { action in !messages.contains { $0.isSame(action) } }
        }
        for action in actions {
            guard nodes[i].alive else { return }
            switch action {
            case .send(let to, var message, _):
                if printMessages {
                    print(String(format: "%8.3f", now), "node \(i) →", nodes(of: to), describe(message))
                }
                checkDurable(i, message)
                observe(message, by: me)
                if corruptServers.contains(i),
                    case .committedRange(let height, var blocks, let proof, let suffix) = message
                {
                    let b = blocks[0]
                    blocks[0] = Block(
                        epoch: b.epoch, round: b.round, author: b.author, payload: [[0xBA, 0xD0]], qc: b.qc)
                    message = .committedRange(height: height, blocks: blocks, proof: proof, suffix: suffix)
                }
                for j in nodes(of: to) where j != i { send(message, from: i, to: j) }
            case .broadcast(let message):
                if case .proposal(let p) = message {
                    if nodes[i].silentLeader { continue }
                    if p.lastRoundTC != nil { proposalsWithTC += 1 }
                }
                checkDurable(i, message)
                if printMessages { print(String(format: "%8.3f", now), "node \(i) → all", describe(message)) }
                observe(message, by: me)
                for j in nodes.indices where j != i { send(message, from: i, to: j) }
            case .toNeighbours(let message):
                for j in nodes.indices where j != i { send(message, from: i, to: j) }
            case .penalize, .discourage:
                catchUpPenalties += 1
            case .evidence(let text):
                evidence.append(text)
            case .persistSafety(let state):
                if tearsNow(i) { return }
                // A vote is observed when it is signed (persisted first): a leader's vote
                // to itself is never sent, and may be re-sent later.
                if let vote = state.lastVote, vote != nodes[i].disk.safety?.lastVote {
                    record(me, epoch: vote.voteInfo.epoch, round: vote.voteInfo.round, vote: vote.commitInfo)
                }
                nodes[i].disk.safety = state
                safetyWrites[i, default: 0] += 1
                if let crash = crashAfterSafetyWrite, crash.node == i, crash.count == safetyWrites[i] {
                    crashAfterSafetyWrite = nil
                    self.crash(i)
                    return
                }
            case .persistBlock(let block):
                if tearsNow(i) { return }
                nodes[i].disk.blocks[block.id] = block
            case .persistCommit(let commit):
                if tearsNow(i) { return }
                persist(i, commit)
            case .note:
                break
            case .halt(let reason):
                violations.append("node \(i) diverged: \(reason)")
            }
        }
    }

    func describe(_ message: ConsensusMessage) -> String {
        switch message {
        case .proposal(let p):
            return
                "proposal r\(p.block.round) qc r\(p.block.qc.round) tc \(p.lastRoundTC.map { "r\($0.round)" } ?? "-") bytes \(p.block.payloadBytes)"
        case .vote(let v): return "vote r\(v.voteInfo.round)"
        case .timeout(let t): return "timeout r\(t.info.round) hqc r\(t.info.highQC.round)"
        case .blockRequest: return "blockRequest"
        case .blockResponse(let b): return "blockResponse r\(b.round)"
        case .chainStatus(let h, _, _, _): return "status \(h)"
        case .getCommitted(let h, _): return "getCommitted \(h)"
        case .committedRange(let h, let b, _, _): return "range \(h)+\(b.count)"
        }
    }

    /// I4: what a node signs is on its disk before it leaves — a vote is the last vote
    /// recorded (or an older round's, re-sent), a timeout's round is covered by the
    /// recorded highest vote round, a proposal's round by the recorded last proposed round.
    mutating func checkDurable(_ i: Int, _ message: ConsensusMessage) {
        let me = nodes[i].key.publicKey
        guard !byzantine.contains(me) else { return }
        let safety = nodes[i].disk.safety
        func covered(_ epoch: Epoch, _ round: Round, _ recorded: (SafetyState) -> Round) -> Bool {
            guard let safety, safety.epoch == epoch else { return false }
            return recorded(safety) >= round
        }
        switch message {
        case .vote(let v) where v.sender == me:
            if safety?.lastVote != v && !covered(v.voteInfo.epoch, v.voteInfo.round + 1, \.highestVoteRound) {
                violations.append("node \(i)'s vote for round \(v.voteInfo.round) left before it was on disk")
            }
        case .timeout(let t) where t.info.sender == me:
            if !covered(t.info.epoch, t.info.round, \.highestVoteRound) {
                violations.append("node \(i)'s timeout for round \(t.info.round) left before it was on disk")
            }
        case .proposal(let p) where p.block.author == me:
            if !covered(p.block.epoch, p.block.round, \.lastProposedRound) {
                violations.append("node \(i)'s proposal for round \(p.block.round) left before it was on disk")
            }
        default:
            break
        }
    }

    /// Node i's disk records a commit; the oracles check it first.
    mutating func persist(_ i: Int, _ commit: Machine.Commit) {
        let blocks = commit.records.map(\.block)
        guard let last = commit.records.last else { return }
        checkCommit(
            i, blocks, commit.qc, epochChange: commit.epochChange?.proof, verifiedState: last.stateID,
            byCatchUp: commit.byCatchUp)
        for record in commit.records {
            nodes[i].disk.heights[record.block.id] = nodes[i].disk.records.count
            nodes[i].disk.records.append(record)
        }
        nodes[i].disk.state = commit.state
        if commit.byCatchUp { nodes[i].caughtUp += blocks.count }
        if let change = commit.epochChange {
            let next = change.next
            if let known = configs[next.epoch] {
                if known != next { violations.append("nodes disagree on epoch \(next.epoch)'s configuration") }
            } else {
                configs[next.epoch] = next
            }
            nodes[i].disk.epochProofs[last.block.id] = change.proof
            nodes[i].disk.config = next
            nodes[i].disk.safety = nil
            nodes[i].disk.blocks = [:]
            nodes[i].disk.committedRound = 0
        }
    }

    // MARK: Oracles

    /// Every kind of message seen, kept for the codec tests.
    var samples: [ConsensusMessage] = []
    var keepSamples = false

    mutating func observe(_ message: ConsensusMessage, by signer: ValidatorID) {
        if keepSamples && samples.count < 400 { samples.append(message) }
        switch message {
        case .vote(let v) where v.sender == signer:
            record(signer, epoch: v.voteInfo.epoch, round: v.voteInfo.round, vote: v.commitInfo)
        case .timeout(let t) where t.info.sender == signer:
            record(signer, epoch: t.info.epoch, round: t.info.round, vote: nil)
        default: break
        }
        trace(message)
    }

    /// I2: an honest signer's votes have strictly increasing rounds, across restarts;
    /// a timeout may share its round with the vote before it; never two different votes in a round.
    mutating func record(_ signer: ValidatorID, epoch: Epoch, round: Round, vote: LedgerCommitInfo?) {
        guard !byzantine.contains(signer) else { return }
        let key = SignerEpoch(signer: signer, epoch: epoch)
        let history = signed[key] ?? []
        if let vote {
            if let same = history.first(where: { $0.round == round && $0.vote != nil }) {
                if same.vote != vote { violations.append("\(signer.hex.prefix(8)) signed two votes in round \(round)") }
                return  // an identical re-sent vote is allowed
            }
            if let maxRound = history.map(\.round).max(), round <= maxRound {
                violations.append("\(signer.hex.prefix(8)) voted in round \(round) after signing round \(maxRound)")
            }
        } else if let maxVote = history.map(\.round).max(), round < maxVote {
            violations.append("\(signer.hex.prefix(8)) timed out in round \(round) after signing round \(maxVote)")
        }
        signed[key, default: []].append((round, vote))
    }

    /// I1 and I3: committed sequences are prefixes of one another, and every commit
    /// is justified by a valid 2-chain QC (directly, or through an epoch-change proof).
    mutating func checkCommit(
        _ i: Int, _ chain: [Block], _ qc: QuorumCert, epochChange: EpochChangeProof?, verifiedState: Hash32 = .zero,
        byCatchUp: Bool = false
    ) {
        guard let last = chain.last else { return }
        guard let epochConfig = configs[qc.commitInfo.epoch] else {
            violations.append("commit QC of unknown epoch \(qc.commitInfo.epoch)")
            return
        }
        if let epochChange {
            if let problem = epochChange.verify(ending: last, stateID: verifiedState, config: epochConfig) {
                violations.append("epoch change not proven: \(problem)")
            }
        } else if qc.voteInfo.parentID != last.id || qc.voteInfo.parentRound + 1 != qc.voteInfo.round
            || qc.commitInfo.commitStateID == nil
        {
            violations.append("commit not justified by a 2-chain QC")
        }
        let message = signingMessage(qc)
        let signers = Set(qc.signatures.map(\.signer))
        if signers.count != qc.signatures.count
            || epochConfig.validators.power(of: signers) < epochConfig.validators.quorumPower
            || !qc.signatures.allSatisfy({ $0.signer.isValidSignature($0.signature, for: message) })
        {
            violations.append("commit QC lacks a quorum of valid distinct signatures")
        }
        committedQCs.append(qc)
        for block in chain {
            let height = nodes[i].committed.count
            nodes[i].committed.append(block.id)
            nodes[i].disk.committedBlocks[block.id] = block
            nodes[i].disk.commitProofs[block.id] = qc
            nodes[i].disk.committedID = block.id
            nodes[i].disk.committedRound = block.round
            if height < canonical.count {
                if canonical[height] != block.id { forkDetected = true }
            } else {
                canonical.append(block.id)
            }
        }
        // Rounds start again in a new epoch: the lag is measured within one.
        if !byCatchUp, epochChange == nil, nodes[i].core.config.epoch == last.epoch {
            commitLag.append(nodes[i].core.currentRound - min(last.round, nodes[i].core.currentRound))
        }
        for id in nodes[i].disk.blocks.keys where (nodes[i].disk.blocks[id]?.round ?? 0) <= last.round {
            nodes[i].disk.blocks[id] = nil
        }
    }

    func signingMessage(_ qc: QuorumCert) -> [UInt8] {
        var body = WireWriter()
        body.u64(qc.commitInfo.epoch)
        body.u64(qc.commitInfo.round)
        if let s = qc.commitInfo.commitStateID {
            body.u8(1)
            body.fixed(s.bytes)
        } else {
            body.u8(0)
        }
        body.fixed(qc.commitInfo.voteInfoHash.bytes)
        var w = WireWriter()
        w.string16("sidenode-consensus/vote")
        w.string16(config.chainID)
        w.u64(qc.commitInfo.epoch)
        w.fixed(body.bytes)
        return w.bytes
    }

    mutating func trace(_ message: ConsensusMessage) {
        var w = WireWriter()
        w.u64(UInt64(now * 1_000_000))
        switch message {
        case .proposal(let p): w.fixed(p.block.id.bytes)
        case .vote(let v): w.fixed(v.commitInfo.voteInfoHash.bytes)
        case .timeout(let t): w.u64(t.info.round)
        case .blockRequest(let id): w.fixed(id.bytes)
        case .blockResponse(let b): w.fixed(b.id.bytes)
        case .chainStatus(let height, _, _, _), .getCommitted(let height, _), .committedRange(let height, _, _, _):
            w.u64(height)
        }
        traceHasher = BLAKE2b.hash256(traceHasher + w.bytes)
    }

    // MARK: Faults

    /// Counts a write by node i; true (and the node crashed) when it is the torn one.
    mutating func tearsNow(_ i: Int) -> Bool {
        writes[i, default: 0] += 1
        guard let torn = tornWrite, torn.node == i, torn.count == writes[i] else { return false }
        tornWrite = nil
        crash(i)
        return true
    }

    mutating func crash(_ i: Int) {
        nodes[i].alive = false
        nodes[i].incarnation += 1
        nodes[i].tickAt = nil
    }

    /// Restarts a node from its disk only.
    mutating func restart(_ i: Int) {
        nodes[i].machine = Self.machine(
            key: nodes[i].key, disk: nodes[i].disk, execution: execution(for: i), options: options, now: clock(i))
        nodes[i].alive = true
        step(i) { machine, inputs in try machine.start(inputs) }
    }

    // MARK: Running

    mutating func run(until end: Double) {
        while let next = queue.min, next.time <= end {
            let item = queue.removeMin()
            now = item.time
            switch item.event {
            case .deliver(let to, let from, let message):
                deliver(message, to: to, transport: from, flooded: false)
            case .inject(let to, let transport, let message, let flooded):
                deliver(message, to: to, transport: transport, flooded: flooded)
            case .adversaryTick:
                adversaryTick()
                schedule(adversary.interval, .adversaryTick)
            case .tick(let node, let incarnation):
                // Only the node's pending tick runs (an earlier one may have replaced this one).
                guard nodes[node].alive, nodes[node].incarnation == incarnation, let at = nodes[node].tickAt, at <= now
                else { continue }
                nodes[node].tickAt = nil
                step(node) { machine, inputs in try machine.tick(inputs) }
            }
        }
        now = end
    }

    /// What the node does with a consensus message from the network: the machine's
    /// provenance check decides whom it is from (the node charges a forgery to the peer).
    mutating func deliver(_ message: ConsensusMessage, to: Int, transport from: Int, flooded: Bool) {
        guard nodes[to].alive else { return }
        if case .getCommitted = message, adversary.refuseToServe, adversary.nodes.contains(to) { return }
        let peer = flooded ? nil : nodes[from].key.publicKey
        var verdict = ConsensusCore.Provenance.stale
        step(to) { machine, inputs in
            let (judged, actions) = try machine.received(message, directFrom: peer, inputs)
            verdict = judged
            return actions
        }
        if case .forged = verdict { forgedRefused += 1 }
    }

    var honestIndices: [Int] { nodes.indices.filter { !byzantine.contains(nodes[$0].key.publicKey) } }
    func committedCount(_ i: Int) -> Int { nodes[i].committed.count }
    var minHonestCommits: Int { honestIndices.filter { nodes[$0].alive }.map { nodes[$0].committed.count }.min() ?? 0 }

    /// The QC that committed node i's committed tip (what its chain status carries).
    func tipProof(_ i: Int) -> QuorumCert? { nodes[i].disk.records.last?.commitQC }
}

/// The simulated ledger behind a state id: a hash chain of the payloads, how far into
/// its epoch it is, and the epoch's validators (node indices). A payload transaction
/// "SET" || epoch || indices changes the set (in that epoch only) and ends the epoch, as
/// a quorum-approved validator change does in the node; `epochLength` blocks end it too.
struct ModelLedger: Sendable, Equatable {
    var id: Hash32
    var epoch: Epoch
    var blocks: Int
    var validators: [Int]
}

/// The model ledger as the chain machine's application.
struct ModelExecution: BlockExecution {
    let chainID: String
    let keys: [ValidatorID]
    let leaderElection: LeaderElection
    let epochLength: Int
    /// Computes other state ids than an honest ledger.
    let divergent: Bool

    func execute(_ block: Block, on state: ModelLedger, pool: [[UInt8]]) -> ExecutedBlock<ModelLedger> {
        var info = state
        var bytes = state.id.bytes
        var next: [Int]?
        for tx in block.payload {
            bytes += BLAKE2b.hash256(tx)
            if tx.count > 4, tx.prefix(3).elementsEqual("SET".utf8), Epoch(tx[3]) == info.epoch {
                next = tx.dropFirst(4).map(Int.init).filter { $0 < keys.count }
            }
        }
        info.blocks += 1
        let ends = next != nil || info.blocks >= epochLength
        if ends {
            info = ModelLedger(id: info.id, epoch: info.epoch + 1, blocks: 0, validators: next ?? info.validators)
        }
        bytes.append(ends ? 1 : 0)
        if divergent { bytes.append(0xD1) }
        info.id = Hash32.of(bytes)
        return ExecutedBlock(state: info, stateID: info.id, endsEpoch: ends, failed: 0)
    }

    func nextEpochConfig(after last: Block, state: ModelLedger, stateID: Hash32) -> ConsensusConfig {
        var next = ConsensusConfig(
            chainID: chainID, epoch: state.epoch,
            validators: ValidatorSet(state.validators.map { Validator(id: keys[$0]) }),
            genesisBlockID: last.id, genesisStateID: stateID)
        next.leaderElection = leaderElection
        return next
    }

    func payload(
        on parent: ModelLedger, committed: ModelLedger, pool: [[UInt8]], budget: Int, maxCount: Int
    )
        -> [[UInt8]]
    {
        pool
    }
}

extension ChainMachine.Action {
    /// The same action (case and message), for reordering in the durability control.
    func isSame(_ other: Self) -> Bool {
        switch (self, other) {
        case (.send(let a, let m, _), .send(let b, let n, _)): return a == b && m == n
        case (.broadcast(let m), .broadcast(let n)): return m == n
        default: return false
        }
    }
}
