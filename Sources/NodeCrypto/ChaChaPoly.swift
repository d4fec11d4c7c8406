internal import CSodium

/// ChaCha20-Poly1305 AEAD in its IETF form (RFC 8439): 256-bit key, 96-bit nonce,
/// 128-bit tag appended to the ciphertext.
public enum ChaChaPoly {
    public static let tagLength = 16

    public struct Key: Sendable {
        private let secret: SecretBytes

        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 32 else {
                throw .length("ChaCha20-Poly1305 key", expected: 32, got: rawRepresentation.count)
            }
            secret = SecretBytes(rawRepresentation)
        }

        public static func random() -> Key { try! Key(rawRepresentation: SecureRandom.bytes(32)) }

        func withUnsafeBytes<R>(_ body: (UnsafePointer<UInt8>) -> R) -> R {
            secret.withUnsafeBytes { body($0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        }
    }

    public struct Nonce: Hashable, Sendable {
        public let rawRepresentation: [UInt8]

        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 12 else {
                throw .length("ChaCha20-Poly1305 nonce", expected: 12, got: rawRepresentation.count)
            }
            self.rawRepresentation = rawRepresentation
        }

        /// Noise §5.1 for ChaChaPoly: 32 zero bits then the 64-bit counter little-endian.
        public init(noiseCounter n: UInt64) {
            var bytes = [UInt8](repeating: 0, count: 12)
            for i in 0..<8 { bytes[4 + i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
            rawRepresentation = bytes
        }
    }

    /// Encrypts `plaintext`; returns ciphertext || tag.
    public static func seal(_ plaintext: [UInt8], key: Key, nonce: Nonce, authenticating aad: [UInt8] = []) -> [UInt8] {
        plaintext.withUnsafeBytes { seal(UnsafeRawBufferPointer($0), key: key, nonce: nonce, authenticating: aad) }
    }

    public static func seal(
        _ plaintext: UnsafeRawBufferPointer, key: Key, nonce: Nonce, authenticating aad: [UInt8] = []
    ) -> [UInt8] {
        ensureSodium()
        let outCount = plaintext.count + tagLength
        return [UInt8](unsafeUninitializedCapacity: outCount) { out, initialized in
            var written: UInt64 = 0
            key.withUnsafeBytes { k in
                nonce.rawRepresentation.withUnsafeBufferPointer { n in
                    aad.withUnsafeBufferPointer { a in
                        _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                            out.baseAddress!, &written,
                            plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(plaintext.count),
                            a.baseAddress, UInt64(a.count), nil, n.baseAddress!, k)
                    }
                }
            }
            initialized = Int(written)
        }
    }

    /// Decrypts ciphertext || tag; throws `authenticationFailure` on any mismatch.
    public static func open(
        _ sealed: [UInt8], key: Key, nonce: Nonce, authenticating aad: [UInt8] = []
    ) throws(CryptoError) -> [UInt8] {
        // Array.withUnsafeBytes is untyped-rethrows; carry the typed error out in a Result.
        let result = sealed.withUnsafeBytes { s in
            Result { () throws(CryptoError) -> [UInt8] in
                try open(UnsafeRawBufferPointer(s), key: key, nonce: nonce, authenticating: aad)
            }
        }
        return try result.get()
    }

    public static func open(
        _ sealed: UnsafeRawBufferPointer, key: Key, nonce: Nonce, authenticating aad: [UInt8] = []
    ) throws(CryptoError) -> [UInt8] {
        guard sealed.count >= tagLength else {
            throw CryptoError(.authenticationFailure, "ciphertext shorter than the 16-byte tag")
        }
        ensureSodium()
        var rc: Int32 = -1
        let plain = [UInt8](unsafeUninitializedCapacity: sealed.count - tagLength) { out, initialized in
            var written: UInt64 = 0
            rc = key.withUnsafeBytes { k in
                nonce.rawRepresentation.withUnsafeBufferPointer { n in
                    aad.withUnsafeBufferPointer { a in
                        crypto_aead_chacha20poly1305_ietf_decrypt(
                            out.baseAddress, &written, nil,
                            sealed.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(sealed.count),
                            a.baseAddress, UInt64(a.count), n.baseAddress!, k)
                    }
                }
            }
            initialized = rc == 0 ? Int(written) : 0
        }
        guard rc == 0 else { throw CryptoError(.authenticationFailure, "ChaCha20-Poly1305 tag mismatch") }
        return plain
    }
}

extension ChaChaPoly {
    /// Seals into caller-provided memory (`out.count >= plaintext.count + 16`), so the
    /// transport can build frames without intermediate arrays.
    public static func seal(
        _ plaintext: UnsafeRawBufferPointer, key: Key, nonce: Nonce, authenticating aad: [UInt8] = [],
        into out: UnsafeMutableRawBufferPointer
    ) {
        precondition(out.count >= plaintext.count + tagLength, "output buffer too small")
        ensureSodium()
        var written: UInt64 = 0
        key.withUnsafeBytes { k in
            nonce.rawRepresentation.withUnsafeBufferPointer { n in
                aad.withUnsafeBufferPointer { a in
                    _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), &written,
                        plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(plaintext.count),
                        a.baseAddress, UInt64(a.count), nil, n.baseAddress!, k)
                }
            }
        }
    }

    /// Opens into caller-provided memory (`out.count >= sealed.count - 16`); returns the
    /// plaintext length. On failure `out` may hold garbage and must be discarded.
    public static func open(
        _ sealed: UnsafeRawBufferPointer, key: Key, nonce: Nonce, authenticating aad: [UInt8] = [],
        into out: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        guard sealed.count >= tagLength else {
            throw CryptoError(.authenticationFailure, "ciphertext shorter than the 16-byte tag")
        }
        precondition(out.count >= sealed.count - tagLength, "output buffer too small")
        ensureSodium()
        var written: UInt64 = 0
        let rc = key.withUnsafeBytes { k in
            nonce.rawRepresentation.withUnsafeBufferPointer { n in
                aad.withUnsafeBufferPointer { a in
                    crypto_aead_chacha20poly1305_ietf_decrypt(
                        out.baseAddress?.assumingMemoryBound(to: UInt8.self), &written, nil,
                        sealed.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(sealed.count),
                        a.baseAddress, UInt64(a.count), n.baseAddress!, k)
                }
            }
        }
        guard rc == 0 else { throw CryptoError(.authenticationFailure, "ChaCha20-Poly1305 tag mismatch") }
        return Int(written)
    }
}
