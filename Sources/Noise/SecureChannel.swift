import NodeCrypto

/// SideNode's wire profile on Noise: `Noise_XX_25519_ChaChaPoly_BLAKE2b` with a
/// prologue that binds protocol version and chain id, Ed25519 identities bound to
/// the Noise static keys, 2-byte length framing, and application messages of up to
/// `maxMessageSize` split across frames. See docs/wire.md.
public struct SecureChannelConfiguration: Sendable {
    public static let protocolName = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
    public static let protocolVersion: UInt8 = 1
    /// Domain separator for the identity signature over the Noise static key.
    public static let identityDomain = Array("sidenode-noise-static-key:".utf8)
    public static let defaultMaxMessageSize = 4 * 1024 * 1024
    /// Largest plaintext in one transport frame: 65535 minus the 16-byte tag.
    public static let maxFramePlaintext = HandshakeState.maxMessageLength - ChaChaPoly.tagLength

    public var chainID: String
    public var identity: Ed25519.PrivateKey
    public var maxMessageSize: Int
    /// The channel closes once this many frames were sent or received, long before
    /// the 2^64-1 nonce limit; lowered only by tests.
    public var nonceLimit: UInt64 = UInt64.max - 1

    public init(chainID: String, identity: Ed25519.PrivateKey, maxMessageSize: Int = defaultMaxMessageSize) {
        self.chainID = chainID
        self.identity = identity
        self.maxMessageSize = maxMessageSize
    }

    /// `"sidenode" || 0x00 || version || u16 BE len(chain_id) || chain_id`. A node
    /// of another version or chain derives other keys and fails at message 2.
    public var prologue: [UInt8] {
        let chain = Array(chainID.utf8)
        return Array("sidenode".utf8) + [0, Self.protocolVersion, UInt8(chain.count >> 8), UInt8(chain.count & 0xff)]
            + chain
    }
}

/// Why a secure channel closed. Every case ends the connection.
public struct SecureChannelError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// Noise failed: bad MAC, wrong prologue (other chain or version), weak DH, short message.
        case handshakeFailed
        /// The peer's identity payload is malformed or its signature does not verify.
        case badIdentity
        /// A dialled peer proved an identity other than the pinned node id.
        case identityMismatch
        /// A frame is shorter than the 16-byte tag or a handshake frame is empty.
        case frameTooShort
        /// A transport frame failed authentication.
        case decryptFailed
        /// An application message announced a length over the configured maximum.
        case messageTooLarge
        /// Frame contents do not follow the message layout.
        case malformedMessage
        /// The nonce limit was reached; the connection must be re-established.
        case nonceLimit
        /// The channel is not established (or already closed).
        case notEstablished
    }

    public let kind: Kind
    public let detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { "\(kind.rawValue): \(detail)" }
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.kind == rhs.kind }
    public func hash(into hasher: inout Hasher) { hasher.combine(kind) }
}

/// One end of an encrypted, authenticated connection, as a pure state machine:
/// bytes in, actions out. The I/O driver writes `.write` bytes to the socket,
/// hands `.deliver` messages to the application and closes on `.close`.
public struct SecureChannel: Sendable {
    public enum Role: Sendable, Equatable {
        /// The dialler; `expectedPeer` pins the node id from `NODEID@host:port`.
        case initiator(expectedPeer: Ed25519.PublicKey?)
        case responder
    }

    public enum Action: Sendable, Equatable {
        case write([UInt8])
        case established(peer: Ed25519.PublicKey)
        case deliver([UInt8])
        case close(SecureChannelError)
    }

    private enum State: Sendable {
        case handshaking(HandshakeState)
        case established(send: CipherState, receive: CipherState, peer: Ed25519.PublicKey)
        case closed
    }

    public let role: Role
    public let configuration: SecureChannelConfiguration
    private var state: State
    private var inbound = FrameBuffer()
    private var reassembly: (expected: Int, data: [UInt8])?

    public init(role: Role, configuration: SecureChannelConfiguration) {
        self.init(role: role, configuration: configuration, staticKey: X25519.PrivateKey(), fixedEphemeral: nil)
    }

    /// Test hook: fixed static and ephemeral keys for reproducible transcripts.
    @_spi(Testing) public init(
        role: Role, configuration: SecureChannelConfiguration, staticKey: X25519.PrivateKey,
        fixedEphemeral: X25519.PrivateKey?
    ) {
        self.role = role
        self.configuration = configuration
        // A fresh static key per process, never stored: the Ed25519 identity vouches
        // for it (libp2p's approach; Noise §14 forbids reusing keys outside Noise).
        let proto = try! NoiseProtocol(name: SecureChannelConfiguration.protocolName)
        let handshake = try! HandshakeState(
            protocol: proto, initiator: role != .responder, prologue: configuration.prologue, staticKey: staticKey,
            remoteStatic: nil, fixedEphemeral: fixedEphemeral)
        state = .handshaking(handshake)
    }

    public var isEstablished: Bool {
        if case .established = state { return true }
        return false
    }

    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    public var remotePeer: Ed25519.PublicKey? {
        if case .established(_, _, let peer) = state { return peer }
        return nil
    }

    /// The initiator's first message; the responder has nothing to send first.
    public mutating func start() -> [Action] {
        guard case .handshaking(var handshake) = state, handshake.isInitiator, handshake.isOurTurn else { return [] }
        do {
            let message = try handshake.writeMessage(payload: [])
            state = .handshaking(handshake)
            return [.write(Self.frame(message))]
        } catch {
            return fail(.handshakeFailed, "\(error)")
        }
    }

    /// Bytes from the socket, in any chunking.
    public mutating func receive<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> [Action] {
        if isClosed { return [] }
        inbound.append(bytes)
        var actions: [Action] = []
        while !isClosed {
            let minimum = isEstablished ? ChaChaPoly.tagLength : 1
            switch inbound.nextFrame(minimumLength: minimum) {
            case .needMoreData:
                return actions
            case .tooShort(let length):
                return actions + fail(.frameTooShort, "frame of \(length) bytes")
            case .frame(let range):
                actions += process(range)
            }
        }
        return actions
    }

    private mutating func process(_ range: Range<Int>) -> [Action] {
        switch state {
        case .closed:
            return []
        case .handshaking(var handshake):
            let frame = inbound.bytes(range)
            let payload: [UInt8]
            do {
                payload = try handshake.readMessage(frame)
            } catch {
                return fail(.handshakeFailed, "\(error)")
            }
            var actions: [Action] = []
            var peer: Ed25519.PublicKey?
            if payload.isEmpty {
                // Only XX message 1 carries no identity (the initiator's e alone).
                guard handshake.isInitiator == false, !handshake.isComplete else {
                    return fail(.badIdentity, "handshake message without an identity payload")
                }
            } else {
                switch verifyIdentity(payload, remoteStatic: handshake.remoteStatic) {
                case .success(let identity): peer = identity
                case .failure(let error): return fail(error.kind, error.detail)
                }
                if case .initiator(let expected?) = role, expected != peer {
                    return fail(.identityMismatch, "expected \(expected.hex), peer proved \(peer!.hex)")
                }
            }
            if handshake.isOurTurn {
                do {
                    let message = try handshake.writeMessage(payload: identityPayload(handshake))
                    actions.append(.write(Self.frame(message)))
                } catch {
                    return fail(.handshakeFailed, "\(error)")
                }
            }
            if handshake.isComplete {
                guard let peer else { return fail(.badIdentity, "handshake ended without the peer's identity") }
                do {
                    let ciphers = try handshake.transportCiphers()
                    state = .established(send: ciphers.send, receive: ciphers.receive, peer: peer)
                } catch {
                    return fail(.handshakeFailed, "\(error)")
                }
                actions.append(.established(peer: peer))
            } else {
                state = .handshaking(handshake)
            }
            return actions
        case .established:
            return decryptFrame(range)
        }
    }

    /// Decrypts a transport frame straight from the input buffer into the message
    /// being reassembled, so a large message is copied as little as possible.
    private mutating func decryptFrame(_ range: Range<Int>) -> [Action] {
        guard case .established(let send, var receive, let peer) = state else { return [] }
        guard receive.nonce < configuration.nonceLimit else {
            return fail(.nonceLimit, "receive nonce limit reached")
        }
        let plainCount = range.count - ChaChaPoly.tagLength
        if var partial = reassembly {
            reassembly = nil  // keep the array uniquely referenced while it grows
            guard partial.data.count + plainCount <= partial.expected else {
                return fail(.malformedMessage, "continuation frame overruns the announced length")
            }
            let base = partial.data.count
            partial.data.append(contentsOf: repeatElement(0, count: plainCount))
            let ok = inbound.withBytes(range) { sealed in
                partial.data.withUnsafeMutableBytes { out in
                    (try? receive.decrypt(sealed, into: UnsafeMutableRawBufferPointer(rebasing: out[base...]))) != nil
                }
            }
            guard ok else { return fail(.decryptFailed, "transport frame failed authentication") }
            if receive.nonce % Self.rekeyInterval == 0 { receive.rekey() }
            state = .established(send: send, receive: receive, peer: peer)
            if partial.data.count == partial.expected { return [.deliver(partial.data)] }
            reassembly = partial
            return []
        }
        var plain = [UInt8](repeating: 0, count: plainCount)
        let ok = inbound.withBytes(range) { sealed in
            plain.withUnsafeMutableBytes { out in (try? receive.decrypt(sealed, into: out)) != nil }
        }
        guard ok else { return fail(.decryptFailed, "transport frame failed authentication") }
        if receive.nonce % Self.rekeyInterval == 0 { receive.rekey() }
        state = .established(send: send, receive: receive, peer: peer)
        return reassemble(plain)
    }

    /// The identity payload: Ed25519 public key (32) || Ed25519 signature (64) over
    /// `identityDomain || our Noise static public key`.
    private func identityPayload(_ handshake: HandshakeState) -> [UInt8] {
        let staticKey = handshake.localStaticPublicKey!.rawRepresentation
        let signature = configuration.identity.signature(for: SecureChannelConfiguration.identityDomain + staticKey)
        return configuration.identity.publicKey.rawRepresentation + signature.rawRepresentation
    }

    private func verifyIdentity(
        _ payload: [UInt8], remoteStatic: X25519.PublicKey?
    ) -> Result<Ed25519.PublicKey, SecureChannelError> {
        guard payload.count == 96, let remoteStatic else {
            return .failure(SecureChannelError(.badIdentity, "identity payload of \(payload.count) bytes"))
        }
        guard let key = try? Ed25519.PublicKey(rawRepresentation: Array(payload[0..<32])),
            let signature = try? Ed25519.Signature(rawRepresentation: Array(payload[32..<96]))
        else {
            return .failure(SecureChannelError(.badIdentity, "identity key is not a valid Ed25519 point"))
        }
        guard
            key.isValidSignature(
                signature, for: SecureChannelConfiguration.identityDomain + remoteStatic.rawRepresentation)
        else {
            return .failure(SecureChannelError(.badIdentity, "identity signature does not verify"))
        }
        return .success(key)
    }

    private mutating func reassemble(_ plain: [UInt8]) -> [Action] {
        if var partial = reassembly {
            guard partial.data.count + plain.count <= partial.expected else {
                return fail(.malformedMessage, "continuation frame overruns the announced length")
            }
            partial.data += plain
            if partial.data.count == partial.expected {
                reassembly = nil
                return [.deliver(partial.data)]
            }
            reassembly = partial
            return []
        }
        guard plain.count >= 4 else { return fail(.malformedMessage, "first frame without a length") }
        let expected = Int(plain[0]) << 24 | Int(plain[1]) << 16 | Int(plain[2]) << 8 | Int(plain[3])
        // Checked before any allocation sized by the peer.
        guard expected <= configuration.maxMessageSize else {
            return fail(.messageTooLarge, "message of \(expected) bytes over the \(configuration.maxMessageSize) limit")
        }
        let data = Array(plain[4...])
        guard data.count <= expected else { return fail(.malformedMessage, "frame longer than its message") }
        if data.count == expected { return [.deliver(data)] }
        var buffer = [UInt8]()
        buffer.reserveCapacity(expected)
        buffer += data
        reassembly = (expected, buffer)
        return []
    }

    /// Encrypts and frames one application message; the result goes to the socket as is.
    public mutating func send(_ message: [UInt8]) throws(SecureChannelError) -> [UInt8] {
        guard case .established(var send, let receive, let peer) = state else {
            throw SecureChannelError(.notEstablished, "channel is not established")
        }
        guard message.count <= configuration.maxMessageSize else {
            throw SecureChannelError(.messageTooLarge, "message of \(message.count) bytes")
        }
        let maxPlain = SecureChannelConfiguration.maxFramePlaintext
        let frames = (message.count + 4 + maxPlain - 1) / maxPlain
        guard configuration.nonceLimit - send.nonce >= UInt64(frames) else {
            state = .closed
            throw SecureChannelError(.nonceLimit, "send nonce limit reached")
        }
        let outCount = message.count + 4 + frames * (2 + ChaChaPoly.tagLength)
        // The first frame carries the u32 message length before the first chunk.
        let firstChunk = min(message.count, maxPlain - 4)
        let count = UInt32(message.count)
        var first: [UInt8] = [
            UInt8(count >> 24), UInt8((count >> 16) & 0xff), UInt8((count >> 8) & 0xff), UInt8(count & 0xff),
        ]
        first += message[0..<firstChunk]
        let out = [UInt8](unsafeUninitializedCapacity: outCount) { buffer, initialized in
            let o = UnsafeMutableRawBufferPointer(buffer)
            var written = 0
            func frame(_ plaintext: UnsafeRawBufferPointer) {
                let length = plaintext.count + ChaChaPoly.tagLength
                o[written] = UInt8(length >> 8)
                o[written + 1] = UInt8(length & 0xff)
                let target = UnsafeMutableRawBufferPointer(rebasing: o[(written + 2)..<(written + 2 + length)])
                try! send.encrypt(plaintext, into: target)  // key present and nonce checked above
                if send.nonce % Self.rekeyInterval == 0 { send.rekey() }
                written += 2 + length
            }
            first.withUnsafeBytes { frame($0) }
            message.withUnsafeBytes { all in
                var offset = firstChunk
                while offset < message.count {
                    let end = min(message.count, offset + maxPlain)
                    frame(UnsafeRawBufferPointer(rebasing: all[offset..<end]))
                    offset = end
                }
            }
            initialized = written
        }
        state = .established(send: send, receive: receive, peer: peer)
        return out
    }

    private mutating func fail(_ kind: SecureChannelError.Kind, _ detail: String) -> [Action] {
        state = .closed
        reassembly = nil
        inbound = FrameBuffer()
        return [.close(SecureChannelError(kind, detail))]
    }

    /// Each direction's key is replaced (Noise §11.3 REKEY) after every this many frames,
    /// as lnd does (BOLT 8: every 1,000 messages): a key compromised later does not open
    /// earlier traffic of a long-lived connection. Both sides count frames, so no message
    /// announces it.
    public static let rekeyInterval: UInt64 = 1_000

    static func frame(_ message: [UInt8]) -> [UInt8] {
        [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message
    }

    /// Bytes held in the input buffer (at most one partial frame plus one read).
    @_spi(Testing) public var bufferedByteCount: Int { inbound.count }

    /// Test hook: move the send nonce close to the limit.
    @_spi(Testing) public mutating func setSendNonceForTesting(_ value: UInt64) {
        if case .established(var send, let receive, let peer) = state {
            send.setNonceForTesting(value)
            state = .established(send: send, receive: receive, peer: peer)
        }
    }
}

/// Accumulates socket bytes and cuts them into `u16 BE length || body` frames.
/// Holds at most one partial frame (≤ 65537 bytes) plus what one read delivered.
struct FrameBuffer: Sendable {
    enum Next {
        case needMoreData
        case tooShort(Int)
        /// The frame body's position in the buffer, valid until the next `append`.
        case frame(Range<Int>)
    }

    private var storage: [UInt8] = []
    private var start = 0

    mutating func append<Bytes: Collection<UInt8>>(_ more: Bytes) {
        // Drop consumed bytes before growing, so the buffer stays bounded.
        if start > 0 && (start >= 65536 || start == storage.count) {
            storage.removeFirst(start)
            start = 0
        }
        storage += more
    }

    mutating func nextFrame(minimumLength: Int) -> Next {
        guard storage.count - start >= 2 else { return .needMoreData }
        let length = Int(storage[start]) << 8 | Int(storage[start + 1])
        guard length >= minimumLength else { return .tooShort(length) }
        guard storage.count - start >= 2 + length else { return .needMoreData }
        let range = (start + 2)..<(start + 2 + length)
        start += 2 + length
        return .frame(range)
    }

    func bytes(_ range: Range<Int>) -> [UInt8] { Array(storage[range]) }

    /// Unconsumed bytes.
    var count: Int { storage.count - start }

    func withBytes<R>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }
}
