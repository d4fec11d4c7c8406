import NodeCrypto
import TestSupport
import Testing

@Suite("ECDSA: RFC 6979 + low-S signatures byte-exact against BIP143's examples")
struct ECDSATests {
    @Test func bip143Signatures() throws {
        let vectors = try #require(try Vectors.json("bip143-vectors.json")["vectors"] as? [[String: Any]])
        var checked = 0
        for vector in vectors {
            for sighash in vector["sighashes"] as? [[String: Any]] ?? [] {
                guard let secret = sighash["private_key"] as? String, let expected = sighash["signature"] as? String
                else { continue }
                let key = try Secp256k1.PrivateKey(rawRepresentation: Hex.decode(secret))
                let digest = try Hex.decode(try #require(sighash["sigHash"] as? String))
                let signature = try key.ecdsaSignature(forDigest: digest)
                // The vector appends the one-byte hash type to the DER signature.
                let expectedBytes = try Hex.decode(expected)
                #expect(signature.derRepresentation == Array(expectedBytes.dropLast()))
                #expect(signature.isLowS)
                if let pub = sighash["public_key"] as? String {
                    #expect(try Secp256k1.PublicKey(serialized: Hex.decode(pub)) == key.publicKey)
                }
                let parsed = try Secp256k1.ECDSASignature(derEncoded: Array(expectedBytes.dropLast()))
                #expect(key.publicKey.isValidECDSASignature(parsed, forDigest: digest))
                var otherDigest = digest
                otherDigest[0] ^= 1
                #expect(!key.publicKey.isValidECDSASignature(parsed, forDigest: otherDigest))
                checked += 1
            }
        }
        #expect(checked == 12, "the README promises 12 signatures with private keys")
    }

    @Test func highSIsRejected() throws {
        let key = Secp256k1.PrivateKey()
        let digest = SecureRandom.bytes(32)
        let low = try key.ecdsaSignature(forDigest: digest)
        // s' = n - s is the same signature in high-S form.
        let n: [UInt8] = try Hex.decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        let s = Array(low.compact[32...])
        var highS = [UInt8](repeating: 0, count: 32)
        var borrow = 0
        for i in stride(from: 31, through: 0, by: -1) {
            var d = Int(n[i]) - Int(s[i]) - borrow
            borrow = d < 0 ? 1 : 0
            if d < 0 { d += 256 }
            highS[i] = UInt8(d)
        }
        let high = try Secp256k1.ECDSASignature(compact: Array(low.compact[..<32]) + highS)
        #expect(!high.isLowS)
        #expect(!key.publicKey.isValidECDSASignature(high, forDigest: digest))
        #expect(key.publicKey.isValidECDSASignature(low, forDigest: digest))
    }
}
