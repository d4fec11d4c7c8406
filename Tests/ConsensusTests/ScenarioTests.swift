import Consensus
import Testing

/// Seeds every scenario runs under in CI; scripts/sim-campaign.sh runs more.
let ciSeeds: [UInt64] = [1, 2, 3, 7, 42]

@Suite("DiemBFT simulation scenarios (research §4.3)")
struct ScenarioTests {
    func expectSafe(_ sim: Simulator, _ label: String) {
        #expect(!sim.forkDetected, "\(label): committed sequences diverged")
        #expect(sim.violations.isEmpty, "\(label): \(sim.violations.prefix(3))")
    }

    @Test("S1 happy path: 1,000 rounds, no timeouts, leaders rotate, commits within 3 rounds")
    func s1HappyPath() {
        var sim = Simulator(seed: 1, validators: 4)
        sim.start()
        var t = 0.0
        while sim.nodes[0].core.currentRound < 1_000 && t < 600 {
            t += 5
            sim.run(until: t)
        }
        #expect(sim.nodes[0].core.currentRound >= 1_000)
        expectSafe(sim, "S1")
        #expect(sim.proposalsWithTC == 0, "no round needed a timeout certificate")
        #expect(sim.minHonestCommits >= 990)
        #expect((sim.commitLag.max() ?? 99) <= 3, "each block commits at most 3 rounds after it was proposed")
        // Committed blocks were proposed by the round-robin leader of their round (read
        // from what node 0 committed: the core prunes committed blocks from its tree).
        let set = sim.config.validators
        let recent = sim.canonical.suffix(50).compactMap { sim.nodes[0].disk.committedBlocks[$0] }
        #expect(recent.count == 50, "node 0 committed the last 50 canonical blocks")
        for block in recent {
            #expect(block.author == set.leader(of: block.round))
        }
    }

    /// Issue 14 §9: a validator that votes but never proposes was "active" and kept full
    /// weight; the failed-author lists in blocks now weigh it down.
    @Test("Reputation: a validator that votes but never proposes stops being elected", arguments: ciSeeds.prefix(2))
    func reputationSkipsSilentLeader(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4, leaderElection: .reputation(window: 40, excludeRounds: 40))
        sim.nodes[3].silentLeader = true
        sim.start()
        sim.run(until: 200)
        let before = (sim.proposalsWithTC, sim.nodes[0].core.currentRound)
        sim.run(until: 300)
        let rounds = Double(sim.nodes[0].core.currentRound - before.1)
        let tcRate = Double(sim.proposalsWithTC - before.0) / max(1, rounds)
        expectSafe(sim, "silent leader")
        // Without failed-author records it votes, so it counts as active and leads 1 round
        // in 4 (a TC each). With them it is weighed down while a failure is in the window;
        // it comes back when none is, fails again (as in Aptos), so some TCs remain.
        #expect(tcRate < 0.125, "TCs per round with a silent leader under reputation: \(tcRate)")
        #expect(sim.minHonestCommits > 100)
    }

    @Test("S2 a crashed validator: TCs on its rounds, commits continue", arguments: ciSeeds)
    func s2Crashed(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4)
        sim.crash(3)
        sim.start()
        sim.run(until: 60)
        expectSafe(sim, "S2")
        #expect(sim.minHonestCommits >= 20, "commits continue with 3 of 4")
        #expect(sim.proposalsWithTC > 0, "the crashed leader's rounds end in TCs that the next proposal carries")
    }

    @Test(
        "Reputation: once its activity leaves the window, a crashed validator is no longer elected (far fewer TCs than round-robin)",
        arguments: ciSeeds)
    func reputationSkipsCrashedLeader(seed: UInt64) {
        /// TCs per round and commits in the 100 s after a 250 s transition.
        func run(_ election: LeaderElection) -> (sim: Simulator, tcRate: Double, commits: Int) {
            var sim = Simulator(seed: seed, validators: 4, leaderElection: election)
            sim.start()
            sim.run(until: 5)
            sim.crash(3)
            sim.run(until: 250)
            let before = (sim.proposalsWithTC, sim.minHonestCommits, sim.nodes[0].core.currentRound)
            sim.run(until: 350)
            let rounds = Double(sim.nodes[0].core.currentRound - before.2)
            return (sim, Double(sim.proposalsWithTC - before.0) / rounds, sim.minHonestCommits - before.1)
        }
        let roundRobin = run(.roundRobin)
        let reputation = run(.reputation(window: 40, excludeRounds: 40))
        expectSafe(roundRobin.sim, "round-robin")
        expectSafe(reputation.sim, "reputation")
        // Round-robin gives the crashed validator every 4th round, each ending in a TC.
        // Reputation elects it until its blocks and votes leave the window (rounds
        // 40…80 after the crash; slow rounds while it is still elected make that
        // transition last up to a few minutes — see docs/architecture.md), then with
        // weight 10 against 1000 per active validator: a TC in well under 1 % of rounds.
        #expect(roundRobin.tcRate > 0.2)
        #expect(
            reputation.tcRate * 10 < roundRobin.tcRate,
            "TCs per round: reputation \(reputation.tcRate), round-robin \(roundRobin.tcRate)")
        #expect(
            reputation.commits > 2 * roundRobin.commits,
            "commits in 100 s: reputation \(reputation.commits), round-robin \(roundRobin.commits)")
    }

    @Test(
        "Reputation: validators agree on leaders across restarts (restart from disk with history)", arguments: ciSeeds)
    func reputationAfterRestart(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4, leaderElection: .reputation(window: 40, excludeRounds: 40))
        sim.start()
        sim.run(until: 15)
        for i in 0..<4 { sim.crash(i) }
        for i in 0..<4 { sim.restart(i) }
        sim.run(until: 40)
        expectSafe(sim, "reputation restart")
        // Same committed history → same leader for every upcoming round.
        let round = sim.nodes.map(\.core.currentRound).max()! + 1
        let leaders = Set((round..<round + 20).flatMap { r in sim.nodes.map { $0.core.leader(of: r) } })
        let perRound = (round..<round + 20).map { r in Set(sim.nodes.map { $0.core.leader(of: r) }).count }
        #expect(perRound.allSatisfy { $0 == 1 }, "every node computes the same leader")
        #expect(leaders.count > 1, "leadership still rotates among active validators")
        #expect(sim.proposalsWithTC <= 4, "no TC storms from disagreeing leaders after the restart")
    }

    @Test("S3 a silent leader hands over through a TC", arguments: ciSeeds)
    func s3SilentLeader(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4)
        sim.nodes[2].silentLeader = true
        sim.start()
        sim.run(until: 60)
        expectSafe(sim, "S3")
        #expect(sim.proposalsWithTC > 0)
        let timedOut = sim.nodes.map { $0.core.timeoutsByTimer + $0.core.timeoutsByAmplification }.reduce(0, +)
        #expect(timedOut > 0, "the silent leader's rounds were timed out")
        #expect(sim.minHonestCommits >= 20)
    }

    @Test("S4 an equivocating leader (twins) cannot fork the chain", arguments: ciSeeds)
    func s4EquivocatingLeader(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4, twins: [0])
        // Node 4 is node 0's twin; each sits in a different partition half of the time.
        sim.partition = [[0, 1, 2], [3, 4]]
        sim.start()
        sim.run(until: 20)
        sim.partition = [[4, 1, 2], [3, 0]]
        sim.run(until: 40)
        sim.partition = nil
        sim.run(until: 80)
        expectSafe(sim, "S4")
        #expect(sim.minHonestCommits >= 10)
        #expect(
            sim.evidence.contains { $0.hasPrefix("two proposals") },
            "the honest validators saw the twins' two proposals in one round")
    }

    @Test("S5 a double voter's twin votes count once; S6 negative control: more than f twins fork", arguments: ciSeeds)
    func s5s6Twins(seed: UInt64) {
        var one = Simulator(seed: seed, validators: 4, twins: [1])
        one.start()
        one.run(until: 40)
        expectSafe(one, "S5")
        #expect(one.minHonestCommits >= 10)
        #expect(one.evidence.contains { $0.hasPrefix("two votes") }, "a leader saw the twins' two votes in one round")

        // Two Byzantine identities of four: each side has three identities, a "quorum".
        var two = Simulator(seed: seed, validators: 4, twins: [0, 1])
        two.partition = [[0, 1, 2], [4, 5, 3]]
        two.start()
        two.run(until: 40)
        #expect(two.forkDetected, "the oracle must see the fork that more than f Byzantine validators cause")
    }

    @Test("S7 a 2-2 partition stops commits; they resume after it heals", arguments: ciSeeds)
    func s7Partition(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4)
        sim.start()
        sim.run(until: 10)
        sim.partition = [[0, 1], [2, 3]]
        sim.run(until: 12)
        let before = sim.nodes.indices.map { sim.committedCount($0) }
        sim.run(until: 72)
        let during = sim.nodes.indices.map { sim.committedCount($0) }
        #expect(during.reduce(0, +) - before.reduce(0, +) <= 4, "at most in-flight commits finish during a partition")
        sim.partition = nil
        sim.run(until: 130)
        expectSafe(sim, "S7")
        #expect(sim.minHonestCommits > during.max()! + 5, "commits resume after the partition heals")
    }

    @Test("S9 crash and restart right after each safety write never equivocates", arguments: [1, 2, 3, 5, 8, 13])
    func s9CrashAtPersistence(count: Int) {
        for seed in ciSeeds.prefix(3) {
            var sim = Simulator(seed: seed &+ UInt64(count), validators: 4)
            sim.crashAfterSafetyWrite = (node: count % 4, count: count)
            sim.start()
            sim.run(until: 15)
            #expect(sim.crashAfterSafetyWrite == nil, "seed \(seed): the crash after safety write \(count) happened")
            #expect(!sim.nodes[count % 4].alive, "seed \(seed): node \(count % 4) is down until restarted")
            if !sim.nodes[count % 4].alive { sim.restart(count % 4) }
            sim.run(until: 60)
            expectSafe(sim, "S9 write \(count)")
            let allAlive = sim.nodes.allSatisfy { $0.alive }
            #expect(allAlive)
            #expect(sim.minHonestCommits >= 10)
        }
    }

    @Test(
        "S10 a write torn by a crash (safety state, block or commit) is lost; the node restarts from what is on disk",
        arguments: [1, 2, 3, 5, 8, 13, 21])
    func s10TornWrite(count: Int) {
        for seed in ciSeeds.prefix(2) {
            var sim = Simulator(seed: seed &+ UInt64(100 + count), validators: 4)
            sim.tornWrite = (node: count % 4, count: count)
            sim.start()
            sim.run(until: 15)
            #expect(sim.tornWrite == nil, "the torn write happened")
            if !sim.nodes[count % 4].alive { sim.restart(count % 4) }
            sim.run(until: 60)
            expectSafe(sim, "S10 write \(count)")
            #expect(sim.nodes.allSatisfy { $0.alive })
            #expect(sim.minHonestCommits >= 10)
        }
    }

    @Test("S12 lossy, duplicating, reordering links keep safety and liveness", arguments: ciSeeds)
    func s12Lossy(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4)
        sim.loss = 0.2
        sim.duplication = 0.1
        sim.minDelay = 0.001
        sim.maxDelay = 0.2
        sim.start()
        sim.run(until: 120)
        expectSafe(sim, "S12")
        #expect(sim.minHonestCommits >= 5)
    }

    @Test("S13 all validators restart at once; the chain resumes", arguments: ciSeeds)
    func s13AllRestart(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4)
        sim.start()
        sim.run(until: 10)
        let before = sim.minHonestCommits
        for i in sim.nodes.indices { sim.crash(i) }
        sim.run(until: 12)
        for i in sim.nodes.indices { sim.restart(i) }
        sim.run(until: 60)
        expectSafe(sim, "S13")
        #expect(sim.minHonestCommits > before + 10)
    }

    @Test("S19 the same seed gives the same trace")
    func s19Determinism() {
        func trace(_ seed: UInt64) -> [UInt8] {
            var sim = Simulator(seed: seed, validators: 4)
            sim.loss = 0.1
            sim.start()
            sim.run(until: 20)
            return sim.traceHasher
        }
        #expect(trace(9) == trace(9))
        #expect(trace(9) != trace(10))
    }
}
