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
    /// At most one incomplete frame from an earlier read.
    private var inbound = FrameBuffer()
    /// A message whose later frames are still to come: its final array, filled in place.
    private var reassembly: Reassembly?
    /// A first frame's plaintext, before its length says how large the message is;
    /// reused from frame to frame.
    private var scratch: [UInt8] = []

    private struct Reassembly: Sendable {
        var data: [UInt8]
        var filled: Int
    }

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

    /// Bytes from the socket, in any chunking. Whole frames are opened straight from
    /// `bytes` when they are contiguous (a NIO read buffer is); only a frame cut by the
    /// end of a read is copied aside until the next read completes it.
    public mutating func receive<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> [Action] {
        if isClosed { return [] }
        if let actions = bytes.withContiguousStorageIfAvailable({ receive(UnsafeRawBufferPointer($0)) }) {
            return actions
        }
        return Array(bytes).withUnsafeBytes { receive($0) }
    }

    private var minimumFrameLength: Int { isEstablished ? ChaChaPoly.tagLength : 1 }

    private mutating func receive(_ input: UnsafeRawBufferPointer) -> [Action] {
        var actions: [Action] = []
        var rest = input[...]
        // First complete the frame an earlier read cut.
        while !isClosed, inbound.count > 0, !rest.isEmpty {
            let take = min(rest.count, inbound.missing)
            inbound.append(UnsafeRawBufferPointer(rebasing: rest.prefix(take)))
            rest = rest.dropFirst(take)
            if let length = inbound.announcedLength, length < minimumFrameLength {
                return actions + fail(.frameTooShort, "frame of \(length) bytes")
            }
            guard inbound.missing == 0 else { continue }
            let frame = inbound.take()
            actions += frame.withUnsafeBytes { process(UnsafeRawBufferPointer(rebasing: $0[2...])) }
        }
        // Then every whole frame in place.
        while !isClosed, rest.count >= 2 {
            let length = Int(rest[rest.startIndex]) << 8 | Int(rest[rest.startIndex + 1])
            guard length >= minimumFrameLength else {
                return actions + fail(.frameTooShort, "frame of \(length) bytes")
            }
            guard rest.count >= 2 + length else { break }
            let body = rest.startIndex + 2..<rest.startIndex + 2 + length
            actions += process(UnsafeRawBufferPointer(rebasing: rest[body]))
            rest = rest[body.upperBound...]
        }
        if !isClosed, !rest.isEmpty { inbound.append(UnsafeRawBufferPointer(rebasing: rest)) }
        return actions
    }

    private mutating func process(_ body: UnsafeRawBufferPointer) -> [Action] {
        switch state {
        case .closed:
            return []
        case .handshaking(var handshake):
            let frame = [UInt8](body)
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
            return decryptFrame(body)
        }
    }

    /// Decrypts a transport frame: a later frame of a message straight into the
    /// message's final array, a first frame into the reused scratch buffer (its length
    /// prefix decides how large the message is).
    private mutating func decryptFrame(_ sealed: UnsafeRawBufferPointer) -> [Action] {
        guard case .established(let send, var receive, let peer) = state else { return [] }
        guard receive.nonce < configuration.nonceLimit else {
            return fail(.nonceLimit, "receive nonce limit reached")
        }
        let plainCount = sealed.count - ChaChaPoly.tagLength
        if var partial = reassembly {
            reassembly = nil  // keep the array uniquely referenced while it is written
            guard partial.filled + plainCount <= partial.data.count else {
                return fail(.malformedMessage, "continuation frame overruns the announced length")
            }
            let base = partial.filled
            let ok = partial.data.withUnsafeMutableBytes { out in
                (try? receive.decrypt(
                    sealed, into: UnsafeMutableRawBufferPointer(rebasing: out[base..<base + plainCount])))
                    != nil
            }
            guard ok else { return fail(.decryptFailed, "transport frame failed authentication") }
            if receive.nonce % Self.rekeyInterval == 0 { receive.rekey() }
            state = .established(send: send, receive: receive, peer: peer)
            partial.filled += plainCount
            if partial.filled == partial.data.count { return [.deliver(partial.data)] }
            reassembly = partial
            return []
        }
        if scratch.count < plainCount {
            scratch = [UInt8](repeating: 0, count: SecureChannelConfiguration.maxFramePlaintext)
        }
        let ok = scratch.withUnsafeMutableBytes { out in
            (try? receive.decrypt(sealed, into: UnsafeMutableRawBufferPointer(rebasing: out[..<plainCount]))) != nil
        }
        guard ok else { return fail(.decryptFailed, "transport frame failed authentication") }
        if receive.nonce % Self.rekeyInterval == 0 { receive.rekey() }
        state = .established(send: send, receive: receive, peer: peer)
        guard plainCount >= 4 else { return fail(.malformedMessage, "first frame without a length") }
        let expected = Int(scratch[0]) << 24 | Int(scratch[1]) << 16 | Int(scratch[2]) << 8 | Int(scratch[3])
        // Checked before any allocation sized by the peer.
        guard expected <= configuration.maxMessageSize else {
            return fail(.messageTooLarge, "message of \(expected) bytes over the \(configuration.maxMessageSize) limit")
        }
        let chunk = plainCount - 4
        guard chunk <= expected else { return fail(.malformedMessage, "frame longer than its message") }
        if chunk == expected { return [.deliver(Array(scratch[4..<plainCount]))] }
        // The message's final array at its announced size. Bytes past `filled` are
        // written by later frames before it is delivered; a channel that fails first
        // drops it unread.
        let data = scratch.withUnsafeBytes { first in
            [UInt8](unsafeUninitializedCapacity: expected) { buffer, initialized in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: first[4..<plainCount]))
                initialized = expected
            }
        }
        reassembly = Reassembly(data: data, filled: chunk)
        return []
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

    /// The bytes `send` produces for a message of `count` bytes: the u32 length, the
    /// message, and per frame of at most 65,519 plaintext bytes a u16 length and a tag.
    public static func sealedCount(ofMessage count: Int) -> Int {
        count + 4 + frameCount(ofMessage: count) * (2 + ChaChaPoly.tagLength)
    }

    /// Frames a message of `count` bytes takes (its u32 length rides in the first).
    private static func frameCount(ofMessage count: Int) -> Int {
        let maxPlain = SecureChannelConfiguration.maxFramePlaintext
        return (count + 4 + maxPlain - 1) / maxPlain
    }

    /// Encrypts and frames one application message; the result goes to the socket as is.
    public mutating func send(_ message: [UInt8]) throws(SecureChannelError) -> [UInt8] {
        let frames = try checkSend(message.count)
        let count = Self.sealedCount(ofMessage: message.count)
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = seal(message, frames: frames, into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Encrypts and frames one message into `out`, which must hold
    /// `sealedCount(ofMessage: message.count)` bytes (a socket buffer: no copy after);
    /// returns the bytes written.
    public mutating func send(
        _ message: [UInt8], into out: UnsafeMutableRawBufferPointer
    ) throws(SecureChannelError) -> Int {
        let frames = try checkSend(message.count)
        precondition(out.count >= Self.sealedCount(ofMessage: message.count), "output buffer too small")
        return seal(message, frames: frames, into: out)
    }

    /// The number of frames a message takes, once the channel can send them.
    private mutating func checkSend(_ count: Int) throws(SecureChannelError) -> Int {
        guard case .established(let send, _, _) = state else {
            throw SecureChannelError(.notEstablished, "channel is not established")
        }
        guard count <= configuration.maxMessageSize else {
            throw SecureChannelError(.messageTooLarge, "message of \(count) bytes")
        }
        let frames = Self.frameCount(ofMessage: count)
        guard configuration.nonceLimit - send.nonce >= UInt64(frames) else {
            state = .closed
            throw SecureChannelError(.nonceLimit, "send nonce limit reached")
        }
        return frames
    }

    /// Writes the frames; each is encrypted in place where its plaintext was laid out.
    private mutating func seal(_ message: [UInt8], frames: Int, into o: UnsafeMutableRawBufferPointer) -> Int {
        guard case .established(var send, let receive, let peer) = state else { return 0 }
        let maxPlain = SecureChannelConfiguration.maxFramePlaintext
        var written = 0
        message.withUnsafeBytes { all in
            var offset = 0
            for index in 0..<frames {
                // The first frame carries the u32 message length before its chunk.
                let header = index == 0 ? 4 : 0
                let chunk = min(all.count - offset, maxPlain - header)
                let plain = header + chunk
                let length = plain + ChaChaPoly.tagLength
                o[written] = UInt8(length >> 8)
                o[written + 1] = UInt8(length & 0xff)
                let body = written + 2
                let source: UnsafeRawBufferPointer
                if header == 4 {
                    // The length and the first chunk are laid out together and encrypted
                    // in place (libsodium allows the ciphertext to be the plaintext's memory).
                    let n = UInt32(all.count)
                    o[body] = UInt8(n >> 24)
                    o[body + 1] = UInt8((n >> 16) & 0xff)
                    o[body + 2] = UInt8((n >> 8) & 0xff)
                    o[body + 3] = UInt8(n & 0xff)
                    UnsafeMutableRawBufferPointer(rebasing: o[(body + 4)..<(body + plain)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: all[offset..<(offset + chunk)]))
                    source = UnsafeRawBufferPointer(rebasing: o[body..<(body + plain)])
                } else {
                    source = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + chunk)])
                }
                // The key is present and the nonce was checked for every frame.
                try! send.encrypt(source, into: UnsafeMutableRawBufferPointer(rebasing: o[body..<(body + length)]))
                if send.nonce % Self.rekeyInterval == 0 { send.rekey() }
                written = body + length
                offset += chunk
            }
        }
        state = .established(send: send, receive: receive, peer: peer)
        return written
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

    /// Bytes held in the input buffer (at most one frame a read cut short).
    @_spi(Testing) public var bufferedByteCount: Int { inbound.count }

    /// Test hook: move the send nonce close to the limit.
    @_spi(Testing) public mutating func setSendNonceForTesting(_ value: UInt64) {
        if case .established(var send, let receive, let peer) = state {
            send.setNonceForTesting(value)
            state = .established(send: send, receive: receive, peer: peer)
        }
    }
}

/// The start of one `u16 BE length || body` frame that a read cut short, kept until
/// the next read completes it (at most 65,537 bytes).
struct FrameBuffer: Sendable {
    private var storage: [UInt8] = []

    var count: Int { storage.count }

    /// The frame's body length, once its two length bytes are here.
    var announcedLength: Int? { storage.count >= 2 ? Int(storage[0]) << 8 | Int(storage[1]) : nil }

    /// Bytes still needed: the rest of the length, or the rest of the frame it announces.
    var missing: Int { announcedLength.map { 2 + $0 - storage.count } ?? 2 - storage.count }

    mutating func append(_ bytes: UnsafeRawBufferPointer) { storage.append(contentsOf: bytes) }

    /// The complete frame (length bytes included); the buffer is empty after.
    mutating func take() -> [UInt8] {
        defer { storage = [] }
        return storage
    }
}
