import ArgumentParser
import Foundation
import Ledger
import Node
import NodeCrypto

struct Tx: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tx",
        abstract: "Build, sign and submit transactions through a running node.",
        discussion: """
            The transaction is signed with the data directory's node key (the account is its \
            node id). The node supplies the chain id, the account's next sequence number and \
            the current heads, which become the transaction's predecessors.
            """,
        subcommands: [TxSend.self, TxData.self]
    )
}

struct TxOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "Data directory with the signing key (default ~/.sidenode/node).")
    var dataDir: String?

    @Option(help: "Admin socket of the node to submit to (default DATA_DIR/admin.sock).")
    var socket: String?

    @Option(help: "Fee offered.")
    var fee: UInt64 = 0

    @Option(help: "Sequence number (default: the node's next for this account).")
    var seq: UInt64?

    var directory: URL {
        URL(fileURLWithPath: dataDir ?? KeyStore.defaultDirectory(name: "node").path, isDirectory: true)
    }

    func submit(_ payload: TxPayload) throws {
        print(try submitReturningID(payload))
    }

    /// Signs and submits; the transaction's id.
    func submitReturningID(_ payload: TxPayload) throws -> String {
        let keys: NodeKeys
        do { keys = try KeyStore(directory: directory).load() } catch { throw CLIError("\(error)") }
        let client = AdminClient(socketPath: socket ?? directory.appendingPathComponent("admin.sock").path)
        do {
            let info = try client.call("getnextseq", .object(["author": .string(keys.nodeID)]))
            guard let chainID = info["chain_id"]?.stringValue, let next = info["next_seq"]?.numberValue else {
                throw CLIError("unexpected getnextseq reply: \(info)")
            }
            let heads = try (info["heads"]?.arrayValue ?? []).compactMap(\.stringValue).map { try TxID(hex: $0) }
            let tx = Transaction(
                chainID: chainID, author: keys.identity, seq: seq ?? UInt64(next), fee: fee, payload: payload,
                predecessors: heads)
            let result = try client.call("submittx", .object(["hex": .string(tx.encoded.hex)]))
            guard let id = result["id"]?.stringValue else { throw CLIError("unexpected submittx reply: \(result)") }
            return id
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("\(error)")
        }
    }
}

struct TxSend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "Transfer an amount to an account (a node id).")

    @OptionGroup var options: TxOptions

    @Option(help: "Recipient account: a node id (64 hex digits).")
    var to: String

    @Option(help: "Amount, a positive whole number.")
    var amount: UInt64

    func validate() throws {
        guard amount > 0 else { throw ValidationError("--amount must be positive") }
        guard let bytes = try? Hex.decode(to), (try? Ed25519.PublicKey(rawRepresentation: bytes)) != nil else {
            throw ValidationError("--to must be a node id: 64 hex digits of an Ed25519 public key")
        }
    }

    func run() async throws {
        let recipient = try Ed25519.PublicKey(rawRepresentation: Hex.decode(to))
        try options.submit(.transfer(to: recipient, amount: amount))
    }
}

struct TxData: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Record opaque application data (≤ 16 KiB).")

    @OptionGroup var options: TxOptions

    @Option(help: "Data as hex.")
    var hex: String?

    @Option(help: "Data as UTF-8 text.")
    var text: String?

    func validate() throws {
        guard (hex == nil) != (text == nil) else { throw ValidationError("give exactly one of --hex or --text") }
        if let hex, (try? Hex.decode(hex)) == nil { throw ValidationError("--hex is not valid hex") }
        let size = hex.map { $0.count / 2 } ?? text.map { $0.utf8.count } ?? 0
        guard size <= TxPayload.maxDataBytes else { throw ValidationError("data is limited to 16 KiB") }
    }

    func run() async throws {
        let bytes = try hex.map { try Hex.decode($0) } ?? Array((text ?? "").utf8)
        try options.submit(.data(bytes))
    }
}
