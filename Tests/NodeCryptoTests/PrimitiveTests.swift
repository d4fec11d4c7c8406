import NodeCrypto
import TestSupport
import Testing

@Suite("RFC vectors for the Noise primitives and Ed25519")
struct PrimitiveTests {
    struct Ed25519Vector: Sendable {
        let secret: String, publicKey: String, message: String, signature: String
    }

    // RFC 8032 §7.1, TEST 1-3.
    static let ed25519Vectors = [
        Ed25519Vector(
            secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", message: "",
            signature:
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ),
        Ed25519Vector(
            secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", message: "72",
            signature:
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ),
        Ed25519Vector(
            secret: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", message: "af82",
            signature:
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
        ),
    ]

    @Test("RFC 8032 Ed25519 tests 1-3", arguments: ed25519Vectors)
    func ed25519(_ v: Ed25519Vector) throws {
        let key = try Ed25519.PrivateKey(seed: Hex.decode(v.secret))
        #expect(key.publicKey.hex == v.publicKey)
        let message = try Hex.decode(v.message)
        let signature = key.signature(for: message)
        #expect(signature.rawRepresentation.hex == v.signature)
        let publicKey = try Ed25519.PublicKey(rawRepresentation: Hex.decode(v.publicKey))
        #expect(publicKey.isValidSignature(signature, for: message))
        #expect(!publicKey.isValidSignature(signature, for: message + [0]))
        var tampered = signature.rawRepresentation
        tampered[63] ^= 0x40
        #expect(!publicKey.isValidSignature(try .init(rawRepresentation: tampered), for: message))
    }

    @Test("RFC 8439 §2.8.2 AEAD vector, and tampering is detected")
    func chaChaPoly() throws {
        let key = try ChaChaPoly.Key(rawRepresentation: Array(0x80...0x9f))
        let nonce = try ChaChaPoly.Nonce(rawRepresentation: Hex.decode("070000004041424344454647"))
        let aad = try Hex.decode("50515253c0c1c2c3c4c5c6c7")
        let plaintext = Array(
            "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
                .utf8)
        let sealed = ChaChaPoly.seal(plaintext, key: key, nonce: nonce, authenticating: aad)
        #expect(
            sealed.hex
                == "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
                + "1ae10b594f09e26a7e902ecbd0600691")
        #expect(try ChaChaPoly.open(sealed, key: key, nonce: nonce, authenticating: aad) == plaintext)
        for index in [0, sealed.count / 2, sealed.count - 1] {
            var tampered = sealed
            tampered[index] ^= 1
            #expect(throws: CryptoError(.authenticationFailure, "")) {
                try ChaChaPoly.open(tampered, key: key, nonce: nonce, authenticating: aad)
            }
        }
        #expect(throws: CryptoError(.authenticationFailure, "")) {
            try ChaChaPoly.open(sealed, key: key, nonce: nonce, authenticating: aad + [1])
        }
        #expect(throws: CryptoError(.authenticationFailure, "")) {
            try ChaChaPoly.open(Array(sealed.prefix(15)), key: key, nonce: nonce)
        }
        // An empty plaintext still authenticates.
        let empty = ChaChaPoly.seal([], key: key, nonce: nonce)
        #expect(empty.count == 16)
        #expect(try ChaChaPoly.open(empty, key: key, nonce: nonce).isEmpty)
    }

    @Test func noiseNonceLayout() {
        #expect(ChaChaPoly.Nonce(noiseCounter: 0x0102030405060708).rawRepresentation.hex == "000000000807060504030201")
    }

    @Test("hashes: RFC 7693 BLAKE2b-512(abc), FIPS 180 SHA-256(abc)")
    func hashes() {
        #expect(
            BLAKE2b.hash(Array("abc".utf8)).hex
                == "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        )
        #expect(
            SHA256.hash(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(BLAKE2b.hash256([]).count == 32)
    }

    @Test("HMAC: RFC 4231 cases 1-2 for SHA-256; HMAC-BLAKE2b as Python's hmac computes it")
    func hmac() {
        #expect(
            HMAC<SHA256>.authenticationCode(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8))
                .hex == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        let jefe = Array("Jefe".utf8)
        let what = Array("what do ya want for nothing?".utf8)
        #expect(
            HMAC<SHA256>.authenticationCode(key: jefe, message: what).hex
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(
            HMAC<BLAKE2b>.authenticationCode(key: jefe, message: what).hex
                == "6ff884f8ddc2a6586b3c98a4cd6ebdf14ec10204b6710073eb5865ade37a2643b8807c1335d107ecdb9ffeaeb6828c4625ba172c66379efcd222c2de11727ab4"
        )
        // Keys longer than the block are hashed first (RFC 4231 case 6 shape).
        let longKey = [UInt8](repeating: 0xaa, count: 131)
        #expect(
            HMAC<SHA256>.authenticationCode(
                key: longKey, message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)
            ).hex == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test("HKDF: RFC 5869 case 1; Noise HKDF outputs chain as the spec defines")
    func hkdf() throws {
        let prk = HKDF<SHA256>.extract(
            salt: try Hex.decode("000102030405060708090a0b0c"), inputKeyMaterial: [UInt8](repeating: 0x0b, count: 22))
        #expect(prk.hex == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
        let okm = HKDF<SHA256>.expand(pseudoRandomKey: prk, info: try Hex.decode("f0f1f2f3f4f5f6f7f8f9"), length: 42)
        #expect(okm.hex == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        // Noise's HKDF with n outputs equals RFC 5869 expand with empty info.
        let ck = SecureRandom.bytes(64)
        let ikm = SecureRandom.bytes(32)
        let outputs = HKDF<BLAKE2b>.noise(chainingKey: ck, inputKeyMaterial: ikm, outputs: 3)
        let rfc = HKDF<BLAKE2b>.expand(
            pseudoRandomKey: HKDF<BLAKE2b>.extract(salt: ck, inputKeyMaterial: ikm), info: [], length: 192)
        #expect(outputs.flatMap { $0 } == rfc)
    }

    @Test("RFC 7748 §6.1 X25519 exchange; low-order points are refused")
    func x25519() throws {
        let alice = try X25519.PrivateKey(
            rawRepresentation: Hex.decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try X25519.PrivateKey(
            rawRepresentation: Hex.decode("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        #expect(
            alice.publicKey.rawRepresentation.hex == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        #expect(
            bob.publicKey.rawRepresentation.hex == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        #expect(try alice.sharedSecret(with: bob.publicKey).hex == shared)
        #expect(try bob.sharedSecret(with: alice.publicKey).hex == shared)
        for lowOrder in [[UInt8](repeating: 0, count: 32), [1] + [UInt8](repeating: 0, count: 31)] {
            #expect(throws: CryptoError(.weakSharedSecret, "")) {
                try alice.sharedSecret(with: try X25519.PublicKey(rawRepresentation: lowOrder))
            }
        }
    }

    @Test func constantTimeComparison() {
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(constantTimeEquals([], []))
        #expect(SecureRandom.bytes(32) != SecureRandom.bytes(32))
    }
}
