import Bitcoin
import Foundation
import NodeCrypto
import TestSupport
import Testing

@Suite("Transactions and signature hashes (BIP143, BIP341 vectors)")
struct SighashTests {
    /// A script code as the vectors print it (with its length byte), without that byte.
    func scriptCode(_ hex: String) throws -> Script {
        let bytes = try Hex.decode(hex)
        #expect(Int(bytes[0]) == bytes.count - 1)
        return Script(bytes: Array(bytes.dropFirst()))
    }

    @Test("BIP143: every preimage and sighash; ECDSA signatures byte-exact; signed transactions round-trip")
    func bip143() throws {
        let vectors = try #require(try Vectors.json("bip143-vectors.json")["vectors"] as? [[String: Any]])
        var checked = 0
        for v in vectors {
            let name = v["name"] as? String ?? "?"
            let tx = try (v["unsigned_tx"] as? String).map { try BitcoinTransaction(hex: $0) }
            for s in try #require(v["sighashes"] as? [[String: Any]]) {
                let preimage = try #require(s["preimage"] as? String)
                let sigHash = try #require(s["sigHash"] as? String)
                #expect(SHA256.doubleHash(try Hex.decode(preimage)).hex == sigHash, "\(name)")
                guard let tx else { continue }  // the last example prints no transaction
                let index = try #require(s["input_index"] as? Int)
                let type = SighashType(rawValue: UInt32(try #require(s["hash_type"] as? Int)))
                let amount = UInt64(try #require(s["amount_sat"] as? Int))
                let code = try scriptCode(try #require(s["scriptCode"] as? String))
                let computed = try tx.segwitV0Preimage(index: index, scriptCode: code, amount: amount, type: type)
                #expect(computed.hex == preimage, "\(name) input \(index) type \(type.rawValue)")
                #expect(
                    try tx.segwitV0Sighash(index: index, scriptCode: code, amount: amount, type: type).hex == sigHash)
                checked += 1
                if let key = s["private_key"] as? String, let signature = s["signature"] as? String {
                    let der = try Secp256k1.PrivateKey(rawRepresentation: Hex.decode(key))
                        .ecdsaSignature(forDigest: Hex.decode(sigHash)).derRepresentation
                    #expect((der + [UInt8(type.rawValue)]).hex == signature, "\(name) signature")
                }
            }
            if let signed = v["signed_tx"] as? String {
                let parsed = try BitcoinTransaction(hex: signed)
                #expect(parsed.hex == signed, "\(name) round trip")
                if let tx {
                    #expect(
                        parsed.outputs == tx.outputs
                            && parsed.inputs.map(\.previousOutput) == tx.inputs.map(\.previousOutput))
                }
            }
        }
        #expect(checked == 13)
    }

    /// The vectors' script trees: a leaf object, or a two-element array of subtrees.
    func tree(_ node: Any) throws -> TapTree {
        if let pair = node as? [Any] {
            try #require(pair.count == 2)
            return .branch(try tree(pair[0]), try tree(pair[1]))
        }
        let leaf = try #require(node as? [String: Any])
        return .leaf(
            TapLeaf(
                script: try Script(hex: try #require(leaf["script"] as? String)),
                version: UInt8(try #require(leaf["leafVersion"] as? Int))))
    }

    @Test("BIP341 scriptPubKey: leaf hashes, Merkle roots, output scripts, addresses and control blocks")
    func bip341ScriptPubKeys() throws {
        let cases = try #require(
            try Vectors.json("bip341-wallet-test-vectors.json")["scriptPubKey"] as? [[String: Any]])
        for c in cases {
            let given = try #require(c["given"] as? [String: Any])
            let inter = try #require(c["intermediary"] as? [String: Any])
            let expected = try #require(c["expected"] as? [String: Any])
            let key = try Secp256k1.XOnlyPublicKey(
                rawRepresentation: Hex.decode(try #require(given["internalPubkey"] as? String)))
            let scriptTree = try given["scriptTree"].flatMap { $0 is NSNull ? nil : $0 }.map { try tree($0) }
            let output = try TaprootOutput(internalKey: key, tree: scriptTree)
            #expect(output.merkleRoot?.hex == inter["merkleRoot"] as? String)
            #expect(output.scriptPubKey.hex == expected["scriptPubKey"] as? String)
            #expect(output.address(.mainnet).description == expected["bip350Address"] as? String)
            guard let scriptTree else { continue }
            let leaves = scriptTree.leavesWithPaths.map(\.leaf)
            // Leaves in the order of the vectors' ids (left to right).
            #expect(leaves.map { $0.hash.hex } == inter["leafHashes"] as? [String])
            let blocks = try #require(expected["scriptPathControlBlocks"] as? [String])
            for (leaf, block) in zip(leaves, blocks) {
                #expect(output.controlBlock(for: leaf)?.hex == block)
                #expect(
                    TaprootOutput.verify(
                        controlBlock: try Hex.decode(block), leaf: leaf.script,
                        outputKey: output.outputKey.rawRepresentation))
            }
        }
    }

    @Test("BIP341 key path: every SigMsg and sighash, and the fully signed transaction")
    func bip341KeyPath() throws {
        let spending = try #require(
            try Vectors.json("bip341-wallet-test-vectors.json")["keyPathSpending"] as? [[String: Any]])
        let given = try #require(spending.first?["given"] as? [String: Any])
        var tx = try BitcoinTransaction(hex: try #require(given["rawUnsignedTx"] as? String))
        let spent = try #require(given["utxosSpent"] as? [[String: Any]]).map {
            TxOut(
                value: UInt64(try #require($0["amountSats"] as? Int)),
                scriptPubKey: try Script(hex: try #require($0["scriptPubKey"] as? String)))
        }
        for input in try #require(spending.first?["inputSpending"] as? [[String: Any]]) {
            let g = try #require(input["given"] as? [String: Any])
            let inter = try #require(input["intermediary"] as? [String: Any])
            let expected = try #require(input["expected"] as? [String: Any])
            let index = try #require(g["txinIndex"] as? Int)
            let type = SighashType(rawValue: UInt32(try #require(g["hashType"] as? Int)))
            #expect(try tx.taprootSigMsg(index: index, spent: spent, type: type).hex == inter["sigMsg"] as? String)
            let sigHash = try tx.taprootSighash(index: index, spent: spent, type: type)
            #expect(sigHash.hex == inter["sigHash"] as? String)
            // Sign for the tweaked key (aux_rand = 0, see Tests/Vectors/README.md) and put
            // the witness in place.
            let key = try Secp256k1.PrivateKey(
                rawRepresentation: Hex.decode(try #require(g["internalPrivkey"] as? String))
            )
            .taprootTweaked(merkleRoot: try (g["merkleRoot"] as? String).map { try Hex.decode($0) })
            let signature = try key.schnorrSignature(
                for: sigHash, auxiliaryRandomness: [UInt8](repeating: 0, count: 32))
            let witness = signature.rawRepresentation + (type == .default ? [] : [UInt8(type.rawValue)])
            #expect([witness.hex] == expected["witness"] as? [String])
            tx.inputs[index].witness = [witness]
        }
        // The signed transaction also spends two non-taproot inputs (no keys given): the
        // taproot witnesses must be exactly ours, and it must round-trip.
        let full = try #require((spending.first?["auxiliary"] as? [String: Any])?["fullySignedTx"] as? String)
        let signed = try BitcoinTransaction(hex: full)
        #expect(signed.hex == full)
        for i in [0, 1, 3, 4, 6, 7, 8] { #expect(signed.inputs[i].witness == tx.inputs[i].witness, "input \(i)") }
        #expect(signed.outputs == tx.outputs && signed.lockTime == tx.lockTime && signed.version == tx.version)
        #expect(signed.weight > signed.serialized(withWitness: false).count * 4)
    }

    @Test("SINGLE without a matching output, a bad hash type or a spent-output count mismatch are errors")
    func sighashErrors() throws {
        let tx = BitcoinTransaction(
            inputs: [TxIn(previousOutput: OutPoint(txid: [UInt8](repeating: 1, count: 32), vout: 0))],
            outputs: [])
        let spent = [TxOut(value: 1_000, scriptPubKey: .p2tr(outputKey: [UInt8](repeating: 2, count: 32)))]
        #expect(throws: BitcoinError.self) { try tx.taprootSighash(index: 0, spent: spent, type: .single) }
        #expect(throws: BitcoinError.self) {
            try tx.taprootSighash(index: 0, spent: spent, type: SighashType(rawValue: 4))
        }
        #expect(throws: BitcoinError.self) { try tx.taprootSighash(index: 0, spent: [], type: .default) }
        #expect(throws: BitcoinError.self) { try tx.taprootSighash(index: 1, spent: spent, type: .default) }
    }

    @Test("malformed transactions are refused with a reason, never a crash")
    func malformed() throws {
        let good = try #require(
            (try Vectors.json("bip341-wallet-test-vectors.json")["keyPathSpending"] as? [[String: Any]])?.first?[
                "auxiliary"] as? [String: Any])
        let bytes = try Hex.decode(try #require(good["fullySignedTx"] as? String))
        for cut in [0, 3, 5, 40, bytes.count / 2, bytes.count - 1] {
            #expect(throws: BitcoinError.self) { try BitcoinTransaction(bytes: Array(bytes.prefix(cut))) }
        }
        #expect(throws: BitcoinError.self) { try BitcoinTransaction(bytes: bytes + [0]) }
        // A non-canonical CompactSize (0xfd with a value below 0xfd).
        var nonCanonical = Array(bytes.prefix(4))
        nonCanonical += [0xFD, 0x01, 0x00]
        #expect(throws: BitcoinError.self) { try BitcoinTransaction(bytes: nonCanonical) }
    }
}
