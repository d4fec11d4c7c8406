import Consensus
import Testing

/// S16 from research §4.3: epoch changes that add and remove validators, with a node
/// offline across two of them, on the simulator with catch-up running as in the node.
@Suite("Epochs (S16)")
struct EpochScenarioTests {
    func signers(_ qc: QuorumCert) -> Set<ValidatorID> { Set(qc.signatures.map(\.signer)) }

    @Test(
        "S16 a validator is added, then one removed, at epoch boundaries; a node offline across both catches up and votes",
        arguments: [1, 2, 3] as [UInt64])
    func s16AddRemoveOffline(seed: UInt64) throws {
        // Nodes 0–3 validate; node 4 follows until it is added.
        var sim = Simulator(seed: seed, validators: 4, fullNodes: 1)
        sim.catchUpEnabled = true
        sim.epochLength = 400  // epochs also end by length
        let ids = sim.keys.map(\.publicKey)
        sim.start()
        sim.run(until: 3)
        sim.crash(3)
        sim.run(until: 5)
        sim.scheduledChanges[1] = [0, 1, 2, 3, 4]  // epoch 1: add node 4
        sim.run(until: 12)
        sim.scheduledChanges[2] = [1, 2, 3, 4]  // epoch 2: remove node 0
        sim.run(until: 25)
        let epoch2 = try #require(sim.configs[2])
        let epoch3 = try #require(sim.configs[3])
        #expect(epoch2.validators.contains(ids[4]) && epoch2.validators.validators.count == 5)
        #expect(!epoch3.validators.contains(ids[0]) && epoch3.validators.validators.count == 4)
        for i in [0, 1, 2, 4] { #expect(sim.nodes[i].core.config.epoch >= 3, "node \(i) reached epoch 3") }
        #expect(sim.nodes[3].core.config.epoch == 1, "the offline node is still in epoch 1")

        // The offline node comes back two epoch changes later.
        let heightBefore = sim.committedCount(3)
        sim.restart(3)
        sim.run(until: 45)
        expectSafe(sim)
        #expect(sim.nodes[3].caughtUp > 0, "node 3 synced by verified ranges")
        #expect(sim.nodes[3].core.config.epoch == sim.nodes[1].core.config.epoch, "node 3 is in the current epoch")
        #expect(sim.committedCount(3) > heightBefore + 100)

        // Who formed quorums in which epoch.
        let qcs = sim.committedQCs
        #expect(qcs.contains { $0.commitInfo.epoch == 2 && signers($0).contains(ids[4]) }, "the new validator signs")
        #expect(
            !qcs.contains { $0.commitInfo.epoch >= 3 && signers($0).contains(ids[0]) },
            "the removed validator never helps form a quorum")
        #expect(!qcs.contains { $0.commitInfo.epoch == 1 && signers($0).contains(ids[4]) })
        let current = sim.nodes[1].core.config.epoch
        #expect(
            qcs.contains { $0.commitInfo.epoch == current && signers($0).contains(ids[3]) },
            "node 3 votes again after catching up")
        // Every node agrees on every epoch's configuration (checked by the simulator on
        // each switch) and on the committed chain.
        let heights = [1, 2, 3, 4].map { sim.committedCount($0) }
        #expect(heights.max()! - heights.min()! < 20)
        #expect(sim.nodes[0].core.config.validators.contains(ids[0]) == false, "node 0 now follows as a full node")
    }

    @Test(
        "epochs that end by length alone: every node switches at the same block, across restarts, without stalls",
        arguments: [4, 5] as [UInt64])
    func epochsByLength(seed: UInt64) {
        var sim = Simulator(seed: seed, validators: 4)
        sim.catchUpEnabled = true
        sim.epochLength = 25
        sim.start()
        sim.run(until: 10)
        for i in 0..<4 { sim.crash(i) }
        for i in 0..<4 { sim.restart(i) }
        let epochAtRestart = sim.nodes[0].core.config.epoch
        sim.run(until: 20)
        expectSafe(sim)
        let epochs = Set(sim.nodes.map(\.core.config.epoch))
        // A node may be a message or two from entering the epoch another has entered.
        #expect(epochs.max()! - epochs.min()! <= 1, "\(sim.nodes.map(\.core.config.epoch))")
        #expect(epochs.min()! >= epochAtRestart + 6, "epochs keep changing quickly after the restart")
        #expect(sim.minHonestCommits >= 25 * 4)
    }

    @Test("an epoch's last range verifies only with its epoch-change proof; a range may not cross an epoch's end")
    func epochChangeProofs() throws {
        var sim = Simulator(seed: 8, validators: 4)
        sim.catchUpEnabled = true  // nodes that miss an epoch's last QC fetch its proof
        sim.epochLength = 10
        sim.start()
        sim.run(until: 4)
        let node = sim.nodes[0]
        let blocks = node.committed.compactMap { node.disk.committedBlocks[$0] }
        try #require(blocks.count >= 25)
        let end = blocks[9]  // the 10th block ends epoch 1
        let proof = try #require(node.disk.epochProofs[end.id])
        // With lost messages, some epochs end by a QC over a later suffix block.
        // Which seed loses the right message is luck: try a few (each run checked).
        var withSuffix: [EpochChangeProof] = []
        for seed in UInt64(8)..<20 where withSuffix.isEmpty {
            var lossy = Simulator(seed: seed, validators: 4)
            lossy.catchUpEnabled = true
            lossy.epochLength = 10
            lossy.loss = 0.1
            lossy.start()
            lossy.run(until: 20)
            withSuffix = lossy.nodes.flatMap { $0.disk.epochProofs.values }.filter { !$0.suffix.isEmpty }
            #expect(lossy.violations.isEmpty && !lossy.forkDetected, "every such proof verified (oracle)")
        }
        #expect(!withSuffix.isEmpty, "an epoch-change proof with a suffix")
        var state = sim.config.genesisStateID
        var ledger = sim
        let range = Array(blocks[0..<10])
        func verify(_ blocks: [Block], proof: QuorumCert, suffix: [Block]) -> String? {
            var s = state
            var l = ledger
            return CatchUp.verifyRange(
                blocks, proof: proof, suffix: suffix, after: sim.config.genesisBlockID, config: sim.config
            ) {
                let (next, ends) = l.execute($0, on: s)
                s = next
                return (next, ends)
            }
        }
        #expect(verify(range, proof: proof.commitQC, suffix: proof.suffix) == nil)
        // Without the suffix (when there is one), or with a tampered suffix block, it fails.
        if !proof.suffix.isEmpty {
            #expect(verify(range, proof: proof.commitQC, suffix: []) != nil)
            let b = proof.suffix[0]
            let forged = Block(epoch: b.epoch, round: b.round, author: b.author, payload: [[1]], qc: b.qc)
            #expect(verify(range, proof: proof.commitQC, suffix: [forged] + proof.suffix.dropFirst()) != nil)
        }
        // Going past the end of the epoch in one range is refused.
        let next = blocks[10]
        #expect(next.epoch == 2)
        #expect(verify(Array(blocks[0..<11]), proof: proof.commitQC, suffix: []) != nil)
        // The next epoch's blocks verify against epoch 2's configuration only.
        for block in range { (state, _) = ledger.execute(block, on: state) }
        let epoch2 = try #require(sim.configs[2])
        #expect(epoch2.genesisBlockID == end.id && epoch2.genesisStateID == state)
        let nextProof = try #require(node.disk.epochProofs[blocks[19].id])
        var s2 = state
        let problem = CatchUp.verifyRange(
            Array(blocks[10..<20]), proof: nextProof.commitQC, suffix: nextProof.suffix, after: end.id, config: epoch2
        ) {
            let (n, e) = ledger.execute($0, on: s2)
            s2 = n
            return (n, e)
        }
        #expect(problem == nil)
        #expect(
            CatchUp.verifyRange(
                Array(blocks[10..<20]), proof: nextProof.commitQC, suffix: nextProof.suffix, after: end.id,
                config: sim.config, execute: { _ in (.zero, false) }) != nil,
            "epoch 1's validators cannot vouch for epoch 2")
    }

    func expectSafe(_ sim: Simulator) {
        #expect(!sim.forkDetected, "committed sequences diverged")
        #expect(sim.violations.isEmpty, "\(sim.violations.prefix(3))")
    }
}
