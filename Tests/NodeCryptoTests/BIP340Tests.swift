import NodeCrypto
import TestSupport
import Testing

struct BIP340Row: Sendable, CustomTestStringConvertible {
    let index: Int
    let secretKey: [UInt8]?
    let publicKey: [UInt8]
    let auxRand: [UInt8]?
    let message: [UInt8]
    let signature: [UInt8]
    let valid: Bool
    let comment: String
    var testDescription: String { "row \(index) \(comment)" }

    static func all() throws -> [BIP340Row] {
        let lines = try Vectors.text("bip340-test-vectors.csv").split(whereSeparator: \.isNewline).dropFirst()
        return try lines.map { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 8, let index = Int(f[0]) else { throw VectorError("bad CSV row: \(line)") }
            return BIP340Row(
                index: index,
                secretKey: f[1].isEmpty ? nil : try Hex.decode(f[1]),
                publicKey: try Hex.decode(f[2]),
                auxRand: f[3].isEmpty ? nil : try Hex.decode(f[3]),
                message: try Hex.decode(f[4]),
                signature: try Hex.decode(f[5]),
                valid: f[6] == "TRUE",
                comment: f[7])
        }
    }
}

@Suite("BIP340 official vectors")
struct BIP340Tests {
    @Test("every row of bip340-test-vectors.csv", arguments: try BIP340Row.all())
    func row(_ row: BIP340Row) throws {
        if let secret = row.secretKey {
            let key = try Secp256k1.PrivateKey(rawRepresentation: secret)
            #expect(key.xOnlyPublicKey.rawRepresentation == row.publicKey)
            let signature = try key.schnorrSignature(for: row.message, auxiliaryRandomness: row.auxRand)
            #expect(signature.rawRepresentation == row.signature, "signature must be byte-exact")
        }
        // Rows whose public key is not on the curve must be rejected at parse time,
        // which is a failed verification.
        let verified: Bool
        if let key = try? Secp256k1.XOnlyPublicKey(rawRepresentation: row.publicKey) {
            verified = key.isValidSchnorrSignature(try .init(rawRepresentation: row.signature), for: row.message)
        } else {
            verified = false
        }
        #expect(verified == row.valid)
    }

    @Test func vectorFileHasAllNineteenRows() throws {
        let rows = try BIP340Row.all()
        #expect(rows.count == 19)
        #expect(rows.filter(\.valid).count == 9)
    }

    @Test func freshSignaturesVerifyAndForgeriesDoNot() throws {
        let key = Secp256k1.PrivateKey()
        let message = SecureRandom.bytes(32)
        let sig = try key.schnorrSignature(for: message)
        #expect(key.xOnlyPublicKey.isValidSchnorrSignature(sig, for: message))
        var forged = sig.rawRepresentation
        forged[10] ^= 1
        #expect(!key.xOnlyPublicKey.isValidSchnorrSignature(try .init(rawRepresentation: forged), for: message))
        #expect(!Secp256k1.PrivateKey().xOnlyPublicKey.isValidSchnorrSignature(sig, for: message))
    }
}
