import Dispatch
import Synchronization

/// Writes accepted transactions to a `TransactionStore` on its own thread, so the
/// node's actor never waits for SQLite or fsync. Batches handed over while a write is
/// running are written together in the next one (group commit). What is handed over
/// but not yet written is what a crash loses — as before, when the actor wrote every
/// 50 ms: anti-entropy fetches it again from peers.
public final class TransactionWriter: Sendable {
    private struct State {
        var pending: [(id: [UInt8], encoded: [UInt8])] = []
        /// Pruned ids to delete, after the appends handed over before them.
        var deletions: [[UInt8]] = []
        var draining = false
        var failure: StorageError?
    }

    private nonisolated(unsafe) let store: TransactionStore
    private let queue = DispatchQueue(label: "sidenode.transaction-writer")
    private let state = Mutex(State())
    /// Past this many waiting transactions the caller waits for the disk (a disk slower
    /// than the network must slow the node down, not grow its memory).
    public let maxPending: Int

    /// `store` is used only from the writer's thread from now on.
    public init(store: TransactionStore, maxPending: Int = 50_000) {
        self.store = store
        self.maxPending = maxPending
    }

    /// Hands transactions to the writer. Throws the error of an earlier write that
    /// failed: a node that cannot store what it accepted must stop.
    public func append(_ transactions: [(id: [UInt8], encoded: [UInt8])]) throws(StorageError) {
        let (start, backlog, failure) = state.withLock { s in
            s.pending += transactions
            let start = !s.draining && !s.pending.isEmpty
            if start { s.draining = true }
            return (start, s.pending.count, s.failure)
        }
        if let failure { throw failure }
        if start { queue.async { self.drain() } }
        if backlog > maxPending { try flush() }
    }

    /// Hands over ids to delete (pruned from the DAG). They are deleted after every
    /// append handed over before this call.
    public func delete(_ ids: [[UInt8]]) throws(StorageError) {
        guard !ids.isEmpty else { return }
        let (start, failure) = state.withLock { s in
            s.deletions += ids
            let start = !s.draining
            if start { s.draining = true }
            return (start, s.failure)
        }
        if let failure { throw failure }
        if start { queue.async { self.drain() } }
    }

    /// Waits until everything handed over is written; throws a write's failure.
    public func flush() throws(StorageError) {
        queue.sync {}
        if let failure = state.withLock({ $0.failure }) { throw failure }
    }

    /// Transactions handed over and not yet written.
    public var pendingCount: Int { state.withLock { $0.pending.count } }

    private func drain() {
        while true {
            let (batch, deletions) = state.withLock { s in
                let work = (s.pending, s.deletions)
                s.pending = []
                s.deletions = []
                if work.0.isEmpty && work.1.isEmpty { s.draining = false }
                return work
            }
            if batch.isEmpty && deletions.isEmpty { return }
            do {
                // Appends first: a deletion handed over later may name a row in this batch.
                try store.append(batch)
                try store.delete(deletions)
            } catch {
                state.withLock { s in
                    s.failure = s.failure ?? error
                    s.pending = []
                    s.deletions = []
                    s.draining = false
                }
                return
            }
        }
    }
}
