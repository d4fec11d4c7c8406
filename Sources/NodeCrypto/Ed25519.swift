internal import CSodium
import Synchronization

/// Ed25519 (RFC 8032) on libsodium: node identities, validator keys and
/// transaction signatures.
public enum Ed25519 {
    public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
        public let rawRepresentation: [UInt8]

        // The bytes in one call: the synthesized hash feeds the hasher byte by byte, which
        // dominated profiles of the DAG and seen-caches.
        public func hash(into hasher: inout Hasher) { rawRepresentation.withUnsafeBytes { hasher.combine(bytes: $0) } }

        /// Accepts only canonical encodings of points in the prime-order subgroup,
        /// so a node id can never be a small-order or malformed point.
        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 32 else {
                throw .length("Ed25519 public key", expected: 32, got: rawRepresentation.count)
            }
            ensureSodium()
            let valid = rawRepresentation.withUnsafeBufferPointer {
                crypto_core_ed25519_is_valid_point($0.baseAddress!) == 1
            }
            guard valid else { throw CryptoError(.invalidKey, "not a valid Ed25519 point") }
            self.rawRepresentation = rawRepresentation
        }

        fileprivate init(unchecked bytes: [UInt8]) { rawRepresentation = bytes }

        /// Checks the length only. The full point check costs about as much as a
        /// signature verification; where a signature by this key is verified anyway
        /// (libsodium's verify rejects non-canonical and small-order keys), this avoids
        /// paying twice.
        public init(uncheckedRawRepresentation bytes: [UInt8]) throws(CryptoError) {
            guard bytes.count == 32 else { throw .length("Ed25519 public key", expected: 32, got: bytes.count) }
            rawRepresentation = bytes
        }

        public func isValidSignature(_ signature: Signature, for message: [UInt8]) -> Bool {
            guard SignatureMemo.isEnabled else { return verify(signature, for: message) }
            var input = rawRepresentation
            input += signature.rawRepresentation
            input += message
            let key = BLAKE2b.hash256(input)
            if let known = SignatureMemo.results.withLock({ $0[key] }) { return known }
            let valid = verify(signature, for: message)
            SignatureMemo.results.withLock {
                if $0.count >= SignatureMemo.capacity { $0.removeAll(keepingCapacity: true) }
                $0[key] = valid
            }
            return valid
        }

        private func verify(_ signature: Signature, for message: [UInt8]) -> Bool {
            ensureSodium()
            return signature.rawRepresentation.withUnsafeBufferPointer { s in
                message.withUnsafeBufferPointer { m in
                    rawRepresentation.withUnsafeBufferPointer { k in
                        crypto_sign_verify_detached(s.baseAddress!, m.baseAddress, UInt64(m.count), k.baseAddress!) == 0
                    }
                }
            }
        }

        public var hex: String { rawRepresentation.hex }
        public var description: String { hex }
    }

    public struct Signature: Hashable, Sendable {
        public let rawRepresentation: [UInt8]

        public init(rawRepresentation: [UInt8]) throws(CryptoError) {
            guard rawRepresentation.count == 64 else {
                throw .length("Ed25519 signature", expected: 64, got: rawRepresentation.count)
            }
            self.rawRepresentation = rawRepresentation
        }

        fileprivate init(unchecked bytes: [UInt8]) { rawRepresentation = bytes }
    }

    public struct PrivateKey: Sendable {
        // libsodium's 64-byte secret key: seed || public key.
        private let secret: SecretBytes
        public let publicKey: PublicKey

        /// A fresh random key.
        public init() {
            try! self.init(seed: SecureRandom.bytes(32))  // 32 bytes: cannot fail
        }

        /// The key whose RFC 8032 private key (seed) is `seed`.
        public init(seed: [UInt8]) throws(CryptoError) {
            guard seed.count == 32 else { throw .length("Ed25519 seed", expected: 32, got: seed.count) }
            ensureSodium()
            var publicBytes = [UInt8](repeating: 0, count: 32)
            let secret = SecretBytes(count: 64) { sk in
                publicBytes.withUnsafeMutableBufferPointer { pk in
                    seed.withUnsafeBufferPointer { s in
                        _ = crypto_sign_seed_keypair(
                            pk.baseAddress!, sk.baseAddress!.assumingMemoryBound(to: UInt8.self), s.baseAddress!)
                    }
                }
            }
            self.secret = secret
            self.publicKey = PublicKey(unchecked: publicBytes)
        }

        /// The 32-byte seed, for writing a key file. Handle with care.
        public var seed: [UInt8] { Array(secret.bytes.prefix(32)) }

        public func signature(for message: [UInt8]) -> Signature {
            var sig = [UInt8](repeating: 0, count: 64)
            secret.withUnsafeBytes { sk in
                sig.withUnsafeMutableBufferPointer { s in
                    message.withUnsafeBufferPointer { m in
                        _ = crypto_sign_detached(
                            s.baseAddress!, nil, m.baseAddress, UInt64(m.count),
                            sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    }
                }
            }
            return Signature(unchecked: sig)
        }
    }
}

/// Memoized Ed25519 verification, off unless a process turns it on: a process that runs
/// many nodes at once (the consensus simulator) then verifies each (key, signature,
/// message) once instead of once per node. Results are keyed by a BLAKE2b-256 of all
/// three, so a memoized answer is the answer libsodium gave for exactly those bytes. A
/// node leaves it off: it verifies what it receives, and benchmarks measure libsodium.
public enum SignatureMemo {
    static let capacity = 1 << 18
    private static let enabled = Atomic<Bool>(false)
    static let results = Mutex<[[UInt8]: Bool]>([:])

    static var isEnabled: Bool { enabled.load(ordering: .acquiring) }

    public static func enable() { enabled.store(true, ordering: .releasing) }
}
