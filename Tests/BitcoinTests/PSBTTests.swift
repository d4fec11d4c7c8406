import Bitcoin
import NodeCrypto
import TestSupport
import Testing

@Suite("PSBT v0 with taproot fields (BIP174, BIP371 vectors)")
struct PSBTTests {
    let bip174: [String: Any]
    let bip371: [String: Any]

    init() throws {
        let all = try Vectors.json("psbt-vectors.json")
        bip174 = try #require(all["bip174"] as? [String: Any])
        bip371 = try #require(all["bip371"] as? [String: Any])
    }

    /// What kind of error, and for key/value errors the field type.
    static func kind(_ error: PSBTError) -> String {
        switch error {
        case .notPSBT: "notPSBT"
        case .truncated: "truncated"
        case .missingUnsignedTransaction: "missingUnsignedTransaction"
        case .unsignedTransactionHasScripts: "unsignedTransactionHasScripts"
        case .unsignedTransactionHasWitnessFormat: "unsignedTransactionHasWitnessFormat"
        case .unsupportedVersion: "unsupportedVersion"
        case .duplicateKey(let map, _): "duplicateKey/\(map.split(separator: " ")[0])"
        case .invalidKey(let map, let type, _): "invalidKey/\(map.split(separator: " ")[0])/\(type)"
        case .invalidValue(let map, let type, _): "invalidValue/\(map.split(separator: " ")[0])/\(type)"
        case .inputCountMismatch: "inputCountMismatch"
        case .outputCountMismatch: "outputCountMismatch"
        case .utxoMismatch: "utxoMismatch"
        case .signer: "signer"
        case .finalize: "finalize"
        case .combine: "combine"
        }
    }

    func parse(_ v: [String: Any]) throws -> PSBT {
        try PSBT(bytes: try Hex.decode(try #require(v["hex"] as? String)))
    }

    func expectErrors(_ cases: [[String: Any]], _ expected: [String]) throws {
        #expect(cases.count == expected.count)
        for (v, kind) in zip(cases, expected) {
            let description = v["description"] as? String ?? "?"
            do {
                _ = try parse(v)
                Issue.record("accepted: \(description)")
            } catch let error as PSBTError {
                #expect(Self.kind(error) == kind, "\(description): \(error)")
            }
            // The base64 form gives the same verdict.
            #expect(throws: PSBTError.self) { try PSBT(base64: try #require(v["base64"] as? String)) }
        }
    }

    @Test("BIP174 invalid PSBTs fail with the specific error")
    func bip174Invalid() throws {
        try expectErrors(
            try #require(bip174["invalid"] as? [[String: Any]]),
            [
                "notPSBT", "outputCountMismatch", "unsignedTransactionHasScripts", "missingUnsignedTransaction",
                "duplicateKey/input", "invalidKey/global/0", "invalidKey/input/1", "invalidKey/input/2",
                "invalidKey/input/4", "invalidKey/input/5", "invalidKey/input/6", "invalidKey/input/0",
                "invalidKey/input/7", "invalidKey/input/8", "invalidKey/output/2", "invalidKey/input/3",
                "invalidKey/output/0", "invalidKey/output/1", "unsignedTransactionHasWitnessFormat",
                "invalidValue/global/0",
            ])
    }

    @Test("BIP371 invalid taproot fields fail with the specific error")
    func bip371Invalid() throws {
        try expectErrors(
            try #require(bip371["invalid"] as? [[String: Any]]),
            [
                "invalidValue/input/23", "invalidValue/input/19", "invalidValue/input/19", "invalidKey/input/22",
                "invalidValue/output/5", "invalidKey/output/7", "invalidKey/input/20", "invalidValue/input/20",
                "invalidValue/input/20", "invalidKey/input/21", "invalidKey/input/21",
            ])
    }

    @Test("valid PSBTs parse and serialize back byte for byte (hex and base64)")
    func validRoundTrip() throws {
        let valid =
            try #require(bip174["valid"] as? [[String: Any]]) + (try #require(bip371["valid"] as? [[String: Any]]))
        #expect(valid.count == 16)
        for v in valid {
            let psbt = try parse(v)
            #expect(psbt.serialized.hex == v["hex"] as? String, "\(v["description"] ?? "")")
            #expect(psbt.base64 == v["base64"] as? String)
            #expect(try PSBT(base64: try #require(v["base64"] as? String)) == psbt)
        }
    }

    @Test("taproot fields decode to what BIP371's valid vectors carry")
    func taprootFields() throws {
        let valid = try #require(bip371["valid"] as? [[String: Any]])
        let keyOnlySigned = try parse(valid[1])
        #expect(keyOnlySigned.inputs[0].tapKeySig?.count == 64)
        #expect(keyOnlySigned.inputs[0].tapInternalKey?.count == 32)
        let scriptPath = try parse(valid[5])
        #expect(!scriptPath.inputs[0].tapLeafScripts.isEmpty && !scriptPath.inputs[0].tapScriptSigs.isEmpty)
        #expect(scriptPath.inputs[0].tapMerkleRoot?.count == 32)
        let outputTree = try parse(valid[4])
        #expect(outputTree.outputs[0].tapTree?.isEmpty == false)
    }

    @Test("combiner: unknown keys from both PSBTs, in key order")
    func combinerUnknownKeys() throws {
        let c = try #require(bip174["combiner_unknown_keys"] as? [String: Any])
        let inputs = try #require(c["input_psbts"] as? [[String: Any]])
        var combined = try parse(inputs[0])
        try combined.combine(with: try parse(inputs[1]))
        #expect(combined.serialized.hex == (c["expected_psbt"] as? [String: Any])?["hex"] as? String)
    }
}

@Suite("PSBT roles: the BIP174 workflow byte for byte, signer checks")
struct PSBTWorkflowTests {
    let workflow: [String: Any]
    let steps: [String: [String: Any]]

    init() throws {
        let bip174 = try #require(try Vectors.json("psbt-vectors.json")["bip174"] as? [String: Any])
        workflow = try #require(bip174["workflow"] as? [String: Any])
        let list = try #require(workflow["steps"] as? [[String: Any]])
        steps = Dictionary(uniqueKeysWithValues: list.map { ($0["id"] as! String, $0) })
    }

    func expected(_ id: String) throws -> String {
        try #require((steps[id]?["expected_psbt"] as? [String: Any])?["hex"] as? String)
    }

    func btc(_ text: String) throws -> UInt64 {
        let parts = text.split(separator: ".")
        let whole = try #require(UInt64(parts[0]))
        let fraction = parts.count > 1 ? String(parts[1]).padding(toLength: 8, withPad: "0", startingAt: 0) : "0"
        return whole * 100_000_000 + (try #require(UInt64(fraction)))
    }

    @Test("creator, updater, signers, combiner, finalizer and extractor reproduce every step")
    func workflowSteps() throws {
        // Creator.
        let given = try #require(steps["creator"]?["given"] as? [String: Any])
        let inputs = try #require(given["inputs"] as? [[String: Any]]).map {
            TxIn(
                previousOutput: try OutPoint(
                    displayTxid: try #require($0["txid"] as? String), vout: UInt32(try #require($0["index"] as? Int))),
                sequence: 0xFFFF_FFFF)
        }
        let outputs = try #require(given["outputs"] as? [[String: Any]]).map {
            TxOut(
                value: try btc(try #require($0["amount_btc"] as? String)),
                scriptPubKey: try Script(hex: try #require($0["scriptPubKey"] as? String)))
        }
        var psbt = PSBT(unsignedTx: BitcoinTransaction(version: 2, inputs: inputs, outputs: outputs))
        #expect(psbt.serialized.hex == (try expected("creator")))

        // Updater: the fingerprint is the master key's, from the vector's tprv.
        let fingerprint = try bip32Fingerprint(extendedPrivateKey: try #require(workflow["master_xprv"] as? String))
        let u = try #require(steps["updater"]?["given"] as? [String: Any])
        var origins: [[UInt8]: KeyOrigin] = [:]
        for entry in try #require(u["public_keys"] as? [[String: String]]) {
            origins[try Hex.decode(try #require(entry["pubkey"]))] = try KeyOrigin(
                fingerprint: fingerprint, pathString: try #require(entry["path"]))
        }
        psbt.update(
            previousTransactions: try #require(u["previous_transactions"] as? [String]).map {
                try BitcoinTransaction(hex: $0)
            },
            redeemScripts: try #require(u["redeem_scripts"] as? [String]).map { try Script(hex: $0) },
            witnessScripts: try #require(u["witness_scripts"] as? [String]).map { try Script(hex: $0) },
            keyOrigins: origins)
        #expect(psbt.serialized.hex == (try expected("updater")))
        for i in psbt.inputs.indices { psbt.inputs[i].sighashType = 1 }
        #expect(psbt.serialized.hex == (try expected("updater_sighash")))

        // Two signers from the same PSBT (RFC 6979 nonces, so byte-exact).
        func signer(_ id: String) throws -> PSBT {
            var validated = try psbt.validated()
            for key in try #require(steps[id]?["given"] as? [String: Any])["private_keys_wif"] as! [[String: String]] {
                #expect(try validated.sign(with: Secp256k1.PrivateKey(wif: try #require(key["wif"]))) == 1)
            }
            #expect(validated.psbt.serialized.hex == (try expected(id)), "\(id)")
            return validated.psbt
        }
        var combined = try signer("signer_1")
        try combined.combine(with: try signer("signer_2"))
        #expect(combined.serialized.hex == (try expected("combiner")))

        var final = try combined.validated()
        try final.finalize()
        #expect(final.psbt.serialized.hex == (try expected("finalizer")))
        #expect(try final.extract().hex == steps["extractor"]?["expected_tx_hex"] as? String)
    }

    @Test("signer checks: the four BIP174 PSBTs a signer must refuse")
    func signerChecks() throws {
        let bip174 = try #require(try Vectors.json("psbt-vectors.json")["bip174"] as? [String: Any])
        let cases = try #require(bip174["fails_signer_checks"] as? [[String: Any]])
        #expect(cases.count == 4)
        for c in cases {
            let psbt = try PSBT(bytes: try Hex.decode(try #require(c["hex"] as? String)))
            #expect(throws: PSBTError.self, "\(c["description"] ?? "")") { try psbt.validated() }
        }
    }
}

@Suite("PSBT and transaction parsing never crash on damaged input")
struct PSBTRobustnessTests {
    @Test("every truncation and many byte flips of the valid vectors give an error or a PSBT, never a crash")
    func damagedInput() throws {
        let all = try Vectors.json("psbt-vectors.json")
        let valid =
            (try #require((all["bip174"] as? [String: Any])?["valid"] as? [[String: Any]]))
            + (try #require((all["bip371"] as? [String: Any])?["valid"] as? [[String: Any]]))
        var rng = SystemRandomNumberGenerator()
        var refused = 0
        for v in valid {
            let bytes = try Hex.decode(try #require(v["hex"] as? String))
            for cut in 0..<bytes.count {
                do {
                    _ = try PSBT(bytes: Array(bytes.prefix(cut)))
                    Issue.record("a PSBT truncated to \(cut) of \(bytes.count) bytes was accepted")
                } catch {
                    refused += 1
                }
            }
            for _ in 0..<200 {
                var damaged = bytes
                damaged[Int.random(in: 0..<damaged.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                if let psbt = try? PSBT(bytes: damaged) {
                    // Whatever parses must serialize to a PSBT that parses to the same thing.
                    #expect(try PSBT(bytes: psbt.serialized) == psbt)
                    _ = try? psbt.validated()
                }
            }
        }
        #expect(refused > 1_000)
    }
}
