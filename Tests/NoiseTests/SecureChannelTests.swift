import NodeCrypto
@_spi(Testing) import Noise
import Testing

/// Runs two channels against each other in memory, feeding each side's writes to
/// the other in chunks of `chunk` bytes (nil: whole writes).
struct ChannelPair {
    var a: SecureChannel
    var b: SecureChannel
    var delivered: (a: [[UInt8]], b: [[UInt8]]) = ([], [])
    var closed: (a: SecureChannelError?, b: SecureChannelError?) = (nil, nil)
    var established: (a: Ed25519.PublicKey?, b: Ed25519.PublicKey?) = (nil, nil)
    var chunk: Int?

    init(_ a: SecureChannel, _ b: SecureChannel, chunk: Int? = nil) {
        self.a = a
        self.b = b
        self.chunk = chunk
    }

    mutating func handshake() {
        let first = a.start()
        pump(fromA: first)
    }

    /// Applies actions produced by one side, delivering writes to the other, until quiet.
    mutating func pump(fromA initial: [SecureChannel.Action]) {
        var queue: [(fromA: Bool, action: SecureChannel.Action)] = initial.map { (true, $0) }
        while !queue.isEmpty {
            let (fromA, action) = queue.removeFirst()
            switch action {
            case .write(let bytes):
                var produced: [SecureChannel.Action] = []
                for piece in pieces(bytes) {
                    produced += fromA ? b.receive(piece) : a.receive(piece)
                }
                queue += produced.map { (!fromA, $0) }
            case .established(let peer):
                if fromA { established.a = peer } else { established.b = peer }
            case .deliver(let message):
                if fromA { delivered.a.append(message) } else { delivered.b.append(message) }
            case .close(let error):
                if fromA { closed.a = error } else { closed.b = error }
            }
        }
    }

    mutating func sendFromA(_ message: [UInt8]) throws {
        let bytes = try a.send(message)
        pump(fromA: [.write(bytes)])
    }

    mutating func sendFromB(_ message: [UInt8]) throws {
        let bytes = try b.send(message)
        let actions = pieces(bytes).flatMap { a.receive($0) }
        for action in actions {
            if case .deliver(let m) = action { delivered.a.append(m) }
            if case .close(let e) = action { closed.a = e }
        }
    }

    func pieces(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        guard let chunk else { return [bytes[...]] }
        return stride(from: 0, to: bytes.count, by: chunk).map { bytes[$0..<min(bytes.count, $0 + chunk)] }
    }
}

func config(_ chain: String = "sidenode-test", identity: Ed25519.PrivateKey = .init()) -> SecureChannelConfiguration {
    SecureChannelConfiguration(chainID: chain, identity: identity)
}

@Suite("Secure channel: XX handshake with identity binding, framing, limits")
struct SecureChannelTests {
    @Test func handshakeAuthenticatesBothIdentities() throws {
        let alice = Ed25519.PrivateKey()
        let bob = Ed25519.PrivateKey()
        var pair = ChannelPair(
            SecureChannel(role: .initiator(expectedPeer: bob.publicKey), configuration: config(identity: alice)),
            SecureChannel(role: .responder, configuration: config(identity: bob)))
        pair.handshake()
        #expect(pair.established.a == bob.publicKey)
        #expect(pair.established.b == alice.publicKey)
        #expect(pair.a.remotePeer == bob.publicKey && pair.b.remotePeer == alice.publicKey)
        #expect(pair.closed.a == nil && pair.closed.b == nil)
    }

    @Test("payloads of 0…4 MiB round-trip both ways, in whole writes and 1-byte drips")
    func roundTrips() throws {
        let sizes =
            [0, 1, 65_514, 65_515, 65_516, 65_519, 65_520, 131_038, 131_039, 1_000_000, 4 * 1024 * 1024]
            + (0..<6).map { _ in Int.random(in: 0...(4 * 1024 * 1024)) }
        var pair = ChannelPair(
            SecureChannel(role: .initiator(expectedPeer: nil), configuration: config()),
            SecureChannel(role: .responder, configuration: config()))
        pair.handshake()
        for size in sizes {
            let message = SecureRandom.bytes(size)
            try pair.sendFromA(message)
            try pair.sendFromB(message.reversed())
            #expect(pair.delivered.b.last == message, "size \(size) a→b")
            #expect(pair.delivered.a.last == Array(message.reversed()), "size \(size) b→a")
        }
        #expect(pair.delivered.a.count == sizes.count && pair.delivered.b.count == sizes.count)
        #expect(pair.closed.a == nil && pair.closed.b == nil)

        var drip = ChannelPair(
            SecureChannel(role: .initiator(expectedPeer: nil), configuration: config()),
            SecureChannel(role: .responder, configuration: config()), chunk: 1)
        drip.handshake()
        #expect(drip.established.a != nil && drip.established.b != nil)
        let messages = [SecureRandom.bytes(70_000), [], SecureRandom.bytes(3)]
        for m in messages { try drip.sendFromA(m) }
        #expect(drip.delivered.b == messages)
    }

    @Test("keys are replaced every 1,000 frames in each direction, also inside a multi-frame message")
    func rekeysInStep() throws {
        var pair = ChannelPair(
            SecureChannel(role: .initiator(expectedPeer: nil), configuration: config()),
            SecureChannel(role: .responder, configuration: config()))
        pair.handshake()
        // 3-frame messages: frame 1,000 falls inside one, so both sides must rekey between
        // a message's frames exactly where the other does.
        let big = SecureRandom.bytes(131_039)
        for i in 0..<800 {
            try pair.sendFromA(i % 2 == 0 ? big : [UInt8(i & 0xff)])
            try pair.sendFromB([UInt8(i & 0xff), 1])
        }
        #expect(pair.closed.a == nil && pair.closed.b == nil)
        #expect(pair.delivered.b.count == 800 && pair.delivered.b[798] == big)
        #expect(pair.delivered.a.count == 800)
    }

    @Test func wrongChainIDFailsTheHandshake() {
        var pair = ChannelPair(
            SecureChannel(role: .initiator(expectedPeer: nil), configuration: config("chain-a")),
            SecureChannel(role: .responder, configuration: config("chain-b")))
        pair.handshake()
        #expect(pair.closed.a?.kind == .handshakeFailed)
        #expect(pair.established.a == nil && pair.established.b == nil)
    }

    @Test func wrongPinnedIdentityAborts() {
        var pair = ChannelPair(
            SecureChannel(role: .initiator(expectedPeer: Ed25519.PrivateKey().publicKey), configuration: config()),
            SecureChannel(role: .responder, configuration: config()))
        pair.handshake()
        #expect(pair.closed.a?.kind == .identityMismatch)
        #expect(pair.established.a == nil && pair.established.b == nil)
        #expect(pair.a.isClosed)
    }

    @Test("a flipped byte in any handshake message fails the handshake", arguments: [0, 1, 2])
    func flippedHandshakeByte(messageIndex: Int) {
        for position in [2, 20, 40, 60, 100, -1] {
            var initiator = SecureChannel(role: .initiator(expectedPeer: nil), configuration: config())
            var responder = SecureChannel(role: .responder, configuration: config())
            var toResponder = true
            var pending = initiator.start()
            var index = 0
            var outcomes: [SecureChannel.Action] = []
            while let action = pending.first {
                pending.removeFirst()
                guard case .write(var bytes) = action else {
                    outcomes.append(action)
                    continue
                }
                if index == messageIndex {
                    let i = position < 0 ? bytes.count - 1 : min(position, bytes.count - 1)
                    bytes[i] ^= 0x01
                }
                index += 1
                pending += toResponder ? responder.receive(bytes) : initiator.receive(bytes)
                toResponder.toggle()
            }
            let closes = outcomes.filter { if case .close = $0 { true } else { false } }
            #expect(!closes.isEmpty, "message \(messageIndex) byte \(position)")
            #expect(!(initiator.isEstablished && responder.isEstablished))
        }
    }

    @Test func forgedIdentitySignatureIsRejected() throws {
        // A responder that runs real Noise but signs its static key with the wrong key.
        let proto = try NoiseProtocol(name: SecureChannelConfiguration.protocolName)
        let cfg = config()
        var initiator = SecureChannel(role: .initiator(expectedPeer: nil), configuration: cfg)
        let staticKey = X25519.PrivateKey()
        var evil = try HandshakeState(protocol: proto, initiator: false, prologue: cfg.prologue, staticKey: staticKey)
        guard case .write(let m1) = initiator.start().first else {
            Issue.record("no message 1")
            return
        }
        _ = try evil.readMessage(Array(m1.dropFirst(2)))
        let claimed = Ed25519.PrivateKey()
        let wrongSigner = Ed25519.PrivateKey()
        let sig = wrongSigner.signature(
            for: SecureChannelConfiguration.identityDomain + staticKey.publicKey.rawRepresentation)
        let m2 = try evil.writeMessage(payload: claimed.publicKey.rawRepresentation + sig.rawRepresentation)
        let actions = initiator.receive([UInt8(m2.count >> 8), UInt8(m2.count & 0xff)] + m2)
        #expect(actions == [.close(SecureChannelError(.badIdentity, ""))])

        // Signed by the claimed key but over another static key: also rejected.
        var initiator2 = SecureChannel(role: .initiator(expectedPeer: nil), configuration: cfg)
        var evil2 = try HandshakeState(protocol: proto, initiator: false, prologue: cfg.prologue, staticKey: staticKey)
        guard case .write(let n1) = initiator2.start().first else {
            Issue.record("no message 1")
            return
        }
        _ = try evil2.readMessage(Array(n1.dropFirst(2)))
        let otherStatic = X25519.PrivateKey().publicKey.rawRepresentation
        let sig2 = claimed.signature(for: SecureChannelConfiguration.identityDomain + otherStatic)
        let n2 = try evil2.writeMessage(payload: claimed.publicKey.rawRepresentation + sig2.rawRepresentation)
        #expect(
            initiator2.receive([UInt8(n2.count >> 8), UInt8(n2.count & 0xff)] + n2) == [
                .close(SecureChannelError(.badIdentity, ""))
            ])
    }

    @Test func lowOrderEphemeralIsRefused() {
        var responder = SecureChannel(role: .responder, configuration: config())
        // Message 1 whose ephemeral key is the all-zero (low-order) point.
        let actions = responder.receive([0, 32] + [UInt8](repeating: 0, count: 32))
        #expect(actions == [.close(SecureChannelError(.handshakeFailed, ""))])
        if case .close(let error) = actions.first { #expect(error.detail.contains("weak DH")) }
    }

    func established() -> ChannelPair {
        var pair = ChannelPair(
            SecureChannel(role: .initiator(expectedPeer: nil), configuration: config()),
            SecureChannel(role: .responder, configuration: config()))
        pair.handshake()
        return pair
    }

    @Test("frame lengths 0, 15, 16 and 65535 with garbage close the channel with a reason")
    func badFrameLengths() {
        for (length, kind) in [
            (0, SecureChannelError.Kind.frameTooShort), (15, .frameTooShort), (16, .decryptFailed),
            (65_535, .decryptFailed),
        ] {
            var pair = established()
            let actions = pair.b.receive([UInt8(length >> 8), UInt8(length & 0xff)] + SecureRandom.bytes(length))
            #expect(actions == [.close(SecureChannelError(kind, ""))], "length \(length)")
            #expect(pair.b.isClosed)
            #expect(pair.b.receive(SecureRandom.bytes(100)).isEmpty, "a closed channel ignores input")
        }
    }

    @Test func announcedLengthOverTheLimitClosesBeforeAllocating() throws {
        var big = config()
        big.maxMessageSize = 8 * 1024 * 1024
        var small = config()
        small.maxMessageSize = 1024
        var pair = ChannelPair(
            SecureChannel(role: .initiator(expectedPeer: nil), configuration: big),
            SecureChannel(role: .responder, configuration: small))
        pair.handshake()
        try pair.sendFromA(SecureRandom.bytes(1024))
        #expect(pair.delivered.b.count == 1)
        try pair.sendFromA(SecureRandom.bytes(1025))
        #expect(pair.closed.b?.kind == .messageTooLarge)
        #expect(throws: SecureChannelError(.messageTooLarge, "")) {
            var s = small
            s.maxMessageSize = 10
            var p = ChannelPair(
                SecureChannel(role: .initiator(expectedPeer: nil), configuration: s),
                SecureChannel(role: .responder, configuration: s))
            p.handshake()
            _ = try p.a.send(SecureRandom.bytes(11))
        }
    }

    @Test("random byte streams cut at random boundaries never crash the parser")
    func randomStreams() {
        for round in 0..<200 {
            var channel =
                round % 2 == 0
                ? established().b
                : SecureChannel(role: .responder, configuration: config())
            var stream = SecureRandom.bytes(Int.random(in: 0...200_000))
            if round % 3 == 0 && stream.count >= 2 {
                stream[0] = 0xff
                stream[1] = 0xff
            }
            var offset = 0
            var closed = false
            while offset < stream.count {
                let end = min(stream.count, offset + Int.random(in: 1...70_000))
                for action in channel.receive(stream[offset..<end]) {
                    if case .close = action { closed = true }
                    if case .deliver = action { Issue.record("garbage was delivered") }
                }
                offset = end
            }
            // A stream too short to hold a complete frame may legitimately leave it open.
            if stream.count > 65_537 { #expect(closed, "round \(round)") }
        }
    }

    @Test("memory stays bounded: the input buffer never holds more than a partial frame and one read")
    func boundedBuffering() throws {
        var pair = established()
        var stream: [UInt8] = []
        for _ in 0..<40 { stream += try pair.a.send(SecureRandom.bytes(Int.random(in: 0...300_000))) }
        var offset = 0
        var delivered = 0
        var peak = 0
        while offset < stream.count {
            let chunk = Int.random(in: 1...100_000)
            let end = min(stream.count, offset + chunk)
            for action in pair.b.receive(stream[offset..<end]) {
                if case .deliver = action { delivered += 1 }
            }
            peak = max(peak, pair.b.bufferedByteCount)
            #expect(pair.b.bufferedByteCount < 65_537, "after processing, only a partial frame remains")
            offset = end
        }
        #expect(delivered == 40)
        #expect(peak < 65_537)
    }

    @Test func sendingBeforeTheHandshakeIsAnError() {
        var channel = SecureChannel(role: .initiator(expectedPeer: nil), configuration: config())
        #expect(throws: SecureChannelError(.notEstablished, "")) { try channel.send([1]) }
    }

    @Test func nonceLimitClosesCleanlyBeforeWrapping() throws {
        var pair = established()
        pair.a.setSendNonceForTesting(UInt64.max - 3)
        _ = try pair.a.send([1])  // uses nonce max-3 → next max-2
        _ = try pair.a.send([2])  // max-2 → max-1 (the configured limit)
        #expect(throws: SecureChannelError(.nonceLimit, "")) { try pair.a.send([3]) }
        #expect(pair.a.isClosed)
    }
}
