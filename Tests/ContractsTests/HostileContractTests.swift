import Contracts
import Foundation
import Ledger
import NodeCrypto
import Testing

/// Each hostile contract is stored, instantiated and executed on a ledger: the node
/// stays up, the transaction fails with a reason, and nothing but the fee and the
/// sequence number changes.
@Suite("Hostile contracts are metered or refused without harm")
struct HostileContractTests {
    /// Deploys a contract with `execute` as its body, runs it once, and checks that only
    /// the fee, the seq and (for gas) the receipt changed.
    func attack(
        imports: String = "", execute: String, extra: String = "", gas: UInt64 = 200_000
    ) throws -> LedgerState.Receipt {
        var h = ContractHarness()
        let wasm = try WATContract.wasm(WATContract.module(imports: imports, execute: execute, extra: extra))
        let (codeID, stored) = h.store(wasm)
        #expect(stored.code == .ok, "\(stored.failure ?? "")")
        let id = try #require(codeID)
        let contract = try #require(h.instantiate(id, "{}").0)
        let before = h.state
        let receipt = h.execute(contract, "{}", gas: gas)
        #expect(receipt.code == .failed)
        // Only alice's account (fee, seq), the proposer's fee and the ledger's own
        // bookkeeping changed: no contract key and no other balance.
        let fee = ContractHarness.fee(.execute(contract: contract, msg: [], funds: 0, gasLimit: gas))
        #expect(h.state.balance(of: h.alice.publicKey) == before.balance(of: h.alice.publicKey) - fee)
        #expect(h.state.balance(of: h.bob.publicKey) == before.balance(of: h.bob.publicKey))
        #expect(h.state.contractIndex.keys(of: contract).isEmpty)
        return receipt
    }

    @Test("an infinite loop runs out of gas and is charged its whole limit")
    func infiniteLoop() throws {
        // 100k gas: the instance's 60k, then 40k of Wasm (about 7.5 M operators).
        let receipt = try attack(execute: "(loop $l (br $l)) (i32.const 16)", gas: 100_000)
        #expect(receipt.failure == "out of gas")
        #expect(receipt.gas >= 100_000)
    }

    @Test("a memory bomb is stopped at 32 MiB")
    func memoryBomb() throws {
        // Grows 1 MiB at a time until refused, then traps on purpose if growth went past 32 MiB.
        let receipt = try attack(
            execute: """
                (block $done (loop $grow
                  (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
                  (br $grow)))
                (if (i32.gt_u (memory.size) (i32.const 512)) (then (unreachable)))
                (i32.const 0) (i32.const 0) (i32.store)
                (unreachable)
                """)
        #expect(receipt.failure?.contains("unreachable") == true)
    }

    @Test("bad guest pointers trap the call, not the node")
    func badPointers() throws {
        let imports = #"(import "env" "db_write" (func $db_write (param i32 i32)))"#
        // A Region pointer past the end of memory.
        let past = try attack(
            imports: imports, execute: "(call $db_write (i32.const 0x7ffffff0) (i32.const 16)) (i32.const 16)")
        #expect(past.failure?.contains("out of bounds") == true)
        // A Region whose buffer lies outside memory.
        let buffer = try attack(
            imports: imports,
            execute: """
                (i32.store (i32.const 2048) (i32.const 0x7fff0000))
                (i32.store (i32.const 2052) (i32.const 64))
                (i32.store (i32.const 2056) (i32.const 8))
                (call $db_write (i32.const 2048) (i32.const 2048)) (i32.const 16)
                """)
        #expect(buffer.failure?.contains("region") == true)
        // length > capacity.
        let length = try attack(
            imports: imports,
            execute: """
                (i32.store (i32.const 2048) (i32.const 3000))
                (i32.store (i32.const 2052) (i32.const 4))
                (i32.store (i32.const 2056) (i32.const 8))
                (call $db_write (i32.const 2048) (i32.const 2048)) (i32.const 16)
                """)
        #expect(length.failure?.contains("exceeds its capacity") == true)
        // A result pointer that is not a Region.
        let result = try attack(execute: "(i32.const 0xfffffff0)")
        #expect(result.failure?.contains("out of bounds") == true)
    }

    @Test("a panic (abort) fails the transaction with the contract's message")
    func panic() throws {
        let receipt = try attack(
            imports: #"(import "env" "abort" (func $abort (param i32)))"#,
            execute: """
                (i32.store (i32.const 2048) (i32.const 2100))
                (i32.store (i32.const 2052) (i32.const 5))
                (i32.store (i32.const 2056) (i32.const 5))
                (i32.store8 (i32.const 2100) (i32.const 0x62))
                (i32.store8 (i32.const 2101) (i32.const 0x6f))
                (i32.store8 (i32.const 2102) (i32.const 0x6f))
                (i32.store8 (i32.const 2103) (i32.const 0x6d))
                (i32.store8 (i32.const 2104) (i32.const 0x21))
                (call $abort (i32.const 2048)) (i32.const 16)
                """)
        #expect(receipt.failure == "contract trapped: aborted: boom!")
    }

    @Test("unbounded recursion exhausts the interpreter's stack and fails cleanly")
    func recursion() throws {
        let receipt = try attack(
            execute: "(call $rec (i32.const 0)) (i32.const 16)",
            extra: "(func $rec (param i32) (call $rec (i32.add (local.get 0) (i32.const 1))))",
            gas: 1_000_000)
        #expect(receipt.failure?.contains("trapped") == true || receipt.failure == "out of gas")
    }

    @Test("a result that is not CosmWasm JSON fails; an unsupported crypto import fails the call")
    func badResults() throws {
        // Points the result Region at the Region table itself: 12 bytes of binary.
        let binary = try attack(
            execute: """
                (i32.store (i32.const 2048) (i32.const 16))
                (i32.store (i32.const 2052) (i32.const 12))
                (i32.store (i32.const 2056) (i32.const 12))
                (i32.const 2048)
                """)
        #expect(binary.failure?.contains("JSON") == true)
        let bls = try attack(
            imports: #"(import "env" "bls12_381_hash_to_g1" (func $h (param i32 i32 i32 i32) (result i32)))"#,
            execute: "(drop (call $h (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))) (i32.const 16)")
        #expect(bls.failure?.contains("not supported") == true)
    }

    @Test("a query cannot write")
    func queryWrites() throws {
        var h = ContractHarness()
        let wasm = try WATContract.wasm(
            WATContract.module(
                imports: #"(import "env" "db_write" (func $db_write (param i32 i32)))"#, execute: "(i32.const 16)"
            ).replacingOccurrences(
                of: #"(func (export "query") (param i32 i32) (result i32) (i32.const 16))"#,
                with:
                    #"(func (export "query") (param i32 i32) (result i32) (call $db_write (local.get 0) (local.get 0)) (i32.const 16))"#
            ))
        let id = try #require(h.store(wasm).0)
        let contract = try #require(h.instantiate(id, "{}").0)
        guard case .failure(let error) = h.query(contract, "{}") else {
            Issue.record("the query wrote")
            return
        }
        #expect(error.description.contains("cannot write"))
    }

    @Test("a gas limit of 0, above the cap, or not covered by the fee is refused before anything runs")
    func gasLimits() throws {
        var h = ContractHarness()
        let wasm = try WATContract.wasm(WATContract.module(execute: "(i32.const 16)"))
        let zero = h.run(.storeCode(wasm: wasm, gasLimit: 0))
        #expect(zero.code == .invalid)
        let huge = h.run(.storeCode(wasm: wasm, gasLimit: ContractMsg.maxGasLimit + 1))
        #expect(huge.code == .invalid)
        let key = h.alice
        let cheap = Transaction(
            chainID: ContractHarness.chainID, author: key, seq: 1, fee: 999,
            payload: .contract(.storeCode(wasm: wasm, gasLimit: 1_000_000)), predecessors: [])
        #expect(cheap.validateStandalone(chainID: ContractHarness.chainID)?.contains("below 1000") == true)
        // Too little gas to compile: refused, the code is not stored.
        let little = h.run(.storeCode(wasm: wasm, gasLimit: 10))
        #expect(little.failure == "out of gas")
    }

    @Test("executing a missing contract or instantiating a missing code id fails with the reason")
    func missing() throws {
        var h = ContractHarness()
        let nowhere = h.execute([UInt8](repeating: 7, count: 32), "{}")
        #expect(nowhere.failure?.contains("no contract") == true)
        let noCode = h.instantiate(99, "{}")
        #expect(noCode.1.failure?.contains("no code with id 99") == true)
    }

    @Test("a block runs at most 20M gas of contract transactions; the rest wait without effect for the next block")
    func blockGas() throws {
        var h = ContractHarness()
        let wasm = try WATContract.wasm(WATContract.module(execute: "(i32.const 16)"))
        let id = try #require(h.store(wasm).0)
        let contract = try #require(h.instantiate(id, "{}").0)
        let txs = (1...3).map { i in
            Transaction(
                chainID: ContractHarness.chainID, author: h.bob, seq: UInt64(i), fee: 8_000,
                payload: .contract(.execute(contract: contract, msg: Array("{}".utf8), funds: 0, gasLimit: 8_000_000)),
                predecessors: [])
        }
        let first = h.state.executeBlock(txs.map(\.encoded), proposer: h.proposer.publicKey, contracts: h.engine)
        #expect(first.receipts.map(\.code) == [.ok, .ok, .blockGasFull])
        #expect(h.state.seq(of: h.bob.publicKey) == 2, "the deferred one used no seq")
        let second = h.state.executeBlock([txs[2].encoded], proposer: h.proposer.publicKey, contracts: h.engine)
        #expect(second.receipts.map(\.code) == [.ok])
    }

    @Test("a recycled instance is a fresh one: globals and memory reset, the same gas as on an empty pool")
    func recycledInstances() throws {
        // execute: bumps a mutable global and a memory cell, then traps unless both were 0
        // before — a contract that could see its previous call would fail the second time.
        let wasm = try WATContract.wasm(
            WATContract.module(
                execute: """
                    (if (i32.or (global.get $calls) (i32.load (i32.const 3000))) (then (unreachable)))
                    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
                    (i32.store (i32.const 3000) (i32.const 1))
                    (drop (memory.grow (i32.load (i32.const 3004))))
                    (i32.const 16)
                    """,
                extra: "(global $calls (mut i32) (i32.const 0))"))
        var h = ContractHarness()
        let id = try #require(h.store(wasm).0)
        let contract = try #require(h.instantiate(id, "{}").0)
        var gas: [UInt64] = []
        for _ in 0..<3 {
            let r = h.execute(contract, "{}")
            #expect(r.code == .ok, "\(r.failure ?? "")")
            gas.append(r.gas)
        }
        // A second engine with an empty pool runs the same call at the same gas.
        var fresh = h
        fresh.engineOverride = WasmEngine(codes: h.engine.codes)
        let cold = fresh.execute(contract, "{}")
        #expect(cold.code == .ok)
        #expect(Set(gas + [cold.gas]).count == 1, "warm \(gas), cold \(cold.gas)")
    }

    @Test("a leader's contract transaction with a gas limit near 2^64 is refused, never added up (no overflow trap)")
    func gasLimitOverflow() throws {
        var h = ContractHarness()
        let txs = [UInt64(1), .max].enumerated().map { i, gas in
            Transaction(
                chainID: ContractHarness.chainID, author: h.bob, seq: UInt64(i + 1), fee: 0,
                payload: .contract(
                    .execute(contract: [UInt8](repeating: 1, count: 32), msg: [], funds: 0, gasLimit: gas)),
                predecessors: [])
        }
        let receipts = h.state.executeBlock(txs.map(\.encoded), proposer: h.proposer.publicKey, contracts: h.engine)
            .receipts
        #expect(receipts[1].code == .blockGasFull)
    }

    @Test("allocate calling back into the host fails the call instead of nesting host and guest frames")
    func allocateReentry() throws {
        var h = ContractHarness()
        let base = WATContract.module(
            imports: #"(import "env" "addr_validate" (func $v (param i32) (result i32)))"#,
            execute: "(drop (call $v (i32.const 16))) (i32.const 16)")
        // allocate first asks the host to validate an address (whose error reply would
        // call allocate again, and so on).
        let wat = base.replacingOccurrences(
            of: "(local.set $region (global.get $heap))",
            with: "(drop (call $v (i32.const 16))) (local.set $region (global.get $heap))")
        let id = try #require(h.store(try WATContract.wasm(wat)).0)
        let (contract, receipt) = h.instantiate(id, "{}")
        #expect(contract == nil)
        #expect(receipt.failure?.contains("allocate") == true, "\(receipt.failure ?? "")")
    }
}
