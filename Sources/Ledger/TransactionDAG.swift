import NodeCrypto
import Wire

/// The BFT-CRDT: a grow-only, hash-linked set of signed transactions (Kleppmann,
/// "Making CRDTs Byzantine Fault Tolerant", PaPoC 2022).
///
/// A transaction is accepted once all its predecessors are accepted and it passes
/// rules that depend only on itself and its causal past, so every honest replica
/// reaches the same verdict and, having seen the same transactions, holds the same
/// set whatever the delivery order. Rules that are not confluent — balances, double
/// spends, sequence gaps — are left to consensus and execution.
///
/// A pure value: no I/O. The node persists accepted transactions and feeds them back
/// in insertion order on start.
public struct TransactionDAG: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Transactions held while predecessors are missing, in total and per source.
        public var maxPending = 10_000
        public var maxPendingPerSource = 1_000
        /// Rejected ids remembered, so descendants of an invalid transaction are rejected too.
        public var maxRejectedRemembered = 100_000
        public init() {}
    }

    public enum Outcome: Sendable, Equatable {
        /// Accepted, together with pending transactions it released, in causal order.
        case accepted([Transaction])
        /// Held until these predecessors arrive.
        case pending(missing: [TxID])
        case duplicate
        /// Settled (see `prune`): refused before its signature was checked, so whoever
        /// forwards it must not vouch for it.
        case settled
        /// Rejected with a reason; descendants held in pending are rejected with it.
        case rejected(String)
    }

    public struct Equivocation: Sendable, Equatable {
        public let author: Ed25519.PublicKey
        public let seq: UInt64
        public let transactions: [TxID]
    }

    private struct Pending: Sendable {
        let tx: Transaction
        var missing: Set<TxID>
        let source: String
        let arrival: UInt64
    }

    private struct AuthorSeq: Hashable, Sendable {
        let author: Ed25519.PublicKey
        let seq: UInt64
    }

    public let chainID: String
    public let limits: Limits
    public private(set) var transactions: [TxID: Transaction] = [:]
    /// Accepted ids in acceptance order (always a topological order).
    public private(set) var order: [TxID] = []
    private var headSet: Set<TxID> = []
    private var pending: [TxID: Pending] = [:]
    private var waiting: [TxID: Set<TxID>] = [:]  // missing id → pending ids waiting for it
    private var pendingBySource: [String: Int] = [:]
    private var arrivals: UInt64 = 0
    private var rejected: [TxID: String] = [:]
    private var rejectedOrder: [TxID] = []
    private var bySeq: [AuthorSeq: [TxID]] = [:]
    private var equivocating: Set<AuthorSeq> = []
    private var maxSeq: [Ed25519.PublicKey: UInt64] = [:]
    /// The sum of all accepted ids as 256-bit big-endian numbers, mod 2^256 (four
    /// limbs, most significant first): an order-independent digest kept up to date in
    /// O(1) per transaction.
    private var idSum: [UInt64] = [0, 0, 0, 0]
    /// Bumped by every `prune`: positions in `order` taken before it are stale.
    public private(set) var generation = 0
    /// Transactions removed by `prune` since this value was made.
    public private(set) var prunedCount = 0

    public init(chainID: String, limits: Limits = .init()) {
        self.chainID = chainID
        self.limits = limits
    }

    // MARK: Queries

    public var count: Int { order.count }
    public var pendingCount: Int { pending.count }
    public var pendingIDs: [TxID] { pending.keys.sorted() }
    public var heads: [TxID] { headSet.sorted() }
    /// The heads in no particular order (no sort: for scans).
    public var unorderedHeads: Set<TxID> { headSet }
    public func contains(_ id: TxID) -> Bool { transactions[id] != nil }
    public func transaction(_ id: TxID) -> Transaction? { transactions[id] }
    public func rejection(_ id: TxID) -> String? { rejected[id] }
    public func isPending(_ id: TxID) -> Bool { pending[id] != nil }

    /// The next sequence number for an author: one past the highest seen.
    public func nextSeq(for author: Ed25519.PublicKey) -> UInt64 { (maxSeq[author] ?? 0) + 1 }

    /// SHA-256 of the count and the sum of the ids mod 2^256: equal sets give equal
    /// digests whatever the order they arrived in. It only tells anti-entropy whether
    /// to look closer (the heads decide what is fetched), so a crafted collision could
    /// at worst delay a sync, never corrupt one.
    public func digest() -> [UInt8] {
        var w = WireWriter(capacity: 40)
        w.u64(UInt64(order.count))
        for limb in idSum { w.u64(limb) }
        return SHA256.hash(w.bytes)
    }

    private mutating func addToDigest(_ id: TxID) {
        var carry: UInt64 = 0
        for limb in stride(from: 3, through: 0, by: -1) {
            let (partial, overflow1) = idSum[limb].addingReportingOverflow(Self.word(id, limb))
            let (sum, overflow2) = partial.addingReportingOverflow(carry)
            idSum[limb] = sum
            carry = (overflow1 ? 1 : 0) + (overflow2 ? 1 : 0)
        }
    }

    public var equivocations: [Equivocation] {
        equivocating.map { Equivocation(author: $0.author, seq: $0.seq, transactions: (bySeq[$0] ?? []).sorted()) }
            .sorted { ($0.author.hex, $0.seq) < ($1.author.hex, $1.seq) }
    }

    // MARK: Insertion

    /// Decodes, verifies and inserts an encoded transaction from `source` (a peer id,
    /// "local" or "store"). Malformed input is rejected without being remembered.
    /// A transaction `settled` calls done — one `prune` would remove — counts as a
    /// duplicate before its signature is checked: it can never run again.
    public mutating func insert(
        encoded bytes: [UInt8], source: String, settled: (Transaction) -> Bool = { _ in false }
    ) -> Outcome {
        let tx: Transaction
        do {
            tx = try Transaction.decode(bytes)
        } catch {
            return .rejected("malformed transaction: \(error)")
        }
        return insert(tx, source: source, settled: settled)
    }

    /// Inserts a decoded transaction, checking its signature and rules.
    public mutating func insert(
        _ tx: Transaction, source: String, settled: (Transaction) -> Bool = { _ in false }
    ) -> Outcome {
        if transactions[tx.id] != nil || pending[tx.id] != nil { return .duplicate }
        if settled(tx) { return .settled }
        if let reason = rejected[tx.id] { return .rejected(reason) }
        if let reason = tx.validateStandalone(chainID: chainID) {
            remember(rejection: tx.id, reason)
            return .rejected(reason)
        }
        return insertVerified(tx, source: source)
    }

    /// Inserts a transaction whose signature was already checked (for example when
    /// reloading this node's own store).
    public mutating func insertVerified(_ tx: Transaction, source: String) -> Outcome {
        if transactions[tx.id] != nil || pending[tx.id] != nil { return .duplicate }
        for p in tx.predecessors {
            if let reason = rejected[p] {
                let why = "predecessor \(p.hex.prefix(16)) is invalid (\(reason))"
                remember(rejection: tx.id, why)
                return .rejected(why)
            }
        }
        let missing = Set(tx.predecessors.filter { transactions[$0] == nil })
        if !missing.isEmpty {
            hold(tx, missing: missing, source: source)
            return .pending(missing: missing.sorted())
        }
        if let reason = causalRule(tx) {
            remember(rejection: tx.id, reason)
            return .rejected(reason)
        }
        var accepted = [accept(tx)]
        accepted += release(from: tx.id)
        return .accepted(accepted)
    }

    /// Reloads a transaction from this node's own store, where it was accepted before.
    /// Predecessors absent here were pruned since (every stored transaction's were
    /// accepted before it), so they do not hold it back.
    public mutating func insertStored(_ tx: Transaction) -> Outcome {
        if transactions[tx.id] != nil { return .duplicate }
        var accepted = [accept(tx)]
        accepted += release(from: tx.id)
        return .accepted(accepted)
    }

    // MARK: Pruning

    /// Accepted transactions `settled` calls done (in acceptance order): executed long
    /// enough ago that no transaction that can still run may name them, or superseded
    /// by what was executed.
    public func settledIDs(where settled: (Transaction) -> Bool) -> [TxID] {
        order.filter { transactions[$0].map(settled) ?? false }
    }

    /// Removes `ids` (accepted ones) and every pending transaction `settled` calls done,
    /// and takes them out of the digest. What remains keeps its acceptance order.
    /// Returns the accepted transactions removed.
    @discardableResult
    public mutating func prune(_ ids: Set<TxID>, settled: (Transaction) -> Bool = { _ in false }) -> [TxID] {
        var removed: [TxID] = []
        for id in ids {
            guard let tx = transactions.removeValue(forKey: id) else { continue }
            removed.append(id)
            headSet.remove(id)
            subtractFromDigest(id)
            let key = AuthorSeq(author: tx.author, seq: tx.seq)
            bySeq[key]?.removeAll { $0 == id }
            if bySeq[key]?.isEmpty == true { bySeq[key] = nil }
            if (bySeq[key]?.count ?? 0) < 2 { equivocating.remove(key) }
        }
        for (id, entry) in pending where settled(entry.tx) { dropPending(id) }
        guard !removed.isEmpty else { return removed }
        order.removeAll { transactions[$0] == nil }
        // A kept transaction only a pruned one named is a head again (as after a reload).
        var named: Set<TxID> = []
        for tx in transactions.values { named.formUnion(tx.predecessors) }
        headSet = Set(transactions.keys.filter { !named.contains($0) })
        generation += 1
        prunedCount += removed.count
        return removed.sorted()
    }

    /// Limb `limb` of an id read as a 256-bit big-endian number (0 most significant).
    private static func word(_ id: TxID, _ limb: Int) -> UInt64 {
        var word: UInt64 = 0
        for byte in id.bytes[(limb * 8)..<(limb * 8 + 8)] { word = word << 8 | UInt64(byte) }
        return word
    }

    private mutating func subtractFromDigest(_ id: TxID) {
        var borrow: UInt64 = 0
        for limb in stride(from: 3, through: 0, by: -1) {
            let (partial, underflow1) = idSum[limb].subtractingReportingOverflow(Self.word(id, limb))
            let (difference, underflow2) = partial.subtractingReportingOverflow(borrow)
            idSum[limb] = difference
            borrow = (underflow1 ? 1 : 0) + (underflow2 ? 1 : 0)
        }
    }

    /// The rule that depends on the causal past: an author's seq grows along its own
    /// chain, so a transaction's seq must exceed that of every direct predecessor by the
    /// same author. Predecessors are fixed by their hashes, so every replica decides alike.
    private func causalRule(_ tx: Transaction) -> String? {
        for p in tx.predecessors {
            if let pred = transactions[p], pred.author == tx.author, pred.seq >= tx.seq {
                return "seq \(tx.seq) does not exceed the author's seq \(pred.seq) in its causal past"
            }
        }
        return nil
    }

    private mutating func accept(_ tx: Transaction) -> Transaction {
        transactions[tx.id] = tx
        order.append(tx.id)
        for p in tx.predecessors { headSet.remove(p) }
        headSet.insert(tx.id)
        addToDigest(tx.id)
        let key = AuthorSeq(author: tx.author, seq: tx.seq)
        bySeq[key, default: []].append(tx.id)
        if bySeq[key]!.count > 1 { equivocating.insert(key) }
        maxSeq[tx.author] = max(maxSeq[tx.author] ?? 0, tx.seq)
        return tx
    }

    /// Accepts (or rejects) pending transactions that waited for `id`, transitively.
    private mutating func release(from id: TxID) -> [Transaction] {
        var accepted: [Transaction] = []
        var queue = [id]
        while let next = queue.popLast() {
            guard let waiters = waiting.removeValue(forKey: next) else { continue }
            for waiter in waiters.sorted() {
                guard var entry = pending[waiter] else { continue }
                entry.missing.remove(next)
                if !entry.missing.isEmpty {
                    pending[waiter] = entry
                    continue
                }
                dropPending(waiter)
                if let reason = causalRule(entry.tx) {
                    remember(rejection: waiter, reason)
                    continue
                }
                accepted.append(accept(entry.tx))
                queue.append(waiter)
            }
        }
        return accepted
    }

    private mutating func hold(_ tx: Transaction, missing: Set<TxID>, source: String) {
        arrivals += 1
        pending[tx.id] = Pending(tx: tx, missing: missing, source: source, arrival: arrivals)
        pendingBySource[source, default: 0] += 1
        for m in missing { waiting[m, default: []].insert(tx.id) }
        // Bounded: a flood of orphans from one source evicts that source's oldest first.
        if pendingBySource[source, default: 0] > limits.maxPendingPerSource,
            let oldest = pending.values.filter({ $0.source == source }).min(by: { $0.arrival < $1.arrival })
        {
            dropPending(oldest.tx.id)
        }
        while pending.count > limits.maxPending, let oldest = pending.values.min(by: { $0.arrival < $1.arrival }) {
            dropPending(oldest.tx.id)
        }
    }

    private mutating func dropPending(_ id: TxID) {
        guard let entry = pending.removeValue(forKey: id) else { return }
        pendingBySource[entry.source, default: 1] -= 1
        if pendingBySource[entry.source] == 0 { pendingBySource[entry.source] = nil }
        for m in entry.missing {
            waiting[m]?.remove(id)
            if waiting[m]?.isEmpty == true { waiting[m] = nil }
        }
    }

    private mutating func remember(rejection id: TxID, _ reason: String) {
        if rejected[id] == nil {
            rejectedOrder.append(id)
            if rejectedOrder.count > limits.maxRejectedRemembered {
                rejected[rejectedOrder.removeFirst()] = nil
            }
        }
        rejected[id] = reason
        // Pending descendants can never become valid.
        if let waiters = waiting.removeValue(forKey: id) {
            for w in waiters.sorted() {
                dropPending(w)
                remember(rejection: w, "predecessor \(id.hex.prefix(16)) is invalid (\(reason))")
            }
        }
    }

    /// Ids that pending transactions are waiting for and that nobody has sent.
    public var missingPredecessors: [TxID] {
        waiting.keys.filter { transactions[$0] == nil && pending[$0] == nil }.sorted()
    }

    // MARK: Anti-entropy

    /// The accepted transactions outside the causal past of `heads` (ids this replica
    /// does not know are ignored), in acceptance order, at most `limit` of them.
    /// Because every replica's set is closed under predecessors, a peer's heads
    /// describe everything it has; this is what it lacks.
    public func missing(givenHeads heads: [TxID], limit: Int) -> [Transaction] {
        var known: Set<TxID> = []
        var stack = heads.filter { transactions[$0] != nil }
        while let id = stack.popLast() {
            guard known.insert(id).inserted, let tx = transactions[id] else { continue }
            for p in tx.predecessors where !known.contains(p) { stack.append(p) }
        }
        var out: [Transaction] = []
        for id in order where !known.contains(id) {
            out.append(transactions[id]!)
            if out.count >= limit { break }
        }
        return out
    }
}
