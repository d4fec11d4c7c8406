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
