/// Node ids and hosts that misbehaved (Bitcoin Core's discouragement filter): refused for
/// a day, bounded, never written to disk. Automatic punishment lands here rather than
/// in the operator's ban list: identities cost nothing, so a list of them must be
/// cheap to grow and must forget the oldest first.
public struct Discouragement: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let key: String
        public let until: Double
        public let reason: String
    }

    public static let capacity = 50_000
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    private var head = 0

    public init() {}

    public var count: Int { entries.count }

    public mutating func insert(_ key: String, until: Double, reason: String) {
        if entries[key] == nil { order.append(key) }
        entries[key] = Entry(key: key, until: until, reason: reason)
        while entries.count > Self.capacity, head < order.count {
            entries[order[head]] = nil
            head += 1
        }
        if head > 4096 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    public func contains(_ key: String, now: Double) -> Bool { (entries[key]?.until ?? 0) > now }

    public mutating func remove(_ key: String) { entries[key] = nil }

    public mutating func removeAll() {
        entries = [:]
        order = []
        head = 0
    }

    /// The most recent `limit` entries still in force, newest first.
    public func recent(limit: Int, now: Double) -> [Entry] {
        var out: [Entry] = []
        for key in order[head...].reversed() {
            guard out.count < limit else { break }
            if let entry = entries[key], entry.until > now, !out.contains(where: { $0.key == key }) {
                out.append(entry)
            }
        }
        return out
    }
}
