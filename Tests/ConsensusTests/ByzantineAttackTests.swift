import NodeCrypto
import Testing
import Wire

@testable import Consensus

/// Issue 14 §1: a vote from the network that claims the receiving validator's own id
/// must be verified like any other. Before the fix the core skipped the signature check
/// for `sender == me`, so a stranger's forged "own" vote took the place of the leader's
/// real vote: the real one was dropped as a duplicate, and with one validator down no
/// QC could form again.
@Suite("Byzantine attacks on the consensus core (issue 14): each test fails without its fix")
struct ByzantineAttackTests {
    /// Four cores wired together synchronously; `down` never receives nor sends.
    struct Net {
        var cores: [ConsensusCore]
        var queue: [(to: Int, message: ConsensusMessage, from: ValidatorID)] = []
        var down: Set<Int>
        var qcs: [QuorumCert] = []
        var evidence: [String] = []
        var committed = 0
        var divergences: [Int: String] = [:]
        /// A validator whose execution differs from everyone else's.
        var badExecutor: Int?
        /// Called for every proposal broadcast: what the adversary injects first.
        var adversary: (ProposalMsg, Net) -> [(to: Int, message: ConsensusMessage, from: ValidatorID)]

        init(
            keys: [Ed25519.PrivateKey], down: Set<Int>,
            adversary: @escaping (ProposalMsg, Net) -> [(to: Int, message: ConsensusMessage, from: ValidatorID)]
        ) {
            let config = ConsensusConfig(
                chainID: "forged", epoch: 1, validators: ValidatorSet(keys.map { Validator(id: $0.publicKey) }),
                genesisBlockID: .zero, genesisStateID: .zero)
            cores = keys.map { ConsensusCore(config: config, key: $0) }
            self.down = down
            self.adversary = adversary
        }

        func index(of id: ValidatorID) -> Int { cores.firstIndex { $0.me == id }! }

        static func state(after block: Block, on parent: Hash32) -> Hash32 { Hash32.of(parent.bytes + block.id.bytes) }

        mutating func apply(_ i: Int, _ actions: [ConsensusCore.Action]) {
            var pending = actions
            while !pending.isEmpty {
                let action = pending.removeFirst()
                switch action {
                case .send(let to, let message):
                    queue.append((index(of: to), message, cores[i].me))
                case .broadcast(let message):
                    if case .proposal(let p) = message { queue = adversary(p, self) + queue }
                    for j in cores.indices where j != i { queue.append((j, message, cores[i].me)) }
                case .execute(let block, let parent):
                    let state = Self.state(after: block, on: i == badExecutor ? Hash32.of(parent.bytes) : parent)
                    pending += cores[i].blockExecuted(id: block.id, stateID: state)
                case .requestPayload(let round):
                    pending += cores[i].proposePayload(round: round, payload: [])
                case .commit(let blocks, let qc, _):
                    qcs.append(qc)
                    if i == 0 { committed += blocks.count }
                case .evidence(let text):
                    evidence.append(text)
                case .diverged(let reason):
                    divergences[i] = reason
                case .fetchBlock, .serveCommittedBlock, .persistSafety, .persistBlock, .scheduleTimeout:
                    break
                }
            }
        }

        /// Delivers up to `steps` messages.
        mutating func run(steps: Int) {
            for i in cores.indices where !down.contains(i) { apply(i, cores[i].start()) }
            var n = 0
            while n < steps {
                if queue.isEmpty {
                    // Quiet: every live validator's round timer fires (a down leader's round).
                    for i in cores.indices where !down.contains(i) {
                        apply(i, cores[i].timeoutFired(round: cores[i].currentRound))
                    }
                    if queue.isEmpty { break }
                }
                let (to, message, from) = queue.removeFirst()
                n += 1
                guard !down.contains(to) else { continue }
                apply(to, cores[to].receive(message, from: from))
            }
        }
    }

    let keys = (0..<4).map { _ in Ed25519.PrivateKey() }

    /// The adversary: for each proposal of round r, a vote "from" the leader of round r+1,
    /// sent to that leader before anything else, with the honest commit info (any
    /// observer can compute it) and a garbage signature.
    static func forgeOwnVote(_ p: ProposalMsg, _ net: Net) -> [(to: Int, message: ConsensusMessage, from: ValidatorID)]
    {
        let block = p.block
        let nextLeader = net.cores[0].leader(of: block.round + 1)
        guard let parentState = net.cores.lazy.compactMap({ $0.stateID(of: block.parentID) }).first else { return [] }
        let info = VoteInfo(
            blockID: block.id, round: block.round, parentID: block.parentID, parentRound: block.qc.round,
            execStateID: Net.state(after: block, on: parentState), epoch: 1)
        let commit = LedgerCommitInfo(
            epoch: 1, round: block.round,
            commitStateID: block.qc.round + 1 == block.round ? block.qc.voteInfo.execStateID : nil,
            voteInfoHash: info.hash)
        let vote = VoteMsg(
            voteInfo: info, commitInfo: commit, highCommitQC: p.highCommitQC, sender: nextLeader,
            signature: try! Ed25519.Signature(rawRepresentation: [UInt8](repeating: 0xAB, count: 64)))
        return [(net.index(of: nextLeader), .vote(vote), nextLeader)]
    }

    @Test("a forged vote claiming the next leader's own id neither displaces its real vote nor enters a QC")
    func forgedOwnVote() {
        // Validator 3 is down: every QC needs the leader's own vote.
        let down: Set<Int> = [3]
        var honest = Net(keys: keys, down: down) { _, _ in [] }
        honest.run(steps: 3_000)
        #expect(honest.committed >= 10, "control: without the forgery the three live validators commit")

        var attacked = Net(keys: keys, down: down, adversary: Self.forgeOwnVote)
        attacked.run(steps: 3_000)
        #expect(attacked.committed >= 10, "the chain must keep committing under forged own votes")
        let config = attacked.cores[0].config
        #expect(attacked.qcs.allSatisfy { config.isValid($0) }, "every QC formed carries only valid signatures")
        #expect(
            !attacked.evidence.contains { $0.hasPrefix("two votes") },
            "a forged vote is not evidence against the validator it names: \(attacked.evidence.prefix(2))")
    }

    @Test("a forged vote from the network with every validator up is dropped and never counted")
    func forgedVoteAllUp() {
        var attacked = Net(keys: keys, down: [], adversary: Self.forgeOwnVote)
        attacked.run(steps: 3_000)
        let config = attacked.cores[0].config
        #expect(attacked.committed >= 10)
        #expect(attacked.qcs.allSatisfy { config.isValid($0) })
        // Every QC that round leaders formed includes the leader's own real signature.
        for qc in attacked.qcs where !qc.isGenesis {
            let leader = attacked.cores[0].leader(of: qc.round + 1)
            #expect(qc.signatures.contains { $0.signer == leader }, "the leader's own vote is in its QC")
        }
    }

    @Test("provenance: who a network message counts as from, and what is charged to the peer that delivered it")
    func provenance() throws {
        let config = ConsensusConfig(
            chainID: "forged", epoch: 2, validators: ValidatorSet(keys.map { Validator(id: $0.publicKey) }),
            genesisBlockID: .zero, genesisStateID: .zero)
        let core = ConsensusCore(config: config, key: keys[0])
        let domain = SigningDomain(chainID: "forged")
        func vote(by key: Ed25519.PrivateKey, epoch: UInt64 = 2, garbage: Bool = false) -> ConsensusMessage {
            let info = VoteInfo(
                blockID: Hash32.of([7]), round: 5, parentID: .zero, parentRound: 4, execStateID: .zero, epoch: epoch)
            let commit = LedgerCommitInfo(epoch: epoch, round: 5, commitStateID: nil, voteInfoHash: info.hash)
            let signature =
                garbage
                ? try! Ed25519.Signature(rawRepresentation: [UInt8](repeating: 1, count: 64))
                : key.signature(for: domain.message("vote", epoch: epoch, commit.bytes))
            return .vote(
                VoteMsg(
                    voteInfo: info, commitInfo: commit,
                    highCommitQC: QuorumCert.genesis(epoch: epoch, blockID: .zero, stateID: .zero),
                    sender: key.publicKey, signature: signature))
        }
        let me = keys[0].publicKey
        let other = keys[1].publicKey
        #expect(core.provenance(of: vote(by: keys[1]), directFrom: other) == .accept(sender: other))
        #expect(core.provenance(of: vote(by: keys[1]), directFrom: nil) == .accept(sender: other), "flooded")
        func forged(_ p: ConsensusCore.Provenance) -> Bool {
            if case .forged = p { return true }
            return false
        }
        #expect(
            forged(core.provenance(of: vote(by: keys[0], garbage: true), directFrom: other)), "claims my id, direct")
        #expect(forged(core.provenance(of: vote(by: keys[0], garbage: true), directFrom: me)), "claims my id from 'me'")
        #expect(forged(core.provenance(of: vote(by: keys[0], garbage: true), directFrom: nil)), "claims my id, flooded")
        #expect(forged(core.provenance(of: vote(by: keys[1]), directFrom: keys[2].publicKey)), "relayed direct")
        #expect(forged(core.provenance(of: vote(by: Ed25519.PrivateKey()), directFrom: nil)), "not a validator")
        #expect(core.provenance(of: vote(by: keys[1], epoch: 3), directFrom: nil) == .later(sender: other))
        #expect(core.provenance(of: vote(by: keys[1], epoch: 1), directFrom: nil) == .stale)
        #expect(core.provenance(of: .blockRequest(.zero), directFrom: other) == .accept(sender: other))
        #expect(
            forged(core.provenance(of: .blockRequest(.zero), directFrom: nil)), "unsigned messages are never flooded")
        _ = me
    }

    /// Issue 14 §8: a commit QC's state id is compared with this node's own execution.
    @Test("a node whose execution differs from the certified state halts with both ids instead of committing")
    func divergedExecutionHalts() {
        var net = Net(keys: keys, down: []) { _, _ in [] }
        net.badExecutor = 2
        net.run(steps: 3_000)
        #expect(net.committed >= 10, "the three others commit")
        let reason = net.divergences[2]
        #expect(reason?.contains("this node's execution gives") == true, "node 2 halts: \(net.divergences)")
        #expect(net.divergences.count == 1)
        #expect(net.cores[2].diverged != nil)
    }

    /// Issue 14 §8: the 2-chain rule needs consecutive rounds, checked by the committer
    /// and not only trusted to the voters.
    @Test("a quorum-signed QC over non-consecutive rounds commits nothing")
    func nonConsecutiveQCDoesNotCommit() throws {
        var net = Net(keys: keys, down: []) { _, _ in [] }
        net.run(steps: 200)
        var core = net.cores[0]
        let tip = core.highQC.blockID
        let tipBlock = try #require(core.block(tip))
        let tipState = try #require(core.stateID(of: tip))
        let domain = SigningDomain(chainID: "forged")
        let info = VoteInfo(
            blockID: Hash32.of([42]), round: tipBlock.round + 2, parentID: tip, parentRound: tipBlock.round,
            execStateID: tipState, epoch: 1)
        let commit = LedgerCommitInfo(epoch: 1, round: info.round, commitStateID: tipState, voteInfoHash: info.hash)
        let qc = QuorumCert(
            voteInfo: info, commitInfo: commit,
            signatures: keys.prefix(3).map {
                SignerSignature(
                    signer: $0.publicKey, signature: $0.signature(for: domain.message("vote", epoch: 1, commit.bytes)))
            })
        #expect(core.config.isValid(qc), "quorum-signed: only the round rule can refuse it")
        let round = core.currentRound
        var bytes = [UInt8]()
        bytes += withUnsafeBytes(of: round.bigEndian, Array.init)
        bytes += withUnsafeBytes(of: core.highQC.round.bigEndian, Array.init)
        let timeoutInfo = TimeoutInfo(
            epoch: 1, round: round, highQC: core.highQC, sender: keys[1].publicKey,
            signature: keys[1].signature(for: domain.message("timeout", epoch: 1, bytes)))
        let actions = core.receive(
            .timeout(TimeoutMsg(info: timeoutInfo, lastRoundTC: nil, highCommitQC: qc)), from: keys[1].publicKey)
        #expect(
            !actions.contains {
                if case .commit(let blocks, _, _) = $0 { return blocks.contains { $0.id == tip } }
                return false
            }, "the tip was committed by a QC whose rounds are not consecutive")
    }

    /// Issue 14 §6: "already proposed in round r" is part of the persisted safety state.
    @Test("a leader restarted after proposing does not propose a second block for the same round")
    func noSecondProposalAfterRestart() throws {
        let config = ConsensusConfig(
            chainID: "forged", epoch: 1, validators: ValidatorSet(keys.map { Validator(id: $0.publicKey) }),
            genesisBlockID: .zero, genesisStateID: .zero)
        let probe = ConsensusCore(config: config, key: keys[0])
        let leaderKey = try #require(keys.first { $0.publicKey == probe.leader(of: 1) })
        var core = ConsensusCore(config: config, key: leaderKey)
        _ = core.start()
        let first = core.proposePayload(round: 1, payload: [[1]])
        var persisted: SafetyState?
        var proposals: [Hash32] = []
        for action in first {
            if case .persistSafety(let s) = action, proposals.isEmpty { persisted = s }
            if case .broadcast(.proposal(let p)) = action { proposals.append(p.block.id) }
        }
        #expect(proposals.count == 1)
        let safety = try #require(persisted, "the safety state is persisted before the proposal leaves")
        #expect(try SafetyState.decode(safety.encoded()) == safety, "the stored form keeps the proposed round")
        // Crash and restart from what was persisted: same round, another payload.
        var restarted = ConsensusCore(
            config: config, key: leaderKey,
            recovered: RecoveredState(
                safety: try SafetyState.decode(safety.encoded()), blocks: [], committedBlockID: .zero,
                committedRound: 0, committedStateID: .zero))
        _ = restarted.start()
        let second = restarted.proposePayload(round: 1, payload: [[2]])
        #expect(
            !second.contains {
                if case .broadcast(.proposal) = $0 { return true }
                return false
            }, "a second, different proposal for round 1 would be equivocation")
    }

    /// Issue 14 §5: a TC carries its highest QC, and no entry may claim more. Before, a
    /// Byzantine signer's inflated claim (signed, but backed by no QC) went into a TC and
    /// raised the bar every honest proposal had to meet.
    @Test("a timeout certificate whose entry claims a higher QC round than the QC it carries is refused")
    func inflatedTimeoutClaim() {
        let config = ConsensusConfig(
            chainID: "forged", epoch: 1, validators: ValidatorSet(keys.map { Validator(id: $0.publicKey) }),
            genesisBlockID: .zero, genesisStateID: .zero)
        let domain = SigningDomain(chainID: "forged")
        let genesisQC = QuorumCert.genesis(epoch: 1, blockID: .zero, stateID: .zero)
        func signed(_ key: Ed25519.PrivateKey, round: Round, hqc: Round) -> Ed25519.Signature {
            var w = WireWriter()
            w.u64(round)
            w.u64(hqc)
            return key.signature(for: domain.message("timeout", epoch: 1, w.bytes))
        }
        func tc(inflate: Bool) -> TimeoutCert {
            TimeoutCert(
                epoch: 1, round: 3, highQC: genesisQC,
                entries: keys[1...3].map {
                    let claim: Round = inflate && $0.publicKey == keys[3].publicKey ? 40 : 0
                    return TimeoutCert.Entry(
                        signer: $0.publicKey, highQCRound: claim, signature: signed($0, round: 3, hqc: claim))
                })
        }
        func roundAfter(_ certificate: TimeoutCert) -> Round {
            var core = ConsensusCore(config: config, key: keys[0])
            _ = core.start()
            let info = TimeoutInfo(
                epoch: 1, round: 4, highQC: genesisQC, sender: keys[1].publicKey,
                signature: signed(keys[1], round: 4, hqc: 0))
            _ = core.receive(
                .timeout(TimeoutMsg(info: info, lastRoundTC: certificate, highCommitQC: genesisQC)),
                from: keys[1].publicKey)
            return core.currentRound
        }
        #expect(roundAfter(tc(inflate: false)) == 4, "control: an honest TC of round 3 moves the core to round 4")
        #expect(roundAfter(tc(inflate: true)) < 4, "a TC with an inflated claim is not accepted")
        // The encoding keeps the QC: a decoded TC is the same TC.
        let message = ConsensusMessage.timeout(
            TimeoutMsg(
                info: TimeoutInfo(
                    epoch: 1, round: 4, highQC: genesisQC, sender: keys[1].publicKey,
                    signature: signed(keys[1], round: 4, hqc: 0)), lastRoundTC: tc(inflate: false),
                highCommitQC: genesisQC))
        #expect(try! ConsensusMessage.decode(message.encoded()) == message)
    }

    /// Issue 14 §4: blocks are capped in bytes by the voters, not only by the proposer's
    /// count, so no block can outgrow a catch-up answer and stall sync at its height.
    @Test("voters refuse a block over max_block_bytes or max_block_transactions; a block within both is voted")
    func blockByteCap() throws {
        var config = ConsensusConfig(
            chainID: "forged", epoch: 1, validators: ValidatorSet(keys.map { Validator(id: $0.publicKey) }),
            genesisBlockID: .zero, genesisStateID: .zero)
        config.maxBlockBytes = 4_096
        config.maxBlockTransactions = 3
        let probe = ConsensusCore(config: config, key: keys[0])
        let leaderKey = try #require(keys.first { $0.publicKey == probe.leader(of: 1) })
        // A voter that does not lead round 2 sends its vote out (the next leader keeps its own).
        let voterKey = try #require(
            keys.first { $0.publicKey != leaderKey.publicKey && $0.publicKey != probe.leader(of: 2) })
        func votes(for payload: [[UInt8]]) -> Bool {
            // A leader that ignores the caps (its own core would not propose this).
            var unlimited = config
            unlimited.maxBlockBytes = Int.max
            unlimited.maxBlockTransactions = Int.max
            var leader = ConsensusCore(config: unlimited, key: leaderKey)
            _ = leader.start()
            var voter = ConsensusCore(config: config, key: voterKey)
            _ = voter.start()
            var pending: [ConsensusCore.Action] = []
            for case .broadcast(.proposal(let p)) in leader.proposePayload(round: 1, payload: payload) {
                pending += voter.receive(.proposal(p), from: leaderKey.publicKey)
            }
            var voted = false
            while !pending.isEmpty {
                switch pending.removeFirst() {
                case .execute(let block, let parent):
                    pending += voter.blockExecuted(id: block.id, stateID: Net.state(after: block, on: parent))
                case .send(_, .vote): voted = true
                default: break
                }
            }
            return voted
        }
        #expect(votes(for: [[UInt8](repeating: 1, count: 4_000)]), "control: 4,000 bytes in one transaction")
        #expect(!votes(for: [[UInt8](repeating: 1, count: 4_097)]), "one byte over max_block_bytes")
        #expect(!votes(for: [[1], [2], [3], [4]]), "one transaction over max_block_transactions")
    }

    /// Issue 14 §7: a validator (validly signed, so not stopped by the signature check)
    /// spamming votes and timeouts for future rounds, and blocks for a past round it led,
    /// leaves the core's buffers bounded by the round window.
    @Test("future-round votes and timeouts, and many blocks for one past round, leave every buffer bounded")
    func boundedBuffers() throws {
        var net = Net(keys: keys, down: []) { _, _ in [] }
        net.run(steps: 400)
        let victim = 0
        var core = net.cores[victim]
        let config = core.config
        let domain = SigningDomain(chainID: "forged")
        let spammer = keys[1]
        let round = core.currentRound
        let genesisQC = QuorumCert.genesis(epoch: 1, blockID: .zero, stateID: .zero)
        var persisted = 0
        for r in (round + 2)..<(round + 2_000) {
            let info = VoteInfo(
                blockID: Hash32.of(Array("spam \(r)".utf8)), round: r, parentID: .zero, parentRound: r - 1,
                execStateID: .zero, epoch: 1)
            let commit = LedgerCommitInfo(epoch: 1, round: r, commitStateID: nil, voteInfoHash: info.hash)
            let vote = VoteMsg(
                voteInfo: info, commitInfo: commit, highCommitQC: genesisQC, sender: spammer.publicKey,
                signature: spammer.signature(for: domain.message("vote", epoch: 1, commit.bytes)))
            _ = core.receive(.vote(vote), from: spammer.publicKey)
            var w = WireWriter()
            w.u64(r)
            w.u64(0)
            let timeout = TimeoutInfo(
                epoch: 1, round: r, highQC: genesisQC, sender: spammer.publicKey,
                signature: spammer.signature(for: domain.message("timeout", epoch: 1, w.bytes)))
            _ = core.receive(
                .timeout(TimeoutMsg(info: timeout, lastRoundTC: nil, highCommitQC: genesisQC)), from: spammer.publicKey)
        }
        // Many different blocks for one past round, each signed by that round's leader.
        let pastRound = round - 1
        let pastLeader = try #require(keys.first { $0.publicKey == core.leader(of: pastRound) })
        let parent = try #require(core.block(core.highQC.blockID)).qc
        for n in 0..<200 {
            let block = Block(
                epoch: 1, round: pastRound, author: pastLeader.publicKey, payload: [[UInt8(n % 256), 1]], qc: parent)
            let proposal = ProposalMsg(
                block: block, lastRoundTC: nil, highCommitQC: core.highCommitQC,
                signature: pastLeader.signature(for: domain.message("proposal", epoch: 1, block.id.bytes)))
            for action in core.receive(.proposal(proposal), from: pastLeader.publicKey) {
                if case .persistBlock = action { persisted += 1 }
            }
        }
        let sizes = core.bufferSizes
        #expect(sizes.votes <= 4 && sizes.timeouts <= 8, "future-round spam kept: \(sizes)")
        #expect(persisted <= 1, "\(persisted) blocks of one past round stored")
        _ = config
    }

    /// Issue 14 §9: a vote signed just before a crash is sent again on restart.
    @Test("a validator restarted after signing a vote sends that same vote to the next leader")
    func voteResentAfterRestart() throws {
        var net = Net(keys: keys, down: []) { _, _ in [] }
        net.run(steps: 60)
        // A validator that does not lead the next round, with a vote of the current round.
        let i = try #require(
            net.cores.indices.first {
                let c = net.cores[$0]
                return c.safety.lastVote?.voteInfo.round == c.currentRound && c.leader(of: c.currentRound + 1) != c.me
            })
        let core = net.cores[i]
        let vote = try #require(core.safety.lastVote)
        var restarted = ConsensusCore(
            config: core.config, key: keys[i],
            recovered: RecoveredState(
                safety: try SafetyState.decode(core.safety.encoded()), blocks: [],
                committedBlockID: core.committedBlockID,
                committedRound: core.committedRound,
                committedStateID: try #require(core.stateID(of: core.committedBlockID))))
        let actions = restarted.start()
        #expect(
            actions.contains { $0 == .send(to: core.leader(of: vote.voteInfo.round + 1), .vote(vote)) },
            "the last vote goes out again")
    }

    /// Issue 14 §9: the reputation draw cannot be ground by a block's author.
    @Test("reputation: two histories with the same proposers and voters but other block ids elect the same leaders")
    func reputationSeedNotGrindable() throws {
        var config = ConsensusConfig(
            chainID: "forged", epoch: 1, validators: ValidatorSet(keys.map { Validator(id: $0.publicKey) }),
            genesisBlockID: .zero, genesisStateID: .zero)
        config.leaderElection = .reputation(window: 40, excludeRounds: 2)
        func core(salt: UInt8) -> ConsensusCore {
            // Validators 0 and 1 propose; the blocks differ only in their payload.
            let history = (1...20).map { r in
                Block(
                    epoch: 1, round: Round(r), author: keys[r % 2].publicKey, payload: [[salt, UInt8(r)]],
                    qc: .genesis(epoch: 1, blockID: .zero, stateID: .zero))
            }
            return ConsensusCore(
                config: config, key: keys[0],
                recovered: RecoveredState(
                    safety: SafetyState(epoch: 1), blocks: [], committedBlockID: history.last!.id, committedRound: 20,
                    committedStateID: .zero, recentCommitted: history))
        }
        let a = core(salt: 1)
        let b = core(salt: 2)
        let rounds = (21...60).map { Round($0) }
        #expect(rounds.map { a.leader(of: $0) } == rounds.map { b.leader(of: $0) })
        // Weighting still works: the two active proposers are drawn far more often.
        let active = Set(keys.prefix(2).map(\.publicKey))
        #expect(rounds.filter { active.contains(a.leader(of: $0)) }.count >= 36)
    }

    /// Found by the attacker review: a validly signed vote for round UInt64.max reached
    /// `round + 1` and trapped, so one validator could crash every node.
    @Test("validly signed votes and timeouts for round UInt64.max are dropped, not a crash")
    func maxRoundMessages() {
        var net = Net(keys: keys, down: []) { _, _ in [] }
        net.run(steps: 100)
        let domain = SigningDomain(chainID: "forged")
        let genesisQC = QuorumCert.genesis(epoch: 1, blockID: .zero, stateID: .zero)
        for r in [Round.max, Round.max - 1] {
            let info = VoteInfo(
                blockID: Hash32.of([9]), round: r, parentID: .zero, parentRound: r - 1, execStateID: .zero, epoch: 1)
            let commit = LedgerCommitInfo(epoch: 1, round: r, commitStateID: nil, voteInfoHash: info.hash)
            let vote = VoteMsg(
                voteInfo: info, commitInfo: commit, highCommitQC: genesisQC, sender: keys[1].publicKey,
                signature: keys[1].signature(for: domain.message("vote", epoch: 1, commit.bytes)))
            var w = WireWriter()
            w.u64(r)
            w.u64(0)
            let timeout = TimeoutInfo(
                epoch: 1, round: r, highQC: genesisQC, sender: keys[1].publicKey,
                signature: keys[1].signature(for: domain.message("timeout", epoch: 1, w.bytes)))
            for i in net.cores.indices {
                #expect(net.cores[i].receive(.vote(vote), from: keys[1].publicKey).isEmpty)
                _ = net.cores[i].receive(
                    .timeout(TimeoutMsg(info: timeout, lastRoundTC: nil, highCommitQC: genesisQC)),
                    from: keys[1].publicKey)
                #expect(net.cores[i].currentRound < 1_000)
            }
        }
    }

    /// Found by the attacker review: next-epoch messages cannot be verified, so anyone
    /// could fill the buffer with ~4 MiB proposals; it is bounded in bytes too.
    @Test("the next-epoch buffer keeps only the next epoch's messages, bounded in count and bytes")
    func nextEpochBuffer() {
        var buffer = NextEpochBuffer()
        let genesisQC = QuorumCert.genesis(epoch: 2, blockID: .zero, stateID: .zero)
        func proposal(epoch: UInt64, bytes: Int) -> ConsensusMessage {
            let block = Block(
                epoch: epoch, round: 1, author: keys[0].publicKey, payload: [[UInt8](repeating: 1, count: bytes)],
                qc: genesisQC)
            return .proposal(
                ProposalMsg(
                    block: block, lastRoundTC: nil, highCommitQC: genesisQC,
                    signature: keys[0].signature(for: block.id.bytes)))
        }
        buffer.offer(proposal(epoch: 3, bytes: 10), from: keys[0].publicKey, current: 1)
        buffer.offer(proposal(epoch: 1, bytes: 10), from: keys[0].publicKey, current: 1)
        #expect(buffer.count == 0, "only the epoch right after the current one is kept")
        for _ in 0..<20 { buffer.offer(proposal(epoch: 2, bytes: 1 << 20), from: keys[1].publicKey, current: 1) }
        #expect(buffer.count <= 8 && buffer.bytes <= NextEpochBuffer.byteLimit)
        for _ in 0..<400 { buffer.offer(proposal(epoch: 2, bytes: 10), from: keys[1].publicKey, current: 1) }
        #expect(buffer.count == NextEpochBuffer.messageLimit)
        #expect(buffer.take(entering: 2).count == NextEpochBuffer.messageLimit)
        #expect(buffer.count == 0 && buffer.bytes == 0)
    }
}
