import Consensus
import Foundation
import TestSupport
import Testing

/// Random seeds over a mixed fault schedule, half of them with short epochs. Runs only when SIDENODE_SIM_SEEDS is set
/// (scripts/sim-campaign.sh); the fixed-seed scenarios cover CI.
@Suite("Simulation campaign")
struct CampaignTests {
    static var seedCount: Int { Int(ProcessInfo.processInfo.environment["SIDENODE_SIM_SEEDS"] ?? "") ?? 0 }
    static var firstSeed: UInt64 { UInt64(ProcessInfo.processInfo.environment["SIDENODE_SIM_BASE"] ?? "") ?? 1000 }

    @Test(.enabled(if: seedCount > 0))
    func campaign() {
        var failures: [String] = []
        let start = Date()
        for offset in 0..<Self.seedCount {
            let seed = Self.firstSeed + UInt64(offset)
            var rng = SimRNG(state: seed)
            var sim = Simulator(seed: seed, validators: 4)
            sim.loss = Double(rng.next() % 15) / 100
            sim.duplication = Double(rng.next() % 10) / 100
            sim.maxDelay = 0.01 + Double(rng.next() % 200) / 1000
            // Half the seeds change epoch every 10–59 blocks (with catch-up, which a node
            // that missed an epoch's last QC needs, as in the node).
            if rng.next() % 2 == 0 {
                sim.catchUpEnabled = true
                sim.epochLength = 10 + Int(rng.next() % 50)
            }
            let victim = Int(rng.next() % 4)
            if rng.next() % 2 == 0 { sim.crashAfterSafetyWrite = (node: victim, count: Int(rng.next() % 30) + 1) }
            sim.start()
            sim.run(until: 10)
            if rng.next() % 2 == 0 {
                let a = Int(rng.next() % 4)
                sim.partition = [Set([a]), Set((0..<4).filter { $0 != a })]
                sim.run(until: 20)
                sim.partition = nil
            }
            if !sim.nodes[victim].alive { sim.restart(victim) }
            // Heal: a clean network for the liveness check (timeouts back off to 5 s at
            // most, so 10 s is enough to re-synchronise and 10 s more must bring commits).
            sim.loss = 0
            sim.duplication = 0
            sim.run(until: 30)
            let before = sim.minHonestCommits
            sim.run(until: 40)
            if sim.forkDetected || !sim.violations.isEmpty {
                failures.append("seed \(seed): safety: fork=\(sim.forkDetected) \(sim.violations.prefix(2))")
            } else if sim.minHonestCommits <= before {
                failures.append("seed \(seed): no progress after healing (\(before) commits)")
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        print(
            "campaign: \(Self.seedCount) seeds from \(Self.firstSeed), \(failures.count) failed, \(String(format: "%.1f", elapsed)) s"
        )
        for f in failures.prefix(20) { print("  \(f)") }
        #expect(failures.isEmpty)
    }
}
