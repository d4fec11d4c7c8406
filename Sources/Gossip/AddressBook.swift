import NodeCrypto

/// Known peer addresses, split like Bitcoin Core's addrman into *tried* (we
/// connected to them) and *new* (heard of, never reached). Per-group limits keep
/// one network from filling the book. Persisted by the node as JSON.
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
        public var source: String?
    }

    public private(set) var entries: [Ed25519.PublicKey: Entry] = [:]
    private var parsed: [Ed25519.PublicKey: NodeAddress] = [:]

    public init() {}

    public init(entries: [Entry]) {
        for entry in entries {
            guard let address = try? NodeAddress(parsing: entry.address) else { continue }
            self.entries[address.nodeID] = entry
            parsed[address.nodeID] = address
        }
    }

    public var count: Int { entries.count }
    public var triedCount: Int { entries.values.filter(\.tried).count }

    public func address(of id: Ed25519.PublicKey) -> NodeAddress? { parsed[id] }
    public func entry(of id: Ed25519.PublicKey) -> Entry? { entries[id] }

    /// Adds or refreshes an address; returns false when limits refuse it.
    @discardableResult
    public mutating func add(
        _ address: NodeAddress, source: String?, persistent: Bool = false, config: GossipConfiguration, now: Double
    ) -> Bool {
        if var existing = entries[address.nodeID] {
            // A peer may move: a persistent or tried entry keeps its known-good address.
            if (existing.persistent && !persistent) || existing.tried && source != nil { return true }
            existing.address = address.description
            existing.persistent = existing.persistent || persistent
            entries[address.nodeID] = existing
            parsed[address.nodeID] = address
            return true
        }
        if !persistent {
            guard entries.count < config.maxAddresses else { return false }
            let group = address.endpoint.group
            let inGroup = parsed.values.filter { $0.endpoint.group == group }.count
            guard inGroup < config.maxAddressesPerGroup else { return false }
        }
        entries[address.nodeID] = Entry(
            address: address.description, tried: false, failures: 0, lastSuccess: nil, lastAttempt: nil,
            retryAt: now, persistent: persistent, source: source)
        parsed[address.nodeID] = address
        return true
    }

    public mutating func markAttempt(_ id: Ed25519.PublicKey, now: Double) {
        entries[id]?.lastAttempt = now
    }

    public mutating func markSuccess(_ id: Ed25519.PublicKey, now: Double) {
        entries[id]?.tried = true
        entries[id]?.failures = 0
        entries[id]?.lastSuccess = now
        entries[id]?.retryAt = now
    }

    /// Exponential backoff; a never-reached, non-persistent address is forgotten
    /// after many failures so a poisoned book heals.
    public mutating func markFailure(_ id: Ed25519.PublicKey, config: GossipConfiguration, now: Double) {
        guard var entry = entries[id] else { return }
        entry.failures += 1
        let delay = min(config.reconnectMax, config.reconnectBase * pow2(entry.failures - 1))
        entry.retryAt = now + delay
        if !entry.persistent && !entry.tried && entry.failures >= 10 {
            remove(id)
            return
        }
        entries[id] = entry
    }

    public mutating func remove(_ id: Ed25519.PublicKey) {
        entries[id] = nil
        parsed[id] = nil
    }

    /// Candidates to dial now: due, not excluded; persistent first, then tried, then new.
    public func candidates(now: Double, excluding: Set<Ed25519.PublicKey>) -> [NodeAddress] {
        entries.filter { !excluding.contains($0.key) && $0.value.retryAt <= now }
            .sorted { a, b in
                let ra = (a.value.persistent ? 0 : 2) + (a.value.tried ? 0 : 1)
                let rb = (b.value.persistent ? 0 : 2) + (b.value.tried ? 0 : 1)
                return ra != rb ? ra < rb : a.key.hex < b.key.hex
            }
            .compactMap { parsed[$0.key] }
    }

    /// Addresses to share with a peer: tried ones first.
    public func sample(
        limit: Int, excluding: Ed25519.PublicKey, using rng: inout some RandomNumberGenerator
    )
        -> [NodeAddress]
    {
        let tried = entries.filter { $0.value.tried && $0.key != excluding }.compactMap { parsed[$0.key] }
        let new = entries.filter { !$0.value.tried && $0.key != excluding }.compactMap { parsed[$0.key] }
        return Array((tried.shuffled(using: &rng) + new.shuffled(using: &rng)).prefix(limit))
    }

    public var allEntries: [Entry] { entries.values.sorted { $0.address < $1.address } }
}

private func pow2(_ n: Int) -> Double {
    n >= 30 ? Double(1 << 30) : Double(1 << max(0, n))
}
