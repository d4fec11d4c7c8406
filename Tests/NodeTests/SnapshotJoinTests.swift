import Consensus
import Foundation
import Gossip
import Ledger
import Logging
import NodeCrypto
import StateSync
import StateTree
import Storage
import TestSupport
import Testing

@testable import Node

/// The node's side of a snapshot download, on a real consensus store: what it keeps as
/// it goes, a restart in the middle, the install, and a node started on the result.
@Suite("Joining by snapshot: the download kept in consensus.sqlite, resumed after a restart, installed")
struct SnapshotJoinTests {
    let validators = (0..<4).map { _ in Ed25519.PrivateKey() }
    let funder = Ed25519.PrivateKey()

    var genesis: Genesis {
        Genesis(
            chainID: "c", genesisTime: 0, epochLength: 1_000,
            validators: validators.enumerated().map {
                .init(
                    node_id: $0.element.publicKey.hex, power: 1,
                    bitcoin_xonly: [UInt8](repeating: UInt8($0.offset + 1), count: 32).hex)
            }, balances: [funder.publicKey.hex: 1_000_000])
    }

    /// The chain's state after one block paying 3,000 new accounts, and the QC (signed by
    /// three of the four validators) that commits it at height 7.
    func snapshot() -> (LedgerState, SnapshotDescriptor) {
        var state = genesis.initialState
        for _ in 0..<6 { _ = state.executeBlock([], proposer: validators[0].publicKey) }  // heights 1…6
        let payload = (1...3_000).map { seq in
            Transaction(
                chainID: "c", author: funder, seq: UInt64(seq), fee: 0,
                payload: .transfer(to: Ed25519.PrivateKey().publicKey, amount: 5), predecessors: []
            ).encoded
        }
        _ = state.executeBlock(payload, proposer: validators[0].publicKey, signatureChecked: { _ in true })
        let stateID = Hash32(computed: state.root)
        let block = Block(
            epoch: 1, round: 3, author: validators[0].publicKey, payload: payload,
            qc: .genesis(epoch: 1, blockID: genesis.blockID, stateID: Hash32(computed: genesis.initialState.root)))
        let info = VoteInfo(
            blockID: Hash32.of(block.id.bytes), round: 4, parentID: block.id, parentRound: 3, execStateID: stateID,
            epoch: 1)
        let commit = LedgerCommitInfo(epoch: 1, round: 4, commitStateID: stateID, voteInfoHash: info.hash)
        let qc = QuorumCert(
            voteInfo: info, commitInfo: commit,
            signatures: validators.prefix(3).map {
                SignerSignature(signer: $0.publicKey, signature: $0.signature(for: commit.signingMessage(chainID: "c")))
            })
        let (system, systemProof) = state.proof(key: StateKey.system)
        return (
            state,
            SnapshotDescriptor(
                height: 7, block: block, stateID: stateID, commitQC: qc,
                heightProof: state.proof(key: StateKey.height).proof, system: system ?? [], systemProof: systemProof)
        )
    }

    /// Runs the download against in-memory peers serving `state`, carrying out the
    /// node's own persistence, until it finishes or `stop` holds.
    func run(
        _ join: inout SnapshotJoin, state: LedgerState, descriptor: SnapshotDescriptor,
        stop: (Int) -> Bool = { _ in false }
    ) throws -> (requests: Int, persisted: Int, finished: (VerifiedSnapshot, [StateLeaf])?) {
        let peers = (0..<3).map { _ in Ed25519.PrivateKey().publicKey }
        var inbox: [(PeerID, SnapshotMessage)] = []
        var requests = 0
        var persisted = 0
        var finished: (VerifiedSnapshot, [StateLeaf])?
        var now = 0.0
        func handle(_ actions: [SnapshotSync<PeerID>.Action]) throws {
            for action in actions {
                switch action {
                case .send(let peer, let message):
                    if case .getChunk = message { requests += 1 }
                    let answer = SnapshotServer.answer(
                        message, newest: descriptor, epochEnds: { _ in [] },
                        range: { height, range in
                            guard height == descriptor.height else { return .unavailable }
                            let (leaves, proof) = state.tree.range(prefix: range.prefix, depth: range.depth)
                            return .leaves(leaves, proof)
                        })
                    if let answer { inbox.append((peer, try SnapshotMessage.decode(answer.encoded()))) }
                case .persistTarget, .persistChunk, .reset:
                    try join.persist(action)
                    if case .persistChunk = action { persisted += 1 }
                case .finished(let target, let leaves): finished = (target, leaves)
                case .discourage(_, let reason): Issue.record("an honest peer was discouraged: \(reason)")
                case .progress, .note: break
                }
            }
        }
        for peer in peers { try handle(join.machine.connected(peer, now: now)) }
        while finished == nil, !stop(persisted) {
            now += 0.1
            if inbox.isEmpty {
                try handle(join.machine.tick(now: now))
            } else {
                let (peer, message) = inbox.removeFirst()
                try handle(join.machine.received(message, from: peer, now: now))
            }
        }
        return (requests, persisted, finished)
    }

    @Test("stopped after 25 chunks, restarted: only the missing ranges are fetched; the installed state starts a node")
    func resumeAndInstall() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("consensus.sqlite").path
        let (state, descriptor) = snapshot()
        let logger = Logger(label: "test")

        var first = try SnapshotJoin(genesis: genesis, store: try ConsensusStore(path: path), logger: logger)
        let stopped = try run(&first, state: state, descriptor: descriptor, stop: { $0 >= 25 })
        #expect(stopped.finished == nil && stopped.persisted == 25)
        #expect(try ConsensusStore(path: path).snapshotChunks().count == 25, "each verified chunk is on disk")

        // A restart: the same store, a new process's download.
        var second = try SnapshotJoin(genesis: genesis, store: try ConsensusStore(path: path), logger: logger)
        let resumed = try run(&second, state: state, descriptor: descriptor)
        let (target, leaves) = try #require(resumed.finished)
        #expect(resumed.requests == 64 - 25, "no kept chunk is fetched again (\(resumed.requests) requests)")
        #expect(target.descriptor == descriptor)

        let installed = try second.install(target, leaves: leaves)
        #expect(installed.root == descriptor.stateID.bytes && installed.version == 7)
        let store = try ConsensusStore(path: path)
        #expect(try store.snapshotTarget() == nil && store.snapshotChunks().isEmpty, "the download's records go")
        #expect(try store.snapshots().map(\.height) == [7], "the installed state is served as a snapshot in turn")
        // A node started on the store (as after a restart) loads it and sits on the snapshot block.
        let host = try ConsensusHost(genesis: genesis, key: Ed25519.PrivateKey(), store: store, logger: logger)
        #expect(host.committedHeight == 7 && host.committedState.root == descriptor.stateID.bytes)
        #expect(host.committedState.balance(of: funder.publicKey) == 1_000_000 - 3_000 * 5)
        // What it serves verifies for the next node.
        let served = try #require(try host.newestSnapshot())
        #expect(served == descriptor)
    }

    @Test("a kept target that no longer verifies (a damaged store) is dropped, not trusted")
    func damagedTarget() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("consensus.sqlite").path
        let (_, descriptor) = snapshot()
        let store = try ConsensusStore(path: path)
        let verified = VerifiedSnapshot.verify(
            descriptor, epochEnds: [], genesis: genesis.consensusConfig(),
            epochConfig: { _, _, _ in genesis.consensusConfig() })
        guard case .success(let good) = verified else {
            Issue.record("the fixture's descriptor does not verify")
            return
        }
        var bytes = good.encodedTarget
        bytes[bytes.count - 10] ^= 0xFF  // inside the QC's last signature
        try store.saveSnapshotTarget(bytes)
        try store.saveSnapshotChunk(depth: 6, prefix: [UInt8](repeating: 0, count: 32), leaves: [0, 0, 0, 0])
        _ = try SnapshotJoin(genesis: genesis, store: store, logger: Logger(label: "test"))
        #expect(try store.snapshotTarget() == nil && store.snapshotChunks().isEmpty)
    }
}
