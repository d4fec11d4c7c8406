import Foundation
import Gossip
import Node
import Testing

@Suite("Admin socket", .serialized)
struct AdminSocketTests {
    @Test("JSON-RPC errors are clear; the socket is mode 0600; keys and state files are private")
    func errorsAndPermissions() throws {
        let net = try LocalTestnet(nodes: 1)
        defer { net.shutdown() }
        try net.start(0, bootstrap: false)
        try net.waitReady(0)
        let socketPath = net.dataDir(0).appendingPathComponent("admin.sock").path
        let mode =
            (try FileManager.default.attributesOfItem(atPath: socketPath)[.posixPermissions] as? Int ?? 0) & 0o777
        #expect(mode == 0o600)
        let client = net.admin(0)
        func errorCode(_ line: String) throws -> Double? {
            try JSONValue.parse(try client.exchange(line))["error"]?["code"]?.numberValue
        }
        #expect(try errorCode("{not json") == -32700)
        #expect(try errorCode("{\"jsonrpc\":\"1.0\",\"method\":\"getinfo\",\"id\":1}") == -32600)
        #expect(try errorCode("{\"jsonrpc\":\"2.0\",\"method\":\"nosuch\",\"id\":1}") == -32601)
        #expect(
            try errorCode("{\"jsonrpc\":\"2.0\",\"method\":\"connect\",\"params\":{\"address\":\"x\"},\"id\":1}")
                == -32602)
        #expect(try errorCode("{\"jsonrpc\":\"2.0\",\"method\":\"disconnect\",\"params\":[],\"id\":1}") == -32602)
        #expect(
            try errorCode("{\"jsonrpc\":\"2.0\",\"method\":\"publish\",\"params\":{\"payload_hex\":\"zz\"},\"id\":1}")
                == -32602)
        // The id is echoed, and a working call still works after errors.
        let ok = try JSONValue.parse(try client.exchange("{\"jsonrpc\":\"2.0\",\"method\":\"getinfo\",\"id\":\"abc\"}"))
        #expect(ok["id"] == .string("abc"))
        #expect(ok["result"]?["chain_id"] == .string("sidenode-it"))
        // setban / listbanned / clearbanned round trip, persisted to banlist.json.
        _ = try client.call("setban", .object(["ip": .string("10.9.8.7"), "seconds": .int(600)]))
        let listed = try client.call("listbanned").arrayValue ?? []
        #expect(listed.contains { $0["target"] == .string("ip:10.9.8.7") })
        let banFile = try String(contentsOf: net.dataDir(0).appendingPathComponent("banlist.json"), encoding: .utf8)
        #expect(banFile.contains("ip:10.9.8.7"))
        // A ban of 1e308 seconds is clamped to ten years: no crash now, none when listed.
        let huge = try client.call("setban", .object(["ip": .string("10.9.8.6"), "seconds": .number(1e308)]))
        #expect((huge["until"]?.numberValue ?? 0) <= Ban.latest)
        #expect(try client.call("listbanned").arrayValue?.contains { $0["target"] == .string("ip:10.9.8.6") } == true)
        _ = try client.call("clearbanned")
        #expect(try client.call("listbanned").arrayValue?.isEmpty == true)
        let totals = try client.call("getnettotals")
        #expect(totals["total_bytes_sent"] != nil && totals["connections"] == .int(0))
        _ = try client.call("stop")
        try waitUntil(timeout: 15, "node to exit") { !(net.processes[0]?.isRunning ?? false) }
        #expect(net.processes[0]?.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: socketPath), "the socket is removed on exit")
    }

    @Test("a connection that never completes the handshake is closed after handshake_timeout")
    func handshakeTimeout() throws {
        let net = try LocalTestnet(nodes: 1)
        defer { net.shutdown() }
        try "listen = \"127.0.0.1:\(net.port(0))\"\nhandshake_timeout = 1\n".write(
            to: net.configFile(0), atomically: true, encoding: .utf8)
        try net.start(0, bootstrap: false)
        try net.waitReady(0)
        let silent = try RawTCPClient(port: net.port(0))
        let start = Date()
        let reply = silent.receive()
        #expect(reply?.isEmpty == true, "the node closes the idle connection")
        #expect(Date().timeIntervalSince(start) < 9, "closed by the 1 s handshake timeout, not the read timeout")
    }

    @Test func aBadConfigStopsStartUpWithAClearMessage() throws {
        let net = try LocalTestnet(nodes: 1)
        defer { net.shutdown() }
        try "listen = 5\n".write(to: net.configFile(0), atomically: true, encoding: .utf8)
        try net.start(0, bootstrap: false)
        try waitUntil(timeout: 15, "node to exit") { !(net.processes[0]?.isRunning ?? false) }
        #expect(net.processes[0]?.terminationStatus != 0)
        #expect(net.log(0).contains("'listen' must be a string"))
    }
}

@Suite("One node per data directory")
struct DataDirectoryLockTests {
    @Test("a second run on the same data directory stops at once with a clear error; the first keeps serving")
    func secondRunRefused() throws {
        let net = try LocalTestnet(nodes: 1)
        defer { net.shutdown() }
        try net.start(0, bootstrap: false)
        try net.waitReady(0)
        let second = try CLIRunner().cli(
            ["run", "--data-dir", net.dataDir(0).path, "--config", net.configFile(0).path])
        #expect(second.status != 0)
        #expect(second.output.contains("another p2pnode is running"), "\(second.output)")
        // The first node still answers on its own socket.
        #expect(try net.admin(0).call("getinfo")["chain_id"] != nil)
    }
}
