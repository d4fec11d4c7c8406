import Foundation
import Ledger
import NodeCrypto
import Storage

/// Signed transactions verified and inserted per second, next to the raw Ed25519
/// verification rate measured in the same run (the bound: each insert verifies once).
public enum LedgerBenchmark {
    public struct Result: Sendable {
        public var transactions: Int
        public var ed25519VerifyPerSecond: Double
        public var insertPerSecond: Double
        public var insertAndStorePerSecond: Double
        /// The same transactions executed in blocks of 300 (signatures already checked by
        /// the DAG, as in the node), each block ending with its state root.
        public var executePerSecond: Double
    }

    public static func run(transactions count: Int, directory: URL) throws -> Result {
        // A realistic DAG: 8 authors, each extending its own chain and citing others' heads.
        let authors = (0..<8).map { _ in Ed25519.PrivateKey() }
        var last: [TxID?] = Array(repeating: nil, count: authors.count)
        var encoded: [[UInt8]] = []
        encoded.reserveCapacity(count)
        for i in 0..<count {
            let a = i % authors.count
            var preds = last[a].map { [$0] } ?? []
            if let other = last[(a + 3) % authors.count] { preds.append(other) }
            let tx = Transaction(
                chainID: "bench", author: authors[a], seq: UInt64(i / authors.count + 1), fee: 1,
                payload: .transfer(to: authors[(a + 1) % authors.count].publicKey, amount: 1), predecessors: preds)
            last[a] = tx.id
            encoded.append(tx.encoded)
        }

        let sample = try Transaction.decode(encoded[0])
        let message = sample.signingMessage
        let clock = ContinuousClock()
        let verifyStart = clock.now
        for _ in 0..<count { precondition(sample.author.isValidSignature(sample.signature, for: message)) }
        let verifyRate = Double(count) / (clock.now - verifyStart).inSeconds

        var dag = TransactionDAG(chainID: "bench")
        let insertStart = clock.now
        for bytes in encoded {
            guard case .accepted = dag.insert(encoded: bytes, source: "bench") else {
                fatalError("benchmark tx rejected")
            }
        }
        let insertRate = Double(count) / (clock.now - insertStart).inSeconds

        // The node's path: verify, insert, and store durably in batches of 100 per commit.
        let path = directory.appendingPathComponent("bench-\(UUID().uuidString).sqlite").path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        let store = try TransactionStore(path: path)
        var stored = TransactionDAG(chainID: "bench")
        var batch: [(id: [UInt8], encoded: [UInt8])] = []
        let storeStart = clock.now
        for bytes in encoded {
            guard case .accepted(let txs) = stored.insert(encoded: bytes, source: "bench") else {
                fatalError("benchmark tx rejected")
            }
            batch += txs.map { ($0.id.bytes, $0.encoded) }
            if batch.count >= 100 {
                try store.append(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        try store.append(batch)
        let storeRate = Double(count) / (clock.now - storeStart).inSeconds

        var state = LedgerState(
            chainID: "bench", balances: Dictionary(uniqueKeysWithValues: authors.map { ($0.publicKey, 1_000_000_000) }))
        let executeStart = clock.now
        for start in stride(from: 0, to: encoded.count, by: 300) {
            let receipts = state.executeBlock(
                Array(encoded[start..<min(encoded.count, start + 300)]), proposer: authors[0].publicKey,
                signatureChecked: { _ in true }
            ).receipts
            precondition(receipts.allSatisfy { $0.failure == nil }, "benchmark tx failed: \(receipts)")
            _ = state.root
        }
        let executeRate = Double(count) / (clock.now - executeStart).inSeconds
        return Result(
            transactions: count, ed25519VerifyPerSecond: verifyRate, insertPerSecond: insertRate,
            insertAndStorePerSecond: storeRate, executePerSecond: executeRate)
    }
}
