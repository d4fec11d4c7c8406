import Foundation

/// Bitcoin's serialization primitives: little-endian integers and CompactSize lengths.
/// (The chain's own `Wire` module is big-endian; Bitcoin formats are not.)
public struct BitcoinError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
    mutating func fixed(_ v: [UInt8]) { bytes += v }

    mutating func compactSize(_ n: Int) {
        switch UInt64(n) {
        case 0..<0xFD: u8(UInt8(n))
        case 0xFD...0xFFFF:
            u8(0xFD)
            u8(UInt8(truncatingIfNeeded: n))
            u8(UInt8(truncatingIfNeeded: n >> 8))
        case 0x1_0000...0xFFFF_FFFF:
            u8(0xFE)
            u32(UInt32(n))
        default:
            u8(0xFF)
            u64(UInt64(n))
        }
    }

    /// CompactSize length, then the bytes.
    mutating func varBytes(_ v: [UInt8]) {
        compactSize(v.count)
        bytes += v
    }
}

struct ByteReader {
    let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }
    var isAtEnd: Bool { offset == bytes.count }

    mutating func fixed(_ n: Int, _ what: String) throws(BitcoinError) -> [UInt8] {
        guard n >= 0, remaining >= n else {
            throw BitcoinError("\(what): needs \(n) bytes, \(remaining) left")
        }
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    mutating func u8(_ what: String) throws(BitcoinError) -> UInt8 { try fixed(1, what)[0] }

    mutating func u32(_ what: String) throws(BitcoinError) -> UInt32 {
        let b = try fixed(4, what)
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[$1]) << (8 * UInt32($1)) }
    }

    mutating func u64(_ what: String) throws(BitcoinError) -> UInt64 {
        let b = try fixed(8, what)
        return (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[$1]) << (8 * UInt64($1)) }
    }

    /// A CompactSize in its shortest form (non-canonical encodings are refused, as
    /// Bitcoin Core does).
    mutating func compactSize(_ what: String) throws(BitcoinError) -> Int {
        let first = try u8(what)
        let value: UInt64
        switch first {
        case 0xFD:
            let b = try fixed(2, what)
            value = UInt64(b[0]) | UInt64(b[1]) << 8
            guard value >= 0xFD else { throw BitcoinError("\(what): non-canonical CompactSize") }
        case 0xFE:
            value = UInt64(try u32(what))
            guard value > 0xFFFF else { throw BitcoinError("\(what): non-canonical CompactSize") }
        case 0xFF:
            value = try u64(what)
            guard value > 0xFFFF_FFFF else { throw BitcoinError("\(what): non-canonical CompactSize") }
        default:
            value = UInt64(first)
        }
        // Nothing in a transaction or PSBT is larger than a block.
        guard value <= 32_000_000 else { throw BitcoinError("\(what): size \(value) is too large") }
        return Int(value)
    }

    mutating func varBytes(_ what: String) throws(BitcoinError) -> [UInt8] {
        try fixed(try compactSize(what), what)
    }
}

/// Base64 (RFC 4648) for PSBTs, through Foundation.
enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
    static func decode(_ text: String) -> [UInt8]? {
        Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)).map { Array($0) }
    }
}
