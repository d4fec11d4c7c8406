import NodeCrypto

/// Known peer addresses, kept as Bitcoin Core's addrman keeps them so that no peer can
/// fill the book or choose whom the node dials:
/// - *new* (heard of) and *tried* (reached) tables of fixed-size buckets; an address's
///   bucket is a keyed hash of its network group and of the group of the peer that told
///   us, so one source reaches a few buckets and one network fewer still;
/// - a slot already taken is kept unless its entry is terrible (new) or fails a test
///   connection (tried: test-before-evict);
/// - hearsay never changes a known id's address; only IP literals are kept, local ones
///   only when configured;
/// - dial candidates are drawn at random, never in an order an attacker can grind.
/// Operator and bootstrap peers (`persistent`) live outside the tables and may be names.
public struct AddressBook: Sendable, Equatable {
    public struct Entry: Sendable, Equatable, Codable {
        public var address: String  // NODEID@HOST:PORT
        public var tried: Bool
        public var failures: Int
        public var lastSuccess: Double?
        public var lastAttempt: Double?
        /// Not dialled before this time (backoff).
        public var retryAt: Double
        /// Bootstrap and operator-added peers: never evicted, always retried.
        public var persistent: Bool
        /// The network group of the peer that told us (bucket placement).
        public var source: String?
    }

    /// What `peers.json` holds.
    public struct Snapshot: Sendable, Equatable, Codable {
        public var version = 2
        /// The secret bucket key, hex: kept so the placement survives restarts and stays unknown.
        public var key: String
        public var entries: [Entry]
        /// Outbound peers at the last stop, dialled first at the next start (eclipse resistance
        /// across restarts).
        public var anchors: [String]
    }

    public static let newBuckets = 256
    public static let triedBuckets = 64
    public static let bucketSize = 16
    /// One source group spreads over this many new buckets; one address group over this
    /// many tried buckets.
    static let newBucketsPerSourceGroup = 32
    static let triedBucketsPerGroup = 8
    /// Tried entries reached this recently are not put to a test by a colliding newcomer.
    static let recentlyTried: Double = 4 * 3_600
    /// Operator and bootstrap peers kept at most.
    static let maxPersistent = 1_000
    /// A collision unresolved this long evicts the old entry.
    static let collisionTimeout: Double = 40 * 60

    public private(set) var entries: [Ed25519.PublicKey: Entry] = [:]
    private var parsed: [Ed25519.PublicKey: NodeAddress] = [:]
    private var newSlots: [Int: Ed25519.PublicKey] = [:]
    private var triedSlots: [Int: Ed25519.PublicKey] = [:]
    /// Reached newcomers waiting for the tried entry in their slot to be tested.
    private var collisions: [Ed25519.PublicKey: (occupant: Ed25519.PublicKey, since: Double)] = [:]
    public private(set) var anchors: [NodeAddress] = []
    let key: [UInt8]

    public init(key: [UInt8]) { self.key = key }

    public init() { self.init(key: Self.randomKey()) }

    static func randomKey() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    public init(snapshot: Snapshot, config: GossipConfiguration = .init()) {
        let keyBytes = (try? Hex.decode(snapshot.key)).flatMap { $0.count == 32 ? $0 : nil }
        self.init(key: keyBytes ?? Self.randomKey())
        // A saved file is input too: duplicate ids, absurd counters, more persistent entries
        // than an operator adds, and anchors the tables would refuse are dropped or clamped.
        var persistentCount = 0
        for var entry in snapshot.entries {
            guard let address = try? NodeAddress(parsing: entry.address), entries[address.nodeID] == nil else {
                continue
            }
            entry.failures = min(max(entry.failures, 0), 64)
            if !entry.retryAt.isFinite { entry.retryAt = 0 }
            if entry.persistent {
                persistentCount += 1
                guard persistentCount <= Self.maxPersistent else { continue }
                entries[address.nodeID] = entry
                parsed[address.nodeID] = address
            } else if entry.tried {
                guard let canonical = admissible(address, config: config), triedSlots[triedSlot(canonical)] == nil
                else { continue }
                entries[address.nodeID] = entry
                parsed[address.nodeID] = canonical
                triedSlots[triedSlot(canonical)] = address.nodeID
            } else {
                guard let canonical = admissible(address, config: config) else { continue }
                let slot = newSlot(canonical, source: entry.source ?? "")
                guard newSlots[slot] == nil else { continue }
                entries[address.nodeID] = entry
                parsed[address.nodeID] = canonical
                newSlots[slot] = address.nodeID
            }
        }
        anchors = snapshot.anchors.prefix(2).compactMap {
            (try? NodeAddress(parsing: $0)).flatMap { admissible($0, config: config) }
        }
    }

    /// Entries from a version-1 file (a bare array): all go through the tables afresh.
    public init(entries: [Entry], config: GossipConfiguration = .init()) {
        self.init(snapshot: Snapshot(key: Hex.encode(Self.randomKey()), entries: entries, anchors: []), config: config)
    }

    public func snapshot(anchors: [NodeAddress]) -> Snapshot {
        Snapshot(
            key: Hex.encode(key), entries: allEntries, anchors: anchors.prefix(2).map(\.description))
    }

    public static func == (a: AddressBook, b: AddressBook) -> Bool {
        a.entries == b.entries && a.key == b.key && a.anchors == b.anchors
    }

    public var count: Int { entries.count }
    public var triedCount: Int { entries.values.filter(\.tried).count }

    public func address(of id: Ed25519.PublicKey) -> NodeAddress? { parsed[id] }
    public func entry(of id: Ed25519.PublicKey) -> Entry? { entries[id] }

    // MARK: Placement

    private func hash(_ parts: [String]) -> UInt64 {
        let digest = SHA256.hash(key + Array(parts.joined(separator: "\u{0}").utf8))
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The group that places an address: its network group, or for a local address the
    /// endpoint itself (a loopback testnet is one host with many ports).
    private func placementGroup(_ address: NodeAddress) -> String {
        let group = GossipEngine.group(address.host)
        return group.hasPrefix("local:") ? "local:\(address.endpoint)" : group
    }

    private func newSlot(_ address: NodeAddress, source: String) -> Int {
        let group = placementGroup(address)
        let spread = hash(["N1", group, source]) % UInt64(Self.newBucketsPerSourceGroup)
        let bucket = Int(hash(["N2", source, String(spread)]) % UInt64(Self.newBuckets))
        let position = Int(hash(["P", "N", String(bucket), address.endpoint.description]) % UInt64(Self.bucketSize))
        return bucket * Self.bucketSize + position
    }

    private func triedSlot(_ address: NodeAddress) -> Int {
        let group = placementGroup(address)
        let spread = hash(["T1", address.endpoint.description]) % UInt64(Self.triedBucketsPerGroup)
        let bucket = Int(hash(["T2", group, String(spread)]) % UInt64(Self.triedBuckets))
        let position = Int(hash(["P", "T", String(bucket), address.endpoint.description]) % UInt64(Self.bucketSize))
        return bucket * Self.bucketSize + position
    }

    /// The address with its host in canonical form, or nil when it may not enter the tables:
    /// not an IP literal, or local (loopback, private, …) while local addresses are off.
    public func admissible(_ address: NodeAddress, config: GossipConfiguration) -> NodeAddress? {
        guard let ip = IPAddress(address.host), address.port != 0 else { return nil }
        guard config.allowLocalAddresses || !ip.isLocal else { return nil }
        return NodeAddress(nodeID: address.nodeID, host: ip.description, port: address.port)
    }

    /// A new entry that may be overwritten: failing and never reached.
    private func isTerrible(_ entry: Entry, now: Double) -> Bool {
        !entry.persistent && !entry.tried && entry.failures >= 3
    }

    // MARK: Learning addresses

    /// Adds an address a peer told us (`source`: that peer's host) or an operator gave
    /// (`persistent`). Returns whether the book now holds it under that id. Hearsay about
    /// an id already known changes nothing; `observed` (the peer's own authenticated
    /// connection) may move a not-yet-tried entry.
    @discardableResult
    public mutating func add(
        _ address: NodeAddress, source: String?, persistent: Bool = false, observed: Bool = false,
        config: GossipConfiguration, now: Double
    ) -> Bool {
        if persistent {
            if let old = entries[address.nodeID], !old.persistent { removeFromTables(address.nodeID) }
            var entry =
                entries[address.nodeID]
                ?? Entry(
                    address: address.description, tried: false, failures: 0, lastSuccess: nil, lastAttempt: nil,
                    retryAt: now, persistent: true, source: nil)
            entry.address = address.description
            entry.persistent = true
            entry.tried = false
            entries[address.nodeID] = entry
            parsed[address.nodeID] = address
            return true
        }
        guard let address = admissible(address, config: config) else { return false }
        if let existing = entries[address.nodeID] {
            if existing.persistent || existing.tried || !observed { return parsed[address.nodeID] == address }
            removeFromTables(address.nodeID)
        }
        let sourceGroup = source.map { GossipEngine.group($0) } ?? ""
        let slot = newSlot(address, source: sourceGroup)
        if let occupant = newSlots[slot] {
            // Even the peer's own connection does not push out another id's healthy entry.
            guard let old = entries[occupant], isTerrible(old, now: now) else { return false }
            removeFromTables(occupant)
        }
        entries[address.nodeID] = Entry(
            address: address.description, tried: false, failures: 0, lastSuccess: nil, lastAttempt: nil,
            retryAt: now, persistent: false, source: sourceGroup)
        parsed[address.nodeID] = address
        newSlots[slot] = address.nodeID
        return true
    }

    private mutating func removeFromTables(_ id: Ed25519.PublicKey) {
        guard let entry = entries[id], let address = parsed[id] else { return }
        if !entry.persistent {
            if entry.tried {
                let slot = triedSlot(address)
                if triedSlots[slot] == id { triedSlots[slot] = nil }
            } else {
                let slot = newSlot(address, source: entry.source ?? "")
                if newSlots[slot] == id { newSlots[slot] = nil }
            }
        }
        entries[id] = nil
        parsed[id] = nil
        collisions[id] = nil
    }

    public mutating func remove(_ id: Ed25519.PublicKey) { removeFromTables(id) }

    // MARK: Outcomes

    public mutating func markAttempt(_ id: Ed25519.PublicKey, now: Double) {
        entries[id]?.lastAttempt = now
    }

    /// An outbound connection to `id` completed: a new entry moves to tried, unless its
    /// tried slot holds an entry not reached lately; that one is tested first.
    public mutating func markSuccess(_ id: Ed25519.PublicKey, now: Double) {
        guard var entry = entries[id], let address = parsed[id] else { return }
        entry.failures = 0
        entry.lastSuccess = now
        entry.retryAt = now
        entries[id] = entry
        guard !entry.persistent, !entry.tried else { return }
        let slot = triedSlot(address)
        if let occupant = triedSlots[slot], occupant != id {
            let old = entries[occupant]
            if let last = old?.lastSuccess, now - last < Self.recentlyTried { return }
            if collisions[id] == nil {
                collisions[id] = (occupant, now)
                entries[occupant]?.retryAt = now  // dial it soon: that is the test
            }
            return
        }
        moveToTried(id, slot: slot)
    }

    private mutating func moveToTried(_ id: Ed25519.PublicKey, slot: Int) {
        guard let entry = entries[id], let address = parsed[id] else { return }
        let old = newSlot(address, source: entry.source ?? "")
        if newSlots[old] == id { newSlots[old] = nil }
        entries[id]?.tried = true
        triedSlots[slot] = id
        collisions[id] = nil
    }

    /// Settles test-before-evict: an occupant reached since the collision stays; one that
    /// failed since, or was not tested in time, gives its slot to the newcomer (and goes
    /// back to the new table if there is room).
    /// `connected`: ids we hold a connection to now; such an occupant has passed its test.
    public mutating func resolveCollisions(now: Double, connected: Set<Ed25519.PublicKey> = []) {
        for (id, collision) in collisions.sorted(by: { $0.key.precedes($1.key) }) {
            guard let address = parsed[id], entries[id] != nil else {
                collisions[id] = nil
                continue
            }
            if connected.contains(collision.occupant) {
                entries[collision.occupant]?.lastSuccess = now
                collisions[id] = nil
                continue
            }
            let occupant = entries[collision.occupant]
            if let success = occupant?.lastSuccess, success >= collision.since {
                collisions[id] = nil
                continue
            }
            let failed = (occupant?.lastAttempt ?? -.infinity) >= collision.since && (occupant?.failures ?? 1) > 0
            guard occupant == nil || failed || now - collision.since >= Self.collisionTimeout else { continue }
            let slot = triedSlot(address)
            if let evicted = triedSlots[slot], let evictedAddress = parsed[evicted], var evictedEntry = entries[evicted]
            {
                triedSlots[slot] = nil
                evictedEntry.tried = false
                let back = newSlot(evictedAddress, source: evictedEntry.source ?? "")
                if newSlots[back] == nil {
                    newSlots[back] = evicted
                    entries[evicted] = evictedEntry
                } else {
                    entries[evicted] = nil
                    parsed[evicted] = nil
                }
            }
            moveToTried(id, slot: slot)
        }
    }

    /// An outbound connection that worked ended: the address was good until now. Not a
    /// failure (the peer may just have restarted).
    public mutating func markDisconnected(_ id: Ed25519.PublicKey, now: Double) {
        guard entries[id] != nil else { return }
        entries[id]?.lastSuccess = now
        entries[id]?.retryAt = now
    }

    /// Exponential backoff; a never-reached, non-persistent address is forgotten after
    /// many failures so a poisoned book heals.
    public mutating func markFailure(_ id: Ed25519.PublicKey, config: GossipConfiguration, now: Double) {
        guard var entry = entries[id] else { return }
        entry.failures = min(entry.failures + 1, 64)
        entry.lastAttempt = now
        let delay = min(config.reconnectMax, config.reconnectBase * pow2(entry.failures - 1))
        entry.retryAt = now + delay
        if !entry.persistent && !entry.tried && entry.failures >= 10 {
            removeFromTables(id)
            return
        }
        entries[id] = entry
    }

    /// Anchors are dialled once, first, after a restart.
    public mutating func takeAnchors() -> [NodeAddress] {
        defer { anchors = [] }
        return anchors
    }

    // MARK: Choosing peers

    /// Up to `limit` addresses to dial now: persistent ones due first (the operator's
    /// choice), then random draws from tried and new (half each), skipping ids in
    /// `excluding`, addresses not due, and network groups in `busyGroups` (one outbound
    /// connection per routable group).
    public func select(
        limit: Int, now: Double, excluding: Set<Ed25519.PublicKey>, busyGroups: Set<String>,
        using rng: inout some RandomNumberGenerator
    ) -> [NodeAddress] {
        guard limit > 0 else { return [] }
        var picked: [NodeAddress] = []
        var pickedIDs = Set<Ed25519.PublicKey>()
        var groups = busyGroups
        func take(_ id: Ed25519.PublicKey) {
            guard picked.count < limit, !excluding.contains(id), !pickedIDs.contains(id),
                let entry = entries[id], entry.retryAt <= now, let address = parsed[id]
            else { return }
            let group = GossipEngine.group(address.host)
            // Local addresses (a testnet on one host) are not spread by group.
            if !entry.persistent && !group.hasPrefix("local:") {
                guard !groups.contains(group) else { return }
                groups.insert(group)
            }
            picked.append(address)
            pickedIDs.insert(id)
        }
        for id in entries.filter({ $0.value.persistent }).keys.sorted(by: { $0.precedes($1) }) { take(id) }
        // Collision occupants are tested by being dialled.
        for collision in collisions.values.sorted(by: { $0.since < $1.since }) { take(collision.occupant) }
        let tried = Array(triedSlots.values)
        let new = Array(newSlots.values)
        var draws = 0
        while picked.count < limit, draws < 64 * limit, !(tried.isEmpty && new.isEmpty) {
            draws += 1
            let useTried = !tried.isEmpty && (new.isEmpty || Bool.random(using: &rng))
            let table = useTried ? tried : new
            take(table[Int.random(in: 0..<table.count, using: &rng)])
        }
        return picked
    }

    /// Addresses to share with a peer: a random sample of both tables, never local ones
    /// unless local addresses are on, never names.
    public func sample(
        limit: Int, excluding: Ed25519.PublicKey, config: GossipConfiguration,
        using rng: inout some RandomNumberGenerator
    ) -> [NodeAddress] {
        let all = entries.keys.sorted { $0.precedes($1) }.compactMap { id -> NodeAddress? in
            guard id != excluding, let address = parsed[id] else { return nil }
            return admissible(address, config: config)
        }
        return Array(all.shuffled(using: &rng).prefix(limit))
    }

    public var allEntries: [Entry] { entries.values.sorted { $0.address < $1.address } }
}

private func pow2(_ n: Int) -> Double {
    n >= 30 ? Double(1 << 30) : Double(1 << max(0, n))
}
