import Bitcoin
import NodeCrypto
import TestSupport
import Testing

@Suite("Bech32/Bech32m and segwit addresses (BIP173, BIP350 vectors)")
struct AddressTests {
    let vectors: [String: Any]

    init() throws { vectors = try Vectors.json("bech32-vectors.json") }

    func strings(_ key: String) throws -> [String] {
        let list = try #require(vectors[key] as? [Any])
        return try list.map { item in
            if let s = item as? String { return s }
            return try #require((item as? [String: Any])?["string"] as? String)
        }
    }

    @Test("every valid string decodes with its own checksum and re-encodes; every invalid one is refused")
    func checksums() throws {
        for (key, variant) in [("valid_bech32", Bech32.Variant.bech32), ("valid_bech32m", .bech32m)] {
            let valid = try strings(key)
            #expect(valid.count == 7)
            for s in valid {
                let decoded = try Bech32.decode(s)
                #expect(decoded.variant == variant, "\(s)")
                #expect(Bech32.encode(hrp: decoded.hrp, data: decoded.data, variant: variant) == s.lowercased())
            }
        }
        for key in ["invalid_bech32", "invalid_bech32m"] {
            let invalid = try strings(key)
            #expect(invalid.count >= 12)
            for s in invalid {
                // A string valid under the other variant is still not valid as this one.
                if let decoded = try? Bech32.decode(s) {
                    #expect(decoded.variant != (key == "invalid_bech32" ? .bech32 : .bech32m), "\(s) accepted")
                }
            }
        }
    }

    @Test("valid addresses give their scriptPubKey and re-encode; invalid ones fail")
    func addresses() throws {
        let valid = try #require(vectors["valid_addresses"] as? [[String: String]])
        #expect(valid.count == 8)
        for v in valid {
            let text = try #require(v["address"])
            let address = try SegwitAddress(text)
            #expect(address.scriptPubKey.hex == v["scriptPubKey"], "\(text)")
            #expect(address.description == text.lowercased())
            // And back from the script, for the networks whose prefix it uses.
            if let network = Network.allCases.first(where: { $0.hrp == address.hrp }) {
                #expect(SegwitAddress(scriptPubKey: address.scriptPubKey, network: network) == address)
            }
        }
        let invalid = try #require(vectors["invalid_addresses"] as? [[String: String]])
        #expect(invalid.count == 23)
        for v in invalid {
            let text = try #require(v["address"])
            #expect(throws: BitcoinError.self, "\(text): \(v["reason"] ?? "")") { try SegwitAddress(text) }
        }
        // BIP173's version 1–16 addresses with a Bech32 checksum are invalid under BIP350.
        for v in try #require(vectors["bip173_valid_addresses_superseded"] as? [[String: String]]) {
            #expect(throws: BitcoinError.self) { try SegwitAddress(try #require(v["address"])) }
        }
    }

    @Test("network prefixes: regtest bcrt, signet and Mutinynet tb; a wrong network is refused")
    func networks() throws {
        let program = [UInt8](repeating: 7, count: 32)
        let regtest = try SegwitAddress(network: .regtest, version: 1, program: program)
        #expect(regtest.description.hasPrefix("bcrt1p"))
        #expect(try SegwitAddress(regtest.description, network: .regtest) == regtest)
        #expect(throws: BitcoinError.self) { try SegwitAddress(regtest.description, network: .mutinynet) }
        #expect(
            try SegwitAddress(network: .mutinynet, version: 0, program: Array(program.prefix(20))).description
                .hasPrefix("tb1q"))
    }
}
