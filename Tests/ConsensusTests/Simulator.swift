import Consensus
import HeapModule
import NodeCrypto
import TestSupport
import Wire

typealias SimRNG = SeededRandom

/// A seeded simulation of N consensus cores in one process: virtual clock, a network
/// with delay, loss, duplication and partitions, and a disk per node that keeps what
/// was persisted (a crash loses everything else). Oracles run on every commit and
/// every signed message: agreement, per-signer vote monotonicity across restarts,
/// and commit justification.
struct Simulator {
    struct Disk {
        var safety: SafetyState?
        var blocks: [Hash32: Block] = [:]
        var committedID: Hash32
        var committedRound: Round = 0
        var committedState: Hash32
        /// The committed chain, as the node's ledger store would keep it.
        var committedBlocks: [Hash32: Block] = [:]
        /// The QC that committed each block (what a catch-up range is proven by).
        var commitProofs: [Hash32: QuorumCert] = [:]
        /// The current epoch's configuration, and the proofs of the epochs that ended
        /// (by their last block).
        var config: ConsensusConfig
        var epochProofs: [Hash32: EpochChangeProof] = [:]
    }

    /// The simulated ledger behind a state id: how far into its epoch it is, and the
    /// epoch's validators (node indices). A payload transaction "SET" || epoch ||
    /// indices changes the set (in that epoch only) and ends the epoch, as a quorum-
    /// approved validator change does in the node; `epochLength` blocks end it too.
    struct EpochInfo {
        var epoch: Epoch
        var blocks: Int
        var validators: [Int]
    }

    struct Node {
        let key: Ed25519.PrivateKey
        var core: ConsensusCore
        var disk: Disk
        var alive = true
        var incarnation = 0
        /// Committed block ids in order.
        var committed: [Hash32] = []
        var silentLeader = false
        var catchUp = CatchUp()
        /// Blocks applied through catch-up ranges.
        var caughtUp = 0
        /// Next-epoch messages that arrived before this node's epoch ended.
        var future = NextEpochBuffer()
    }

    enum Event {
        case deliver(to: Int, from: Int, ConsensusMessage)
        /// A round timer of the node's core in `epoch` (rounds start again each epoch).
        case timer(node: Int, round: Round, incarnation: Int, epoch: Epoch)
        /// Catch-up: report the committed height to everyone, and retry slow requests.
        case status(node: Int, incarnation: Int)
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
    /// Run the catch-up protocol (the node driver's part of it) alongside consensus.
    var catchUpEnabled = false
    var catchUpPenalties = 0
    /// Nodes that serve tampered catch-up ranges (a transaction swapped in the first block).
    var corruptServers: Set<Int> = []
    // Epochs.
    var epochLength = Int.max
    var ledger: [Hash32: EpochInfo] = [:]
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
    /// Timer speed per node: a round timer of `after` seconds fires after `after × skew`.
    var clockSkew: [Int: Double] = [:]
    /// Links cut in one direction only: [from, to].
    var cutLinks: Set<[Int]> = []

    /// `count` validators, and `fullNodes` more nodes that follow without signing (they
    /// can become validators by an epoch change).
    init(
        seed: UInt64, validators count: Int, fullNodes: Int = 0, twins: [Int] = [],
        leaderElection: LeaderElection = .roundRobin, powers: [UInt64]? = nil
    ) {
        rng = SimRNG(state: seed)
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
        ledger[genesisState] = EpochInfo(epoch: config.epoch, blocks: 0, validators: Array(0..<count))
        for key in privateKeys + twins.map({ privateKeys[$0] }) {
            let disk = Disk(committedID: genesisID, committedState: genesisState, config: config)
            nodes.append(Node(key: key, core: ConsensusCore(config: config, key: key), disk: disk))
        }
        for t in twins { byzantine.insert(privateKeys[t].publicKey) }
    }

    var validatorCount: Int { config.validators.validators.count }

    mutating func start() {
        for i in nodes.indices {
            nodes[i].catchUp.enteredEpoch(config.epoch)
            apply(i, nodes[i].core.start())
            if catchUpEnabled { schedule(1, .status(node: i, incarnation: nodes[i].incarnation)) }
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

    mutating func apply(_ i: Int, _ actions: [ConsensusCore.Action]) {
        var pending = actions
        while !pending.isEmpty {
            let action = pending.removeFirst()
            guard nodes[i].alive else { return }
            let me = nodes[i].key.publicKey
            switch action {
            case .send(let to, let message):
                observe(message, by: me)
                for j in nodes(of: to) where j != i { send(message, from: i, to: j) }
            case .broadcast(let message):
                if case .proposal(let p) = message {
                    if nodes[i].silentLeader { continue }
                    if p.lastRoundTC != nil { proposalsWithTC += 1 }
                }
                observe(message, by: me)
                for j in nodes.indices where j != i { send(message, from: i, to: j) }
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
            case .scheduleTimeout(let round, let after):
                schedule(
                    after * (clockSkew[i] ?? 1),
                    .timer(node: i, round: round, incarnation: nodes[i].incarnation, epoch: nodes[i].core.config.epoch))
            case .execute(let block, let parentState):
                let (state, endsEpoch) = execute(block, on: parentState)
                pending += nodes[i].core.blockExecuted(id: block.id, stateID: state, endsEpoch: endsEpoch)
            case .requestPayload(let round):
                var payload = [(0..<16).map { _ in UInt8(truncatingIfNeeded: rng.next()) }]
                if adversary.oversized && adversary.nodes.contains(i) {
                    // A Byzantine leader ignores the block cap: voters must refuse it.
                    payload = [[UInt8](repeating: 0xEE, count: nodes[i].core.config.maxBlockBytes + 1)]
                }
                let epoch = nodes[i].core.config.epoch
                if let set = scheduledChanges[epoch] {
                    payload.append(Array("SET".utf8) + [UInt8(epoch)] + set.map(UInt8.init))
                }
                pending += nodes[i].core.proposePayload(round: round, payload: payload)
            case .commit(let chain, let qc, let epochChange):
                if tearsNow(i) { return }
                checkCommit(i, chain, qc, epochChange: epochChange)
                if epochChange != nil, let last = chain.last {
                    // The old core is finished; what it still asked for is dropped.
                    enterNextEpoch(i, after: last, state: nodes[i].disk.committedState)
                    pending = nodes[i].core.start() + replayFuture(i)
                }
            case .fetchBlock(let id, let from):
                for j in nodes(of: from) where j != i { send(.blockRequest(id), from: i, to: j) }
            case .evidence(let text):
                evidence.append(text)
            case .diverged(let reason):
                violations.append("node \(i) diverged: \(reason)")
            case .serveCommittedBlock(let id, let to):
                if let block = nodes[i].disk.committedBlocks[id] {
                    for j in self.nodes(of: to) where j != i { send(.blockResponse(block), from: i, to: j) }
                }
            }
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

    // MARK: Epochs

    /// The simulated ledger: a hash chain of the payload, plus the epoch bookkeeping.
    mutating func execute(_ block: Block, on parentState: Hash32) -> (Hash32, Bool) {
        var info = ledger[parentState]!
        var bytes = parentState.bytes
        var next: [Int]?
        for tx in block.payload {
            bytes += BLAKE2b.hash256(tx)
            if tx.count > 4, tx.prefix(3).elementsEqual("SET".utf8), Epoch(tx[3]) == info.epoch {
                next = tx.dropFirst(4).map(Int.init)
            }
        }
        info.blocks += 1
        let ends = next != nil || info.blocks >= epochLength
        if ends { info = EpochInfo(epoch: info.epoch + 1, blocks: 0, validators: next ?? info.validators) }
        bytes.append(ends ? 1 : 0)
        let state = Hash32.of(bytes)
        ledger[state] = info
        return (state, ends)
    }

    /// Node i committed the last block of its epoch (`last`, with state `state`): a
    /// fresh core for the next epoch, whose validators the state names.
    mutating func enterNextEpoch(_ i: Int, after last: Block, state: Hash32) {
        let info = ledger[state]!
        var next = ConsensusConfig(
            chainID: config.chainID, epoch: info.epoch,
            validators: ValidatorSet(info.validators.map { Validator(id: keys[$0].publicKey) }),
            genesisBlockID: last.id, genesisStateID: state)
        next.leaderElection = config.leaderElection
        if let known = configs[next.epoch] {
            if known != next { violations.append("nodes disagree on epoch \(next.epoch)'s configuration") }
        } else {
            configs[next.epoch] = next
        }
        nodes[i].core = ConsensusCore(config: next, key: nodes[i].key)
        nodes[i].disk.config = next
        nodes[i].disk.safety = nil
        nodes[i].disk.blocks = [:]
        nodes[i].disk.committedRound = 0
        nodes[i].catchUp.enteredEpoch(next.epoch)
        // Tell the others at once (as the node does): those that missed the QC that ended
        // the epoch fetch the epoch's last range instead of waiting for a round timeout.
        if catchUpEnabled {
            let status = ConsensusMessage.chainStatus(
                height: UInt64(nodes[i].committed.count), round: 0, epoch: next.epoch, proof: tipProof(i))
            for j in nodes.indices where j != i { send(status, from: i, to: j) }
        }
    }

    mutating func replayFuture(_ i: Int) -> [ConsensusCore.Action] {
        let epoch = nodes[i].core.config.epoch
        let ready = nodes[i].future.take(entering: epoch)
        return ready.flatMap { nodes[i].core.receive($0.0, from: $0.1) }
    }

    /// I1 and I3: committed sequences are prefixes of one another, and every commit
    /// is justified by a valid 2-chain QC (directly, or through an epoch-change proof).
    mutating func checkCommit(
        _ i: Int, _ chain: [Block], _ qc: QuorumCert, epochChange: EpochChangeProof? = nil, verifiedState: Hash32? = nil
    ) {
        guard let last = chain.last else { return }
        guard let epochConfig = configs[qc.commitInfo.epoch] else {
            violations.append("commit QC of unknown epoch \(qc.commitInfo.epoch)")
            return
        }
        if let epochChange {
            let state = verifiedState ?? nodes[i].core.stateID(of: last.id) ?? .zero
            if let problem = epochChange.verify(ending: last, stateID: state, config: epochConfig) {
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
            if let epochChange, block.id == last.id { nodes[i].disk.epochProofs[block.id] = epochChange }
            nodes[i].disk.committedID = block.id
            nodes[i].disk.committedRound = block.round
            if height < canonical.count {
                if canonical[height] != block.id { forkDetected = true }
            } else {
                canonical.append(block.id)
            }
        }
        if let verifiedState {
            nodes[i].disk.committedState = verifiedState
        } else {
            nodes[i].disk.committedState = nodes[i].core.stateID(of: last.id) ?? nodes[i].disk.committedState
            commitLag.append(nodes[i].core.currentRound - last.round)
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
    }

    /// Restarts a node from its disk only.
    mutating func restart(_ i: Int) {
        let disk = nodes[i].disk
        let recovered = RecoveredState(
            safety: disk.safety ?? SafetyState(epoch: disk.config.epoch),
            blocks: Array(disk.blocks.values), committedBlockID: disk.committedID, committedRound: disk.committedRound,
            committedStateID: disk.committedState,
            recentCommitted: nodes[i].committed.suffix(200).compactMap { disk.committedBlocks[$0] }.filter {
                $0.epoch == disk.config.epoch
            })
        nodes[i].core = ConsensusCore(config: disk.config, key: nodes[i].key, recovered: recovered)
        nodes[i].catchUp = CatchUp()
        nodes[i].catchUp.enteredEpoch(disk.config.epoch)
        nodes[i].future = NextEpochBuffer()
        nodes[i].alive = true
        apply(i, nodes[i].core.start())
        if catchUpEnabled { schedule(0.1, .status(node: i, incarnation: nodes[i].incarnation)) }
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
            case .status(let node, let incarnation):
                guard nodes[node].alive, nodes[node].incarnation == incarnation else { continue }
                let status = ConsensusMessage.chainStatus(
                    height: UInt64(nodes[node].committed.count), round: nodes[node].disk.committedRound,
                    epoch: nodes[node].core.config.epoch, proof: tipProof(node))
                for j in nodes.indices where j != node { send(status, from: node, to: j) }
                let height = UInt64(nodes[node].committed.count)
                drive(node) { [now] in $0.tick(localHeight: height, now: now) }
                schedule(1, .status(node: node, incarnation: incarnation))
            case .timer(let node, let round, let incarnation, let epoch):
                guard nodes[node].alive, nodes[node].incarnation == incarnation,
                    nodes[node].core.config.epoch == epoch
                else { continue }
                apply(node, nodes[node].core.timeoutFired(round: round))
            }
        }
        now = end
    }

    /// What the node does with a consensus message from the network: the shipped
    /// provenance check decides whom it is from, then the core takes it.
    mutating func deliver(_ message: ConsensusMessage, to: Int, transport from: Int, flooded: Bool) {
        guard nodes[to].alive else { return }
        switch message {
        case .chainStatus, .getCommitted, .committedRange:
            catchUpReceived(to, from: from, message)
            return
        default: break
        }
        // While catching up, live traffic waits (as in the node).
        if nodes[to].catchUp.syncing { return }
        switch nodes[to].core.provenance(of: message, directFrom: flooded ? nil : nodes[from].key.publicKey) {
        case .accept(let sender):
            apply(to, nodes[to].core.receive(message, from: sender))
        case .later(let sender):
            // The next epoch's messages wait for this node to enter it (as in the node).
            nodes[to].future.offer(message, from: sender, current: nodes[to].core.config.epoch)
        case .stale:
            break
        case .forged:
            forgedRefused += 1
        }
    }

    var honestIndices: [Int] { nodes.indices.filter { !byzantine.contains(nodes[$0].key.publicKey) } }
    func committedCount(_ i: Int) -> Int { nodes[i].committed.count }
    var minHonestCommits: Int { honestIndices.filter { nodes[$0].alive }.map { nodes[$0].committed.count }.min() ?? 0 }

    // MARK: Catch-up (what ConsensusHost does in the node)

    /// The QC that committed node i's committed tip (what its chain status carries).
    func tipProof(_ i: Int) -> QuorumCert? {
        nodes[i].committed.last.flatMap { nodes[i].disk.commitProofs[$0] }
    }

    mutating func catchUpReceived(_ i: Int, from j: Int, _ message: ConsensusMessage) {
        let peer = nodes[j].key.publicKey
        let height = UInt64(nodes[i].committed.count)
        switch message {
        case .chainStatus(let reported, _, let epoch, let proof):
            let (round, config) = (nodes[i].core.committedRound, nodes[i].core.config)
            drive(i) { [now] in
                $0.statusReceived(
                    from: peer, height: reported, epoch: epoch, proof: proof, localHeight: height, localRound: round,
                    config: config, now: now)
            }
        case .getCommitted(let from, let count):
            if adversary.refuseToServe && adversary.nodes.contains(i) { return }
            let ids = nodes[i].committed
            guard from >= 1, from <= UInt64(ids.count) else { return }
            var blocks: [Block] = []
            var cut: (Int, QuorumCert, [Block])?
            for id in ids[Int(from - 1)..<min(ids.count, Int(from - 1) + Int(count))] {
                guard let block = nodes[i].disk.committedBlocks[id], let proof = nodes[i].disk.commitProofs[id] else {
                    break
                }
                blocks.append(block)
                if let change = nodes[i].disk.epochProofs[id] {  // a range stops at an epoch's end
                    cut = (blocks.count, change.commitQC, change.suffix)
                    break
                }
                if proof.voteInfo.parentID == block.id { cut = (blocks.count, proof, []) }
            }
            guard let (n, proof, suffix) = cut else { return }
            var served = Array(blocks.prefix(n))
            if corruptServers.contains(i) {
                let b = served[0]
                served[0] = Block(epoch: b.epoch, round: b.round, author: b.author, payload: [[0xBA, 0xD0]], qc: b.qc)
            }
            send(.committedRange(height: from, blocks: served, proof: proof, suffix: suffix), from: i, to: j)
        case .committedRange(let from, let blocks, let proof, let suffix):
            guard nodes[i].catchUp.isAwaited(from: peer, height: from) else { return }
            let probing = !nodes[i].catchUp.syncing
            guard from == height + 1 else {
                drive(i) { [now] in $0.superseded(localHeight: height, now: now) }
                return
            }
            var state = nodes[i].disk.committedState
            var endsEpoch = false
            let problem = CatchUp.verifyRange(
                blocks, proof: proof, suffix: suffix, after: nodes[i].disk.committedID, config: nodes[i].core.config
            ) {
                let (next, ends) = execute($0, on: state)
                state = next
                endsEpoch = ends
                return (next, ends)
            }
            if let problem {
                drive(i) { [now] in $0.failed(reason: problem, localHeight: height, now: now) }
                return
            }
            // Recorded like a commit, so the agreement oracle checks these blocks too.
            checkCommit(
                i, blocks, proof, epochChange: endsEpoch ? EpochChangeProof(suffix: suffix, commitQC: proof) : nil,
                verifiedState: state)
            nodes[i].caughtUp += blocks.count
            let last = blocks[blocks.count - 1]
            if endsEpoch {
                enterNextEpoch(i, after: last, state: state)
            } else {
                let config = nodes[i].core.config
                nodes[i].core = ConsensusCore(
                    config: config, key: nodes[i].key,
                    recovered: RecoveredState(
                        safety: nodes[i].disk.safety ?? SafetyState(epoch: config.epoch), blocks: [],
                        committedBlockID: last.id, committedRound: last.round, committedStateID: state,
                        recentCommitted: nodes[i].committed.suffix(200).compactMap { nodes[i].disk.committedBlocks[$0] }
                            .filter { $0.epoch == config.epoch }))
            }
            let newHeight = UInt64(nodes[i].committed.count)
            drive(i) { [now] in $0.applied(localHeight: newHeight, now: now) }
            // A probe's range replaced the core while consensus went on: start it (as the node does).
            if probing && !nodes[i].catchUp.syncing { apply(i, nodes[i].core.start() + replayFuture(i)) }
        default:
            break
        }
    }

    /// Runs one catch-up step for node i, sends what it asks for, and restarts the
    /// core's rounds when catch-up has just finished.
    mutating func drive(_ i: Int, _ step: (inout CatchUp) -> [CatchUp.Action]) {
        let wasSyncing = nodes[i].catchUp.syncing
        let actions = step(&nodes[i].catchUp)
        for action in actions {
            switch action {
            case .request(let peer, let height, let count):
                for j in nodes(of: peer) where j != i {
                    send(.getCommitted(height: height, count: count), from: i, to: j)
                }
            case .penalize, .discourage:
                catchUpPenalties += 1
            }
        }
        if wasSyncing && !nodes[i].catchUp.syncing { apply(i, nodes[i].core.start() + replayFuture(i)) }
    }
}
