import NodeCrypto
import Testing

@Suite("Bad input gets a typed error, never a crash")
struct BadInputTests {
    @Test func wrongLengths() {
        #expect(throws: CryptoError(.invalidLength, "")) {
            try Ed25519.PrivateKey(seed: [UInt8](repeating: 1, count: 31))
        }
        #expect(throws: CryptoError(.invalidLength, "")) { try Ed25519.PublicKey(rawRepresentation: []) }
        #expect(throws: CryptoError(.invalidLength, "")) { try Ed25519.Signature(rawRepresentation: [1, 2, 3]) }
        #expect(throws: CryptoError(.invalidLength, "")) { try X25519.PrivateKey(rawRepresentation: [1]) }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try X25519.PublicKey(rawRepresentation: [UInt8](repeating: 9, count: 33))
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try ChaChaPoly.Key(rawRepresentation: [UInt8](repeating: 0, count: 16))
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try ChaChaPoly.Nonce(rawRepresentation: [UInt8](repeating: 0, count: 8))
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try Secp256k1.PrivateKey(rawRepresentation: [UInt8](repeating: 1, count: 33))
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try Secp256k1.XOnlyPublicKey(rawRepresentation: [UInt8](repeating: 1, count: 33))
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try Secp256k1.PublicKey(serialized: [UInt8](repeating: 2, count: 32))
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try Secp256k1.SchnorrSignature(rawRepresentation: [UInt8](repeating: 0, count: 65))
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try Secp256k1.PrivateKey().ecdsaSignature(forDigest: [1, 2])
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try Secp256k1.PrivateKey().schnorrSignature(for: [], auxiliaryRandomness: [0])
        }
        #expect(throws: CryptoError(.invalidLength, "")) {
            try Secp256k1.PrivateKey().xOnlyPublicKey.taprootTweak(merkleRoot: [1, 2, 3])
        }
    }

    @Test func invalidPoints() throws {
        // BIP340 vector 5: a public key not on the curve.
        let offCurve = try Hex.decode("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34")
        #expect(throws: CryptoError(.invalidKey, "")) { try Secp256k1.XOnlyPublicKey(rawRepresentation: offCurve) }
        // An x coordinate not below the field size p.
        let aboveP = [UInt8](repeating: 0xff, count: 32)
        #expect(throws: CryptoError(.invalidKey, "")) { try Secp256k1.XOnlyPublicKey(rawRepresentation: aboveP) }
        #expect(throws: CryptoError(.invalidKey, "")) { try Secp256k1.PublicKey(serialized: [0x02] + offCurve) }
        #expect(throws: CryptoError(.invalidKey, "")) { try Secp256k1.PublicKey(serialized: [0x05] + offCurve) }
        // Private keys 0 and the group order n are out of range.
        #expect(throws: CryptoError(.invalidKey, "")) {
            try Secp256k1.PrivateKey(rawRepresentation: [UInt8](repeating: 0, count: 32))
        }
        let n = try Hex.decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        #expect(throws: CryptoError(.invalidKey, "")) { try Secp256k1.PrivateKey(rawRepresentation: n) }
        // Ed25519: a small-order point (the identity) and a non-canonical encoding.
        let identity = [1] + [UInt8](repeating: 0, count: 31)
        #expect(throws: CryptoError(.invalidKey, "")) { try Ed25519.PublicKey(rawRepresentation: identity) }
        let nonCanonical = [UInt8](repeating: 0xff, count: 31) + [0x7f]
        #expect(throws: CryptoError(.invalidKey, "")) { try Ed25519.PublicKey(rawRepresentation: nonCanonical) }
    }

    @Test func malformedDER() throws {
        let key = Secp256k1.PrivateKey()
        let good = try key.ecdsaSignature(forDigest: SecureRandom.bytes(32)).derRepresentation
        #expect(try Secp256k1.ECDSASignature(derEncoded: good).derRepresentation == good)
        var cases: [[UInt8]] = [
            [],
            [0x30],
            Array(good.dropLast()),  // truncated
            good + [0x00],  // trailing byte
            [0x31] + good.dropFirst(),  // wrong sequence tag
            [UInt8](repeating: 0x30, count: 73),  // too long
        ]
        var badLength = good
        badLength[1] &+= 1
        cases.append(badLength)
        // Non-minimal integer: an extra leading zero on r.
        let rLength = Int(good[3])
        let r = Array(good[4..<(4 + rLength)])
        let rest = Array(good[(4 + rLength)...])
        let padded = [0x02, UInt8(rLength + 1), 0x00] + r + rest
        cases.append([0x30, UInt8(padded.count)] + padded)
        for bytes in cases {
            #expect(throws: CryptoError(.invalidSignatureEncoding, ""), "\(bytes.hex)") {
                try Secp256k1.ECDSASignature(derEncoded: bytes)
            }
        }
        for _ in 0..<200 {
            let random = SecureRandom.bytes(Int.random(in: 1...72))
            _ = try? Secp256k1.ECDSASignature(derEncoded: random)  // must not crash
        }
    }

    @Test func malformedHex() {
        #expect(throws: CryptoError(.invalidHex, "")) { try Hex.decode("abc") }
        #expect(throws: CryptoError(.invalidHex, "")) { try Hex.decode("zz") }
        #expect(throws: CryptoError(.invalidHex, "")) { try Hex.decode("0g") }
        #expect((try? Hex.decode("00FFaa")) == [0, 255, 170])
    }
}
