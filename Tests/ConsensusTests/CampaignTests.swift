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

    @Test(.enabled(if: ProcessInfo.processInfo.environment["SIDENODE_SIM_DEBUG"] != nil))
    func debugSeeds() {
        let seeds = (ProcessInfo.processInfo.environment["SIDENODE_SIM_DEBUG"] ?? "").split(separator: ",").compactMap {
            UInt64($0)
        }
        for seed in seeds {
            print("full:", Self.run(seed: seed, trace: true) ?? "ok")
            for knob in [
                "adversary", "spoof", "replay", "inflate", "spam", "lie", "refuse", "oversized", "skew", "cuts",
            ] {
                print("without \(knob):", Self.run(seed: seed, disable: [knob]) ?? "ok")
            }
        }
    }

    @Test(.enabled(if: seedCount > 0))
    func campaign() {
        var failures: [String] = []
        let start = Date()
        for offset in 0..<Self.seedCount {
            let seed = Self.firstSeed + UInt64(offset)
            if let failure = Self.run(seed: seed) { failures.append("seed \(seed): \(failure)") }
        }
        let elapsed = Date().timeIntervalSince(start)
        print(
            "campaign: \(Self.seedCount) seeds from \(Self.firstSeed), \(failures.count) failed, \(String(format: "%.1f", elapsed)) s"
        )
        for f in failures.prefix(20) { print("  \(f)") }
        #expect(failures.isEmpty)
    }

    /// One seed: 4, 7 or 10 validators, equal or unequal power; an adversary holding less
    /// than a third of the power with a random set of attacks (spoofing, forgery, replay,
    /// inflated TCs, future-round spam, false heights, refusing to serve, oversized
    /// blocks); skewed clocks and links cut one way; loss, duplication and delay; a crash
    /// right after a safety write; a minority partition; short epochs in some seeds. The
    /// oracles: agreement, vote monotonicity, commit justification, and progress after
    /// healing (the adversary keeps attacking). Returns why the seed failed, or nil.
    static func run(seed: UInt64, disable: Set<String> = [], trace: Bool = false) -> String? {
        var rng = SimRNG(state: seed)
        let n = [4, 7, 10][Int(rng.next() % 3)]
        let unequal = rng.next() % 2 == 0
        let powers: [UInt64] = (0..<n).map { _ in unequal ? 1 + rng.next() % 4 : 1 }
        var sim = Simulator(seed: seed, validators: n, powers: powers)
        sim.loss = Double(rng.next() % 15) / 100
        sim.duplication = Double(rng.next() % 10) / 100
        sim.maxDelay = 0.01 + Double(rng.next() % 200) / 1000
        // Short epochs only with equal power (the simulated ledger's later epochs give
        // every validator power 1, which would hand a Byzantine minority by power more).
        if !unequal && rng.next() % 2 == 0 {
            sim.epochLength = 10 + Int(rng.next() % 50)
        }
        sim.catchUpEnabled = true
        // The adversary: nodes taken in a random order while they stay under a third.
        let total = powers.reduce(0, +)
        var byzantine: Set<Int> = []
        var held: UInt64 = 0
        for i in (0..<n).shuffled(using: &rng) where (held + powers[i]) * 3 < total && rng.next() % 3 != 0 {
            if !unequal && (byzantine.count + 1) * 3 >= n { break }
            byzantine.insert(i)
            held += powers[i]
        }
        if !byzantine.isEmpty {
            var adversary = Adversary()
            adversary.nodes = byzantine
            adversary.spoof = rng.next() % 2 == 0
            adversary.replay = rng.next() % 2 == 0
            adversary.inflateTimeouts = rng.next() % 2 == 0
            adversary.futureSpam = rng.next() % 2 == 0
            adversary.lieAboutHeight = rng.next() % 2 == 0
            adversary.refuseToServe = rng.next() % 2 == 0
            adversary.oversized = rng.next() % 2 == 0
            if disable.contains("spoof") { adversary.spoof = false }
            if disable.contains("replay") { adversary.replay = false }
            if disable.contains("inflate") { adversary.inflateTimeouts = false }
            if disable.contains("spam") { adversary.futureSpam = false }
            if disable.contains("lie") { adversary.lieAboutHeight = false }
            if disable.contains("refuse") { adversary.refuseToServe = false }
            if disable.contains("oversized") { adversary.oversized = false }
            if disable.contains("adversary") { adversary.nodes = [] }
            if trace { print("seed \(seed): n=\(n) powers=\(powers) byz=\(byzantine.sorted()) adversary=\(adversary)") }
            sim.corrupt(adversary)
        }
        let honest = (0..<n).filter { !byzantine.contains($0) }
        for i in honest where rng.next() % 4 == 0 { sim.clockSkew[i] = 0.5 + Double(rng.next() % 150) / 100 }
        for _ in 0..<Int(rng.next() % 4) {
            let a = Int(rng.next() % UInt64(n))
            let b = Int(rng.next() % UInt64(n))
            if a != b { sim.cutLinks.insert([a, b]) }
        }
        let victim = honest[Int(rng.next() % UInt64(honest.count))]
        if rng.next() % 2 == 0 { sim.crashAfterSafetyWrite = (node: victim, count: Int(rng.next() % 30) + 1) }
        if disable.contains("skew") { sim.clockSkew = [:] }
        if disable.contains("cuts") { sim.cutLinks = [] }
        if trace {
            print("  skew=\(sim.clockSkew) cuts=\(sim.cutLinks) loss=\(sim.loss) epochLength=\(sim.epochLength)")
        }
        sim.printMessages = trace && ProcessInfo.processInfo.environment["SIDENODE_SIM_MESSAGES"] != nil
        sim.start()
        if trace {
            for t in 1...10 {
                sim.run(until: Double(t))
                let c = sim.nodes[0].core
                print(
                    "  t=\(t) r=\(sim.nodes.map { $0.core.currentRound }) hqc=\(sim.nodes.map { $0.core.highQC.round }) commits=\(sim.nodes.map { $0.committed.count }) leader(r)=\(sim.nodes.firstIndex { $0.key.publicKey == c.leader(of: c.currentRound) }!) tcs=\(sim.proposalsWithTC)"
                )
            }
        }
        sim.run(until: 10)
        if trace {
            print(
                "  t=10 commits=\(sim.minHonestCommits) rounds=\(sim.nodes.map { $0.core.currentRound }) syncing=\(sim.nodes.map { $0.catchUp.syncing })"
            )
        }
        if rng.next() % 2 == 0 {
            let a = honest[Int(rng.next() % UInt64(honest.count))]
            sim.partition = [Set([a]), Set((0..<n).filter { $0 != a })]
            sim.run(until: 20)
            sim.partition = nil
        }
        // The crash may not have come yet: none after this point, and the victim is back.
        sim.crashAfterSafetyWrite = nil
        if !sim.nodes[victim].alive { sim.restart(victim) }
        // Heal: a clean network for the liveness check, which counts rounds rather than
        // seconds: a commit needs three consecutive rounds led by honest validators, which
        // the rotation brings within two cycles of n rounds, and a failed round lasts at most
        // the largest timeout (5 s, twice that on a clock running at half speed). Seeds that
        // commit at once end at once.
        sim.loss = 0
        sim.duplication = 0
        sim.cutLinks = []
        sim.run(until: 30)
        let before = sim.minHonestCommits
        let slowest = honest.map { sim.clockSkew[$0] ?? 1 }.max() ?? 1
        let maxTimeout = sim.config.baseTimeout * pow(sim.config.timeoutBackoff, Double(sim.config.maxBackoffExponent))
        let deadline = 30 + Double(2 * n + 4) * maxTimeout * max(1, slowest)
        var t = 30.0
        while sim.minHonestCommits <= before && t < deadline {
            t += 1
            sim.run(until: t)
            if trace {
                print(
                    "  t=\(t) r=\(sim.nodes.map { $0.core.currentRound }) e=\(sim.nodes.map { $0.core.config.epoch }) commits=\(sim.nodes.map { $0.committed.count }) syncing=\(sim.nodes.map { $0.catchUp.syncing })"
                )
            }
        }
        // A little more, so that whatever the commit set off (catch-up, an epoch) is checked too.
        sim.run(until: t + 5)
        if sim.forkDetected || !sim.violations.isEmpty {
            return "safety: fork=\(sim.forkDetected) \(sim.violations.prefix(2))"
        }
        if sim.minHonestCommits <= before {
            return "no progress after healing (\(before) commits; n=\(n), byzantine \(byzantine.sorted()))"
        }
        return nil
    }
}
