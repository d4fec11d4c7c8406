import Foundation
import Gossip
import Node
import NodeCrypto
import Testing

@Suite("Node configuration (TOML)")
struct ConfigurationTests {
    func config() -> NodeConfiguration { NodeConfiguration(dataDirectory: URL(fileURLWithPath: "/tmp/x")) }

    @Test func appliesEveryDocumentedSetting() throws {
        var c = config()
        try c.apply(
            toml: """
                chain_id = "testnet-7"
                listen = "127.0.0.1:4000"
                bootstrap = "peers.txt"
                log_level = "debug"
                handshake_timeout = 5
                dial_timeout = 1.5
                max_message_size = 1048576
                peer_queue_limit = 64
                [gossip]
                outbound_target = 4
                max_inbound = 10
                max_connections_per_ip = 50
                seen_ttl = 60
                ban_duration = 3600
                ping_interval = 5
                peer_timeout = 15
                address_refresh_interval = 2
                test_messages = true
                [bitcoin]
                network = "regtest"
                esplora = "http://127.0.0.1:3002"
                poll_interval = 0.5
                fee_target = 6
                fee_rate = 2.5
                confirmations = 2
                [state]
                snapshot_interval = 500
                snapshots_kept = 3
                retained_heights = 200
                sync = "snapshot"
                """, source: "node.toml")
        #expect(c.state.snapshotInterval == 500 && c.state.snapshotsKept == 3 && c.state.retainedHeights == 200)
        #expect(c.state.sync == "snapshot" && config().state.sync == "blocks")
        for bad in [
            "[state]\nsnapshot_interval = 150", "[state]\nsnapshots_kept = 0", "[state]\nsync = \"fast\"",
            "[state]\nretained_heights = 5", "[state]\nprune = 1", "state = 1",
        ] {
            var d = config()
            #expect(throws: ConfigError.self, "\(bad)") { try d.apply(toml: bad, source: "node.toml") }
        }
        #expect(c.gossip.testMessages && config().gossip.testMessages == false, "off unless turned on")
        #expect(c.bitcoin.confirmationDepth == 2 && config().bitcoin.confirmationDepth == 3)
        #expect(c.chainID == "testnet-7")
        #expect(c.listen == HostPort(host: "127.0.0.1", port: 4000))
        #expect(c.bootstrapFile == "peers.txt")
        #expect(c.logLevel == .debug)
        #expect(c.handshakeTimeout == 5 && c.dialTimeout == 1.5)
        #expect(c.maxMessageSize == 1_048_576 && c.gossip.maxPayload == 1_048_576 - 64)
        #expect(c.peerQueueLimit == 64)
        #expect(c.gossip.outboundTarget == 4 && c.gossip.maxInbound == 10 && c.gossip.maxConnectionsPerIP == 50)
        #expect(c.gossip.seenTTL == 60 && c.gossip.banDuration == 3600 && c.gossip.addressRefreshInterval == 2)
        #expect(c.gossip.pingInterval == 5 && c.gossip.peerTimeout == 15)
        #expect(c.bitcoin.network == "regtest" && c.bitcoin.esplora == "http://127.0.0.1:3002")
        #expect(c.bitcoin.pollInterval == 0.5 && c.bitcoin.feeTarget == 6 && c.bitcoin.feeRate == 2.5)
    }

    @Test(
        "bad configs get an error that names the problem",
        arguments: [
            ("chain_idd = \"x\"", "unknown key 'chain_idd'"),
            ("[gossip]\noutbound = 3", "unknown key 'gossip.outbound'"),
            ("listen = 5", "'listen' must be a string"),
            ("listen = \"nowhere\"", "listen"),
            ("log_level = \"loud\"", "log_level"),
            ("[gossip]\nmax_inbound = \"many\"", "'gossip.max_inbound' must be an integer"),
            ("[gossip]\nmax_connections_per_ip = 0", "must be ≥ 1"),
            ("[gossip]\nping_interval = 100\npeer_timeout = 10", "peer_timeout"),
            ("chain_id = \"\"", "chain_id"),
            ("this is not toml", "invalid TOML"),
            ("[bitcoin]\nesplora = \"ftp://x\"", "'bitcoin.esplora' must be an http(s) URL"),
            ("[bitcoin]\nnetwork = \"litecoin\"", "'bitcoin.network' must be"),
            ("[bitcoin]\nfee_target = 0", "must be ≥ 1"),
            ("[bitcoin]\npoll = 1", "unknown key 'bitcoin.poll'"),
            ("[bitcoin]\nfee_rate = -1", "'bitcoin.fee_rate' must be between 0 and 1e9"),
            // Values that would overflow a timer or an allocation: errors, never a trap at run time.
            ("handshake_timeout = 1e308", "'handshake_timeout' must be between 0 and 1e9"),
            ("[gossip]\npeer_timeout = inf", "'gossip.peer_timeout' must be between 0 and 1e9"),
            ("[gossip]\nping_interval = nan", "'gossip.ping_interval' must be between 0 and 1e9"),
            ("max_message_size = 999999999", "'max_message_size' must be ≤ 64 MiB"),
            ("[gossip]\nallow_local_addresses = 1", "'gossip.allow_local_addresses' must be true or false"),
            ("[gossip]\nmax_send_queue_bytes = 10", "must be ≥ 1048576"),
            ("[gossip]\noutbound_address = \"example.com\"", "'gossip.outbound_address' must be an IP address"),
            ("[gossip]\noutbound_address = 7", "'gossip.outbound_address' must be an IP address"),
            ("[state]\nkeep_blocks = 10", "'state.keep_blocks' must be 0 (keep every block) or at least 1000"),
            ("[state]\nkeep_blocks = -1", "'state.keep_blocks' must be ≥ 0"),
            // toml++ (under TOMLKit) aborted the process on these (found by fuzzing).
            ("[é]", "a table name cannot start with 'é'"),
            ("[[[a]]]", "a table name cannot start with '['"),
            ("[\nx = 1", "1: invalid TOML: a table header without a name"),
            ("[gossip]\nmax_inbound = 9223372036854775807", "'gossip.max_inbound' must be ≤ 1000000000"),
            ("a = 1\n[\u{03}gossip]", "2: invalid TOML: control character U+3"),
        ])
    func rejects(_ text: String, _ expected: String) {
        var c = config()
        let error = #expect(throws: ConfigError.self) { try c.apply(toml: text, source: "node.toml") }
        #expect(error?.description.contains(expected) == true, "\(error?.description ?? "")")
    }

    @Test("outbound_address: an IP literal, kept in its canonical spelling")
    func outboundAddress() throws {
        var c = config()
        #expect(c.outboundAddress == nil)
        try c.apply(toml: "[gossip]\noutbound_address = \"127.0.0.12\"", source: "node.toml")
        #expect(c.outboundAddress == "127.0.0.12")
    }

    @Test func defaultsAreValid() throws {
        try config().validate()
        #expect(config().adminSocketPath == "/tmp/x/admin.sock")
    }
}

@Suite("Genesis: consensus limits every validator enforces")
struct GenesisLimitTests {
    func genesis(maxBlockBytes: Int?) -> Genesis {
        var g = Genesis(
            chainID: "c", genesisTime: 0, epochLength: 100,
            validators: [
                .init(
                    node_id: Ed25519.PrivateKey().publicKey.hex, power: 1,
                    bitcoin_xonly: Secp256k1.PrivateKey().xOnlyPublicKey.hex)
            ], balances: [:])
        g.consensus.max_block_bytes = maxBlockBytes
        return g
    }

    @Test("max_block_bytes: absent means 1 MiB; below one transaction or above 2 MiB is an error naming the field")
    func maxBlockBytes() throws {
        try genesis(maxBlockBytes: nil).validate()
        #expect(genesis(maxBlockBytes: nil).consensusConfig().maxBlockBytes == 1 << 20)
        try genesis(maxBlockBytes: 2 << 20).validate()
        #expect(genesis(maxBlockBytes: 65_536).consensusConfig().maxBlockBytes == 65_536)
        for bad in [0, 1_000, (2 << 20) + 1] {
            let error = #expect(throws: ConfigError.self) { try genesis(maxBlockBytes: bad).validate() }
            #expect(error?.description.contains("max_block_bytes") == true)
        }
    }

    @Test("a Bitcoin key twice, a fee tolerance or bump delay out of range: an error naming the field")
    func checkpointFields() throws {
        var twice = genesis(maxBlockBytes: nil)
        twice.validators.append(
            .init(
                node_id: Ed25519.PrivateKey().publicKey.hex, power: 1, bitcoin_xonly: twice.validators[0].bitcoin_xonly)
        )
        let error = #expect(throws: ConfigError.self) { try twice.validate() }
        #expect(error?.description.contains("bitcoin_xonly") == true)
        for (tolerance, bump) in [(0.5, 3), (.nan, 3), (11, 3), (2, 0), (2, 5_000)] as [(Double, Int)] {
            var g = genesis(maxBlockBytes: nil)
            g.checkpoint.fee_tolerance = tolerance
            g.checkpoint.bump_after_blocks = bump
            let error = #expect(throws: ConfigError.self) { try g.validate() }
            #expect(error?.description.contains("fee_tolerance") == true)
        }
        var fine = genesis(maxBlockBytes: nil)
        fine.checkpoint.fee_tolerance = 3
        fine.checkpoint.bump_after_blocks = 6
        try fine.validate()
    }
}
