import Foundation
import Ledger
import NodeCrypto
import WAT

/// `p2pnode bench contracts`: a warm CW20 transfer through the ledger (instance, Wasm,
/// storage, the block's tree update), beside the VM's own bounds measured in the same
/// run — a pure-Wasm loop (operators/s) and an empty host call.
public enum ContractBenchmark {
    public struct Figure: Sendable {
        public let label: String
        public let value: Double
        public let unit: String
    }

    public static func run(cw20 wasm: [UInt8], transfers: Int = 2_000) throws -> [Figure] {
        var figures: [Figure] = []
        let alice = Ed25519.PrivateKey()
        var state = LedgerState(chainID: "bench", balances: [alice.publicKey: 1 << 40])
        let engine = WasmEngine()
        var seq: UInt64 = 0
        func tx(_ msg: ContractMsg) -> Transaction {
            seq += 1
            return Transaction(
                chainID: "bench", author: alice, seq: seq, fee: ContractMsg.minimumFee(gasLimit: msg.gasLimit),
                payload: .contract(msg), predecessors: [])
        }
        func block(_ txs: [Transaction]) throws -> [LedgerState.Receipt] {
            let receipts = state.executeBlock(
                txs.map(\.encoded), proposer: alice.publicKey, signatureChecked: { _ in true }, contracts: engine
            ).receipts
            if let bad = receipts.first(where: { $0.code != .ok }) {
                throw BenchError("benchmark transaction failed: \(bad.failure ?? "code \(bad.code)")")
            }
            return receipts
        }
        func output(_ r: LedgerState.Receipt, _ key: String) -> Any? {
            (try? JSONSerialization.jsonObject(with: Data((r.output ?? "").utf8)) as? [String: Any])?[key]
        }

        // The VM's bounds: operators per second in a loop, and one empty host call.
        let loops = 2_000_000
        let loopModule = try probe(
            execute: """
                (local $i i32)
                (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $l (i32.lt_u (local.get $i) (i32.const \(loops)))))
                (i32.const 16)
                """)
        let hostCalls = 20_000
        let hostModule = try probe(
            imports: #"(import "env" "debug" (func $d (param i32)))"#,
            execute: """
                (local $i i32)
                (i32.store (i32.const 2048) (i32.const 64)) (i32.store (i32.const 2052) (i32.const 1))
                (i32.store (i32.const 2056) (i32.const 1))
                (loop $l (call $d (i32.const 2048)) (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $l (i32.lt_u (local.get $i) (i32.const \(hostCalls)))))
                (i32.const 16)
                """)
        var ids: [UInt64] = []
        for module in [loopModule, hostModule] {
            let r = try block([tx(.storeCode(wasm: module, gasLimit: 5_000_000))])[0]
            ids.append(UInt64(output(r, "code_id") as? Int ?? 0))
        }
        var probes: [[UInt8]] = []
        for id in ids {
            let r = try block([
                tx(
                    .instantiate(
                        codeID: id, admin: nil, label: "probe", msg: Array("{}".utf8), funds: 0, gasLimit: 1_000_000))
            ])[0]
            probes.append(try ContractAddressFormat.canonicalize(output(r, "contract_address") as? String ?? "").get())
        }
        let gasLimit = ContractMsg.maxGasLimit
        func timeCall(_ contract: [UInt8]) throws -> (seconds: Double, gas: UInt64) {
            let t = tx(.execute(contract: contract, msg: Array("{}".utf8), funds: 0, gasLimit: gasLimit))
            let start = DispatchTime.now().uptimeNanoseconds
            let r = try block([t])[0]
            return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, r.gas)
        }
        _ = try timeCall(probes[0])  // translation of the functions it runs
        let loop = try timeCall(probes[0])
        // 8 operators per iteration: local.get, i32.const, i32.add, local.set, local.get,
        // i32.const, i32.lt_u, br_if.
        let ops = Double(loops) * 8
        figures.append(Figure(label: "pure-wasm loop, operators/s (bound)", value: ops / loop.seconds, unit: "op/s"))
        figures.append(Figure(label: "pure-wasm loop, gas/s", value: Double(loop.gas) / loop.seconds, unit: "gas/s"))
        _ = try timeCall(probes[1])
        let host = try timeCall(probes[1])
        figures.append(
            Figure(
                label: "empty host call (debug, 1 byte), µs", value: host.seconds / Double(hostCalls) * 1e6, unit: "µs")
        )

        // CW20: instantiate with one holder, then transfers to fresh recipients.
        let cw20 = try block([tx(.storeCode(wasm: wasm, gasLimit: 5_000_000))])[0]
        let cw20ID = UInt64(output(cw20, "code_id") as? Int ?? 0)
        let holder = ContractAddressFormat.humanize(alice.publicKey.rawRepresentation)!
        let instantiate = """
            {"name":"Bench","symbol":"BNCH","decimals":0,"initial_balances":[{"address":"\(holder)","amount":"1000000000"}],"mint":null}
            """
        let created = try block([
            tx(
                .instantiate(
                    codeID: cw20ID, admin: nil, label: "bench", msg: Array(instantiate.utf8), funds: 0,
                    gasLimit: 5_000_000))
        ])[0]
        let token = try ContractAddressFormat.canonicalize(output(created, "contract_address") as? String ?? "").get()
        let recipients = (0..<64).map { _ in
            ContractAddressFormat.humanize(Ed25519.PrivateKey().publicKey.rawRepresentation)!
        }
        func transfer(_ i: Int) -> Transaction {
            tx(
                .execute(
                    contract: token,
                    msg: Array(#"{"transfer":{"recipient":"\#(recipients[i % recipients.count])","amount":"1"}}"#.utf8),
                    funds: 0, gasLimit: 200_000))
        }
        for i in 0..<50 { _ = try block([transfer(i)]) }  // warm: every recipient exists, code translated
        var latencies: [Double] = []
        var gas: UInt64 = 0
        for i in 0..<transfers {
            let t = transfer(i)
            let start = DispatchTime.now().uptimeNanoseconds
            let r = try block([t])
            latencies.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            gas += r[0].gas
        }
        latencies.sort()
        let total = latencies.reduce(0, +) / 1e3
        figures.append(
            Figure(label: "CW20 transfer, one per block, p50", value: latencies[latencies.count / 2], unit: "ms"))
        figures.append(
            Figure(label: "CW20 transfer, one per block, p99", value: latencies[latencies.count * 99 / 100], unit: "ms")
        )
        figures.append(Figure(label: "CW20 transfer, gas each", value: Double(gas) / Double(transfers), unit: "gas"))
        figures.append(Figure(label: "CW20 transfers, gas/s", value: Double(gas) / total, unit: "gas/s"))
        // A block of 100 transfers: the tree update is shared.
        let batch = (0..<100).map { transfer($0) }
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try block(batch)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        figures.append(Figure(label: "CW20 transfers in a 100-transaction block", value: 100 / seconds, unit: "tx/s"))
        return figures
    }

    /// A probe contract: the skeleton with `execute` as its body.
    static func probe(imports: String = "", execute: String) throws -> [UInt8] {
        try wat2wasm(ContractSkeleton.wat(imports: imports, execute: execute))
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
