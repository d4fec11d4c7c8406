import NodeCrypto
@_spi(Testing) import Noise
import TestSupport
import Testing

/// A peer that completes the handshake honestly and then frames whatever it likes.
/// Fixed keys on both sides: every session has the same transport keys, so one
/// hostile stream can be replayed to fresh victims in different chunkings.
struct Hostile {
    static let victimIdentity = try! Ed25519.PrivateKey(seed: [UInt8](repeating: 7, count: 32))
    static let peerIdentity = try! Ed25519.PrivateKey(seed: [UInt8](repeating: 9, count: 32))
    static func key(_ b: UInt8) -> X25519.PrivateKey {
        try! X25519.PrivateKey(rawRepresentation: [UInt8](repeating: b, count: 32))
    }

    var victim: SecureChannel
    var send: CipherState

    init(maxMessageSize: Int = 1 << 20) {
        var cfg = SecureChannelConfiguration(chainID: "hostile", identity: Self.victimIdentity)
        cfg.maxMessageSize = maxMessageSize
        victim = SecureChannel(
            role: .responder, configuration: cfg, staticKey: Self.key(1), fixedEphemeral: Self.key(2))
        var hs = try! HandshakeState(
            protocol: NoiseProtocol(name: SecureChannelConfiguration.protocolName), initiator: true,
            prologue: cfg.prologue, staticKey: Self.key(3), remoteStatic: nil, fixedEphemeral: Self.key(4))
        let m1 = try! hs.writeMessage(payload: [])
        guard case .write(let m2)? = victim.receive(Self.raw(m1)).first else { fatalError("no message 2") }
        _ = try! hs.readMessage(Array(m2.dropFirst(2)))
        let sig = Self.peerIdentity.signature(
            for: SecureChannelConfiguration.identityDomain + Self.key(3).publicKey.rawRepresentation)
        let m3 = try! hs.writeMessage(payload: Self.peerIdentity.publicKey.rawRepresentation + sig.rawRepresentation)
        let done = victim.receive(Self.raw(m3))
        precondition(done.contains(.established(peer: Self.peerIdentity.publicKey)))
        send = try! hs.transportCiphers().send
    }

    static func raw(_ body: [UInt8]) -> [UInt8] { [UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body }

    /// One transport frame with this plaintext (any layout, any length ≤ 65,519).
    mutating func frame(_ plain: [UInt8]) -> [UInt8] {
        let sealed = try! send.encrypt(associatedData: [], plaintext: plain)
        if send.nonce % SecureChannel.rekeyInterval == 0 { send.rekey() }
        return Self.raw(sealed)
    }

    static func be32(_ n: Int) -> [UInt8] {
        [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)]
    }
}

@Suite("Secure channel against an authenticated hostile peer")
struct HostilePeerTests {
    /// A stream of odd but legal framings, then one that must close the channel.
    static func stream(ending bad: Int, count: Int = 450) -> (bytes: [UInt8], messages: [[UInt8]], boundaries: [Int]) {
        var h = Hostile()
        var out: [UInt8] = []
        var messages: [[UInt8]] = []
        var boundaries: [Int] = []
        func put(_ f: [UInt8]) {
            out += f
            boundaries.append(out.count)
        }
        var rng = SeededRandom(state: UInt64(bad * 7_919 + count))
        for i in 0..<count {  // about 1,100 frames: across a rekey
            let size = [0, 1, 65_515, 65_516, 100_000, Int.random(in: 0...200_000, using: &rng)][i % 6]
            let message = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            messages.append(message)
            // First frame: the length and a random-size first chunk (maybe empty).
            var offset = min(size, Int.random(in: 0...65_515, using: &rng))
            put(h.frame(Hostile.be32(size) + message[0..<offset]))
            while offset < size {
                if Bool.random(using: &rng) { put(h.frame([])) }  // empty continuation frame
                let end = min(size, offset + Int.random(in: 1...65_519, using: &rng))
                put(h.frame(Array(message[offset..<end])))
                offset = end
            }
        }
        switch bad {
        case 0: put(h.frame([0, 0, 1]))  // first frame without a length
        case 1: put(h.frame(Hostile.be32(2) + [1, 2, 3]))  // longer than its message
        case 2:
            put(h.frame(Hostile.be32(10) + [1]))
            put(h.frame([UInt8](repeating: 0, count: 10)))  // overrun
        case 3: put(h.frame(Hostile.be32(1 << 20 + 1)))  // over the limit
        default: put([0, 15] + [UInt8](repeating: 0, count: 15))  // shorter than a tag
        }
        put(h.frame(Hostile.be32(1) + [42]))  // after the failure: never delivered
        return (out, messages, boundaries)
    }

    func run(_ bytes: [UInt8], cuts: [Int]) -> [SecureChannel.Action] {
        var v = Hostile().victim
        var actions: [SecureChannel.Action] = []
        var start = 0
        for cut in cuts + [bytes.count] where cut > start && cut <= bytes.count {
            actions += v.receive(bytes[start..<cut])
            #expect(v.bufferedByteCount <= 65_537)
            start = cut
        }
        return actions
    }

    @Test("every chunking of a hostile stream gives the same deliveries and the same close", arguments: 0..<5)
    func chunkingIsInvisible(bad: Int) {
        let (bytes, messages, boundaries) = Self.stream(ending: bad)
        #expect(boundaries.count > Int(SecureChannel.rekeyInterval), "the stream crosses a rekey")
        let whole = run(bytes, cuts: [])
        let delivered = whole.compactMap { if case .deliver(let m) = $0 { m } else { nil } }
        #expect(delivered == messages, "all messages, byte-exact (no uninitialised memory)")
        guard case .close? = whole.last else {
            Issue.record("no close: \(String(describing: whole.last))")
            return
        }
        // At each frame boundary, one byte before and after, and inside the length.
        var cuts: [Int] = []
        for b in boundaries { cuts += [b - 1, b, b + 1, b + 2] }
        #expect(run(bytes, cuts: cuts.sorted()) == whole)
        var random: [Int] = []
        var at = 0
        var rng = SeededRandom(state: UInt64(bad))
        while at < bytes.count {
            at += Int.random(in: 1...300_000, using: &rng)
            random.append(at)
        }
        #expect(run(bytes, cuts: random) == whole)
        if bad == 0 {
            // Byte by byte (the slow path throughout), on a shorter stream.
            let (small, smallMessages, _) = Self.stream(ending: bad, count: 12)
            let smallWhole = run(small, cuts: [])
            #expect(smallWhole.count == smallMessages.count + 1)
            #expect(run(small, cuts: Array(stride(from: 1, to: small.count, by: 1))) == smallWhole)
        }
    }

    @Test("a message is delivered only when its last frame is authenticated")
    func noEarlyDelivery() {
        var h = Hostile()
        var v = h.victim
        let first = h.frame(Hostile.be32(70_000) + [UInt8](repeating: 1, count: 65_515))
        let second = h.frame([UInt8](repeating: 2, count: 70_000 - 65_515))
        #expect(v.receive(first).isEmpty)
        var tampered = second
        tampered[tampered.count - 1] ^= 1
        #expect(v.receive(tampered.dropLast()).isEmpty, "whole but for one byte")
        #expect(v.receive(tampered.suffix(1)) == [.close(SecureChannelError(.decryptFailed, ""))])
    }
}
