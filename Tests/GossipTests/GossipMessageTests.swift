import Gossip
import NodeCrypto
import Testing
import Wire

@Suite("Gossip wire messages and addresses")
struct GossipMessageTests {
    static let someID = Ed25519.PrivateKey().publicKey

    @Test func roundTrips() throws {
        let messages: [GossipMessage] = [
            .hello(listenPort: 26656, agent: "p2pnode/0.1.0"), .ping(nonce: 42), .pong(nonce: .max), .getAddresses,
            .addresses([NodeAddress(nodeID: Self.someID, host: "127.0.0.1", port: 9000)]), .addresses([]),
            .publish(payload: []), .publish(payload: SecureRandom.bytes(1000)),
        ]
        for message in messages {
            #expect(try GossipMessage.decode(message.encoded(), maxPayload: 1 << 20) == message)
        }
    }

    @Test func malformedInputIsATypedError() throws {
        let cases: [[UInt8]] = [
            [], [0], [99], [2, 0, 0], GossipMessage.ping(nonce: 1).encoded() + [0],
            GossipMessage.publish(payload: [1, 2, 3]).encoded().dropLast(1).map { $0 },
            [6, 0xff, 0xff, 0xff, 0xff],  // announces a 4 GiB payload
            [5, 0xff, 0xff],  // 65535 addresses announced
            [5, 0, 1] + [UInt8](repeating: 0, count: 32) + [0, 1, 0x41, 0, 1],  // invalid node id (not a point)
            [1, 0, 1, 0, 2, 0xff, 0xfe],  // agent not UTF-8
        ]
        for bytes in cases {
            #expect(throws: WireError.self, "\(bytes.prefix(16))") { try GossipMessage.decode(bytes, maxPayload: 1024) }
        }
        #expect(throws: WireError.self) {
            try GossipMessage.decode(
                GossipMessage.publish(payload: [UInt8](repeating: 1, count: 1025)).encoded(), maxPayload: 1024)
        }
        for _ in 0..<2000 {
            _ = try? GossipMessage.decode(SecureRandom.bytes(Int.random(in: 0...64)), maxPayload: 1024)
        }
    }

    @Test func addressParsing() throws {
        let id = Self.someID.hex
        let v4 = try NodeAddress(parsing: "\(id)@127.0.0.1:26656")
        #expect(v4.host == "127.0.0.1" && v4.port == 26656 && v4.nodeID == Self.someID)
        #expect(v4.description == "\(id)@127.0.0.1:26656")
        let v6 = try NodeAddress(parsing: "\(id)@[::1]:9")
        #expect(v6.host == "::1" && v6.port == 9 && v6.description.hasSuffix("@[::1]:9"))
        #expect(try NodeAddress(parsing: "\(id)@node0.example:1").host == "node0.example")
        for bad in [
            "", "127.0.0.1:1", "\(id)@127.0.0.1", "\(id)@127.0.0.1:0", "\(id)@127.0.0.1:70000", "abc@127.0.0.1:1",
            "\(id)@:1", "\(id)@[::1:1", String(repeating: "0", count: 64) + "@127.0.0.1:1",
        ] {
            #expect(throws: AddressError.self, "\(bad)") { try NodeAddress(parsing: bad) }
        }
        #expect(HostPort(host: "10.1.2.3", port: 1).group == "10.1")
        #expect(HostPort(host: "10.1.9.9", port: 1).group == HostPort(host: "10.1.2.3", port: 2).group)
    }

    @Test func bootstrapFiles() throws {
        let id = Self.someID.hex
        let text = "# seeds\n\n\(id)@127.0.0.1:1   # node0\n  \(id)@[::1]:2\n"
        let peers = try parseBootstrapPeers(text)
        #expect(peers.map(\.port) == [1, 2])
        let error = #expect(throws: AddressError.self) {
            try parseBootstrapPeers("# ok\nnot-an-address\n", source: "b.txt")
        }
        #expect(error?.description.hasPrefix("b.txt:2:") == true)
        #expect(try parseBootstrapPeers("").isEmpty)
    }
}
