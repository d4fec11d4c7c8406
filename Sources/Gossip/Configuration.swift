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
    /// Misbehaviour score at which a peer is banned.
    public var banThreshold = 100
    /// Ban length, seconds (Bitcoin Core: 24 h).
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
    /// Addresses per network group in the address book (anti-eclipse).
    public var maxAddressesPerGroup = 64
    /// Address book size.
    public var maxAddresses = 4_096
    /// Addresses returned to one getaddr.
    public var addressReplySize = 100
    /// A node short of outbound peers asks one peer for addresses this often, seconds;
    /// a peer asking more often than half this is ignored.
    public var addressRefreshInterval: Double = 30
    /// Whether opaque test messages (topic 0, admin `publish`) are accepted and relayed.
    /// Off by default: a payload no application validates must not reach a real network.
    public var testMessages = false

    public init() {}
}
