import Foundation
import Node
import NodeCrypto
import Testing

@testable import Noise

@Suite("Multi-process gossip mesh on loopback", .serialized)
struct GossipMeshTests {
    @Test("8 nodes from one bootstrap entry: discovery, exactly-once delivery, a discouraged garbage peer, restart")
    func mesh() throws {
        // Each suite has its own port range, so suites running in parallel never collide.
        let net = try LocalTestnet(nodes: 8)
        defer { net.shutdown() }
        for i in 0..<8 { try net.start(i) }
        for i in 0..<8 { try net.waitReady(i) }

        // Discovery: every node reaches at least 3 peers from the single bootstrap entry.
        try waitUntil(timeout: 60, "every node to have ≥ 3 peers") {
            try (0..<8).allSatisfy { i in (try net.admin(i).call("getinfo")["connections"]?.numberValue ?? 0) >= 3 }
        }

        // 100 messages published at random nodes reach every node's application exactly once.
        var ids: [String] = []
        for n in 0..<100 {
            let origin = Int.random(in: 0..<8)
            let payload = Array("mesh message \(n) \(UUID())".utf8)
            let result = try net.admin(origin).call("publish", .object(["payload_hex": .string(payload.hex)]))
            ids.append(try #require(result["id"]?.stringValue))
        }
        try waitUntil(timeout: 30, "100 deliveries on every node") {
            try (0..<8).allSatisfy { (try net.admin($0).call("getgossipinfo")["delivered"]?.numberValue) == 100 }
        }
        for i in 0..<8 {
            let info = try net.admin(i).call("getgossipinfo", .object(["limit": .int(1000)]))
            let recent = (info["recent"]?.arrayValue ?? []).compactMap(\.stringValue)
            #expect(recent.count == 100, "node\(i) delivered \(recent.count)")
            #expect(Set(recent) == Set(ids), "node\(i) delivered exactly the published ids")
        }

        // A peer that completes the handshake and then sends garbage is disconnected and discouraged.
        let evilIdentity = Ed25519.PrivateKey()
        var (client, channel) = try outsidePeer(port: net.port(3), identity: evilIdentity)
        client.send(try channel.send([0xee] + SecureRandom.bytes(64)))
        let closed = client.closesSoon()
        #expect(closed, "the node closes the connection of a garbage peer")
        let discouraged = try net.admin(3).call("listdiscouraged").arrayValue ?? []
        #expect(discouraged.contains { $0["target"]?.stringValue == "id:\(evilIdentity.publicKey.hex)" })
        #expect(try net.admin(3).call("listbanned").arrayValue?.isEmpty == true, "the operator's list is untouched")
        // Raw garbage before any handshake just gets the connection closed.
        let junk = try RawTCPClient(port: net.port(3))
        junk.send(SecureRandom.bytes(100_000))
        #expect(junk.receive()?.isEmpty ?? true)

        // …while the others keep working.
        let after = try net.admin(5).call("publish", .object(["payload_hex": .string("c0ffee")]))
        #expect(after["id"] != nil)
        try waitUntil(timeout: 20, "delivery after the ban") {
            try (0..<8).allSatisfy { (try net.admin($0).call("getgossipinfo")["delivered"]?.numberValue) == 101 }
        }

        // The address book survives a restart: node 3 comes back without the bootstrap file
        // and still finds peers (discouragement is in memory, as in Bitcoin Core; operator
        // bans are kept on disk, see AdminSocketTests).
        let known = try net.admin(3).call("getaddrbook").arrayValue?.count ?? 0
        #expect(known >= 3)
        _ = try net.admin(3).call("stop")
        try waitUntil(timeout: 15, "node3 to exit") { !(net.processes[3]?.isRunning ?? false) }
        #expect(net.processes[3]?.terminationStatus == 0, "graceful stop exits 0")
        net.processes[3] = nil
        try net.start(3, bootstrap: false)
        try net.waitReady(3)
        #expect((try net.admin(3).call("getaddrbook").arrayValue?.count ?? 0) >= known)
        try waitUntil(timeout: 30, "node3 to reconnect from its saved address book") {
            (try net.admin(3).call("getinfo")["connections"]?.numberValue ?? 0) >= 3
        }
    }
}

@Suite("Test messages only where turned on", .serialized)
struct TestTopicTests {
    @Test("a node without test_messages neither delivers nor relays topic-0 payloads, and refuses publish")
    func offByDefault() throws {
        let net = try LocalTestnet(nodes: 3)
        defer { net.shutdown() }
        // Node 1 sits between 0 and 2 (2 bootstraps from 1) with the default: off.
        let config = try String(contentsOf: net.configFile(1), encoding: .utf8)
        try config.replacingOccurrences(of: "test_messages = true\n", with: "").write(
            to: net.configFile(1), atomically: true, encoding: .utf8)
        for i in 0..<3 { try net.start(i) }
        for i in 0..<3 { try net.waitReady(i) }
        try waitUntil(timeout: 20, "node 1 connected") {
            (try? net.admin(1).call("getpeerinfo").arrayValue?.count ?? 0) ?? 0 >= 1
        }
        _ = try net.admin(0).call("publish", .object(["payload_hex": .string("0badc0de")]))
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try net.admin(1).call("getgossipinfo")["delivered"]?.numberValue == 0, "not delivered on node 1")
        #expect(throws: (any Error).self) {
            try net.admin(1).call("publish", .object(["payload_hex": .string("00")]))
        }
    }
}
