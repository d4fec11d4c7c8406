import Bitcoin
import Checkpoint
import NodeCrypto
import Testing

@testable import Consensus

/// Issue 15 §2–3: what a Byzantine validator acting as initiator tries, and what the
/// honest validators' rules give it: no signature, and the blame where it is earned.
@Suite("Checkpoint: a malicious initiator gets no signature")
struct MaliciousInitiatorTests {
    let rules = CheckpointRulesTests()

    func verdict(
        _ r: CheckpointRequest, from: ValidatorID? = nil, _ view: CheckpointView? = nil
    )
        -> CheckpointRules.Verdict
    {
        CheckpointRules.judge(r, from: from ?? rules.leader, view: view ?? rules.view(), policy: rules.policy)
    }

    /// Refused with blame, with `words` in the reason; and `cosign` signs nothing.
    func expectBlamed(
        _ r: CheckpointRequest, from: ValidatorID? = nil, _ view: CheckpointView? = nil, because words: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let v = verdict(r, from: from, view)
        guard case .refuse(let why) = v else {
            Issue.record("expected a blamed refusal (\(words)), got \(v)", sourceLocation: sourceLocation)
            return
        }
        #expect(why.contains(words), "\(why)", sourceLocation: sourceLocation)
        for key in rules.bitcoinKeys {
            let signed = CheckpointRules.cosign(
                r, from: from ?? rules.leader, view: view ?? rules.view(), policy: rules.policy, key: key
            ).psbt
            #expect(signed == nil, sourceLocation: sourceLocation)
        }
    }

    func tampered(_ r: CheckpointRequest, _ change: (inout BitcoinTransaction) -> Void) -> CheckpointRequest {
        var tx = r.psbt.unsignedTx
        change(&tx)
        var psbt = PSBT(unsignedTx: tx)
        psbt.inputs[0] = r.psbt.inputs[0]
        if psbt.inputs.count > 1 { psbt.inputs[1].witnessUtxo = r.psbt.inputs[0].witnessUtxo }
        return CheckpointRequest(psbt: psbt, qc: r.qc)
    }

    @Test("the honest request passes every new rule (the control for this suite)")
    func control() throws {
        #expect(verdict(try rules.request()) == .sign)
    }

    @Test("a validator that leads none of the rounds from the QC's round on is refused, with blame")
    func notLeader() throws {
        let other = rules.validators[2].publicKey
        expectBlamed(try rules.request(), from: other, because: "leads none of the rounds")
        // The same request from a later round's leader (the handoff) is signed.
        #expect(verdict(try rules.request(), from: other, rules.view(leaders: [rules.leader, other])) == .sign)
    }

    @Test("the leader window: the QC's round to a few rounds past this node's, capped; an earlier epoch's QC")
    func askingRounds() {
        let policy = CheckpointPolicy(leaderLookahead: 4)
        #expect(policy.askingRounds(qcEpoch: 3, qcRound: 10, epoch: 3, round: 12, span: 16) == 10...16)
        #expect(policy.askingRounds(qcEpoch: 3, qcRound: 10, epoch: 3, round: 100, span: 16) == 88...104)
        #expect(policy.askingRounds(qcEpoch: 2, qcRound: 90, epoch: 3, round: 2, span: 16) == 1...6)
        // A QC from a round this node has not reached: only rounds ahead (not below 0).
        #expect(policy.askingRounds(qcEpoch: 3, qcRound: 30, epoch: 3, round: 2, span: 16) == 6...6)
    }

    @Test("not due by this node's chain: refused with blame; an epoch's last block is always due")
    func notDue() throws {
        expectBlamed(try rules.request(), rules.view(certified: 9, dueFrom: 10), because: "not due")
        #expect(verdict(try rules.request(), rules.view(certified: 9, endsEpoch: true, dueFrom: 10)) == .sign)
        // Where the last checkpoint's height is not known here, any committed block is due.
        #expect(verdict(try rules.request(), rules.view(certified: 9, dueFrom: nil)) == .sign)
    }

    @Test("a fee far above this node's own estimate is refused; within the tolerance it is signed")
    func feeBurn() throws {
        let vsize = Double(CheckpointTransaction.virtualSize(current: rules.coin, next: rules.coin))
        let own = 3.0
        let atTolerance = UInt64((own * 2 * vsize).rounded(.down))
        #expect(verdict(try rules.request(fee: atTolerance), rules.view(ownFee: own)) == .sign)
        // Above the tolerance but within the genesis bounds: never signed, and not blamed
        // (honest estimates may differ that much); above the genesis cap (50): blamed.
        for fee in [UInt64(own * 2.5 * vsize), UInt64(45 * vsize)] {
            let r = try rules.request(fee: fee)
            if case .stale(let why) = verdict(r, rules.view(ownFee: own)) {
                #expect(why.contains("above"))
            } else {
                Issue.record("a fee above the tolerance was not refused as stale")
            }
            for key in rules.bitcoinKeys {
                #expect(
                    CheckpointRules.cosign(
                        r, from: rules.leader, view: rules.view(ownFee: own), policy: rules.policy, key: key
                    ).psbt == nil)
            }
        }
        expectBlamed(try rules.request(fee: UInt64(60 * vsize)), rules.view(ownFee: own), because: "fee rate")
        // A stuck checkpoint at 10 sat/vB for 2 blocks (bump_after 3, one block of slack)
        // allows 1.5 × 10 + 1.
        let stuck = rules.view(ownFee: own, pending: PendingSpend(feeRate: 10, blocksWaiting: 2))
        #expect(verdict(try rules.request(fee: UInt64(15 * vsize)), stuck) == .sign)
        if case .stale = verdict(try rules.request(fee: UInt64(17 * vsize)), stuck) {
        } else {
            Issue.record("a bump beyond 1.5 × + 1 was signed")
        }
    }

    @Test("an extra input, an extra output, a changed output or lock time: refused with blame")
    func shape() throws {
        let honest = try rules.request()
        // An extra input: one claiming to pay the coin's script that this node has not seen
        // is stale (a top-up it may not have seen yet: nothing signed, nobody blamed); one
        // paying anything else is refused with blame.
        var extra = tampered(honest) {
            $0.inputs.append(TxIn(previousOutput: OutPoint(txid: [UInt8](repeating: 5, count: 32), vout: 1)))
        }
        if case .stale = verdict(extra) {} else { Issue.record("an unseen top-up should be stale, not signed") }
        var psbt = extra.psbt
        psbt.inputs[1].witnessUtxo = TxOut(value: 1_000, scriptPubKey: Script(bytes: [0x51]))
        extra = CheckpointRequest(psbt: psbt, qc: extra.qc)
        expectBlamed(extra, because: "not a top-up")
        expectBlamed(
            tampered(honest) { $0.outputs.append(TxOut(value: 1_000, scriptPubKey: Script(bytes: [0x51]))) },
            because: "the outputs are not")
        expectBlamed(
            tampered(honest) { $0.outputs[0] = TxOut(value: $0.outputs[0].value, scriptPubKey: Script(bytes: [0x51])) },
            because: "the outputs are not")
        expectBlamed(
            tampered(honest) { $0.outputs.swapAt(0, 1) }, because: "the outputs are not")
        expectBlamed(tampered(honest) { $0.lockTime = 800_000 }, because: "lock time")
        // More value out of the coin than the fee rule allows: a higher fee, refused.
        expectBlamed(tampered(honest) { $0.outputs[0].value -= 20_000 }, because: "fee rate")
    }

    @Test("requests from a non-leader every Bitcoin block: never signed, every one blamed")
    func everyBlock() throws {
        let byzantine = rules.validators[3].publicKey
        for tip in 101...110 {
            expectBlamed(
                try rules.request(), from: byzantine, rules.view(lastCheckpoint: tip - 1, tip: tip),
                because: "leads none")
        }
    }

    @Test("waiting requests are bounded per sender: a flood keeps the sender's newest two, others' stay")
    func waitingFlood() throws {
        var waiting = WaitingRequests<Int>(perSender: 2)
        let honest = try rules.request()
        waiting.add(honest, from: 0, since: 1)
        for i in 0..<1_000 { waiting.add(try rules.request(fee: 600 + UInt64(i)), from: 7, since: Double(i)) }
        let kept = waiting.takeAll()
        #expect(kept.count == 3)
        #expect(kept.contains { $0.sender == 0 && $0.request == honest }, "the honest request survived the flood")
        #expect(kept.filter { $0.sender == 7 }.map(\.since) == [998, 999], "the flooder's newest two")
        #expect(waiting.takeAll().isEmpty)
    }

    // MARK: Top-ups (issue 15 §10)

    let topUpA = OutPoint(txid: [UInt8](repeating: 0x21, count: 32), vout: 0)
    let topUpB = OutPoint(txid: [UInt8](repeating: 0x22, count: 32), vout: 3)

    /// The honest sweep: the coin, then both top-ups in canonical order, k signatures each.
    func sweep(fee: UInt64 = 900, topUps: [(OutPoint, UInt64)]? = nil) throws -> CheckpointRequest {
        let q = rules.qc()
        let payload = try CheckpointPayload(epoch: 3, round: 10, commitStateID: q.commitInfo.commitStateID!.bytes)
        let psbt = try CheckpointTransaction.psbt(
            spending: rules.coinOutpoint, value: 100_000, of: rules.coin, to: rules.coin, payload: payload, fee: fee,
            topUps: topUps ?? CheckpointTransaction.ordered([topUpA: 20_000, topUpB: 8_000]))
        return CheckpointRequest(psbt: psbt, qc: q)
    }

    func seeing(_ topUps: [OutPoint: UInt64], rules: CheckpointRulesTests? = nil) -> CheckpointView {
        let v = (rules ?? self.rules).view()
        return CheckpointView(
            config: v.config, committedStates: v.committedStates, coin: v.coin, coinValue: v.coinValue,
            currentCoin: v.currentCoin, nextCoin: v.nextCoin, bitcoinHeight: v.bitcoinHeight,
            lastCheckpointHeight: v.lastCheckpointHeight, leaders: v.leaders, certifiedHeight: v.certifiedHeight,
            endsEpoch: v.endsEpoch, dueFromHeight: v.dueFromHeight, ownFeeRate: v.ownFeeRate, topUps: topUps)
    }

    @Test("top-ups: an honest sweep is signed on every input and finalizes; output 0 holds coin + top-ups − fee")
    func honestSweep() throws {
        let view = seeing([topUpA: 20_000, topUpB: 8_000])
        let request = try sweep()
        var combined: PSBT?
        for key in rules.bitcoinKeys.prefix(3) {
            let (verdict, signed) = CheckpointRules.cosign(
                request, from: rules.leader, view: view, policy: rules.policy, key: key)
            #expect(verdict == .sign)
            let psbt = try #require(signed)
            #expect(psbt.inputs.allSatisfy { $0.tapScriptSigs.count == 1 }, "one signature per input")
            if combined == nil { combined = psbt } else { try combined!.combine(with: psbt) }
        }
        var final = try #require(combined).validated()
        try final.finalize()
        let tx = try final.extract()
        #expect(tx.inputs.count == 3 && tx.outputs[0].value == 128_000 - 900)
        // The light client needs the top-ups' outputs (BIP341 signs every spent output).
        let prevouts = [
            topUpA: TxOut(value: 20_000, scriptPubKey: rules.coin.scriptPubKey),
            topUpB: TxOut(value: 8_000, scriptPubKey: rules.coin.scriptPubKey),
        ]
        let walk = CheckpointChain.verify(
            start: rules.coinOutpoint, startScript: rules.coin.scriptPubKey, startValue: 100_000, spends: [tx],
            coinForEpoch: { _ in nil }, prevouts: prevouts)
        #expect(walk.problem == nil && walk.entries.first?.toppedUp == 28_000, "\(walk.problem ?? "")")
        #expect(
            CheckpointChain.verify(
                start: rules.coinOutpoint, startScript: rules.coin.scriptPubKey, startValue: 100_000, spends: [tx],
                coinForEpoch: { _ in nil }
            ).problem?.contains("not known") == true)
    }

    @Test("top-ups: foreign script, a value this node does not see, a wrong order, a duplicate: refused; unseen: stale")
    func maliciousSweep() throws {
        let view = seeing([topUpA: 20_000, topUpB: 8_000])
        // An input paying another script: the initiator's own coin or someone else's.
        var foreign = try sweep().psbt
        foreign.inputs[1].witnessUtxo = TxOut(
            value: 20_000, scriptPubKey: Script(bytes: [0x51, 0x20] + [UInt8](repeating: 1, count: 32)))
        expectBlamed(CheckpointRequest(psbt: foreign, qc: rules.qc()), view, because: "not a top-up")
        // A claimed value above what this node sees (the fee check would count it).
        let inflated = try sweep(topUps: CheckpointTransaction.ordered([topUpA: 90_000, topUpB: 8_000]))
        expectBlamed(inflated, view, because: "this node sees")
        // Not the canonical order.
        let reordered = try sweep(topUps: [(topUpB, 8_000), (topUpA, 20_000)])
        expectBlamed(reordered, view, because: "canonical order")
        // One input twice.
        let twice = try sweep(topUps: [(topUpA, 20_000), (topUpA, 20_000)])
        expectBlamed(twice, view, because: "appears twice")
        // Dust paid to the coin's script: its input would cost more than it brings.
        let dustPoint = OutPoint(txid: [UInt8](repeating: 0x23, count: 32), vout: 0)
        let dust = try sweep(topUps: [(dustPoint, 400)])
        expectBlamed(dust, seeing([dustPoint: 400]), because: "less than its own fee at the cap")
        // A top-up this node has not seen confirmed: not blamed, views differ.
        if case .stale = verdict(try sweep(), seeing([topUpA: 20_000])) {
        } else {
            Issue.record("an unseen top-up should be stale")
        }
    }

    @Test("a request naming the recovery leaf (or any other) collects no signature for it")
    func otherLeaf() throws {
        let keys = rules.bitcoinKeys.map(\.xOnlyPublicKey.rawRepresentation)
        let recovering = try CheckpointCoin(keys: keys, recoveryBlocks: 10)
        var psbt = try rules.request().psbt
        let control = try #require(recovering.recoveryControlBlock)
        psbt.inputs[0].tapLeafScripts[control] = recovering.recovery!.leaf.script.bytes + [0xC0]
        expectBlamed(CheckpointRequest(psbt: psbt, qc: rules.qc()), because: "names a leaf other than")
    }
}
