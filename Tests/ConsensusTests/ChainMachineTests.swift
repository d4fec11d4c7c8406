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

@Suite("Chain state machine: latency at low load")
struct ProposalLatencyTests {
    /// Runs an idle chain (leaders wait out a long block interval), then lets
    /// transactions arrive at `arrival`; returns when the first block carrying one
    /// committed at node 0, in seconds after the arrival.
    static func commitDelay(tellMachines: Bool, emptyEventsFirst: Int = 0) -> Double? {
        var sim = Simulator(seed: 31, validators: 4)
        sim.minBlockInterval = 0.9
        let arrival = 5.0
        sim.idlePoolUntil = arrival
        sim.start()
        sim.run(until: arrival - 0.01)
        // Events that bring nothing proposable (a peer's transactions with a sequence gap).
        for _ in 0..<emptyEventsFirst { sim.poolGrew() }
        sim.run(until: arrival)
        if tellMachines { sim.poolGrew() }
        var t = arrival
        while t < arrival + 3 {
            t += 0.01
            sim.run(until: t)
            let blocks = sim.nodes[0].committed.compactMap { sim.nodes[0].disk.committedBlocks[$0] }
            if blocks.contains(where: { !$0.payload.isEmpty }) { return t - arrival }
        }
        return nil
    }

    @Test("a leader waiting for transactions proposes as soon as they arrive, not at its block interval")
    func proposesOnArrival() throws {
        let told = try #require(Self.commitDelay(tellMachines: true))
        // Three message delays of the simulated network, far below the 0.9 s interval.
        #expect(told < 0.3, "committed \(told) s after the transactions arrived")
    }

    @Test("pool events are capped per waiting round: a flood of them costs a few scans, then the timer decides")
    func scansAreCappedPerRound() throws {
        let waited = try #require(Self.commitDelay(tellMachines: true, emptyEventsFirst: 4))
        #expect(waited > 0.3, "after four empty scans the leader waits for its interval: \(waited) s")
        let told = try #require(Self.commitDelay(tellMachines: true, emptyEventsFirst: 3))
        #expect(told < 0.3, "three empty scans leave one for the real arrival: \(told) s")
    }

    @Test("control: without the pool event the leader waits for its block interval")
    func waitsWithoutTheEvent() throws {
        let waited = try #require(Self.commitDelay(tellMachines: false))
        #expect(waited > 0.3, "committed \(waited) s after the transactions arrived")
    }
}

/// A chain store that no longer holds the blocks below `first` (pruned, or below the
/// snapshot the node joined by).
private struct PrunedBelow: ChainStoreReader {
    let base: Simulator.Disk
    let first: UInt64

    func committed(from height: UInt64, limit: Int) -> [CommittedRecord] {
        // What SQLite's `height >= ?` returns: the kept blocks from the first one on.
        base.committed(from: max(height, first), limit: limit)
    }
    func committed(id: Hash32) -> CommittedRecord? { base.committed(id: id) }
    func epochChange(endingAt height: UInt64) throws -> EpochChangeProof? { base.epochChange(endingAt: height) }
}

/// A chain store whose epoch record at one height is damaged.
private struct DamagedEpochRecord: ChainStoreReader {
    struct Damaged: Error {}
    let base: Simulator.Disk
    let height: UInt64

    func committed(from height: UInt64, limit: Int) -> [CommittedRecord] { base.committed(from: height, limit: limit) }
    func committed(id: Hash32) -> CommittedRecord? { base.committed(id: id) }
    func epochChange(endingAt height: UInt64) throws -> EpochChangeProof? {
        if height == self.height { throw Damaged() }
        return base.epochChange(endingAt: height)
    }
}

@Suite("Chain state machine: failure handling")
struct ChainMachineFailureTests {
    @Test("after a failed write the machine takes no more events (nothing unrecorded can leave)")
    func failedWriteStopsTheMachine() throws {
        var sim = Simulator(seed: 23, validators: 4)
        sim.start()
        sim.run(until: 3)
        var machine = sim.nodes[0].machine
        let inputs = Simulator.Machine.Inputs(now: 3, pool: [[1]], store: sim.nodes[0].disk)
        // A vote this validator recorded: a running machine would take it.
        let vote = try #require(sim.nodes[0].disk.safety?.lastVote)
        machine.fail("disk full")
        #expect(machine.halted == "disk full")
        #expect(try machine.tick(Simulator.Machine.Inputs(now: 100, pool: [[1]], store: sim.nodes[0].disk)).isEmpty)
        #expect(try machine.start(inputs).isEmpty)
        #expect(try machine.received(.vote(vote), directFrom: vote.sender, inputs).actions.isEmpty)
        #expect(machine.nextDeadline == nil)
    }

    @Test("a damaged epoch record ends a served range before it, instead of stopping the node")
    func damagedEpochRecordEndsTheRange() throws {
        var sim = Simulator(seed: 24, validators: 4)
        sim.start()
        sim.run(until: 4)
        let disk = sim.nodes[0].disk
        try #require(disk.records.count > 20)
        let whole = try #require(try Simulator.Machine.committedRange(store: disk, from: 1, count: 16))
        #expect(whole.blocks.count >= 16)
        let cut = try Simulator.Machine.committedRange(
            store: DamagedEpochRecord(base: disk, height: 10), from: 1, count: 16)
        let served = try #require(cut)
        #expect(served.blocks.count < 10, "nothing at or past the damaged record is served")
        #expect(served.blocks.map(\.id) == Array(whole.blocks.prefix(served.blocks.count)).map(\.id))
    }

    @Test("a node missing the heights asked for serves nothing, never a range starting higher up")
    func prunedHeightsAreNotServed() throws {
        var sim = Simulator(seed: 25, validators: 4)
        sim.start()
        sim.run(until: 4)
        let disk = sim.nodes[0].disk
        try #require(disk.records.count > 20)
        let pruned = PrunedBelow(base: disk, first: 10)
        #expect(try Simulator.Machine.committedRange(store: pruned, from: 3, count: 16) == nil)
        let kept = try #require(try Simulator.Machine.committedRange(store: pruned, from: 10, count: 4))
        let whole = try #require(try Simulator.Machine.committedRange(store: disk, from: 10, count: 4))
        #expect(kept.blocks.map(\.id) == whole.blocks.map(\.id))
    }
}
