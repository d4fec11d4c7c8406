import NodeCrypto

/// Noise §5.3 HandshakeState: executes any supported pattern token by token.
///
/// A value type with no I/O: callers feed it messages and get bytes back.
public struct HandshakeState: Sendable {
    public static let maxMessageLength = 65535
    static let dhLength = 32

    public let proto: NoiseProtocol
    public let isInitiator: Bool
    private var symmetric: SymmetricState
    private var s: X25519.PrivateKey?
    private var e: X25519.PrivateKey?
    /// The peer's static key: given up front (pre-message) or learned in the handshake.
    public private(set) var remoteStatic: X25519.PublicKey?
    private var re: X25519.PublicKey?
    private var messageIndex = 0
    private var fixedEphemeral: X25519.PrivateKey?

    /// - Parameters:
    ///   - staticKey: this party's static key, if the pattern uses one.
    ///   - remoteStatic: the peer's static key when the pattern has it as a pre-message.
    public init(
        protocol proto: NoiseProtocol, initiator: Bool, prologue: [UInt8],
        staticKey: X25519.PrivateKey? = nil, remoteStatic: X25519.PublicKey? = nil
    ) throws(NoiseError) {
        try self.init(
            protocol: proto, initiator: initiator, prologue: prologue, staticKey: staticKey,
            remoteStatic: remoteStatic, fixedEphemeral: nil)
    }

    /// Test hook: the official vectors fix the ephemeral keys.
    @_spi(Testing) public init(
        protocol proto: NoiseProtocol, initiator: Bool, prologue: [UInt8],
        staticKey: X25519.PrivateKey?, remoteStatic: X25519.PublicKey?, fixedEphemeral: X25519.PrivateKey?
    ) throws(NoiseError) {
        self.proto = proto
        self.isInitiator = initiator
        self.s = staticKey
        self.remoteStatic = remoteStatic
        self.fixedEphemeral = fixedEphemeral
        symmetric = SymmetricState(protocolName: proto.name, hash: proto.hash)
        symmetric.mixHash(prologue)
        // Pre-messages are hashed initiator's first, then responder's (§7.1).
        for token in proto.pattern.initiatorPreMessage {
            try mixPreMessage(token, ours: initiator)
        }
        for token in proto.pattern.responderPreMessage {
            try mixPreMessage(token, ours: !initiator)
        }
    }

    private mutating func mixPreMessage(_ token: NoiseToken, ours: Bool) throws(NoiseError) {
        guard token == .s else { throw NoiseError(.unsupportedProtocol, "pre-message token \(token) unsupported") }
        if ours {
            guard let s else { throw NoiseError(.missingKey, "pattern needs our static key") }
            symmetric.mixHash(s.publicKey.rawRepresentation)
        } else {
            guard let remoteStatic else { throw NoiseError(.missingKey, "pattern needs the peer's static key") }
            symmetric.mixHash(remoteStatic.rawRepresentation)
        }
    }

    /// Our static public key, if the pattern uses one.
    public var localStaticPublicKey: X25519.PublicKey? { s?.publicKey }

    public var isComplete: Bool { messageIndex >= proto.pattern.messages.count }

    /// Whether the next message is ours to write.
    public var isOurTurn: Bool { !isComplete && proto.pattern.initiatorSends(messageIndex) == isInitiator }

    /// h, for channel binding once the handshake is complete.
    public var handshakeHash: [UInt8] { symmetric.handshakeHash }

    public mutating func writeMessage(payload: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard !isComplete else { throw NoiseError(.handshakeComplete, "no handshake message left to write") }
        guard isOurTurn else { throw NoiseError(.wrongTurn, "it is the peer's turn to send") }
        var buffer: [UInt8] = []
        for token in proto.pattern.messages[messageIndex] {
            switch token {
            case .e:
                let ephemeral = fixedEphemeral ?? X25519.PrivateKey()
                fixedEphemeral = nil
                e = ephemeral
                buffer += ephemeral.publicKey.rawRepresentation
                symmetric.mixHash(ephemeral.publicKey.rawRepresentation)
            case .s:
                guard let s else { throw NoiseError(.missingKey, "pattern needs our static key") }
                buffer += try symmetric.encryptAndHash(s.publicKey.rawRepresentation)
            case .ee, .es, .se, .ss:
                try mixDH(token)
            }
        }
        buffer += try symmetric.encryptAndHash(payload)
        guard buffer.count <= Self.maxMessageLength else {
            throw NoiseError(.messageTooLong, "handshake message of \(buffer.count) bytes")
        }
        messageIndex += 1
        return buffer
    }

    public mutating func readMessage(_ message: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard !isComplete else { throw NoiseError(.handshakeComplete, "no handshake message left to read") }
        guard !isOurTurn else { throw NoiseError(.wrongTurn, "it is our turn to send") }
        guard message.count <= Self.maxMessageLength else {
            throw NoiseError(.messageTooLong, "handshake message of \(message.count) bytes")
        }
        var offset = 0
        func take(_ count: Int) throws(NoiseError) -> [UInt8] {
            guard message.count - offset >= count else {
                throw NoiseError(.messageTooShort, "handshake message ends early")
            }
            defer { offset += count }
            return Array(message[offset..<offset + count])
        }
        for token in proto.pattern.messages[messageIndex] {
            switch token {
            case .e:
                let bytes = try take(Self.dhLength)
                re = try? X25519.PublicKey(rawRepresentation: bytes)
                symmetric.mixHash(bytes)
            case .s:
                let length = Self.dhLength + (symmetric.cipher.hasKey ? ChaChaPoly.tagLength : 0)
                let plain = try symmetric.decryptAndHash(try take(length))
                remoteStatic = try? X25519.PublicKey(rawRepresentation: plain)
            case .ee, .es, .se, .ss:
                try mixDH(token)
            }
        }
        let payload = try symmetric.decryptAndHash(Array(message[offset...]))
        messageIndex += 1
        return payload
    }

    private mutating func mixDH(_ token: NoiseToken) throws(NoiseError) {
        // §7.1: "es" is DH(e, rs) for the initiator and DH(s, re) for the responder; "se" the mirror.
        let local: X25519.PrivateKey?
        let remote: X25519.PublicKey?
        switch (token, isInitiator) {
        case (.ee, _): (local, remote) = (e, re)
        case (.ss, _): (local, remote) = (s, remoteStatic)
        case (.es, true), (.se, false): (local, remote) = (e, remoteStatic)
        case (.es, false), (.se, true): (local, remote) = (s, re)
        default: throw NoiseError(.unsupportedProtocol, "not a DH token: \(token)")
        }
        guard let local, let remote else { throw NoiseError(.missingKey, "DH \(token) lacks a key") }
        do {
            symmetric.mixKey(try local.sharedSecret(with: remote))
        } catch {
            throw NoiseError(.weakDH, "DH \(token) produced the all-zero output")
        }
    }

    /// The transport cipher states once the handshake is complete, as
    /// (send, receive) from this party's point of view.
    public func transportCiphers() throws(NoiseError) -> (send: CipherState, receive: CipherState) {
        guard isComplete else { throw NoiseError(.handshakeIncomplete, "handshake not complete") }
        let (c1, c2) = symmetric.split()
        return isInitiator ? (c1, c2) : (c2, c1)
    }
}
