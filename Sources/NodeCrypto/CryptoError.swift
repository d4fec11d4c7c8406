/// An error from a cryptographic operation or from decoding key material.
///
/// A struct with an extensible `Code` (rather than a public enum) so that new
/// failure kinds can be added without breaking callers that switch on them.
public struct CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case invalidLength
            case invalidKey
            case invalidSignatureEncoding
            case authenticationFailure
            case weakSharedSecret
            case invalidHex
            case libraryFailure
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A byte string had the wrong length for its type.
        public static let invalidLength = Code(.invalidLength)
        /// Key bytes do not describe a valid key (not on the curve, out of range, zero).
        public static let invalidKey = Code(.invalidKey)
        /// A signature could not be decoded (for example malformed DER).
        public static let invalidSignatureEncoding = Code(.invalidSignatureEncoding)
        /// AEAD decryption failed: wrong key, nonce, associated data or tampered ciphertext.
        public static let authenticationFailure = Code(.authenticationFailure)
        /// An X25519 exchange produced the all-zero output (a low-order peer key).
        public static let weakSharedSecret = Code(.weakSharedSecret)
        /// A hexadecimal string was malformed.
        public static let invalidHex = Code(.invalidHex)
        /// The C library reported an unexpected internal failure.
        public static let libraryFailure = Code(.libraryFailure)

        public var description: String {
            switch base {
            case .invalidLength: "invalid length"
            case .invalidKey: "invalid key"
            case .invalidSignatureEncoding: "invalid signature encoding"
            case .authenticationFailure: "authentication failure"
            case .weakSharedSecret: "weak shared secret"
            case .invalidHex: "invalid hex"
            case .libraryFailure: "library failure"
            }
        }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    public static func == (lhs: CryptoError, rhs: CryptoError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    static func length(_ what: String, expected: Int, got: Int) -> CryptoError {
        CryptoError(.invalidLength, "\(what) must be \(expected) bytes, got \(got)")
    }
}
