import Foundation
import Gossip
import Node
import NodeCrypto
import Testing

@testable import Noise

/// A running node attacked from the network as a stranger would (issue 16): each test
/// asserts the node keeps serving an honest peer, discourages the right thing, stays
/// within its memory bound and never crashes.
@Suite("Hostile peers against a running node", .serialized)
struct HostilePeerSuite {
    /// Resident memory a single node may reach under any of these attacks (baseline ≈ 40 MiB;
    /// the per-peer send budget is 16 MiB).
    static let memoryBound = 300 << 20

    /// One node with public-network limits (4 connections and 4 pending handshakes per
    /// host, no local addresses in the book) and test messages on.
    func hostileNode() throws -> LocalTestnet {
        let net = try LocalTestnet(nodes: 1)
        try """
        chain_id = "sidenode-it"
        listen = "127.0.0.1:\(net.port(0))"
        [gossip]
        test_messages = true
        max_inbound = 64
        """.write(to: net.configFile(0), atomically: true, encoding: .utf8)
        try net.start(0, bootstrap: false)
        try net.waitReady(0)
        return net
    }

    func residentBytes(_ net: LocalTestnet) -> Int {
        guard let pid = net.processes[0]?.processIdentifier,
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib * 1024
    }

    /// An honest peer's handshake from a fresh loopback address; returns the seconds it took.
    func honestHandshake(_ net: LocalTestnet, from source: String) throws -> Double {
        let start = Date()
        let (client, channel) = try outsidePeer(port: net.port(0), identity: Ed25519.PrivateKey(), from: source)
        #expect(channel.isEstablished)
        _ = client
        return Date().timeIntervalSince(start)
    }

    func alive(_ net: LocalTestnet) -> Bool {
        (net.processes[0]?.isRunning ?? false) && (try? net.admin(0).call("getinfo")) != nil
    }

    @Test(
        "1,000 silent connections from 250 addresses: the node holds at most its pending cap; an honest handshake still completes"
    )
    func silentConnections() throws {
        let net = try hostileNode()
        defer { net.shutdown() }
        var silent: [RawTCPClient] = []
        for i in 0..<1_000 {
            // 127.0.1.1 … 127.0.1.250, four connections each.
            if let client = try? RawTCPClient(port: net.port(0), from: "127.0.1.\(i % 250 + 1)") {
                silent.append(client)
            }
        }
        #expect(silent.count > 900, "the kernel accepted the attack's connections")
        let pending = try net.admin(0).call("getnettotals")["pending_handshakes"]?.numberValue ?? -1
        #expect(pending <= 64, "pending handshakes stay within the cap: \(pending)")
        let seconds = try honestHandshake(net, from: "127.0.2.1")
        print("honest handshake under 1,000 silent connections: \(String(format: "%.3f", seconds)) s")
        #expect(alive(net))
        #expect(residentBytes(net) < Self.memoryBound, "\(residentBytes(net) >> 20) MiB")
        silent.removeAll()
    }

    @Test("a peer that never reads during a flood of 4 MiB messages is dropped; memory stays bounded")
    func slowReader() throws {
        let net = try hostileNode()
        defer { net.shutdown() }
        let slowIdentity = Ed25519.PrivateKey()
        let (slow, _) = try outsidePeer(port: net.port(0), identity: slowIdentity, from: "127.0.4.1")
        var small: Int32 = 4096
        setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var (flooder, channel) = try outsidePeer(port: net.port(0), identity: Ed25519.PrivateKey(), from: "127.0.4.2")
        try waitUntil(timeout: 10, "both peers connected") {
            (try net.admin(0).call("getinfo")["connections"]?.numberValue ?? 0) == 2
        }
        var peak = 0
        func slowGone() throws -> Bool {
            let peers = try net.admin(0).call("getpeerinfo").arrayValue ?? []
            return !peers.contains { $0["node_id"]?.stringValue == slowIdentity.publicKey.hex }
        }
        // 16 MiB of send budget plus kernel buffers: a dozen 4 MiB messages are enough.
        for n in 0..<12 {
            // Topic 0 (test message), 4 MiB less the header room; each distinct.
            var payload = [UInt8](repeating: UInt8(n), count: 4 * 1024 * 1024 - 128)
            payload[0] = 0
            payload[1] = UInt8(n)
            flooder.send(try channel.send(GossipMessage.publish(payload: payload).encoded()))
            peak = max(peak, residentBytes(net))
            if try !(net.processes[0]?.isRunning ?? false) || slowGone() { break }
        }
        try waitUntil(timeout: 60, "the slow reader to be dropped") { try slowGone() }
        print("slow reader flood: peak resident \(peak >> 20) MiB")
        #expect(peak < Self.memoryBound, "peak \(peak >> 20) MiB")
        #expect(alive(net))
        #expect(net.log(0).contains("disconnecting slow peer"))
        _ = try honestHandshake(net, from: "127.0.4.3")
    }

    @Test("an addr flood of names, local, unspecified and documentation hosts leaves the address book empty")
    func addrFlood() throws {
        let net = try hostileNode()
        defer { net.shutdown() }
        var (client, channel) = try outsidePeer(port: net.port(0), identity: Ed25519.PrivateKey(), from: "127.0.5.1")
        let hosts = ["localhost", "evil.example", "127.0.0.1", "10.0.0.1", "0.0.0.0", "192.0.2.7", "::1", "fe80::1"]
        let bogus = (0..<1_000).map { i in
            NodeAddress(nodeID: Ed25519.PrivateKey().publicKey, host: hosts[i % hosts.count], port: UInt16(1 + i))
        }
        client.send(try channel.send(GossipMessage.addresses(bogus).encoded()))
        usleep(500_000)
        #expect(try net.admin(0).call("getaddrbook").arrayValue?.isEmpty == true)
        #expect(alive(net))
    }

    @Test("200 fresh identities sending garbage: each is discouraged, the ban list stays empty, honest peers get in")
    func sybils() throws {
        let net = try hostileNode()
        defer { net.shutdown() }
        var ids: [String] = []
        for i in 0..<200 {
            let identity = Ed25519.PrivateKey()
            guard let peer = try? outsidePeer(port: net.port(0), identity: identity, from: "127.0.6.\(i % 50 + 1)")
            else { continue }
            let client = peer.client
            var channel = peer.channel
            client.send(try channel.send([0xEE] + SecureRandom.bytes(32)))
            _ = client.closesSoon()
            ids.append(identity.publicKey.hex)
        }
        #expect(ids.count == 200)
        let discouraged = Set(
            (try net.admin(0).call("listdiscouraged").arrayValue ?? []).compactMap { $0["target"]?.stringValue })
        #expect(ids.allSatisfy { discouraged.contains("id:\($0)") }, "every misbehaving id is discouraged")
        #expect(try net.admin(0).call("listbanned").arrayValue?.isEmpty == true)
        _ = try honestHandshake(net, from: "127.0.6.200")
        #expect(residentBytes(net) < Self.memoryBound)
    }

    @Test("a bit flipped on a live channel closes it without discouraging the peer, which reconnects")
    func bitFlip() throws {
        let net = try hostileNode()
        defer { net.shutdown() }
        let identity = Ed25519.PrivateKey()
        var (client, channel) = try outsidePeer(port: net.port(0), identity: identity, from: "127.0.7.1")
        var frame = try channel.send(GossipMessage.ping(nonce: 7).encoded())
        frame[frame.count - 3] ^= 0x04
        client.send(frame)
        #expect(client.closesSoon(), "the node drops the channel")
        let discouraged = try net.admin(0).call("listdiscouraged").arrayValue ?? []
        #expect(!discouraged.contains { $0["target"]?.stringValue == "id:\(identity.publicKey.hex)" })
        let (again, reconnected) = try outsidePeer(port: net.port(0), identity: identity, from: "127.0.7.1")
        #expect(reconnected.isEstablished)
        _ = again
    }

    @Test("setban for 1e308 seconds: clamped, listed, and the node restarts and lists it again")
    func hugeBan() throws {
        let net = try hostileNode()
        defer { net.shutdown() }
        let reply = try net.admin(0).call(
            "setban", .object(["ip": .string("::ffff:10.1.2.3"), "seconds": .number(1e308)]))
        #expect(reply["banned"]?.stringValue == "ip:10.1.2.3", "any spelling is one ban: \(reply)")
        let listed = try net.admin(0).call("listbanned").arrayValue ?? []
        #expect(listed.first?["until"]?.numberValue.map { $0 <= Ban.latest } == true)
        _ = try net.admin(0).call("stop")
        try waitUntil(timeout: 15, "the node to stop") { !(net.processes[0]?.isRunning ?? false) }
        net.processes[0] = nil
        try net.start(0, bootstrap: false)
        try net.waitReady(0)
        #expect(try net.admin(0).call("listbanned").arrayValue?.count == 1)
        #expect(alive(net))
    }
}
