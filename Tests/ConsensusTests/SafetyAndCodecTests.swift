import Consensus
import Foundation
import NodeCrypto
import TestSupport
import Testing
import Wire

@Suite("Safety rules (DIP-201) and the consensus codec")
struct SafetyAndCodecTests {
    func state(vote: Round, qc: Round) -> SafetyState {
        var s = SafetyState(epoch: 1)
        s.highestVoteRound = vote
        s.highestQCRound = qc
        return s
    }

    func tc(round: Round, hqc: [Round]) -> TimeoutCert {
        let keys = hqc.map { _ in Ed25519.PrivateKey() }
        return TimeoutCert(
            epoch: 1, round: round, highQC: .genesis(epoch: 1, blockID: .zero, stateID: .zero),
            entries: zip(keys, hqc).map {
                TimeoutCert.Entry(signer: $0.publicKey, highQCRound: $1, signature: $0.signature(for: [1]))
            })
    }

    struct VoteCase: Sendable {
        let round: Round, qcRound: Round, tc: (round: Round, hqc: Round)?, voted: Round, expected: Bool
    }

    @Test(
        "safe_to_vote",
        arguments: [
            VoteCase(round: 5, qcRound: 4, tc: nil, voted: 4, expected: true),  // extends the previous round's QC
            VoteCase(round: 5, qcRound: 4, tc: nil, voted: 5, expected: false),  // already voted in round 5
            VoteCase(round: 5, qcRound: 3, tc: nil, voted: 4, expected: false),  // a gap needs a TC
            VoteCase(round: 5, qcRound: 3, tc: (4, 3), voted: 4, expected: true),  // TC(4) and qc ≥ its highest QC
            VoteCase(round: 5, qcRound: 2, tc: (4, 3), voted: 4, expected: false),  // qc below the TC's highest QC
            VoteCase(round: 5, qcRound: 3, tc: (3, 3), voted: 4, expected: false),  // the TC is not of round 4
            VoteCase(round: 3, qcRound: 2, tc: nil, voted: 7, expected: false),  // an old round
        ])
    func safeToVote(_ c: VoteCase) {
        let certificate = c.tc.map { tc(round: $0.round, hqc: [$0.hqc, 0, 1]) }
        #expect(
            SafetyRules.safeToVote(
                round: c.round, qcRound: c.qcRound, tc: certificate, state: state(vote: c.voted, qc: 0))
                == c.expected)
    }

    @Test func safeToTimeout() {
        // Round after the high QC, not below the last vote: allowed (also in the voted round).
        #expect(SafetyRules.safeToTimeout(round: 5, qcRound: 4, tc: nil, state: state(vote: 5, qc: 4)))
        // A QC older than the one voted on: refused.
        #expect(
            !SafetyRules.safeToTimeout(
                round: 5, qcRound: 3, tc: tc(round: 4, hqc: [3, 3, 3]), state: state(vote: 4, qc: 4)))
        // Round after a TC: allowed.
        #expect(
            SafetyRules.safeToTimeout(
                round: 6, qcRound: 3, tc: tc(round: 5, hqc: [3, 3, 3]), state: state(vote: 5, qc: 3)))
        // Below the last vote: refused.
        #expect(!SafetyRules.safeToTimeout(round: 4, qcRound: 3, tc: nil, state: state(vote: 5, qc: 3)))
        // Neither after the QC nor after the TC: refused.
        #expect(
            !SafetyRules.safeToTimeout(
                round: 7, qcRound: 3, tc: tc(round: 5, hqc: [3, 3, 3]), state: state(vote: 5, qc: 3)))
        #expect(SafetyRules.commitCandidate(round: 5, qcRound: 4))
        #expect(!SafetyRules.commitCandidate(round: 5, qcRound: 3))
    }

    @Test func quorumThresholdsByPower() {
        let n4 = ValidatorSet((0..<4).map { _ in Validator(id: Ed25519.PrivateKey().publicKey) })
        #expect(n4.quorumPower == 3 && n4.amplificationPower == 2)
        let n7 = ValidatorSet((0..<7).map { _ in Validator(id: Ed25519.PrivateKey().publicKey) })
        #expect(n7.quorumPower == 5 && n7.amplificationPower == 3)
        let weighted = ValidatorSet([
            Validator(id: Ed25519.PrivateKey().publicKey, power: 10),
            Validator(id: Ed25519.PrivateKey().publicKey, power: 1),
            Validator(id: Ed25519.PrivateKey().publicKey, power: 1),
        ])
        #expect(weighted.quorumPower == 9, "more than two thirds of 12")
    }

    @Test("messages from another epoch are ignored: no vote, no commit, no round change, not forwarded")
    func oldEpochIgnored() {
        var sim = Simulator(seed: 9, validators: 4)
        sim.keepSamples = true
        sim.start()
        sim.run(until: 10)
        var next = sim.config
        next.epoch = 2
        var core = ConsensusCore(config: next, key: sim.nodes[1].key)
        _ = core.start()
        let round = core.currentRound
        for message in sim.samples {
            #expect(!core.isAuthentic(message), "an epoch-1 message is not forwarded in epoch 2")
            let signer = message.signer ?? sim.config.validators.validators[0].id
            let actions = core.receive(message, from: signer)
            #expect(
                !actions.contains {
                    switch $0 {
                    case .persistSafety, .commit, .broadcast, .execute: true
                    default: false
                    }
                }, "\(actions)")
        }
        #expect(core.currentRound == round)
        #expect(core.committedRound == 0)
    }

    @Test("every message of a simulated run round-trips the codec; corrupt input is a typed error")
    func codecRoundTrip() throws {
        var sim = Simulator(seed: 5, validators: 4)
        sim.keepSamples = true
        sim.crash(3)  // rounds with TCs, so timeouts and proposals carrying TCs appear
        sim.start()
        sim.run(until: 15)
        let kinds = Set(
            sim.samples.map { m -> Int in
                switch m {
                case .proposal(let p): p.lastRoundTC == nil ? 0 : 1
                case .vote: 2
                case .timeout: 3
                case .blockRequest: 4
                case .blockResponse: 5
                case .chainStatus, .getCommitted, .committedRange: 6
                }
            })
        #expect(kinds.isSuperset(of: [0, 1, 2, 3]), "proposals with and without TC, votes and timeouts were sampled")
        let checker = ConsensusCore(config: sim.config, key: sim.nodes[0].key)
        // Catch-up messages, built from the run's committed blocks.
        let committed = sim.nodes[0].committed.compactMap { sim.nodes[0].disk.committedBlocks[$0] }
        let catchUp: [ConsensusMessage] = [
            .chainStatus(height: 42, round: 99, epoch: 1, proof: nil),
            .chainStatus(height: 42, round: 99, epoch: 1, proof: committed[4].qc),
            .getCommitted(height: 1, count: CatchUp.maxRangeBlocks),
            .committedRange(height: 1, blocks: Array(committed.prefix(3)), proof: committed[4].qc, suffix: []),
            .committedRange(
                height: 1, blocks: Array(committed.prefix(3)), proof: committed[4].qc, suffix: [committed[3]]),
        ]
        for message in catchUp { #expect(!checker.isAuthentic(message) && message.signer == nil) }
        #expect(throws: WireError.self) { try ConsensusMessage.decode([7] + [UInt8](repeating: 0, count: 8) + [0, 0]) }
        #expect(throws: WireError.self) {
            try ConsensusMessage.decode([7] + [UInt8](repeating: 0, count: 8) + [0xFF, 0xFF])
        }
        writeFuzzSeeds(consensus: sim.samples + catchUp, blocks: committed)
        for message in sim.samples + catchUp {
            let bytes = message.encoded()
            #expect(try ConsensusMessage.decode(bytes) == message)
            #expect(throws: WireError.self) { try ConsensusMessage.decode(bytes + [0]) }
            #expect(throws: WireError.self) { try ConsensusMessage.decode(Array(bytes.dropLast())) }
        }
        for _ in 0..<3000 {
            _ = try? ConsensusMessage.decode(SecureRandom.bytes(Int.random(in: 0...400)))
        }
        // Catch-up messages (epoch in the status, a suffix in the range) and epoch-change
        // proofs: every truncation is a typed error.
        let proof = EpochChangeProof(suffix: Array(committed.prefix(2)), commitQC: committed[3].qc)
        #expect(try EpochChangeProof.decode(proof.encoded()) == proof)
        for bytes in catchUp.map({ $0.encoded() }) {
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 300)) {
                #expect(throws: WireError.self) { try ConsensusMessage.decode(Array(bytes.prefix(cut))) }
            }
        }
        let proofBytes = proof.encoded()
        for cut in stride(from: 0, to: proofBytes.count, by: max(1, proofBytes.count / 300)) {
            #expect(throws: WireError.self) { try EpochChangeProof.decode(Array(proofBytes.prefix(cut))) }
        }
        // Every sampled proposal, vote and timeout is authentic; a forged signature is not.
        for message in sim.samples {
            switch message {
            case .proposal, .vote, .timeout: #expect(checker.isAuthentic(message))
            default: #expect(!checker.isAuthentic(message))
            }
        }
        if let vote = sim.samples.lazy.compactMap({ if case .vote(let v) = $0 { v } else { nil } }).first {
            let forged = VoteMsg(
                voteInfo: vote.voteInfo, commitInfo: vote.commitInfo, highCommitQC: vote.highCommitQC,
                sender: sim.config.validators.validators.first { $0.id != vote.sender }!.id, signature: vote.signature)
            #expect(!checker.isAuthentic(.vote(forged)), "a signature does not carry over to another sender")
        }
        // A proposal whose bytes were flipped anywhere either fails to decode or is
        // refused: a fresh validator takes no block from it. Control: the original is taken.
        // Round 1's leader proposes on a fresh core.
        let leaderKey = try #require(sim.nodes.first { $0.key.publicKey == sim.config.validators.leader(of: 1) }).key
        var leader = ConsensusCore(config: sim.config, key: leaderKey)
        _ = leader.start()
        var proposals: [ProposalMsg] = []
        for case .broadcast(.proposal(let p)) in leader.proposePayload(round: 1, payload: [[1, 2, 3], [4, 5]]) {
            proposals.append(p)
        }
        let original = try #require(proposals.first, "round 1's leader proposed")
        let voterKey = try #require(sim.nodes.first { $0.key.publicKey != original.block.author }).key
        func takesBlock(_ message: ConsensusMessage) -> Bool {
            var core = ConsensusCore(config: sim.config, key: voterKey)
            _ = core.start()
            return core.receive(message, from: original.block.author).contains {
                if case .persistBlock = $0 { true } else { false }
            }
        }
        #expect(takesBlock(.proposal(original)), "control: the unmodified proposal is taken")
        let bytes = ConsensusMessage.proposal(original).encoded()
        var rng = SeededRandom(state: 7)
        var refused = 0
        for _ in 0..<300 {
            var flipped = bytes
            flipped[Int.random(in: 1..<bytes.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            guard let decoded = try? ConsensusMessage.decode(flipped), decoded != .proposal(original) else { continue }
            #expect(!takesBlock(decoded), "a proposal with a flipped byte was taken")
            refused += 1
        }
        #expect(refused > 100, "most flips decode and must be refused by verification")
    }
}

/// With SIDENODE_WRITE_FUZZ_SEEDS set (scripts/fuzz.sh --seed), a simulated run's real
/// traffic becomes the seed corpus of the `consensus` and `sync` fuzz targets.
func writeFuzzSeeds(consensus: [ConsensusMessage], blocks: [Block]) {
    guard ProcessInfo.processInfo.environment["SIDENODE_WRITE_FUZZ_SEEDS"] != nil else { return }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus")
    func write(_ target: String, _ inputs: [[UInt8]]) {
        let directory = root.appendingPathComponent(target)
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for input in inputs {
            let name = Hex.encode(SHA256.hash(input).prefix(20))
            try? Data(input).write(to: directory.appendingPathComponent(name))
        }
    }
    // One of each kind is plenty: libFuzzer finds the rest from there.
    let byTag = Dictionary(grouping: consensus.map { $0.encoded() }) { $0.first ?? 0 }
    write("consensus", byTag.values.flatMap { $0.prefix(3) })
    // sync: the first byte picks the decoder (0 sync message, 1 block, 2 QC).
    write("sync", blocks.prefix(4).map { [1] + $0.encoded() } + blocks.prefix(4).map { [2] + $0.qc.encoded() })
}
