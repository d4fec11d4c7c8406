import NodeCrypto

/// A Bitcoin script, as bytes, with builders for the templates SideNode uses.
public struct Script: Sendable, Hashable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(hex: String) throws { bytes = try Hex.decode(hex) }

    public var hex: String { bytes.hex }
    public var description: String { hex }

    public enum Op {
        public static let zero: UInt8 = 0x00
        public static let pushData1: UInt8 = 0x4C
        public static let pushData2: UInt8 = 0x4D
        public static let pushData4: UInt8 = 0x4E
        public static let one: UInt8 = 0x51
        public static let sixteen: UInt8 = 0x60
        public static let `return`: UInt8 = 0x6A
        public static let dup: UInt8 = 0x76
        public static let equal: UInt8 = 0x87
        public static let equalVerify: UInt8 = 0x88
        public static let hash160: UInt8 = 0xA9
        public static let checkSig: UInt8 = 0xAC
        public static let checkSigAdd: UInt8 = 0xBA
        public static let numEqual: UInt8 = 0x9C
        public static let `if`: UInt8 = 0x63
        public static let `else`: UInt8 = 0x67
        public static let endIf: UInt8 = 0x68
        public static let verify: UInt8 = 0x69
        public static let swap: UInt8 = 0x7C
        public static let add: UInt8 = 0x93
        public static let greaterThanOrEqual: UInt8 = 0xA2
        public static let checkSequenceVerify: UInt8 = 0xB2
    }

    /// The shortest push of `data` (minimal push rules, as policy requires).
    public static func push(_ data: [UInt8]) -> [UInt8] {
        switch data.count {
        case 0: return [Op.zero]
        case 1 where data[0] >= 1 && data[0] <= 16: return [Op.one - 1 + data[0]]
        case 1 where data[0] == 0x81: return [0x4F]
        case 1..<Int(Op.pushData1): return [UInt8(data.count)] + data
        case Int(Op.pushData1)...0xFF: return [Op.pushData1, UInt8(data.count)] + data
        case 0x100...0xFFFF: return [Op.pushData2, UInt8(data.count & 0xFF), UInt8(data.count >> 8)] + data
        default:
            var w = ByteWriter()
            w.u8(Op.pushData4)
            w.u32(UInt32(data.count))
            return w.bytes + data
        }
    }

    /// A small integer as a script number push (`OP_1`…`OP_16`, else minimal bytes).
    public static func pushNumber(_ n: Int) -> [UInt8] {
        if n == 0 { return [Op.zero] }
        if n >= 1 && n <= 16 { return [Op.one - 1 + UInt8(n)] }
        var v = n
        var bytes: [UInt8] = []
        while v > 0 {
            bytes.append(UInt8(v & 0xFF))
            v >>= 8
        }
        if bytes.last! & 0x80 != 0 { bytes.append(0) }
        return push(bytes)
    }

    // MARK: Templates

    /// P2WPKH: `OP_0 <HASH160(compressed pubkey)>`.
    public static func p2wpkh(publicKeyHash: [UInt8]) -> Script { Script(bytes: [0x00, 0x14] + publicKeyHash) }
    public static func p2wpkh(_ key: Secp256k1.PublicKey) -> Script {
        p2wpkh(publicKeyHash: SHA256.hash160(key.compressed))
    }

    /// P2WSH: `OP_0 <SHA256(witness script)>`.
    public static func p2wsh(_ witnessScript: Script) -> Script {
        Script(bytes: [0x00, 0x20] + SHA256.hash(witnessScript.bytes))
    }

    /// P2TR: `OP_1 <x-only output key>`.
    public static func p2tr(outputKey: [UInt8]) -> Script { Script(bytes: [0x51, 0x20] + outputKey) }

    /// P2PKH: `OP_DUP OP_HASH160 <hash> OP_EQUALVERIFY OP_CHECKSIG` (BIP143's P2WPKH script code).
    public static func p2pkh(publicKeyHash: [UInt8]) -> Script {
        Script(bytes: [Op.dup, Op.hash160, 0x14] + publicKeyHash + [Op.equalVerify, Op.checkSig])
    }

    /// `OP_RETURN <data>`: one push, as standardness requires.
    public static func opReturn(_ data: [UInt8]) -> Script { Script(bytes: [Op.return] + push(data)) }

    /// The BIP342 k-of-n leaf `<K1> OP_CHECKSIG <K2> OP_CHECKSIGADD … <Kn> OP_CHECKSIGADD <k> OP_NUMEQUAL`
    /// (the `multi_a` descriptor), keys in the given order: `ThresholdScript`'s counted form.
    public static func multiA(threshold: Int, keys: [[UInt8]]) throws(BitcoinError) -> Script {
        guard threshold >= 1 else { throw BitcoinError("multi_a: threshold \(threshold) of \(keys.count) keys") }
        return try ThresholdScript(keys: keys, threshold: UInt64(threshold)).script
    }

    /// The keys and threshold of a `multiA` leaf, if it is exactly one.
    public var multiA: (threshold: Int, keys: [[UInt8]])? {
        guard let parsed = ThresholdScript(script: self), parsed.weights == nil, parsed.olderBlocks == nil else {
            return nil
        }
        return (Int(parsed.threshold), parsed.keys)
    }

    // MARK: Classification

    /// `(version, program)` when this is a segwit output script.
    public var witnessProgram: (version: UInt8, program: [UInt8])? {
        guard bytes.count >= 4, bytes.count <= 42, Int(bytes[1]) == bytes.count - 2 else { return nil }
        switch bytes[0] {
        case 0: return (0, Array(bytes[2...]))
        case Op.one...Op.sixteen: return (bytes[0] - 0x50, Array(bytes[2...]))
        default: return nil
        }
    }

    public var isP2WPKH: Bool { bytes.count == 22 && bytes[0] == 0 && bytes[1] == 0x14 }
    public var isP2WSH: Bool { bytes.count == 34 && bytes[0] == 0 && bytes[1] == 0x20 }
    public var isP2TR: Bool { bytes.count == 34 && bytes[0] == 0x51 && bytes[1] == 0x20 }
    public var isOpReturn: Bool { bytes.first == Op.return }
}
