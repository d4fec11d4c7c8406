import Consensus
import Testing

/// The chain state machine as the simulator drives it: the order of its actions (what
/// a node signs is recorded before it leaves) and its refusal to go on when its own
/// execution disagrees with what a quorum certified.
@Suite("Chain state machine: durable before sent, halt on divergence")
struct ChainMachineTests {
    @Test("I4: every vote, timeout and proposal is on disk before it leaves, through crashes and restarts")
    func durableBeforeSent() {
        var sim = Simulator(seed: 21, validators: 4)
        sim.catchUpEnabled = true
        sim.loss = 0.05
        sim.crashAfterSafetyWrite = (node: 1, count: 17)
        sim.start()
        sim.run(until: 10)
        if !sim.nodes[1].alive { sim.restart(1) }
        sim.crash(3)
        sim.run(until: 20)
        sim.restart(3)
        sim.run(until: 30)
        #expect(sim.violations.isEmpty, "\(sim.violations.prefix(3))")
        #expect(!sim.forkDetected)
        #expect(sim.minHonestCommits > 50)
    }

    @Test("control: a driver that sends a step's messages before its writes is caught by I4")
    func durabilityControl() {
        var sim = Simulator(seed: 21, validators: 4)
        sim.sendsBeforeWrites = true
        sim.start()
        sim.run(until: 3)
        #expect(sim.violations.contains { $0.contains("before it was on disk") })
    }

    @Test("a node whose execution gives other state ids halts, naming both; the others go on")
    func divergentNodeHalts() throws {
        var sim = Simulator(seed: 22, validators: 4)
        sim.divergent = [2]
        sim.start()
        sim.run(until: 20)
        let halted = try #require(sim.nodes[2].machine.halted, "the divergent node halted")
        #expect(halted.contains("certif"), "the reason names the certified state: \(halted)")
        #expect(sim.nodes[2].committed.isEmpty, "it committed nothing on a state the others do not share")
        #expect(sim.nodes[2].machine.nextDeadline == nil, "a halted machine has nothing more to do")
        #expect(sim.violations.allSatisfy { $0.hasPrefix("node 2 diverged") }, "\(sim.violations.prefix(3))")
        #expect(!sim.forkDetected)
        for i in [0, 1, 3] {
            #expect(sim.nodes[i].committed.count > 10, "node \(i) kept committing (as with one validator down)")
        }
    }
}
