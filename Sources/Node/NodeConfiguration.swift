import Foundation
import Gossip
import Logging
import TOMLKit

/// Everything `p2pnode run` needs, built once at start-up from defaults, the TOML
/// config file and command-line flags (flags win). Defaults are documented in
/// docs/configuration.md.
public struct NodeConfiguration: Sendable, Equatable {
    public var dataDirectory: URL
    public var chainID = "sidenode-local"
    public var listen = HostPort(host: "0.0.0.0", port: 26656)
    public var bootstrapFile: String?
    /// The genesis file; with it the node runs consensus (as a validator if its node id is listed).
    public var genesisFile: String?
    /// Where to serve Prometheus metrics (`GET /metrics`), e.g. "127.0.0.1:9464"; off when nil.
    public var metricsListen: String?
    public var logLevel: Logger.Level = .info
    /// Seconds an inbound or outbound connection may take to authenticate (inbound ones
    /// get `gossip.pressure_handshake_timeout` while many are pending).
    public var handshakeTimeout: Double {
        get { gossip.handshakeTimeout }
        set { gossip.handshakeTimeout = newValue }
    }
    /// Seconds to wait for a TCP connect.
    public var dialTimeout: Double = 3
    /// Largest application message on the wire (secure channel limit).
    public var maxMessageSize = 4 * 1024 * 1024
    /// Messages queued for one peer before further ones are dropped (backpressure).
    public var peerQueueLimit = 1_024
    /// Seconds between anti-entropy rounds (head exchange with a random peer).
    public var syncInterval: Double = 5
    public var gossip = GossipConfiguration()
    /// `gossip.outbound_address`: the local IP outbound peer connections are made from
    /// (a multi-homed host, or a loopback testnet whose links pass through a relay that
    /// tells nodes apart by address); the system chooses when nil.
    public var outboundAddress: String?
    /// `[bitcoin]`: where the node follows the checkpoint coin and broadcasts checkpoints.
    public var bitcoin = BitcoinSettings()
    /// `[state]`: stored state versions, snapshots served to new nodes, how this node joins.
    public var state = StateSettings()

    public struct StateSettings: Sendable, Equatable {
        /// A snapshot is kept every this many blocks (a multiple of 100, the interval at which
        /// the state tree is written).
        public var snapshotInterval: UInt64 = 1_000
        /// Snapshots kept for peers to download.
        public var snapshotsKept = 2
        /// State versions kept below the newest (besides snapshots).
        public var retainedHeights: UInt64 = 1_000
        /// Committed blocks (with their receipts) kept below the newest; 0 keeps them all.
        /// Never below the oldest kept snapshot, so a new node can still join by snapshot.
        public var keepBlocks: UInt64 = 0
        /// How a node with an empty data directory joins: "blocks" (replay from genesis) or
        /// "snapshot" (download a verified state snapshot, then the blocks after it).
        public var sync = "blocks"
    }

    public struct BitcoinSettings: Sendable, Equatable {
        /// "mainnet", "testnet", "signet", "mutinynet" or "regtest".
        public var network = "mutinynet"
        /// Esplora base URL; without it the node does not take part in checkpointing.
        public var esplora: String?
        /// Seconds between polls of the Bitcoin tip and the checkpoint coin.
        public var pollInterval: Double = 5
        /// Confirmation target (blocks) for the fee estimate.
        public var feeTarget = 2
        /// The operator's fee rate (sat/vB), instead of the estimate; clamped to the genesis bounds.
        public var feeRate: Double?
        /// Blocks deep a checkpoint must be before the node moves on to the coin it
        /// created (nil: 1 on regtest, 3 elsewhere). A reorg that removes it is followed back.
        public var confirmations: Int?

        public var confirmationDepth: Int { confirmations ?? (network == "regtest" ? 1 : 3) }
    }

    public init(dataDirectory: URL) { self.dataDirectory = dataDirectory }

    public var adminSocketPath: String { dataDirectory.appendingPathComponent("admin.sock").path }

    static let topLevelKeys: Set<String> = [
        "chain_id", "listen", "bootstrap", "log_level", "handshake_timeout", "dial_timeout", "max_message_size",
        "peer_queue_limit", "sync_interval", "genesis", "metrics_listen", "gossip", "bitcoin", "state",
    ]
    static let stateKeys: Set<String> = [
        "snapshot_interval", "snapshots_kept", "retained_heights", "sync", "keep_blocks",
    ]
    static let bitcoinKeys: Set<String> = [
        "network", "esplora", "poll_interval", "fee_target", "fee_rate", "confirmations",
    ]
    static let gossipKeys: Set<String> = [
        "outbound_target", "max_inbound", "max_connections_per_ip", "seen_ttl", "seen_capacity", "ban_threshold",
        "ban_duration", "invalid_message_penalty", "malformed_penalty", "messages_per_second", "message_burst",
        "addresses_per_second", "address_burst", "ping_interval", "peer_timeout", "reconnect_base", "reconnect_max",
        "address_reply_size", "address_refresh_interval", "test_messages",
        "max_pending_handshakes", "max_pending_per_host", "max_pending_per_group", "pressure_handshake_timeout",
        "max_send_queue_bytes",
        "allow_local_addresses", "outbound_address",
    ]

    /// Refuses what the TOML parser underneath (toml++ in TOMLKit) would abort the process on
    /// instead of reporting: a table header whose key starts with a character no key may
    /// start with (`[é]`, found by fuzzing). Raw control characters other than tab and line
    /// breaks are not TOML anywhere, so they are refused too.
    static func screen(toml text: String, source: String) throws {
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if let bad = line.unicodeScalars.first(where: {
                ($0.value < 0x20 && $0 != "\t" && $0 != "\r") || $0.value == 0x7F
            }) {
                throw ConfigError(
                    "\(source):\(index + 1): invalid TOML: control character U+\(String(bad.value, radix: 16, uppercase: true))"
                )
            }
            // Mirror toml++'s table-header scan: `[`, optional contiguous `[`, spaces, then
            // a key must start (or `]`, which it reports as an error itself).
            var rest = line.unicodeScalars.drop { $0 == " " || $0 == "\t" }
            guard rest.first == "[" else { continue }
            rest = rest.dropFirst()
            let spaced = rest.first == " " || rest.first == "\t"
            rest = rest.drop { $0 == " " || $0 == "\t" }
            if rest.first == "[" {
                if spaced { continue }  // "[ [": toml++ refuses it cleanly
                rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" }
            }
            // A header cut off by the end of the line ("[" alone) reaches the same assertion.
            guard let next = rest.first else {
                throw ConfigError("\(source):\(index + 1): invalid TOML: a table header without a name")
            }
            let keyStart =
                (next.isASCII && (next.properties.isAlphabetic || ("0"..."9").contains(next)))
                || "_-\"']".unicodeScalars.contains(next)
            if !keyStart {
                throw ConfigError("\(source):\(index + 1): invalid TOML: a table name cannot start with '\(next)'")
            }
        }
    }

    /// Applies a TOML document. Unknown keys and wrong types are errors that name the key,
    /// so a typo never silently falls back to a default.
    public mutating func apply(toml text: String, source: String) throws {
        try Self.screen(toml: text, source: source)
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(
                "\(source):\(error.source.begin.line):\(error.source.begin.column): invalid TOML: \(error.description)")
        }
        for key in table.keys where !Self.topLevelKeys.contains(key) {
            throw ConfigError("\(source): unknown key '\(key)'")
        }
        func string(_ key: String) throws -> String? {
            guard let value = table[key] else { return nil }
            guard let s = value.string else { throw ConfigError("\(source): '\(key)' must be a string") }
            return s
        }
        func number(_ t: TOMLTable, _ key: String, _ prefix: String = "") throws -> Double? {
            guard let value = t[key] else { return nil }
            guard let d = value.int.map(Double.init) ?? value.double else {
                throw ConfigError("\(source): '\(prefix)\(key)' must be a number")
            }
            // Durations, rates and intervals: a value past a billion (30 years of seconds)
            // is a mistake, and would overflow the millisecond timers it feeds.
            guard d.isFinite, d >= 0, d <= 1e9 else {
                throw ConfigError("\(source): '\(prefix)\(key)' must be between 0 and 1e9, got \(d)")
            }
            return d
        }
        func integer(_ t: TOMLTable, _ key: String, _ prefix: String = "", min: Int = 0) throws -> Int? {
            guard let value = t[key] else { return nil }
            guard let i = value.int else { throw ConfigError("\(source): '\(prefix)\(key)' must be an integer") }
            guard i >= min else { throw ConfigError("\(source): '\(prefix)\(key)' must be ≥ \(min), got \(i)") }
            // Counts and sizes past a billion are mistakes, and sums of them must not overflow.
            guard i <= 1_000_000_000 else {
                throw ConfigError("\(source): '\(prefix)\(key)' must be ≤ 1000000000, got \(i)")
            }
            return i
        }
        if let v = try string("chain_id") { chainID = v }
        if let v = try string("listen") {
            do { listen = try HostPort(parsing: v) } catch { throw ConfigError("\(source): listen: \(error)") }
        }
        if let v = try string("bootstrap") { bootstrapFile = v }
        if let v = try string("genesis") { genesisFile = v }
        if let v = try string("metrics_listen") {
            do { _ = try HostPort(parsing: v) } catch { throw ConfigError("\(source): metrics_listen: \(error)") }
            metricsListen = v
        }
        if let v = try string("log_level") {
            guard let level = Logger.Level(rawValue: v) else {
                throw ConfigError(
                    "\(source): log_level must be one of trace, debug, info, notice, warning, error, critical")
            }
            logLevel = level
        }
        if let v = try number(table, "handshake_timeout") { handshakeTimeout = v }
        if let v = try number(table, "dial_timeout") { dialTimeout = v }
        if let v = try integer(table, "max_message_size", min: 1024) {
            guard v <= 64 << 20 else { throw ConfigError("\(source): 'max_message_size' must be ≤ 64 MiB, got \(v)") }
            maxMessageSize = v
            // The gossip payload limit follows the wire limit, less the message header.
            gossip.maxPayload = v - 64
        }
        if let v = try integer(table, "peer_queue_limit", min: 1) { peerQueueLimit = v }
        if let v = try number(table, "sync_interval") { syncInterval = v }
        if let value = table["gossip"] {
            guard let g = value.table else { throw ConfigError("\(source): [gossip] must be a table") }
            for key in g.keys where !Self.gossipKeys.contains(key) {
                throw ConfigError("\(source): unknown key 'gossip.\(key)'")
            }
            let p = "gossip."
            if let v = try integer(g, "outbound_target", p) { gossip.outboundTarget = v }
            if let v = try integer(g, "max_inbound", p) { gossip.maxInbound = v }
            if let v = try integer(g, "max_connections_per_ip", p, min: 1) { gossip.maxConnectionsPerIP = v }
            if let v = try number(g, "seen_ttl", p) { gossip.seenTTL = v }
            if let v = try integer(g, "seen_capacity", p, min: 1) { gossip.seenCapacity = v }
            if let v = try integer(g, "ban_threshold", p, min: 1) { gossip.banThreshold = v }
            if let v = try number(g, "ban_duration", p) { gossip.banDuration = v }
            if let v = try integer(g, "invalid_message_penalty", p) { gossip.invalidMessagePenalty = v }
            if let v = try integer(g, "malformed_penalty", p) { gossip.malformedPenalty = v }
            if let v = try number(g, "messages_per_second", p) { gossip.messagesPerSecond = v }
            if let v = try number(g, "message_burst", p) { gossip.messageBurst = v }
            if let v = try number(g, "addresses_per_second", p) { gossip.addressesPerSecond = v }
            if let v = try number(g, "address_burst", p) { gossip.addressBurst = v }
            if let v = try number(g, "ping_interval", p) { gossip.pingInterval = v }
            if let v = try number(g, "peer_timeout", p) { gossip.peerTimeout = v }
            if let v = try number(g, "reconnect_base", p) { gossip.reconnectBase = v }
            if let v = try number(g, "reconnect_max", p) { gossip.reconnectMax = v }
            if let v = try integer(g, "address_reply_size", p) { gossip.addressReplySize = v }
            if let v = try number(g, "address_refresh_interval", p) { gossip.addressRefreshInterval = v }
            if let v = try integer(g, "max_pending_handshakes", p, min: 1) { gossip.maxPendingHandshakes = v }
            if let v = try integer(g, "max_pending_per_host", p, min: 1) { gossip.maxPendingPerHost = v }
            if let v = try integer(g, "max_pending_per_group", p, min: 1) { gossip.maxPendingPerGroup = v }
            if let v = try number(g, "pressure_handshake_timeout", p) { gossip.pressureHandshakeTimeout = v }
            if let v = try integer(g, "max_send_queue_bytes", p, min: 1 << 20) { gossip.maxSendQueueBytes = v }
            if let value = g["allow_local_addresses"] {
                guard let flag = value.bool else {
                    throw ConfigError("\(source): 'gossip.allow_local_addresses' must be true or false")
                }
                gossip.allowLocalAddresses = flag
            }
            if let v = g["outbound_address"] {
                guard let text = v.string, let ip = IPAddress(text) else {
                    throw ConfigError("\(source): 'gossip.outbound_address' must be an IP address such as \"10.0.0.5\"")
                }
                outboundAddress = ip.description
            }
            if let v = g["test_messages"] {
                guard let flag = v.bool else {
                    throw ConfigError("\(source): 'gossip.test_messages' must be true or false")
                }
                gossip.testMessages = flag
            }
        }
        if let value = table["bitcoin"] {
            guard let b = value.table else { throw ConfigError("\(source): [bitcoin] must be a table") }
            for key in b.keys where !Self.bitcoinKeys.contains(key) {
                throw ConfigError("\(source): unknown key 'bitcoin.\(key)'")
            }
            if let v = b["network"] {
                guard let name = v.string, ["mainnet", "testnet", "signet", "mutinynet", "regtest"].contains(name)
                else {
                    throw ConfigError(
                        "\(source): 'bitcoin.network' must be mainnet, testnet, signet, mutinynet or regtest")
                }
                bitcoin.network = name
            }
            if let v = b["esplora"] {
                guard let url = v.string, let parsed = URL(string: url),
                    ["http", "https"].contains(parsed.scheme ?? "")
                else { throw ConfigError("\(source): 'bitcoin.esplora' must be an http(s) URL") }
                bitcoin.esplora = url
            }
            if let v = try number(b, "poll_interval", "bitcoin.") { bitcoin.pollInterval = v }
            if let v = try integer(b, "fee_target", "bitcoin.", min: 1) { bitcoin.feeTarget = v }
            if let v = try number(b, "fee_rate", "bitcoin.") { bitcoin.feeRate = v }
            if let v = try integer(b, "confirmations", "bitcoin.", min: 1) {
                guard v <= 100 else { throw ConfigError("\(source): 'bitcoin.confirmations' must be 1…100") }
                bitcoin.confirmations = v
            }
        }
        if let value = table["state"] {
            guard let t = value.table else { throw ConfigError("\(source): [state] must be a table") }
            for key in t.keys where !Self.stateKeys.contains(key) {
                throw ConfigError("\(source): unknown key 'state.\(key)'")
            }
            if let v = try integer(t, "snapshot_interval", "state.", min: 100) {
                guard v % 100 == 0 else {
                    throw ConfigError("\(source): 'state.snapshot_interval' must be a multiple of 100, got \(v)")
                }
                state.snapshotInterval = UInt64(v)
            }
            if let v = try integer(t, "snapshots_kept", "state.", min: 1) {
                guard v <= 100 else { throw ConfigError("\(source): 'state.snapshots_kept' must be 1…100") }
                state.snapshotsKept = v
            }
            if let v = try integer(t, "retained_heights", "state.", min: 100) { state.retainedHeights = UInt64(v) }
            if let v = try integer(t, "keep_blocks", "state.", min: 0) {
                guard v == 0 || v >= 1_000 else {
                    throw ConfigError(
                        "\(source): 'state.keep_blocks' must be 0 (keep every block) or at least 1000, got \(v)")
                }
                state.keepBlocks = UInt64(v)
            }
            if let v = t["sync"] {
                guard let mode = v.string, ["blocks", "snapshot"].contains(mode) else {
                    throw ConfigError("\(source): 'state.sync' must be \"blocks\" or \"snapshot\"")
                }
                state.sync = mode
            }
        }
        try validate()
    }

    public func validate() throws {
        guard !chainID.isEmpty, chainID.utf8.count <= 64 else { throw ConfigError("chain_id must be 1…64 bytes") }
        guard handshakeTimeout > 0, dialTimeout > 0, syncInterval > 0 else {
            throw ConfigError("timeouts and intervals must be positive")
        }
        guard bitcoin.pollInterval > 0, (bitcoin.feeRate ?? 1) > 0 else {
            throw ConfigError("bitcoin.poll_interval and bitcoin.fee_rate must be positive")
        }
        guard gossip.peerTimeout > gossip.pingInterval else {
            throw ConfigError("gossip.peer_timeout must exceed gossip.ping_interval")
        }
        guard gossip.maxPayload < maxMessageSize else {
            throw ConfigError("max_message_size must leave room for the gossip payload")
        }
    }
}

public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
