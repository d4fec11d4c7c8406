import Bitcoin
import NodeCrypto
import Testing

@Suite("The checkpoint coin: tr(NUMS, multi_a(k, …)) through a PSBT, and descriptors")
struct TaprootMultisigTests {
    let keys = (0..<3).map { _ in Secp256k1.PrivateKey() }

    func coin(threshold: Int = 2) throws -> (TaprootOutput, TapLeaf) {
        let leaf = TapLeaf(
            script: try Script.multiA(threshold: threshold, keys: keys.map(\.xOnlyPublicKey.rawRepresentation)))
        let nums = try Secp256k1.XOnlyPublicKey(rawRepresentation: TaprootOutput.unspendableKey)
        return (try TaprootOutput(internalKey: nums, tree: .leaf(leaf)), leaf)
    }

    /// A PSBT spending the coin to a copy of itself plus an OP_RETURN.
    func spend(_ output: TaprootOutput, _ leaf: TapLeaf) throws -> PSBT {
        let funding = BitcoinTransaction(
            inputs: [TxIn(previousOutput: OutPoint(txid: [UInt8](repeating: 9, count: 32), vout: 0))],
            outputs: [TxOut(value: 100_000, scriptPubKey: output.scriptPubKey)])
        let tx = BitcoinTransaction(
            inputs: [TxIn(previousOutput: OutPoint(txid: funding.txid, vout: 0))],
            outputs: [
                TxOut(value: 99_000, scriptPubKey: output.scriptPubKey),
                TxOut(value: 0, scriptPubKey: .opReturn(Array("SNCP".utf8) + [UInt8](repeating: 1, count: 49))),
            ])
        var psbt = PSBT(unsignedTx: tx)
        psbt.inputs[0].witnessUtxo = funding.outputs[0]
        psbt.inputs[0].tapInternalKey = TaprootOutput.unspendableKey
        psbt.inputs[0].tapMerkleRoot = output.merkleRoot
        psbt.inputs[0].tapLeafScripts[try #require(output.controlBlock(for: leaf))] = leaf.script.bytes + [leaf.version]
        return psbt
    }

    @Test("two of three sign the leaf; the witness holds their signatures in script order, verifiable")
    func twoOfThree() throws {
        let (output, leaf) = try coin()
        #expect(leaf.script.multiA?.threshold == 2 && leaf.script.multiA?.keys.count == 3)
        let psbt = try spend(output, leaf)
        // Each validator signs its own copy; the initiator combines (the checkpoint flow).
        var first = try psbt.validated()
        #expect(try first.sign(with: keys[0]) == 1)
        var third = try psbt.validated()
        #expect(try third.sign(with: keys[2]) == 1)
        var stranger = try psbt.validated()
        #expect(try stranger.sign(with: Secp256k1.PrivateKey()) == 0, "a key not in the leaf signs nothing")
        var combined = first.psbt
        try combined.combine(with: third.psbt)
        // Through base64 and back, as it travels.
        combined = try PSBT(base64: combined.base64)
        var final = try combined.validated()
        try final.finalize()
        let tx = try final.extract()
        let witness = tx.inputs[0].witness
        #expect(witness.count == 5)
        #expect(witness[1].isEmpty, "the middle key did not sign")
        #expect(witness[3] == leaf.script.bytes)
        let control = witness[4]
        #expect(
            TaprootOutput.verify(
                controlBlock: control, leaf: leaf.script, outputKey: output.outputKey.rawRepresentation))
        // Each signature verifies (BIP340) for its key over the script-path sighash.
        let digest = try tx.taprootSighash(
            index: 0, spent: final.spent, type: .default,
            scriptSpend: BitcoinTransaction.TapScriptSpend(leafHash: leaf.hash))
        for (sig, key) in [(witness[0], keys[2]), (witness[2], keys[0])] {
            #expect(
                key.xOnlyPublicKey.isValidSchnorrSignature(
                    try Secp256k1.SchnorrSignature(rawRepresentation: sig), for: digest))
        }
        #expect(final.fee == 1_000)
        // A parsed copy of the network transaction is the same.
        #expect(try BitcoinTransaction(bytes: tx.serialized()) == tx)
    }

    @Test("one signature of a 2-of-3 cannot be finalized; a tampered control block cannot be signed")
    func refusals() throws {
        let (output, leaf) = try coin()
        var one = try spend(output, leaf).validated()
        try one.sign(with: keys[1])
        #expect(throws: PSBTError.self) { try one.finalize() }
        var tampered = try spend(output, leaf)
        let (control, value) = try #require(tampered.inputs[0].tapLeafScripts.first)
        var bad = control
        bad[1] ^= 1
        tampered.inputs[0].tapLeafScripts = [bad: value]
        var validated = try tampered.validated()
        #expect(throws: PSBTError.self) { try validated.sign(with: keys[0]) }
    }

    @Test("descriptor checksums (BIP380) and the descriptors a node publishes")
    func descriptors() throws {
        #expect(try Descriptor.checksum("raw(deadbeef)") == "89f8spxm")
        #expect(Descriptor.isValid("raw(deadbeef)#89f8spxm"))
        #expect(!Descriptor.isValid("raw(deadbeef)#89f8spxn"))
        #expect(!Descriptor.isValid("raw(deedbeef)#89f8spxm"))
        let multi = Descriptor.multiA(threshold: 2, keys: keys.map(\.xOnlyPublicKey.rawRepresentation))
        #expect(multi.hasPrefix("tr(50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0,multi_a(2,"))
        #expect(Descriptor.isValid(multi))
        #expect(Descriptor.isValid(Descriptor.tr(keys[0].xOnlyPublicKey.rawRepresentation)))
        #expect(Descriptor.isValid(Descriptor.wpkh(keys[0].publicKey.compressed)))
    }

    @Test("multi_a scripts: canonical form only; thresholds above 16 use a number push")
    func multiAScripts() throws {
        let many = (0..<20).map { _ in Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation }
        let script = try Script.multiA(threshold: 17, keys: many)
        #expect(script.multiA?.threshold == 17 && script.multiA?.keys == many)
        #expect(throws: BitcoinError.self) { try Script.multiA(threshold: 0, keys: many) }
        #expect(throws: BitcoinError.self) { try Script.multiA(threshold: 21, keys: many) }
        var broken = script.bytes
        broken[33] = Script.Op.checkSigAdd  // first key must use OP_CHECKSIG
        #expect(Script(bytes: broken).multiA == nil)
    }
}
