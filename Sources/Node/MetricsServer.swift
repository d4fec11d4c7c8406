import Gossip
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

/// The node's Prometheus metrics, and a minimal HTTP endpoint serving them at
/// `GET /metrics` on `metrics_listen`, with the status page at `GET /status` and its
/// data at `GET /status.json`.
public final class NodeMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let round: Gauge
    let epoch: Gauge
    let committedHeight: Gauge
    let commits: Counter
    let timeoutsByTimer: Counter
    let timeoutsByAmplification: Counter
    let timeoutCertificates: Counter
    let roundDuration: DurationHistogram
    let commitLatency: DurationHistogram
    let peers: Gauge
    let dagTransactions: Gauge
    let dagPruned: Counter
    let failedTransactions: Counter
    let syncing: Gauge
    let syncTarget: Gauge
    let catchUpBlocks: Counter
    let bitcoinHeight: Gauge
    let checkpoints: Counter
    let checkpointAlarm: Gauge
    let checkpointsLeft: Gauge
    let checkpointReorgs: Counter

    /// Consensus misbehaviour seen, by kind (`forged_message`, `equivocation`).
    func consensusEvidence(kind: String) -> Counter {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "sidenode", subsystem: "consensus", metricName: "evidence", unitName: "total",
                helpText: "Forged consensus messages and equivocations seen, by kind"),
            labels: [("kind", kind)])
    }

    public init() {
        func name(_ subsystem: String, _ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(
                namespace: "sidenode", subsystem: subsystem, metricName: metric, unitName: unit, helpText: help)
        }
        let rounds: [Duration] = [
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2),
            .seconds(5), .seconds(10),
        ]
        round = registry.makeGauge(descriptor: name("consensus", "round", "", "Current consensus round"))
        epoch = registry.makeGauge(descriptor: name("consensus", "epoch", "", "Current epoch"))
        committedHeight = registry.makeGauge(
            descriptor: name("consensus", "committed_height", "", "Height of the last committed block"))
        commits = registry.makeCounter(descriptor: name("consensus", "commits", "total", "Blocks committed"))
        let timeouts = name("consensus", "timeouts", "total", "Round timeouts this validator signed, by reason")
        timeoutsByTimer = registry.makeCounter(descriptor: timeouts, labels: [("reason", "local_timer")])
        timeoutsByAmplification = registry.makeCounter(descriptor: timeouts, labels: [("reason", "f_plus_one")])
        timeoutCertificates = registry.makeCounter(
            descriptor: name("consensus", "timeout_certificates", "total", "Rounds ended by a timeout certificate"))
        roundDuration = registry.makeDurationHistogram(
            descriptor: name("consensus", "round_duration", "seconds", "Time spent in each round"), buckets: rounds)
        commitLatency = registry.makeDurationHistogram(
            descriptor: name(
                "consensus", "commit_latency", "seconds", "From receiving a block's proposal to committing it"),
            buckets: rounds)
        peers = registry.makeGauge(descriptor: name("p2p", "peers", "", "Connected peers"))
        dagTransactions = registry.makeGauge(
            descriptor: name("ledger", "dag_transactions", "", "Transactions in the BFT-CRDT DAG"))
        dagPruned = registry.makeCounter(
            descriptor: name(
                "ledger", "dag_pruned", "total", "Settled transactions pruned from the DAG and its store"))
        failedTransactions = registry.makeCounter(
            descriptor: name("ledger", "failed_transactions", "total", "Committed transactions that failed execution"))
        bitcoinHeight = registry.makeGauge(
            descriptor: name("checkpoint", "bitcoin_height", "", "Bitcoin tip height seen through esplora"))
        checkpoints = registry.makeCounter(
            descriptor: name("checkpoint", "confirmed", "total", "Checkpoints confirmed on Bitcoin and adopted"))
        checkpointAlarm = registry.makeGauge(
            descriptor: name(
                "checkpoint", "coin_spent_against_rules", "",
                "1 when a buried spend of the checkpoint coin breaks the checkpoint rules (checkpointing stopped)"))
        checkpointsLeft = registry.makeGauge(
            descriptor: name(
                "checkpoint", "fees_left", "", "Checkpoints the coin can still pay for at the current fee rate"))
        checkpointReorgs = registry.makeCounter(
            descriptor: name("checkpoint", "orphaned", "total", "Adopted checkpoints undone by a Bitcoin reorg"))
        syncing = registry.makeGauge(descriptor: name("sync", "syncing", "", "1 while catching up by ranges"))
        syncTarget = registry.makeGauge(
            descriptor: name("sync", "target_height", "", "Highest committed height a neighbour reported"))
        catchUpBlocks = registry.makeCounter(
            descriptor: name("sync", "catch_up_blocks", "total", "Committed blocks applied from catch-up ranges"))
        for kind in ["forged_message", "equivocation"] { _ = consensusEvidence(kind: kind) }
    }
}

struct MetricsServer: Sendable {
    let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
    let metrics: NodeMetrics
    let logger: Logger
    /// The status page's data (NodeRuntime.statusJSON); nil serves no status page.
    let status: (@Sendable () async -> String)?

    static func bind(
        _ endpoint: String, metrics: NodeMetrics, logger: Logger, status: (@Sendable () async -> String)? = nil
    ) async throws -> MetricsServer {
        let parts = endpoint.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else {
            throw ConfigError("metrics_listen must be HOST:PORT, got \(endpoint)")
        }
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: String(parts[0]), port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return MetricsServer(server: server, metrics: metrics, logger: logger, status: status)
    }

    func close() { server.channel.close(promise: nil) }

    /// Connections served at once; more are closed on arrival.
    static let maxConnections = 32

    func run() async {
        let active = ConnectionCount()
        do {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        // A bounded number at once: the endpoint must not become a way to
                        // hold the node's memory or descriptors.
                        guard active.value.add(1, ordering: .relaxed).newValue <= Self.maxConnections else {
                            active.value.subtract(1, ordering: .relaxed)
                            try? await connection.channel.close()
                            continue
                        }
                        group.addTask {
                            await serve(connection)
                            active.value.subtract(1, ordering: .relaxed)
                        }
                    }
                }
            }
        } catch {
            logger.debug("metrics endpoint closed", metadata: ["error": "\(error)"])
        }
    }

    /// Whether a request's `Host` names this server by address (or as localhost), not by
    /// a domain name: a page on another site that rebinds its name to this address must
    /// not read the status page's peer list with the operator's browser.
    static func hostIsAddress(_ host: String?) -> Bool {
        guard var name = host?.lowercased(), !name.isEmpty else { return false }
        if name.hasPrefix("[") {
            guard let end = name.firstIndex(of: "]") else { return false }
            name = String(name[name.index(after: name.startIndex)..<end])
        } else if let colon = name.lastIndex(of: ":") {
            name = String(name[..<colon])
        }
        return name == "localhost" || IPAddress(name) != nil
    }

    private func response(for uri: String, host: String?) async -> (HTTPResponseStatus, String, String) {
        let path =
            uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let misdirected = (HTTPResponseStatus.misdirectedRequest, "text/plain", "use the node's address as the host\n")
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4", metrics.registry.emitToString())
        case "/status", "/status/", "/":
            guard status != nil else { break }
            guard Self.hostIsAddress(host) else { return misdirected }
            return (.ok, "text/html; charset=utf-8", StatusPage.html)
        case "/status.json":
            guard let status else { break }
            guard Self.hostIsAddress(host) else { return misdirected }
            return (.ok, "application/json", await status())
        default:
            break
        }
        return (.notFound, "text/plain", "not found; try /metrics or /status\n")
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var path = ""
                var host: String?
                for try await part in inbound {
                    switch part {
                    case .head(let head):
                        path = head.uri
                        host = head.headers["Host"].first
                    case .body: break
                    case .end:
                        let (status, contentType, body) = await response(for: path, host: host)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: contentType)
                        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                        headers.add(name: "Cache-Control", value: "no-store")
                        // The page runs only its own script and fetches only its own origin.
                        headers.add(
                            name: "Content-Security-Policy",
                            value: "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
                                + "connect-src 'self'; img-src 'self' data:")
                        headers.add(name: "X-Content-Type-Options", value: "nosniff")
                        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
                        try await outbound.write(.head(head))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
                        try await outbound.write(.end(nil))
                    }
                }
            }
        } catch {
            logger.debug("metrics connection ended", metadata: ["error": "\(error)"])
        }
    }
}

/// Connections the metrics endpoint is serving.
private final class ConnectionCount: Sendable {
    let value = Atomic<Int>(0)
}
