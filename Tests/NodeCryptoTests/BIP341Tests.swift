import NodeCrypto
import TestSupport
import Testing

@Suite("BIP341 key-path tweak vectors")
struct BIP341Tests {
    @Test func scriptPubKeyTweaks() throws {
        let cases = try #require(
            try Vectors.json("bip341-wallet-test-vectors.json")["scriptPubKey"] as? [[String: Any]])
        #expect(cases.count == 7)
        for c in cases {
            let given = try #require(c["given"] as? [String: Any])
            let inter = try #require(c["intermediary"] as? [String: Any])
            let expected = try #require(c["expected"] as? [String: Any])
            let internalKey = try Secp256k1.XOnlyPublicKey(
                rawRepresentation: Hex.decode(try #require(given["internalPubkey"] as? String)))
            let root = try (inter["merkleRoot"] as? String).map { try Hex.decode($0) }
            let tweak = try internalKey.taprootTweak(merkleRoot: root)
            #expect(tweak.hex == inter["tweak"] as? String)
            let output = try internalKey.taprootOutputKey(merkleRoot: root)
            #expect(output.key.hex == inter["tweakedPubkey"] as? String)
            #expect("5120" + output.key.hex == expected["scriptPubKey"] as? String)
            // The control blocks' first byte carries the output key's parity.
            if let controlBlocks = expected["scriptPathControlBlocks"] as? [String], let first = controlBlocks.first {
                let parity = try Hex.decode(first)[0] & 1
                #expect((parity == 1) == output.oddY)
            }
        }
    }

    @Test func keyPathPrivateTweaksAndSignatures() throws {
        let spending = try #require(
            try Vectors.json("bip341-wallet-test-vectors.json")["keyPathSpending"] as? [[String: Any]])
        let inputs = try #require(spending.first?["inputSpending"] as? [[String: Any]])
        #expect(inputs.count == 7)
        for input in inputs {
            let given = try #require(input["given"] as? [String: Any])
            let inter = try #require(input["intermediary"] as? [String: Any])
            let expected = try #require(input["expected"] as? [String: Any])
            let key = try Secp256k1.PrivateKey(
                rawRepresentation: Hex.decode(try #require(given["internalPrivkey"] as? String)))
            #expect(key.xOnlyPublicKey.hex == inter["internalPubkey"] as? String)
            let root = try (given["merkleRoot"] as? String).map { try Hex.decode($0) }
            #expect(try key.xOnlyPublicKey.taprootTweak(merkleRoot: root).hex == inter["tweak"] as? String)
            let tweaked = try key.taprootTweaked(merkleRoot: root)
            #expect(tweaked.rawRepresentation.hex == inter["tweakedPrivkey"] as? String)
            #expect(try key.xOnlyPublicKey.taprootOutputKey(merkleRoot: root).key == tweaked.xOnlyPublicKey)
            // The vectors' signatures use aux_rand = 32 zero bytes (Tests/Vectors/README.md).
            let sigHash = try Hex.decode(try #require(inter["sigHash"] as? String))
            let signature = try tweaked.schnorrSignature(
                for: sigHash, auxiliaryRandomness: [UInt8](repeating: 0, count: 32))
            let witness = try #require((expected["witness"] as? [String])?.first)
            let hashType = try #require(given["hashType"] as? Int)
            let expectedWitness = signature.rawRepresentation + (hashType == 0 ? [] : [UInt8(hashType)])
            #expect(expectedWitness.hex == witness)
        }
    }
}
