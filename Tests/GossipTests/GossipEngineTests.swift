import Gossip
import NodeCrypto
import Testing

/// A deterministic in-process network of gossip engines: dials connect instantly,
/// sends are delivered in FIFO order, time advances only by `advance`.
struct SimulatedNetwork {
    struct Link {
        let a: PeerID
        let b: PeerID
        let connA: ConnectionID  // a's id for the link
        let connB: ConnectionID
    }

    var engines: [PeerID: GossipEngine] = [:]
    var ports: [UInt16: PeerID] = [:]
    var links: [Link] = []
    var nextConnection = 1
    var now: Double = 1_000
    var delivered: [PeerID: [MessageID]] = [:]
    var queue: [(PeerID, GossipEngine.Action)] = []
    var disconnectReasons: [String] = []
    /// Node ids that drop every message instead of handling it.
    var silent: Set<PeerID> = []
    /// The application's verdict on gossiped payloads, the same on every node.
    var validator: @Sendable ([UInt8]) -> Validation = { _ in .accept }

    mutating func add(_ engine: GossipEngine) {
        engines[engine.localID] = engine
        ports[engine.listenPort] = engine.localID
    }

    func address(of id: PeerID) -> NodeAddress {
        NodeAddress(nodeID: id, host: "127.0.0.1", port: engines[id]!.listenPort)
    }

    mutating func run(_ origin: PeerID, _ actions: [GossipEngine.Action]) {
        queue += actions.map { (origin, $0) }
        var steps = 0
        while !queue.isEmpty {
            steps += 1
            precondition(steps < 1_000_000, "simulation does not settle")
            let (node, action) = queue.removeFirst()
            switch action {
            case .send(let conn, let message):
                guard
                    let link = links.first(where: {
                        ($0.a == node && $0.connA == conn) || ($0.b == node && $0.connB == conn)
                    })
                else { continue }
                let (other, otherConn) = link.a == node ? (link.b, link.connB) : (link.a, link.connA)
                if silent.contains(other) { continue }
                let out = engines[other]!.received(otherConn, bytes: message.encoded(), now: now)
                queue += out.map { (other, $0) }
            case .disconnect(let conn, let reason):
                disconnectReasons.append(reason)
                guard
                    let index = links.firstIndex(where: {
                        ($0.a == node && $0.connA == conn) || ($0.b == node && $0.connB == conn)
                    })
                else { continue }
                let link = links.remove(at: index)
                let (other, otherConn) = link.a == node ? (link.b, link.connB) : (link.a, link.connA)
                _ = engines[node]!.disconnected(conn, now: now)
                queue += engines[other]!.disconnected(otherConn, now: now).map { (other, $0) }
            case .dial(let address):
                guard let target = ports[address.port], target == address.nodeID, engines[target] != nil else {
                    queue += engines[node]!.dialFailed(address, now: now).map { (node, $0) }
                    continue
                }
                let connA = nextConnection
                let connB = nextConnection + 1
                nextConnection += 2
                links.append(Link(a: node, b: target, connA: connA, connB: connB))
                let outA = engines[node]!.connected(
                    connA, peer: target, host: "127.0.0.1", port: address.port, inbound: false, now: now)
                let outB = engines[target]!.connected(
                    connB, peer: node, host: "127.0.0.1", port: 40000, inbound: true, now: now)
                queue += outA.map { (node, $0) } + outB.map { (target, $0) }
            case .validate(let payload, let id, let from, _):
                let verdict = validator(payload)
                if verdict == .accept { delivered[node, default: []].append(id) }
                queue += engines[node]!.validated(payload, from: from, result: verdict, now: now).map { (node, $0) }
            case .direct:
                break
            case .bansChanged:
                break
            }
        }
    }

    mutating func advance(_ seconds: Double, step: Double = 1) {
        var t = 0.0
        while t < seconds {
            now += step
            t += step
            for id in engines.keys.sorted(by: { $0.precedes($1) }) {
                let actions = engines[id]!.tick(now: now)
                run(id, actions)
            }
        }
    }

    func peerCount(_ id: PeerID) -> Int { engines[id]!.peers.count }
}

func makeEngine(port: UInt16, config: GossipConfiguration = testConfig(), seed: UInt64? = nil) -> GossipEngine {
    GossipEngine(
        localID: Ed25519.PrivateKey().publicKey, configuration: config, listenPort: port, agent: "test",
        seed: seed ?? UInt64(port))
}

func testConfig() -> GossipConfiguration {
    var c = GossipConfiguration()
    c.maxConnectionsPerIP = 64
    c.maxPendingPerHost = 64
    c.addressRefreshInterval = 5
    c.allowLocalAddresses = true  // the simulated nodes are all on 127.0.0.1
    return c
}

@Suite("Gossip engine (pure core, simulated network)")
struct GossipEngineTests {
    @Test("8 nodes from one bootstrap entry discover each other and reach ≥ 3 peers")
    func discovery() {
        var net = SimulatedNetwork()
        let nodes = (0..<8).map { makeEngine(port: UInt16(9000 + $0)) }
        for node in nodes { net.add(node) }
        let seed = net.address(of: nodes[0].localID)
        for node in nodes.dropFirst() { net.engines[node.localID]!.addBootstrap([seed], now: net.now) }
        net.advance(60)
        for node in nodes {
            #expect(
                net.peerCount(node.localID) >= 3, "node \(node.listenPort) has \(net.peerCount(node.localID)) peers")
            #expect(net.engines[node.localID]!.addressBook.count >= 3)
        }
    }

    @Test("100 messages published at random nodes reach every node exactly once")
    func floodDeliversExactlyOnce() {
        var net = SimulatedNetwork()
        let nodes = (0..<8).map { makeEngine(port: UInt16(9100 + $0)) }
        for node in nodes { net.add(node) }
        for node in nodes.dropFirst() {
            net.engines[node.localID]!.addBootstrap([net.address(of: nodes[0].localID)], now: net.now)
        }
        net.advance(30)
        var ids: [MessageID] = []
        var rng = SystemRandomNumberGenerator()
        for i in 0..<100 {
            let origin = nodes[Int.random(in: 0..<8, using: &rng)].localID
            let payload = Array("message \(i)".utf8)
            ids.append(GossipMessage.id(of: payload))
            guard case .success(let actions) = net.engines[origin]!.publish(payload, now: net.now) else {
                Issue.record("publish failed")
                return
            }
            net.delivered[origin, default: []].append(GossipMessage.id(of: payload))  // the origin's app has it
            net.run(origin, actions)
        }
        for node in nodes {
            let got = net.delivered[node.localID] ?? []
            #expect(got.count == 100, "node \(node.listenPort) got \(got.count)")
            #expect(Set(got) == Set(ids))
        }
        let duplicates = nodes.map { net.engines[$0.localID]!.stats.duplicates }.reduce(0, +)
        #expect(duplicates > 0, "a mesh with cycles sees duplicates, which the seen-cache absorbs")
    }

    @Test("a rejected payload is not forwarded and its sender is scored down and discouraged")
    func invalidMessagesBanTheSender() {
        var config = testConfig()
        config.invalidMessagePenalty = 40
        var net = SimulatedNetwork()
        net.validator = { $0.first == 0xad ? .reject("bad marker") : .accept }
        let a = makeEngine(port: 9201, config: config)
        let b = makeEngine(port: 9202, config: config)
        let c = makeEngine(port: 9203, config: config)
        for e in [a, b, c] { net.add(e) }
        net.run(a.localID, net.engines[a.localID]!.connect(to: net.address(of: b.localID), now: net.now))
        net.run(c.localID, net.engines[c.localID]!.connect(to: net.address(of: b.localID), now: net.now))
        #expect(net.peerCount(b.localID) == 2)
        // a sends invalid payloads directly (bypassing its own validation, as a Byzantine peer would).
        let conn = net.engines[a.localID]!.peer(b.localID)!.connection
        for i in 0..<3 {
            net.run(a.localID, [.send(conn, .publish(payload: [0xad, UInt8(i)]))])
        }
        #expect(net.delivered[c.localID] == nil, "invalid payloads are never forwarded")
        #expect(net.engines[b.localID]!.isDiscouraged(id: a.localID, now: net.now))
        #expect(net.engines[b.localID]!.bans.isEmpty, "automatic punishment stays out of the operator's ban list")
        #expect(net.engines[b.localID]!.peer(a.localID) == nil)
        #expect(net.engines[b.localID]!.peer(c.localID) != nil, "other peers keep working")
        // Discouragement holds against reconnection, and expires.
        net.run(a.localID, net.engines[a.localID]!.connect(to: net.address(of: b.localID), now: net.now))
        #expect(net.engines[b.localID]!.peer(a.localID) == nil)
        net.now += config.banDuration + 1
        _ = net.engines[b.localID]!.tick(now: net.now)
        #expect(!net.engines[b.localID]!.isDiscouraged(id: a.localID, now: net.now))
    }

    @Test func malformedBytesBanImmediately() {
        var net = SimulatedNetwork()
        let a = makeEngine(port: 9301)
        let b = makeEngine(port: 9302)
        net.add(a)
        net.add(b)
        net.run(a.localID, net.engines[a.localID]!.connect(to: net.address(of: b.localID), now: net.now))
        let conn = net.engines[b.localID]!.peer(a.localID)!.connection
        let actions = net.engines[b.localID]!.received(conn, bytes: [0xee, 1, 2], now: net.now)
        #expect(net.engines[b.localID]!.isDiscouraged(id: a.localID, now: net.now))
        #expect(actions.contains { if case .disconnect(conn, _) = $0 { true } else { false } })
    }

    @Test func simultaneousDialsLeaveExactlyOneLink() {
        var a = makeEngine(port: 9401)
        var b = makeEngine(port: 9402)
        // a dialled b (a's conn 1 = b's conn 2) and b dialled a (b's conn 3 = a's conn 4) at once.
        _ = a.connected(1, peer: b.localID, host: "127.0.0.1", port: 9402, inbound: false, now: 0)
        _ = b.connected(3, peer: a.localID, host: "127.0.0.1", port: 9401, inbound: false, now: 0)
        let aActions = a.connected(4, peer: b.localID, host: "127.0.0.1", port: 5, inbound: true, now: 0)
        let bActions = b.connected(2, peer: a.localID, host: "127.0.0.1", port: 5, inbound: true, now: 0)
        let keptByA = a.peer(b.localID)!.connection
        let keptByB = b.peer(a.localID)!.connection
        // The surviving link is the one dialled by the smaller id, seen from both ends.
        let aDialsWins = a.localID.precedes(b.localID)
        #expect(keptByA == (aDialsWins ? 1 : 4))
        #expect(keptByB == (aDialsWins ? 2 : 3))
        #expect(aActions.contains { if case .disconnect = $0 { true } else { false } })
        #expect(bActions.contains { if case .disconnect = $0 { true } else { false } })
    }

    @Test func inboundAndPerIPLimits() {
        var config = GossipConfiguration()
        config.maxInbound = 3
        config.maxConnectionsPerIP = 2
        var engine = makeEngine(port: 9500, config: config)
        var accepted = 0
        for i in 0..<5 {
            let actions = engine.connected(
                i, peer: Ed25519.PrivateKey().publicKey, host: "10.0.0.\(i / 2)", port: 1, inbound: true, now: 0)
            if !actions.contains(where: { if case .disconnect = $0 { true } else { false } }) { accepted += 1 }
        }
        #expect(accepted == 3)
        let refused = engine.inboundAttempt(99, host: "10.0.0.0", now: 0)
        #expect(refused == .refuse("too many connections from 10.0.0.0"))
        #expect(engine.peers.values.filter { $0.host == "10.0.0.0" }.count <= 2)
    }

    @Test func rateLimitScoresDownFloods() {
        var config = GossipConfiguration()
        config.messageBurst = 10
        config.messagesPerSecond = 1
        var engine = makeEngine(port: 9600, config: config)
        let peer = Ed25519.PrivateKey().publicKey
        _ = engine.connected(1, peer: peer, host: "10.0.0.1", port: 1, inbound: true, now: 0)
        _ = engine.received(1, bytes: GossipMessage.hello(listenPort: 1, agent: "x").encoded(), now: 0)
        var banned = false
        for i in 0..<200 {
            let actions = engine.received(1, bytes: GossipMessage.ping(nonce: UInt64(i)).encoded(), now: 0)
            if actions.contains(where: { if case .disconnect = $0 { true } else { false } }) {
                banned = true
                break
            }
        }
        #expect(banned)
        #expect(engine.isDiscouraged(id: peer, now: 1))
    }

    @Test func keepaliveAndTimeout() {
        var config = GossipConfiguration()
        config.pingInterval = 10
        config.peerTimeout = 30
        var engine = makeEngine(port: 9700, config: config)
        let peer = Ed25519.PrivateKey().publicKey
        _ = engine.connected(1, peer: peer, host: "10.0.0.1", port: 1, inbound: true, now: 0)
        _ = engine.received(1, bytes: GossipMessage.hello(listenPort: 1, agent: "x").encoded(), now: 0)
        let pingActions = engine.tick(now: 11)
        guard
            case .send(1, .ping(let nonce)) = pingActions.first(where: {
                if case .send(_, .ping) = $0 { true } else { false }
            })
        else {
            Issue.record("no ping after the idle interval")
            return
        }
        _ = engine.received(1, bytes: GossipMessage.pong(nonce: nonce).encoded(), now: 12)
        #expect(engine.peer(peer)?.pingTime == 1)
        #expect(engine.tick(now: 30).allSatisfy { if case .disconnect = $0 { false } else { true } })
        #expect(engine.tick(now: 43).contains { if case .disconnect(1, _) = $0 { true } else { false } })
        #expect(engine.peers.isEmpty)
    }

    @Test func directMessagesGoToOnePeerOnly() {
        var net = SimulatedNetwork()
        let a = makeEngine(port: 9901)
        let b = makeEngine(port: 9902)
        let c = makeEngine(port: 9903)
        for e in [a, b, c] { net.add(e) }
        net.run(a.localID, net.engines[a.localID]!.connect(to: net.address(of: b.localID), now: net.now))
        net.run(c.localID, net.engines[c.localID]!.connect(to: net.address(of: b.localID), now: net.now))
        var toB = net.engines[a.localID]!
        let actions = toB.sendDirect([1, 2, 3], toPeer: b.localID)
        let conn = toB.peer(b.localID)!.connection
        #expect(actions == [.send(conn, .direct(payload: [1, 2, 3]))])
        let bConn = net.engines[b.localID]!.peer(a.localID)!.connection
        let received = net.engines[b.localID]!.received(
            bConn, bytes: GossipMessage.direct(payload: [1, 2, 3]).encoded(), now: net.now)
        #expect(received == [.direct(payload: [1, 2, 3], from: bConn, peer: a.localID)], "delivered, never forwarded")
    }

    @Test func publishRefusesOversizeAndDuplicates() {
        var config = GossipConfiguration()
        config.maxPayload = 10
        var engine = makeEngine(port: 9800, config: config)
        if case .success = engine.publish([UInt8](repeating: 0, count: 11), now: 0) {
            Issue.record("oversize accepted")
        }
        if case .failure = engine.publish([1], now: 0) { Issue.record("first publish refused") }
        if case .success = engine.publish([1], now: 0) { Issue.record("duplicate accepted") }
        // After the seen TTL the same payload is new again.
        _ = engine.tick(now: config.seenTTL + 1)
        if case .failure = engine.publish([1], now: config.seenTTL + 1) { Issue.record("expired id still seen") }
    }
}

@Suite("Bans: any duration an operator or a file gives is clamped")
struct BanClampTests {
    @Test("setban with 1e308, infinity or NaN seconds, or a saved 1e308 until: clamped, printable, never a trap")
    func hugeDurations() {
        var engine = makeEngine(port: 9901)
        let now = 1_800_000_000.0
        for (i, seconds) in [1e308, .infinity, -.infinity, .nan, Ban.maxDuration * 2].enumerated() {
            _ = engine.ban(target: "ip:10.0.0.\(i)", duration: seconds, reason: "test", now: now)
        }
        for ban in engine.bans.values {
            #expect(ban.until.isFinite && ban.until <= Ban.latest, "\(ban)")
            _ = Int(ban.until)  // what listbanned prints: must not trap
        }
        #expect(engine.isBanned(host: "10.0.0.0", now: now + Ban.maxDuration - 1))
        #expect(!engine.isBanned(host: "10.0.0.2", now: now + 1), "a negative duration bans nobody")
        // A ban list saved (or hand-edited) with an absurd time loads clamped.
        let loaded = GossipEngine(
            localID: Ed25519.PrivateKey().publicKey, configuration: testConfig(), listenPort: 9902, agent: "test",
            bans: [
                Ban(target: "ip:1.2.3.4", until: 1e308, reason: "old"),
                Ban(target: "ip:5.6.7.8", until: .nan, reason: "x"),
            ],
            seed: 1)
        #expect(loaded.bans["ip:1.2.3.4"]?.until == Ban.latest)
        #expect(loaded.bans["ip:5.6.7.8"]?.until == 0)
    }
}

@Suite("Bans: bounded")
struct BanLimitTests {
    @Test("free identities cannot grow the ban list without bound: past 10,000 the bans ending soonest go")
    func bounded() {
        var engine = makeEngine(port: 9903)
        for i in 0..<(Ban.maxEntries + 50) {
            _ = engine.ban(target: "id:\(i)", duration: 3_600 + Double(i), reason: "sybil", now: 0)
        }
        #expect(engine.bans.count == Ban.maxEntries)
        #expect(engine.bans["id:0"] == nil && engine.bans["id:\(Ban.maxEntries + 49)"] != nil)
    }
}

@Suite("Transport failures on a live channel")
struct TransportViolationTests {
    @Test("a bad MAC or frame on an established channel disconnects without scoring or banning the peer")
    func noPenalty() {
        var net = SimulatedNetwork()
        let a = makeEngine(port: 9501)
        let b = makeEngine(port: 9502)
        net.add(a)
        net.add(b)
        net.run(a.localID, net.engines[a.localID]!.connect(to: net.address(of: b.localID), now: net.now))
        let conn = net.engines[b.localID]!.peer(a.localID)!.connection
        for _ in 0..<20 {
            let actions = net.engines[b.localID]!.transportViolation(conn, reason: "bad MAC", now: net.now)
            #expect(!actions.contains(.bansChanged))
            #expect(actions.allSatisfy { if case .disconnect = $0 { true } else { false } })
        }
        #expect(!net.engines[b.localID]!.isBanned(id: a.localID, now: net.now), "an on-path bit flip bans nobody")
        #expect(net.engines[b.localID]!.bans.isEmpty)
    }
}
