import Consensus
import Foundation
import Ledger
import NodeCrypto
import StateTree
import Storage
import TestSupport
import Testing

@testable import Node

/// Restart recovery of the committed ledger state: the last snapshot (every 100
/// blocks), then the blocks after it, each of which must give its recorded state id.
@Suite("Ledger state recovery: snapshot + replay")
struct ReplayTests {
    let alice = Ed25519.PrivateKey()
    let bob = Ed25519.PrivateKey().publicKey

    /// Commits `count` blocks of one transfer each, as the consensus host does.
    func chain(
        _ store: ConsensusStore, count: Int, genesis: LedgerState, settings: NodeConfiguration.StateSettings = .init()
    ) throws -> [Hash32] {
        var persistence = StatePersistence(settings: settings)
        var state = genesis
        var roots: [Hash32] = []
        var parent = Hash32.of([0])
        for height in 1...UInt64(count) {
            let tx = Transaction(
                chainID: "c", author: alice, seq: height, fee: 1, payload: .transfer(to: bob, amount: 10),
                predecessors: [])
            let block = Block(
                epoch: 1, round: height, author: alice.publicKey, payload: [tx.encoded],
                qc: .genesis(epoch: 1, blockID: parent, stateID: .zero))
            _ = state.executeBlock(block.payload, proposer: block.author)
            let root = try Hash32(bytes: state.root)
            roots.append(root)
            let snapshot = persistence.isSnapshot([height])
            let write =
                height % ConsensusHost.snapshotInterval == 0 || snapshot
                ? try persistence.write(state, height: height, snapshot: snapshot, store: store) : nil
            try store.commit(
                [
                    .init(
                        height: height, id: block.id.bytes, round: height, block: block.encoded(), stateID: root.bytes,
                        commitQC: [])
                ], state: write)
            if write != nil { persistence.persisted = (state.tree, state.version) }
            parent = block.id
        }
        return roots
    }

    @Test("snapshot at 100 plus 50 replayed blocks gives the same state as executing all 150")
    func replayAfterSnapshot() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try ConsensusStore(path: dir.appendingPathComponent("consensus.sqlite").path)
        let genesis = LedgerState(chainID: "c", balances: [alice.publicKey: 10_000])
        let roots = try chain(store, count: 150, genesis: genesis)
        #expect(try store.stateVersion(atMost: 150)?.height == 100)
        let recovered = try ConsensusHost.replay(store: store, to: 150, genesisState: genesis).state
        #expect(try Hash32(bytes: recovered.root) == roots[149])
        #expect(recovered.balance(of: bob) == 1_500)
        #expect(recovered.seq(of: alice.publicKey) == 150)
    }

    @Test("a stored state id that the blocks do not reproduce stops start-up, naming the height")
    func corruptedStateID() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("consensus.sqlite").path
        let store = try ConsensusStore(path: path)
        let genesis = LedgerState(chainID: "c", balances: [alice.publicKey: 10_000])
        _ = try chain(store, count: 30, genesis: genesis)
        // Replaying against another genesis balance gives other state ids from block 1 on.
        let other = LedgerState(chainID: "c", balances: [alice.publicKey: 9_999])
        let error = #expect(throws: ConfigError.self) {
            try ConsensusHost.replay(store: store, to: 30, genesisState: other)
        }
        #expect(error?.description.contains("replaying block 1 ") == true, "\(String(describing: error))")
        // A missing block is named too.
        #expect(throws: ConfigError.self) { try ConsensusHost.replay(store: store, to: 31, genesisState: genesis) }
    }

    /// Issue 14 §2: a leader put a correctly sequenced transfer with a bad signature in a
    /// block. Live execution (the transaction was not in the DAG, so its signature was
    /// checked) failed it; replay after a restart must fail it too, or the node computes
    /// another state and refuses to start.
    @Test("replay after a restart fails a badly signed transaction exactly as live execution did")
    func replayChecksSignatures() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try ConsensusStore(path: dir.appendingPathComponent("consensus.sqlite").path)
        let genesis = LedgerState(chainID: "c", balances: [alice.publicKey: 10_000])
        let tx = Transaction(
            chainID: "c", author: alice, seq: 1, fee: 1, payload: .transfer(to: bob, amount: 10), predecessors: [])
        var forged = tx.encoded
        forged[forged.count - 1] ^= 0x01  // the signature no longer holds
        let block = Block(
            epoch: 1, round: 1, author: alice.publicKey, payload: [forged],
            qc: .genesis(epoch: 1, blockID: Hash32.of([0]), stateID: .zero))
        var live = genesis
        let (receipts, _) = live.executeBlock(block.payload, proposer: block.author, signatureChecked: { _ in false })
        #expect(receipts.count == 1 && receipts[0].failure != nil, "live execution refuses the forged signature")
        #expect(live.balance(of: bob) == 0)
        let root = try Hash32(bytes: live.root)
        try store.commit(
            [.init(height: 1, id: block.id.bytes, round: 1, block: block.encoded(), stateID: root.bytes, commitQC: [])],
            state: nil)
        let recovered = try ConsensusHost.replay(store: store, to: 1, genesisState: genesis).state
        #expect(try Hash32(bytes: recovered.root) == root)
        #expect(recovered.balance(of: bob) == 0)
    }

    @Test("the tree is stored as deltas: snapshots kept, older versions pruned, every kept version loads whole")
    func prunedVersionsAndSnapshots() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try ConsensusStore(path: dir.appendingPathComponent("consensus.sqlite").path)
        // Many accounts so a version's tree is much larger than one block's change.
        var balances: [Ed25519.PublicKey: UInt64] = [alice.publicKey: 1_000_000]
        for _ in 0..<500 { balances[Ed25519.PrivateKey().publicKey] = 5 }
        let genesis = LedgerState(chainID: "c", balances: balances)
        var settings = NodeConfiguration.StateSettings()
        settings.snapshotInterval = 300
        settings.snapshotsKept = 2
        settings.retainedHeights = 100
        let roots = try chain(store, count: 1_050, genesis: genesis, settings: settings)
        #expect(try store.snapshots().map(\.height) == [900, 600], "the newest two snapshots")
        #expect(try store.stateVersion(height: 300) == nil, "an older snapshot is pruned")
        #expect(try store.stateVersion(height: 700) != nil, "versions above the oldest kept snapshot stay")
        for height: UInt64 in [600, 900, 1_000] {
            let version = try #require(try store.stateVersion(height: height))
            let tree = try SparseMerkleTree.load(root: try NodeRef.decode(version.root)) { v, h in
                try store.stateNode(version: v, hash: h.bytes)
            }
            #expect(tree.rootHash.bytes == roots[Int(height) - 1].bytes, "height \(height) loads whole")
        }
        // Pruned: far fewer nodes than ten full versions of a 500-account tree.
        #expect(try store.stateNodeCount() < 3 * 1_100)
        let recovered = try ConsensusHost.replay(store: store, to: 1_050, genesisState: genesis)
        #expect(recovered.state.stateRoot.bytes == roots[1_049].bytes)
        #expect(recovered.stored?.version == 1_000)
    }
}
