import Foundation
import Storage
import TestSupport
import Testing

@Suite("Consensus store: crash consistency (S10)")
struct ConsensusStoreTests {
    func block(_ h: UInt64) -> ConsensusStore.CommittedBlock {
        .init(
            height: h, id: [UInt8](repeating: UInt8(h), count: 32), round: h + 1,
            block: [UInt8](repeating: 7, count: 300),
            stateID: [UInt8](repeating: UInt8(h), count: 32), commitQC: [1, 2, 3])
    }

    /// A state version with one node of its own (the store keeps bodies opaque).
    func state(_ h: UInt64) -> ConsensusStore.StateWrite {
        .init(
            height: h, version: h, root: [UInt8(h & 0xff)],
            nodes: [(h, [UInt8](repeating: UInt8(h & 0xff), count: 32), [UInt8(h & 0xff)])], stale: [], snapshot: false,
            keepFrom: nil)
    }

    @Test("a torn WAL tail is dropped: the store reopens at the last complete commit")
    func tornTail() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("consensus.sqlite").path
        let crashed = dir.appendingPathComponent("crashed.sqlite").path
        let store = try ConsensusStore(path: path)
        try store.saveSafety([9, 9, 9])
        for h in UInt64(1)...20 { try store.commit([block(h)], state: state(h)) }
        // Copy the files as a crash would leave them (the connection still open, WAL not
        // checkpointed), then tear the last frame of the WAL.
        try FileManager.default.copyItem(atPath: path, toPath: crashed)
        try FileManager.default.copyItem(atPath: path + "-wal", toPath: crashed + "-wal")
        let wal = try FileHandle(forUpdating: URL(fileURLWithPath: crashed + "-wal"))
        let size = try wal.seekToEnd()
        try wal.truncate(atOffset: size - 100)
        try wal.close()
        let reopened = try ConsensusStore(path: crashed)
        let last = try #require(try reopened.lastCommitted())
        #expect(last.height == 19, "the torn last commit is gone, everything before it is intact")
        #expect(
            try reopened.stateVersion(atMost: 100)?.height == 19, "state and chain stay consistent (one transaction)")
        #expect(try reopened.loadSafety() == [9, 9, 9])
        _ = store
    }

    @Test("commits without a snapshot keep the last snapshot; blocks read back by height range")
    func snapshotsAndRanges() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try ConsensusStore(path: dir.appendingPathComponent("consensus.sqlite").path)
        for h in UInt64(1)...25 { try store.commit([block(h)], state: h % 10 == 0 ? state(h) : nil) }
        try store.commit(
            [block(26)], state: nil,
            receipts: [
                .init(height: 26, index: 0, txID: [1], code: 0, log: nil, gas: 1_234),
                .init(height: 26, index: 1, txID: [2], code: 3, log: "bad sequence", gas: UInt64.max),
            ])
        #expect(
            try store.receipts(txID: [2]) == [
                .init(height: 26, index: 1, txID: [2], code: 3, log: "bad sequence", gas: UInt64.max)
            ])
        #expect(try store.receipts(txID: [1]).first?.gas == 1_234 && store.receipts(txID: [3]).isEmpty)
        // Heights and epochs from peers past SQLite's integers find nothing (no trap).
        #expect(try store.committed(height: .max) == nil && store.epoch(.max) == nil)
        #expect(try store.stateVersion(height: .max) == nil && store.epoch(endingAt: .max) == nil)
        #expect(try store.committed(from: .max, limit: 5).isEmpty)
        let snapshot = try #require(try store.stateVersion(atMost: 25))
        #expect(snapshot.height == 20 && snapshot.root == [20])
        #expect(try store.stateNode(version: 20, hash: [UInt8](repeating: 20, count: 32)) == [20])
        let tail = try store.committed(from: snapshot.height + 1, limit: 100)
        #expect(tail.map(\.height) == [21, 22, 23, 24, 25, 26])
        #expect(try store.committed(from: 3, limit: 2).map(\.height) == [3, 4])
        #expect(try store.committed(from: 27, limit: 10).isEmpty)
    }

    @Test("block pruning deletes committed blocks and receipts below the height given, nothing else")
    func blockPruning() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try ConsensusStore(path: dir.appendingPathComponent("consensus.sqlite").path)
        for h in UInt64(1)...30 {
            try store.commit(
                [block(h)], state: nil,
                receipts: [.init(height: h, index: 0, txID: [UInt8(h)], code: 0, log: nil, gas: 1)]
            )
        }
        var write = state(31)
        write.blocksFrom = 21
        try store.commit([block(31)], state: write)
        #expect(try store.firstCommittedHeight() == 21)
        #expect(try store.committed(height: 20) == nil && store.committed(height: 21) != nil)
        #expect(try store.receipts(txID: [20]).isEmpty && store.receipts(txID: [21]).count == 1)
        #expect(try store.lastCommitted()?.height == 31 && store.stateVersion(height: 31) != nil)
    }

    @Test("corruption inside the database stops start-up with a clear error")
    func corruptionInTheMiddle() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("consensus.sqlite").path
        do {
            let store = try ConsensusStore(path: path)
            for h in UInt64(1)...200 { try store.commit([block(h)], state: state(h)) }
        }
        // Damage a page in the middle of the (checkpointed) file.
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        let size = try file.seekToEnd()
        try file.seek(toOffset: size / 2)
        try file.write(contentsOf: Data(repeating: 0xA5, count: 4096))
        try file.close()
        let error = #expect(throws: StorageError.self) { try ConsensusStore(path: path) }
        #expect(error?.description.contains(path) == true)
    }

    @Test("an epoch's end is recorded with the commit that ends it: proof, next epoch, pending blocks dropped")
    func epochRecords() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try ConsensusStore(path: dir.appendingPathComponent("c.sqlite").path)
        let first = ConsensusStore.EpochRecord(
            epoch: 1, startHeight: 1, genesisBlock: [1], genesisState: [2], system: [3])
        try store.saveEpoch(first)
        try store.saveEpoch(.init(epoch: 1, startHeight: 9, genesisBlock: [9], genesisState: [9], system: [9]))
        #expect(try store.epoch(1) == first, "the first epoch is recorded once")
        try store.savePending(id: [5], round: 50, block: [5])
        let next = ConsensusStore.EpochRecord(
            epoch: 2, startHeight: 4, genesisBlock: [3], genesisState: [4], system: [5])
        try store.commit([block(1), block(2), block(3)], state: nil, epochChange: ([7, 7], next))
        #expect(try store.loadPending().isEmpty, "blocks of the ended epoch are void")
        var ended = first
        ended.endHeight = 3
        ended.proof = [7, 7]
        ended.lastBlock = block(3).block  // kept with its end, for epoch ends served to new nodes
        #expect(try store.epoch(1) == ended)
        #expect(try store.epoch(endingAt: 3) == ended)
        #expect(try store.epoch(endingAt: 2) == nil)
        #expect(try store.latestEpoch() == next)
    }
}
