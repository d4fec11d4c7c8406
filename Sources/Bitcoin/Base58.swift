import NodeCrypto

/// Base58Check, for WIF private keys and BIP32 extended keys.
public enum Base58 {
    static let alphabet = Array("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var digits: [UInt8] = []
        for byte in bytes {
            var carry = Int(byte)
            for i in digits.indices {
                carry += Int(digits[i]) << 8
                digits[i] = UInt8(carry % 58)
                carry /= 58
            }
            while carry > 0 {
                digits.append(UInt8(carry % 58))
                carry /= 58
            }
        }
        let zeros = bytes.prefix { $0 == 0 }.count
        return String(
            decoding: [UInt8](repeating: alphabet[0], count: zeros) + digits.reversed().map { alphabet[Int($0)] },
            as: UTF8.self)
    }

    public static func decode(_ string: String) throws(BitcoinError) -> [UInt8] {
        var bytes: [UInt8] = []
        for c in string.utf8 {
            guard let value = alphabet.firstIndex(of: c) else { throw BitcoinError("base58: invalid character") }
            var carry = value
            for i in bytes.indices {
                carry += Int(bytes[i]) * 58
                bytes[i] = UInt8(carry & 0xFF)
                carry >>= 8
            }
            while carry > 0 {
                bytes.append(UInt8(carry & 0xFF))
                carry >>= 8
            }
        }
        let zeros = string.utf8.prefix { $0 == alphabet[0] }.count
        return [UInt8](repeating: 0, count: zeros) + bytes.reversed()
    }

    public static func encodeCheck(_ payload: [UInt8]) -> String {
        encode(payload + SHA256.doubleHash(payload).prefix(4))
    }

    public static func decodeCheck(_ string: String) throws(BitcoinError) -> [UInt8] {
        let bytes = try decode(string)
        guard bytes.count >= 4 else { throw BitcoinError("base58check: too short") }
        let payload = Array(bytes.dropLast(4))
        guard Array(SHA256.doubleHash(payload).prefix(4)) == Array(bytes.suffix(4)) else {
            throw BitcoinError("base58check: bad checksum")
        }
        return payload
    }
}

extension Secp256k1.PrivateKey {
    /// A WIF private key (mainnet 0x80 or test networks 0xef; compressed keys only).
    public init(wif: String) throws(BitcoinError) {
        let payload = try Base58.decodeCheck(wif)
        guard payload.count == 34, payload[0] == 0x80 || payload[0] == 0xEF, payload[33] == 1 else {
            throw BitcoinError("WIF: not a compressed private key")
        }
        do { try self.init(rawRepresentation: Array(payload[1..<33])) } catch { throw BitcoinError("WIF: \(error)") }
    }
}

/// The fingerprint of a BIP32 extended private key's own public key (its first four
/// bytes of HASH160): what key origins name as the master.
public func bip32Fingerprint(extendedPrivateKey: String) throws(BitcoinError) -> [UInt8] {
    let payload = try Base58.decodeCheck(extendedPrivateKey)
    guard payload.count == 78, payload[45] == 0 else { throw BitcoinError("not an extended private key") }
    let key: Secp256k1.PrivateKey
    do { key = try Secp256k1.PrivateKey(rawRepresentation: Array(payload[46..<78])) } catch {
        throw BitcoinError("extended key: \(error)")
    }
    return Array(SHA256.hash160(key.publicKey.compressed).prefix(4))
}
