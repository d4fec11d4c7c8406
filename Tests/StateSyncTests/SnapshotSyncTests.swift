import Ledger
import NodeCrypto
import StateSync
import StateTree
import TestSupport
import Testing
import Wire

@testable import Consensus

/// A chain of two epochs with a snapshot in the second, built with real signatures: the
/// first epoch's validators commit its last block and hand over to a new set, whose QC
/// commits the snapshot block.
struct SnapshotFixture {
    let first = (0..<4).map { _ in Ed25519.PrivateKey() }
    let second = (0..<4).map { _ in Ed25519.PrivateKey() }
    let genesisConfig: ConsensusConfig
    let state: LedgerState
    let epochEnd: EpochEnd
    let descriptor: SnapshotDescriptor
    static let epochConfig: @Sendable (SystemState, Hash32, Hash32) -> ConsensusConfig = { system, block, state in
        ConsensusConfig(
            chainID: "c", epoch: system.epoch,
            validators: ValidatorSet(system.validators.map { Validator(id: $0.id, power: $0.power) }),
            genesisBlockID: block, genesisStateID: state)
    }

    static func qc(_ signers: [Ed25519.PrivateKey], epoch: Epoch, commits block: Block, state: Hash32) -> QuorumCert {
        let info = VoteInfo(
            blockID: Hash32.of(block.id.bytes), round: block.round + 1, parentID: block.id, parentRound: block.round,
            execStateID: state, epoch: epoch)
        let commit = LedgerCommitInfo(
            epoch: epoch, round: block.round + 1, commitStateID: state, voteInfoHash: info.hash)
        let message = SigningDomain(chainID: "c").message("vote", epoch: epoch, commit.bytes)
        return QuorumCert(
            voteInfo: info, commitInfo: commit,
            signatures: signers.prefix(3).map {
                SignerSignature(signer: $0.publicKey, signature: $0.signature(for: message))
            }
        )
    }

    static func system(_ keys: [Ed25519.PrivateKey], epoch: UInt64) -> SystemState {
        SystemState(
            epoch: epoch, epochLength: 1_000,
            validators: keys.enumerated().map {
                .init(
                    id: $0.element.publicKey, power: 1, bitcoinKey: [UInt8](repeating: UInt8($0.offset + 1), count: 32))
            })
    }

    init(accounts: Int = 3_000) {
        let genesisState = LedgerState(chainID: "c", balances: [:], system: Self.system(first, epoch: 1))
        genesisConfig = Self.epochConfig(genesisState.system!, .zero, Hash32(computed: genesisState.root))
        // The state at the end of epoch 1 names the second set (as a validator change would).
        var balances: [Ed25519.PublicKey: UInt64] = [:]
        for i in 0..<accounts {
            balances[try! Ed25519.PrivateKey(seed: BLAKE2b.hash256(Array("acct \(i)".utf8))).publicKey] = UInt64(i + 1)
        }
        // Forty blocks in: the state names height 40.
        var endState = LedgerState(chainID: "c", balances: balances, system: Self.system(second, epoch: 2))
        for _ in 0..<40 { _ = endState.executeBlock([], proposer: first[0].publicKey) }
        let endID = Hash32(computed: endState.root)
        let last = Block(
            epoch: 1, round: 40, author: first[0].publicKey, payload: [],
            qc: .genesis(epoch: 1, blockID: .zero, stateID: Hash32(computed: genesisState.root)))
        let (system, systemProof) = endState.proof(key: StateKey.system)
        epochEnd = EpochEnd(
            lastHeight: 40, lastBlock: last, stateID: endID,
            proof: EpochChangeProof(suffix: [], commitQC: Self.qc(first, epoch: 1, commits: last, state: endID)),
            system: system!, systemProof: systemProof, heightProof: endState.proof(key: StateKey.height).proof)
        // Sixty more (in epoch 2): the snapshot at height 100.
        var snapshotState = endState
        for _ in 0..<60 { _ = snapshotState.executeBlock([], proposer: second[0].publicKey) }
        state = snapshotState
        let stateID = Hash32(computed: snapshotState.root)
        let block = Block(
            epoch: 2, round: 9, author: second[0].publicKey, payload: [],
            qc: .genesis(epoch: 2, blockID: last.id, stateID: endID))
        descriptor = Self.descriptor(
            snapshotState, height: 100, block: block, qc: Self.qc(second, epoch: 2, commits: block, state: stateID))
    }

    /// A descriptor for `state` with the proofs of its height and validators.
    static func descriptor(
        _ state: LedgerState, height: UInt64, block: Block, qc: QuorumCert, stateID: Hash32? = nil
    ) -> SnapshotDescriptor {
        let (system, systemProof) = state.proof(key: StateKey.system)
        return SnapshotDescriptor(
            height: height, block: block, stateID: stateID ?? Hash32(computed: state.root), commitQC: qc,
            heightProof: state.proof(key: StateKey.height).proof, system: system ?? [], systemProof: systemProof)
    }

    func sync(_ options: SnapshotSync<Int>.Options = .init()) -> SnapshotSync<Int> {
        SnapshotSync(genesis: genesisConfig, epochConfig: Self.epochConfig, options: options)
    }

    /// An honest server over the fixture's state, optionally tampering with its answers.
    func serve(
        _ request: SnapshotMessage, limit: Int = 4_096,
        tamper: (ChunkRange, [StateLeaf], RangeProof) -> ([StateLeaf], RangeProof)? = { _, _, _ in nil }
    ) -> SnapshotMessage? {
        SnapshotServer.answer(
            request, newest: descriptor, epochEnds: { from in from == 1 ? [epochEnd] : [] },
            range: { height, range in
                guard height == descriptor.height else { return .unavailable }
                guard state.tree.count(under: range.prefix, depth: range.depth) <= limit else { return .tooLarge }
                let (leaves, proof) = state.tree.range(prefix: range.prefix, depth: range.depth)
                if let forged = tamper(range, leaves, proof) { return .leaves(forged.0, forged.1) }
                return .leaves(leaves, proof)
            })
    }
}

/// Runs a sync against in-memory peers until it finishes or `maxSteps` pass; a peer
/// answers through `server(peer, request)` (nil: silent).
struct Network {
    var sync: SnapshotSync<Int>
    var now = 0.0
    var discouraged: [Int: String] = [:]
    var persisted: [ChunkRange: [StateLeaf]] = [:]
    var target: VerifiedSnapshot?
    var finished: (VerifiedSnapshot, [StateLeaf])?
    var chunkRequests: [Int: Int] = [:]
    /// Requests sent to a peer after it was discouraged.
    var askedAfterDiscouraged = 0

    mutating func run(
        peers: [Int], server: (Int, SnapshotMessage) -> SnapshotMessage?,
        until stop: (Network) -> Bool = { _ in false },
        maxSteps: Int = 100_000
    ) {
        var inbox: [(Int, SnapshotMessage)] = []
        for p in peers { handle(sync.connected(p, now: now), &inbox, server) }
        var steps = 0
        while finished == nil, steps < maxSteps, !stop(self) {
            steps += 1
            now += 0.05
            if inbox.isEmpty {
                handle(sync.tick(now: now), &inbox, server)
                continue
            }
            let (from, message) = inbox.removeFirst()
            handle(sync.received(message, from: from, now: now), &inbox, server)
        }
    }

    mutating func handle(
        _ actions: [SnapshotSync<Int>.Action], _ inbox: inout [(Int, SnapshotMessage)],
        _ server: (Int, SnapshotMessage) -> SnapshotMessage?
    ) {
        for action in actions {
            switch action {
            case .send(let peer, let message):
                if case .getChunk = message { chunkRequests[peer, default: 0] += 1 }
                if discouraged[peer] != nil { askedAfterDiscouraged += 1 }
                // Every message crosses the wire encoding.
                let wire = message.encoded()
                guard let decoded = try? SnapshotMessage.decode(wire), let answer = server(peer, decoded) else {
                    continue
                }
                inbox.append((peer, try! SnapshotMessage.decode(answer.encoded())))
            case .discourage(let peer, let reason): discouraged[peer] = reason
            case .persistTarget(let t): target = t
            case .persistChunk(let range, let leaves): persisted[range] = leaves
            case .reset:
                target = nil
                persisted = [:]
            case .progress, .note: break
            case .finished(let t, let leaves): finished = (t, leaves)
            }
        }
    }
}

@Suite("Snapshot sync: a verified target, chunks proved on arrival, forged chunks caught, resume")
struct SnapshotSyncTests {
    let fixture = SnapshotFixture()

    func expectComplete(_ net: Network) throws {
        let (target, leaves) = try #require(net.finished)
        #expect(target.descriptor == fixture.descriptor)
        let restored = try LedgerState.restore(chainID: "c", version: 100, leaves: leaves)
        #expect(restored.root == fixture.descriptor.stateID.bytes, "the restored state's root is the certified one")
        #expect(restored.system == fixture.state.system)
        #expect(restored.accountCount == fixture.state.accountCount)
    }

    @Test("three honest peers: the epoch chain and QC verify, chunks come from all of them, the root matches")
    func honestSync() throws {
        var net = Network(sync: fixture.sync())
        net.run(peers: [1, 2, 3]) { _, request in fixture.serve(request) }
        try expectComplete(net)
        #expect(net.discouraged.isEmpty)
        #expect(net.chunkRequests.keys.sorted() == [1, 2, 3], "fetched in parallel from every peer")
    }

    @Test(
        "a peer serving one forged chunk is discouraged at that chunk and the sync completes from the others",
        arguments: ["changed value", "dropped leaf", "added leaf", "other range's proof", "empty"])
    func forgedChunk(kind: String) throws {
        var net = Network(sync: fixture.sync())
        var forgedRange: ChunkRange?
        var servedByForger = 0
        net.run(peers: [1, 2, 3]) { peer, request in
            fixture.serve(request) { range, leaves, proof in
                guard peer == 2 else { return nil }
                servedByForger += 1
                guard forgedRange == nil, leaves.count > 1 else { return nil }
                forgedRange = range
                switch kind {
                case "changed value":
                    var l = leaves
                    l[0] = StateLeaf(key: l[0].key, value: l[0].value.map { $0 ^ 1 })
                    return (l, proof)
                case "dropped leaf": return (Array(leaves.dropLast()), proof)
                case "added leaf":
                    return (
                        (leaves + [StateLeaf(key: Array("bank/x".utf8), value: [1])]).sorted {
                            $0.keyHash < $1.keyHash
                        }, proof
                    )
                case "other range's proof":
                    let other = fixture.state.tree.range(prefix: range.halves[0].prefix, depth: range.depth + 1)
                    return (other.leaves, other.proof)
                default: return ([], proof)
                }
            }
        }
        try expectComplete(net)
        #expect(net.discouraged.keys.sorted() == [2], "only the forger")
        #expect(net.discouraged[2]?.contains("\(forgedRange!)") == true, "named at the forged chunk")
        #expect(net.askedAfterDiscouraged == 0, "the forger is never asked again")
        #expect(servedByForger <= 4, "at most its window of requests was in flight")
    }

    @Test("a sync stopped halfway resumes from the kept chunks and asks only for the rest")
    func resume() throws {
        var first = Network(sync: fixture.sync())
        first.run(peers: [1, 2]) { _, request in
            fixture.serve(request)
        } until: {
            $0.persisted.count >= 20
        }
        #expect(first.finished == nil)
        let kept = first.persisted
        let target = try #require(first.target)
        var second = Network(sync: fixture.sync())
        _ = second.sync.resume(target, chunks: kept)
        second.run(peers: [1, 3]) { _, request in fixture.serve(request) }
        try expectComplete(second)
        let asked = second.chunkRequests.values.reduce(0, +)
        #expect(asked == 64 - kept.count, "no verified chunk is fetched again: \(asked) requests, \(kept.count) kept")
    }

    @Test("busy answers (epoch ends and chunks) are retried, not held against a peer; a late answer is ignored")
    func busyAndLate() throws {
        final class Counter: @unchecked Sendable { var epochAsks = 0, chunkAsks = 0 }
        let counter = Counter()
        var net = Network(sync: fixture.sync())
        net.run(peers: [1]) { _, request in
            switch request {
            case .getEpochEnds:
                counter.epochAsks += 1
                if counter.epochAsks <= 2 { return .epochEnds([]) }  // busy twice
                return fixture.serve(request)
            case .getChunk(let h, let p, let d):
                counter.chunkAsks += 1
                if counter.chunkAsks % 3 == 0 { return .chunk(height: h, prefix: p, depth: d, .busy) }
                return fixture.serve(request)
            default: return fixture.serve(request)
            }
        }
        try expectComplete(net)
        #expect(net.discouraged.isEmpty, "\(net.discouraged)")
        #expect(counter.epochAsks >= 3)

        // A late answer to an earlier request (ends of a later epoch) is ignored, not a lie.
        var sync = fixture.sync()
        _ = sync.connected(1, now: 0)
        // The only peer answered: its offer is taken at once.
        let asked = sync.received(.snapshot(fixture.descriptor), from: 1, now: 0.1)
        #expect(asked.contains { if case .send(1, .getEpochEnds(from: 1)) = $0 { true } else { false } })
        let stale = EpochEnd(
            lastHeight: 90, lastBlock: fixture.descriptor.block, stateID: fixture.descriptor.stateID,
            proof: fixture.epochEnd.proof, system: fixture.epochEnd.system, systemProof: fixture.epochEnd.systemProof,
            heightProof: fixture.epochEnd.heightProof)
        let ignored = sync.received(.epochEnds([stale]), from: 1, now: 3.1)
        #expect(!ignored.contains { if case .discourage = $0 { true } else { false } })
        let adopted = sync.received(.epochEnds([fixture.epochEnd]), from: 1, now: 3.2)
        #expect(
            adopted.contains { if case .persistTarget = $0 { true } else { false } }, "the real answer still counts")
    }

    @Test("a range too large for one answer is split until it fits; a peer that claims so falsely is caught")
    func splits() throws {
        // 5,000 accounts from one range: more than one answer carries.
        let big = SnapshotFixture(accounts: 5_000)
        var options = SnapshotSync<Int>.Options()
        options.initialDepth = 0
        var net = Network(sync: big.sync(options))
        net.run(peers: [1, 2]) { _, request in big.serve(request) }
        let (_, leaves) = try #require(net.finished)
        #expect(leaves.count == big.state.tree.count && net.discouraged.isEmpty)
        #expect(net.persisted.count >= 2, "split into halves")
        #expect(net.persisted.values.allSatisfy { $0.count <= SnapshotMessage.maxChunkLeaves })

        // A peer that answers "too large" to everything is found out when the halves come
        // back small from the other peer, and the sync completes.
        var lied = Network(sync: fixture.sync())
        lied.run(peers: [1, 2]) { peer, request in
            if peer == 1, case .getChunk(let h, let p, let d) = request {
                return .chunk(height: h, prefix: p, depth: d, .tooLarge)
            }
            return fixture.serve(request)
        }
        try expectComplete(lied)
        #expect(lied.discouraged.keys.sorted() == [1], "\(lied.discouraged)")
    }

    @Test("a forged offer (foreign signers, a wrong state id, a forged epoch end) is discouraged; the honest one wins")
    func forgedOffers() throws {
        let strangers = (0..<4).map { _ in Ed25519.PrivateKey() }
        let wrongState = Hash32.of([1])
        let forgedQC = SnapshotFixture.qc(
            strangers, epoch: 2, commits: fixture.descriptor.block, state: fixture.descriptor.stateID)
        let d = fixture.descriptor
        let lies: [(SnapshotDescriptor, [EpochEnd])] = [
            (SnapshotFixture.descriptor(fixture.state, height: 100, block: d.block, qc: forgedQC), [fixture.epochEnd]),
            (
                SnapshotFixture.descriptor(
                    fixture.state, height: 100, block: d.block, qc: d.commitQC, stateID: wrongState),
                [fixture.epochEnd]
            ),
            // A true snapshot under another height: the state names 100.
            (
                SnapshotFixture.descriptor(fixture.state, height: 5_000, block: d.block, qc: d.commitQC),
                [fixture.epochEnd]
            ),
            (
                // The liar names its own validators for epoch 2 (a system value the proof does not cover).
                SnapshotFixture.descriptor(
                    fixture.state, height: 100, block: d.block,
                    qc: SnapshotFixture.qc(strangers, epoch: 2, commits: d.block, state: d.stateID)),
                [
                    EpochEnd(
                        lastHeight: 40, lastBlock: fixture.epochEnd.lastBlock, stateID: fixture.epochEnd.stateID,
                        proof: fixture.epochEnd.proof, system: SnapshotFixture.system(strangers, epoch: 2).encoded,
                        systemProof: fixture.epochEnd.systemProof, heightProof: fixture.epochEnd.heightProof)
                ]
            ),
            // The end of an epoch offered as a snapshot: its state already names the next set.
            (
                SnapshotDescriptor(
                    height: 40, block: fixture.epochEnd.lastBlock, stateID: fixture.epochEnd.stateID,
                    commitQC: fixture.epochEnd.proof.commitQC, heightProof: fixture.epochEnd.heightProof,
                    system: fixture.epochEnd.system, systemProof: fixture.epochEnd.systemProof), []
            ),
        ]
        for (descriptor, ends) in lies {
            var net = Network(sync: fixture.sync())
            let server: (Int, SnapshotMessage) -> SnapshotMessage? = { peer, request in
                guard peer == 1 else { return fixture.serve(request) }
                switch request {
                case .getSnapshot: return .snapshot(descriptor)
                case .getEpochEnds: return .epochEnds(ends)
                default: return fixture.serve(request)
                }
            }
            // The liar alone first (so its offer is the one tried), then an honest peer.
            net.run(peers: [1], server: server, until: { !$0.discouraged.isEmpty }, maxSteps: 2_000)
            #expect(net.discouraged.keys.sorted() == [1], "\(descriptor.height): \(net.discouraged)")
            net.run(peers: [2], server: server)
            try expectComplete(net)
            #expect(net.discouraged.keys.sorted() == [1], "\(net.discouraged)")
        }
    }

    @Test("every message round-trips; every truncation is a decode error")
    func messages() throws {
        let (leaves, proof) = fixture.state.tree.range(prefix: .placeholder, depth: 9)
        let all: [SnapshotMessage] = [
            .getSnapshot, .snapshot(nil), .snapshot(fixture.descriptor), .getEpochEnds(from: 1),
            .epochEnds([fixture.epochEnd]),
            .getChunk(height: 100, prefix: .placeholder, depth: 9),
            .chunk(height: 100, prefix: .placeholder, depth: 9, .leaves(leaves, proof)),
            .chunk(height: 100, prefix: .placeholder, depth: 9, .tooLarge),
            .chunk(height: 100, prefix: .placeholder, depth: 9, .unavailable),
        ]
        for m in all {
            let bytes = m.encoded()
            #expect(try SnapshotMessage.decode(bytes) == m)
            for n in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
                #expect(throws: WireError.self) { try SnapshotMessage.decode(Array(bytes.prefix(n))) }
            }
        }
        // A prefix with bits past its depth is refused.
        var bad = SnapshotMessage.getChunk(height: 1, prefix: .placeholder, depth: 1).encoded()
        bad[bad.count - 1] = 1
        #expect(throws: WireError.self) { try SnapshotMessage.decode(bad) }
    }

    @Test(
        "a certified proof verifies from the genesis alone; every flipped bit (one in three tried) is refused, heights included"
    )
    func certifiedProof() throws {
        let account = StateKey.account(
            try Ed25519.PrivateKey(seed: BLAKE2b.hash256(Array("acct 7".utf8))).publicKey.rawRepresentation)
        let absent = StateKey.account([UInt8](repeating: 9, count: 32))
        for key in [account, absent] {
            let (value, proof) = fixture.state.proof(key: key)
            #expect((value != nil) == (key == account))
            let certified = CertifiedProof(
                root: fixture.descriptor, epochEnds: [fixture.epochEnd], key: key, value: value, proof: proof)
            let bytes = certified.encoded
            let decoded = try CertifiedProof.decode(bytes)
            #expect(decoded == certified)
            guard
                case .success = decoded.verify(genesis: fixture.genesisConfig, epochConfig: SnapshotFixture.epochConfig)
            else {
                Issue.record("the honest proof does not verify")
                continue
            }
            // Claiming another value, or absence, fails.
            let lie = CertifiedProof(
                root: fixture.descriptor, epochEnds: [fixture.epochEnd], key: key, value: value == nil ? [1] : nil,
                proof: proof)
            guard case .failure = lie.verify(genesis: fixture.genesisConfig, epochConfig: SnapshotFixture.epochConfig)
            else {
                Issue.record("a false value verified")
                continue
            }
            for bit in stride(from: 0, to: bytes.count * 8, by: 3) {
                var flipped = bytes
                flipped[bit / 8] ^= 1 << UInt8(bit % 8)
                guard let forged = try? CertifiedProof.decode(flipped),
                    case .success = forged.verify(
                        genesis: fixture.genesisConfig, epochConfig: SnapshotFixture.epochConfig)
                else { continue }
                Issue.record("bit \(bit) flipped still verifies")
            }
        }
    }
}
