import NodeCrypto

/// A 32-byte BLAKE2b-256 digest held inline (four words in memory order), so the tree's
/// millions of node hashes cost no heap allocation each.
public struct StateHash: Hashable, Comparable, Sendable, CustomStringConvertible {
    private var w0: UInt64
    private var w1: UInt64
    private var w2: UInt64
    private var w3: UInt64

    /// The hash of an empty subtree: 32 zero bytes (no BLAKE2b output is expected to be it).
    public static let placeholder = StateHash(w0: 0, w1: 0, w2: 0, w3: 0)

    private init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        (self.w0, self.w1, self.w2, self.w3) = (w0, w1, w2, w3)
    }

    /// Exactly 32 bytes, else nil.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self = .placeholder
        withUnsafeMutableBytes(of: &self) { $0.copyBytes(from: bytes) }
    }

    public var bytes: [UInt8] { withUnsafeBytes(of: self) { Array($0) } }
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
    }
    public var description: String { String(hex.prefix(12)) }

    /// Bit `index` (0 = the most significant bit of byte 0): the path through the tree.
    @inline(__always)
    public func bit(_ index: Int) -> Bool {
        withUnsafeBytes(of: self) { ($0[index >> 3] >> (7 - UInt8(index & 7))) & 1 == 1 }
    }

    /// Whether the first `bits` bits equal `other`'s.
    public func sharesPrefix(with other: StateHash, bits: Int) -> Bool {
        let whole = bits >> 3
        return withUnsafeBytes(of: self) { a in
            withUnsafeBytes(of: other) { b in
                for i in 0..<whole where a[i] != b[i] { return false }
                let rest = bits & 7
                guard rest > 0 else { return true }
                let mask = UInt8(0xFF) << (8 - UInt8(rest))
                return a[whole] & mask == b[whole] & mask
            }
        }
    }

    /// This hash with every bit from `bits` on cleared: the canonical name of a prefix.
    public func truncated(toBits bits: Int) -> StateHash {
        var out = self
        withUnsafeMutableBytes(of: &out) { b in
            for i in 0..<32 {
                let start = i * 8
                if start >= bits {
                    b[i] = 0
                } else if start + 8 > bits {
                    b[i] &= UInt8(0xFF) << (8 - UInt8(bits - start))
                }
            }
        }
        return out
    }

    /// This prefix extended by one bit at position `index` (set to 1).
    public func settingBit(_ index: Int) -> StateHash {
        var out = self
        withUnsafeMutableBytes(of: &out) { $0[index >> 3] |= 0x80 >> UInt8(index & 7) }
        return out
    }

    /// Byte-wise (big-endian) order: the order of leaves in the tree.
    public static func < (a: StateHash, b: StateHash) -> Bool {
        let (x, y) = (
            (UInt64(bigEndian: a.w0), UInt64(bigEndian: a.w1), UInt64(bigEndian: a.w2), UInt64(bigEndian: a.w3)),
            (UInt64(bigEndian: b.w0), UInt64(bigEndian: b.w1), UInt64(bigEndian: b.w2), UInt64(bigEndian: b.w3))
        )
        return x < y
    }

    /// BLAKE2b-256 of `data`.
    public static func of(_ data: [UInt8]) -> StateHash {
        var out = StateHash.placeholder
        data.withUnsafeBytes { d in withUnsafeMutableBytes(of: &out) { BLAKE2b.hash256(d, into: $0) } }
        return out
    }

    /// BLAKE2b-256(tag || a || b): a leaf (tag 0: key hash, value hash) or an inner node
    /// (tag 1: left, right).
    static func combine(_ tag: UInt8, _ a: StateHash, _ b: StateHash) -> StateHash {
        var out = StateHash.placeholder
        withUnsafeTemporaryAllocation(byteCount: 65, alignment: 8) { buffer in
            buffer[0] = tag
            withUnsafeBytes(of: a) {
                buffer.baseAddress!.advanced(by: 1).copyMemory(from: $0.baseAddress!, byteCount: 32)
            }
            withUnsafeBytes(of: b) {
                buffer.baseAddress!.advanced(by: 33).copyMemory(from: $0.baseAddress!, byteCount: 32)
            }
            withUnsafeMutableBytes(of: &out) { BLAKE2b.hash256(UnsafeRawBufferPointer(buffer), into: $0) }
        }
        return out
    }

    public static func leaf(keyHash: StateHash, valueHash: StateHash) -> StateHash { combine(0, keyHash, valueHash) }
    public static func inner(_ left: StateHash, _ right: StateHash) -> StateHash { combine(1, left, right) }
}
