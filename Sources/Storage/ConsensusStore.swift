/// Durable consensus data, as opaque encoded blobs (the node encodes them):
/// the safety state, blocks not yet committed, the committed chain, and the
/// committed ledger state. Every write commits with fsync (WAL, synchronous=FULL),
/// so a safety write returns only once it is on disk.
public final class ConsensusStore {
    private let db: SQLiteDatabase

    public init(path: String) throws(StorageError) {
        db = try SQLiteDatabase(path: path)
        // Up to 64 MiB of page cache: the state tree's tables are large and written in bulk.
        try db.execute("PRAGMA cache_size=-65536")
        try db.execute(
            """
            CREATE TABLE IF NOT EXISTS safety (id INTEGER PRIMARY KEY CHECK (id = 1), state BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS pending_blocks (id BLOB PRIMARY KEY, round INTEGER NOT NULL, block BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS committed_blocks (
                height INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, round INTEGER NOT NULL,
                block BLOB NOT NULL, state_id BLOB NOT NULL, commit_qc BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS state_nodes (
                version INTEGER NOT NULL, hash BLOB NOT NULL, body BLOB NOT NULL, PRIMARY KEY (version, hash)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS state_stale (since INTEGER NOT NULL, version INTEGER NOT NULL, hash BLOB NOT NULL);
            CREATE INDEX IF NOT EXISTS state_stale_since ON state_stale (since);
            CREATE TABLE IF NOT EXISTS state_versions (
                height INTEGER PRIMARY KEY, version INTEGER NOT NULL, root BLOB NOT NULL, snapshot INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS epochs (
                epoch INTEGER PRIMARY KEY, start_height INTEGER NOT NULL, genesis_block BLOB NOT NULL,
                genesis_state BLOB NOT NULL, system BLOB NOT NULL, end_height INTEGER, proof BLOB,
                last_block BLOB, system_proof BLOB, height_proof BLOB);
            CREATE TABLE IF NOT EXISTS receipts (
                height INTEGER NOT NULL, idx INTEGER NOT NULL, tx_id BLOB NOT NULL, code INTEGER NOT NULL,
                log TEXT, gas INTEGER NOT NULL, PRIMARY KEY (height, idx));
            CREATE INDEX IF NOT EXISTS receipts_tx ON receipts (tx_id);
            CREATE TABLE IF NOT EXISTS snapshot_target (id INTEGER PRIMARY KEY CHECK (id = 1), target BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS snapshot_chunks (
                depth INTEGER NOT NULL, prefix BLOB NOT NULL, leaves BLOB NOT NULL, PRIMARY KEY (depth, prefix));
            """)
        // Stores from before the epoch end columns: add them (an error means they exist).
        for column in ["last_block", "system_proof", "height_proof"] {
            try? db.execute("ALTER TABLE epochs ADD COLUMN \(column) BLOB")
        }
        try? db.execute("ALTER TABLE receipts ADD COLUMN output TEXT")
    }

    /// One epoch: where it starts (the block it builds on and that block's state), its
    /// validators (the encoded system state at its start), and once it has ended, its
    /// last height and the proof that its last block is committed.
    public struct EpochRecord: Sendable, Equatable {
        public let epoch: UInt64
        /// Height of the epoch's first block (the one after `genesisBlock`).
        public let startHeight: UInt64
        public let genesisBlock: [UInt8]
        public let genesisState: [UInt8]
        public let system: [UInt8]
        public var endHeight: UInt64?
        public var proof: [UInt8]?
        /// The epoch's last block (kept with its end, so a node serves epoch ends even
        /// when it no longer holds the block, e.g. after joining by snapshot).
        public var lastBlock: [UInt8]?
        /// The proof that `system` is under `system/validators` in `genesisState` (docs/state.md).
        public var systemProof: [UInt8]?
        /// The proof of `system/height` (the previous epoch's last height) in `genesisState`.
        public var heightProof: [UInt8]?

        public init(
            epoch: UInt64, startHeight: UInt64, genesisBlock: [UInt8], genesisState: [UInt8], system: [UInt8],
            endHeight: UInt64? = nil, proof: [UInt8]? = nil, lastBlock: [UInt8]? = nil, systemProof: [UInt8]? = nil,
            heightProof: [UInt8]? = nil
        ) {
            self.epoch = epoch
            self.startHeight = startHeight
            self.genesisBlock = genesisBlock
            self.genesisState = genesisState
            self.system = system
            self.endHeight = endHeight
            self.proof = proof
            self.lastBlock = lastBlock
            self.systemProof = systemProof
            self.heightProof = heightProof
        }
    }

    /// Records the first epoch (once, at the first start).
    public func saveEpoch(_ record: EpochRecord) throws(StorageError) {
        try db.run(
            "INSERT OR IGNORE INTO epochs (epoch, start_height, genesis_block, genesis_state, system) VALUES (?, ?, ?, ?, ?)",
            [
                .integer(Int64(record.epoch)), .integer(Int64(record.startHeight)), .blob(record.genesisBlock),
                .blob(record.genesisState), .blob(record.system),
            ])
    }

    public func epoch(_ n: UInt64) throws(StorageError) -> EpochRecord? {
        guard let n = Int64(exactly: n) else { return nil }  // past SQLite's integers: none stored
        return try epochs(where: "epoch = ?", [.integer(n)]).first
    }

    public func latestEpoch() throws(StorageError) -> EpochRecord? {
        try epochs(where: "1 ORDER BY epoch DESC LIMIT 1", []).first
    }

    /// The epoch whose last block is at `height`, if one ends there.
    public func epoch(endingAt height: UInt64) throws(StorageError) -> EpochRecord? {
        guard let height = Int64(exactly: height) else { return nil }
        return try epochs(where: "end_height = ?", [.integer(height)]).first
    }

    private func epochs(where clause: String, _ bindings: [SQLiteValue]) throws(StorageError) -> [EpochRecord] {
        try db.query(
            "SELECT epoch, start_height, genesis_block, genesis_state, system, end_height, proof, last_block, system_proof, height_proof FROM epochs WHERE "
                + clause, bindings
        ) { row in
            EpochRecord(
                epoch: UInt64(row.integer(0)), startHeight: UInt64(row.integer(1)), genesisBlock: row.blob(2),
                genesisState: row.blob(3), system: row.blob(4), endHeight: row.isNull(5) ? nil : UInt64(row.integer(5)),
                proof: row.isNull(6) ? nil : row.blob(6), lastBlock: row.isNull(7) ? nil : row.blob(7),
                systemProof: row.isNull(8) ? nil : row.blob(8), heightProof: row.isNull(9) ? nil : row.blob(9))
        }
    }

    public func saveSafety(_ state: [UInt8]) throws(StorageError) {
        try db.run("INSERT OR REPLACE INTO safety (id, state) VALUES (1, ?)", [.blob(state)])
    }

    public func loadSafety() throws(StorageError) -> [UInt8]? {
        try db.query("SELECT state FROM safety WHERE id = 1") { $0.blob(0) }.first
    }

    public func savePending(id: [UInt8], round: UInt64, block: [UInt8]) throws(StorageError) {
        try db.run(
            "INSERT OR IGNORE INTO pending_blocks (id, round, block) VALUES (?, ?, ?)",
            [.blob(id), .integer(Int64(round)), .blob(block)])
    }

    public func loadPending() throws(StorageError) -> [[UInt8]] {
        try db.query("SELECT block FROM pending_blocks ORDER BY round") { $0.blob(0) }
    }

    public struct CommittedBlock: Sendable {
        public let height: UInt64
        public let id: [UInt8]
        public let round: UInt64
        public let block: [UInt8]
        public let stateID: [UInt8]
        public let commitQC: [UInt8]

        public init(height: UInt64, id: [UInt8], round: UInt64, block: [UInt8], stateID: [UInt8], commitQC: [UInt8]) {
            self.height = height
            self.id = id
            self.round = round
            self.block = block
            self.stateID = stateID
            self.commitQC = commitQC
        }
    }

    /// Appends committed blocks, and optionally a snapshot of the ledger state after the
    /// last of them, in one transaction, and drops pending blocks at or below the
    /// committed round. Without a snapshot, a restart replays the blocks after the
    /// last snapshot (the state is a function of the chain).
    ///
    /// With `epochChange` the last block ends its epoch: its proof is recorded with the
    /// epoch, the next epoch is recorded, and every pending block goes (they belong to
    /// the epoch that ended) — all in the same transaction, so a restart never finds a
    /// chain past an epoch's end without the epoch that follows.
    /// A version of the state tree to store with a commit (module StateTree's delta, as
    /// bytes): the nodes it created, the stored nodes it no longer uses, its root.
    public struct StateWrite: Sendable {
        public var height: UInt64
        public var version: UInt64
        public var root: [UInt8]
        public var nodes: [(version: UInt64, hash: [UInt8], body: [UInt8])]
        public var stale: [(version: UInt64, hash: [UInt8])]
        /// Kept as a snapshot peers may download.
        public var snapshot: Bool
        /// Versions stored at heights below this are deleted with the nodes only they used.
        public var keepFrom: UInt64?
        /// Committed blocks and receipts below this height are deleted (block pruning).
        public var blocksFrom: UInt64?

        public init(
            height: UInt64, version: UInt64, root: [UInt8], nodes: [(version: UInt64, hash: [UInt8], body: [UInt8])],
            stale: [(version: UInt64, hash: [UInt8])], snapshot: Bool, keepFrom: UInt64?, blocksFrom: UInt64? = nil
        ) {
            self.blocksFrom = blocksFrom
            self.height = height
            self.version = version
            self.root = root
            self.nodes = nodes
            self.stale = stale
            self.snapshot = snapshot
            self.keepFrom = keepFrom
        }
    }

    /// A transaction's result in a committed block (not part of the state root).
    public struct Receipt: Sendable, Equatable {
        public let height: UInt64
        /// Its position in the block's payload.
        public let index: Int
        public let txID: [UInt8]
        public let code: UInt32
        public let log: String?
        public let gas: UInt64

        /// A contract message's result (JSON: address, events, data).
        public let output: String?

        public init(
            height: UInt64, index: Int, txID: [UInt8], code: UInt32, log: String?, gas: UInt64, output: String? = nil
        ) {
            self.height = height
            self.index = index
            self.txID = txID
            self.code = code
            self.log = log
            self.gas = gas
            self.output = output
        }
    }

    public func commit(
        _ blocks: [CommittedBlock], state: StateWrite?, epochChange: (proof: [UInt8], next: EpochRecord)? = nil,
        receipts: [Receipt] = []
    ) throws(StorageError) {
        guard let last = blocks.last else { return }
        try db.transaction { () throws(StorageError) in
            try db.runMany(
                "INSERT OR REPLACE INTO receipts (height, idx, tx_id, code, log, gas, output) VALUES (?, ?, ?, ?, ?, ?, ?)",
                receipts.map {
                    [
                        .integer(Int64($0.height)), .integer(Int64($0.index)), .blob($0.txID), .integer(Int64($0.code)),
                        $0.log.map { .text($0) } ?? .null, .integer(Int64(bitPattern: $0.gas)),
                        $0.output.map { .text($0) } ?? .null,
                    ]
                })
            for b in blocks {
                try db.run(
                    "INSERT INTO committed_blocks (height, id, round, block, state_id, commit_qc) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        .integer(Int64(b.height)), .blob(b.id), .integer(Int64(b.round)), .blob(b.block),
                        .blob(b.stateID),
                        .blob(b.commitQC),
                    ])
            }
            if let state { try write(state) }
            if let epochChange {
                let next = epochChange.next
                try db.run(
                    "UPDATE epochs SET end_height = ?, proof = ?, last_block = ? WHERE epoch = ?",
                    [
                        .integer(Int64(last.height)), .blob(epochChange.proof), .blob(last.block),
                        .integer(Int64(next.epoch - 1)),
                    ])
                try insert(next)
                try db.run("DELETE FROM pending_blocks")
            } else {
                try db.run("DELETE FROM pending_blocks WHERE round <= ?", [.integer(Int64(last.round))])
            }
        }
    }

    private func insert(_ e: EpochRecord) throws(StorageError) {
        func optional(_ v: [UInt8]?) -> SQLiteValue { v.map { .blob($0) } ?? .null }
        try db.run(
            "INSERT OR REPLACE INTO epochs (epoch, start_height, genesis_block, genesis_state, system, end_height, proof, last_block, system_proof, height_proof) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                .integer(Int64(e.epoch)), .integer(Int64(e.startHeight)), .blob(e.genesisBlock), .blob(e.genesisState),
                .blob(e.system), e.endHeight.map { .integer(Int64($0)) } ?? .null, optional(e.proof),
                optional(e.lastBlock), optional(e.systemProof), optional(e.heightProof),
            ])
    }

    /// Starts a chain from a verified snapshot (an empty store): the snapshot's block as
    /// the committed tip, its state as a stored snapshot, the epochs up to its own, in one
    /// transaction; the download's own records go.
    public func installSnapshot(block: CommittedBlock, state: StateWrite, epochs: [EpochRecord]) throws(StorageError) {
        try db.transaction { () throws(StorageError) in
            guard try lastCommitted() == nil else { throw StorageError("installing a snapshot over a chain") }
            try db.run(
                "INSERT INTO committed_blocks (height, id, round, block, state_id, commit_qc) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    .integer(Int64(block.height)), .blob(block.id), .integer(Int64(block.round)), .blob(block.block),
                    .blob(block.stateID), .blob(block.commitQC),
                ])
            try write(state)
            for e in epochs { try insert(e) }
            try db.run("DELETE FROM snapshot_target")
            try db.run("DELETE FROM snapshot_chunks")
        }
    }

    // MARK: Snapshot download in progress

    public func saveSnapshotTarget(_ target: [UInt8]) throws(StorageError) {
        try db.transaction { () throws(StorageError) in
            try db.run("DELETE FROM snapshot_chunks")
            try db.run("INSERT OR REPLACE INTO snapshot_target (id, target) VALUES (1, ?)", [.blob(target)])
        }
    }

    public func snapshotTarget() throws(StorageError) -> [UInt8]? {
        try db.query("SELECT target FROM snapshot_target WHERE id = 1") { $0.blob(0) }.first
    }

    public func saveSnapshotChunk(depth: Int, prefix: [UInt8], leaves: [UInt8]) throws(StorageError) {
        try db.run(
            "INSERT OR REPLACE INTO snapshot_chunks (depth, prefix, leaves) VALUES (?, ?, ?)",
            [.integer(Int64(depth)), .blob(prefix), .blob(leaves)])
    }

    public func snapshotChunks() throws(StorageError) -> [(depth: Int, prefix: [UInt8], leaves: [UInt8])] {
        try db.query("SELECT depth, prefix, leaves FROM snapshot_chunks") {
            (Int($0.integer(0)), $0.blob(1), $0.blob(2))
        }
    }

    public func clearSnapshotDownload() throws(StorageError) {
        try db.run("DELETE FROM snapshot_target")
        try db.run("DELETE FROM snapshot_chunks")
    }

    /// The lowest committed height held (1, or the snapshot a node started from).
    public func firstCommittedHeight() throws(StorageError) -> UInt64? {
        try db.query("SELECT MIN(height) FROM committed_blocks") { $0.isNull(0) ? nil : UInt64($0.integer(0)) }.first
            ?? nil
    }

    public func lastCommitted() throws(StorageError) -> CommittedBlock? {
        try committed(
            query:
                "SELECT height, id, round, block, state_id, commit_qc FROM committed_blocks ORDER BY height DESC LIMIT 1",
            []
        )
        .first
    }

    public func committed(height: UInt64) throws(StorageError) -> CommittedBlock? {
        // Heights may come from peers: past SQLite's integers there is nothing stored.
        guard let height = Int64(exactly: height) else { return nil }
        return try committed(
            query: "SELECT height, id, round, block, state_id, commit_qc FROM committed_blocks WHERE height = ?",
            [.integer(height)]
        ).first
    }

    /// Committed blocks from `height` on, in order, at most `limit`.
    public func committed(from height: UInt64, limit: Int) throws(StorageError) -> [CommittedBlock] {
        try committed(
            query:
                "SELECT height, id, round, block, state_id, commit_qc FROM committed_blocks WHERE height >= ? ORDER BY height LIMIT ?",
            [.integer(Int64(exactly: height) ?? Int64.max), .integer(Int64(max(0, limit)))])
    }

    public func committed(id: [UInt8]) throws(StorageError) -> CommittedBlock? {
        try committed(
            query: "SELECT height, id, round, block, state_id, commit_qc FROM committed_blocks WHERE id = ?",
            [.blob(id)]
        ).first
    }

    private func committed(query: String, _ bindings: [SQLiteValue]) throws(StorageError) -> [CommittedBlock] {
        try db.query(query, bindings) { row in
            CommittedBlock(
                height: UInt64(row.integer(0)), id: row.blob(1), round: UInt64(row.integer(2)), block: row.blob(3),
                stateID: row.blob(4), commitQC: row.blob(5))
        }
    }

    /// Heights block pruning deletes in one state write at most.
    public static let maxPrunedPerWrite: Int64 = 20_000

    private func write(_ state: StateWrite) throws(StorageError) {
        if let from = state.blocksFrom, let below = Int64(exactly: from),
            let first = try firstCommittedHeight().flatMap({ Int64(exactly: $0) }), first < below
        {
            // At most `maxPrunedPerWrite` heights per write: turning pruning on for a long
            // chain must not stall one commit for the whole backlog.
            let upTo = min(below, first + Self.maxPrunedPerWrite)
            try db.run("DELETE FROM committed_blocks WHERE height < ?", [.integer(upTo)])
            try db.run("DELETE FROM receipts WHERE height < ?", [.integer(upTo)])
        }
        // In key order: appending to the B-tree instead of inserting at random places is
        // several times faster for a whole tree (a snapshot install).
        let nodes = state.nodes.sorted {
            $0.version != $1.version ? $0.version < $1.version : $0.hash.lexicographicallyPrecedes($1.hash)
        }
        try db.runMany(
            "INSERT OR IGNORE INTO state_nodes (version, hash, body) VALUES (?, ?, ?)",
            nodes.map { [.integer(Int64($0.version)), .blob($0.hash), .blob($0.body)] })
        try db.runMany(
            "INSERT INTO state_stale (since, version, hash) VALUES (?, ?, ?)",
            state.stale.map { [.integer(Int64(state.version)), .integer(Int64($0.version)), .blob($0.hash)] })
        try db.run(
            "INSERT OR REPLACE INTO state_versions (height, version, root, snapshot) VALUES (?, ?, ?, ?)",
            [
                .integer(Int64(state.height)), .integer(Int64(state.version)), .blob(state.root),
                .integer(state.snapshot ? 1 : 0),
            ])
        guard let keepFrom = state.keepFrom,
            let floor = try db.query(
                "SELECT version FROM state_versions WHERE height >= ? ORDER BY height LIMIT 1",
                [.integer(Int64(keepFrom))], { UInt64($0.integer(0)) }
            ).first
        else { return }
        // A node that went stale at or before the oldest kept version is in no kept version.
        try db.run(
            "DELETE FROM state_nodes WHERE (version, hash) IN (SELECT version, hash FROM state_stale WHERE since <= ?)",
            [.integer(Int64(floor))])
        try db.run("DELETE FROM state_stale WHERE since <= ?", [.integer(Int64(floor))])
        try db.run("DELETE FROM state_versions WHERE height < ?", [.integer(Int64(keepFrom))])
    }

    /// Every receipt of a transaction id, oldest first (a transaction included again
    /// after it executed has a second, failed receipt).
    public func receipts(txID: [UInt8]) throws(StorageError) -> [Receipt] {
        try db.query(
            "SELECT height, idx, tx_id, code, log, gas, output FROM receipts WHERE tx_id = ? ORDER BY height, idx LIMIT 16",
            [.blob(txID)]
        ) {
            Receipt(
                height: UInt64($0.integer(0)), index: Int($0.integer(1)), txID: $0.blob(2), code: UInt32($0.integer(3)),
                log: $0.isNull(4) ? nil : $0.text(4), gas: UInt64(bitPattern: $0.integer(5)),
                output: $0.isNull(6) ? nil : $0.text(6))
        }
    }

    /// A stored state version: the height it follows, its tree version and root.
    public struct StateVersion: Sendable, Equatable {
        public let height: UInt64
        public let version: UInt64
        public let root: [UInt8]
        public let snapshot: Bool
    }

    /// The newest stored state at or below `height`.
    public func stateVersion(atMost height: UInt64) throws(StorageError) -> StateVersion? {
        try stateVersions(
            where: "height <= ? ORDER BY height DESC LIMIT 1", [.integer(Int64(exactly: height) ?? Int64.max)]
        ).first
    }

    public func stateVersion(height: UInt64) throws(StorageError) -> StateVersion? {
        guard let height = Int64(exactly: height) else { return nil }
        return try stateVersions(where: "height = ?", [.integer(height)]).first
    }

    /// Stored snapshots, newest first.
    public func snapshots() throws(StorageError) -> [StateVersion] {
        try stateVersions(where: "snapshot = 1 ORDER BY height DESC", [])
    }

    private func stateVersions(where clause: String, _ bindings: [SQLiteValue]) throws(StorageError) -> [StateVersion] {
        try db.query("SELECT height, version, root, snapshot FROM state_versions WHERE " + clause, bindings) {
            StateVersion(
                height: UInt64($0.integer(0)), version: UInt64($0.integer(1)), root: $0.blob(2),
                snapshot: $0.integer(3) != 0)
        }
    }

    /// A stored tree node's body.
    public func stateNode(version: UInt64, hash: [UInt8]) throws(StorageError) -> [UInt8]? {
        try db.query(
            "SELECT body FROM state_nodes WHERE version = ? AND hash = ?", [.integer(Int64(version)), .blob(hash)]
        ) {
            $0.blob(0)
        }.first
    }

    /// Every stored node of versions up to `version`, keyed by version ‖ hash: one scan
    /// instead of a query per node when a whole version is loaded.
    public func stateNodes(upTo version: UInt64) throws(StorageError) -> [StoredNodeKey: [UInt8]] {
        var out: [StoredNodeKey: [UInt8]] = [:]
        try db.forEach("SELECT version, hash, body FROM state_nodes WHERE version <= ?", [.integer(Int64(version))]) {
            out[StoredNodeKey(version: UInt64($0.integer(0)), hash: $0.blob(1))] = $0.blob(2)
        }
        return out
    }

    /// A stored node's key: the version that created it and its hash.
    public struct StoredNodeKey: Hashable, Sendable {
        public let version: UInt64
        public let hash: [UInt8]

        public init(version: UInt64, hash: [UInt8]) {
            self.version = version
            self.hash = hash
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(version)
            hash.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }

    /// Stored nodes (a measure for tests and status).
    public func stateNodeCount() throws(StorageError) -> Int {
        try db.query("SELECT COUNT(*) FROM state_nodes") { Int($0.integer(0)) }.first ?? 0
    }
}
