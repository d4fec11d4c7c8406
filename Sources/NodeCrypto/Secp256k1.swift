internal import CSecp256k1

/// secp256k1 on libsecp256k1: BIP340 Schnorr, x-only keys, the BIP341 taproot
/// tweak, and ECDSA with RFC 6979 nonces, low-S and DER encoding.
public enum Secp256k1 {
    /// One shared context. After randomisation libsecp256k1 only reads it, so
    /// concurrent signing and verification through it are safe.
    private final class Context: @unchecked Sendable {
        let pointer: OpaquePointer

        init() {
            pointer = sidenode_secp256k1_context_create()
            let seed = SecureRandom.bytes(32)
            // Blinding against side channels; failure would leave the context usable.
            _ = seed.withUnsafeBufferPointer { secp256k1_context_randomize(pointer, $0.baseAddress!) }
        }
    }

    private static let context = Context()
    static var ctx: OpaquePointer { context.pointer }

    // MARK: Keys

    public struct PrivateKey: Sendable {
        private let secret: SecretBytes

        /// A fresh random key.
        public init() {
            while true {
                if let key = try? PrivateKey(rawRepresentation: SecureRandom.bytes(32)) {
                    self = key
                    return
                }
            }
        }

        /// Accepts 32 bytes in [1, n-1].
        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 32 else {
                throw .length("secp256k1 private key", expected: 32, got: rawRepresentation.count)
            }
            let ok = rawRepresentation.withUnsafeBufferPointer { secp256k1_ec_seckey_verify(ctx, $0.baseAddress!) == 1 }
            guard ok else {
                throw CryptoError(.invalidKey, "secp256k1 private key is zero or not below the group order")
            }
            secret = SecretBytes(rawRepresentation)
        }

        /// The 32 secret bytes, for writing a key file. Handle with care.
        public var rawRepresentation: [UInt8] { secret.bytes }

        fileprivate func withKeypair<R>(
            _ body: (UnsafePointer<secp256k1_keypair>) throws(CryptoError) -> R
        ) throws(CryptoError) -> R {
            var keypair = secp256k1_keypair()
            defer { withUnsafeMutableBytes(of: &keypair) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) } }
            let ok = secret.withUnsafeBytes {
                secp256k1_keypair_create(ctx, &keypair, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
            }
            guard ok else { throw CryptoError(.libraryFailure, "secp256k1_keypair_create failed") }
            return try body(&keypair)
        }

        public var publicKey: PublicKey {
            var pub = secp256k1_pubkey()
            _ = secret.withUnsafeBytes {
                secp256k1_ec_pubkey_create(ctx, &pub, $0.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
            return PublicKey(pub)
        }

        public var xOnlyPublicKey: XOnlyPublicKey { publicKey.xOnly }

        /// BIP340 signature of a message of any length. `auxiliaryRandomness` is the
        /// 32-byte aux_rand of BIP340; nil draws fresh randomness, as BIP340 recommends.
        public func schnorrSignature(
            for message: [UInt8], auxiliaryRandomness: [UInt8]? = nil
        ) throws(CryptoError) -> SchnorrSignature {
            let aux = auxiliaryRandomness ?? SecureRandom.bytes(32)
            guard aux.count == 32 else { throw .length("BIP340 aux_rand", expected: 32, got: aux.count) }
            var sig = [UInt8](repeating: 0, count: 64)
            let ok = try withKeypair { (keypair) throws(CryptoError) -> Bool in
                aux.withUnsafeBufferPointer { a in
                    var extra = secp256k1_schnorrsig_extraparams()
                    // SECP256K1_SCHNORRSIG_EXTRAPARAMS_MAGIC, which Swift does not import as a macro.
                    extra.magic = (0xda, 0x6f, 0xb3, 0x8c)
                    extra.noncefp = nil
                    extra.ndata = UnsafeMutableRawPointer(mutating: a.baseAddress!)
                    return sig.withUnsafeMutableBufferPointer { s in
                        message.withUnsafeBufferPointer { m in
                            secp256k1_schnorrsig_sign_custom(
                                ctx, s.baseAddress!, m.baseAddress, m.count, keypair, &extra)
                                == 1
                        }
                    }
                }
            }
            guard ok else { throw CryptoError(.libraryFailure, "BIP340 signing failed") }
            return SchnorrSignature(unchecked: sig)
        }

        /// ECDSA over a 32-byte digest with an RFC 6979 nonce; the result is always low-S.
        public func ecdsaSignature(forDigest digest: [UInt8]) throws(CryptoError) -> ECDSASignature {
            guard digest.count == 32 else { throw .length("ECDSA digest", expected: 32, got: digest.count) }
            var sig = secp256k1_ecdsa_signature()
            let ok = secret.withUnsafeBytes { sk in
                digest.withUnsafeBufferPointer { d in
                    secp256k1_ecdsa_sign(
                        ctx, &sig, d.baseAddress!, sk.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, nil)
                        == 1
                }
            }
            guard ok else { throw CryptoError(.libraryFailure, "ECDSA signing failed") }
            return ECDSASignature(sig)
        }

        /// The BIP341 tweaked private key for the key path of an output whose
        /// internal key is this key's x-only public key (negated first if its Y is odd).
        public func taprootTweaked(merkleRoot: [UInt8]? = nil) throws(CryptoError) -> PrivateKey {
            let tweak = try xOnlyPublicKey.taprootTweak(merkleRoot: merkleRoot)
            let tweaked = try withKeypair { (keypair) throws(CryptoError) -> [UInt8] in
                var copy = keypair.pointee
                defer { withUnsafeMutableBytes(of: &copy) { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) } }
                let ok = tweak.withUnsafeBufferPointer {
                    secp256k1_keypair_xonly_tweak_add(ctx, &copy, $0.baseAddress!) == 1
                }
                guard ok else { throw CryptoError(.invalidKey, "taproot tweak produced an invalid key") }
                var out = [UInt8](repeating: 0, count: 32)
                _ = out.withUnsafeMutableBufferPointer { secp256k1_keypair_sec(ctx, $0.baseAddress!, &copy) }
                return out
            }
            return try PrivateKey(rawRepresentation: tweaked)
        }
    }

    /// A full public key (point), serialized compressed.
    public struct PublicKey: Hashable, Sendable {
        /// 33-byte SEC1 compressed encoding.
        public let compressed: [UInt8]

        fileprivate init(_ pub: secp256k1_pubkey) {
            var copy = pub
            var out = [UInt8](repeating: 0, count: 33)
            var len = 33
            _ = secp256k1_ec_pubkey_serialize(ctx, &out, &len, &copy, sidenode_secp256k1_ec_compressed())
            compressed = out
        }

        /// Parses a 33-byte compressed or 65-byte uncompressed SEC1 point.
        public init(serialized: [UInt8]) throws(CryptoError) {
            guard serialized.count == 33 || serialized.count == 65 else {
                throw CryptoError(
                    .invalidLength, "secp256k1 public key must be 33 or 65 bytes, got \(serialized.count)")
            }
            var pub = secp256k1_pubkey()
            let ok = serialized.withUnsafeBufferPointer {
                secp256k1_ec_pubkey_parse(ctx, &pub, $0.baseAddress!, $0.count) == 1
            }
            guard ok else { throw CryptoError(.invalidKey, "not a valid secp256k1 point") }
            self.init(pub)
        }

        fileprivate var parsed: secp256k1_pubkey {
            var pub = secp256k1_pubkey()
            _ = compressed.withUnsafeBufferPointer { secp256k1_ec_pubkey_parse(ctx, &pub, $0.baseAddress!, 33) }
            return pub
        }

        public var xOnly: XOnlyPublicKey {
            var pub = parsed
            var xonly = secp256k1_xonly_pubkey()
            _ = secp256k1_xonly_pubkey_from_pubkey(ctx, &xonly, nil, &pub)
            return XOnlyPublicKey(xonly)
        }

        /// Verifies a low-S ECDSA signature over a 32-byte digest (high-S is rejected,
        /// as Bitcoin's standardness rules do).
        public func isValidECDSASignature(_ signature: ECDSASignature, forDigest digest: [UInt8]) -> Bool {
            guard digest.count == 32 else { return false }
            var pub = parsed
            var sig = signature.parsed
            return digest.withUnsafeBufferPointer { secp256k1_ecdsa_verify(ctx, &sig, $0.baseAddress!, &pub) == 1 }
        }

        /// 65-byte SEC1 uncompressed encoding (0x04 ‖ X ‖ Y).
        public var uncompressed: [UInt8] {
            var pub = parsed
            var out = [UInt8](repeating: 0, count: 65)
            var len = 65
            _ = secp256k1_ec_pubkey_serialize(ctx, &out, &len, &pub, sidenode_secp256k1_ec_uncompressed())
            return out
        }

        /// The key that made a compact ECDSA signature (r ‖ s) with recovery id 0…3 over
        /// a 32-byte digest, or nil.
        public static func recover(digest: [UInt8], compact: [UInt8], recoveryID: Int32) -> PublicKey? {
            guard digest.count == 32, compact.count == 64, (0...3).contains(recoveryID) else { return nil }
            var sig = secp256k1_ecdsa_recoverable_signature()
            guard
                compact.withUnsafeBufferPointer({
                    secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &sig, $0.baseAddress!, recoveryID) == 1
                })
            else { return nil }
            var pub = secp256k1_pubkey()
            guard digest.withUnsafeBufferPointer({ secp256k1_ecdsa_recover(ctx, &pub, &sig, $0.baseAddress!) == 1 })
            else { return nil }
            return PublicKey(pub)
        }
    }

    /// A BIP340 x-only public key (32 bytes, the X coordinate of a point with even Y).
    public struct XOnlyPublicKey: Hashable, Sendable, CustomStringConvertible {
        public let rawRepresentation: [UInt8]

        fileprivate init(_ xonly: secp256k1_xonly_pubkey) {
            var copy = xonly
            var out = [UInt8](repeating: 0, count: 32)
            _ = secp256k1_xonly_pubkey_serialize(ctx, &out, &copy)
            rawRepresentation = out
        }

        /// Rejects X coordinates that are not on the curve or not below the field size.
        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 32 else {
                throw .length("x-only public key", expected: 32, got: rawRepresentation.count)
            }
            var xonly = secp256k1_xonly_pubkey()
            let ok = rawRepresentation.withUnsafeBufferPointer {
                secp256k1_xonly_pubkey_parse(ctx, &xonly, $0.baseAddress!) == 1
            }
            guard ok else { throw CryptoError(.invalidKey, "x-only key is not a valid secp256k1 point") }
            self.rawRepresentation = rawRepresentation
        }

        private var parsed: secp256k1_xonly_pubkey {
            var xonly = secp256k1_xonly_pubkey()
            _ = rawRepresentation.withUnsafeBufferPointer { secp256k1_xonly_pubkey_parse(ctx, &xonly, $0.baseAddress!) }
            return xonly
        }

        public func isValidSchnorrSignature(_ signature: SchnorrSignature, for message: [UInt8]) -> Bool {
            var xonly = parsed
            return signature.rawRepresentation.withUnsafeBufferPointer { s in
                message.withUnsafeBufferPointer { m in
                    secp256k1_schnorrsig_verify(ctx, s.baseAddress!, m.baseAddress, m.count, &xonly) == 1
                }
            }
        }

        /// BIP341 t = hash_TapTweak(P || merkle_root), merkle root omitted for a key-only output.
        public func taprootTweak(merkleRoot: [UInt8]?) throws(CryptoError) -> [UInt8] {
            if let root = merkleRoot, root.count != 32 {
                throw .length("taproot merkle root", expected: 32, got: root.count)
            }
            return Secp256k1.taggedHash("TapTweak", rawRepresentation + (merkleRoot ?? []))
        }

        /// The BIP341 output key Q = P + tG and the parity of its Y coordinate
        /// (the low bit of the control block's first byte).
        public func taprootOutputKey(
            merkleRoot: [UInt8]? = nil
        ) throws(CryptoError) -> (key: XOnlyPublicKey, oddY: Bool) {
            let tweak = try taprootTweak(merkleRoot: merkleRoot)
            var internalKey = parsed
            var output = secp256k1_pubkey()
            let ok = tweak.withUnsafeBufferPointer {
                secp256k1_xonly_pubkey_tweak_add(ctx, &output, &internalKey, $0.baseAddress!) == 1
            }
            guard ok else { throw CryptoError(.invalidKey, "taproot tweak produced the point at infinity") }
            var xonly = secp256k1_xonly_pubkey()
            var parity: Int32 = 0
            _ = secp256k1_xonly_pubkey_from_pubkey(ctx, &xonly, &parity, &output)
            return (XOnlyPublicKey(xonly), parity == 1)
        }

        public var hex: String { rawRepresentation.hex }
        public var description: String { hex }
    }

    // MARK: Signatures

    public struct SchnorrSignature: Hashable, Sendable {
        public let rawRepresentation: [UInt8]

        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 64 else {
                throw .length("BIP340 signature", expected: 64, got: rawRepresentation.count)
            }
            self.rawRepresentation = rawRepresentation
        }

        fileprivate init(unchecked bytes: [UInt8]) { rawRepresentation = bytes }
    }

    public struct ECDSASignature: Hashable, Sendable {
        /// 64-byte compact form r || s (big-endian).
        public let compact: [UInt8]

        fileprivate init(_ sig: secp256k1_ecdsa_signature) {
            var copy = sig
            var out = [UInt8](repeating: 0, count: 64)
            _ = secp256k1_ecdsa_signature_serialize_compact(ctx, &out, &copy)
            compact = out
        }

        public init(compact: [UInt8]) throws(CryptoError) {
            guard compact.count == 64 else {
                throw .length("compact ECDSA signature", expected: 64, got: compact.count)
            }
            var sig = secp256k1_ecdsa_signature()
            let ok = compact.withUnsafeBufferPointer {
                secp256k1_ecdsa_signature_parse_compact(ctx, &sig, $0.baseAddress!) == 1
            }
            guard ok else { throw CryptoError(.invalidSignatureEncoding, "r or s is not below the group order") }
            self.init(sig)
        }

        /// Parses a strict DER signature (no hash-type byte).
        public init(derEncoded der: [UInt8]) throws(CryptoError) {
            guard !der.isEmpty, der.count <= 72 else {
                throw CryptoError(.invalidSignatureEncoding, "DER signature must be 1...72 bytes, got \(der.count)")
            }
            var sig = secp256k1_ecdsa_signature()
            let ok = der.withUnsafeBufferPointer {
                secp256k1_ecdsa_signature_parse_der(ctx, &sig, $0.baseAddress!, $0.count) == 1
            }
            guard ok else { throw CryptoError(.invalidSignatureEncoding, "malformed DER signature") }
            self.init(sig)
            // libsecp256k1 tolerates some non-canonical encodings; re-encoding must
            // reproduce the input, as BIP66 strict DER requires.
            guard derRepresentation == der else {
                throw CryptoError(.invalidSignatureEncoding, "DER signature is not canonically encoded")
            }
        }

        fileprivate var parsed: secp256k1_ecdsa_signature {
            var sig = secp256k1_ecdsa_signature()
            _ = compact.withUnsafeBufferPointer { secp256k1_ecdsa_signature_parse_compact(ctx, &sig, $0.baseAddress!) }
            return sig
        }

        public var derRepresentation: [UInt8] {
            var sig = parsed
            var out = [UInt8](repeating: 0, count: 72)
            var len = 72
            _ = secp256k1_ecdsa_signature_serialize_der(ctx, &out, &len, &sig)
            return Array(out.prefix(len))
        }

        /// Whether s ≤ n/2 (the form libsecp256k1 verifies and Bitcoin relays).
        public var isLowS: Bool {
            var sig = parsed
            return secp256k1_ecdsa_signature_normalize(ctx, nil, &sig) == 0
        }
    }

    // MARK: Hashing

    /// BIP340 tagged hash: SHA256(SHA256(tag) || SHA256(tag) || data).
    public static func taggedHash(_ tag: String, _ data: [UInt8]) -> [UInt8] {
        let tagHash = SHA256.hash(Array(tag.utf8))
        return SHA256.hash(tagHash + tagHash + data)
    }
}
