import ArgumentParser
import Contracts
import Foundation
import Ledger
import Node
import NodeCrypto
import WAT

struct ContractCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contract",
        abstract: "CosmWasm contracts: store code, instantiate, execute, migrate, query, list.",
        discussion: """
            Transactions are signed with the data directory's node key and submitted to its \
            node; the command waits until the transaction commits and prints the result as \
            wasmd does: the code id or contract address, the events with their attributes, \
            the data, and the gas used. Messages are JSON. Addresses are bech32 (side1…). \
            Each contract transaction's fee covers its gas limit at 0.001 per gas.
            """,
        subcommands: [
            ContractStore.self, ContractInstantiate.self, ContractExecute.self, ContractMigrate.self,
            ContractQuery.self, ContractList.self, ContractCode.self, ContractAddressCommand.self,
        ]
    )
}

struct ContractOptions: ParsableArguments {
    @OptionGroup var tx: TxOptions

    @Option(help: "Gas limit (Cosmos SDK gas; at most 10,000,000).")
    var gas: UInt64 = 2_000_000

    @Option(help: "Seconds to wait for the transaction to commit (0: do not wait).")
    var wait: Double = 30

    func validate() throws {
        guard gas > 0, gas <= ContractMsg.maxGasLimit else {
            throw ValidationError("--gas must be within 1…\(ContractMsg.maxGasLimit)")
        }
    }

    var client: AdminClient {
        AdminClient(socketPath: tx.socket ?? tx.directory.appendingPathComponent("admin.sock").path)
    }

    /// Submits `msg`, waits for its receipt, prints the result; fails if the transaction did.
    func submit(_ msg: ContractMsg) throws {
        var options = tx
        options.fee = max(tx.fee, ContractMsg.minimumFee(gasLimit: msg.gasLimit))
        let id = try options.submitReturningID(.contract(msg))
        Swift.print("txid: \(id)")
        guard wait > 0 else { return }
        let deadline = Date().addingTimeInterval(wait)
        while Date() < deadline {
            if let info = try? client.call("gettx", .object(["id": .string(id)])),
                let receipt = info["receipts"]?.arrayValue?.last
            {
                try Self.show(receipt)
                return
            }
            Thread.sleep(forTimeInterval: 0.25)
        }
        throw CLIError(
            "the transaction did not commit within \(Int(wait)) s (p2pnode admin gettx '{\"id\":\"\(id)\"}')")
    }

    static func show(_ receipt: JSONValue) throws {
        let code = receipt["code"]?.numberValue ?? -1
        Swift.print("height: \(Int(receipt["height"]?.numberValue ?? 0))")
        Swift.print("gas_used: \(Int(receipt["gas"]?.numberValue ?? 0))")
        if let result = receipt["result"], result != .null {
            if let address = result["contract_address"]?.stringValue { Swift.print("contract_address: \(address)") }
            if let id = result["code_id"]?.numberValue { Swift.print("code_id: \(Int(id))") }
            if let checksum = result["checksum"]?.stringValue { Swift.print("checksum: \(checksum)") }
            if let data = result["data"]?.stringValue { Swift.print("data: \(data)") }
            for event in result["events"]?.arrayValue ?? [] {
                Swift.print("event: \(event["type"]?.stringValue ?? "?")")
                for attribute in event["attributes"]?.arrayValue ?? [] {
                    Swift.print(
                        "  \(attribute["key"]?.stringValue ?? ""): \(attribute["value"]?.stringValue ?? "")")
                }
            }
        }
        guard code == 0 else {
            throw CLIError("failed (code \(Int(code))): \(receipt["log"]?.stringValue ?? "")")
        }
    }
}

/// A JSON message argument, checked before anything is signed.
func jsonMessage(_ text: String, _ name: String) throws -> [UInt8] {
    guard (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil else {
        throw ValidationError("\(name) is not valid JSON: \(text)")
    }
    let bytes = Array(text.utf8)
    guard bytes.count <= ContractMsg.maxMessageBytes else {
        throw ValidationError("\(name) exceeds \(ContractMsg.maxMessageBytes) bytes")
    }
    return bytes
}

func contractAddress(_ text: String) throws -> [UInt8] {
    guard let a = ContractAddressFormat.parse32(text) else {
        throw ValidationError("'\(text)' is not a contract address (side1… or 64 hex digits)")
    }
    return a
}

struct ContractStore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "Upload contract code (.wasm, or .wat text) after checking it locally.")

    @OptionGroup var options: ContractOptions

    @Argument(help: "The code: a .wasm file, or a .wat file (translated here).")
    var file: String

    func run() async throws {
        let data: [UInt8]
        do { data = Array(try Data(contentsOf: URL(fileURLWithPath: file))) } catch {
            throw CLIError("cannot read \(file): \(error.localizedDescription)")
        }
        let wasm: [UInt8]
        if file.hasSuffix(".wat") {
            do { wasm = try wat2wasm(String(decoding: data, as: UTF8.self)) } catch {
                throw CLIError("\(file): \(error)")
            }
        } else {
            wasm = data
        }
        // The chain would refuse it for the same reason: say so before paying a fee.
        if let refusal = WasmEngine.check(wasm) { throw CLIError("\(file): \(refusal)") }
        Swift.print("checksum: \(CodeStore.checksum(wasm).hex) (\(wasm.count) bytes)")
        try options.submit(.storeCode(wasm: wasm, gasLimit: options.gas))
    }
}

struct ContractInstantiate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instantiate", abstract: "Create a contract from stored code.")

    @OptionGroup var options: ContractOptions

    @Argument(help: "Code id.") var codeID: UInt64
    @Argument(help: "Instantiate message (JSON).") var msg: String
    @Option(help: "A label naming the contract.") var label: String
    @Option(help: "The admin who may migrate it: a node id (64 hex digits); none if absent.") var admin: String?
    @Option(help: "Coins (uside) sent to the contract with the message.") var amount: UInt64 = 0

    func run() async throws {
        var adminKey: Ed25519.PublicKey?
        if let admin {
            guard let bytes = ContractAddressFormat.parse32(admin) else {
                throw ValidationError("--admin must be a node id or side1… account address")
            }
            adminKey = try Ed25519.PublicKey(rawRepresentation: bytes)
        }
        try options.submit(
            .instantiate(
                codeID: codeID, admin: adminKey, label: label, msg: try jsonMessage(msg, "the message"),
                funds: amount, gasLimit: options.gas))
    }
}

struct ContractExecute: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "execute", abstract: "Execute a contract message.")

    @OptionGroup var options: ContractOptions

    @Argument(help: "Contract address (side1…).") var contract: String
    @Argument(help: "Execute message (JSON).") var msg: String
    @Option(help: "Coins (uside) sent to the contract with the message.") var amount: UInt64 = 0

    func run() async throws {
        try options.submit(
            .execute(
                contract: try contractAddress(contract), msg: try jsonMessage(msg, "the message"), funds: amount,
                gasLimit: options.gas))
    }
}

struct ContractMigrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Move a contract to other code (its admin only).")

    @OptionGroup var options: ContractOptions

    @Argument(help: "Contract address (side1…).") var contract: String
    @Argument(help: "The new code id.") var codeID: UInt64
    @Argument(help: "Migrate message (JSON).") var msg: String

    func run() async throws {
        try options.submit(
            .migrate(
                contract: try contractAddress(contract), codeID: codeID, msg: try jsonMessage(msg, "the message"),
                gasLimit: options.gas))
    }
}

struct AdminOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Data directory of the node (default ~/.sidenode/node).")
    var dataDir: String?

    @Option(help: "Admin socket (default DATA_DIR/admin.sock).")
    var socket: String?

    var client: AdminClient {
        let directory = URL(
            fileURLWithPath: dataDir ?? KeyStore.defaultDirectory(name: "node").path, isDirectory: true)
        return AdminClient(socketPath: socket ?? directory.appendingPathComponent("admin.sock").path)
    }

    func call(_ method: String, _ params: JSONValue) throws -> JSONValue {
        do { return try client.call(method, params) } catch { throw CLIError("\(error)") }
    }
}

struct ContractQuery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query", abstract: "Query a contract: a smart query (JSON) or a raw storage key.")

    @OptionGroup var admin: AdminOptions

    @Argument(help: "Contract address (side1…).") var contract: String
    @Argument(help: "Query message (JSON); omit with --raw.") var msg: String?
    @Option(help: "Read this raw storage key (text) instead.") var raw: String?

    func validate() throws {
        guard (msg == nil) != (raw == nil) else { throw ValidationError("give a query message or --raw KEY") }
        if let msg { _ = try jsonMessage(msg, "the query") }
    }

    func run() async throws {
        var params: [String: JSONValue] = ["contract": .string(contract)]
        if let raw { params["raw_key_hex"] = .string(Array(raw.utf8).hex) }
        if let msg { params["msg"] = .string(msg) }
        let result = try admin.call("querycontract", .object(params))
        if raw != nil {
            print(result["value"]?.stringValue ?? "null")
        } else {
            print(result["data"]?.jsonText ?? result.jsonText)
        }
    }
}

struct ContractList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List contracts (of one code id).")

    @OptionGroup var admin: AdminOptions
    @Option(help: "Only contracts of this code id.") var code: UInt64?

    func run() async throws {
        let params: JSONValue = code.map { .object(["code_id": .int($0)]) } ?? .object([:])
        for c in try admin.call("listcontracts", params).arrayValue ?? [] {
            print(
                "\(c["address"]?.stringValue ?? "?")  code \(Int(c["code_id"]?.numberValue ?? 0))  \(c["label"]?.stringValue ?? "")  keys \(Int(c["storage_keys"]?.numberValue ?? 0))"
            )
        }
    }
}

struct ContractAddressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "address", abstract: "An account's address as contracts see it (side1…), and back to hex.")

    @Option(name: .customLong("data-dir"), help: "Data directory whose node id to convert (default ~/.sidenode/node).")
    var dataDir: String?

    @Argument(help: "A node id (64 hex digits) or a side1… address; the data directory's node id if absent.")
    var account: String?

    func run() async throws {
        var text = account
        if text == nil {
            let directory = URL(
                fileURLWithPath: dataDir ?? KeyStore.defaultDirectory(name: "node").path, isDirectory: true)
            do { text = try KeyStore(directory: directory).load().nodeID } catch { throw CLIError("\(error)") }
        }
        guard let text, let bytes = ContractAddressFormat.parse32(text) else {
            throw ValidationError("not a node id or side1… address: \(account ?? "")")
        }
        print(ContractAddressFormat.humanize(bytes)!)
        print(bytes.hex)
    }
}

struct ContractCode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "code", abstract: "List stored code, or show one code (and save its wasm with --output).")

    @OptionGroup var admin: AdminOptions
    @Argument(help: "Code id (all codes if absent).") var codeID: UInt64?
    @Option(help: "Write the code's wasm to this file (its checksum is checked).") var output: String?

    func run() async throws {
        guard let codeID else {
            for c in try admin.call("listcodes", .object([:])).arrayValue ?? [] {
                print(
                    "\(Int(c["code_id"]?.numberValue ?? 0))  \(c["checksum"]?.stringValue ?? "")  \(Int(c["size"]?.numberValue ?? 0)) bytes  creator \(c["creator"]?.stringValue ?? "")"
                )
            }
            return
        }
        let info = try admin.call(
            "getcode", .object(["code_id": .int(codeID), "wasm": .bool(output != nil)]))
        print(info.jsonText)
        if let output {
            guard let hex = info["wasm_hex"]?.stringValue, let wasm = try? Hex.decode(hex),
                CodeStore.checksum(wasm).hex == info["checksum"]?.stringValue
            else { throw CLIError("the node's code does not match its checksum") }
            try Data(wasm).write(to: URL(fileURLWithPath: output))
        }
    }
}
