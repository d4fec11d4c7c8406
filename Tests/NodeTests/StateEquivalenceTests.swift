import Consensus
import Execution
import Foundation
import Ledger
import NodeCrypto
import StateSync
import StateTree
import Storage
import TestSupport
import Testing

@testable import Node

/// Issue 17: however a node gets a state — replaying its own store, executing ranges
/// served by catch-up, or a verified snapshot followed by blocks — the roots are the same
/// bytes at every height.
@Suite("State equivalence: replay = catch-up = snapshot = stored reload")
struct StateEquivalenceTests {
    struct Chain {
        var genesis: LedgerState
        var blocks: [Block] = []
    }

    /// Random blocks: transfers to old and new accounts, data, replays, wrong seqs, fees
    /// that cannot be paid, predecessors that exist and that do not.
    static func chain(seed: UInt64, blocks count: Int) -> Chain {
        var rng = SeededRandom(state: seed)
        let authors = (0..<6).map { _ in Ed25519.PrivateKey() }
        let system = SystemState(
            epoch: 1, epochLength: 1_000,
            validators: [.init(id: authors[0].publicKey, power: 1, bitcoinKey: [UInt8](repeating: 2, count: 32))])
        var chain = Chain(
            genesis: LedgerState(
                chainID: "c", balances: Dictionary(uniqueKeysWithValues: authors.map { ($0.publicKey, 5_000) }),
                system: system))
        var model = chain.genesis
        var sent: [Transaction] = []
        var parent = Hash32.of([0])
        for round in 1...UInt64(count) {
            var payload: [[UInt8]] = []
            for _ in 0..<Int(rng.next() % 12) {
                let author = authors[Int(rng.next() % 6)]
                var seq = model.seq(of: author.publicKey) + 1
                if rng.chance(0.1) { seq += rng.next() % 3 }
                if rng.chance(0.05), let old = sent.randomElement(using: &rng) {
                    payload.append(old.encoded)  // a replay
                    continue
                }
                let to = rng.chance(0.5) ? authors[Int(rng.next() % 6)].publicKey : Ed25519.PrivateKey().publicKey
                var preds = sent.suffix(3).map(\.id).filter { _ in rng.chance(0.5) }
                if rng.chance(0.05) { preds.append(try! TxID(bytes: [UInt8](repeating: 7, count: 32))) }
                let tx = Transaction(
                    chainID: "c", author: author, seq: seq, fee: rng.chance(0.05) ? 1_000_000 : rng.next() % 3,
                    payload: rng.chance(0.2) ? .data([1, 2]) : .transfer(to: to, amount: 1 + rng.next() % 2_000),
                    predecessors: preds)
                sent.append(tx)
                payload.append(tx.encoded)
                _ = model.execute([tx.encoded], proposer: authors[0].publicKey)
            }
            if rng.chance(0.05) { payload.append([1, 2, 3]) }  // malformed
            let block = Block(
                epoch: 1, round: round, author: authors[Int(rng.next() % 6)].publicKey, payload: payload,
                qc: .genesis(epoch: 1, blockID: parent, stateID: .zero))
            parent = block.id
            chain.blocks.append(block)
        }
        return chain
    }

    @Test("byte-identical roots at every height, five random chains", arguments: [1, 2, 3, 4, 5] as [UInt64])
    func equivalence(seed: UInt64) throws {
        let chain = Self.chain(seed: seed, blocks: 60)
        // Replay: the ledger straight through, every signature checked.
        var replayed = chain.genesis
        var roots: [[UInt8]] = []
        var states: [LedgerState] = []
        for block in chain.blocks {
            _ = replayed.executeBlock(block.payload, proposer: block.author, signatureChecked: { _ in false })
            roots.append(replayed.root)
            states.append(replayed)
        }
        // Catch-up: the execution interface the chain machine runs served ranges through.
        let execution = LedgerExecution { system, block, state in
            ConsensusConfig(
                chainID: "c", epoch: system.epoch,
                validators: ValidatorSet(system.validators.map { Validator(id: $0.id) }), genesisBlockID: block,
                genesisStateID: state)
        }
        var caught = chain.genesis
        for (i, block) in chain.blocks.enumerated() {
            let result = execution.execute(block, on: caught, pool: TransactionDAG(chainID: "c"))
            #expect(result.stateID.bytes == roots[i], "catch-up at height \(i + 1)")
            caught = result.state
        }
        // Snapshot at height 30: every range of one depth, each proved against the root,
        // restored, then the blocks after it.
        let k = 30
        var leaves: [StateLeaf] = []
        for range in ChunkRange.all(depth: 4) {
            let (chunk, proof) = states[k - 1].tree.range(prefix: range.prefix, depth: range.depth)
            try proof.verify(range: range.prefix, depth: range.depth, leaves: chunk, root: states[k - 1].stateRoot)
            leaves += chunk
        }
        var restored = try LedgerState.restore(chainID: "c", version: UInt64(k), leaves: leaves)
        #expect(restored.root == roots[k - 1])
        for (i, block) in chain.blocks.enumerated().dropFirst(k) {
            _ = restored.executeBlock(block.payload, proposer: block.author, signatureChecked: { _ in false })
            #expect(restored.root == roots[i], "after the snapshot, height \(i + 1)")
        }
        // Stored: the tree written every 10 blocks as deltas, then a restart's load + replay.
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try ConsensusStore(path: dir.appendingPathComponent("consensus.sqlite").path)
        var persistence = StatePersistence(settings: .init())
        for (i, block) in chain.blocks.enumerated() {
            let height = UInt64(i + 1)
            let write =
                height % 10 == 0 ? try persistence.write(states[i], height: height, snapshot: false, store: store) : nil
            try store.commit(
                [
                    .init(
                        height: height, id: block.id.bytes, round: block.round, block: block.encoded(),
                        stateID: roots[i],
                        commitQC: [])
                ], state: write)
            if write != nil { persistence.persisted = (states[i].tree, states[i].version) }
        }
        let reloaded = try ConsensusHost.replay(store: store, to: 55, genesisState: chain.genesis)
        #expect(reloaded.state.root == roots[54] && reloaded.stored?.version == 50)
    }
}
