import Bitcoin
import Checkpoint
import NodeCrypto
import Testing
import Wire

@testable import Consensus

@Suite("Checkpoint messages: encoding, and damaged input")
struct CheckpointMessageTests {
    let rules = CheckpointRulesTests()

    @Test("request, signature and refusal round-trip; every truncation and unknown tag is an error")
    func roundTrip() throws {
        let request = try rules.request()
        let signed = try #require(
            CheckpointRules.cosign(
                request, from: rules.leader, view: rules.view(), policy: rules.policy, key: rules.bitcoinKeys[1]
            ).psbt)
        let messages: [CheckpointMessage] = [
            .request(request), .signature(signed),
            .refusal(txid: request.psbt.unsignedTx.displayTxid, reason: "too early"),
        ]
        for message in messages {
            let bytes = message.encoded()
            #expect(try CheckpointMessage.decode(bytes) == message)
            #expect(throws: WireError.self) { try CheckpointMessage.decode(bytes + [0]) }
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 200)) {
                #expect(throws: WireError.self) { try CheckpointMessage.decode(Array(bytes.prefix(cut))) }
            }
        }
        #expect(throws: WireError.self) { try CheckpointMessage.decode([9]) }
        // A request whose PSBT is not a PSBT is a decode error, not a crash.
        var w = WireWriter()
        w.u8(1)
        w.bytes32([1, 2, 3])
        w.bytes32(request.qc.encoded())
        #expect(throws: WireError.self) { try CheckpointMessage.decode(w.bytes) }
    }
}
