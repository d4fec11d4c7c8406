import Foundation
import Node
import Testing

/// Issue 20 §6: each node's status page (`GET /status` on `metrics_listen`) in a real
/// browser — tools/statuspage/check.py drives headless Chromium over the DevTools
/// protocol — and the Grafana dashboard's metric names against a real node's /metrics.
/// Chromium comes from scripts/lib/deps.sh (Debian's `chromium`).
@Suite("Status page in a browser, dashboard metric names", .serialized)
struct StatusPageTests {
    static var repository: URL { RegtestChain.repository }

    /// Runs tools/statuspage/check.py (standard library only) to completion.
    func check(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let pythons = [Self.repository.appendingPathComponent(".venv/bin/python").path, "/usr/bin/python3"]
        guard let python = pythons.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestnetError("no python3 (scripts/lib/deps.sh installs it)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Self.repository.appendingPathComponent("tools/statuspage/check.py").path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    func height(_ net: LocalTestnet, _ i: Int) -> Int {
        Int((try? net.admin(i).call("getstatus")["committed_height"]?.numberValue) ?? 0)
    }

    func confirmedCheckpoints(_ net: LocalTestnet, _ i: Int) -> Int {
        ((try? net.admin(i).call("getcheckpoints"))?["checkpoints"]?.arrayValue ?? []).filter {
            $0["status"] == .string("confirmed")
        }.count
    }

    @Test(
        "4 validators: node0's /status in headless Chromium goes live, shows its peers and a rising height, with no console error or failed request; every metric the dashboard and docs name is on its /metrics"
    )
    func statusPageAndDashboard() throws {
        let net = try LocalTestnet(nodes: 4)
        defer { net.shutdown() }
        try net.enableConsensus(validators: 4)
        for i in 0..<4 { try net.start(i) }
        for i in 0..<4 { try net.waitReady(i) }
        try waitUntil(timeout: 60, "every validator to commit 3 blocks") {
            (0..<4).allSatisfy { height(net, $0) >= 3 }
        }
        try waitUntil(timeout: 30, "node0 to have 3 peers") {
            (try net.admin(0).call("getpeerinfo").arrayValue?.count ?? 0) >= 3
        }
        let base = "http://127.0.0.1:\(net.metricsPort(0))"
        let result = try check([
            "\(base)/status", "--min-peers", "3", "--timeout", "60",
            "--metrics", "\(base)/metrics",
            "--dashboard", Self.repository.appendingPathComponent("docs/grafana/sidenode-dashboard.json").path,
            "--names-from", Self.repository.appendingPathComponent("docs/observability.md").path,
        ])
        #expect(result.status == 0, "\(result.output)\nnode0 log tail:\n\(net.log(0).suffix(1500))")
        #expect(result.output.contains("statuspage: PASS"), "\(result.output)")
    }

    @Test(
        "checkpointing into a regtest chain: the page lists the confirmed checkpoints, status ok, no alarm, no console error"
    )
    func statusPageWithCheckpoints() async throws {
        let chain = try RegtestChain(blockInterval: 1)
        defer { chain.stop() }
        try await chain.waitReady()
        let net = try LocalTestnet(nodes: 4)
        defer { net.shutdown() }
        let esplora = "http://127.0.0.1:\(chain.port)"
        try net.enableConsensus(validators: 4, epochLength: 40)
        try net.enableCheckpoints(esplora: esplora, interval: 10, timeout: 10)
        let flags = ["--network", "regtest", "--esplora", esplora]
        let dave = net.root.appendingPathComponent("dave").path
        #expect(try net.cli(["init", "dave", "--data-dir", dave]).status == 0)
        let address = try #require(try net.cli(["btc", "address", dave] + flags).output.split(separator: "\n").first)
        _ = try await chain.faucet(String(address), sats: 1_000_000)
        let genesis = net.root.appendingPathComponent("genesis.json").path
        let funded = try net.cli(
            ["checkpoint", "fund", "--genesis", genesis, "--from", dave, "--amount", "500000", "--write", "--wait"]
                + flags)
        try #require(funded.status == 0, "\(funded.output)")
        for i in 0..<4 { try net.start(i) }
        for i in 0..<4 { try net.waitReady(i) }
        try waitUntil(timeout: 120, "a confirmed checkpoint on node0") { confirmedCheckpoints(net, 0) >= 1 }

        let result = try check([
            "http://127.0.0.1:\(net.metricsPort(0))/status", "--min-peers", "3", "--min-checkpoints", "1",
            "--timeout", "60",
        ])
        #expect(result.status == 0, "\(result.output)\nnode0 log tail:\n\(net.log(0).suffix(1500))")
        #expect(result.output.contains("statuspage: PASS"), "\(result.output)")
    }
}
