import Consensus
import NodeCrypto
import Testing

/// Ranges of committed blocks taken from a simulated run (real blocks, QCs and
/// signatures), checked the way a node that is behind checks what a peer serves.
@Suite("Catch-up: range verification and the request state machine")
struct CatchUpTests {
    /// A committed chain from genesis, and a commit proof for block `i` (the QC its
    /// grandchild carries, which commits it when the rounds are consecutive).
    static func chain() -> (sim: Simulator, blocks: [Block]) {
        var sim = Simulator(seed: 11, validators: 4)
        sim.start()
        sim.run(until: 3)
        let node = sim.nodes[0]
        let blocks = node.committed.compactMap { node.disk.committedBlocks[$0] }
        return (sim, blocks)
    }

    func verify(
        _ sim: Simulator, _ blocks: ArraySlice<Block>, proof: QuorumCert, after: Hash32, state: Hash32,
        tamper: Bool = false
    ) -> String? {
        var current = state
        var ledger = sim  // the simulator's own execution (no epoch ends in these chains)
        return CatchUp.verifyRange(Array(blocks), proof: proof, after: after, config: sim.config) { block in
            current = ledger.execute(block, on: current).0
            return (tamper ? Hash32.of(current.bytes) : current, false)
        }
    }

    @Test("a valid range from genesis verifies; state ids chain through every QC")
    func validRange() throws {
        let (sim, blocks) = Self.chain()
        try #require(blocks.count >= 30)
        let proof = blocks[21].qc
        try #require(proof.voteInfo.parentID == blocks[19].id && proof.commitInfo.commitStateID != nil)
        #expect(
            verify(
                sim, blocks[0..<20], proof: proof, after: sim.config.genesisBlockID, state: sim.config.genesisStateID)
                == nil)
        // The next range starts from the verified tip.
        var state = sim.config.genesisStateID
        var ledger = sim
        for block in blocks[0..<20] { state = ledger.execute(block, on: state).0 }
        #expect(verify(sim, blocks[20..<25], proof: blocks[26].qc, after: blocks[19].id, state: state) == nil)
    }

    @Test("gaps, foreign tips, wrong state, unsigned or non-committing proofs are refused")
    func invalidRanges() throws {
        let (sim, blocks) = Self.chain()
        try #require(blocks.count >= 30)
        let genesis = (id: sim.config.genesisBlockID, state: sim.config.genesisStateID)
        let proof = blocks[11].qc
        // A gap: block 5 left out.
        let gap = Array(blocks[0..<5]) + Array(blocks[6..<10])
        #expect(
            verify(sim, gap[...], proof: proof, after: genesis.id, state: genesis.state)?.contains("extend") == true)
        // Not built on this node's tip.
        #expect(verify(sim, blocks[1..<10], proof: proof, after: genesis.id, state: genesis.state) != nil)
        // Execution that disagrees with the certified state ids.
        #expect(
            verify(sim, blocks[0..<10], proof: proof, after: genesis.id, state: genesis.state, tamper: true)?.contains(
                "certifies") == true)
        // A proof for another block.
        #expect(verify(sim, blocks[0..<10], proof: blocks[12].qc, after: genesis.id, state: genesis.state) != nil)
        // A proof with a forged signature.
        var signatures = proof.signatures
        let forged = Ed25519.PrivateKey().signature(for: [1, 2, 3])
        signatures[0] = SignerSignature(signer: signatures[0].signer, signature: forged)
        let bad = QuorumCert(voteInfo: proof.voteInfo, commitInfo: proof.commitInfo, signatures: signatures)
        #expect(
            verify(sim, blocks[0..<10], proof: bad, after: genesis.id, state: genesis.state)?.contains("valid QC")
                == true)
        // Too few signers.
        let thin = QuorumCert(
            voteInfo: proof.voteInfo, commitInfo: proof.commitInfo, signatures: Array(proof.signatures.prefix(2)))
        #expect(verify(sim, blocks[0..<10], proof: thin, after: genesis.id, state: genesis.state) != nil)
        #expect(verify(sim, [], proof: proof, after: genesis.id, state: genesis.state) == "empty range")
    }

    @Test("requests rotate over peers that are ahead; timeouts and bad ranges move to another peer")
    func stateMachine() {
        let a = Ed25519.PrivateKey().publicKey
        let b = Ed25519.PrivateKey().publicKey
        var catchUp = CatchUp()
        // A small lag is left to consensus.
        #expect(catchUp.statusReceived(from: a, height: 5, localHeight: 0, now: 0).isEmpty)
        #expect(!catchUp.syncing)
        // A large one starts catch-up from the next height.
        let first = catchUp.statusReceived(from: a, height: 500, localHeight: 0, now: 1)
        #expect(catchUp.syncing)
        #expect(first == [.request(peer: a, height: 1, count: CatchUp.maxRangeBlocks)])
        #expect(catchUp.statusReceived(from: b, height: 520, localHeight: 0, now: 1).isEmpty, "one request at a time")
        #expect(catchUp.isAwaited(from: a, height: 1) && !catchUp.isAwaited(from: b, height: 1))
        // Applied: the next range, from the other peer.
        let second = catchUp.applied(localHeight: 64, now: 2)
        guard case .request(let p2, 65, _)? = second.first else {
            Issue.record("expected a request at 65, got \(second)")
            return
        }
        // Times out: another peer is asked.
        let retry = catchUp.tick(localHeight: 64, now: 2 + CatchUp.requestTimeout)
        guard case .request(let p3, 65, _)? = retry.first else {
            Issue.record("expected a retry at 65, got \(retry)")
            return
        }
        #expect(p3 != p2)
        #expect(Set([p2, p3]) == Set([a, b]), "ranges come from both peers")
        // A bad range: penalty, the peer is dropped; with nobody left, no request.
        let bad = catchUp.failed(reason: "bad", localHeight: 64, now: 8)
        #expect(bad.first == .penalize(peer: p3, reason: "bad"))
        #expect(bad.count == 1, "the only other peer is excluded after its timeout")
        // Level with the target: back to consensus.
        _ = catchUp.statusReceived(from: p3, height: 520, localHeight: 520, now: 100)
        #expect(!catchUp.syncing)
    }

    @Test("a peer that claims a height it cannot serve is left out, and the node goes back to consensus")
    func falseHeight() {
        let liar = Ed25519.PrivateKey().publicKey
        let honest = Ed25519.PrivateKey().publicKey
        var catchUp = CatchUp()
        _ = catchUp.statusReceived(from: honest, height: 100, localHeight: 100, now: 0)
        #expect(catchUp.statusReceived(from: liar, height: .max, localHeight: 100, now: 0).count == 1)
        #expect(catchUp.syncing)
        // No answer: after the timeout the liar no longer counts.
        #expect(catchUp.tick(localHeight: 100, now: CatchUp.requestTimeout).isEmpty)
        #expect(!catchUp.syncing && catchUp.target == 100)
        // Its next claims are ignored while it is left out…
        #expect(catchUp.statusReceived(from: liar, height: .max, localHeight: 100, now: 10).isEmpty)
        #expect(!catchUp.syncing)
        // …and heard again afterwards.
        #expect(
            catchUp.statusReceived(from: liar, height: 200, localHeight: 100, now: 10 + CatchUp.exclusion).count == 1)
    }
}
