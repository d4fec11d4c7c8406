/// SideNode's canonical binary encoding: big-endian fixed-width integers and
/// length-prefixed byte strings. One encoding serves hashing, signing and the wire,
/// so decoding is strict: truncated input, over-long fields and trailing bytes are
/// errors. Documented in docs/wire.md.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }

    public mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(v >> 8))
        bytes.append(UInt8(v & 0xff))
    }

    public mutating func u32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8((v >> UInt32(shift)) & 0xff)) }
    }

    public mutating func u64(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((v >> UInt64(shift)) & 0xff)) }
    }

    /// Exactly `count` bytes with no prefix (keys, hashes).
    public mutating func fixed(_ v: [UInt8]) { bytes += v }

    /// u32 length then the bytes.
    public mutating func bytes32(_ v: [UInt8]) {
        u32(UInt32(v.count))
        bytes += v
    }

    /// u16 length then the bytes (short fields: hosts, names).
    public mutating func bytes16(_ v: [UInt8]) {
        precondition(v.count <= Int(UInt16.max), "field too long for a u16 length")
        u16(UInt16(v.count))
        bytes += v
    }

    public mutating func string16(_ s: String) { bytes16(Array(s.utf8)) }
}

public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public struct WireReader: Sendable {
    private let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var remaining: Int { bytes.count - offset }

    private mutating func take(_ n: Int, _ what: String) throws(WireError) -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else { throw WireError("truncated \(what): need \(n) bytes, have \(remaining)") }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    public mutating func u8(_ what: String = "u8") throws(WireError) -> UInt8 { try take(1, what).first! }

    public mutating func u16(_ what: String = "u16") throws(WireError) -> UInt16 {
        try take(2, what).reduce(0) { $0 << 8 | UInt16($1) }
    }

    public mutating func u32(_ what: String = "u32") throws(WireError) -> UInt32 {
        try take(4, what).reduce(0) { $0 << 8 | UInt32($1) }
    }

    public mutating func u64(_ what: String = "u64") throws(WireError) -> UInt64 {
        try take(8, what).reduce(0) { $0 << 8 | UInt64($1) }
    }

    public mutating func fixed(_ count: Int, _ what: String = "bytes") throws(WireError) -> [UInt8] {
        Array(try take(count, what))
    }

    /// A u32-prefixed field no longer than `max`; the limit is checked before copying.
    public mutating func bytes32(max: Int, _ what: String = "bytes") throws(WireError) -> [UInt8] {
        let n = Int(try u32(what))
        guard n <= max else { throw WireError("\(what) of \(n) bytes exceeds the limit of \(max)") }
        return Array(try take(n, what))
    }

    public mutating func bytes16(max: Int = Int(UInt16.max), _ what: String = "bytes") throws(WireError) -> [UInt8] {
        let n = Int(try u16(what))
        guard n <= max else { throw WireError("\(what) of \(n) bytes exceeds the limit of \(max)") }
        return Array(try take(n, what))
    }

    public mutating func string16(max: Int, _ what: String = "string") throws(WireError) -> String {
        let raw = try bytes16(max: max, what)
        guard let s = String(validating: raw, as: UTF8.self) else { throw WireError("\(what) is not valid UTF-8") }
        return s
    }

    /// Every decoder ends with this: trailing bytes make an encoding non-canonical.
    public func finish() throws(WireError) {
        guard remaining == 0 else { throw WireError("\(remaining) trailing bytes") }
    }
}
