import Bitcoin
import Checkpoint
import NodeCrypto
import Testing

@Suite("Checkpoint format: the OP_RETURN payload, the coin, the transaction")
struct CheckpointFormatTests {
    func keys(_ n: Int) -> [Secp256k1.PrivateKey] { (0..<n).map { _ in Secp256k1.PrivateKey() } }

    @Test("the 53-byte payload round-trips; anything else is refused")
    func payload() throws {
        let id = (0..<32).map { UInt8($0) }
        let p = try CheckpointPayload(epoch: 0x0102_0304_0506_0708, round: 42, commitStateID: id)
        #expect(p.encoded.count == 53)
        #expect(p.encoded.hex == "534e435001" + "0102030405060708" + "000000000000002a" + id.hex)
        #expect(p.script.bytes.count == 55 && p.script.bytes[0] == 0x6A && p.script.bytes[1] == 53)
        #expect(try CheckpointPayload(script: p.script) == p)
        var wrongVersion = p.encoded
        wrongVersion[4] = 2
        #expect(throws: BitcoinError.self) { try CheckpointPayload(wrongVersion) }
        #expect(throws: BitcoinError.self) { try CheckpointPayload(Array(p.encoded.dropLast())) }
        #expect(throws: BitcoinError.self) {
            try CheckpointPayload(script: .opReturn(Array("XNCP".utf8) + p.encoded.dropFirst(4)))
        }
    }

    @Test("the coin: sorted keys, k = ⌊2n/3⌋+1, NUMS internal key; its descriptor is valid")
    func coin() throws {
        let xonly = keys(7).map(\.xOnlyPublicKey.rawRepresentation)
        let coin = try CheckpointCoin(keys: xonly)
        #expect(coin.threshold == 5)
        #expect(coin.keys == xonly.sorted { $0.lexicographicallyPrecedes($1) })
        #expect(try CheckpointCoin(keys: xonly.reversed()) == coin, "the order given does not matter")
        #expect(coin.output.internalKey.rawRepresentation == TaprootOutput.unspendableKey)
        #expect(Descriptor.isValid(try #require(coin.descriptor)))
        #expect(coin.address(.regtest).hasPrefix("bcrt1p"))
        #expect(throws: BitcoinError.self) { try CheckpointCoin(keys: xonly + [xonly[0]]) }
        #expect([1, 2, 3, 4, 7, 20, 50].map(CheckpointCoin.threshold(validators:)) == [1, 2, 3, 3, 5, 14, 34])
    }

    @Test("a checkpoint signed by k of n validators finalizes; its size is the multi_a optimum")
    func signAndSize() throws {
        let signers = keys(4)
        let coin = try CheckpointCoin(keys: signers.map(\.xOnlyPublicKey.rawRepresentation))
        let payload = try CheckpointPayload(epoch: 1, round: 9, commitStateID: [UInt8](repeating: 7, count: 32))
        let psbt = try CheckpointTransaction.psbt(
            spending: OutPoint(txid: [UInt8](repeating: 2, count: 32), vout: 0), value: 100_000, of: coin, to: coin,
            payload: payload, fee: 500)
        var validated = try psbt.validated()
        for key in signers.prefix(3) { try validated.sign(with: key) }
        try validated.finalize()
        let tx = try validated.extract()
        #expect(tx.outputs[0].value == 99_500 && tx.outputs[0].scriptPubKey == coin.scriptPubKey)
        #expect(try CheckpointPayload(script: tx.outputs[1].scriptPubKey) == payload)
        #expect(tx.virtualSize == CheckpointTransaction.virtualSize(current: coin, next: coin))
        #expect(throws: BitcoinError.self) {
            try CheckpointTransaction.psbt(
                spending: OutPoint(txid: [UInt8](repeating: 2, count: 32), vout: 0), value: 600, of: coin, to: coin,
                payload: payload, fee: 500)
        }
    }

    @Test(
        "checkpoint vsize for n = 4, 7, 20 matches the research table (±2 vB)",
        arguments: [(4, 251), (7, 310), (20, 568)])
    func sizes(n: Int, expected: Int) throws {
        let coin = try CheckpointCoin(keys: keys(n).map(\.xOnlyPublicKey.rawRepresentation))
        let size = CheckpointTransaction.virtualSize(current: coin, next: coin)
        #expect(abs(size - expected) <= 2, "n=\(n): \(size) vB")
    }
}

@Suite("Checkpoint coin: weighted leaf and recovery leaf")
struct CheckpointCoinScriptTests {
    func keys(_ n: Int) -> [Secp256k1.PrivateKey] { (0..<n).map { _ in Secp256k1.PrivateKey() } }

    @Test("threshold scripts round-trip (multi_a, weighted, with CSV); anything else does not parse")
    func thresholdScripts() throws {
        let xonly = keys(5).map(\.xOnlyPublicKey.rawRepresentation)
        let counted = try ThresholdScript(keys: xonly, threshold: 4)
        #expect(counted.script == (try Script.multiA(threshold: 4, keys: xonly)), "exactly multi_a")
        let weighted = try ThresholdScript(keys: xonly, weights: [1, 2, 3, 300, 70_000], threshold: 46_872)
        let locked = try ThresholdScript(keys: xonly, weights: nil, threshold: 2, olderBlocks: 2_016)
        for script in [counted, weighted, locked] {
            #expect(ThresholdScript(script: script.script) == script)
        }
        // Non-canonical or broken forms.
        var noEndIf = weighted.script.bytes
        noEndIf.removeLast(2)
        #expect(ThresholdScript(script: Script(bytes: noEndIf)) == nil)
        #expect(ThresholdScript(script: Script(bytes: [0x20] + xonly[0])) == nil, "a truncated leaf")
        #expect(ThresholdScript(script: Script(bytes: [0x4C])) == nil, "a push past the end")
        #expect(Script(bytes: [0x4D, 0xFF]).operations == nil)
        #expect(throws: BitcoinError.self) { try ThresholdScript(keys: xonly, weights: [1, 1], threshold: 1) }
        #expect(throws: BitcoinError.self) {
            try ThresholdScript(keys: xonly, weights: [1 << 31, 1, 1, 1, 1], threshold: 1)
        }
        #expect(throws: BitcoinError.self) { try ThresholdScript(keys: xonly, threshold: 1, olderBlocks: 70_000) }
    }

    @Test(
        "unequal powers lock the coin with a weighted leaf: three light keys cannot move what one heavy key outweighs")
    func weighted() throws {
        let signers = keys(4)
        let xonly = signers.map(\.xOnlyPublicKey.rawRepresentation)
        let coin = try CheckpointCoin(validators: zip(xonly, [10, 1, 1, 1] as [UInt64]).map { ($0, $1) })
        #expect(coin.weights != nil && coin.threshold == 2 * 13 / 3 + 1)
        #expect(coin.descriptor == nil, "no descriptor expresses weights")
        let heavy = xonly[0]
        let light = Set(xonly.dropFirst())
        #expect(!coin.isSatisfied(by: light), "3 of 4 keys, 3 of 13 power")
        #expect(coin.isSatisfied(by: [heavy]), "10 of 13 power")
        #expect(coin.signaturesNeeded == 4, "the fee covers the worst case: the three light keys and the heavy one")
        // Equal powers stay multi_a, byte for byte the coin of `init(keys:)`.
        #expect(try CheckpointCoin(validators: xonly.map { ($0, 5) }) == (try CheckpointCoin(keys: xonly)))
        // Signed by the heavy key alone, the PSBT finalizes; by the three light ones, it does not.
        let payload = try CheckpointPayload(epoch: 1, round: 2, commitStateID: [UInt8](repeating: 1, count: 32))
        let psbt = try CheckpointTransaction.psbt(
            spending: OutPoint(txid: [UInt8](repeating: 3, count: 32), vout: 0), value: 100_000, of: coin, to: coin,
            payload: payload, fee: 1_000)
        var byLight = try psbt.validated()
        for key in signers.dropFirst() { try byLight.sign(with: key) }
        #expect(throws: PSBTError.self) { try byLight.finalize() }
        var byHeavy = try psbt.validated()
        let heavyKey = try #require(signers.first { $0.xOnlyPublicKey.rawRepresentation == heavy })
        try byHeavy.sign(with: heavyKey)
        try byHeavy.finalize()
        let tx = try byHeavy.extract()
        #expect(tx.inputs[0].witness.filter { $0.count == 64 }.count == 1)
        // The light client accepts it: the signatures' weight, not their number.
        let walk = CheckpointChain.verify(
            start: OutPoint(txid: [UInt8](repeating: 3, count: 32), vout: 0), startScript: coin.scriptPubKey,
            startValue: 100_000, spends: [tx], coinForEpoch: { _ in coin })
        #expect(walk.problem == nil && walk.entries.count == 1, "\(walk.problem ?? "")")
        // Huge powers are scaled below 2^31 in total, each at least 1.
        let huge = try CheckpointCoin(validators: zip(xonly, [UInt64.max / 2, 1 << 40, 3, 1]).map { ($0, $1) })
        #expect(huge.main.totalWeight <= ThresholdScript.maxTotalWeight && huge.weights!.allSatisfy { $0 >= 1 })
    }

    @Test(
        "the recovery leaf: a descriptor with a valid checksum, +8 vB on every checkpoint, a recovery spend ends the walk"
    )
    func recovery() throws {
        let signers = keys(4)
        let xonly = signers.map(\.xOnlyPublicKey.rawRepresentation)
        let plain = try CheckpointCoin(keys: xonly)
        let coin = try CheckpointCoin(keys: xonly, recoveryBlocks: 144)
        #expect(coin.recovery?.script.threshold == 2 && coin.recovery?.blocks == 144, "⌊4/3⌋+1 keys")
        #expect(coin.scriptPubKey != plain.scriptPubKey)
        let descriptor = try #require(coin.descriptor)
        #expect(Descriptor.isValid(descriptor))
        #expect(descriptor.contains("{multi_a(3,") && descriptor.contains(",and_v(v:older(144),multi_a(2,"))
        #expect(coin.controlBlock.count == 65 && plain.controlBlock.count == 33)
        #expect(
            CheckpointTransaction.virtualSize(current: coin, next: coin)
                == CheckpointTransaction.virtualSize(current: plain, next: plain) + 8)
        // A spend through the recovery leaf, signed by two keys, is reported as such.
        let spent = OutPoint(txid: [UInt8](repeating: 6, count: 32), vout: 0)
        let recoveryPSBT = try CheckpointTransaction.recoveryPSBT(
            spending: spent, value: 50_000, of: coin, to: Script.p2tr(outputKey: xonly[0]), fee: 500)
        var psbt = try recoveryPSBT.validated()
        #expect(psbt.psbt.unsignedTx.inputs[0].sequence == 144)
        for key in signers.prefix(2) { try psbt.sign(with: key) }
        try psbt.finalize()
        let tx = try psbt.extract()
        let walk = CheckpointChain.verify(
            start: spent, startScript: coin.scriptPubKey, startValue: 50_000, spends: [tx],
            coinForEpoch: { _ in coin })
        #expect(walk.problem == nil && walk.entries.count == 1)
        #expect(walk.entries.first?.payload == nil && walk.entries.first?.recoveryBlocks == 144)
    }
}
