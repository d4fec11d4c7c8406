import HashTreeCollections
import NodeCrypto
import Wire

/// The deterministic state machine that consensus drives: account balances and
/// sequence numbers, changed only by executing blocks of transactions in order.
/// Its root (a Merkle tree over the accounts) is the state id that votes certify,
/// and `commit_state_id` once the block commits.
public struct LedgerState: Sendable, Equatable {
    public struct Account: Sendable, Equatable {
        public var balance: UInt64
        /// The seq of the author's last executed transaction; the next must be one more.
        public var seq: UInt64
    }

    /// The result of one transaction in a block.
    public struct Receipt: Sendable, Equatable {
        public let id: TxID
        /// nil on success, else why it failed. A failed transaction changes nothing,
        /// except that a fee it could pay is charged and its seq is used.
        public let failure: String?
    }

    public let chainID: String
    // Persistent hash tries: consensus keeps one state per uncommitted block, each a
    // copy of its parent's plus one block of changes, so copies must share structure
    // rather than duplicate every account and id.
    private var accounts: TreeDictionary<Ed25519.PublicKey, Account>
    /// Ids of executed transactions, so one included twice fails the second time.
    private var executed: TreeSet<TxID> = []
    /// Epoch and validators; nil for a bare ledger without epochs (tests, tools).
    public private(set) var system: SystemState?

    public init(chainID: String, balances: [Ed25519.PublicKey: UInt64], system: SystemState? = nil) {
        self.chainID = chainID
        accounts = TreeDictionary(uniqueKeysWithValues: balances.map { ($0.key, Account(balance: $0.value, seq: 0)) })
        self.system = system
    }

    public var accountCount: Int { accounts.count }
    public var executedCount: Int { executed.count }
    public func isExecuted(_ id: TxID) -> Bool { executed.contains(id) }
    public func account(_ key: Ed25519.PublicKey) -> Account? { accounts[key] }
    public func balance(of account: Ed25519.PublicKey) -> UInt64 { accounts[account]?.balance ?? 0 }
    public func seq(of account: Ed25519.PublicKey) -> UInt64 { accounts[account]?.seq ?? 0 }

    /// Executes one block: its transactions in order, then the block count of the epoch
    /// (see `SystemState`); `endsEpoch` tells whether this block was the epoch's last.
    public mutating func executeBlock(
        _ encoded: [[UInt8]], proposer: Ed25519.PublicKey, signatureChecked: (TxID) -> Bool = { _ in false }
    ) -> (receipts: [Receipt], endsEpoch: Bool) {
        let receipts = execute(encoded, proposer: proposer, signatureChecked: signatureChecked)
        guard var s = system else { return (receipts, false) }
        let ends = s.endBlock()
        system = s
        return (receipts, ends)
    }

    /// Executes transactions in order (within a block: `executeBlock` also ends the
    /// block). Fees go to `proposer`. Every rule is a function of the state and the
    /// transaction, so every replica gets the same result. `signatureChecked` names
    /// transactions whose exact bytes were already verified (the id hashes the
    /// signature too), so each node verifies a transaction once.
    public mutating func execute(
        _ encoded: [[UInt8]], proposer: Ed25519.PublicKey, signatureChecked: (TxID) -> Bool = { _ in false }
    ) -> [Receipt] {
        var receipts: [Receipt] = []
        receipts.reserveCapacity(encoded.count)
        for bytes in encoded {
            guard let tx = try? Transaction.decode(bytes) else {
                receipts.append(Receipt(id: TxID(unchecked: BLAKE2b.hash256(bytes)), failure: "malformed"))
                continue
            }
            receipts.append(
                Receipt(id: tx.id, failure: apply(tx, proposer: proposer, signatureChecked: signatureChecked(tx.id))))
        }
        return receipts
    }

    private mutating func apply(_ tx: Transaction, proposer: Ed25519.PublicKey, signatureChecked: Bool) -> String? {
        guard !executed.contains(tx.id) else { return "already executed" }
        // A leader may include transactions this node never saw: check them here too.
        if let reason = tx.validateStandalone(chainID: chainID, checkSignature: !signatureChecked) { return reason }
        for p in tx.predecessors where !executed.contains(p) {
            return "predecessor \(p.hex.prefix(16)) is not executed before it"
        }
        executed.insert(tx.id)
        var author = accounts[tx.author] ?? Account(balance: 0, seq: 0)
        guard tx.seq == author.seq + 1 else { return "bad sequence: expected \(author.seq + 1), got \(tx.seq)" }
        guard author.balance >= tx.fee else { return "cannot pay the fee of \(tx.fee) with \(author.balance)" }
        author.balance -= tx.fee
        author.seq = tx.seq
        accounts[tx.author] = author
        if tx.fee > 0 { accounts[proposer, default: Account(balance: 0, seq: 0)].balance += tx.fee }
        switch tx.payload {
        case .transfer(let to, let amount):
            guard author.balance >= amount else {
                return "insufficient balance: \(author.balance) for \(amount)"
            }
            accounts[tx.author]!.balance -= amount
            let (sum, overflow) = (accounts[to]?.balance ?? 0).addingReportingOverflow(amount)
            guard !overflow else {
                accounts[tx.author]!.balance += amount
                return "recipient balance would overflow"
            }
            accounts[to, default: Account(balance: 0, seq: 0)].balance = sum
        case .data:
            break
        case .validatorChange(let change, let approvals):
            guard var s = system else { return "this chain has no validator set to change" }
            if let reason = s.apply(change, approvals: approvals, chainID: chainID) { return reason }
            system = s
        }
        return nil
    }

    // MARK: State root

    /// Leaves in account order: BLAKE2b-256(0x00 || account || u64 balance || u64 seq).
    private var leaves: [(account: Ed25519.PublicKey, hash: [UInt8])] {
        accounts.sorted { $0.key.rawRepresentation.lexicographicallyPrecedes($1.key.rawRepresentation) }
            .map { ($0.key, Self.leafHash($0.key, $0.value)) }
    }

    static func leafHash(_ account: Ed25519.PublicKey, _ value: Account) -> [UInt8] {
        var w = WireWriter(capacity: 49)
        w.u8(0)
        w.fixed(account.rawRepresentation)
        w.u64(value.balance)
        w.u64(value.seq)
        return BLAKE2b.hash256(w.bytes)
    }

    static func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] { BLAKE2b.hash256([1] + left + right) }

    /// The state id: with a system state, BLAKE2b-256(0x03 || accounts root || system
    /// hash); without one, the accounts root alone.
    public var root: [UInt8] {
        guard let system else { return accountsRoot }
        return BLAKE2b.hash256([3] + accountsRoot + system.hash)
    }

    /// The Merkle root over all accounts (an odd node is carried up unchanged);
    /// the hash of the empty string for an empty state.
    public var accountsRoot: [UInt8] {
        var level = leaves.map(\.hash)
        if level.isEmpty { return BLAKE2b.hash256([]) }
        while level.count > 1 {
            var next: [[UInt8]] = []
            for i in stride(from: 0, to: level.count, by: 2) {
                next.append(i + 1 < level.count ? Self.nodeHash(level[i], level[i + 1]) : level[i])
            }
            level = next
        }
        return level[0]
    }

    /// A proof that `account` has its current value under `root`: the sibling hashes
    /// from leaf to root, each with whether it sits on the left.
    public func proof(for account: Ed25519.PublicKey) -> StateProof? {
        let all = leaves
        guard var index = all.firstIndex(where: { $0.account == account }), let value = accounts[account] else {
            return nil
        }
        var level = all.map(\.hash)
        var path: [StateProof.Step] = []
        while level.count > 1 {
            let sibling = index ^ 1
            if sibling < level.count { path.append(.init(hash: level[sibling], isLeft: sibling < index)) }
            var next: [[UInt8]] = []
            for i in stride(from: 0, to: level.count, by: 2) {
                next.append(i + 1 < level.count ? Self.nodeHash(level[i], level[i + 1]) : level[i])
            }
            level = next
            index /= 2
        }
        return StateProof(
            account: account, balance: value.balance, seq: value.seq, path: path, systemHash: system?.hash)
    }
}

/// An inclusion proof of one account's state against a state root.
public struct StateProof: Sendable, Equatable {
    public struct Step: Sendable, Equatable {
        public let hash: [UInt8]
        public let isLeft: Bool
    }

    public let account: Ed25519.PublicKey
    public let balance: UInt64
    public let seq: UInt64
    public let path: [Step]
    /// The system state's hash, folded in last when the state has one.
    public let systemHash: [UInt8]?

    public init(account: Ed25519.PublicKey, balance: UInt64, seq: UInt64, path: [Step], systemHash: [UInt8]? = nil) {
        self.account = account
        self.balance = balance
        self.seq = seq
        self.path = path
        self.systemHash = systemHash
    }

    public func verify(root: [UInt8]) -> Bool {
        var hash = LedgerState.leafHash(account, .init(balance: balance, seq: seq))
        for step in path {
            hash = step.isLeft ? LedgerState.nodeHash(step.hash, hash) : LedgerState.nodeHash(hash, step.hash)
        }
        if let systemHash { hash = BLAKE2b.hash256([3] + hash + systemHash) }
        return hash == root
    }
}

extension LedgerState {
    /// The stored form: accounts in key order, then executed transaction ids in order.
    public func encoded() -> [UInt8] {
        var w = WireWriter(capacity: accounts.count * 48 + executed.count * 32 + 16)
        w.string16(chainID)
        w.u32(UInt32(accounts.count))
        for (key, account) in accounts.sorted(by: {
            $0.key.rawRepresentation.lexicographicallyPrecedes($1.key.rawRepresentation)
        }) {
            w.fixed(key.rawRepresentation)
            w.u64(account.balance)
            w.u64(account.seq)
        }
        w.u32(UInt32(executed.count))
        for id in executed.sorted() { w.fixed(id.bytes) }
        if let system {
            w.u8(1)
            system.encode(&w)
        } else {
            w.u8(0)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> LedgerState {
        var r = WireReader(bytes)
        var state = LedgerState(chainID: try r.string16(max: 64), balances: [:])
        let n = Int(try r.u32())
        for _ in 0..<n {
            let keyBytes = try r.fixed(32)
            let key = try! Ed25519.PublicKey(uncheckedRawRepresentation: keyBytes)
            state.accounts[key] = Account(balance: try r.u64(), seq: try r.u64())
        }
        let m = Int(try r.u32())
        for _ in 0..<m { state.executed.insert(TxID(unchecked: try r.fixed(32))) }
        if try r.u8("system flag") == 1 { state.system = try SystemState.decode(&r) }
        try r.finish()
        return state
    }
}
