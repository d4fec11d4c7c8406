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
        CheckpointRules.cosign(
            request, from: rules.leader, view: rules.view(), policy: rules.policy, key: rules.bitcoinKeys[i]
        ).psbt
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

    @Test("two epochs ending before the first end is on Bitcoin: the latest end goes first (a direct handover)")
    func epochEndsHandOverDirectly() throws {
        var a = CheckpointInitiator(settings: settings)
        let first = rules.qc(epoch: 1, round: 12)
        let second = rules.qc(epoch: 2, round: 5)
        a.committed(height: 10, qc: first, endsEpoch: true, now: 0)
        a.committed(height: 15, qc: second, endsEpoch: true, now: 0)
        #expect(a.nextTarget(stuck: nil) == second, "the coin goes from epoch 1's set straight to epoch 3's")
        a.epochEndPending(height: 10, qc: first)
        #expect(a.nextTarget(stuck: nil) == second, "an earlier end never replaces a later one")
        a.seenOnBitcoin(height: 15, epoch: 2, round: 5, bitcoinHeight: 100)
        #expect(a.nextTarget(stuck: nil) == nil)
        // After a restart the host finds the latest end from the chain.
        var restarted = CheckpointInitiator(settings: settings)
        restarted.epochEndPending(height: 15, qc: second)
        #expect(restarted.nextTarget(stuck: nil) == second)
    }

    @Test("a request that arrives before this node processed the commit still holds it back; targets agree")
    func requestBeforeCommit() throws {
        var a = CheckpointInitiator(settings: settings)
        var b = CheckpointInitiator(settings: settings)
        for height in [8, 10, 12] as [UInt64] {
            a.committed(height: height, qc: rules.qc(round: height), endsEpoch: false, now: 0)
        }
        let started = a.leading(now: 1, view: rules.view(), key: rules.bitcoinKeys[0], feeRate: 2)
        guard case .requestSignatures(let request) = try #require(started.first) else {
            Issue.record("a should start")
            return
        }
        #expect(request.qc.commitInfo.round == 10, "the first commit at or past the interval, not the latest")
        b.requestSeen(now: 1)  // a's request reaches b first…
        for height in [8, 10, 12] as [UInt64] {  // …then b processes the commits
            b.committed(height: height, qc: rules.qc(round: height), endsEpoch: false, now: 1)
        }
        #expect(b.leading(now: 1.2, view: rules.view(), key: rules.bitcoinKeys[1], feeRate: 2).isEmpty)
        #expect(b.nextTarget(stuck: nil) == request.qc, "b would anchor the same QC")
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

    @Test(
        "fee bump: a checkpoint stuck in the mempool for bump_after blocks is replaced by whoever leads, at a fee the validators accept only then"
    )
    func bump() throws {
        var a = CheckpointInitiator(settings: settings)
        a.committed(height: 10, qc: rules.qc(), endsEpoch: false, now: 0)
        guard
            case .requestSignatures(let first) = try #require(
                a.leading(now: 1, view: rules.view(tip: 105), key: rules.bitcoinKeys[0], feeRate: 5).first)
        else { return }
        _ = a.signatureReceived(try #require(cosigned(first, by: 1)))
        #expect(a.signatureReceived(try #require(cosigned(first, by: 2))).count == 1, "broadcast at Bitcoin height 105")
        let firstFee = try #require(a.currentFee)
        let vsize = UInt64(CheckpointTransaction.virtualSize(current: rules.coin, next: rules.coin))
        let rate = Double(firstFee) / Double(vsize)
        // Another validator (node b, which never saw the first request: it restarted)
        // leads later; the follower shows the spend in the mempool.
        var b = CheckpointInitiator(settings: settings)
        b.committed(height: 10, qc: rules.qc(), endsEpoch: false, now: 0)
        func stuck(_ blocks: Int) -> CheckpointInitiator.Stuck {
            .init(qc: first.qc, fee: firstFee, feeRate: rate, blocksWaiting: blocks)
        }
        #expect(b.nextTarget(stuck: stuck(2)) == first.qc)
        #expect(
            b.leading(now: 2, view: rules.view(tip: 107), key: rules.bitcoinKeys[1], feeRate: 5, stuck: stuck(2))
                .isEmpty,
            "two blocks in the mempool: wait")
        guard
            case .requestSignatures(let replacement) = try #require(
                b.leading(now: 3, view: rules.view(tip: 108), key: rules.bitcoinKeys[1], feeRate: 5, stuck: stuck(3))
                    .first)
        else { return }
        #expect(
            b.leading(now: 4, view: rules.view(tip: 108), key: rules.bitcoinKeys[1], feeRate: 5, stuck: stuck(3))
                .isEmpty,
            "asked once at that fee: not again within the timeout")
        let newFee = try #require(b.currentFee)
        #expect(newFee >= firstFee + vsize, "BIP125: the fee rises by at least 1 sat/vB × size")
        #expect(Double(newFee) / Double(vsize) >= rate * 1.5 - 0.01)
        #expect(replacement.psbt.unsignedTx.inputs[0].previousOutput == first.psbt.unsignedTx.inputs[0].previousOutput)
        // Validators whose own estimate is 3 sat/vB sign 1.5 × 5 only as a bump of a
        // checkpoint they too see stuck for (nearly) bump_after blocks.
        let stuckView = rules.view(tip: 108, pending: PendingSpend(feeRate: rate, blocksWaiting: 3))
        #expect(CheckpointRules.judge(replacement, from: rules.leader, view: stuckView, policy: rules.policy) == .sign)
        for fresh in [
            rules.view(tip: 108), rules.view(tip: 108, pending: PendingSpend(feeRate: rate, blocksWaiting: 1)),
        ] {
            // Not signed (stale: estimates may differ that much, so nobody is blamed).
            if case .stale(let why) = CheckpointRules.judge(
                replacement, from: rules.leader, view: fresh, policy: rules.policy)
            {
                #expect(why.contains("fee rate"))
            } else {
                Issue.record("a bump over the tolerance was accepted without a stuck checkpoint")
            }
        }
        _ = b.signatureReceived(
            try #require(
                CheckpointRules.cosign(
                    replacement, from: rules.leader, view: stuckView, policy: rules.policy, key: rules.bitcoinKeys[2]
                ).psbt))
        #expect(
            b.signatureReceived(
                try #require(
                    CheckpointRules.cosign(
                        replacement, from: rules.leader, view: stuckView, policy: rules.policy,
                        key: rules.bitcoinKeys[3]
                    ).psbt)
            ).count == 1)
        // Confirmed: nothing more to do.
        b.seenOnBitcoin(height: 10, epoch: 3, round: 10, bitcoinHeight: 109)
        #expect(b.leading(now: 40, view: rules.view(tip: 115), key: rules.bitcoinKeys[1], feeRate: 2).isEmpty)
    }

    @Test("top-ups are swept in; a co-signer counts only with a valid signature on every input")
    func sweepsTopUps() throws {
        let attack = MaliciousInitiatorTests()
        let view = attack.seeing([attack.topUpA: 20_000, attack.topUpB: 8_000], rules: rules)
        var a = CheckpointInitiator(settings: settings)
        a.committed(height: 10, qc: rules.qc(), endsEpoch: false, now: 0)
        guard
            case .requestSignatures(let request) = try #require(
                a.leading(now: 1, view: view, key: rules.bitcoinKeys[0], feeRate: 2).first)
        else { return }
        #expect(request.psbt.unsignedTx.inputs.count == 3)
        let one = try #require(
            CheckpointRules.cosign(
                request, from: rules.leader, view: view, policy: rules.policy, key: rules.bitcoinKeys[1]
            )
            .psbt)
        // Only input 0 signed: ignored (the transaction could not be finalized with it).
        var partial = one
        for i in 1..<partial.inputs.count { partial.inputs[i].tapScriptSigs = [:] }
        #expect(a.signatureReceived(partial).isEmpty)
        #expect(a.signatureReceived(one).isEmpty, "2 of 3")
        let two = try #require(
            CheckpointRules.cosign(
                request, from: rules.leader, view: view, policy: rules.policy, key: rules.bitcoinKeys[2]
            )
            .psbt)
        guard case .broadcast(let tx, _) = try #require(a.signatureReceived(two).first) else {
            Issue.record("not finalized")
            return
        }
        #expect(tx.inputs.count == 3 && tx.inputs.allSatisfy { $0.witness.count == 4 + 2 })
        #expect(tx.outputs[0].value > 100_000, "the top-ups joined the coin")
    }

    @Test("a withholding initiator: any validator collects the flooded co-signatures and can broadcast the checkpoint")
    func bystanderCompletes() throws {
        var initiator = CheckpointInitiator(settings: settings)
        initiator.committed(height: 10, qc: rules.qc(), endsEpoch: false, now: 0)
        guard
            case .requestSignatures(let request) = try #require(
                initiator.leading(now: 1, view: rules.view(), key: rules.bitcoinKeys[0], feeRate: 2).first)
        else { return }
        // Validator 3 judged it signable and watches it; validators 1 and 2 flood theirs.
        var watch = CheckpointCollector(request: request, coin: rules.coin)
        #expect(watch.signers.count == 1, "the initiator's own signature, verified")
        let early = watch.finish()
        #expect(early == nil)
        let one = try #require(cosigned(request, by: 1))
        let first = watch.add(one)
        let again = watch.add(one)
        #expect(first && !again, "counted once")
        var forged = try #require(cosigned(request, by: 2))
        for (slot, _) in forged.inputs[0].tapScriptSigs {
            forged.inputs[0].tapScriptSigs[slot] = [UInt8](repeating: 3, count: 64)
        }
        let forgedAdded = watch.add(forged)
        #expect(!forgedAdded, "an invalid signature is not counted")
        let two = try #require(cosigned(request, by: 2))
        let second = watch.add(two)
        #expect(second)
        let finished = watch.finish()
        let (tx, payload) = try #require(finished, "k signatures: finalized without the initiator")
        #expect(payload.round == 10 && tx.inputs[0].witness.count == 6)
        let twice = watch.finish()
        #expect(twice == nil, "only once")
    }
}
