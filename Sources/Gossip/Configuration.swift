/// Limits and timings of the gossip layer. Every default is documented in
/// docs/configuration.md; the node reads overrides from its TOML config.
public struct GossipConfiguration: Sendable, Equatable, Codable {
    /// Outbound connections the node keeps open (Bitcoin Core keeps 8 full-relay).
    public var outboundTarget = 8
    /// Inbound connections accepted at most.
    public var maxInbound = 32
    /// Connections from one IP at most; a loopback testnet raises this.
    public var maxConnectionsPerIP = 4
    /// Largest gossip payload in bytes (the secure channel adds its framing).
    public var maxPayload = 4 * 1024 * 1024 - 64
    /// How long a message id stays in the seen-cache, seconds (gossipsub: 120).
    public var seenTTL: Double = 120
    /// Seen-cache entries at most; the oldest go first.
    public var seenCapacity = 200_000
    /// Misbehaviour score at which a peer is discouraged (its id, and its host unless
    /// local, refused for `banDuration`).
    public var banThreshold = 100
    /// Discouragement length, and the default `setban` length, seconds (Bitcoin Core: 24 h).
    public var banDuration: Double = 86_400
    /// Penalty for a message the validator rejects.
    public var invalidMessagePenalty = 20
    /// Penalty for an undecodable message or a protocol violation.
    public var malformedPenalty = 100
    /// Per-peer token bucket for incoming messages: sustained rate and burst.
    public var messagesPerSecond: Double = 5_000
    public var messageBurst: Double = 10_000
    /// Addresses accepted from one peer per second (Bitcoin Core: 0.1/s, bucket 1000).
    public var addressesPerSecond: Double = 1
    public var addressBurst: Double = 1_000
    /// Keepalive: ping a peer after this many idle seconds; drop it after `peerTimeout`.
    public var pingInterval: Double = 30
    public var peerTimeout: Double = 90
    /// Reconnect backoff: base × 2^failures, capped, seconds.
    public var reconnectBase: Double = 1
    public var reconnectMax: Double = 300
    /// Addresses returned to one getaddr.
    public var addressReplySize = 100
    /// A node short of outbound peers asks one peer for addresses this often, seconds;
    /// a peer asking more often than half this is ignored.
    public var addressRefreshInterval: Double = 30
    /// Inbound connections still in their handshake, at most, and from one host (an IPv4
    /// address or an IPv6 /64; never above `maxConnectionsPerIP`).
    public var maxPendingHandshakes = 64
    public var maxPendingPerHost = 4
    /// The same per network group (an IPv4 /16, an IPv6 /32).
    public var maxPendingPerGroup = 8
    /// Seconds an inbound connection may take to authenticate; past half the pending cap
    /// new ones get `pressureHandshakeTimeout`.
    public var handshakeTimeout: Double = 10
    public var pressureHandshakeTimeout: Double = 2
    /// Bytes queued for one peer at most; a peer that does not read them is dropped.
    public var maxSendQueueBytes = 16 * 1024 * 1024
    /// Inbound peers spared from eviction: by network group, by ping, by recent useful
    /// messages (Bitcoin Core: 4, 8, 4, then half the rest by age).
    public var evictionProtectGroups = 4
    public var evictionProtectPing = 8
    public var evictionProtectUseful = 4
    /// Whether addresses on loopback and private networks are kept and dialled. Off on a
    /// public network (a peer could point us at our own LAN); a local testnet turns it on.
    public var allowLocalAddresses = false
    /// Whether opaque test messages (topic 0, admin `publish`) are accepted and relayed.
    /// Off by default: a payload no application validates must not reach a real network.
    public var testMessages = false

    public init() {}

    /// Sockets the gossip layer may hold at once.
    public var descriptorsNeeded: Int { maxInbound + outboundTarget + maxPendingHandshakes }

    /// Shrinks the inbound and pending-handshake caps to fit `available` sockets (outbound
    /// ones are kept: they are the node's own choice of peers). Returns a warning when
    /// anything had to shrink.
    public mutating func fit(descriptors available: Int) -> String? {
        guard descriptorsNeeded > available else { return nil }
        let wanted = (inbound: maxInbound, pending: maxPendingHandshakes)
        let room = max(0, available - outboundTarget)
        maxPendingHandshakes = max(1, min(maxPendingHandshakes, room / 4))
        maxInbound = max(0, min(maxInbound, room - maxPendingHandshakes))
        return "open-file limit too low: inbound connections \(wanted.inbound) → \(maxInbound), pending handshakes "
            + "\(wanted.pending) → \(maxPendingHandshakes) (raise `ulimit -n`)"
    }
}
