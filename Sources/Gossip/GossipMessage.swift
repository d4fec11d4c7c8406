import NodeCrypto
import Wire

/// Messages peers exchange inside an established secure channel. Encoding: a
/// one-byte tag, then the fields in canonical `Wire` form (docs/wire.md).
public enum GossipMessage: Sendable, Equatable {
    /// First message on every connection: the port we listen on (0 if none) and our agent string.
    case hello(listenPort: UInt16, agent: String)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    /// Asks for known addresses (answered once per connection).
    case getAddresses
    case addresses([NodeAddress])
    /// Application payload flooded to the mesh; its id is BLAKE2b-256 of the payload.
    case publish(payload: [UInt8])
    /// Application payload for this peer only (requests and replies): not forwarded.
    case direct(payload: [UInt8])

    public static let maxAddresses = 1000
    static let maxAgentLength = 256
    static let maxHostLength = 255

    enum Tag: UInt8 {
        case hello = 1
        case ping = 2
        case pong = 3
        case getAddresses = 4
        case addresses = 5
        case publish = 6
        case direct = 7
    }

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .hello(let port, let agent):
            w.u8(Tag.hello.rawValue)
            w.u16(port)
            w.string16(String(agent.prefix(64)))  // 64 characters ≤ 256 UTF-8 bytes
        case .ping(let nonce):
            w.u8(Tag.ping.rawValue)
            w.u64(nonce)
        case .pong(let nonce):
            w.u8(Tag.pong.rawValue)
            w.u64(nonce)
        case .getAddresses:
            w.u8(Tag.getAddresses.rawValue)
        case .addresses(let list):
            w.u8(Tag.addresses.rawValue)
            w.u16(UInt16(min(list.count, Self.maxAddresses)))
            for address in list.prefix(Self.maxAddresses) {
                w.fixed(address.nodeID.rawRepresentation)
                w.string16(address.host)
                w.u16(address.port)
            }
        case .publish(let payload):
            w = WireWriter(capacity: payload.count + 5)
            w.u8(Tag.publish.rawValue)
            w.bytes32(payload)
        case .direct(let payload):
            w = WireWriter(capacity: payload.count + 5)
            w.u8(Tag.direct.rawValue)
            w.bytes32(payload)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8], maxPayload: Int) throws(WireError) -> GossipMessage {
        var r = WireReader(bytes)
        let raw = try r.u8("tag")
        guard let tag = Tag(rawValue: raw) else { throw WireError("unknown message tag \(raw)") }
        let message: GossipMessage
        switch tag {
        case .hello:
            message = .hello(listenPort: try r.u16("port"), agent: try r.string16(max: maxAgentLength, "agent"))
        case .ping:
            message = .ping(nonce: try r.u64("nonce"))
        case .pong:
            message = .pong(nonce: try r.u64("nonce"))
        case .getAddresses:
            message = .getAddresses
        case .addresses:
            let count = Int(try r.u16("count"))
            guard count <= maxAddresses else { throw WireError("\(count) addresses exceed \(maxAddresses)") }
            var list: [NodeAddress] = []
            for _ in 0..<count {
                let key = try r.fixed(32, "node id")
                guard let nodeID = try? Ed25519.PublicKey(rawRepresentation: key) else {
                    throw WireError("address with an invalid node id")
                }
                let host = try r.string16(max: maxHostLength, "host")
                let port = try r.u16("port")
                guard !host.isEmpty, port != 0 else { throw WireError("address with empty host or port 0") }
                list.append(NodeAddress(nodeID: nodeID, host: host, port: port))
            }
            message = .addresses(list)
        case .publish:
            message = .publish(payload: try r.bytes32(max: maxPayload, "payload"))
        case .direct:
            message = .direct(payload: try r.bytes32(max: maxPayload, "payload"))
        }
        try r.finish()
        return message
    }

    /// A gossip message id: BLAKE2b-256 of the payload.
    public static func id(of payload: [UInt8]) -> MessageID { MessageID(bytes: BLAKE2b.hash256(payload)) }
}

public struct MessageID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    // The bytes in one call: the synthesized hash feeds the hasher byte by byte, which
    // dominated profiles of the DAG and seen-caches.
    public func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }
    public var description: String { bytes.hex }
}
