import Foundation
import Gossip
import NodeCrypto
import TestSupport
import Testing

private func id() -> PeerID { Ed25519.PrivateKey().publicKey }
private func address(_ host: String, _ port: UInt16 = 26656, id: PeerID = id()) -> NodeAddress {
    NodeAddress(nodeID: id, host: host, port: port)
}

@Suite("IP literals: one canonical spelling per address")
struct IPAddressTests {
    @Test("every spelling of one address has one canonical text; names and malformed literals are refused")
    func canonical() {
        let same: [(String, String)] = [
            ("1.2.3.4", "1.2.3.4"), ("::ffff:1.2.3.4", "1.2.3.4"), ("::FFFF:0102:0304", "1.2.3.4"),
            ("0:0:0:0:0:0:0:1", "::1"), ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2a01:4f8:0:0:1:0:0:5", "2a01:4f8::1:0:0:5"), ("fe80::", "fe80::"), ("1::", "1::"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8"),
        ]
        for (text, canonical) in same {
            #expect(IPAddress(text)?.description == canonical, "\(text)")
        }
        for bad in [
            "localhost", "example.com", "01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", ":::", "1::2::3",
            "1:2:3:4:5:6:7:8:9", "12345::", "::g", "", ":", "1.2.3.4:5", "[::1]", "::1%eth0", "١.٢.٣.٤", "0x7f.0.0.1",
        ] {
            #expect(IPAddress(bad) == nil, "\(bad)")
        }
    }

    @Test("local ranges are local; a /64 is one host; /16 and /32 are one group")
    func ranges() {
        for local in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.1.1", "100.64.0.1",
            "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.51.100.7", "203.0.113.9", "::1", "::",
            "fc00::1", "fd12::1", "fe80::1", "ff02::1", "2001:db8::1", "192.88.99.1", "64:ff9b::a00:1",
            "64:ff9b:1::1", "2002:a00:1::1", "2001:0:4136::1", "fec0::1", "100::1", "2001:2::1", "3fff::1",
            "::ffff:0:a00:1",
        ] {
            #expect(IPAddress(local)?.isLocal == true, "\(local)")
        }
        for routable in ["1.2.3.4", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2a01:4f8::1", "2600::1"] {
            #expect(IPAddress(routable)?.isLocal == false, "\(routable)")
        }
        #expect(IPAddress("2a01:4f8:1:2:aaaa::1")?.hostKey == IPAddress("2a01:4f8:1:2:ffff::9")?.hostKey)
        #expect(IPAddress("2a01:4f8:1:2::1")?.hostKey != IPAddress("2a01:4f8:1:3::1")?.hostKey)
        #expect(IPAddress("1.2.3.4")?.group == IPAddress("1.2.200.7")?.group)
        #expect(IPAddress("1.2.3.4")?.group != IPAddress("1.3.3.4")?.group)
    }
}

@Suite("Address book (addrman): poisoning and eclipse")
struct AddrmanTests {
    let config = GossipConfiguration()

    @Test("1,000 addresses from one source in one /16 take one bucket; from 1,000 /16s at most 32 buckets")
    func oneSourceIsBounded() {
        var book = AddressBook(key: Array(repeating: 7, count: 32))
        for i in 0..<1_000 {
            book.add(address("1.2.\(i / 250).\(i % 250 + 1)"), source: "5.6.7.8", config: config, now: 0)
        }
        #expect(book.count <= AddressBook.bucketSize)
        var wide = AddressBook(key: Array(repeating: 8, count: 32))
        for i in 0..<1_000 {
            wide.add(address("\(i / 200 + 1).\(i % 200).0.1"), source: "5.6.7.8", config: config, now: 0)
        }
        #expect(wide.count <= 32 * AddressBook.bucketSize)
        #expect(wide.count > AddressBook.bucketSize, "distinct groups do spread")
    }

    @Test("names, local addresses and port 0 never enter from hearsay; operator peers may be names")
    func onlyRoutableLiterals() {
        var book = AddressBook()
        for host in ["localhost", "evil.example", "127.0.0.1", "10.0.0.1", "192.168.0.1", "::1", "fe80::1"] {
            let added = book.add(address(host), source: "5.6.7.8", config: config, now: 0)
            #expect(!added, "\(host)")
        }
        let portZero = book.add(address("1.2.3.4", 0), source: "5.6.7.8", config: config, now: 0)
        #expect(!portZero)
        #expect(book.count == 0)
        var local = config
        local.allowLocalAddresses = true
        let loopback = book.add(address("127.0.0.1"), source: "127.0.0.1", config: local, now: 0)
        let name = book.add(address("localhost"), source: "127.0.0.1", config: local, now: 0)
        let operatorName = book.add(address("seed.example"), source: nil, persistent: true, config: config, now: 0)
        #expect(loopback && !name && operatorName, "local only when allowed; names never from hearsay")
    }

    @Test("hearsay never moves a known id; the peer's own connection may move a new entry; tried entries stay")
    func noOverwrite() {
        var book = AddressBook()
        let victim = id()
        book.add(address("1.2.3.4", id: victim), source: "9.9.9.9", config: config, now: 0)
        let moved = book.add(address("6.6.6.6", id: victim), source: "6.6.6.1", config: config, now: 0)
        #expect(!moved)
        #expect(book.address(of: victim)?.host == "1.2.3.4")
        book.add(address("1.2.9.9", id: victim), source: "1.2.9.9", observed: true, config: config, now: 0)
        #expect(book.address(of: victim)?.host == "1.2.9.9")
        book.markSuccess(victim, now: 1)
        book.add(address("6.6.6.6", id: victim), source: "6.6.6.6", observed: true, config: config, now: 2)
        #expect(book.address(of: victim)?.host == "1.2.9.9")
    }

    @Test("two spellings of one endpoint are one slot: the second id is refused")
    func spellings() {
        var book = AddressBook()
        let first = book.add(address("1.2.3.4"), source: "9.9.9.9", config: config, now: 0)
        let endpoint = try! HostPort(parsing: "[::ffff:1.2.3.4]:26656")
        let second = book.add(
            NodeAddress(nodeID: id(), host: endpoint.host, port: endpoint.port), source: "9.9.9.9", config: config,
            now: 0)
        #expect(first && !second)
        #expect(book.count == 1)
    }

    @Test("test-before-evict: a newcomer colliding with a tried entry waits for it to be tested")
    func testBeforeEvict() throws {
        let key = [UInt8](repeating: 3, count: 32)
        // Find two routable addresses that share a tried slot under this key: the second,
        // reached while the first was reached lately, stays new.
        let first = address("7.7.0.1")
        var pair: (NodeAddress, NodeAddress)?
        for i in 1..<5_000 where pair == nil {
            var single = AddressBook(key: key)
            single.add(first, source: "9.9.9.9", config: config, now: 0)
            single.markSuccess(first.nodeID, now: 0)
            let candidate = address("7.7.\(i / 200).\(i % 200 + 2)")
            single.add(candidate, source: "8.8.8.8", config: config, now: 0)
            single.markSuccess(candidate.nodeID, now: 1)
            if single.entry(of: candidate.nodeID)?.tried == false { pair = (first, candidate) }
        }
        var probe = AddressBook(key: key)
        let (old, newcomer) = try #require(pair)
        probe.add(old, source: "9.9.9.9", config: config, now: 0)
        probe.markSuccess(old.nodeID, now: 0)
        probe.add(newcomer, source: "8.8.8.8", config: config, now: 0)
        // Reached lately: the old entry is not even tested.
        probe.markSuccess(newcomer.nodeID, now: 100)
        #expect(probe.entry(of: newcomer.nodeID)?.tried == false)
        // Not reached for long: it is tested; it answers, so it stays.
        let later = 5 * 3_600.0
        probe.markSuccess(newcomer.nodeID, now: later)
        var rng = SystemRandomNumberGenerator()
        let dialled = probe.select(limit: 8, now: later, excluding: [], busyGroups: [], using: &rng)
        #expect(dialled.contains { $0.nodeID == old.nodeID }, "the occupant is dialled as the test")
        probe.markSuccess(old.nodeID, now: later + 1)
        probe.resolveCollisions(now: later + 2)
        #expect(probe.entry(of: old.nodeID)?.tried == true && probe.entry(of: newcomer.nodeID)?.tried == false)
        // Still connected to the occupant when a collision comes: that is a passed test.
        probe.markSuccess(newcomer.nodeID, now: later + 10_000)
        probe.resolveCollisions(now: later + 10_001, connected: [old.nodeID])
        #expect(probe.entry(of: old.nodeID)?.tried == true && probe.entry(of: newcomer.nodeID)?.tried == false)
        // Tested again later and failing: the newcomer takes the slot.
        let much = later + 5 * 3_600
        probe.markSuccess(newcomer.nodeID, now: much)
        probe.markFailure(old.nodeID, config: config, now: much + 1)
        probe.resolveCollisions(now: much + 2)
        #expect(probe.entry(of: newcomer.nodeID)?.tried == true)
        #expect(probe.entry(of: old.nodeID)?.tried != true)
    }

    @Test("dial order cannot be ground: draws are random, one per network group")
    func randomSelection() {
        var book = AddressBook(key: Array(repeating: 1, count: 32))
        var ids: [PeerID] = []
        for i in 0..<200 {
            let a = address("\(i + 1).\(i % 7).0.1")
            if book.add(a, source: "\(i % 50 + 1).9.9.9", config: config, now: 0) { ids.append(a.nodeID) }
        }
        let smallest = ids.min { $0.precedes($1) }!
        var picks: [PeerID: Int] = [:]
        for seed in 0..<50 {
            var rng = SeededRandom(state: UInt64(seed))
            let chosen = book.select(limit: 8, now: 0, excluding: [], busyGroups: [], using: &rng)
            #expect(chosen.count == 8)
            #expect(Set(chosen.map { IPAddress($0.host)!.group }).count == chosen.count, "one per group")
            for a in chosen { picks[a.nodeID, default: 0] += 1 }
        }
        #expect((picks[smallest] ?? 0) < 50, "the smallest id is not always first")
        #expect(picks.count > 60, "draws cover the book")
        // One /16 with 50 addresses yields one outbound candidate.
        var crowded = AddressBook()
        for i in 0..<50 { crowded.add(address("9.9.\(i).1"), source: "\(i + 1).1.1.1", config: config, now: 0) }
        var rng = SeededRandom(state: 9)
        #expect(crowded.select(limit: 8, now: 0, excluding: [], busyGroups: [], using: &rng).count == 1)
    }

    @Test("a crafted peers.json: absurd counters clamped, duplicate ids dropped, local anchors refused")
    func craftedSnapshot() throws {
        let a = address("1.2.3.4")
        let other = NodeAddress(nodeID: a.nodeID, host: "5.6.7.8", port: 1)
        func entry(_ address: NodeAddress) -> String {
            #"{"address":"\#(address)","tried":true,"failures":9223372036854775807,"retryAt":1e300,"persistent":false}"#
        }
        let json =
            #"{"version":2,"key":"zz","entries":[\#(entry(a)),\#(entry(other))],"#
            + #""anchors":["\#(address("127.0.0.1"))","not an address"]}"#
        let snapshot = try JSONDecoder().decode(AddressBook.Snapshot.self, from: Data(json.utf8))
        var book = AddressBook(snapshot: snapshot, config: config)
        #expect(book.count == 1 && book.address(of: a.nodeID)?.host == "1.2.3.4")
        book.markFailure(a.nodeID, config: config, now: 0)  // Int.max + 1 trapped here
        #expect(book.entry(of: a.nodeID)?.failures == 64)
        #expect(book.takeAnchors().isEmpty)
    }

    @Test("the book, its key and its anchors survive a restart")
    func snapshotRoundTrip() {
        var book = AddressBook()
        let a = address("1.2.3.4")
        let b = address("5.6.7.8")
        book.add(a, source: "9.9.9.9", config: config, now: 0)
        book.add(b, source: "9.9.9.9", config: config, now: 0)
        book.markSuccess(b.nodeID, now: 1)
        var restored = AddressBook(snapshot: book.snapshot(anchors: [b]), config: config)
        #expect(restored == AddressBook(snapshot: book.snapshot(anchors: [b]), config: config))
        #expect(restored.entries == book.entries)
        let anchors = restored.takeAnchors()
        #expect(anchors == [b])
        let again = restored.takeAnchors()
        #expect(again.isEmpty, "anchors are dialled once")
    }
}

@Suite("Hostile peers at the gossip engine: admission, eviction, discouragement")
struct HostileEngineTests {
    func engine(_ change: (inout GossipConfiguration) -> Void = { _ in }) -> GossipEngine {
        var config = GossipConfiguration()
        change(&config)
        return GossipEngine(localID: id(), configuration: config, listenPort: 1, agent: "t", seed: 7)
    }

    @Test("pending handshakes: capped per host and group; at the total cap the oldest of the most crowded group goes")
    func pendingHandshakes() {
        var e = engine {
            $0.maxPendingHandshakes = 8
            $0.maxPendingPerHost = 2
            $0.maxConnectionsPerIP = 4
        }
        let first = e.inboundAttempt(1, host: "1.1.1.1", now: 0)
        let second = e.inboundAttempt(2, host: "1.1.1.1", now: 1)
        #expect(first == .admit(timeout: 10, evict: nil) && second == .admit(timeout: 10, evict: nil))
        if case .admit = e.inboundAttempt(3, host: "::ffff:1.1.1.1", now: 2) { Issue.record("per host, any spelling") }
        // Another address in the same IPv6 /64 is the same host.
        _ = e.inboundAttempt(4, host: "2a01::1", now: 3)
        _ = e.inboundAttempt(5, host: "2a01::2", now: 4)
        if case .admit = e.inboundAttempt(6, host: "2a01::3", now: 5) { Issue.record("one /64 is one host") }
        let pressed = e.inboundAttempt(7, host: "3.3.3.3", now: 6)
        #expect(pressed == .admit(timeout: 2, evict: nil), "5 of 8 pending: pressure")
        for i in 0..<3 { _ = e.inboundAttempt(10 + i, host: "4.4.4.\(i)", now: 7) }
        #expect(e.pendingHandshakes == 8)
        // Full: a newcomer gets in; the oldest handshake of a host with two pending goes.
        let newcomer = e.inboundAttempt(20, host: "5.5.5.5", now: 8)
        #expect(newcomer == .admit(timeout: 2, evict: 10), "the oldest of the most crowded group (4.4/16)")
        #expect(e.pendingHandshakes == 8)
        e.handshakeEnded(2)
        #expect(e.pendingHandshakes == 7)
        e.handshakeEnded(99)  // never admitted: no effect
        #expect(e.pendingHandshakes == 7)
    }

    func connect(
        _ e: inout GossipEngine, _ conn: Int, host: String, since: Double, peer: PeerID = id()
    ) -> [GossipEngine.Action] {
        let actions = e.connected(conn, peer: peer, host: host, port: 1, inbound: true, now: since)
        _ = e.received(conn, bytes: GossipMessage.hello(listenPort: 0, agent: "x").encoded(), now: since)
        return actions
    }

    @Test("a full node evicts the youngest peer of the most crowded group, never a protected or useful one")
    func eviction() {
        var e = engine {
            $0.maxInbound = 24
            $0.maxConnectionsPerIP = 4
        }
        let validator = id()
        e.protectedPeers = [validator]
        // 8 honest peers in 8 groups, long connected; one is a validator.
        for i in 0..<8 {
            _ = connect(&e, i, host: "\(i + 10).1.1.1", since: Double(i), peer: i == 0 ? validator : id())
        }
        // 16 attacker peers from one /16.
        for i in 8..<24 { _ = connect(&e, i, host: "66.66.\(i).1", since: 100 + Double(i)) }
        // 100 more attackers arrive: each evicts one of the attacker's own group.
        for i in 24..<124 {
            let actions = connect(&e, i, host: "66.66.\(i % 200).2", since: 200 + Double(i))
            #expect(actions.contains { if case .disconnect(let c, _) = $0 { c != i } else { false } }, "one evicted")
        }
        for i in 0..<8 { #expect(e.peers[i] != nil, "honest peer \(i) kept") }
        #expect(e.peer(validator) != nil)
        #expect(e.inboundCount == 24)
    }

    @Test("answers to our own getaddr are credited; a peer's excess addresses are dropped, never punished")
    func addressBudget() {
        var e = engine {
            $0.addressBurst = 10
            $0.addressesPerSecond = 0
        }
        let peer = id()
        _ = e.connected(1, peer: peer, host: "1.2.3.4", port: 1, inbound: false, now: 0)
        _ = e.received(1, bytes: GossipMessage.hello(listenPort: 1, agent: "x").encoded(), now: 0)
        let list = (0..<100).map { address("\($0 + 1).9.9.9") }
        // 10 burst + 100 credited for the getaddr sent on connect: 100 accepted.
        _ = e.received(1, bytes: GossipMessage.addresses(list).encoded(), now: 1)
        #expect(e.addressBook.count > 10)
        // An unsolicited flood: dropped, the peer keeps a clean score.
        _ = e.received(1, bytes: GossipMessage.addresses(list).encoded(), now: 2)
        #expect(e.peer(peer)?.score == 0 && !e.isDiscouraged(id: peer, now: 3))
    }

    @Test("a message before hello discourages the peer")
    func helloFirst() {
        var e = engine()
        let peer = id()
        _ = e.connected(1, peer: peer, host: "1.2.3.4", port: 1, inbound: true, now: 0)
        let actions = e.received(1, bytes: GossipMessage.getAddresses.encoded(), now: 0)
        #expect(actions.contains { if case .disconnect(1, _) = $0 { true } else { false } })
        #expect(e.isDiscouraged(id: peer, now: 1))
    }

    @Test(
        "misbehaviour discourages the id and, softly, a routable host (its /64): neighbours behind it stay; never the ban list"
    )
    func discouragement() {
        var e = engine { $0.maxInbound = 3 }
        let bad = id()
        let neighbour = id()
        _ = e.connected(1, peer: bad, host: "2a01:4f8:1:2::5", port: 1, inbound: true, now: 0)
        _ = e.connected(3, peer: neighbour, host: "2a01:4f8:1:2::6", port: 1, inbound: true, now: 0)
        let actions = e.received(1, bytes: [0xEE], now: 0)
        #expect(e.isDiscouraged(id: bad, now: 1))
        #expect(e.peers[3] != nil, "an honest peer behind the same NAT or /64 keeps its connection")
        #expect(!actions.contains { if case .disconnect(3, _) = $0 { true } else { false } })
        #expect(e.isDiscouraged(host: "2a01:4f8:1:2:ffff::1", now: 1), "same /64, other spelling")
        // The host's new connections get in while slots are free, not when they are full,
        // and its peers are evicted first.
        let whileFree = e.inboundAttempt(9, host: "2a01:4f8:1:2::9", now: 1)
        #expect(whileFree == .admit(timeout: 10, evict: nil))
        e.handshakeEnded(9)
        _ = e.connected(4, peer: id(), host: "8.8.8.8", port: 1, inbound: true, now: 1)
        _ = e.connected(5, peer: id(), host: "9.9.9.9", port: 1, inbound: true, now: 1)
        let whenFull = e.inboundAttempt(10, host: "2a01:4f8:1:2::9", now: 2)
        #expect(whenFull == .refuse("discouraged host, inbound slots full"))
        #expect(!e.isDiscouraged(host: "2a01:4f8:1:3::1", now: 1))
        #expect(e.bans.isEmpty)
        var l = engine()
        let local = id()
        _ = l.connected(2, peer: local, host: "127.0.0.1", port: 1, inbound: true, now: 0)
        _ = l.received(2, bytes: [0xEE], now: 0)
        #expect(l.isDiscouraged(id: local, now: 1) && !l.isDiscouraged(host: "127.0.0.1", now: 1))
        #expect(!e.isDiscouraged(id: bad, now: 1 + e.configuration.banDuration), "expires")
    }

    @Test("the discouragement filter is bounded: 200,000 Sybil ids keep it at its capacity")
    func boundedFilter() {
        var filter = Discouragement()
        for i in 0..<200_000 { filter.insert("id:\(i)", until: 10, reason: "x") }
        #expect(filter.count == Discouragement.capacity)
        #expect(filter.contains("id:199999", now: 0) && !filter.contains("id:0", now: 0))
    }

    @Test("an addr flood of names, local and malformed hosts adds nothing")
    func addrFlood() {
        var e = engine()
        _ = e.connected(1, peer: id(), host: "1.2.3.4", port: 1, inbound: true, now: 0)
        _ = e.received(1, bytes: GossipMessage.hello(listenPort: 0, agent: "x").encoded(), now: 0)
        let junk = (0..<1_000).map { i in
            address(
                ["localhost", "127.0.0.\(i % 250)", "10.0.\(i % 250).1", "host\(i).example", "1.2.3.\(256 + i)"][i % 5])
        }
        _ = e.received(1, bytes: GossipMessage.addresses(junk).encoded(), now: 0)
        #expect(e.addressBook.count == 0)
    }

    @Test("the connection caps shrink to the open-file limit")
    func descriptorFit() {
        var config = GossipConfiguration()
        #expect(config.fit(descriptors: 10_000) == nil)
        #expect(config.fit(descriptors: 40) != nil)
        #expect(config.descriptorsNeeded <= 40)
        #expect(config.maxPendingHandshakes >= 1 && config.outboundTarget == 8)
    }
}
