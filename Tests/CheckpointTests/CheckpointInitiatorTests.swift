import Bitcoin
import Checkpoint
import NodeCrypto
import Testing

@testable import Consensus

@Suite("Checkpoint initiator: due, collect, finalize, hand off")
struct CheckpointInitiatorTests {
    let rules = CheckpointRulesTests()
    var settings: CheckpointInitiator.Settings {
        .init(intervalBlocks: 10, timeout: 10, policy: CheckpointPolicy(minFeeRate: 1, maxFeeRate: 50))
    }

    func cosigned(_ request: CheckpointRequest, by i: Int) -> PSBT? {
        CheckpointRules.cosign(request, view: rules.view(), policy: rules.policy, key: rules.bitcoinKeys[i]).psbt
    }

    @Test("honest flow: due after the interval; k signatures finalize once; duplicates, late and bad ones are ignored")
    func honest() throws {
        var a = CheckpointInitiator(settings: settings)
        a.committed(height: 5, qc: rules.qc(), endsEpoch: false, now: 0)
        #expect(!a.isDue, "5 blocks: not yet")
        #expect(a.leading(now: 1, view: rules.view(), key: rules.bitcoinKeys[0], feeRate: 2).isEmpty)
        a.committed(height: 10, qc: rules.qc(), endsEpoch: false, now: 2)
        #expect(a.isDue)
        let actions = a.leading(now: 3, view: rules.view(), key: rules.bitcoinKeys[0], feeRate: 2)
        guard case .requestSignatures(let request) = try #require(actions.first) else {
            Issue.record("no request")
            return
        }
        #expect(request.psbt.inputs[0].tapScriptSigs.count == 1, "the initiator signs first")
        // Another leader a moment later does not start a second one.
        #expect(a.leading(now: 4, view: rules.view(), key: rules.bitcoinKeys[0], feeRate: 2).isEmpty)
        let one = try #require(cosigned(request, by: 1))
        #expect(a.signatureReceived(one).isEmpty, "2 of 3")
        #expect(a.signatureReceived(one).isEmpty, "a duplicate counts once")
        // A signature by a key outside the script, or over something else, is ignored.
        var bogus = one
        let (k, _) = try #require(one.inputs[0].tapScriptSigs.first)
        bogus.inputs[0].tapScriptSigs = [k: [UInt8](repeating: 1, count: 64)]
        #expect(a.signatureReceived(bogus).isEmpty)
        let done = a.signatureReceived(try #require(cosigned(request, by: 2)))
        guard case .broadcast(let tx, let payload) = try #require(done.first) else {
            Issue.record("not finalized")
            return
        }
        #expect(payload.commitStateID == rules.stateID.bytes && payload.round == 10)
        #expect(tx.inputs[0].witness.count == 4 + 2)
        #expect(a.signatureReceived(try #require(cosigned(request, by: 3))).isEmpty, "late: already broadcast")
        // Once Bitcoin shows it, nothing is due until the next interval.
        a.seenOnBitcoin(height: 10, epoch: 3, bitcoinHeight: 106)
        #expect(!a.isDue)
    }

    @Test("timeout handoff: a later leader takes over an attempt that was not seen on Bitcoin in time")
    func handoff() throws {
        var first = CheckpointInitiator(settings: settings)
        var later = CheckpointInitiator(settings: settings)
        first.committed(height: 10, qc: rules.qc(), endsEpoch: false, now: 0)
        later.committed(height: 10, qc: rules.qc(), endsEpoch: false, now: 0)
        #expect(!first.leading(now: 1, view: rules.view(), key: rules.bitcoinKeys[0], feeRate: 2).isEmpty)
        later.requestSeen(now: 1)  // it co-signed the first initiator's request
        // The first initiator crashes; nothing appears on Bitcoin.
        #expect(
            later.leading(now: 5, view: rules.view(), key: rules.bitcoinKeys[1], feeRate: 2).isEmpty,
            "within the timeout")
        let takeover = later.leading(now: 11.5, view: rules.view(), key: rules.bitcoinKeys[1], feeRate: 2)
        guard case .requestSignatures(let request) = try #require(takeover.first) else {
            Issue.record("no takeover")
            return
        }
        #expect(request.psbt.inputs[0].tapScriptSigs.count == 1)
        _ = later.signatureReceived(try #require(cosigned(request, by: 2)))
        let done = later.signatureReceived(try #require(cosigned(request, by: 3)))
        #expect(done.count == 1, "the later leader completes the checkpoint")
    }

    @Test("cadence: an epoch's last block forces a checkpoint; never two in one Bitcoin block")
    func cadence() throws {
        var a = CheckpointInitiator(settings: settings)
        a.committed(height: 3, qc: rules.qc(), endsEpoch: true, now: 0)
        #expect(a.isDue, "the epoch ends at 3: forced, though the interval is 10")
        #expect(!a.leading(now: 1, view: rules.view(), key: rules.bitcoinKeys[0], feeRate: 2).isEmpty)
        a.seenOnBitcoin(height: 3, epoch: 3, bitcoinHeight: 105)
        a.committed(height: 13, qc: rules.qc(), endsEpoch: false, now: 20)
        #expect(a.isDue)
        #expect(
            a.leading(now: 21, view: rules.view(lastCheckpoint: 105, tip: 105), key: rules.bitcoinKeys[0], feeRate: 2)
                .isEmpty,
            "the same Bitcoin block as the last checkpoint")
        #expect(
            !a.leading(now: 22, view: rules.view(lastCheckpoint: 105, tip: 106), key: rules.bitcoinKeys[0], feeRate: 2)
                .isEmpty)
    }
}
