import Consensus
import Testing

/// Catch-up scenarios from research §4.3 (S8, S15) on the simulator, with the
/// catch-up protocol running beside consensus as in the node.
@Suite("Catch-up scenarios (S8, S15)")
struct CatchUpScenarioTests {
    func expectSafe(_ sim: Simulator, _ label: String) {
        #expect(!sim.forkDetected, "\(label): committed sequences diverged")
        #expect(sim.violations.isEmpty, "\(label): \(sim.violations.prefix(3))")
    }

    /// Reputation-based election, so the three live validators commit quickly while
    /// the fourth is away.
    func makeSim(_ seed: UInt64) -> Simulator {
        var sim = Simulator(seed: seed, validators: 4, leaderElection: .reputation(window: 40, excludeRounds: 40))
        sim.catchUpEnabled = true
        return sim
    }

    @Test(
        "S15 a validator offline for 1,000 blocks catches up by verified ranges, then votes again",
        arguments: [1, 2] as [UInt64])
    func s15OfflineThousandBlocks(seed: UInt64) throws {
        var sim = makeSim(seed)
        sim.start()
        sim.run(until: 1)
        sim.crash(3)
        var t = 1.0
        let start = sim.committedCount(0)
        while sim.committedCount(0) < start + 1_000 && t < 600 {
            t += 10
            sim.run(until: t)
        }
        try #require(sim.committedCount(0) >= start + 1_000, "the others committed 1,000 blocks")
        let missed = sim.committedCount(0) - sim.committedCount(3)
        sim.restart(3)
        let roundAtRestart = sim.nodes[3].core.safety.highestVoteRound
        sim.run(until: t + 30)
        expectSafe(sim, "S15")
        #expect(
            sim.nodes[3].caughtUp >= missed - 20,
            "most of the gap came by ranges (\(sim.nodes[3].caughtUp) of \(missed))")
        #expect(!sim.nodes[3].catchUp.syncing)
        #expect(sim.committedCount(3) + 5 >= sim.committedCount(0), "it keeps up afterwards")
        #expect(sim.nodes[3].core.safety.highestVoteRound > roundAtRestart, "it votes in consensus again")
        #expect(sim.catchUpPenalties == 0, "honest peers serve valid ranges")
    }

    @Test("a peer serving tampered ranges is scored down and the others are used")
    func tamperedRanges() {
        var sim = makeSim(5)
        sim.corruptServers = [0]
        sim.start()
        sim.run(until: 1)
        sim.crash(3)
        // Enough blocks that several ranges are needed, so every peer is asked in turn.
        var t = 1.0
        while sim.committedCount(0) - sim.committedCount(3) < 300 && t < 600 {
            t += 10
            sim.run(until: t)
        }
        let missed = sim.committedCount(0) - sim.committedCount(3)
        sim.restart(3)
        sim.run(until: t + 40)
        expectSafe(sim, "tampered ranges")
        #expect(sim.catchUpPenalties >= 1, "the tampering peer was caught")
        #expect(sim.nodes[3].caughtUp >= missed - 20, "the honest peers served the rest")
        #expect(sim.committedCount(3) + 5 >= sim.committedCount(1))
    }

    @Test(
        "S8 a minority partition: the cut-off validator falls behind, syncs after the heal, and rejoins",
        arguments: [1, 2, 3] as [UInt64])
    func s8MinorityPartition(seed: UInt64) {
        var sim = makeSim(seed)
        sim.start()
        sim.run(until: 2)
        sim.partition = [[0, 1, 2], [3]]
        sim.run(until: 120)
        let behind = sim.committedCount(0) - sim.committedCount(3)
        #expect(behind > Int(CatchUp.lagThreshold), "the majority went on without it (\(behind) blocks)")
        sim.partition = nil
        sim.run(until: 150)
        expectSafe(sim, "S8")
        #expect(sim.nodes[3].caughtUp > 0, "it synced by ranges")
        #expect(sim.committedCount(3) + 5 >= sim.committedCount(0), "and is level again")
        #expect(!sim.nodes[3].catchUp.syncing)
    }
}
