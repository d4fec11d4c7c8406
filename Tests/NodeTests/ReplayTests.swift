import Consensus
import Foundation
import Ledger
import NodeCrypto
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
    func chain(_ store: ConsensusStore, count: Int, genesis: LedgerState) throws -> [Hash32] {
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
            _ = state.execute(block.payload, proposer: block.author)
            let root = try Hash32(bytes: state.root)
            roots.append(root)
            try store.commit(
                [
                    .init(
                        height: height, id: block.id.bytes, round: height, block: block.encoded(), stateID: root.bytes,
                        commitQC: [])
                ], ledgerState: height % ConsensusHost.snapshotInterval == 0 ? state.encoded() : nil)
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
        #expect(try store.loadLedgerState()?.height == 100)
        let recovered = try ConsensusHost.replay(store: store, to: 150, genesisState: genesis)
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
            ledgerState: nil)
        let recovered = try ConsensusHost.replay(store: store, to: 1, genesisState: genesis)
        #expect(try Hash32(bytes: recovered.root) == root)
        #expect(recovered.balance(of: bob) == 0)
    }
}
