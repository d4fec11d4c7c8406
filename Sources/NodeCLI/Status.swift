import ArgumentParser
import Foundation
import Node

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running node's consensus status (getstatus for people).")

    @OptionGroup var socket: SocketOptions

    func run() async throws {
        let client = AdminClient(socketPath: socket.path)
        let status: JSONValue
        let info: JSONValue
        let mempool: JSONValue
        do {
            info = try client.call("getinfo")
            mempool = try client.call("getmempool")
            status = try client.call("getstatus")
        } catch {
            throw CLIError("\(error)")
        }
        func text(_ v: JSONValue?) -> String {
            switch v {
            case .string(let s)?: s
            case .number(let n)?: String(Int(n))
            case .bool(let b)?: b ? "yes" : "no"
            default: "-"
            }
        }
        let rows: [(String, String)] = [
            ("node id", text(info["node_id"])),
            ("chain", text(info["chain_id"])),
            ("validator", text(status["validator"])),
            ("epoch", text(status["epoch"])),
            ("round", text(status["round"])),
            ("leader", text(status["leader"])),
            ("committed height", text(status["committed_height"])),
            ("committed block", text(status["committed_block_id"])),
            ("commit state id", text(status["commit_state_id"])),
            ("highest QC round", text(status["highest_qc_round"])),
            (
                "syncing",
                status["syncing"] == .bool(true)
                    ? "yes, to height \(text(status["sync_target"]))"
                    : "no (best neighbour height \(text(status["sync_target"])))"
            ),
            (
                "last checkpoint",
                status["last_checkpoint"]?["txid"] == nil
                    ? "none confirmed (or checkpointing off)"
                    : "epoch \(text(status["last_checkpoint"]?["epoch"])) round \(text(status["last_checkpoint"]?["round"])), "
                        + "Bitcoin height \(text(status["last_checkpoint"]?["bitcoin_height"])), "
                        + "txid \(text(status["last_checkpoint"]?["txid"]))"
            ),
            ("peers", text(info["connections"])),
            ("DAG transactions", text(mempool["count"])),
        ]
        for (label, value) in rows { print(label.padding(toLength: 18, withPad: " ", startingAt: 0) + value) }
    }
}
