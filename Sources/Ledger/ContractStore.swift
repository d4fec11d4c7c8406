import HashTreeCollections
import NodeCrypto
import StateTree
import Wire

/// What a contract engine (the `Contracts` module) is handed to run a contract message:
/// the block's state with its journal, the ordered index of contract keys (the tree is
/// keyed by hash, so scans need it), and gas accounting in the Cosmos SDK's units.
public protocol ContractEngine: Sendable {
    /// Runs `msg` for `sender` on `store`. Writes stay in `store` on success; on failure
    /// the ledger rolls them back. Gas is charged to `store`.
    func handle(
        _ msg: ContractMsg, sender: Ed25519.PublicKey, context: ContractContext, store: inout ContractStore
    ) -> ContractOutcome
}

/// The block a contract runs in (CosmWasm's `Env`). There is no BFT time yet:
/// `time` is the height in seconds, so a contract's expiries are still deterministic.
public struct ContractContext: Sendable {
    public let chainID: String
    public let height: UInt64
    public let txIndex: UInt32
    public let txHash: [UInt8]

    public init(chainID: String, height: UInt64, txIndex: UInt32, txHash: [UInt8]) {
        self.chainID = chainID
        self.height = height
        self.txIndex = txIndex
        self.txHash = txHash
    }

    public var timeNanos: UInt64 { height &* 1_000_000_000 }
}

/// A contract message's result: nil `failure` on success; `output` is the JSON the
/// receipt keeps (contract address, code id, events, data) for `gettx` and the CLI.
public struct ContractOutcome: Sendable, Equatable {
    public var failure: String?
    public var output: String?

    public init(failure: String?, output: String?) {
        self.failure = failure
        self.output = output
    }
}

/// The sorted keys of each contract's storage, derived from the tree's `wasm/store/`
/// leaves: CosmWasm's `db_scan` walks keys in byte order, which a hashed tree cannot.
public struct ContractKeyIndex: Sendable {
    var keys: TreeDictionary<[UInt8], [[UInt8]]> = [:]

    public init() {}

    /// Built from each contract's keys in any order (a restored state).
    init(unsorted: [[UInt8]: [[UInt8]]]) {
        for (contract, list) in unsorted { keys[contract] = list.sorted { $0.lexicographicallyPrecedes($1) } }
    }

    /// The contract's keys in ascending byte order.
    public func keys(of contract: [UInt8]) -> [[UInt8]] { keys[contract] ?? [] }

    /// Applies one block's changes to a contract's keys (true: present) in one pass:
    /// O(keys + changes · log changes), not a copy per key.
    mutating func merge(_ contract: [UInt8], _ changes: [[UInt8]: Bool]) {
        let old = keys[contract] ?? []
        let added = changes.compactMap { $0.value ? $0.key : nil }.sorted { $0.lexicographicallyPrecedes($1) }
        var merged: [[UInt8]] = []
        merged.reserveCapacity(old.count + added.count)
        var i = 0
        for key in old {
            while i < added.count, added[i].lexicographicallyPrecedes(key) {
                merged.append(added[i])
                i += 1
            }
            if i < added.count, added[i] == key { i += 1 }  // rewritten: kept once
            if changes[key] != false { merged.append(key) }
        }
        merged += added[i...]
        keys[contract] = merged.isEmpty ? nil : merged
    }

    mutating func insert(_ contract: [UInt8], _ key: [UInt8]) {
        var list = keys[contract] ?? []
        let i = Self.lowerBound(list, key)
        if i < list.count, list[i] == key { return }
        list.insert(key, at: i)
        keys[contract] = list
    }

    mutating func remove(_ contract: [UInt8], _ key: [UInt8]) {
        guard var list = keys[contract] else { return }
        let i = Self.lowerBound(list, key)
        guard i < list.count, list[i] == key else { return }
        list.remove(at: i)
        keys[contract] = list.isEmpty ? nil : list
    }

    /// The first index whose key is not below `key`.
    static func lowerBound(_ list: [[UInt8]], _ key: [UInt8]) -> Int {
        var (lo, hi) = (0, list.count)
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid].lexicographicallyPrecedes(key) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Splits a `wasm/store/` tree key into contract and key.
    public static func split(_ treeKey: [UInt8]) -> (contract: [UInt8], key: [UInt8])? {
        let p = StateKey.contractStorePrefix.count
        guard treeKey.count >= p + 32, treeKey.starts(with: StateKey.contractStorePrefix) else { return nil }
        return (Array(treeKey[p..<p + 32]), Array(treeKey[(p + 32)...]))
    }
}

/// A lazy merge of the committed keys (a range of the sorted index, not copied) and the
/// block's writes in that range.
public struct ContractIterator {
    let base: [[UInt8]]
    var lo: Int
    var hi: Int
    var pending: [(key: [UInt8], present: Bool)]
    var pLo = 0
    var pHi: Int
    let ascending: Bool

    init(base: [[UInt8]], lo: Int, hi: Int, pending: [(key: [UInt8], present: Bool)], ascending: Bool) {
        self.base = base
        self.lo = lo
        self.hi = hi
        self.pending = pending
        self.pHi = pending.count
        self.ascending = ascending
    }

    /// The next key present now, or nil at the end.
    public mutating func next() -> [UInt8]? {
        while true {
            let b: [UInt8]? = lo < hi ? (ascending ? base[lo] : base[hi - 1]) : nil
            let p = pLo < pHi ? (ascending ? pending[pLo] : pending[pHi - 1]) : nil
            guard b != nil || p != nil else { return nil }
            // Which comes first in this direction: the committed key or the block's.
            let takeBase: Bool
            if let b, let p {
                takeBase = ascending ? b.lexicographicallyPrecedes(p.key) : p.key.lexicographicallyPrecedes(b)
            } else {
                takeBase = b != nil
            }
            if takeBase {
                if ascending { lo += 1 } else { hi -= 1 }
                return b
            }
            if let b, b == p!.key {  // the block rewrote or deleted a committed key
                if ascending { lo += 1 } else { hi -= 1 }
            }
            if ascending { pLo += 1 } else { pHi -= 1 }
            if p!.present { return p!.key }
        }
    }
}

/// The state as a contract engine sees it during one block: reads see the block's
/// earlier writes; `savepoint`/`rollback` undo a failed call (a submessage's writes, or
/// a whole transaction's); every read and write is charged (Cosmos SDK KV gas). A
/// read-only store (queries) refuses writes.
public struct ContractStore {
    var overlay: StateOverlay
    let index: ContractKeyIndex
    public let readOnly: Bool

    init(overlay: StateOverlay, index: ContractKeyIndex, readOnly: Bool) {
        self.overlay = overlay
        self.index = index
        self.readOnly = readOnly
    }

    /// A read-only view of `state` (queries run on the committed state).
    public init(readOnly state: LedgerState) {
        self.init(overlay: StateOverlay(state.tree), index: state.contractIndex, readOnly: true)
    }

    public mutating func get(_ key: [UInt8]) -> [UInt8]? { overlay.get(key) }
    public mutating func set(_ key: [UInt8], _ value: [UInt8]) { overlay.set(key, value) }
    public mutating func delete(_ key: [UInt8]) { overlay.delete(key) }

    /// Gas charged (SDK units) since the last `takeGas`.
    public mutating func charge(_ gas: UInt64) { overlay.charge(gas) }
    public mutating func takeGas() -> UInt64 { overlay.takeGas() }
    public var pendingGas: UInt64 { overlay.pendingGas }

    public var savepoint: Int { overlay.savepoint }
    public mutating func rollback(to savepoint: Int) { overlay.rollback(to: savepoint) }

    // MARK: Contract storage

    public mutating func contractGet(_ contract: [UInt8], _ key: [UInt8]) -> [UInt8]? {
        overlay.get(StateKey.contractStore(contract, key))
    }

    public mutating func contractSet(_ contract: [UInt8], _ key: [UInt8], _ value: [UInt8]) {
        overlay.set(StateKey.contractStore(contract, key), value)
    }

    public mutating func contractRemove(_ contract: [UInt8], _ key: [UInt8]) {
        overlay.delete(StateKey.contractStore(contract, key))
    }

    /// An iterator over the contract's keys in [start, end) in byte order (reverse when
    /// descending), as they are now (the block's writes included), and the number of keys
    /// the block has touched in that contract (the scan's work beyond a binary search,
    /// for its gas). Values are read as the iterator advances.
    public mutating func scan(
        _ contract: [UInt8], start: [UInt8]?, end: [UInt8]?, ascending: Bool
    )
        -> (ContractIterator, work: Int)
    {
        let base = index.keys(of: contract)
        let touched = overlay.contractTouched[contract] ?? []
        func inRange(_ k: [UInt8]) -> Bool {
            if let start, k.lexicographicallyPrecedes(start) { return false }
            if let end, !k.lexicographicallyPrecedes(end) { return false }
            return true
        }
        var pending: [(key: [UInt8], present: Bool)] = []
        for k in touched where inRange(k) {
            pending.append((k, overlay.get(StateKey.contractStore(contract, k), charged: false) != nil))
        }
        pending.sort { $0.key.lexicographicallyPrecedes($1.key) }
        let lo = start.map { ContractKeyIndex.lowerBound(base, $0) } ?? 0
        let hi = max(lo, end.map { ContractKeyIndex.lowerBound(base, $0) } ?? base.count)
        return (ContractIterator(base: base, lo: lo, hi: hi, pending: pending, ascending: ascending), touched.count)
    }

    // MARK: Bank

    public mutating func balance(of account: [UInt8]) -> UInt64 {
        guard account.count == 32 else { return 0 }
        return overlay.get(StateKey.account(account)).flatMap(LedgerState.Account.init)?.balance ?? 0
    }

    /// Moves `amount` between two 32-byte accounts (a contract's address is one); nil
    /// on success, else why not.
    public mutating func transfer(from: [UInt8], to: [UInt8], amount: UInt64) -> String? {
        guard from.count == 32, to.count == 32 else { return "an account address is 32 bytes" }
        if amount == 0 { return nil }
        let fromKey = StateKey.account(from)
        var sender = overlay.get(fromKey).flatMap(LedgerState.Account.init) ?? .init(balance: 0, seq: 0)
        guard sender.balance >= amount else { return "insufficient funds: \(sender.balance) for \(amount)" }
        sender.balance -= amount
        overlay.set(fromKey, sender.encoded)
        let toKey = StateKey.account(to)
        var recipient = overlay.get(toKey).flatMap(LedgerState.Account.init) ?? .init(balance: 0, seq: 0)
        let (sum, overflow) = recipient.balance.addingReportingOverflow(amount)
        guard !overflow else { return "recipient balance would overflow" }
        recipient.balance = sum
        overlay.set(toKey, recipient.encoded)
        return nil
    }

    // MARK: Code and instances

    public mutating func codeInfo(_ id: UInt64) -> CodeInfo? {
        overlay.get(StateKey.code(id)).flatMap { try? CodeInfo.decode($0) }
    }

    public mutating func contractInfo(_ address: [UInt8]) -> ContractInfo? {
        guard address.count == 32 else { return nil }
        return overlay.get(StateKey.contract(address)).flatMap { try? ContractInfo.decode($0) }
    }

    public mutating func setContractInfo(_ address: [UInt8], _ info: ContractInfo) {
        overlay.set(StateKey.contract(address), info.encoded)
    }

    /// The next id from a `wasm/seq/…` counter.
    public mutating func nextID(_ key: [UInt8]) -> UInt64 {
        var last: UInt64 = 0
        if let v = overlay.get(key, charged: false) {
            var r = WireReader(v)
            last = (try? r.u64()) ?? 0
        }
        overlay.set(key, LedgerState.u64(last + 1), charged: false)
        return last + 1
    }
}
