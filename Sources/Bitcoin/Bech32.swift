/// Bech32 (BIP173) and Bech32m (BIP350) strings, and segwit addresses.
public enum Bech32 {
    public enum Variant: Sendable, Equatable {
        case bech32, bech32m
        var constant: UInt32 { self == .bech32 ? 1 : 0x2BC8_30A3 }
    }

    static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)
    static let reverse: [Int8] = {
        var table = [Int8](repeating: -1, count: 128)
        for (i, c) in charset.enumerated() { table[Int(c)] = Int8(i) }
        return table
    }()

    static func polymod(_ values: [UInt8]) -> UInt32 {
        let generator: [UInt32] = [0x3B6A_57B2, 0x2650_8E6D, 0x1EA1_19FA, 0x3D42_33DD, 0x2A14_62B3]
        var chk: UInt32 = 1
        for v in values {
            let top = chk >> 25
            chk = (chk & 0x1FF_FFFF) << 5 ^ UInt32(v)
            for i in 0..<5 where (top >> UInt32(i)) & 1 == 1 { chk ^= generator[i] }
        }
        return chk
    }

    static func expand(_ hrp: [UInt8]) -> [UInt8] { hrp.map { $0 >> 5 } + [0] + hrp.map { $0 & 31 } }

    /// Encodes 5-bit `data` under a lower-case human-readable part.
    public static func encode(hrp: String, data: [UInt8], variant: Variant) -> String {
        let h = Array(hrp.lowercased().utf8)
        let mod = polymod(expand(h) + data + [0, 0, 0, 0, 0, 0]) ^ variant.constant
        let checksum = (0..<6).map { UInt8((mod >> (5 * (5 - UInt32($0)))) & 31) }
        return String(decoding: h + [UInt8(ascii: "1")] + (data + checksum).map { charset[Int($0)] }, as: UTF8.self)
    }

    /// Decodes a Bech32 or Bech32m string (at most 90 characters, one case, printable
    /// ASCII human-readable part, valid checksum): the lower-case human-readable part,
    /// the 5-bit data without the checksum, and which checksum it carried.
    public static func decode(_ string: String) throws(BitcoinError) -> (hrp: String, data: [UInt8], variant: Variant) {
        let bytes = Array(string.utf8)
        guard bytes.count <= 90 else { throw BitcoinError("bech32: longer than 90 characters") }
        guard bytes.allSatisfy({ $0 >= 33 && $0 <= 126 }) else { throw BitcoinError("bech32: invalid character") }
        let hasLower = bytes.contains { $0 >= 97 && $0 <= 122 }
        let hasUpper = bytes.contains { $0 >= 65 && $0 <= 90 }
        guard !(hasLower && hasUpper) else { throw BitcoinError("bech32: mixed case") }
        let lower = bytes.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
        guard let separator = lower.lastIndex(of: UInt8(ascii: "1")) else {
            throw BitcoinError("bech32: no separator")
        }
        guard separator >= 1 else { throw BitcoinError("bech32: empty human-readable part") }
        guard lower.count - separator - 1 >= 6 else { throw BitcoinError("bech32: checksum too short") }
        let hrp = Array(lower[..<separator])
        var values: [UInt8] = []
        for c in lower[(separator + 1)...] {
            let v = c < 128 ? reverse[Int(c)] : -1
            guard v >= 0 else { throw BitcoinError("bech32: invalid data character") }
            values.append(UInt8(v))
        }
        let variant: Variant
        switch polymod(expand(hrp) + values) {
        case Variant.bech32.constant: variant = .bech32
        case Variant.bech32m.constant: variant = .bech32m
        default: throw BitcoinError("bech32: invalid checksum")
        }
        return (String(decoding: hrp, as: UTF8.self), Array(values.dropLast(6)), variant)
    }

    /// Regroups bits (8 → 5 with padding; 5 → 8 without, refusing non-zero padding).
    public static func convertBits(_ data: [UInt8], from: Int, to: Int, pad: Bool) throws(BitcoinError) -> [UInt8] {
        var acc = 0
        var bits = 0
        var out: [UInt8] = []
        let maxValue = (1 << to) - 1
        for value in data {
            guard Int(value) >> from == 0 else { throw BitcoinError("bech32: value out of range") }
            acc = acc << from | Int(value)
            bits += from
            while bits >= to {
                bits -= to
                out.append(UInt8((acc >> bits) & maxValue))
            }
        }
        if pad {
            if bits > 0 { out.append(UInt8((acc << (to - bits)) & maxValue)) }
        } else if bits >= from || (acc << (to - bits)) & maxValue != 0 {
            throw BitcoinError("bech32: invalid padding")
        }
        return out
    }
}

/// A Bitcoin network, by what addresses and esplora servers it uses.
public enum Network: String, Sendable, CaseIterable {
    case mainnet, testnet, signet, mutinynet, regtest

    /// Segwit address prefix. Mutinynet is a signet, and signets share testnet's prefix.
    public var hrp: String {
        switch self {
        case .mainnet: "bc"
        case .testnet, .signet, .mutinynet: "tb"
        case .regtest: "bcrt"
        }
    }

    /// A public esplora server, where there is one.
    public var defaultEsplora: String? {
        switch self {
        case .mainnet: "https://blockstream.info/api"
        case .testnet: "https://blockstream.info/testnet/api"
        case .signet: "https://mempool.space/signet/api"
        case .mutinynet: "https://mutinynet.com/api"
        case .regtest: nil
        }
    }

    /// BIP32 coin type: 0 on mainnet, 1 on every test network.
    public var coinType: UInt32 { self == .mainnet ? 0 : 1 }
}

/// A segwit address (BIP173/BIP350): witness version 0 with Bech32, 1–16 with Bech32m.
public struct SegwitAddress: Sendable, Equatable, CustomStringConvertible {
    public let hrp: String
    public let version: UInt8
    public let program: [UInt8]

    public init(hrp: String, version: UInt8, program: [UInt8]) throws(BitcoinError) {
        guard version <= 16 else { throw BitcoinError("address: witness version \(version) above 16") }
        guard program.count >= 2, program.count <= 40 else {
            throw BitcoinError("address: witness program of \(program.count) bytes")
        }
        guard version != 0 || program.count == 20 || program.count == 32 else {
            throw BitcoinError("address: a version 0 program is 20 or 32 bytes, not \(program.count)")
        }
        self.hrp = hrp.lowercased()
        self.version = version
        self.program = program
    }

    public init(network: Network, version: UInt8, program: [UInt8]) throws(BitcoinError) {
        try self.init(hrp: network.hrp, version: version, program: program)
    }

    /// Parses an address string; its prefix must be `network`'s, or any known
    /// network's (bc, tb, bcrt) when none is given.
    public init(_ string: String, network: Network? = nil) throws(BitcoinError) {
        let (hrp, data, variant) = try Bech32.decode(string)
        if let network, hrp != network.hrp {
            throw BitcoinError("address: prefix \(hrp) is not \(network.rawValue)'s \(network.hrp)")
        }
        guard Network.allCases.contains(where: { $0.hrp == hrp }) else {
            throw BitcoinError("address: unknown prefix \(hrp) (not bc, tb or bcrt)")
        }
        guard let version = data.first else { throw BitcoinError("address: no witness version") }
        guard version <= 16 else { throw BitcoinError("address: witness version \(version) above 16") }
        guard variant == (version == 0 ? .bech32 : .bech32m) else {
            throw BitcoinError("address: witness version \(version) needs \(version == 0 ? "bech32" : "bech32m")")
        }
        let program = try Bech32.convertBits(Array(data.dropFirst()), from: 5, to: 8, pad: false)
        try self.init(hrp: hrp, version: version, program: program)
    }

    public var description: String {
        let data = [version] + ((try? Bech32.convertBits(program, from: 8, to: 5, pad: true)) ?? [])
        return Bech32.encode(hrp: hrp, data: data, variant: version == 0 ? .bech32 : .bech32m)
    }

    /// `OP_n <program>`.
    public var scriptPubKey: Script {
        Script(bytes: [version == 0 ? 0 : 0x50 + version, UInt8(program.count)] + program)
    }

    /// The address a segwit output script pays to, if it is one.
    public init?(scriptPubKey: Script, network: Network) {
        guard let (version, program) = scriptPubKey.witnessProgram,
            let address = try? SegwitAddress(network: network, version: version, program: program)
        else { return nil }
        self = address
    }
}
