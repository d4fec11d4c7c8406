import Ledger
import StateTree
import Testing

@Suite("Contract storage scans: byte order over committed keys and the block's writes")
struct ContractStoreTests {
    let contract = [UInt8](repeating: 7, count: 32)
    let other = [UInt8](repeating: 8, count: 32)

    func state(_ keys: [String]) throws -> LedgerState {
        var leaves = keys.map { StateLeaf(key: StateKey.contractStore(contract, Array($0.utf8)), value: [1]) }
        leaves.append(StateLeaf(key: StateKey.contractStore(other, Array("b".utf8)), value: [1]))
        return try LedgerState.restore(chainID: "c", version: 0, leaves: leaves)
    }

    func all(_ store: inout ContractStore, start: String? = nil, end: String? = nil, ascending: Bool = true) -> [String]
    {
        var (it, _) = store.scan(
            contract, start: start.map { Array($0.utf8) }, end: end.map { Array($0.utf8) }, ascending: ascending)
        var out: [String] = []
        while let k = it.next() { out.append(String(decoding: k, as: UTF8.self)) }
        return out
    }

    @Test("committed keys come in order, bounded [start, end), both directions; other contracts' keys never")
    func committed() throws {
        var store = ContractStore(readOnly: try state(["d", "a", "c", "b"]))
        #expect(all(&store) == ["a", "b", "c", "d"])
        #expect(all(&store, start: "b", end: "d") == ["b", "c"])
        #expect(all(&store, ascending: false) == ["d", "c", "b", "a"])
        #expect(all(&store, start: "b", end: "d", ascending: false) == ["c", "b"])
        #expect(all(&store, start: "e") == [])
        #expect(all(&store, start: "c", end: "a") == [])
    }

    @Test("the block's writes and deletions are merged in; the work counts the keys touched")
    func blockWrites() throws {
        var store = ContractStore(readOnly: try state(["b", "d"]))
        store.contractSet(contract, Array("c".utf8), [2])
        store.contractSet(contract, Array("a".utf8), [2])
        store.contractRemove(contract, Array("d".utf8))
        store.contractSet(contract, Array("b".utf8), [3])  // rewrite of a committed key: once
        #expect(all(&store) == ["a", "b", "c"])
        #expect(all(&store, ascending: false) == ["c", "b", "a"])
        #expect(all(&store, start: "b") == ["b", "c"])
        let (_, work) = store.scan(contract, start: nil, end: nil, ascending: true)
        #expect(work == 4)
        // A rolled-back write is gone from scans too.
        let savepoint = store.savepoint
        store.contractSet(contract, Array("z".utf8), [1])
        #expect(all(&store).last == "z")
        store.rollback(to: savepoint)
        #expect(all(&store) == ["a", "b", "c"])
    }
}
