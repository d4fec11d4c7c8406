import Contracts
import Foundation
import Ledger
import NodeCrypto
import WAT

/// Hand-written contracts in WAT: the interface_version_8 skeleton (memory, a bump
/// allocator, the marker, an `instantiate` that answers ok) around a chosen `execute`
/// body, so each hostile behaviour is one small function.
enum WATContract {
    static func module(imports: String = "", execute: String, extra: String = "", memoryPages: Int = 2) -> String {
        ContractSkeleton.wat(imports: imports, execute: execute, extra: extra, memoryPages: memoryPages)
    }

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
