import Wire

/// The BFT-CRDT's network protocol as a pure state machine: push gossip of new
/// transactions, fetching missing predecessors from the peer that referenced them,
/// and anti-entropy (periodic head exchange and pulling what is missing).
/// The node routes gossip payloads with topic `transactionTopic` and direct payloads
/// whose first byte is a `SyncMessage` tag here, and executes the returned actions.
public struct LedgerSync: Sendable {
    /// First byte of a gossip payload carrying a transaction.
    public static let transactionTopic: UInt8 = 1
    /// First byte of a gossip payload carrying a batch of transactions (docs/wire.md §3):
    /// one flooded message for many, so per-message costs (framing, encryption, seen
    /// cache, validation dispatch) are paid once per batch.
    public static let batchTopic: UInt8 = 3
    public static let maxGossipBatch = 512
    public static let maxBatch = 512
    public static let maxBatchBytes = 2 * 1024 * 1024
    public static let maxHeadsSent = 64
    public static let maxRequestedIDs = 256

    public enum Verdict: Sendable, Equatable {
        case accept
        case ignore
        case reject(String)
    }

    public enum Action: Sendable, Equatable {
        /// Newly accepted transactions, in causal order, to store durably.
        case persist([Transaction])
        /// Gossip these encoded transactions to the mesh (released from pending, or submitted here).
        case broadcast([UInt8])
        /// Send a sync message to one peer.
        case sendDirect(connection: Int, payload: [UInt8])
        /// The peer sent something invalid.
        case penalize(connection: Int, reason: String)
    }

    public var dag: TransactionDAG
    /// Accepted here first (submitted, or released from pending) and not yet gossiped.
    private var outbox: [Transaction] = []

    /// The last committed ledger state (the node sets it after every commit): what it
    /// settles is neither taken in nor kept (`prune`).
    public var committed: LedgerState?

    public init(dag: TransactionDAG) { self.dag = dag }

    /// Whether a transaction can never run again: the committed state is past its seq
    /// and it is no longer among the executed transactions a new one may name as
    /// predecessors. (A copy of the state, so the DAG can be mutated while it is asked.)
    public var isSettled: (Transaction) -> Bool {
        guard let committed else { return { _ in false } }
        return { tx in committed.isDone(tx) && !committed.isRecentlyExecuted(tx.id) }
    }

    /// Predecessors for a transaction this node builds or hands to a client (`getnextseq`):
    /// the heads that `executed` (the latest committed state) ran in the newer half of
    /// the recent-id window, newest first; else the newest executed transaction this DAG
    /// holds; else none (always valid). A transaction runs only if every predecessor is
    /// among the recently executed, so a head that never runs (a seq gap, an unfunded
    /// author: anyone can make one for free) would make it unrunnable, and one that is
    /// about to leave the window could too before it runs.
    public func predecessorsForNewTransaction(executed: LedgerState?) -> [TxID] {
        guard let executed else { return [] }
        let fresh = LedgerState.recentWindow / 2
        var heads: [(id: TxID, age: UInt64)] = []
        for id in dag.unorderedHeads {
            if let age = executed.executionAge(of: id), age < fresh { heads.append((id, age)) }
        }
        if !heads.isEmpty {
            return heads.sorted { ($0.age, $0.id) < ($1.age, $1.id) }.prefix(Transaction.maxPredecessors).map(\.id)
        }
        // A node that joined by snapshot lacks what executed before it: name only what it holds.
        return executed.latestExecuted(limit: Transaction.maxPredecessors).first { dag.contains($0) }.map { [$0] }
            ?? []
    }

    /// Transactions the committed state settled, to be pruned.
    public func settledIDs() -> [TxID] { dag.settledIDs(where: isSettled) }

    /// Removes settled transactions from the DAG (and pending ones the committed state
    /// settled); returns the ids removed, which the node deletes from its store too.
    public mutating func prune(_ ids: Set<TxID>) -> [TxID] {
        let settled = isSettled
        return dag.prune(ids, settled: settled)
    }

    /// Gossip payloads for everything in the outbox, in causal order, in batches.
    public mutating func takeBroadcasts() -> [Action] {
        guard !outbox.isEmpty else { return [] }
        defer { outbox.removeAll(keepingCapacity: true) }
        var actions: [Action] = []
        var start = 0
        while start < outbox.count {
            var end = start
            var bytes = 0
            while end < outbox.count, end - start < Self.maxGossipBatch,
                bytes + outbox[end].encoded.count <= Self.maxBatchBytes
            {
                bytes += outbox[end].encoded.count
                end += 1
            }
            actions.append(.broadcast(Self.batchPayload(outbox[start..<end].map(\.encoded))))
            start = end
        }
        return actions
    }

    public static func batchPayload(_ encoded: [[UInt8]]) -> [UInt8] {
        var w = WireWriter(capacity: encoded.reduce(3) { $0 + 4 + $1.count })
        w.u8(batchTopic)
        w.u16(UInt16(encoded.count))
        for tx in encoded { w.bytes32(tx) }
        return w.bytes
    }

    /// A gossiped batch (the payload after its topic byte). Forwarded when it brought
    /// something new and nothing invalid; one invalid transaction rejects the batch
    /// (its sender vouched for it), though the valid ones in it are kept.
    public mutating func gossipBatchReceived(
        _ body: [UInt8], from connection: Int, source: String
    ) -> (
        Verdict, [Action]
    ) {
        var r = WireReader(body)
        var encodings: [[UInt8]] = []
        do {
            let n = Int(try r.u16("batch size"))
            guard n >= 1, n <= Self.maxGossipBatch else { throw WireError("batch of \(n) transactions") }
            for _ in 0..<n { encodings.append(try r.bytes32(max: Transaction.maxEncodedSize, "transaction")) }
            try r.finish()
        } catch {
            return (.reject("malformed transaction batch: \(error)"), [])
        }
        var accepted: [Transaction] = []
        var missing: Set<TxID> = []
        var rejection: String?
        var inBatch: Set<TxID> = []
        var unverified = false
        let settled = isSettled
        for encoded in encodings {
            switch dag.insert(encoded: encoded, source: source, settled: settled) {
            case .accepted(let txs):
                accepted += txs
                if let first = txs.first { inBatch.insert(first.id) }
            case .pending(let m): missing.formUnion(m)
            case .duplicate: break
            case .settled: unverified = true
            case .rejected(let reason): rejection = rejection ?? reason
            }
        }
        // A settled entry was not verified here: forwarding the batch as it is would vouch
        // for it to a peer that has not settled it yet (and would reject a forgery). What
        // it brought goes out in our own next batch instead.
        if unverified && rejection == nil { inBatch = [] }
        missing = missing.filter { !dag.contains($0) && !dag.isPending($0) }
        var actions: [Action] = accepted.isEmpty ? [] : [.persist(accepted)]
        // Released earlier arrivals travel on in our own next batch; the batch itself is forwarded.
        outbox += accepted.filter { !inBatch.contains($0.id) }
        if !missing.isEmpty {
            let ids = Array(missing.sorted().prefix(Self.maxRequestedIDs))
            actions.append(.sendDirect(connection: connection, payload: SyncMessage.getTransactions(ids).encoded()))
        }
        if let rejection { return (.reject(rejection), actions) }
        return (inBatch.isEmpty ? .ignore : .accept, actions)
    }

    /// A gossiped transaction from a peer. The verdict tells the gossip layer whether
    /// to forward it; pending transactions are not forwarded until they are accepted.
    public mutating func gossipReceived(_ encoded: [UInt8], from connection: Int, source: String) -> (Verdict, [Action])
    {
        let settled = isSettled
        switch dag.insert(encoded: encoded, source: source, settled: settled) {
        case .accepted(let txs):
            // The first is this payload, which gossip forwards; the rest were released.
            outbox += txs.dropFirst()
            return (.accept, [.persist(txs)])
        case .pending(let missing):
            return (
                .ignore, [.sendDirect(connection: connection, payload: SyncMessage.getTransactions(missing).encoded())]
            )
        case .duplicate, .settled:
            return (.ignore, [])
        case .rejected(let reason):
            return (.reject(reason), [])
        }
    }

    /// A transaction submitted by a local client: accepted ones are stored and gossiped.
    public mutating func submit(_ encoded: [UInt8]) -> (Result<Transaction, SubmitError>, [Action]) {
        let tx: Transaction
        do {
            tx = try Transaction.decode(encoded)
        } catch {
            return (.failure(SubmitError("malformed transaction: \(error)")), [])
        }
        let settled = isSettled
        if !dag.contains(tx.id), settled(tx) {
            return (.failure(SubmitError("seq \(tx.seq) of this author is already committed")), [])
        }
        switch dag.insert(tx, source: "local") {
        case .accepted(let txs):
            // Gossiped with the next `takeBroadcasts`, batched with others.
            outbox += txs
            return (.success(tx), [.persist(txs)])
        case .pending(let missing):
            return (
                .failure(
                    SubmitError(
                        "unknown predecessors: \(missing.map { String($0.hex.prefix(16)) }.joined(separator: ", "))")),
                []
            )
        case .duplicate, .settled:
            return (.success(tx), [])
        case .rejected(let reason):
            return (.failure(SubmitError(reason)), [])
        }
    }

    /// A direct sync message from a peer.
    public mutating func directReceived(_ payload: [UInt8], from connection: Int, source: String) -> [Action] {
        let message: SyncMessage
        do {
            message = try SyncMessage.decode(payload)
        } catch {
            return [.penalize(connection: connection, reason: "malformed sync message: \(error)")]
        }
        switch message {
        case .heads(let digest, let count, let heads):
            // Ask only for what is missing: when every head the peer names is known here,
            // so is its whole causal past. Under load digests differ all the time (items in
            // flight), and a sync round walks the DAG. A truncated head list cannot show
            // everything, so there a larger count decides.
            let unknownHead = heads.contains { !dag.contains($0) && !dag.isPending($0) }
            let truncated = heads.count >= Self.maxHeadsSent && count > UInt64(dag.count)
            guard digest != dag.digest(), unknownHead || truncated else { return [] }
            return [.sendDirect(connection: connection, payload: syncRequest())]
        case .syncRequest(let heads):
            // Settled transactions are not sent: the peer may have pruned them already.
            let settled = isSettled
            let missing = dag.missing(givenHeads: heads, limit: Self.maxBatch).filter { !settled($0) }
            var batch: [[UInt8]] = []
            var bytes = 0
            for tx in missing {
                if bytes + tx.encoded.count > Self.maxBatchBytes { break }
                batch.append(tx.encoded)
                bytes += tx.encoded.count
            }
            guard !batch.isEmpty else { return [] }
            let more = batch.count < missing.count || missing.count == Self.maxBatch
            return [.sendDirect(connection: connection, payload: SyncMessage.batch(more: more, batch).encoded())]
        case .getTransactions(let ids):
            let found = ids.compactMap { dag.transaction($0)?.encoded }
            guard !found.isEmpty else { return [] }
            return [.sendDirect(connection: connection, payload: SyncMessage.batch(more: false, found).encoded())]
        case .batch(let more, let encodings):
            var accepted: [Transaction] = []
            var actions: [Action] = []
            var missing: Set<TxID> = []
            var fresh = false
            let settled = isSettled
            for encoded in encodings {
                switch dag.insert(encoded: encoded, source: source, settled: settled) {
                case .accepted(let txs):
                    accepted += txs
                    fresh = true
                case .pending(let m):
                    missing.formUnion(m)
                    fresh = true
                case .duplicate, .settled: break
                case .rejected(let reason):
                    actions.append(
                        .penalize(connection: connection, reason: "invalid transaction in sync batch: \(reason)"))
                }
            }
            missing = missing.filter { !dag.contains($0) && !dag.isPending($0) }
            if !accepted.isEmpty { actions.insert(.persist(accepted), at: 0) }
            // "More" is followed only while it brings something: a peer that has not
            // pruned what this node has would otherwise send the same batch forever.
            if more && fresh {
                actions.append(.sendDirect(connection: connection, payload: syncRequest()))
            } else if !missing.isEmpty {
                let ids = Array(missing.sorted().prefix(Self.maxRequestedIDs))
                actions.append(.sendDirect(connection: connection, payload: SyncMessage.getTransactions(ids).encoded()))
            }
            return actions
        }
    }

    /// The periodic anti-entropy announcement: digest, count and heads.
    public func headsAnnouncement() -> [UInt8] {
        SyncMessage.heads(
            digest: dag.digest(), count: UInt64(dag.count), heads: Array(dag.heads.prefix(Self.maxHeadsSent))
        )
        .encoded()
    }

    private func syncRequest() -> [UInt8] {
        SyncMessage.syncRequest(heads: Array(dag.heads.prefix(Self.maxHeadsSent))).encoded()
    }

    public static func gossipPayload(_ tx: Transaction) -> [UInt8] { [transactionTopic] + tx.encoded }
}

public struct SubmitError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Direct (peer-to-peer, not flooded) messages of the sync protocol. Tags 1–4 of
/// the node's direct-payload space (docs/wire.md §4).
public enum SyncMessage: Sendable, Equatable {
    case heads(digest: [UInt8], count: UInt64, heads: [TxID])
    case syncRequest(heads: [TxID])
    case batch(more: Bool, [[UInt8]])
    case getTransactions([TxID])

    public static let tags: ClosedRange<UInt8> = 1...4

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .heads(let digest, let count, let heads):
            w.u8(1)
            w.fixed(digest)
            w.u64(count)
            writeIDs(&w, heads)
        case .syncRequest(let heads):
            w.u8(2)
            writeIDs(&w, heads)
        case .batch(let more, let txs):
            w.u8(3)
            w.u8(more ? 1 : 0)
            w.u16(UInt16(txs.count))
            for tx in txs { w.bytes32(tx) }
        case .getTransactions(let ids):
            w.u8(4)
            writeIDs(&w, ids)
        }
        return w.bytes
    }

    private func writeIDs(_ w: inout WireWriter, _ ids: [TxID]) {
        w.u16(UInt16(ids.count))
        for id in ids { w.fixed(id.bytes) }
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> SyncMessage {
        var r = WireReader(bytes)
        let tag = try r.u8("tag")
        func ids(max: Int) throws(WireError) -> [TxID] {
            let n = Int(try r.u16("id count"))
            guard n <= max else { throw WireError("\(n) ids exceed \(max)") }
            var out: [TxID] = []
            for _ in 0..<n { out.append(try TxID(bytes: try r.fixed(32, "id"))) }
            return out
        }
        let message: SyncMessage
        switch tag {
        case 1:
            let digest = try r.fixed(32, "digest")
            let count = try r.u64("count")
            message = .heads(digest: digest, count: count, heads: try ids(max: LedgerSync.maxHeadsSent))
        case 2:
            message = .syncRequest(heads: try ids(max: LedgerSync.maxHeadsSent))
        case 3:
            let more = try r.u8("more")
            guard more <= 1 else { throw WireError("more flag must be 0 or 1") }
            let n = Int(try r.u16("batch size"))
            guard n <= LedgerSync.maxBatch else { throw WireError("batch of \(n) exceeds \(LedgerSync.maxBatch)") }
            var txs: [[UInt8]] = []
            for _ in 0..<n { txs.append(try r.bytes32(max: Transaction.maxEncodedSize, "transaction")) }
            message = .batch(more: more == 1, txs)
        case 4:
            message = .getTransactions(try ids(max: LedgerSync.maxRequestedIDs))
        default:
            throw WireError("unknown sync message tag \(tag)")
        }
        try r.finish()
        return message
    }
}
