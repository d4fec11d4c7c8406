internal import CSodium

/// X25519 Diffie-Hellman (RFC 7748), the DH function of the Noise handshake.
public enum X25519 {
    public struct PublicKey: Hashable, Sendable {
        public let rawRepresentation: [UInt8]

        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 32 else {
                throw .length("X25519 public key", expected: 32, got: rawRepresentation.count)
            }
            self.rawRepresentation = rawRepresentation
        }
    }

    public struct PrivateKey: Sendable {
        private let secret: SecretBytes
        public let publicKey: PublicKey

        public init() {
            try! self.init(rawRepresentation: SecureRandom.bytes(32))  // 32 bytes: cannot fail
        }

        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 32 else {
                throw .length("X25519 private key", expected: 32, got: rawRepresentation.count)
            }
            ensureSodium()
            secret = SecretBytes(rawRepresentation)
            var pub = [UInt8](repeating: 0, count: 32)
            secret.withUnsafeBytes { sk in
                pub.withUnsafeMutableBufferPointer { p in
                    _ = crypto_scalarmult_base(p.baseAddress!, sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
            publicKey = try PublicKey(rawRepresentation: pub)
        }

        /// DH(self, peer). Throws `weakSharedSecret` when the result is all zeros,
        /// which happens exactly for low-order peer keys.
        public func sharedSecret(with peer: PublicKey) throws(CryptoError) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 32)
            let rc = secret.withUnsafeBytes { sk in
                out.withUnsafeMutableBufferPointer { o in
                    peer.rawRepresentation.withUnsafeBufferPointer { p in
                        crypto_scalarmult(
                            o.baseAddress!, sk.baseAddress!.assumingMemoryBound(to: UInt8.self), p.baseAddress!)
                    }
                }
            }
            guard rc == 0 else { throw CryptoError(.weakSharedSecret, "X25519 produced the all-zero output") }
            return out
        }
    }
}
