/// Durable storage of the accepted transactions of the BFT-CRDT, in acceptance
/// order (a topological order), so a restart replays them and loses nothing.
public final class TransactionStore {
    private let db: SQLiteDatabase

    public init(path: String) throws(StorageError) {
        db = try SQLiteDatabase(path: path)
        try db.execute(
            """
            CREATE TABLE IF NOT EXISTS transactions (
                position INTEGER PRIMARY KEY AUTOINCREMENT,
                id BLOB NOT NULL UNIQUE,
                encoded BLOB NOT NULL
            )
            """)
    }

    /// Appends accepted transactions atomically; ids already stored are skipped.
    public func append(_ transactions: [(id: [UInt8], encoded: [UInt8])]) throws(StorageError) {
        guard !transactions.isEmpty else { return }
        try db.transaction { () throws(StorageError) in
            for tx in transactions {
                try db.run(
                    "INSERT OR IGNORE INTO transactions (id, encoded) VALUES (?, ?)", [.blob(tx.id), .blob(tx.encoded)])
            }
        }
    }

    /// Deletes pruned transactions (ids not stored are ignored), atomically. Freed pages
    /// are reused by later appends, so the file stops growing once pruning keeps pace.
    public func delete(_ ids: [[UInt8]]) throws(StorageError) {
        guard !ids.isEmpty else { return }
        try db.transaction { () throws(StorageError) in
            for id in ids { try db.run("DELETE FROM transactions WHERE id = ?", [.blob(id)]) }
        }
    }

    /// Every stored transaction in acceptance order.
    public func loadAll() throws(StorageError) -> [(id: [UInt8], encoded: [UInt8])] {
        try db.query("SELECT id, encoded FROM transactions ORDER BY position") { row in
            (row.blob(0), row.blob(1))
        }
    }

    public func count() throws(StorageError) -> Int {
        Int(try db.query("SELECT COUNT(*) FROM transactions") { $0.integer(0) }.first ?? 0)
    }
}
