import NodeCrypto

/// Output descriptors (BIP380–386) for what a node controls, with their checksums, so a
/// user can watch them in Bitcoin Core (`importdescriptors`) or BDK.
public enum Descriptor {
    static let inputCharset = Array(
        "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ".utf8)
    static let checksumCharset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)

    static func polymod(_ symbols: [UInt64]) -> UInt64 {
        let generator: [UInt64] = [0xF5_DEE5_1989, 0xA9_FDCA_3312, 0x1B_AB10_E32D, 0x37_06B1_677A, 0x64_4D62_6FFD]
        var chk: UInt64 = 1
        for value in symbols {
            let top = chk >> 35
            chk = (chk & 0x7_FFFF_FFFF) << 5 ^ value
            for i in 0..<5 where (top >> UInt64(i)) & 1 == 1 { chk ^= generator[i] }
        }
        return chk
    }

    /// The 8-character checksum of a descriptor (without its `#…`).
    public static func checksum(_ descriptor: String) throws(BitcoinError) -> String {
        var symbols: [UInt64] = []
        var groups: [UInt64] = []
        for c in descriptor.utf8 {
            guard let v = inputCharset.firstIndex(of: c) else {
                throw BitcoinError("descriptor: invalid character \(Character(Unicode.Scalar(c)))")
            }
            symbols.append(UInt64(v & 31))
            groups.append(UInt64(v >> 5))
            if groups.count == 3 {
                symbols.append(groups[0] * 9 + groups[1] * 3 + groups[2])
                groups = []
            }
        }
        if groups.count == 1 { symbols.append(groups[0]) }
        if groups.count == 2 { symbols.append(groups[0] * 3 + groups[1]) }
        let value = polymod(symbols + [0, 0, 0, 0, 0, 0, 0, 0]) ^ 1
        return String(
            decoding: (0..<8).map { checksumCharset[Int((value >> (5 * (7 - UInt64($0)))) & 31)] }, as: UTF8.self)
    }

    /// `descriptor#checksum`.
    public static func withChecksum(_ descriptor: String) -> String {
        "\(descriptor)#\((try? checksum(descriptor)) ?? "")"
    }

    /// Whether `text` is `descriptor#checksum` with the right checksum.
    public static func isValid(_ text: String) -> Bool {
        let parts = text.split(separator: "#", omittingEmptySubsequences: false)
        guard parts.count == 2, let sum = try? checksum(String(parts[0])) else { return false }
        return sum == parts[1]
    }

    /// `tr(KEY)`: a key-path-only taproot output (BIP86 tweak with no script tree).
    public static func tr(_ xonly: [UInt8]) -> String { withChecksum("tr(\(xonly.hex))") }

    /// `wpkh(KEY)` for a compressed public key.
    public static func wpkh(_ compressed: [UInt8]) -> String { withChecksum("wpkh(\(compressed.hex))") }

    /// `tr(NUMS,multi_a(k,K1,…,Kn))`: the checkpoint coin — no key path, one k-of-n leaf.
    public static func multiA(threshold: Int, keys: [[UInt8]]) -> String {
        checkpointCoin(threshold: threshold, keys: keys, recovery: nil)
    }

    /// The checkpoint coin: `tr(NUMS,multi_a(k,…))`, or with a recovery leaf
    /// `tr(NUMS,{multi_a(k,…),and_v(v:older(T),multi_a(k',…))})` (keys in script order).
    public static func checkpointCoin(
        threshold: Int, keys: [[UInt8]], recovery: (threshold: Int, blocks: UInt32)?
    )
        -> String
    {
        let list = keys.map(\.hex).joined(separator: ",")
        let main = "multi_a(\(threshold),\(list))"
        guard let recovery else { return withChecksum("tr(\(TaprootOutput.unspendableKey.hex),\(main))") }
        return withChecksum(
            "tr(\(TaprootOutput.unspendableKey.hex),{\(main),and_v(v:older(\(recovery.blocks)),multi_a(\(recovery.threshold),\(list)))})"
        )
    }
}
