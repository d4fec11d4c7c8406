import StateTree
import Wire

/// The state's key space, one namespace per module. docs/state.md lists every key.
public enum StateKey {
    /// `bank/` ‖ account key (32): u64 balance ‖ u64 seq.
    public static func account(_ account: [UInt8]) -> [UInt8] { Array("bank/".utf8) + account }
    /// `system/validators`: the epoch and its validators (`SystemState` encoding).
    public static let system = Array("system/validators".utf8)
    /// `system/height`: u64, the height of the block this state follows (so a QC that
    /// certifies a state certifies its height too).
    public static let height = Array("system/height".utf8)
    /// `dag/count`: u64, how many transactions have executed.
    public static let executedCount = Array("dag/count".utf8)
    /// `dag/recent/` ‖ u32 bucket (big-endian): the ids of executed transactions
    /// bucket × 256 … bucket × 256 + 255, in execution order, concatenated.
    public static func recentBucket(_ bucket: UInt64) -> [UInt8] {
        var w = WireWriter(capacity: 15)
        w.fixed(Array("dag/recent/".utf8))
        w.u32(UInt32(truncatingIfNeeded: bucket))
        return w.bytes
    }
}

/// Gas for reads and writes of the state: the Cosmos SDK's KVStore gas table
/// (store/types/gas.go, `KVGasConfig`), which CosmWasm chains charge as well.
public enum StateGas {
    public static let readFlat: UInt64 = 1_000
    public static let readPerByte: UInt64 = 3
    public static let writeFlat: UInt64 = 2_000
    public static let writePerByte: UInt64 = 30
    public static let deleteFlat: UInt64 = 1_000
    public static let iterNext: UInt64 = 30
    /// Per byte of an encoded transaction (`TxSizeCostPerByte`).
    public static let txPerByte: UInt64 = 10
}

/// A block's writes over the tree of its parent: reads see earlier writes of the same
/// block; `commit` applies them all as one version (each changed key's path once).
struct StateOverlay {
    private(set) var base: SparseMerkleTree
    private var writes: [[UInt8]: [UInt8]?] = [:]
    /// Each write's previous overlay entry (nil: the key was not written yet), so a
    /// failed transaction's writes are undone in O(its writes).
    private var journal: [(key: [UInt8], previous: [UInt8]??)] = []
    /// Gas charged since the last `takeGas`.
    private var gas: UInt64 = 0

    init(_ base: SparseMerkleTree) { self.base = base }

    /// Reads and writes are charged to the running transaction; the ledger's own
    /// bookkeeping (`charged: false`) is not.
    mutating func get(_ key: [UInt8], charged: Bool = true) -> [UInt8]? {
        let value = writes[key] ?? base.get(key)
        if charged { gas &+= StateGas.readFlat &+ StateGas.readPerByte &* UInt64(key.count + (value?.count ?? 0)) }
        return value
    }

    mutating func set(_ key: [UInt8], _ value: [UInt8], charged: Bool = true) {
        if charged { gas &+= StateGas.writeFlat &+ StateGas.writePerByte &* UInt64(key.count + value.count) }
        record(key, value)
    }

    mutating func delete(_ key: [UInt8], charged: Bool = true) {
        if charged { gas &+= StateGas.deleteFlat }
        record(key, nil)
    }

    private mutating func record(_ key: [UInt8], _ entry: [UInt8]?) {
        journal.append((key, writes[key]))
        writes[key] = .some(entry)
        if let (contract, k) = ContractKeyIndex.split(key) { contractTouched[contract, default: []].insert(k) }
    }

    /// Every contract key the block has written or deleted, by contract (a superset after a
    /// rollback: a scan reads each one's current presence), so a scan finds the block's
    /// writes without going through all of them.
    private(set) var contractTouched: [[UInt8]: Set<[UInt8]>] = [:]

    mutating func charge(_ amount: UInt64) { gas &+= amount }

    /// Gas charged since the last `takeGas`, without taking it.
    var pendingGas: UInt64 { gas }

    /// The block's writes under `prefix` (nil value: deleted).
    func pendingWrites(prefix: [UInt8]) -> [(key: [UInt8], value: [UInt8]?)] {
        writes.compactMap { $0.key.starts(with: prefix) ? ($0.key, $0.value) : nil }
    }

    /// Every write of the block (for derived indexes).
    var allWrites: [[UInt8]: [UInt8]?] { writes }

    mutating func takeGas() -> UInt64 {
        defer { gas = 0 }
        return gas
    }

    /// A point to roll back to: a failed transaction's payload is undone to it.
    var savepoint: Int { journal.count }

    mutating func rollback(to savepoint: Int) {
        while journal.count > savepoint {
            let (key, previous) = journal.removeLast()
            writes[key] = previous  // .none removes the key from the overlay
        }
    }

    /// The tree with every write applied as `version`.
    func commit(version: UInt64) -> SparseMerkleTree {
        var tree = base
        tree.apply(writes, version: version)
        return tree
    }
}
