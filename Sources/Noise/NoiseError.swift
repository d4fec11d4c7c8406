/// A failure in the Noise handshake or transport. Any of these ends the session:
/// Noise gives no way to recover a handshake after a failed message.
public struct NoiseError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case unsupportedProtocol, decryptFailed, messageTooShort, messageTooLong, nonceExhausted
            case wrongTurn, handshakeComplete, handshakeIncomplete, missingKey, weakDH
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The protocol name names a pattern or primitive this implementation lacks.
        public static let unsupportedProtocol = Code(.unsupportedProtocol)
        /// AEAD authentication failed: tampering, wrong keys, or a different prologue.
        public static let decryptFailed = Code(.decryptFailed)
        /// A handshake message ended before all its tokens were read.
        public static let messageTooShort = Code(.messageTooShort)
        /// A message would exceed the Noise maximum of 65535 bytes.
        public static let messageTooLong = Code(.messageTooLong)
        /// The 64-bit nonce reached its reserved maximum; the session must end.
        public static let nonceExhausted = Code(.nonceExhausted)
        /// A party tried to write when it should read, or the reverse.
        public static let wrongTurn = Code(.wrongTurn)
        /// A handshake message was processed after the handshake finished.
        public static let handshakeComplete = Code(.handshakeComplete)
        /// Transport keys were requested before the handshake finished.
        public static let handshakeIncomplete = Code(.handshakeIncomplete)
        /// A pattern token needs a key that was not supplied (for example `rs` for IK).
        public static let missingKey = Code(.missingKey)
        /// A DH produced the all-zero output (a low-order public key), refused per Noise §12.1.
        public static let weakDH = Code(.weakDH)

        public var description: String {
            switch base {
            case .unsupportedProtocol: "unsupported protocol"
            case .decryptFailed: "decrypt failed"
            case .messageTooShort: "message too short"
            case .messageTooLong: "message too long"
            case .nonceExhausted: "nonce exhausted"
            case .wrongTurn: "wrong turn"
            case .handshakeComplete: "handshake already complete"
            case .handshakeIncomplete: "handshake incomplete"
            case .missingKey: "missing key"
            case .weakDH: "weak DH"
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
    public static func == (lhs: NoiseError, rhs: NoiseError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
