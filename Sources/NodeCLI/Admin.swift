import ArgumentParser
import Foundation
import Node

/// Where the admin socket is: --socket, else DATA_DIR/admin.sock.
struct SocketOptions: ParsableArguments {
    @Option(help: "Path of the node's admin socket.")
    var socket: String?

    @Option(name: .customLong("data-dir"), help: "Data directory whose admin.sock to use (default ~/.sidenode/node).")
    var dataDir: String?

    var path: String {
        socket
            ?? URL(fileURLWithPath: dataDir ?? KeyStore.defaultDirectory(name: "node").path)
            .appendingPathComponent("admin.sock").path
    }
}

struct Admin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call a method on a running node's admin socket and print the JSON result.",
        discussion: """
            Methods: getinfo, getpeerinfo, connect {"address": "NODEID@HOST:PORT"}, \
            disconnect {"node_id": HEX}, setban {"node_id": HEX | "ip": HOST, "seconds": N}, \
            listbanned, listdiscouraged, clearbanned, getnettotals, publish {"payload_hex": HEX}, getgossipinfo, \
            getaddrbook, stop. See docs/admin-api.md.
            Example: p2pnode admin --socket DIR/admin.sock connect '{"address":"…@127.0.0.1:26656"}'
            """
    )

    @OptionGroup var socket: SocketOptions

    @Argument(help: "Method name, e.g. getpeerinfo.")
    var method: String

    @Argument(help: "Parameters as a JSON object.")
    var params: String?

    func run() async throws {
        let parsed: JSONValue
        do {
            parsed = try params.map { try JSONValue.parse($0) } ?? .object([:])
        } catch {
            throw ValidationError("parameters must be a JSON object, e.g. '{\"node_id\":\"…\"}'")
        }
        do {
            let result = try AdminClient(socketPath: socket.path).call(method, parsed)
            print(result.prettyText)
        } catch {
            throw CLIError("\(error)")
        }
    }
}

struct Peers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running node's peers as a table (getpeerinfo for people)."
    )

    @OptionGroup var socket: SocketOptions

    func run() async throws {
        let peers: JSONValue
        do {
            peers = try AdminClient(socketPath: socket.path).call("getpeerinfo")
        } catch {
            throw CLIError("\(error)")
        }
        let rows = peers.arrayValue ?? []
        let header = ["NODE ID", "ADDRESS", "DIR", "SINCE", "SENT", "RECV", "MSG IN/OUT", "PING", "SCORE"]
        var table: [[String]] = [header]
        let now = Date().timeIntervalSince1970
        for peer in rows {
            let since = now - (peer["connected_since"]?.numberValue ?? now)
            let ping = peer["ping_time"]?.numberValue.map { String(format: "%.1fms", $0 * 1000) } ?? "-"
            table.append([
                String((peer["node_id"]?.stringValue ?? "").prefix(16)) + "…",
                peer["address"]?.stringValue ?? "",
                peer["inbound"] == .bool(true) ? "in" : "out",
                formatDuration(since),
                formatBytes(peer["bytes_sent"]?.numberValue ?? 0),
                formatBytes(peer["bytes_recv"]?.numberValue ?? 0),
                "\(Int(peer["messages_in"]?.numberValue ?? 0))/\(Int(peer["messages_out"]?.numberValue ?? 0))",
                ping,
                "\(Int(peer["score"]?.numberValue ?? 0))",
            ])
        }
        let widths = (0..<header.count).map { column in table.map { $0[column].count }.max() ?? 0 }
        for row in table {
            print(
                row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                    .joined(separator: "  "))
        }
        print("\(rows.count) peer\(rows.count == 1 ? "" : "s")")
    }
}

func formatBytes(_ n: Double) -> String {
    if n >= 1_048_576 { return String(format: "%.1fMiB", n / 1_048_576) }
    if n >= 1024 { return String(format: "%.1fKiB", n / 1024) }
    return "\(Int(n))B"
}

func formatDuration(_ s: Double) -> String {
    let seconds = Int(max(0, s))
    if seconds >= 3600 { return "\(seconds / 3600)h\(seconds % 3600 / 60)m" }
    if seconds >= 60 { return "\(seconds / 60)m\(seconds % 60)s" }
    return "\(seconds)s"
}
