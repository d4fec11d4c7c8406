import Bitcoin
import Checkpoint
import NodeCrypto
import Testing

@testable import Consensus

@Suite("Checkpoint rules: what a validator co-signs, and what it refuses")
struct CheckpointRulesTests {
    let validators = (0..<4).map { _ in Ed25519.PrivateKey() }
    let bitcoinKeys = (0..<4).map { _ in Secp256k1.PrivateKey() }
    let committedBlock = Hash32.of([1])
    let stateID = Hash32.of([2])
    let coinOutpoint = OutPoint(txid: [UInt8](repeating: 9, count: 32), vout: 0)

    var config: ConsensusConfig {
        ConsensusConfig(
            chainID: "c", epoch: 3, validators: ValidatorSet(validators.map { Validator(id: $0.publicKey) }),
            genesisBlockID: .zero, genesisStateID: .zero)
    }
    var coin: CheckpointCoin { try! CheckpointCoin(keys: bitcoinKeys.map(\.xOnlyPublicKey.rawRepresentation)) }

    /// A commit QC (2-chain) of epoch 3 for `committedBlock` with `state`, signed by `signers`.
    func qc(state: Hash32? = nil, signers: Int = 3, epoch: UInt64 = 3, round: UInt64 = 10) -> QuorumCert {
        let info = VoteInfo(
            blockID: Hash32.of([3]), round: round, parentID: committedBlock, parentRound: round - 1,
            execStateID: state ?? stateID, epoch: epoch)
        let commit = LedgerCommitInfo(
            epoch: epoch, round: round, commitStateID: state ?? stateID, voteInfoHash: info.hash)
        let message = SigningDomain(chainID: "c").message("vote", epoch: epoch, commit.bytes)
        return QuorumCert(
            voteInfo: info, commitInfo: commit,
            signatures: validators.prefix(signers).map {
                SignerSignature(signer: $0.publicKey, signature: $0.signature(for: message))
            })
    }

    /// The validator that leads the rounds the requests are judged in.
    var leader: ValidatorID { validators[0].publicKey }

    /// A validator's view: the QC's block committed at `certified` (due from `dueFrom`),
    /// `validators[0]` leading the rounds that may ask, its own estimate `ownFee` sat/vB.
    func view(
        committed: Hash32? = nil, next: CheckpointCoin? = nil, lastCheckpoint: Int? = 100, tip: Int = 105,
        leaders: Set<ValidatorID>? = nil, certified: UInt64 = 10, endsEpoch: Bool = false, dueFrom: UInt64? = 10,
        ownFee: Double = 3, pending: PendingSpend? = nil
    ) -> CheckpointView {
        CheckpointView(
            config: config, committedStates: committed.map { [committedBlock: $0] } ?? [committedBlock: stateID],
            coin: coinOutpoint, coinValue: 100_000, currentCoin: coin, nextCoin: next ?? coin, bitcoinHeight: tip,
            lastCheckpointHeight: lastCheckpoint, leaders: leaders ?? [leader], certifiedHeight: certified,
            endsEpoch: endsEpoch, dueFromHeight: dueFrom, ownFeeRate: ownFee, pending: pending)
    }

    /// The initiator's request: a checkpoint of `qc` paying to `to` with `fee`.
    func request(
        qc: QuorumCert? = nil, to: CheckpointCoin? = nil, fee: UInt64 = 600, round: UInt64 = 10, input: OutPoint? = nil
    ) throws -> CheckpointRequest {
        let q = qc ?? self.qc()
        let payload = try CheckpointPayload(epoch: 3, round: round, commitStateID: q.commitInfo.commitStateID!.bytes)
        let psbt = try CheckpointTransaction.psbt(
            spending: input ?? coinOutpoint, value: 100_000, of: coin, to: to ?? coin, payload: payload, fee: fee)
        return CheckpointRequest(psbt: psbt, qc: q)
    }

    let policy = CheckpointPolicy(minFeeRate: 1, maxFeeRate: 50)

    @Test("honest flow: three validators co-sign, the initiator combines, finalizes and extracts")
    func honest() throws {
        let r = try request()
        var combined: PSBT?
        for key in bitcoinKeys.prefix(3) {
            let (verdict, signed) = CheckpointRules.cosign(r, from: leader, view: view(), policy: policy, key: key)
            #expect(verdict == .sign)
            let psbt = try #require(signed)
            #expect(psbt.inputs[0].tapScriptSigs.count == 1)
            if combined == nil { combined = psbt } else { try combined!.combine(with: psbt) }
        }
        var final = try #require(combined).validated()
        try final.finalize()
        let tx = try final.extract()
        #expect(try CheckpointPayload(script: tx.outputs[1].scriptPubKey).commitStateID == stateID.bytes)
    }

    @Test(
        "refusals: wrong state, invalid QC, wrong input, wrong outputs, fees out of bounds, too early; waiting while uncommitted"
    )
    func refusals() throws {
        func verdict(_ r: CheckpointRequest, _ v: CheckpointView? = nil) -> CheckpointRules.Verdict {
            CheckpointRules.judge(r, from: leader, view: v ?? view(), policy: policy)
        }
        func refused(_ v: CheckpointRules.Verdict, _ words: String) -> Bool {
            if case .refuse(let why) = v { return why.contains(words) }
            return false
        }
        func stale(_ v: CheckpointRules.Verdict, _ words: String) -> Bool {
            if case .stale(let why) = v { return why.contains(words) }
            return false
        }
        #expect(refused(verdict(try request(), view(committed: Hash32.of([99]))), "differs from this node's"))
        #expect(refused(verdict(try request(qc: qc(signers: 2))), "not a valid commit QC"), "2 of 4 is no quorum")
        #expect(refused(verdict(try request(qc: qc(epoch: 2))), "not a valid commit QC"), "another epoch's QC")
        var forged = qc()
        forged = QuorumCert(
            voteInfo: forged.voteInfo, commitInfo: forged.commitInfo,
            signatures: forged.signatures.map {
                SignerSignature(signer: $0.signer, signature: forged.signatures[0].signature)
            })
        #expect(refused(verdict(try request(qc: forged)), "not a valid commit QC"), "forged signatures")
        #expect(
            stale(
                verdict(try request(input: OutPoint(txid: [UInt8](repeating: 8, count: 32), vout: 0))),
                "not the current checkpoint coin"), "another coin: a view that lags, not blamed")
        let stranger = try CheckpointCoin(
            keys: (0..<4).map { _ in Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation })
        #expect(refused(verdict(try request(to: stranger)), "outputs"), "pays the coin to other keys")
        #expect(refused(verdict(try request(round: 11)), "outputs"), "an OP_RETURN that is not this QC's")
        #expect(refused(verdict(try request(fee: 50_000)), "fee rate"), "excessive fee")
        #expect(refused(verdict(try request(fee: 100)), "fee rate"), "below the minimum")
        #expect(stale(verdict(try request(), view(lastCheckpoint: 105, tip: 105)), "too early"))
        let pending = CheckpointView(
            config: config, committedStates: [:], coin: coinOutpoint, coinValue: 100_000, currentCoin: coin,
            nextCoin: coin, bitcoinHeight: 105, lastCheckpointHeight: 100, leaders: [leader], certifiedHeight: nil,
            endsEpoch: false, dueFromHeight: 10, ownFeeRate: 3)
        if case .wait = verdict(try request(), pending) {} else { Issue.record("expected to wait for the commit") }
        // A validator whose Bitcoin key is not in the script cannot co-sign.
        let (v, psbt) = CheckpointRules.cosign(
            try request(), from: leader, view: view(), policy: policy, key: Secp256k1.PrivateKey())
        #expect(psbt == nil && refused(v, "not in the coin's script"))
    }

    /// The drain attack of issue 15 §1: a malicious initiator asks for signatures under a
    /// sighash type that does not commit to the outputs; with k of them anyone could pay
    /// the coin anywhere. Every such request is refused and nothing is signed.
    @Test(
        "malicious initiator: a request under any sighash type but DEFAULT is refused unsigned",
        arguments: [0x01, 0x02, 0x03, 0x81, 0x82, 0x83, 0x04] as [UInt32])
    func sighashTypes(type: UInt32) throws {
        var r = try request()
        r = CheckpointRequest(
            psbt: {
                var p = r.psbt
                p.inputs[0].sighashType = type
                return p
            }(), qc: r.qc)
        for key in bitcoinKeys {
            let (verdict, signed) = CheckpointRules.cosign(r, from: leader, view: view(), policy: policy, key: key)
            #expect(signed == nil, "signed under sighash 0x\(String(type, radix: 16))")
            guard case .refuse(let why) = verdict else {
                Issue.record("expected a blamed refusal, got \(verdict)")
                continue
            }
            #expect(why.contains("SIGHASH_DEFAULT"))
        }
    }

    @Test(
        "a request carrying a signature that is not 64-byte SIGHASH_DEFAULT is refused; an explicit DEFAULT is signed")
    func requestSignatures() throws {
        let honest = try request()
        // An explicit sighash field of 0 is DEFAULT: signed, and the signature has no type byte.
        var explicit = honest.psbt
        explicit.inputs[0].sighashType = 0
        let (verdict, signed) = CheckpointRules.cosign(
            CheckpointRequest(psbt: explicit, qc: honest.qc), from: leader, view: view(), policy: policy,
            key: bitcoinKeys[0])
        #expect(verdict == .sign)
        let sigs = try #require(signed).inputs[0].tapScriptSigs
        #expect(sigs.count == 1 && sigs.values.allSatisfy { $0.count == 64 })
        // The initiator's own signature under NONE|ANYONECANPAY rides along: refused.
        var tagged = honest.psbt
        tagged.inputs[0].tapScriptSigs[bitcoinKeys[1].xOnlyPublicKey.rawRepresentation + coin.leaf.hash] =
            [UInt8](repeating: 7, count: 64) + [0x82]
        if case .refuse = CheckpointRules.judge(
            CheckpointRequest(psbt: tagged, qc: honest.qc), from: leader, view: view(), policy: policy)
        {
        } else {
            Issue.record("a request with a 65-byte signature was not refused")
        }
        // A key-path signature has no place in a NUMS coin's spend.
        var keyPath = honest.psbt
        keyPath.inputs[0].tapKeySig = [UInt8](repeating: 7, count: 64)
        if case .refuse = CheckpointRules.judge(
            CheckpointRequest(psbt: keyPath, qc: honest.qc), from: leader, view: view(), policy: policy)
        {
        } else {
            Issue.record("a request with a key-path signature was not refused")
        }
    }

    @Test("epoch handover: an ending epoch's checkpoint must pay the next epoch's coin")
    func handover() throws {
        let nextSet = try CheckpointCoin(
            keys: (bitcoinKeys.dropFirst() + [Secp256k1.PrivateKey()]).map(\.xOnlyPublicKey.rawRepresentation))
        let ending = view(next: nextSet)
        #expect(CheckpointRules.judge(try request(to: nextSet), from: leader, view: ending, policy: policy) == .sign)
        if case .refuse = CheckpointRules.judge(try request(to: coin), from: leader, view: ending, policy: policy) {
        } else {
            Issue.record("a checkpoint keeping the old set past its epoch was signed")
        }
    }
}
