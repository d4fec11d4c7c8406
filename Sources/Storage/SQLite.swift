internal import CSQLite

/// An error from SQLite, with its message and the statement that failed.
public struct StorageError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A small wrapper over one SQLite connection: prepared statements, blobs,
/// transactions. Not thread-safe; owners confine it to one actor or task.
public final class SQLiteDatabase {
    private let handle: OpaquePointer
    public let path: String
    /// Prepared statements by SQL text, reset and kept for the next use: a loaded node
    /// runs the same few statements thousands of times a second, and parsing them each
    /// time cost more than the writes. A statement in use is out of the cache, so a
    /// nested use of the same SQL prepares its own.
    private var statements: [String: OpaquePointer] = [:]
    private static let maxCachedStatements = 128

    /// Opens (creating if needed) a database in WAL mode with full fsync on commit.
    public init(path: String) throws(StorageError) {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close(db) }
            throw StorageError("cannot open \(path): \(message)")
        }
        handle = db
        self.path = path
        sqlite3_busy_timeout(db, 5000)
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=FULL")
        // Detect a damaged file at start-up rather than mid-run.
        let check = try query("PRAGMA quick_check") { $0.text(0) }
        guard check == ["ok"] else {
            throw StorageError("\(path) is corrupt (quick_check: \(check.prefix(3).joined(separator: "; ")))")
        }
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    private func error(_ what: String) -> StorageError {
        StorageError("\(what): \(String(cString: sqlite3_errmsg(handle))) (\(path))")
    }

    public func execute(_ sql: String) throws(StorageError) {
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &message) == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(message)
            throw StorageError("\(sql.prefix(60)): \(text) (\(path))")
        }
    }

    /// Runs `sql` with `bindings` (blobs, integers or text) for its effect.
    public func run(_ sql: String, _ bindings: [SQLiteValue] = []) throws(StorageError) {
        let statement = try prepare(sql, bindings)
        defer { release(sql, statement) }
        let rc = sqlite3_step(statement)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw error("step") }
    }

    /// Runs one statement for each row of bindings, prepared once (bulk inserts).
    public func runMany(_ sql: String, _ rows: [[SQLiteValue]]) throws(StorageError) {
        guard let first = rows.first else { return }
        let statement = try prepare(sql, first)
        defer { release(sql, statement) }
        for (i, row) in rows.enumerated() {
            if i > 0 {
                sqlite3_reset(statement)
                try bind(statement, row)
            }
            let rc = sqlite3_step(statement)
            guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw error("step") }
        }
    }

    /// Runs a query and hands each row to `body` without collecting them.
    public func forEach(
        _ sql: String, _ bindings: [SQLiteValue] = [], _ body: (Row) throws(StorageError) -> Void
    ) throws(StorageError) {
        let statement = try prepare(sql, bindings)
        defer { release(sql, statement) }
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw error("step") }
            try body(Row(statement: statement))
        }
    }

    /// Runs a query and maps each row.
    public func query<T>(
        _ sql: String, _ bindings: [SQLiteValue] = [], _ row: (Row) throws(StorageError) -> T
    ) throws(StorageError) -> [T] {
        let statement = try prepare(sql, bindings)
        defer { release(sql, statement) }
        var out: [T] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return out }
            guard rc == SQLITE_ROW else { throw error("step") }
            out.append(try row(Row(statement: statement)))
        }
    }

    /// Runs `body` in one transaction: all of it is durable after return, or none.
    public func transaction<T>(_ body: () throws(StorageError) -> T) throws(StorageError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    private func prepare(_ sql: String, _ bindings: [SQLiteValue]) throws(StorageError) -> OpaquePointer {
        let statement: OpaquePointer
        if let cached = statements.removeValue(forKey: sql) {
            statement = cached
        } else {
            var fresh: OpaquePointer?
            guard sqlite3_prepare_v2(handle, sql, -1, &fresh, nil) == SQLITE_OK, let fresh else {
                throw error("prepare \(sql.prefix(60))")
            }
            statement = fresh
        }
        do {
            try bind(statement, bindings)
        } catch {
            release(sql, statement)
            throw error
        }
        return statement
    }

    /// Resets a statement (ending its read, dropping its bindings) and keeps it for
    /// the next use of `sql`.
    private func release(_ sql: String, _ statement: OpaquePointer) {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
        if statements[sql] == nil, statements.count < Self.maxCachedStatements {
            statements[sql] = statement
        } else {
            sqlite3_finalize(statement)
        }
    }

    private func bind(_ statement: OpaquePointer, _ bindings: [SQLiteValue]) throws(StorageError) {
        for (index, value) in bindings.enumerated() {
            let position = Int32(index + 1)
            let rc: Int32
            switch value {
            case .integer(let v): rc = sqlite3_bind_int64(statement, position, v)
            case .text(let v): rc = sqlite3_bind_text(statement, position, v, -1, sidenode_sqlite_transient())
            case .null: rc = sqlite3_bind_null(statement, position)
            case .blob(let v):
                rc = v.withUnsafeBytes {
                    sqlite3_bind_blob(statement, position, $0.baseAddress, Int32($0.count), sidenode_sqlite_transient())
                }
            }
            guard rc == SQLITE_OK else { throw error("bind") }
        }
    }

    public struct Row {
        fileprivate let statement: OpaquePointer

        public func integer(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

        public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }

        public func text(_ column: Int32) -> String {
            sqlite3_column_text(statement, column).map { String(cString: $0) } ?? ""
        }

        public func blob(_ column: Int32) -> [UInt8] {
            let count = Int(sqlite3_column_bytes(statement, column))
            guard count > 0, let base = sqlite3_column_blob(statement, column) else { return [] }
            return Array(UnsafeRawBufferPointer(start: base, count: count))
        }
    }
}

public enum SQLiteValue: Sendable {
    case integer(Int64)
    case text(String)
    case blob([UInt8])
    case null
}
