import NodeCrypto

public typealias ConnectionID = Int
public typealias PeerID = Ed25519.PublicKey

/// The application's verdict on a gossiped payload (libp2p's extended validators):
/// accepted payloads are forwarded; ignored ones are dropped silently (for example
/// while their dependencies are fetched); rejected ones are dropped and the sender
/// is scored down.
public enum Validation: Sendable, Equatable {
    case accept
    case ignore
    case reject(String)
}

/// A ban on a node id or an IP address.
public struct Ban: Sendable, Equatable, Codable {
    public var target: String  // "id:HEX" or "ip:HOST"
    public var until: Double  // UNIX seconds
    public var reason: String

    public init(target: String, until: Double, reason: String) {
        self.target = target
        self.until = until
        self.reason = reason
    }

    /// The longest ban (ten years): operators and files may ask for more, and a time far
    /// beyond it (or not finite) is no date a node can print or compare safely.
    public static let maxDuration: Double = 10 * 365 * 24 * 3_600
    /// The most bans kept (the list is written to disk whole).
    public static let maxEntries = 10_000
    /// The latest `until` any ban can have: `Int(latest)` never traps.
    public static let latest: Double = 4_102_444_800 + maxDuration  // 2100-01-01 + 10 years

    /// `until` within [0, latest] (NaN: 0, already expired).
    static func clamp(_ until: Double) -> Double { until.isNaN ? 0 : min(max(until, 0), latest) }

    static func key(id: PeerID) -> String { "id:\(id.hex)" }
    /// Any spelling of an address is one ban.
    public static func key(host: String) -> String { "ip:\(IPAddress(host)?.description ?? host.lowercased())" }
}

/// Per-connection state the engine keeps; also what `getpeerinfo` reports.
public struct PeerState: Sendable, Equatable {
    public let connection: ConnectionID
    public let nodeID: PeerID
    public let host: String
    public let port: UInt16
    public let inbound: Bool
    public let connectedSince: Double
    public var listenPort: UInt16 = 0
    public var agent = ""
    public var score = 0
    public var messagesIn = 0
    public var messagesOut = 0
    public var duplicates = 0
    public var invalid = 0
    public var lastReceived: Double
    public var pingNonce: UInt64?
    public var pingSentAt: Double?
    public var pingTime: Double?
    var messageTokens: Double
    var addressTokens: Double
    var lastRefill: Double
    var lastGetAddressesAnswered: Double?
    /// When this peer last sent a gossip payload the application accepted (eviction
    /// protects peers that bring news).
    public var lastUseful: Double?
    var helloReceived = false
    /// `host`'s per-host key and network group, parsed once at connection time (limits and
    /// eviction compare them for every peer).
    var hostKey = ""
    var group = ""
}

/// The gossip layer as a pure state machine. The node feeds it connection events,
/// decoded bytes and clock ticks (time is passed in as UNIX seconds) and executes
/// the actions it returns; it never touches sockets, clocks or disks.
public struct GossipEngine: Sendable {
    public enum Action: Sendable, Equatable {
        case send(ConnectionID, GossipMessage)
        case disconnect(ConnectionID, reason: String)
        case dial(NodeAddress)
        /// A new gossip payload (exactly once per message id) for the application to
        /// judge; it answers with `validated(…)`. Nothing is forwarded before that.
        case validate(payload: [UInt8], id: MessageID, from: ConnectionID, peer: PeerID)
        /// A payload a peer sent to this node only.
        case direct(payload: [UInt8], from: ConnectionID, peer: PeerID)
        /// The ban list changed; persist it.
        case bansChanged
    }

    public let localID: PeerID
    public let configuration: GossipConfiguration
    public var listenPort: UInt16
    public var agent: String
    public private(set) var peers: [ConnectionID: PeerState] = [:]
    public private(set) var addressBook: AddressBook
    public private(set) var bans: [String: Ban] = [:]
    public private(set) var discouraged = Discouragement()
    public private(set) var pendingDials: Set<PeerID> = []
    private var seen = SeenCache()
    private var rng: SplitMix64
    private var lastAddressRequest: Double = -.infinity
    private var addressReplyCache: (list: [NodeAddress], until: Double)?
    /// Secret salt for hashing address groups (eviction, address-book buckets).
    let groupKey: [UInt8]
    public private(set) var stats = Stats()

    public struct Stats: Sendable, Equatable {
        public var published = 0
        public var delivered = 0
        public var duplicates = 0
        public var rejected = 0
        public var ignored = 0
    }

    public init(
        localID: PeerID, configuration: GossipConfiguration = .init(), listenPort: UInt16, agent: String,
        addressBook: AddressBook? = nil, bans: [Ban] = [], seed: UInt64
    ) {
        self.localID = localID
        self.configuration = configuration
        self.listenPort = listenPort
        self.agent = agent
        self.rng = SplitMix64(seed: seed)
        var keyRng = SplitMix64(seed: seed ^ 0x5EED_6B0B_5EED_6B0B)
        groupKey = (0..<4).flatMap { _ in withUnsafeBytes(of: keyRng.next()) { Array($0) } }
        // A book without a key of its own (a fresh node in a test) takes one from the seed.
        self.addressBook = addressBook ?? AddressBook(key: SHA256.hash(groupKey))
        // A saved list is input too: canonical targets, clamped times, at most the cap
        // (the bans ending last are kept).
        for var ban in bans.sorted(by: { $0.until > $1.until }).prefix(Ban.maxEntries) {
            ban.until = Ban.clamp(ban.until)
            if ban.target.hasPrefix("ip:") { ban.target = Ban.key(host: String(ban.target.dropFirst(3))) }
            self.bans[ban.target] = ban
        }
    }

    // MARK: Queries

    public func peer(_ id: PeerID) -> PeerState? { peers.values.first { $0.nodeID == id } }
    public var outboundCount: Int { peers.values.filter { !$0.inbound }.count }
    public var inboundCount: Int { peers.values.filter(\.inbound).count }

    public func isBanned(host: String, now: Double) -> Bool {
        (bans[Ban.key(host: host)]?.until ?? 0) > now
    }

    public func isBanned(id: PeerID, now: Double) -> Bool {
        (bans[Ban.key(id: id)]?.until ?? 0) > now
    }

    /// What one host can cheaply hold (an IPv4 address, an IPv6 /64): per-host limits count these.
    static func hostKey(_ host: String) -> String { IPAddress(host)?.hostKey ?? host.lowercased() }

    func connectionCount(hostKey key: String) -> Int { peers.values.filter { $0.hostKey == key }.count }

    /// Inbound connections not yet authenticated: host key, network group, admission time.
    private var pending: [ConnectionID: (hostKey: String, group: String, since: Double)] = [:]
    public var pendingHandshakes: Int { pending.count }

    public enum Admission: Sendable, Equatable {
        /// Start the handshake; drop the connection if it is not done in `timeout` seconds.
        /// `evict`: a pending handshake to drop first to make room.
        case admit(timeout: Double, evict: ConnectionID?)
        case refuse(String)
    }

    /// Whether inbound `connection` from `host` may start a handshake, and how long it gets.
    /// Each admitted one must be matched by `handshakeEnded(_:)`. Unauthenticated
    /// connections cost a descriptor and a Diffie-Hellman each and are invisible elsewhere,
    /// so they are capped in total, per host and per network group (/16, /32: what one
    /// operator can hold). At the total cap the oldest pending handshake of the most
    /// crowded group goes: an attacker fills the table only from many groups, and a
    /// newcomer from a quiet group is never the one evicted. Past half the cap, new ones
    /// get the short timeout. A discouraged host gets in only while inbound slots are free.
    public mutating func inboundAttempt(_ connection: ConnectionID, host: String, now: Double) -> Admission {
        let key = Self.hostKey(host)
        let group = Self.group(host)
        if isBanned(host: host, now: now) { return .refuse("banned") }
        if isDiscouraged(host: host, now: now), inboundCount + pending.count >= configuration.maxInbound {
            return .refuse("discouraged host, inbound slots full")
        }
        let fromHost = pending.values.filter { $0.hostKey == key }.count
        if fromHost >= min(configuration.maxPendingPerHost, configuration.maxConnectionsPerIP) {
            return .refuse("too many pending handshakes from \(key)")
        }
        if pending.values.filter({ $0.group == group }).count >= configuration.maxPendingPerGroup {
            return .refuse("too many pending handshakes from \(group)")
        }
        if connectionCount(hostKey: key) + fromHost >= configuration.maxConnectionsPerIP {
            return .refuse("too many connections from \(key)")
        }
        var evict: ConnectionID?
        if pending.count >= configuration.maxPendingHandshakes {
            let counts = Dictionary(grouping: pending.values, by: \.group).mapValues(\.count)
            evict =
                pending.min { a, b in
                    let (ca, cb) = (counts[a.value.group, default: 0], counts[b.value.group, default: 0])
                    if ca != cb { return ca > cb }
                    return a.value.since != b.value.since ? a.value.since < b.value.since : a.key < b.key
                }?.key
            if let evict { pending[evict] = nil }
        }
        pending[connection] = (key, group, now)
        let pressure = pending.count * 2 > configuration.maxPendingHandshakes
        return .admit(
            timeout: pressure
                ? min(configuration.handshakeTimeout, configuration.pressureHandshakeTimeout)
                : configuration.handshakeTimeout,
            evict: evict)
    }

    /// An admitted inbound connection finished its handshake, failed, closed or was evicted.
    public mutating func handshakeEnded(_ connection: ConnectionID) { pending[connection] = nil }

    // MARK: Connection events

    public mutating func connected(
        _ connection: ConnectionID, peer: PeerID, host: String, port: UInt16, inbound: Bool, now: Double
    ) -> [Action] {
        if !inbound { pendingDials.remove(peer) }
        if peer == localID { return [.disconnect(connection, reason: "connected to self")] }
        if isBanned(id: peer, now: now) || isBanned(host: host, now: now) || isDiscouraged(id: peer, now: now) {
            if !inbound { addressBook.markFailure(peer, config: configuration, now: now) }
            return [.disconnect(connection, reason: "banned")]
        }
        var actions: [Action] = []
        if let existing = self.peer(peer) {
            // Both sides keep the connection dialled by the smaller node id, so a
            // simultaneous dial leaves exactly one link.
            let newInitiator = inbound ? peer : localID
            let keepNew = newInitiator == (localID.precedes(peer) ? localID : peer)
            if !keepNew { return [.disconnect(connection, reason: "duplicate connection")] }
            peers[existing.connection] = nil
            actions.append(.disconnect(existing.connection, reason: "duplicate connection"))
        }
        if connectionCount(hostKey: Self.hostKey(host)) >= configuration.maxConnectionsPerIP {
            // A dial we cannot keep counts as failed, or the book would redial it every tick.
            if !inbound { addressBook.markFailure(peer, config: configuration, now: now) }
            return actions + [.disconnect(connection, reason: "too many connections from \(host)")]
        }
        if inbound && inboundCount >= configuration.maxInbound {
            // Full: make room by evicting the least useful inbound peer, as Bitcoin Core does.
            guard let victim = evictionCandidate(now: now) else {
                return actions + [.disconnect(connection, reason: "too many inbound connections")]
            }
            peers[victim] = nil
            actions.append(.disconnect(victim, reason: "evicted for a new inbound connection"))
        }
        peers[connection] = PeerState(
            connection: connection, nodeID: peer, host: host, port: port, inbound: inbound, connectedSince: now,
            lastReceived: now, messageTokens: configuration.messageBurst, addressTokens: configuration.addressBurst,
            lastRefill: now, hostKey: Self.hostKey(host), group: Self.group(host))
        if !inbound { addressBook.markSuccess(peer, now: now) }
        actions.append(.send(connection, .hello(listenPort: listenPort, agent: agent)))
        if !inbound { actions += requestAddresses(from: connection, now: now) }
        return countOut(actions)
    }

    public mutating func disconnected(_ connection: ConnectionID, now: Double) -> [Action] {
        guard let peer = peers.removeValue(forKey: connection) else { return [] }
        // A link that held for a minute was good; one dropped at once backs off like a failed dial.
        if !peer.inbound {
            if now - peer.connectedSince >= 60 {
                addressBook.markDisconnected(peer.nodeID, now: now)
            } else {
                addressBook.markFailure(peer.nodeID, config: configuration, now: now)
            }
        }
        return []
    }

    public mutating func dialFailed(_ address: NodeAddress, now: Double) -> [Action] {
        pendingDials.remove(address.nodeID)
        addressBook.markFailure(address.nodeID, config: configuration, now: now)
        return []
    }

    /// A transport-level failure on an authenticated connection (bad MAC, framing
    /// violation): the connection goes, but nobody is scored down — anyone on the path can
    /// flip a bit, and banning the peer for it would let an on-path attacker make honest
    /// nodes ban each other. The peer may reconnect (a fresh handshake, fresh keys).
    public mutating func transportViolation(_ connection: ConnectionID, reason: String, now: Double) -> [Action] {
        guard peers[connection] != nil else { return [] }
        return [.disconnect(connection, reason: reason)]
    }

    // MARK: Messages

    public mutating func received(_ connection: ConnectionID, bytes: [UInt8], now: Double) -> [Action] {
        guard var peer = peers[connection] else { return [] }
        refill(&peer, now: now)
        peer.lastReceived = now
        peer.messagesIn += 1
        guard peer.messageTokens >= 1 else {
            peers[connection] = peer
            return penalize(connection, 10, reason: "message rate limit exceeded", now: now)
        }
        peer.messageTokens -= 1
        peers[connection] = peer
        let message: GossipMessage
        do {
            message = try GossipMessage.decode(bytes, maxPayload: configuration.maxPayload)
        } catch {
            return penalize(connection, configuration.malformedPenalty, reason: "malformed message: \(error)", now: now)
        }
        // `hello` comes first; a second one changes nothing.
        if case .hello = message {
            if peer.helloReceived { return [] }
            peers[connection]?.helloReceived = true
        } else if !peer.helloReceived {
            return penalize(
                connection, configuration.malformedPenalty, reason: "message before hello", now: now)
        }
        switch message {
        case .hello(let port, let agent):
            peers[connection]?.listenPort = port
            peers[connection]?.agent = agent
            // The peer's own address, seen on its authenticated connection: it may replace
            // hearsay about this id. Only an inbound peer's: we dialled an outbound one.
            if port != 0, peer.inbound {
                addressBook.add(
                    NodeAddress(nodeID: peer.nodeID, host: peer.host, port: port), source: peer.host, observed: true,
                    config: configuration, now: now)
            }
            return []
        case .ping(let nonce):
            return countOut([.send(connection, .pong(nonce: nonce))])
        case .pong(let nonce):
            if nonce == peer.pingNonce, let sent = peer.pingSentAt {
                peers[connection]?.pingTime = now - sent
                peers[connection]?.pingNonce = nil
            }
            return []
        case .getAddresses:
            if let last = peer.lastGetAddressesAnswered, now - last < configuration.addressRefreshInterval / 2 {
                return []
            }
            peers[connection]?.lastGetAddressesAnswered = now
            // One sample serves every asker for a while (Bitcoin Core caches a day), so
            // reconnecting with fresh ids does not page through the whole book. Our own
            // address is not included: the peer learned it from our hello.
            if addressReplyCache.map({ $0.until <= now }) ?? true {
                let list = addressBook.sample(
                    limit: configuration.addressReplySize, excluding: localID, config: configuration, using: &rng)
                addressReplyCache = (list, now + configuration.addressRefreshInterval * 10)
            }
            let list = addressReplyCache?.list.filter { $0.nodeID != peer.nodeID } ?? []
            return countOut([.send(connection, .addresses(list))])
        case .addresses(let list):
            // Past the peer's budget the rest are dropped, not punished (Bitcoin Core): an
            // answer to our own getaddr is credited when we ask.
            let allowed = min(list.count, Int(max(0, peer.addressTokens)))
            peers[connection]?.addressTokens -= Double(allowed)
            for address in list.prefix(allowed) where address.nodeID != localID {
                addressBook.add(address, source: peer.host, config: configuration, now: now)
            }
            return []
        case .publish(let payload):
            return handlePublish(payload, from: connection, now: now)
        case .direct(let payload):
            return [.direct(payload: payload, from: connection, peer: peer.nodeID)]
        }
    }

    private mutating func handlePublish(_ payload: [UInt8], from connection: ConnectionID, now: Double) -> [Action] {
        let id = GossipMessage.id(of: payload)
        guard seen.insert(id, expiry: now + configuration.seenTTL, capacity: configuration.seenCapacity) else {
            peers[connection]?.duplicates += 1
            stats.duplicates += 1
            return []
        }
        guard let peer = peers[connection]?.nodeID else { return [] }
        return [.validate(payload: payload, id: id, from: connection, peer: peer)]
    }

    /// The application's verdict on a `.validate` action.
    public mutating func validated(
        _ payload: [UInt8], from connection: ConnectionID?, result: Validation, now: Double
    ) -> [Action] {
        switch result {
        case .accept:
            stats.delivered += 1
            if let connection { peers[connection]?.lastUseful = now }
            return forward(payload, except: connection)
        case .ignore:
            stats.ignored += 1
            return []
        case .reject(let reason):
            stats.rejected += 1
            guard let connection, peers[connection] != nil else { return [] }
            peers[connection]?.invalid += 1
            return penalize(
                connection, configuration.invalidMessagePenalty, reason: "invalid message: \(reason)", now: now)
        }
    }

    /// Publishes a payload the application already accepted: it is marked seen and
    /// sent to every peer.
    public mutating func publish(_ payload: [UInt8], now: Double) -> Result<[Action], GossipError> {
        guard payload.count <= configuration.maxPayload else {
            return .failure(GossipError("payload of \(payload.count) bytes exceeds \(configuration.maxPayload)"))
        }
        let id = GossipMessage.id(of: payload)
        guard seen.insert(id, expiry: now + configuration.seenTTL, capacity: configuration.seenCapacity) else {
            return .failure(GossipError("message \(id) was already seen"))
        }
        stats.published += 1
        return .success(forward(payload, except: nil))
    }

    /// Sends a payload the application accepted later (after its dependencies
    /// arrived) to every peer, whether or not its id was seen before.
    public mutating func broadcast(_ payload: [UInt8], now: Double) -> [Action] {
        _ = seen.insert(
            GossipMessage.id(of: payload), expiry: now + configuration.seenTTL, capacity: configuration.seenCapacity)
        return forward(payload, except: nil)
    }

    /// Sends a payload to one peer only.
    public mutating func sendDirect(_ payload: [UInt8], to connection: ConnectionID) -> [Action] {
        guard peers[connection] != nil else { return [] }
        return countOut([.send(connection, .direct(payload: payload))])
    }

    /// Sends a payload to one peer by node id.
    public mutating func sendDirect(_ payload: [UInt8], toPeer id: PeerID) -> [Action] {
        guard let peer = peer(id) else { return [] }
        return sendDirect(payload, to: peer.connection)
    }

    /// A random connected peer, for anti-entropy rounds.
    public mutating func randomPeer() -> ConnectionID? {
        let keys = peers.keys.sorted()
        return keys.isEmpty ? nil : keys[Int(rng.next() % UInt64(keys.count))]
    }

    /// Penalises a peer for an application-level violation found outside gossip
    /// validation (for example an invalid transaction in a sync reply).
    public mutating func penalize(peer connection: ConnectionID, points: Int, reason: String, now: Double) -> [Action] {
        penalize(connection, points, reason: reason, now: now)
    }

    private mutating func forward(_ payload: [UInt8], except: ConnectionID?) -> [Action] {
        let message = GossipMessage.publish(payload: payload)
        return countOut(peers.keys.sorted().filter { $0 != except }.map { .send($0, message) })
    }

    // MARK: Inbound eviction

    /// Peers the application wants kept (the current validators): never evicted.
    public var protectedPeers: Set<PeerID> = []

    /// The inbound peer to drop for a new one, or nil when every inbound peer is protected
    /// (Bitcoin Core's `SelectNodeToEvict`). An attacker must beat honest peers on every
    /// axis at once (network diversity, latency, useful messages, age) to push them out.
    func evictionCandidate(now: Double) -> ConnectionID? {
        var candidates = peers.values.filter { $0.inbound && !protectedPeers.contains($0.nodeID) }
        // Protects the best `count` among the peers `eligible` admits (no credit for a
        // ping never measured or a useful message never sent).
        func protect(
            _ count: Int, eligible: (PeerState) -> Bool = { _ in true }, by better: (PeerState, PeerState) -> Bool
        ) {
            let kept = Set(
                candidates.filter(eligible)
                    .sorted { better($0, $1) || (!better($1, $0) && $0.connection < $1.connection) }
                    .prefix(count).map(\.connection))
            candidates.removeAll { kept.contains($0.connection) }
        }
        // Keyed by a secret so an attacker cannot pick groups that sort first.
        let keyedGroup = Dictionary(
            candidates.map { ($0.group, SHA256.hash(groupKey + Array($0.group.utf8))) }, uniquingKeysWith: { a, _ in a }
        )
        protect(configuration.evictionProtectGroups) {
            keyedGroup[$0.group]!.lexicographicallyPrecedes(keyedGroup[$1.group]!)
        }
        protect(
            configuration.evictionProtectPing, eligible: { $0.pingTime != nil }, by: { $0.pingTime! < $1.pingTime! })
        protect(
            configuration.evictionProtectUseful, eligible: { $0.lastUseful != nil },
            by: { $0.lastUseful! > $1.lastUseful! })
        protect(candidates.count / 2) { $0.connectedSince < $1.connectedSince }
        guard !candidates.isEmpty else { return nil }
        // Peers from a discouraged host go first (Bitcoin Core's prefer-evict).
        let preferred = candidates.filter { isDiscouraged(host: $0.host, now: now) }
        if !preferred.isEmpty { candidates = preferred }
        // The most crowded group loses its youngest connection.
        let byGroup = Dictionary(grouping: candidates, by: \.group)
        let crowded = byGroup.max { a, b in
            a.value.count != b.value.count
                ? a.value.count < b.value.count
                : a.value.map(\.connectedSince).max()! < b.value.map(\.connectedSince).max()!
        }!
        return crowded.value.max { a, b in
            a.connectedSince != b.connectedSince ? a.connectedSince < b.connectedSince : a.connection < b.connection
        }!.connection
    }

    /// The address group of a host: /16 for IPv4, /32 for IPv6, the address when local.
    static func group(_ host: String) -> String { IPAddress(host)?.group ?? "name:\(host.lowercased())" }

    // MARK: Scoring and bans

    private mutating func penalize(_ connection: ConnectionID, _ points: Int, reason: String, now: Double) -> [Action] {
        guard var peer = peers[connection] else { return [] }
        peer.score += points
        peers[connection] = peer
        guard peer.score >= configuration.banThreshold else { return [] }
        return discourage(peer, reason: reason, now: now)
    }

    /// Misbehaviour: the id is refused for `banDuration` and its connections go. Its host
    /// (unless local: a loopback testnet or a LAN shares one address among honest nodes)
    /// is marked too, but softly, as Bitcoin Core does: honest peers behind the same NAT
    /// keep their connections; the host's new inbound connections get in only while slots
    /// are free and are evicted first. The operator's ban list is untouched.
    private mutating func discourage(_ peer: PeerState, reason: String, now: Double) -> [Action] {
        let until = Ban.clamp(now + configuration.banDuration)
        discouraged.insert(Ban.key(id: peer.nodeID), until: until, reason: reason)
        if IPAddress(peer.host)?.isLocal == false {
            discouraged.insert(Self.discouragementKey(hostKey: peer.hostKey), until: until, reason: reason)
        }
        var actions: [Action] = []
        for (connection, other) in peers.sorted(by: { $0.key < $1.key }) where other.nodeID == peer.nodeID {
            peers[connection] = nil
            actions.append(.disconnect(connection, reason: "discouraged: \(reason)"))
        }
        return actions
    }

    /// Whether `host` (any spelling; its IPv4 address or IPv6 /64) misbehaved recently.
    public func isDiscouraged(host: String, now: Double) -> Bool {
        discouraged.contains(Self.discouragementKey(hostKey: Self.hostKey(host)), now: now)
    }

    static func discouragementKey(hostKey: String) -> String { "host:\(hostKey)" }

    public func isDiscouraged(id: PeerID, now: Double) -> Bool { discouraged.contains(Ban.key(id: id), now: now) }

    /// Bans a node id (`id:HEX`) or address (`ip:HOST`) and drops matching connections.
    public mutating func ban(target: String, duration: Double, reason: String, now: Double) -> [Action] {
        let duration = duration.isNaN ? 0 : min(max(duration, 0), Ban.maxDuration)
        bans[target] = Ban(target: target, until: Ban.clamp(now + duration), reason: reason)
        // Bounded: identities are free, so past the limit the bans ending soonest go first.
        if bans.count > Ban.maxEntries {
            for (key, _) in bans.sorted(by: { $0.value.until < $1.value.until }).prefix(bans.count - Ban.maxEntries) {
                bans[key] = nil
            }
        }
        var actions: [Action] = [.bansChanged]
        for (connection, peer) in peers.sorted(by: { $0.key < $1.key })
        where Ban.key(id: peer.nodeID) == target || Ban.key(host: peer.host) == target {
            peers[connection] = nil
            actions.append(.disconnect(connection, reason: "banned: \(reason)"))
        }
        return actions
    }

    public mutating func unban(target: String) -> Bool { bans.removeValue(forKey: target) != nil }

    /// `clearbanned`: the operator's bans and the discouraged ids and hosts.
    public mutating func clearBans() {
        bans.removeAll()
        discouraged.removeAll()
    }

    public func activeBans(now: Double) -> [Ban] {
        bans.values.filter { $0.until > now }.sorted { $0.target < $1.target }
    }

    // MARK: Operator actions

    /// Adds an address as persistent and dials it now.
    public mutating func connect(to address: NodeAddress, now: Double) -> [Action] {
        addressBook.add(address, source: nil, persistent: true, config: configuration, now: now)
        guard peer(address.nodeID) == nil, !pendingDials.contains(address.nodeID), address.nodeID != localID else {
            return []
        }
        pendingDials.insert(address.nodeID)
        addressBook.markAttempt(address.nodeID, now: now)
        return [.dial(address)]
    }

    public mutating func addBootstrap(_ addresses: [NodeAddress], now: Double) {
        for address in addresses where address.nodeID != localID {
            addressBook.add(address, source: nil, persistent: true, config: configuration, now: now)
        }
    }

    public mutating func disconnect(peer id: PeerID) -> [Action] {
        guard let peer = peer(id) else { return [] }
        peers[peer.connection] = nil
        return [.disconnect(peer.connection, reason: "disconnected by operator")]
    }

    /// Outbound peers to dial first after a restart: the two longest connected that the
    /// book knows by address.
    public var anchorCandidates: [NodeAddress] {
        peers.values.filter { !$0.inbound }.sorted { $0.connectedSince < $1.connectedSince }
            .compactMap { addressBook.address(of: $0.nodeID) }.prefix(2).map(\.self)
    }

    // MARK: Timers

    /// Called about once a second: expiries, keepalive, timeouts, dialling.
    public mutating func tick(now: Double) -> [Action] {
        var actions: [Action] = []
        seen.expire(now: now)
        let expired = bans.filter { $0.value.until <= now }.map(\.key)
        if !expired.isEmpty {
            for key in expired { bans[key] = nil }
            actions.append(.bansChanged)
        }
        for (connection, var peer) in peers.sorted(by: { $0.key < $1.key }) {
            refill(&peer, now: now)
            if now - peer.lastReceived >= configuration.peerTimeout {
                peers[connection] = nil
                actions.append(.disconnect(connection, reason: "timeout: silent for \(Int(now - peer.lastReceived)) s"))
                continue
            }
            // Every peer is pinged each interval, busy or not: eviction protects low ping
            // times, which only idle peers would otherwise have.
            if now - (peer.pingSentAt ?? peer.connectedSince) >= configuration.pingInterval && peer.pingNonce == nil {
                let nonce = rng.next()
                peer.pingNonce = nonce
                peer.pingSentAt = now
                actions += countOut([.send(connection, .ping(nonce: nonce))])
            }
            peers[connection] = peer
        }
        addressBook.resolveCollisions(now: now, connected: Set(peers.values.filter { !$0.inbound }.map(\.nodeID)))
        let connected = Set(peers.values.map(\.nodeID))
        let needed = configuration.outboundTarget - outboundCount - pendingDials.count
        if needed > 0 {
            let excluded = connected.union(pendingDials).union([localID])
            // Anchors (outbound peers before the last restart) first, then the book's draw.
            let anchors = addressBook.takeAnchors().filter { !excluded.contains($0.nodeID) }
            let busy = Set(peers.values.filter { !$0.inbound }.map(\.group))
            let drawn = addressBook.select(
                limit: needed * 2, now: now, excluding: excluded.union(anchors.map(\.nodeID)), busyGroups: busy,
                using: &rng)
            var dialled = 0
            for address in anchors + drawn
            where !isBanned(id: address.nodeID, now: now) && !isBanned(host: address.host, now: now)
                && !isDiscouraged(id: address.nodeID, now: now) && !isDiscouraged(host: address.host, now: now)
            {
                if dialled >= needed { break }
                pendingDials.insert(address.nodeID)
                addressBook.markAttempt(address.nodeID, now: now)
                actions.append(.dial(address))
                dialled += 1
            }
            // Short of peers: ask a random peer for more addresses now and then.
            if now - lastAddressRequest >= configuration.addressRefreshInterval, !peers.isEmpty {
                let keys = peers.keys.sorted()
                let pick = keys[Int(rng.next() % UInt64(keys.count))]
                actions += countOut(requestAddresses(from: pick, now: now))
            }
        }
        return actions
    }

    // MARK: Helpers

    /// Asks a peer for addresses, crediting its address budget with the answer's size so
    /// the answer is never over budget.
    private mutating func requestAddresses(from connection: ConnectionID, now: Double) -> [Action] {
        peers[connection]?.addressTokens += Double(configuration.addressReplySize)
        lastAddressRequest = now
        return [.send(connection, .getAddresses)]
    }

    private mutating func refill(_ peer: inout PeerState, now: Double) {
        let elapsed = max(0, now - peer.lastRefill)
        peer.messageTokens = min(
            configuration.messageBurst, peer.messageTokens + elapsed * configuration.messagesPerSecond)
        // Credit for our own getaddr may lift the bucket above its burst; refilling never lowers it.
        peer.addressTokens = max(
            peer.addressTokens,
            min(configuration.addressBurst, peer.addressTokens + elapsed * configuration.addressesPerSecond))
        peer.lastRefill = now
    }

    private mutating func countOut(_ actions: [Action]) -> [Action] {
        for action in actions {
            if case .send(let connection, _) = action { peers[connection]?.messagesOut += 1 }
        }
        return actions
    }
}

public struct GossipError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Message ids seen recently, expiring after a TTL and bounded in count.
struct SeenCache: Sendable {
    private var expiries: [MessageID: Double] = [:]
    private var order: [(MessageID, Double)] = []
    private var head = 0

    /// Inserts `id`; false if it was already present.
    mutating func insert(_ id: MessageID, expiry: Double, capacity: Int) -> Bool {
        if expiries[id] != nil { return false }
        expiries[id] = expiry
        order.append((id, expiry))
        while expiries.count > capacity { evictOldest() }
        return true
    }

    mutating func expire(now: Double) {
        while head < order.count, order[head].1 <= now { evictOldest() }
        if head > 4096 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    private mutating func evictOldest() {
        guard head < order.count else { return }
        let (id, expiry) = order[head]
        head += 1
        if expiries[id] == expiry { expiries[id] = nil }
    }

    var count: Int { expiries.count }
}

/// A small deterministic generator so the engine stays a pure function of its inputs.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Ed25519.PublicKey {
    /// Byte-wise order of node ids, used to break ties deterministically.
    public func precedes(_ other: Ed25519.PublicKey) -> Bool {
        rawRepresentation.lexicographicallyPrecedes(other.rawRepresentation)
    }
}
