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

    /// A commit QC from a simulated chain that proves a committed round, and the config
    /// that checks it.
    static func proof(minRound: Round = 30) throws -> (config: ConsensusConfig, qc: QuorumCert, round: Round) {
        let (sim, blocks) = chain()
        func proves(_ qc: QuorumCert) -> Bool {
            let consecutive = qc.voteInfo.round == qc.voteInfo.parentRound + 1
            return qc.commitInfo.commitStateID != nil && consecutive && qc.voteInfo.parentRound >= minRound
        }
        let found: QuorumCert? = blocks.map(\.qc).first(where: proves)
        let qc = try #require(found)
        return (sim.config, qc, qc.voteInfo.parentRound)
    }

    @Test("requests rotate over peers that are ahead; timeouts and bad ranges move to another peer")
    func stateMachine() throws {
        let (config, qc, proven) = try Self.proof()
        let a = Ed25519.PrivateKey().publicKey
        let b = Ed25519.PrivateKey().publicKey
        var catchUp = CatchUp()
        catchUp.enteredEpoch(config.epoch)
        func status(
            _ peer: ValidatorID, _ height: UInt64, local: UInt64, localRound: Round, _ now: Double
        )
            -> [CatchUp.Action]
        {
            catchUp.statusReceived(
                from: peer, height: height, epoch: config.epoch, proof: qc, localHeight: local, localRound: localRound,
                config: config, now: now)
        }
        // A small lag (proven: a few rounds) is left to consensus.
        #expect(status(a, 5, local: 0, localRound: proven - 5, 0).isEmpty)
        #expect(!catchUp.syncing)
        // A large one starts catch-up from the next height; the target is bounded by the
        // rounds the QC proves (no chain commits more blocks than rounds).
        let first = status(a, 500, local: 0, localRound: 0, 1)
        #expect(catchUp.syncing)
        #expect(catchUp.target == proven, "claimed 500, proven \(proven) rounds")
        #expect(first == [.request(peer: a, height: 1, count: UInt16(min(64, proven)))])
        #expect(status(b, 520, local: 0, localRound: 0, 1).isEmpty, "one request at a time")
        #expect(catchUp.isAwaited(from: a, height: 1) && !catchUp.isAwaited(from: b, height: 1))
        // Applied: the next range, from the other peer.
        let second = catchUp.applied(localHeight: 10, now: 2)
        guard case .request(let p2, 11, _)? = second.first else {
            Issue.record("expected a request at 11, got \(second)")
            return
        }
        // Times out: the silent peer is discouraged and another peer is asked.
        let retry = catchUp.tick(localHeight: 10, now: 2 + CatchUp.requestTimeout)
        #expect(retry.first == .discourage(peer: p2, reason: "did not serve the committed range it claimed"))
        guard case .request(let p3, 11, _)? = retry.last else {
            Issue.record("expected a retry at 11, got \(retry)")
            return
        }
        #expect(p3 != p2)
        #expect(Set([p2, p3]) == Set([a, b]), "ranges come from both peers")
        // A bad range: penalty, the peer is dropped; with nobody left, no request.
        let bad = catchUp.failed(reason: "bad", localHeight: 10, now: 8)
        #expect(bad.first == .penalize(peer: p3, reason: "bad"))
        #expect(bad.count == 1, "the only other peer is excluded after its timeout")
        // Level with what the peers prove: back to consensus.
        _ = status(p3, 520, local: 520, localRound: proven, 100)
        #expect(!catchUp.syncing)
    }

    /// Issue 14 §3: heights are believed only with a commit QC that proves them.
    @Test("claims without a proof are ignored; a forged proof is penalised; a claim cannot exceed the proven rounds")
    func unprovenHeights() throws {
        let (config, qc, proven) = try Self.proof()
        var catchUp = CatchUp()
        catchUp.enteredEpoch(config.epoch)
        let stranger = Ed25519.PrivateKey().publicKey
        // The attack: an unsigned status claiming a million blocks more, from a stranger.
        #expect(
            catchUp.statusReceived(
                from: stranger, height: 1_000_100, epoch: config.epoch, proof: nil, localHeight: 100,
                localRound: proven, config: config, now: 0
            ).isEmpty)
        #expect(!catchUp.syncing && catchUp.target == 0, "a claim without a proof does not stop consensus")
        // A proof of a round this node has committed already proves nothing new.
        #expect(
            catchUp.statusReceived(
                from: stranger, height: 1_000_100, epoch: config.epoch, proof: qc, localHeight: 100,
                localRound: proven, config: config, now: 0
            ).isEmpty)
        #expect(!catchUp.syncing)
        // A forged proof: penalised, and the peer is left out.
        var signatures = qc.signatures
        signatures[0] = SignerSignature(
            signer: signatures[0].signer, signature: Ed25519.PrivateKey().signature(for: [1]))
        let forged = QuorumCert(voteInfo: qc.voteInfo, commitInfo: qc.commitInfo, signatures: signatures)
        let actions = catchUp.statusReceived(
            from: stranger, height: 1_000_100, epoch: config.epoch, proof: forged, localHeight: 0, localRound: 0,
            config: config, now: 1)
        #expect(actions == [.penalize(peer: stranger, reason: "a chain status with an invalid commit QC")])
        #expect(!catchUp.syncing)
        // …even with a valid proof while it is left out.
        #expect(
            catchUp.statusReceived(
                from: stranger, height: 500, epoch: config.epoch, proof: qc, localHeight: 0, localRound: 0,
                config: config, now: 2
            ).isEmpty)
    }

    @Test("a peer a block ahead in a later epoch is probed while this node stays in consensus (seed 405757)")
    func laterEpochSmallGapProbes() throws {
        let (config, qc, proven) = try Self.proof()
        let byzantine = Ed25519.PrivateKey().publicKey
        var catchUp = CatchUp()
        catchUp.enteredEpoch(config.epoch)
        // The peer proves its tip with a commit QC of this epoch and says it is in the next.
        let asked = catchUp.statusReceived(
            from: byzantine, height: 20, epoch: config.epoch + 1, proof: qc, localHeight: 19,
            localRound: proven - 1, config: config, now: 0)
        #expect(!catchUp.syncing, "one block behind: consensus goes on (the honest set can finish the epoch)")
        #expect(asked == [.request(peer: byzantine, height: 20, count: 1)], "a probe for the missing block")
        // It never serves: discouraged, and this node never left consensus.
        let after = catchUp.tick(localHeight: 19, now: CatchUp.requestTimeout)
        #expect(after.first == .discourage(peer: byzantine, reason: "did not serve the committed range it claimed"))
        #expect(!catchUp.syncing)
    }

    @Test("a later epoch's unverifiable claim: one probe range while staying in consensus; silence is discouraged")
    func laterEpochProbe() throws {
        let (config, qc, _) = try Self.proof()
        var catchUp = CatchUp()
        catchUp.enteredEpoch(config.epoch - 1)  // this node is an epoch behind the QC
        var older = config
        older.epoch = config.epoch - 1
        let peer = Ed25519.PrivateKey().publicKey
        let probe = catchUp.statusReceived(
            from: peer, height: 1_000, epoch: config.epoch, proof: qc, localHeight: 50, localRound: 3, config: older,
            now: 0)
        #expect(probe == [.request(peer: peer, height: 51, count: CatchUp.maxRangeBlocks)])
        #expect(!catchUp.syncing, "an unproven claim never takes the node out of consensus")
        // Silent: discouraged and left out; no more requests.
        let silent = catchUp.tick(localHeight: 50, now: CatchUp.requestTimeout)
        #expect(silent == [.discourage(peer: peer, reason: "did not serve the committed range it claimed")])
        #expect(!catchUp.syncing)
        // Another peer's probe that verifies: the next range is asked for, and the node
        // still stays in consensus (the claim itself is never believed).
        let server = Ed25519.PrivateKey().publicKey
        _ = catchUp.statusReceived(
            from: server, height: 1_000, epoch: config.epoch, proof: qc, localHeight: 50, localRound: 3, config: older,
            now: 20)
        #expect(catchUp.isAwaited(from: server, height: 51))
        let after = catchUp.applied(localHeight: 114, now: 21)
        #expect(!catchUp.syncing)
        #expect(after == [.request(peer: server, height: 115, count: CatchUp.maxRangeBlocks)])
        // An answer that no longer fits (consensus committed meanwhile) proves nothing.
        let again = catchUp.superseded(localHeight: 116, now: 22)
        #expect(!catchUp.syncing && catchUp.target == 0)
        #expect(again == [.request(peer: server, height: 117, count: CatchUp.maxRangeBlocks)])
    }
}
