import NodeCrypto

/// A peer's identity and dialable address: `NODEID@HOST:PORT`, where NODEID is the
/// hex Ed25519 public key and HOST an IPv4 address, a bracketed IPv6 address or a name.
public struct NodeAddress: Hashable, Sendable, CustomStringConvertible {
    public let nodeID: Ed25519.PublicKey
    public let host: String
    public let port: UInt16

    public init(nodeID: Ed25519.PublicKey, host: String, port: UInt16) {
        self.nodeID = nodeID
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(AddressError) {
        let parts = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw AddressError("expected NODEID@HOST:PORT, got '\(text)'") }
        guard let keyBytes = try? Hex.decode(parts[0]), let key = try? Ed25519.PublicKey(rawRepresentation: keyBytes)
        else {
            throw AddressError("'\(parts[0])' is not a node id (64 hex digits of an Ed25519 public key)")
        }
        let endpoint = try HostPort(parsing: String(parts[1]))
        self.init(nodeID: key, host: endpoint.host, port: endpoint.port)
    }

    public var endpoint: HostPort { HostPort(host: host, port: port) }
    public var description: String { "\(nodeID.hex)@\(endpoint)" }
}

/// `HOST:PORT` with IPv6 in brackets.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(AddressError) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw AddressError("malformed IPv6 endpoint '\(text)'")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw AddressError("missing :PORT in '\(text)'") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else {
            throw AddressError("empty or malformed host in '\(text)'")
        }
        guard let port = UInt16(portText), port != 0 else { throw AddressError("invalid port '\(portText)'") }
        self.init(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The address group used to limit how many addresses one network may place in
    /// the address book: /16 for IPv4, /32 for IPv6, the name itself otherwise.
    public var group: String {
        let octets = host.split(separator: ".")
        if octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) { return "\(octets[0]).\(octets[1])" }
        if host.contains(":") { return host.split(separator: ":").prefix(2).joined(separator: ":") }
        return host.lowercased()
    }
}

public struct AddressError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Parses a bootstrap file: one `NODEID@HOST:PORT` per line, `#` comments and
/// blank lines ignored. Errors name the line.
public func parseBootstrapPeers(_ text: String, source: String = "bootstrap file") throws(AddressError) -> [NodeAddress]
{
    var peers: [NodeAddress] = []
    for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let trimmed = line.trimmingWhitespace
        if trimmed.isEmpty { continue }
        do {
            peers.append(try NodeAddress(parsing: trimmed))
        } catch {
            throw AddressError("\(source):\(index + 1): \(error.description)")
        }
    }
    return peers
}

extension Substring {
    var trimmingWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
