import Foundation
import Gossip
import Node
import NodeCrypto
import Noise

#if canImport(Glibc)
    import Glibc
#endif

/// Starts real `p2pnode` processes on loopback for multi-process tests.
final class LocalTestnet: @unchecked Sendable {
    // Mutated only from the owning test's task.
    let root: URL
    let basePort: Int
    let nodeCount: Int
    var processes: [Int: Process] = [:]
    let binary: URL

    /// Writes a genesis file naming the first `validators` nodes and adds it to every
    /// node's configuration.
    func enableConsensus(validators: Int, balances: [String: UInt64] = [:], epochLength: UInt64 = 1_000) throws {
        var entries: [Genesis.ValidatorEntry] = []
        for i in 0..<validators {
            let keys = try KeyStore(directory: dataDir(i)).load()
            entries.append(.init(node_id: keys.nodeID, power: 1, bitcoin_xonly: keys.bitcoin.xOnlyPublicKey.hex))
        }
        var genesis = Genesis(
            chainID: "sidenode-it", genesisTime: 0, epochLength: epochLength, validators: entries, balances: balances)
        genesis.consensus.base_timeout = 1
        genesis.consensus.min_block_interval = 0.1
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(genesis).write(to: root.appendingPathComponent("genesis.json"))
        for i in 0..<nodeCount {
            let config = try String(contentsOf: configFile(i), encoding: .utf8)
            if !config.contains("genesis =") {
                let path = root.appendingPathComponent("genesis.json").path
                try config.replacingOccurrences(
                    of: "sync_interval = 1\n", with: "sync_interval = 1\ngenesis = \"\(path)\"\n"
                )
                .write(to: configFile(i), atomically: true, encoding: .utf8)
            }
        }
    }

    /// Checkpointing on: the genesis gets the cadence and timeout, every node's config the
    /// esplora server. Fund the coin afterwards (`checkpoint fund --write` into the genesis).
    func enableCheckpoints(esplora: String, interval: UInt64, timeout: Double) throws {
        let url = root.appendingPathComponent("genesis.json")
        var genesis = try Genesis.load(Data(contentsOf: url), source: url.path)
        genesis.checkpoint.interval_blocks = interval
        genesis.checkpoint.timeout_seconds = timeout
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(genesis).write(to: url)
        for i in 0..<nodeCount {
            let config = try String(contentsOf: configFile(i), encoding: .utf8)
            try (config + "\n[bitcoin]\nnetwork = \"regtest\"\nesplora = \"\(esplora)\"\npoll_interval = 0.5\n")
                .write(to: configFile(i), atomically: true, encoding: .utf8)
        }
    }

    /// SIGKILL: no graceful shutdown, no flush beyond what was already synced.
    func kill9(_ i: Int) {
        guard let process = processes.removeValue(forKey: i) else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    init(nodes: Int, basePort: Int? = nil) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "sidenode-it-\(UUID().uuidString.prefix(8))")
        self.basePort = basePort ?? TestPorts.block(nodes)
        nodeCount = nodes
        binary = try Self.findBinary()
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for i in 0..<nodes {
            try KeyStore(directory: dataDir(i)).create()
            let config = """
                chain_id = "sidenode-it"
                listen = "127.0.0.1:\(self.basePort + i)"
                log_level = "info"
                metrics_listen = "127.0.0.1:\(metricsPort(i))"
                sync_interval = 1
                [gossip]
                test_messages = true
                max_connections_per_ip = 64
                max_pending_per_host = 64
                allow_local_addresses = true
                address_refresh_interval = 2
                reconnect_max = 5
                """
            try config.write(to: configFile(i), atomically: true, encoding: .utf8)
        }
        let node0 = try KeyStore(directory: dataDir(0)).load()
        try "# node0 only\n\(node0.nodeID)@127.0.0.1:\(self.basePort)\n".write(
            to: bootstrapFile, atomically: true, encoding: .utf8)
    }

    /// The p2pnode built beside the test bundle (swift build --build-tests builds both).
    static func findBinary(_ name: String = "p2pnode") throws -> URL {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [
            besideTests.appendingPathComponent(name),
            besideTests.deletingLastPathComponent().appendingPathComponent(name),
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent(".build/debug/\(name)"),
        ]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw TestnetError("\(name) binary not found beside the tests; run `swift build --build-tests` first")
        }
        return found
    }

    var bootstrapFile: URL { root.appendingPathComponent("bootstrap-peers.txt") }
    func dataDir(_ i: Int) -> URL { root.appendingPathComponent("node\(i)") }
    func configFile(_ i: Int) -> URL { root.appendingPathComponent("node\(i).toml") }
    func admin(_ i: Int) -> AdminClient {
        AdminClient(socketPath: dataDir(i).appendingPathComponent("admin.sock").path)
    }
    func port(_ i: Int) -> Int { basePort + i }
    /// Below Linux's ephemeral range (32768–60999), where an outgoing connection of
    /// another test could hold the port.
    func metricsPort(_ i: Int) -> Int { basePort - 10_000 + i }

    /// Starts node `i`; with `checkpointFault`, as the test build that misbehaves (`p2pnode-faulty`).
    func start(
        _ i: Int, bootstrap: Bool = true, environment: [String: String] = [:], checkpointFault: String? = nil
    ) throws {
        let process = Process()
        process.executableURL = binary
        var environment = environment
        if let checkpointFault {
            process.executableURL = try Self.findBinary("p2pnode-faulty")
            environment["SIDENODE_TEST_CHECKPOINT_FAULT"] = checkpointFault
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        // `run` is the default subcommand: start exactly as a user would.
        var arguments = ["--data-dir", dataDir(i).path, "--config", configFile(i).path]
        if bootstrap { arguments += ["--bootstrap", bootstrapFile.path] }
        process.arguments = arguments
        let log = root.appendingPathComponent("node\(i).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes[i] = process
    }

    /// Waits until the node answers on its admin socket.
    func waitReady(_ i: Int, timeout: Double = 20) throws {
        try waitUntil(timeout: timeout, "node\(i) admin socket") {
            // A node that exited will not answer: say why at once.
            if let process = processes[i], !process.isRunning {
                throw TestnetError(
                    "node\(i) exited: \(log(i).split(separator: "\n").suffix(5).joined(separator: "\n"))")
            }
            return (try? self.admin(i).call("getinfo")) != nil
        }
    }

    /// Runs a p2pnode subcommand to completion; returns its exit status and output.
    func cli(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    func stop(_ i: Int) {
        guard let process = processes.removeValue(forKey: i) else { return }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    func log(_ i: Int) -> String {
        (try? String(contentsOf: root.appendingPathComponent("node\(i).log"), encoding: .utf8)) ?? ""
    }

    /// Stops every node; keeps the directory (and prints where) when SIDENODE_KEEP_TESTNET is set.
    func shutdown() {
        for i in Array(processes.keys) { stop(i) }
        if ProcessInfo.processInfo.environment["SIDENODE_KEEP_TESTNET"] != nil {
            print("testnet kept at \(root.path)")
        } else {
            try? FileManager.default.removeItem(at: root)
        }
    }
}

struct TestnetError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func waitUntil(timeout: Double, _ what: String, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(100_000)
    }
    throw TestnetError("timed out after \(timeout) s waiting for \(what)")
}

/// An outside peer with identity `identity`: a TCP connection to `port` on which the
/// Noise handshake has completed (written from docs/wire.md, as a stranger would).
func outsidePeer(
    port: Int, identity: Ed25519.PrivateKey, from source: String? = nil
) throws -> (client: RawTCPClient, channel: SecureChannel) {
    let client = try RawTCPClient(port: port, from: source)
    var channel = SecureChannel(
        role: .initiator(expectedPeer: nil),
        configuration: SecureChannelConfiguration(chainID: "sidenode-it", identity: identity))
    for case .write(let bytes) in channel.start() { client.send(bytes) }
    while !channel.isEstablished {
        guard let bytes = client.receive(), !bytes.isEmpty else {
            throw TestnetError("the node closed the connection during the handshake")
        }
        for case .write(let out) in channel.receive(bytes) { client.send(out) }
    }
    // The protocol starts with hello; without it the node discourages the peer at once.
    client.send(try channel.send(GossipMessage.hello(listenPort: 0, agent: "outside-peer").encoded()))
    return (client, channel)
}

/// A minimal blocking TCP client, used to play a misbehaving peer.
final class RawTCPClient {
    let fd: Int32

    /// `from`: the loopback source address (127.x.y.z), so one test can be many hosts.
    init(port: Int, from source: String? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestnetError("socket: errno \(errno)") }
        if let source {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            // On a throw after `fd` is set, deinit closes it.
            guard bound == 0 else { throw TestnetError("bind to \(source) failed") }
        }
        let rc = TestPorts.withLoopback(port) { connect(fd, $0, $1) }
        guard rc == 0 else { throw TestnetError("connect to \(port) failed") }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a node that closed on us must fail the send, not SIGPIPE the tests.
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Bytes available within the timeout; empty means the peer closed the connection.
    func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        // A node that closes with our bytes still unread resets the connection: closed too.
        if n < 0 { return errno == ECONNRESET ? [] : nil }
        return Array(buffer[0..<n])
    }

    /// Whether the peer closes the connection within a few reads (whatever it sends first).
    func closesSoon() -> Bool {
        for _ in 0..<50 {
            guard let bytes = receive() else { return false }
            if bytes.isEmpty { return true }
        }
        return false
    }

    deinit { close(fd) }
}
