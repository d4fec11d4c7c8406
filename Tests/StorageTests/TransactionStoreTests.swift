import Foundation
import Storage
import TestSupport
import Testing

@Suite("SQLite transaction store")
struct TransactionStoreTests {
    @Test func appendsInOrderSkipsDuplicatesAndSurvivesReopening() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ledger.sqlite").path
        do {
            let store = try TransactionStore(path: path)
            try store.append([([1], [10, 11]), ([2], [20])])
            try store.append([([1], [99]), ([3], [])])
            #expect(try store.count() == 3)
        }
        let reopened = try TransactionStore(path: path)
        let all = try reopened.loadAll()
        #expect(all.map(\.id) == [[1], [2], [3]])
        #expect(all.map(\.encoded) == [[10, 11], [20], []])
    }

    @Test func aCorruptFileStopsWithAClearError() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ledger.sqlite").path
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: StorageError.self) { try TransactionStore(path: path) }
        #expect(error?.description.contains(path) == true)
    }
}

@Suite("Transaction writer: off the actor, group commit, failures surface")
struct TransactionWriterTests {
    func rows(_ range: Range<Int>) -> [(id: [UInt8], encoded: [UInt8])] {
        range.map { i in
            (
                id: [UInt8](repeating: UInt8(i & 0xff), count: 30) + [UInt8(i >> 8), UInt8(i & 0xff)],
                encoded: [UInt8](repeating: 7, count: 100 + i % 50)
            )
        }
    }

    @Test("batches handed over quickly are all written, in order, and survive a reopen")
    func writesEverythingInOrder() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ledger.sqlite").path
        let writer = TransactionWriter(store: try TransactionStore(path: path))
        for k in 0..<40 { try writer.append(rows((k * 50)..<(k * 50 + 50))) }
        try writer.flush()
        #expect(writer.pendingCount == 0)
        let stored = try TransactionStore(path: path).loadAll()
        #expect(stored.count == 2_000)
        #expect(stored.map(\.id) == rows(0..<2_000).map(\.id), "acceptance order is kept")
    }

    @Test("deletions handed over after appends remove those rows, even ones still queued")
    func deletionsFollowAppends() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ledger.sqlite").path
        let writer = TransactionWriter(store: try TransactionStore(path: path))
        for k in 0..<6 {
            // Append a round and at once delete the round before it and half of this one
            // (some of which may not be written yet): appends go first.
            try writer.append(rows((k * 500)..<(k * 500 + 500)))
            let old = k == 0 ? [] : rows(((k - 1) * 500 + 250)..<(k * 500)).map(\.id)
            try writer.delete(old + rows((k * 500)..<(k * 500 + 250)).map(\.id))
        }
        try writer.flush()
        let stored = try TransactionStore(path: path).loadAll()
        #expect(stored.map(\.id) == rows(2_750..<3_000).map(\.id), "only the last round's second half is left")
    }

    @Test("past the backlog limit the caller waits for the disk: nothing waits beyond it")
    func backlogIsBounded() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = TransactionWriter(
            store: try TransactionStore(path: dir.appendingPathComponent("ledger.sqlite").path), maxPending: 100)
        for k in 0..<20 {
            try writer.append(rows((k * 150)..<(k * 150 + 150)))
            #expect(writer.pendingCount == 0, "a batch over the limit is written before append returns")
        }
    }

    @Test("a write that fails is reported by the next append and by flush")
    func failureSurfaces() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ledger.sqlite").path
        let writer = TransactionWriter(store: try TransactionStore(path: path))
        try writer.append(rows(0..<10))
        try writer.flush()
        // Another connection removes the table: the writer's next insert fails.
        try SQLiteDatabase(path: path).execute("DROP TABLE transactions")
        try writer.append(rows(10..<20))
        #expect(throws: StorageError.self) { try writer.flush() }
        #expect(throws: StorageError.self) { try writer.append(rows(20..<30)) }
    }
}
