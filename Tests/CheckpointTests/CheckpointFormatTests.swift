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
        #expect(Descriptor.isValid(coin.descriptor))
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
