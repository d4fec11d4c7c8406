import NodeCrypto
@_spi(Testing) import Noise
import TestSupport
import Testing

struct NoiseVector: Sendable, CustomTestStringConvertible {
    let protocolName: String
    let initPrologue: [UInt8], respPrologue: [UInt8]
    let initStatic: [UInt8]?, respStatic: [UInt8]?
    let initEphemeral: [UInt8], respEphemeral: [UInt8]?
    let initRemoteStatic: [UInt8]?, respRemoteStatic: [UInt8]?
    let handshakeHash: [UInt8]
    let messages: [(payload: [UInt8], ciphertext: [UInt8])]
    var testDescription: String { protocolName }

    static func all() throws -> [NoiseVector] {
        let vectors = try #require(try Vectors.json("noise-vectors.json")["vectors"] as? [[String: Any]])
        func hex(_ v: [String: Any], _ key: String) throws -> [UInt8]? {
            try (v[key] as? String).map { try Hex.decode($0) }
        }
        return try vectors.map { v in
            NoiseVector(
                protocolName: try #require(v["protocol_name"] as? String),
                initPrologue: try #require(try hex(v, "init_prologue")),
                respPrologue: try #require(try hex(v, "resp_prologue")),
                initStatic: try hex(v, "init_static"), respStatic: try hex(v, "resp_static"),
                initEphemeral: try #require(try hex(v, "init_ephemeral")),
                respEphemeral: try hex(v, "resp_ephemeral"),
                initRemoteStatic: try hex(v, "init_remote_static"), respRemoteStatic: try hex(v, "resp_remote_static"),
                handshakeHash: try #require(try hex(v, "handshake_hash")),
                messages: try #require(v["messages"] as? [[String: String]]).map {
                    (try Hex.decode($0["payload"] ?? ""), try Hex.decode($0["ciphertext"] ?? ""))
                })
        }
    }
}

@Suite("Noise rev 34: every non-PSK cacophony vector for 25519/ChaChaPoly/{SHA256,BLAKE2b}")
struct NoiseVectorTests {
    @Test func fileHoldsAllSeventySixVectors() throws {
        let vectors = try NoiseVector.all()
        #expect(vectors.count == 76)
        #expect(Set(vectors.map(\.protocolName)).count == 76)
    }

    @Test("vector", arguments: try NoiseVector.all())
    func vector(_ v: NoiseVector) throws {
        let proto = try NoiseProtocol(name: v.protocolName)
        func key(_ bytes: [UInt8]?) throws -> X25519.PrivateKey? { try bytes.map { try .init(rawRepresentation: $0) } }
        func pub(_ bytes: [UInt8]?) throws -> X25519.PublicKey? { try bytes.map { try .init(rawRepresentation: $0) } }
        var initiator = try HandshakeState(
            protocol: proto, initiator: true, prologue: v.initPrologue, staticKey: key(v.initStatic),
            remoteStatic: pub(v.initRemoteStatic), fixedEphemeral: key(v.initEphemeral))
        var responder = try HandshakeState(
            protocol: proto, initiator: false, prologue: v.respPrologue, staticKey: key(v.respStatic),
            remoteStatic: pub(v.respRemoteStatic), fixedEphemeral: key(v.respEphemeral))

        let handshakeCount = proto.pattern.messages.count
        var index = 0
        for (i, message) in v.messages.prefix(handshakeCount).enumerated() {
            let initiatorSends = proto.pattern.isOneWay || i % 2 == 0
            let written =
                initiatorSends
                ? try initiator.writeMessage(payload: message.payload)
                : try responder.writeMessage(payload: message.payload)
            #expect(written == message.ciphertext, "handshake message \(i)")
            let read = initiatorSends ? try responder.readMessage(written) : try initiator.readMessage(written)
            #expect(read == message.payload)
            index += 1
        }
        #expect(initiator.isComplete && responder.isComplete)
        #expect(initiator.handshakeHash == v.handshakeHash)
        #expect(responder.handshakeHash == v.handshakeHash)

        var (iSend, iReceive) = try initiator.transportCiphers()
        var (rSend, rReceive) = try responder.transportCiphers()
        for (i, message) in v.messages.enumerated().dropFirst(index) {
            let initiatorSends = proto.pattern.isOneWay || i % 2 == 0
            if initiatorSends {
                let ct = try iSend.encrypt(associatedData: [], plaintext: message.payload)
                #expect(ct == message.ciphertext, "transport message \(i)")
                #expect(try rReceive.decrypt(associatedData: [], ciphertext: ct) == message.payload)
            } else {
                let ct = try rSend.encrypt(associatedData: [], plaintext: message.payload)
                #expect(ct == message.ciphertext, "transport message \(i)")
                #expect(try iReceive.decrypt(associatedData: [], ciphertext: ct) == message.payload)
            }
        }
    }

    @Test func unsupportedNamesAreRejected() {
        for name in [
            "Noise_XX_448_ChaChaPoly_BLAKE2b", "Noise_XX_25519_AESGCM_SHA256", "Noise_XXpsk3_25519_ChaChaPoly_SHA256",
            "Noise_XX_25519_ChaChaPoly_BLAKE2s", "Noise_XX_25519_ChaChaPoly", "", "Noise_ZZ_25519_ChaChaPoly_SHA256",
        ] {
            #expect(throws: NoiseError(.unsupportedProtocol, "")) { try NoiseProtocol(name: name) }
        }
    }
}
