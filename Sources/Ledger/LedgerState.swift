import HashTreeCollections
import NodeCrypto
import StateTree
import Wire

/// The deterministic state machine that consensus drives. Everything lives in one
/// authenticated tree (`SparseMerkleTree`) under module namespaces (`StateKey`):
/// `bank/` accounts, `system/` the epoch and its validators, `dag/` the recently
/// executed transaction ids. The tree's root is the state id that votes certify, and
/// `commit_state_id` once the block commits (docs/state.md).
///
/// A block runs its transactions in order: the ante checks (signature, sequence,
/// predecessors, fee) and then the payload's module (bank for transfers and data, system
/// for validator changes); the system module ends the block. Each transaction gets a
/// receipt with a code, a log and the gas its reads and writes cost.
public struct LedgerState: Sendable {
    public struct Account: Sendable, Equatable {
        public var balance: UInt64
        /// The seq of the author's last executed transaction; the next must be one more.
        public var seq: UInt64

        public init(balance: UInt64, seq: UInt64) {
            self.balance = balance
            self.seq = seq
        }

        /// The value under `bank/…`: u64 balance ‖ u64 seq.
        public var encoded: [UInt8] {
            var w = WireWriter(capacity: 16)
            w.u64(balance)
            w.u64(seq)
            return w.bytes
        }

        public init?(_ bytes: [UInt8]) {
            var r = WireReader(bytes)
            guard let b = try? r.u64(), let s = try? r.u64(), r.remaining == 0 else { return nil }
            (balance, seq) = (b, s)
        }
    }

    /// The result of one transaction in a block.
    public struct Receipt: Sendable, Equatable {
        public enum Code: UInt32, Sendable {
            case ok = 0
            /// Not a transaction: no effect.
            case malformed = 1
            /// Wrong chain, bad signature or field: no effect.
            case invalid = 2
            /// Its seq is not the author's next: no effect (a later block may take it).
            case badSequence = 3
            /// A predecessor has not executed (or not among the recent ones): no effect.
            case missingPredecessor = 4
            /// The author cannot pay the fee: no effect.
            case insufficientFee = 5
            /// The payload failed: the fee is charged and the seq used, nothing else.
            case failed = 6
            /// The block's contract gas (`ContractMsg.maxBlockGas`) is used up: no effect
            /// (a later block takes it).
            case blockGasFull = 7
        }

        public let id: TxID
        public let code: Code
        /// nil on success, else why it failed.
        public let failure: String?
        /// Gas its reads and writes cost (`StateGas`).
        public let gas: UInt64
        /// A contract message's result as JSON (address, events, data), else nil.
        public let output: String?

        public init(id: TxID, code: Code, failure: String?, gas: UInt64, output: String? = nil) {
            self.id = id
            self.code = code
            self.failure = failure
            self.gas = gas
            self.output = output
        }
    }

    /// How many executed transaction ids the `dag/` module keeps: a predecessor must be
    /// among them. 256 buckets of 256.
    public static let recentWindow: UInt64 = 65_536
    static let bucketSize: UInt64 = 256

    public let chainID: String
    public private(set) var tree: SparseMerkleTree
    /// Blocks executed: the tree version of this state.
    public private(set) var version: UInt64
    /// Epoch and validators (also under `system/validators`); nil for a bare ledger
    /// without epochs (tests, tools).
    public private(set) var system: SystemState?
    /// Derived from `dag/recent/…`: each recent id's position in execution order.
    private var recent: TreeDictionary<TxID, UInt64> = [:]
    private var executedCount: UInt64 = 0
    /// The recent-id bucket being filled by the block that runs (written to the store
    /// once, when the block ends or the bucket is full): appending each id to the stored
    /// bucket copied up to 8 KiB per transaction.
    private var openBucket: (index: UInt64, ids: [UInt8])?
    /// Derived from `wasm/store/…`: each contract's keys in byte order (for `db_scan`).
    public private(set) var contractIndex = ContractKeyIndex()

    public init(chainID: String, balances: [Ed25519.PublicKey: UInt64], system: SystemState? = nil) {
        self.chainID = chainID
        self.system = system
        version = 0
        var changes: [[UInt8]: [UInt8]?] = [:]
        for (key, balance) in balances {
            changes[StateKey.account(key.rawRepresentation)] = Account(balance: balance, seq: 0).encoded
        }
        if let system { changes[StateKey.system] = system.encoded }
        var tree = SparseMerkleTree()
        tree.apply(changes, version: 0)
        self.tree = tree
    }

    public var accountCount: Int {
        var n = 0
        tree.visitLeaves { if $0.key.starts(with: Self.bankPrefix) { n += 1 } }
        return n
    }

    static let bankPrefix = Array("bank/".utf8)

    public func account(_ key: Ed25519.PublicKey) -> Account? {
        tree.get(StateKey.account(key.rawRepresentation)).flatMap(Account.init)
    }
    public func balance(of account: Ed25519.PublicKey) -> UInt64 { self.account(account)?.balance ?? 0 }
    public func seq(of account: Ed25519.PublicKey) -> UInt64 { self.account(account)?.seq ?? 0 }

    /// Whether `tx` can no longer execute: its author's seq has reached it (it executed,
    /// or another transaction took its seq).
    public func isDone(_ tx: Transaction) -> Bool { seq(of: tx.author) >= tx.seq }

    /// Whether `id` is among the last `recentWindow` executed transactions.
    public func isRecentlyExecuted(_ id: TxID) -> Bool { recent[id] != nil }

    /// How many executions ago `id` ran (0: the last one), if it is still in the window.
    public func executionAge(of id: TxID) -> UInt64? {
        recent[id].map { executedCount - 1 - $0 }
    }

    /// The last `limit` executed transactions, newest first (one pass over the window).
    public func latestExecuted(limit: Int) -> [TxID] {
        guard limit > 0 else { return [] }
        var newest: [(id: TxID, position: UInt64)] = []
        for (id, position) in recent where newest.count < limit || position > newest[newest.count - 1].position {
            let at = newest.firstIndex { $0.position < position } ?? newest.count
            newest.insert((id, position), at: at)
            if newest.count > limit { newest.removeLast() }
        }
        return newest.map(\.id)
    }

    /// The state id: the tree's root.
    public var root: [UInt8] { tree.rootHash.bytes }
    public var stateRoot: StateHash { tree.rootHash }

    /// The value under `key` with its proof against `stateRoot` (nil: absent, proved so).
    public func proof(key: [UInt8]) -> (value: [UInt8]?, proof: RangeProof) { tree.proof(for: key) }

    /// An account with its proof against `stateRoot`.
    public func proof(for account: Ed25519.PublicKey) -> (account: Account?, proof: RangeProof) {
        let (value, proof) = tree.proof(for: StateKey.account(account.rawRepresentation))
        return (value.flatMap(Account.init), proof)
    }

    // MARK: Execution

    /// Executes one block: its transactions in order, then the block count of the epoch
    /// (see `SystemState`); `endsEpoch` tells whether this block was the epoch's last.
    public mutating func executeBlock(
        _ encoded: [[UInt8]], proposer: Ed25519.PublicKey, signatureChecked: (TxID) -> Bool = { _ in false },
        contracts: (any ContractEngine)? = nil
    ) -> (receipts: [Receipt], endsEpoch: Bool) {
        run(encoded, proposer: proposer, signatureChecked: signatureChecked, contracts: contracts, endBlock: true)
    }

    /// Executes transactions in order without ending a block (tests, tools). Fees go to
    /// `proposer`. Every rule is a function of the state and the transaction, so every
    /// replica gets the same result. `signatureChecked` names transactions whose exact
    /// bytes were already verified (the id hashes the signature too), so each node
    /// verifies a transaction once.
    public mutating func execute(
        _ encoded: [[UInt8]], proposer: Ed25519.PublicKey, signatureChecked: (TxID) -> Bool = { _ in false },
        contracts: (any ContractEngine)? = nil
    ) -> [Receipt] {
        run(encoded, proposer: proposer, signatureChecked: signatureChecked, contracts: contracts, endBlock: false)
            .receipts
    }

    private mutating func run(
        _ encoded: [[UInt8]], proposer: Ed25519.PublicKey, signatureChecked: (TxID) -> Bool,
        contracts: (any ContractEngine)?, endBlock: Bool
    ) -> (receipts: [Receipt], endsEpoch: Bool) {
        var store = StateOverlay(tree)
        var receipts: [Receipt] = []
        receipts.reserveCapacity(encoded.count)
        let systemBefore = system
        var blockGas: UInt64 = 0
        for (index, bytes) in encoded.enumerated() {
            store.charge(StateGas.txPerByte &* UInt64(bytes.count))
            guard let tx = try? Transaction.decode(bytes) else {
                let id = TxID(unchecked: BLAKE2b.hash256(bytes))
                receipts.append(
                    Receipt(id: id, code: .malformed, failure: "malformed", gas: store.takeGas(), output: nil))
                continue
            }
            if case .contract(let msg) = tx.payload {
                // Checked before the transaction's own rules: never add an unchecked limit.
                guard msg.gasLimit <= ContractMsg.maxBlockGas - blockGas else {
                    receipts.append(
                        Receipt(
                            id: tx.id, code: .blockGasFull, failure: "the block's contract gas is used up",
                            gas: store.takeGas()))
                    continue
                }
                blockGas += msg.gasLimit
            }
            let context = ContractContext(
                chainID: chainID, height: endBlock ? version + 1 : version, txIndex: UInt32(index), txHash: tx.id.bytes)
            let (code, failure, output) = apply(
                tx, proposer: proposer, signatureChecked: signatureChecked(tx.id), contracts: contracts,
                context: context, &store)
            receipts.append(Receipt(id: tx.id, code: code, failure: failure, gas: store.takeGas(), output: output))
        }
        var ends = false
        if endBlock, var s = system {
            ends = s.endBlock()
            system = s
        }
        if let system, system != systemBefore { store.set(StateKey.system, system.encoded, charged: false) }
        // A block's state names its height: executing block h gives version h. Loose
        // transactions (tests, tools) keep the version.
        if endBlock {
            version += 1
            store.set(StateKey.height, Self.u64(version), charged: false)
        }
        flushRecent(&store)
        updateContractIndex(store.pendingWrites(prefix: StateKey.contractStorePrefix))
        tree = store.commit(version: version)
        return (receipts, ends)
    }

    /// The ante checks, then the payload's module. Checks that fail before the fee leave
    /// no trace; once the fee is paid and the seq used, a failing payload's writes are
    /// rolled back and the fee stays charged.
    private mutating func apply(
        _ tx: Transaction, proposer: Ed25519.PublicKey, signatureChecked: Bool, contracts: (any ContractEngine)?,
        context: ContractContext, _ store: inout StateOverlay
    ) -> (Receipt.Code, String?, String?) {
        let authorKey = StateKey.account(tx.author.rawRepresentation)
        var author = store.get(authorKey).flatMap(Account.init) ?? Account(balance: 0, seq: 0)
        // Per-author sequence numbers make a replay or a duplicate fail here, with no
        // ever-growing set of executed ids.
        guard tx.seq > author.seq else {
            return (
                .badSequence, "already executed or superseded: the author's seq is \(author.seq), this is \(tx.seq)",
                nil
            )
        }
        // A leader may include transactions this node never saw: check them here too.
        if let reason = tx.validateStandalone(chainID: chainID, checkSignature: !signatureChecked) {
            return (.invalid, reason, nil)
        }
        guard tx.seq == author.seq + 1 else {
            return (.badSequence, "bad sequence: expected \(author.seq + 1), got \(tx.seq)", nil)
        }
        for p in tx.predecessors where recent[p] == nil {
            return (
                .missingPredecessor,
                "predecessor \(p.hex.prefix(16)) is not among the last \(Self.recentWindow) executed transactions",
                nil
            )
        }
        guard author.balance >= tx.fee else {
            return (.insufficientFee, "cannot pay the fee of \(tx.fee) with \(author.balance)", nil)
        }
        author.balance -= tx.fee
        author.seq = tx.seq
        store.set(authorKey, author.encoded)
        if tx.fee > 0 { Bank.credit(proposer, tx.fee, &store) }
        recordExecuted(tx.id, &store)
        let savepoint = store.savepoint
        var failure: String?
        var output: String?
        switch tx.payload {
        case .transfer(let to, let amount):
            failure = Bank.transfer(from: tx.author, to: to, amount: amount, &store)
        case .data:
            failure = nil
        case .validatorChange(let change, let approvals):
            if var s = system {
                failure = s.apply(change, approvals: approvals, chainID: chainID)
                if failure == nil { system = s }
            } else {
                failure = "this chain has no validator set to change"
            }
        case .contract(let msg):
            if let contracts {
                var view = ContractStore(overlay: store, index: contractIndex, readOnly: false)
                let outcome = contracts.handle(msg, sender: tx.author, context: context, store: &view)
                store = view.overlay
                (failure, output) = (outcome.failure, outcome.output)
            } else {
                failure = "this node runs no contract engine"
            }
        }
        guard let failure else { return (.ok, nil, output) }
        store.rollback(to: savepoint)
        return (.failed, failure, output)
    }

    /// The `dag/` module: appends `id` to the recent ids; the bucket that falls out of
    /// the window is deleted with its ids.
    private mutating func recordExecuted(_ id: TxID, _ store: inout StateOverlay) {
        let position = executedCount
        let bucket = position / Self.bucketSize
        if openBucket?.index != bucket {
            flushRecent(&store)
            let stored =
                position % Self.bucketSize == 0 ? [] : (store.get(StateKey.recentBucket(bucket), charged: false) ?? [])
            openBucket = (bucket, stored)
        }
        openBucket!.ids += id.bytes  // set just above
        recent[id] = position
        executedCount += 1
        let windowBuckets = Self.recentWindow / Self.bucketSize
        if position % Self.bucketSize == 0, bucket >= windowBuckets {
            let old = bucket - windowBuckets
            let oldKey = StateKey.recentBucket(old)
            if let expired = store.get(oldKey, charged: false) {
                for chunk in stride(from: 0, to: expired.count, by: 32) {
                    recent[TxID(unchecked: Array(expired[chunk..<chunk + 32]))] = nil
                }
            }
            store.delete(oldKey, charged: false)
        }
    }

    /// Writes the open recent-id bucket and the executed count to the store: the block's
    /// state holds exactly what writing them per transaction gave.
    private mutating func flushRecent(_ store: inout StateOverlay) {
        guard let open = openBucket else { return }
        openBucket = nil
        store.set(StateKey.recentBucket(open.index), open.ids, charged: false)
        store.set(StateKey.executedCount, Self.u64(executedCount), charged: false)
    }

    /// Keeps `contractIndex` in step with a block's writes under `wasm/store/`.
    private mutating func updateContractIndex(_ writes: [(key: [UInt8], value: [UInt8]?)]) {
        var byContract: [[UInt8]: [[UInt8]: Bool]] = [:]
        for (treeKey, value) in writes {
            guard let (contract, key) = ContractKeyIndex.split(treeKey) else { continue }
            byContract[contract, default: [:]][key] = value != nil
        }
        for (contract, changes) in byContract { contractIndex.merge(contract, changes) }
    }

    static func u64(_ v: UInt64) -> [UInt8] {
        var w = WireWriter(capacity: 8)
        w.u64(v)
        return w.bytes
    }
}

/// The `bank/` module: balances, fees, transfers.
enum Bank {
    static func credit(_ account: Ed25519.PublicKey, _ amount: UInt64, _ store: inout StateOverlay) {
        let key = StateKey.account(account.rawRepresentation)
        var a = store.get(key).flatMap(LedgerState.Account.init) ?? .init(balance: 0, seq: 0)
        // Total supply is fixed at genesis (fees only move coins), so this cannot overflow.
        a.balance &+= amount
        store.set(key, a.encoded)
    }

    static func transfer(
        from: Ed25519.PublicKey, to: Ed25519.PublicKey, amount: UInt64, _ store: inout StateOverlay
    ) -> String? {
        let fromKey = StateKey.account(from.rawRepresentation)
        var sender = store.get(fromKey).flatMap(LedgerState.Account.init) ?? .init(balance: 0, seq: 0)
        guard sender.balance >= amount else { return "insufficient balance: \(sender.balance) for \(amount)" }
        sender.balance -= amount
        store.set(fromKey, sender.encoded)
        let toKey = StateKey.account(to.rawRepresentation)
        var recipient = store.get(toKey).flatMap(LedgerState.Account.init) ?? .init(balance: 0, seq: 0)
        let (sum, overflow) = recipient.balance.addingReportingOverflow(amount)
        guard !overflow else { return "recipient balance would overflow" }
        recipient.balance = sum
        store.set(toKey, recipient.encoded)
        return nil
    }
}

extension LedgerState: Equatable {
    /// Two states are equal when their chains and roots are (the root commits to all).
    public static func == (a: LedgerState, b: LedgerState) -> Bool {
        a.chainID == b.chainID && a.stateRoot == b.stateRoot && a.version == b.version
    }
}

extension LedgerState {
    /// The stored form: string16 chain id ‖ u64 version ‖ u32 n ‖ n × (key, value) in
    /// key-hash order. Everything else is derived from the leaves.
    public func encoded() -> [UInt8] {
        var w = WireWriter(capacity: tree.count * 64 + 16)
        w.string16(chainID)
        w.u64(version)
        w.u32(UInt32(tree.count))
        tree.visitLeaves { $0.encode(&w) }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> LedgerState {
        var r = WireReader(bytes)
        let chainID = try r.string16(max: 64)
        let version = try r.u64("version")
        let leaves = try StateLeaf.decodeList(&r, maxCount: 1 << 20, maxValue: maxStateValueBytes)
        try r.finish()
        return try restore(chainID: chainID, version: version, leaves: leaves)
    }

    /// A state from its leaves (a stored state or a verified snapshot): the typed parts
    /// are read back from their keys.
    public static func restore(
        chainID: String, version: UInt64, leaves: [StateLeaf]
    ) throws(WireError)
        -> LedgerState
    {
        var changes: [SparseMerkleTree.Change] = []
        changes.reserveCapacity(leaves.count)
        var seen: Set<[UInt8]> = []
        for leaf in leaves {
            guard seen.insert(leaf.key).inserted else { throw WireError("a key stored twice") }
            changes.append(.init(key: leaf.key, value: leaf.value))
        }
        var tree = SparseMerkleTree()
        tree.apply(changes, version: version)
        return try restore(chainID: chainID, version: version, tree: tree)
    }

    /// A state from its tree (read back from storage or rebuilt from a snapshot).
    public static func restore(
        chainID: String, version: UInt64, tree: SparseMerkleTree
    ) throws(WireError)
        -> LedgerState
    {
        var state = LedgerState(chainID: chainID, balances: [:])
        state.tree = tree
        state.version = version
        if let height = tree.get(StateKey.height) {
            var r = WireReader(height)
            guard try r.u64("height") == version, r.remaining == 0 else {
                throw WireError("the state names another height than \(version)")
            }
        }
        if let system = state.tree.get(StateKey.system) { state.system = try SystemState.decode(system) }
        if let count = state.tree.get(StateKey.executedCount) {
            var r = WireReader(count)
            state.executedCount = try r.u64("executed count")
            try r.finish()
        }
        let buckets = Self.recentWindow / Self.bucketSize
        let last = state.executedCount == 0 ? 0 : (state.executedCount - 1) / Self.bucketSize
        for bucket in (last >= buckets ? last - buckets + 1 : 0)...last {
            guard let ids = state.tree.get(StateKey.recentBucket(bucket)) else { continue }
            guard ids.count % 32 == 0, ids.count <= Int(Self.bucketSize) * 32 else {
                throw WireError("recent-id bucket of \(ids.count) bytes")
            }
            for (i, start) in stride(from: 0, to: ids.count, by: 32).enumerated() {
                state.recent[TxID(unchecked: Array(ids[start..<start + 32]))] = bucket * Self.bucketSize + UInt64(i)
            }
        }
        var malformed = false
        var contractKeys: [[UInt8]: [[UInt8]]] = [:]
        tree.visitLeaves { leaf in
            if let (contract, key) = ContractKeyIndex.split(leaf.key) {
                contractKeys[contract, default: []].append(key)
            }
            if leaf.key.starts(with: Self.bankPrefix),
                leaf.key.count != Self.bankPrefix.count + 32 || Account(leaf.value) == nil
            {
                malformed = true
            }
        }
        guard !malformed else { throw WireError("malformed account entry") }
        state.contractIndex = ContractKeyIndex(unsorted: contractKeys)
        return state
    }
}
