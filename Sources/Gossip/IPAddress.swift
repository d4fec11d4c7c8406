/// An IPv4 or IPv6 address parsed from its text form, in pure Swift so the address book
/// can judge hosts a peer sends without a resolver. Every spelling of one address
/// (`::ffff:1.2.3.4`, `0:0::1`, upper-case hex) has one canonical text: limits that
/// compare hosts cannot be bypassed by writing one IP several ways.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d).
    public let bytes: [UInt8]

    public var isIPv4: Bool { bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF }

    public init(ipv4 octets: [UInt8]) {
        precondition(octets.count == 4)
        bytes = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + octets
    }

    init(ipv6 bytes: [UInt8]) {
        precondition(bytes.count == 16)
        self.bytes = bytes
    }

    /// Parses a dotted-quad IPv4 literal (four decimal parts 0…255, no leading zeros) or
    /// an IPv6 literal (RFC 4291 §2.2, optionally with a trailing dotted quad); nil for
    /// anything else, host names included. No zone ids.
    public init?(_ text: some StringProtocol) {
        if let v4 = Self.parseIPv4(Substring(text)) {
            self.init(ipv4: v4)
        } else if let v6 = Self.parseIPv6(Substring(text)) {
            self.init(ipv6: v6)
        } else {
            return nil
        }
    }

    private static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                part.count == 1 || part.first != "0", let value = UInt8(part)
            else { return nil }
            octets.append(value)
        }
        return octets
    }

    private static func parseIPv6(_ text: Substring) -> [UInt8]? {
        guard text.count >= 2, text.count <= 45, text.contains(":") else { return nil }
        let chars = Array(text)
        var halves: [String] = []
        if let gap = (0..<(chars.count - 1)).first(where: { chars[$0] == ":" && chars[$0 + 1] == ":" }) {
            halves = [String(chars[..<gap]), String(chars[(gap + 2)...])]
            // A second "::", or ":::", is not an address.
            guard !halves[1].contains("::"), !halves[1].hasPrefix(":") else { return nil }
        } else {
            halves = [String(text)]
        }
        func groups(_ part: String, allowIPv4Tail: Bool) -> [UInt8]? {
            if part.isEmpty { return [] }
            var out: [UInt8] = []
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, field) in fields.enumerated() {
                if allowIPv4Tail, index == fields.count - 1, field.contains(".") {
                    guard let v4 = parseIPv4(field) else { return nil }
                    out += v4
                    continue
                }
                guard (1...4).contains(field.count), field.allSatisfy(\.isHexDigit),
                    let value = UInt16(field, radix: 16)
                else { return nil }
                out += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return out
        }
        if halves.count == 1 {
            guard let all = groups(halves[0], allowIPv4Tail: true), all.count == 16 else { return nil }
            return all
        }
        guard let head = groups(halves[0], allowIPv4Tail: false), let tail = groups(halves[1], allowIPv4Tail: true),
            head.count + tail.count <= 14
        else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    /// Canonical text: dotted quad for IPv4 (mapped ones included), RFC 5952 for IPv6
    /// (lower-case, no leading zeros, the longest run of two or more zero groups as `::`).
    public var description: String {
        if isIPv4 { return bytes[12...].map(String.init).joined(separator: ".") }
        let groups = stride(from: 0, to: 16, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        var best = (start: -1, length: 0)
        var index = 0
        while index < 8 {
            if groups[index] == 0 {
                var end = index
                while end < 8 && groups[end] == 0 { end += 1 }
                if end - index > best.length && end - index >= 2 { best = (index, end - index) }
                index = end
            } else {
                index += 1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if best.start < 0 { return hex(0..<8) }
        return hex(0..<best.start) + "::" + hex((best.start + best.length)..<8)
    }

    private var v4: ArraySlice<UInt8> { bytes[12...] }

    /// Loopback, private, link-local, shared (CGNAT), unspecified, multicast, reserved or
    /// documentation ranges: reachable only on a local network, if at all.
    public var isLocal: Bool {
        if isIPv4 {
            let a = v4[v4.startIndex]
            let b = v4[v4.startIndex + 1]
            let c = v4[v4.startIndex + 2]
            return a == 0 || a == 10 || a == 127 || (a == 169 && b == 254) || (a == 172 && (16...31).contains(b))
                || (a == 192 && b == 168) || (a == 100 && (64...127).contains(b)) || a >= 224
                || (a == 192 && b == 0 && (c == 0 || c == 2)) || (a == 198 && (18...19).contains(b))
                || (a == 198 && b == 51 && c == 100) || (a == 203 && b == 0 && c == 113)
                || (a == 192 && b == 88 && c == 99)  // 6to4 relay anycast
        }
        let first = bytes[0]
        return bytes.allSatisfy { $0 == 0 }  // ::
            || (bytes[0..<15].allSatisfy { $0 == 0 } && bytes[15] == 1)  // ::1
            || first & 0xFE == 0xFC  // fc00::/7 unique local
            || (first == 0xFE && bytes[1] & 0xC0 == 0x80)  // fe80::/10 link local
            || first == 0xFF  // multicast
            || (first == 0x20 && bytes[1] == 0x01 && bytes[2] == 0x0D && bytes[3] == 0xB8)  // 2001:db8::/32
            || bytes[0..<12].allSatisfy { $0 == 0 }  // IPv4-compatible (deprecated)
            || (first == 0xFE && bytes[1] & 0xC0 == 0xC0)  // fec0::/10 site local
            || (bytes[0..<8].allSatisfy { $0 == 0 } && bytes[8..<10] == [0xFF, 0xFF])  // ::ffff:0:0:0/96
            || (bytes[0..<2] == [0x01, 0x00] && bytes[2..<8].allSatisfy { $0 == 0 })  // 100::/64 discard
            || (bytes[0..<4] == [0x00, 0x64, 0xFF, 0x9B])  // NAT64 64:ff9b::/96, 64:ff9b:1::/48
            // Tunnels that wrap an IPv4 address, which could be a private one and would give
            // one IPv4 host 2^16 groups: 6to4 2002::/16, Teredo 2001::/32.
            || (bytes[0..<2] == [0x20, 0x02]) || (bytes[0..<4] == [0x20, 0x01, 0x00, 0x00])
            || (bytes[0..<6] == [0x20, 0x01, 0x00, 0x02, 0x00, 0x00])  // 2001:2::/48 benchmarking
            || (bytes[0] == 0x3F && bytes[1] & 0xF0 == 0xF0)  // 3fff::/20 documentation
    }

    /// The network group whose addresses one operator can easily hold: /16 for IPv4, /32
    /// for IPv6 (Bitcoin Core's default), the whole address for local ones so a loopback
    /// testnet is not one group.
    public var group: String {
        if isLocal { return "local:\(description)" }
        if isIPv4 { return "v4:\(v4[v4.startIndex]).\(v4[v4.startIndex + 1])" }
        return "v6:" + bytes[0..<4].map { String($0, radix: 16) }.joined(separator: ".")
    }

    /// What one host can cheaply hold: the address for IPv4, its /64 for IPv6 (one
    /// subscriber gets a whole /64). Connection limits per host count these.
    public var hostKey: String {
        if isIPv4 { return description }
        return "v6:" + bytes[0..<8].map { String($0, radix: 16) }.joined(separator: ".") + "/64"
    }
}
