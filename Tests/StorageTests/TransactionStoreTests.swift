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
