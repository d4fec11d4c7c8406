import NodeCrypto
import Testing

@testable import Consensus

/// The adversary of issue 14 against the shipped cores, with 4, 7 and 10 validators and
/// unequal voting power, and the negative controls that show each oracle catches the
/// fault it exists for.
@Suite("Adversary scenarios: spoofing, forgery, replay, inflated TCs, future spam, lies, oversized blocks")
struct AdversaryScenarioTests {
    func expectSafe(_ sim: Simulator, _ label: String) {
        #expect(!sim.forkDetected, "\(label): committed sequences diverged")
        #expect(sim.violations.isEmpty, "\(label): \(sim.violations.prefix(3))")
    }

    /// Runs `sim` for 40 s under attack, heals the network, and checks every oracle and
    /// that commits continue after healing.
    func attackAndHeal(_ sim: inout Simulator, _ label: String) {
        sim.catchUpEnabled = true
        sim.start()
        sim.run(until: 40)
        sim.cutLinks = []
        sim.clockSkew = [:]
        sim.run(until: 50)
        let before = sim.minHonestCommits
        sim.run(until: 65)
        expectSafe(sim, label)
        #expect(sim.minHonestCommits > before, "\(label): commits continue after healing (\(before))")
        #expect(sim.forgedRefused > 0, "\(label): the adversary's forgeries reached honest nodes and were refused")
        #expect(sim.adversary.sent.spoofed > 0 && sim.adversary.sent.spam > 0 && sim.adversary.sent.lies > 0)
    }

    @Test("A1 4 validators, 1 Byzantine doing everything at once", arguments: ciSeeds.prefix(3))
    func fourValidators(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4)
        sim.corrupt(.all([3]))
        attackAndHeal(&sim, "A1")
        #expect(sim.minHonestCommits >= 30, "three honest validators keep committing under attack")
        #expect(sim.adversary.sent.inflated > 0, "inflated TCs were sent")
    }

    @Test("A2 7 validators of unequal power, 3 Byzantine holding less than a third of it", arguments: ciSeeds.prefix(3))
    func sevenUnequal(seed: UInt64) {
        // Total 16: a quorum needs 11; the Byzantine three hold 1 + 1 + 2 = 4 < 16/3.
        var sim = Simulator(seed: seed, validators: 7, powers: [1, 1, 2, 2, 3, 3, 4])
        sim.corrupt(.all([0, 1, 2]))
        sim.clockSkew = [3: 0.7, 6: 1.6]
        attackAndHeal(&sim, "A2")
        #expect(sim.minHonestCommits >= 10)
    }

    @Test("A3 10 validators, 3 Byzantine, skewed clocks and links cut one way", arguments: ciSeeds.prefix(2))
    func tenValidators(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 10)
        sim.corrupt(.all([7, 8, 9]))
        sim.clockSkew = [0: 0.6, 1: 1.8, 2: 1.3]
        sim.cutLinks = [[0, 1], [2, 3], [4, 5]]
        attackAndHeal(&sim, "A3")
        #expect(sim.minHonestCommits >= 10)
    }

    @Test("A4 twins equivocating as leader and voter while the adversary attacks from another validator")
    func twinsAndAdversary() {
        var sim = Simulator(seed: 9, validators: 7, twins: [0])
        sim.corrupt(.all([1]))
        sim.partition = [[0, 2, 3, 4, 1], [7, 5, 6]]
        sim.catchUpEnabled = true
        sim.start()
        sim.run(until: 20)
        sim.partition = nil
        sim.run(until: 60)
        expectSafe(sim, "A4")
        #expect(sim.minHonestCommits >= 10)
    }

    // MARK: Negative controls: each oracle fails on the fault it exists for.

    @Test("control: agreement — more than f Byzantine (twins of 2 of 4) fork, and the oracle sees it")
    func agreementControl() {
        var two = Simulator(seed: 5, validators: 4, twins: [0, 1])
        two.partition = [[0, 1, 2], [4, 5, 3]]
        two.start()
        two.run(until: 40)
        #expect(two.forkDetected)
    }

    @Test("control: vote monotonicity — two votes, or a vote below a signed round, by an honest signer are flagged")
    func monotonicityControl() {
        var sim = Simulator(seed: 5, validators: 4)
        let signer = sim.nodes[0].key.publicKey
        let a = LedgerCommitInfo(epoch: 1, round: 5, commitStateID: nil, voteInfoHash: Hash32.of([1]))
        let b = LedgerCommitInfo(epoch: 1, round: 5, commitStateID: nil, voteInfoHash: Hash32.of([2]))
        sim.record(signer, epoch: 1, round: 5, vote: a)
        sim.record(signer, epoch: 1, round: 5, vote: a)
        #expect(sim.violations.isEmpty, "the same vote again is allowed")
        sim.record(signer, epoch: 1, round: 5, vote: b)
        #expect(sim.violations.count == 1)
        sim.record(signer, epoch: 1, round: 4, vote: a)
        #expect(sim.violations.count == 2)
    }

    @Test("control: commit justification — a commit by a QC without quorum, or not 2-chain, is flagged")
    func justificationControl() throws {
        var sim = Simulator(seed: 5, validators: 4)
        sim.start()
        sim.run(until: 3)
        let committed = sim.nodes[0].committed.compactMap { sim.nodes[0].disk.committedBlocks[$0] }
        let block = try #require(committed.dropFirst(3).first)
        let grandchildQC = try #require(committed.first { $0.qc.voteInfo.parentID == block.id })
        let thin = QuorumCert(
            voteInfo: grandchildQC.qc.voteInfo, commitInfo: grandchildQC.qc.commitInfo,
            signatures: Array(grandchildQC.qc.signatures.prefix(1)))
        var copy = sim
        copy.checkCommit(1, [block], thin, epochChange: nil)
        #expect(copy.violations.contains { $0.contains("quorum") })
        var other = sim
        other.checkCommit(1, [block], block.qc, epochChange: nil)
        #expect(other.violations.contains { $0.contains("2-chain") })
    }

    @Test("control: progress after healing — a partition that never heals shows no progress")
    func progressControl() {
        var sim = Simulator(seed: 5, validators: 4)
        sim.start()
        sim.run(until: 5)
        sim.partition = [[0, 1], [2, 3]]
        sim.run(until: 30)
        let before = sim.minHonestCommits
        sim.run(until: 45)
        #expect(sim.minHonestCommits <= before + 1, "no quorum, no progress (at most an in-flight commit)")
    }
}

@Suite("Campaign mix on fixed seeds (scripts/sim-campaign.sh runs many more)")
struct CampaignSeedTests {
    @Test(
        "random validator counts, powers, adversaries and faults: every oracle holds", arguments: Array(UInt64(1)...4))
    func mixedSeed(seed: UInt64) {
        let failure = CampaignTests.run(seed: 7_000 + seed)
        #expect(failure == nil, "\(failure ?? "")")
    }
}
