import Foundation
import Storage
import Testing

@Suite("SQLite statement cache: nested use, rollback, no reader left open")
struct StatementCacheTests {
    func tempDB() throws -> (SQLiteDatabase, String) {
        let path = NSTemporaryDirectory() + "stmtcache-\(UUID().uuidString).db"
        return (try SQLiteDatabase(path: path), path)
    }

    @Test("nested use of the same SQL, rollback of a failed transaction, a thrown body leaves no snapshot")
    func nestedSameSQLAndRollback() throws {
        let (db, path) = try tempDB()
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)")
        for i in 0..<5 { try db.run("INSERT INTO t VALUES (?, ?)", [.integer(Int64(i)), .integer(Int64(i))]) }
        let sql = "SELECT k FROM t WHERE k >= ? ORDER BY k"
        var pairs: [[Int64]] = []
        try db.forEach(sql, [.integer(0)]) { (outer) throws(StorageError) in
            let k = outer.integer(0)
            try db.forEach(sql, [.integer(k)]) { (inner) throws(StorageError) in
                pairs.append([k, inner.integer(0)])
                _ = try db.query(sql, [.integer(4)]) { $0.integer(0) }
            }
        }
        #expect(pairs.count == 15)
        // A failing statement inside a transaction rolls the whole body back.
        #expect(throws: StorageError.self) {
            try db.transaction { () throws(StorageError) in
                try db.run("INSERT INTO t VALUES (?, ?)", [.integer(10), .integer(10)])
                try db.run("INSERT INTO t VALUES (?, ?)", [.integer(1), .integer(1)])  // duplicate key
            }
        }
        #expect(try db.query("SELECT COUNT(*) FROM t") { $0.integer(0) } == [5])
        // A body that throws mid-iteration leaves no read transaction open: another
        // connection can truncate the WAL.
        _ = try? db.forEach(sql, [.integer(0)]) { _ throws(StorageError) in throw StorageError("stop") }
        let other = try SQLiteDatabase(path: path)
        try other.run("INSERT INTO t VALUES (?, ?)", [.integer(20), .integer(20)])
        let busy = try other.query("PRAGMA wal_checkpoint(TRUNCATE)") { $0.integer(0) }
        #expect(busy == [0], "a reader still holds a snapshot")
        // The cached statement sees the new row (it was reset, not holding an old snapshot).
        #expect(try db.query(sql, [.integer(20)]) { $0.integer(0) } == [20])
    }
}
