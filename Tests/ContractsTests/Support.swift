import Contracts
import Foundation
import Ledger
import NodeCrypto
import WAT

/// Hand-written contracts in WAT: the interface_version_8 skeleton (memory, a bump
/// allocator, the marker, an `instantiate` that answers ok) around a chosen `execute`
/// body, so each hostile behaviour is one small function.
enum WATContract {
    /// `{"ok":{"messages":[],"attributes":[],"events":[],"data":null}}` at 64, its Region at 16.
    static let okJSON = #"{"ok":{"messages":[],"attributes":[],"events":[],"data":null}}"#

    static func module(imports: String = "", execute: String, extra: String = "", memoryPages: Int = 2) -> String {
        let len = okJSON.utf8.count
        let escaped = okJSON.replacingOccurrences(of: "\"", with: "\\\"")
        return """
            (module
              \(imports)
              (memory (export "memory") \(memoryPages))
              (global $heap (mut i32) (i32.const 4096))
              (data (i32.const 16) "\\40\\00\\00\\00\\\(hexByte(len))\\00\\00\\00\\\(hexByte(len))\\00\\00\\00")
              (data (i32.const 64) "\(escaped)")
              (func (export "interface_version_8"))
              (func $allocate (export "allocate") (param $size i32) (result i32)
                (local $region i32)
                (local.set $region (global.get $heap))
                (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $size) (i32.const 16))))
                (block $fits
                  (br_if $fits (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
                  (drop (memory.grow (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1)))))
                (i32.store (local.get $region) (i32.add (local.get $region) (i32.const 12)))
                (i32.store offset=4 (local.get $region) (local.get $size))
                (i32.store offset=8 (local.get $region) (i32.const 0))
                (local.get $region))
              (func (export "deallocate") (param i32))
              (func (export "instantiate") (param i32 i32 i32) (result i32) (i32.const 16))
              (func (export "execute") (param $env i32) (param $info i32) (param $msg i32) (result i32)
                \(execute))
              (func (export "query") (param i32 i32) (result i32) (i32.const 16))
              \(extra)
            )
            """
    }

    static func hexByte(_ n: Int) -> String { String(format: "%02x", n) }

    static func wasm(_ text: String) throws -> [UInt8] { try wat2wasm(text) }
}

/// A ledger with funded accounts and a contract engine, driven by signed transactions.
struct ContractHarness {
    static let chainID = "contracts-test"
    let alice = Ed25519.PrivateKey()
    let bob = Ed25519.PrivateKey()
    let proposer = Ed25519.PrivateKey()
    var state: LedgerState
    let defaultEngine = WasmEngine()
    /// Another engine (an empty instance pool) over the same state.
    var engineOverride: WasmEngine?
    var engine: WasmEngine { engineOverride ?? defaultEngine }
    var seq: [Ed25519.PublicKey: UInt64] = [:]

    init() {
        state = LedgerState(
            chainID: Self.chainID, balances: [alice.publicKey: 1_000_000_000, bob.publicKey: 1_000_000_000])
    }

    /// Signs and executes one contract message as `from`; returns its receipt.
    @discardableResult
    mutating func run(_ msg: ContractMsg, from: Ed25519.PrivateKey? = nil) -> LedgerState.Receipt {
        let key = from ?? alice
        let next = (seq[key.publicKey] ?? 0) + 1
        seq[key.publicKey] = next
        let tx = Transaction(
            chainID: Self.chainID, author: key, seq: next, fee: Self.fee(msg), payload: .contract(msg),
            predecessors: [])
        let receipt = state.executeBlock([tx.encoded], proposer: proposer.publicKey, contracts: engine).receipts[0]
        // A transaction refused without effect leaves the seq free for the next one.
        if [.invalid, .badSequence, .insufficientFee, .blockGasFull].contains(receipt.code) {
            seq[key.publicKey] = next - 1
        }
        return receipt
    }

    /// Stores code and returns its id (fails the test's expectation if refused).
    static func fee(_ msg: ContractMsg) -> UInt64 { max(10, ContractMsg.minimumFee(gasLimit: msg.gasLimit)) }

    mutating func store(_ wasm: [UInt8], gas: UInt64 = 5_000_000) -> (UInt64?, LedgerState.Receipt) {
        let receipt = run(.storeCode(wasm: wasm, gasLimit: gas))
        guard receipt.code == .ok, let output = receipt.output,
            let json = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
            let id = json["code_id"] as? Int
        else { return (nil, receipt) }
        return (UInt64(id), receipt)
    }

    mutating func instantiate(
        _ codeID: UInt64, _ msg: String, admin: Ed25519.PublicKey? = nil, gas: UInt64 = 5_000_000
    )
        -> ([UInt8]?, LedgerState.Receipt)
    {
        let receipt = run(
            .instantiate(
                codeID: codeID, admin: admin, label: "test", msg: Array(msg.utf8), funds: 0, gasLimit: gas))
        guard receipt.code == .ok, let output = receipt.output,
            let json = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
            let address = json["contract_address"] as? String
        else { return (nil, receipt) }
        return (ContractAddressFormat.parse32(address), receipt)
    }

    mutating func execute(
        _ contract: [UInt8], _ msg: String, from: Ed25519.PrivateKey? = nil, funds: UInt64 = 0, gas: UInt64 = 5_000_000
    ) -> LedgerState.Receipt {
        run(.execute(contract: contract, msg: Array(msg.utf8), funds: funds, gasLimit: gas), from: from)
    }

    func query(_ contract: [UInt8], _ msg: String) -> Result<String, ContractError> {
        engine.query(state: state, contract: contract, msg: Array(msg.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    func human(_ key: Ed25519.PublicKey) -> String { ContractAddressFormat.humanize(key.rawRepresentation)! }
}
