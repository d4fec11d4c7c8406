import Bitcoin
import Checkpoint
import Foundation
import NodeCrypto
import Testing

/// Our descriptors, addresses and PSBTs checked by an independent implementation: BDK
/// (bdkpython, pinned in tools/regtest/requirements.txt).
@Suite("Interop with BDK")
struct BDKInteropTests {
    func bdk(_ request: [String: Any]) throws -> [String: Any] {
        let python = RegtestChain.repository.appendingPathComponent(".venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw TestnetError("no .venv: scripts/test.sh creates it")
        }
        let process = Process()
        process.executableURL = python
        process.arguments = [RegtestChain.repository.appendingPathComponent("tools/interop/bdk_check.py").path]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(try JSONSerialization.data(withJSONObject: request))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test(
        "BDK derives our addresses for wpkh, tr(KEY) and tr(NUMS,multi_a) and accepts our checksums; it parses our PSBTs"
    )
    func descriptorsAndPSBTs() throws {
        let keys = (0..<4).map { _ in Secp256k1.PrivateKey() }
        let xonly = keys.map(\.xOnlyPublicKey.rawRepresentation)
        // Ours: descriptors and the addresses our own code derives.
        let leaf = TapLeaf(script: try Script.multiA(threshold: 3, keys: xonly))
        let coin = try TaprootOutput(
            internalKey: try Secp256k1.XOnlyPublicKey(rawRepresentation: TaprootOutput.unspendableKey),
            tree: .leaf(leaf))
        let cases: [(String, String)] = [
            (
                Descriptor.wpkh(keys[0].publicKey.compressed),
                try SegwitAddress(network: .regtest, version: 0, program: SHA256.hash160(keys[0].publicKey.compressed))
                    .description
            ),
            (
                Descriptor.tr(xonly[1]),
                try TaprootOutput(internalKey: keys[1].xOnlyPublicKey).address(.regtest).description
            ),
            (Descriptor.multiA(threshold: 3, keys: xonly), coin.address(.regtest).description),
        ]
        // The checkpoint coin with its recovery leaf: BDK's miniscript compiles
        // and_v(v:older(T),multi_a(…)) to our very leaf, so it derives our address.
        let recovering = try CheckpointCoin(keys: xonly, recoveryBlocks: 2_016)
        let coinCases = [(try #require(recovering.descriptor), recovering.address(.regtest))]
        // PSBTs: an unsigned spend of the coin with taproot fields, and a wallet payment.
        let funding = BitcoinTransaction(
            inputs: [TxIn(previousOutput: OutPoint(txid: [UInt8](repeating: 3, count: 32), vout: 1))],
            outputs: [TxOut(value: 50_000, scriptPubKey: coin.scriptPubKey)])
        var psbt = PSBT(
            unsignedTx: BitcoinTransaction(
                inputs: [TxIn(previousOutput: OutPoint(txid: funding.txid, vout: 0))],
                outputs: [
                    TxOut(value: 49_000, scriptPubKey: coin.scriptPubKey),
                    TxOut(value: 0, scriptPubKey: .opReturn(Array("SNCP".utf8) + [UInt8](repeating: 7, count: 49))),
                ]))
        psbt.inputs[0].witnessUtxo = funding.outputs[0]
        psbt.inputs[0].tapInternalKey = TaprootOutput.unspendableKey
        psbt.inputs[0].tapMerkleRoot = coin.merkleRoot
        psbt.inputs[0].tapLeafScripts[try #require(coin.controlBlock(for: leaf))] = leaf.script.bytes + [leaf.version]
        var signed = try psbt.validated()
        for key in keys.prefix(3) { try signed.sign(with: key) }
        let result = try bdk([
            "network": "regtest", "descriptors": (cases + coinCases).map(\.0),
            "psbts": [psbt.base64, signed.psbt.base64],
        ])

        let descriptors = try #require(result["descriptors"] as? [[String: Any]])
        #expect(descriptors.count == cases.count + coinCases.count)
        for ((descriptor, address), answer) in zip(cases + coinCases, descriptors) {
            #expect(answer["error"] == nil, "\(descriptor): \(answer["error"] ?? "")")
            #expect(answer["canonical"] as? String == descriptor, "BDK's checksum and form equal ours")
            #expect(answer["address"] as? String == address, "\(descriptor)")
        }
        let psbts = try #require(result["psbts"] as? [[String: Any]])
        for (answer, (ours, signatures)) in zip(psbts, [(psbt, 0), (signed.psbt, 3)]) {
            #expect(answer["error"] == nil, "\(answer["error"] ?? "")")
            #expect(answer["txid"] as? String == ours.unsignedTx.displayTxid)
            #expect(answer["inputs"] as? Int == 1 && answer["outputs"] as? Int == 2)
            // BDK reads the taproot fields we wrote: the leaf, the signatures, the NUMS key.
            #expect(answer["tap_scripts"] as? Int == 1 && answer["tap_script_sigs"] as? Int == signatures)
            #expect(answer["tap_internal_key"] as? String == TaprootOutput.unspendableKey.hex)
            // BDK writes back the same PSBT it read.
            #expect(answer["serialized"] as? String == ours.base64)
        }
    }
}
