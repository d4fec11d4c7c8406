import ArgumentParser
import Foundation
import Gossip
import Logging
import Node
import ServiceLifecycle

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a node: join the mesh, gossip, serve the admin socket (the default subcommand).",
        discussion: """
            Keys are read from the data directory and created there on first run. The node \
            listens for peers on --listen, dials the peers in the bootstrap file and finds \
            the rest through peer exchange. Operate it through DIR/admin.sock (see \
            `p2pnode admin --help`). SIGINT or SIGTERM stop it cleanly, saving the address \
            book and ban list. Settings: defaults < --config FILE < flags (docs/configuration.md).
            """
    )

    @Option(name: .customLong("data-dir"), help: "Data directory (default ~/.sidenode/node).")
    var dataDir: String?

    @Option(help: "Address to listen on for peers, HOST:PORT (default 0.0.0.0:26656).")
    var listen: String?

    @Option(help: "Bootstrap peers file: NODEID@HOST:PORT per line (default: from the config, else none).")
    var bootstrap: String?

    @Option(help: "TOML configuration file.")
    var config: String?

    @Option(help: "Genesis file; with it the node runs consensus (see `p2pnode genesis`).")
    var genesis: String?

    @Option(name: .customLong("chain-id"), help: "Chain id; nodes of other chains fail the handshake.")
    var chainID: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Option(
        help: ArgumentHelp(
            "How a node with an empty data directory joins: blocks (replay from genesis) or snapshot.",
            discussion:
                "snapshot downloads a state snapshot from peers, verified chunk by chunk against a root that the validators certified (proved from the genesis), then catches up the blocks after it. A download stopped halfway resumes."
        ))
    var sync: String?

    func run() async throws {
        let directory = URL(
            fileURLWithPath: dataDir ?? KeyStore.defaultDirectory(name: "node").path, isDirectory: true)
        var configuration = NodeConfiguration(dataDirectory: directory)
        do {
            if let config {
                let text = try String(contentsOfFile: config, encoding: .utf8)
                try configuration.apply(toml: text, source: config)
            }
            if let listen { configuration.listen = try HostPort(parsing: listen) }
            if let bootstrap { configuration.bootstrapFile = bootstrap }
            if let genesis { configuration.genesisFile = genesis }
            if let chainID { configuration.chainID = chainID }
            if let sync {
                guard ["blocks", "snapshot"].contains(sync) else {
                    throw ValidationError("--sync must be blocks or snapshot")
                }
                configuration.state.sync = sync
            }
            if let logLevel {
                guard let level = Logger.Level(rawValue: logLevel) else {
                    throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical")
                }
                configuration.logLevel = level
            }
            try configuration.validate()
        } catch let error as ValidationError {
            throw error
        } catch {
            throw CLIError("configuration: \(error)")
        }

        let level = configuration.logLevel
        // Under systemd, priority-prefixed lines let `journalctl -p warning` filter by level.
        let journal = JournalLogHandler.stderrIsJournal()
        LoggingSystem.bootstrap { label in
            if journal {
                var handler = JournalLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "sidenode")

        let store = KeyStore(directory: directory)
        let keys: NodeKeys
        do {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent(KeyStore.identityFile).path) {
                keys = try store.load()
            } else {
                keys = try store.create()
                logger.notice(
                    "created new node keys", metadata: ["dir": "\(directory.path)", "node_id": "\(keys.nodeID)"])
            }
        } catch {
            throw CLIError("\(error)")
        }

        var peers: [NodeAddress] = []
        if let file = configuration.bootstrapFile {
            do {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                peers = try parseBootstrapPeers(text, source: file)
            } catch let error as AddressError {
                throw CLIError(error.description)
            } catch {
                throw CLIError("cannot read bootstrap file \(file): \(error.localizedDescription)")
            }
        }

        let runtime: NodeRuntime
        do {
            runtime = try NodeRuntime(configuration: configuration, keys: keys, bootstrap: peers, logger: logger)
        } catch {
            throw CLIError("\(error)")
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: runtime, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch {
            throw CLIError("\(error)")
        }
    }
}
