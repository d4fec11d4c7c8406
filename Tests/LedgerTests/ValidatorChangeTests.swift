import Ledger
import NodeCrypto
import Testing
import Wire

@Suite("Epochs in the ledger: validator-set changes by quorum, epoch ends by length")
struct ValidatorChangeTests {
    let validators = (0..<4).map { _ in Ed25519.PrivateKey() }
    let submitter = Ed25519.PrivateKey()
    let newcomer = Ed25519.PrivateKey()
    let bitcoinKey = Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation
    /// The validators' own keys (one each: a key twice could not build a coin).
    let bitcoinKeys = (0..<4).map { _ in Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation }

    func genesis(epochLength: UInt64 = 1_000) -> LedgerState {
        LedgerState(
            chainID: "c", balances: [submitter.publicKey: 100],
            system: SystemState(
                epoch: 1, epochLength: epochLength,
                validators: validators.enumerated().map {
                    .init(id: $0.element.publicKey, power: 1, bitcoinKey: bitcoinKeys[$0.offset])
                }))
    }

    func changeTx(
        _ change: ValidatorChange, approvers: [Ed25519.PrivateKey], seq: UInt64 = 1, chainID: String = "c"
    ) -> Transaction {
        let approvals = approvers.map { change.approve(chainID: chainID, key: $0) }
        return Transaction(
            chainID: "c", author: submitter, seq: seq, fee: 0,
            payload: .validatorChange(change, approvals: approvals), predecessors: [])
    }

    @Test("a change approved by more than two thirds ends the epoch; the next state names the new set")
    func addWithQuorum() throws {
        var state = genesis()
        let before = state.root
        let change = ValidatorChange(
            epoch: 1, validator: newcomer.publicKey, operation: .add(power: 2, bitcoinKey: bitcoinKey))
        let tx = changeTx(change, approvers: Array(validators.prefix(3)))
        // The encoding round-trips exactly (the id hashes it).
        #expect(try Transaction.decode(tx.encoded) == tx)
        let (receipts, endsEpoch) = state.executeBlock([tx.encoded], proposer: validators[0].publicKey)
        #expect(receipts[0].failure == nil)
        #expect(endsEpoch)
        let system = try #require(state.system)
        #expect(system.epoch == 2 && system.blocksInEpoch == 0)
        #expect(system.validators.count == 5 && system.totalPower == 6)
        #expect(system.validators.contains { $0.id == newcomer.publicKey && $0.power == 2 })
        #expect(state.root != before, "the validator set is part of the state id")
        // The stored form keeps the system state.
        #expect(try LedgerState.decode(state.encoded()) == state)
    }

    @Test("refused: too little power, a stranger's or a forged approval, a duplicate, another epoch or chain")
    func refusals() {
        let add = ValidatorChange(
            epoch: 1, validator: newcomer.publicKey, operation: .add(power: 1, bitcoinKey: bitcoinKey))
        let stranger = Ed25519.PrivateKey()
        let cases: [(Transaction, String)] = [
            (changeTx(add, approvers: Array(validators.prefix(2))), "more than two thirds"),
            (changeTx(add, approvers: Array(validators.prefix(2)) + [stranger]), "not a validator"),
            (changeTx(add, approvers: [validators[0], validators[0], validators[1]]), "two approvals"),
            (changeTx(add, approvers: Array(validators.prefix(3)), chainID: "other"), "invalid approval signature"),
            (
                changeTx(
                    ValidatorChange(epoch: 2, validator: newcomer.publicKey, operation: .remove),
                    approvers: validators), "epoch 2"
            ),
            (
                changeTx(
                    ValidatorChange(epoch: 1, validator: newcomer.publicKey, operation: .remove), approvers: validators),
                "is not a validator"
            ),
            (
                changeTx(
                    ValidatorChange(
                        epoch: 1, validator: validators[1].publicKey, operation: .add(power: 1, bitcoinKey: bitcoinKey)),
                    approvers: validators), "already a validator"
            ),
        ]
        for (tx, reason) in cases {
            var state = genesis()
            let (receipts, endsEpoch) = state.executeBlock([tx.encoded], proposer: validators[0].publicKey)
            #expect(receipts[0].failure?.contains(reason) == true, "\(receipts[0].failure ?? "accepted"): \(reason)")
            #expect(!endsEpoch, "a refused change does not end the epoch")
            #expect(state.system?.validators.count == 4)
        }
    }

    @Test("an invalid Bitcoin key or zero power is refused before execution")
    func standalone() {
        let bad = ValidatorChange(
            epoch: 1, validator: newcomer.publicKey, operation: .setBitcoinKey([UInt8](repeating: 0xff, count: 32)))
        #expect(changeTx(bad, approvers: validators).validateStandalone(chainID: "c")?.contains("x-only") == true)
        let zero = ValidatorChange(
            epoch: 1, validator: newcomer.publicKey, operation: .add(power: 0, bitcoinKey: bitcoinKey))
        #expect(changeTx(zero, approvers: validators).validateStandalone(chainID: "c")?.contains("power") == true)
        // Unknown operation bytes are a decode error, not a crash.
        var w = WireWriter()
        w.u64(1)
        w.u8(9)
        w.fixed([UInt8](repeating: 1, count: 32))
        #expect(throws: WireError.self) { try ValidatorChange.decode(w.bytes) }
    }

    @Test("a Bitcoin key another validator holds is refused (add and set-btc-key): the coin could not be built")
    func duplicateBitcoinKey() throws {
        var state = genesis()
        let taken = bitcoinKeys[1]
        let add = changeTx(
            ValidatorChange(epoch: 1, validator: newcomer.publicKey, operation: .add(power: 5, bitcoinKey: taken)),
            approvers: Array(validators.prefix(3)), seq: 1)
        let set = changeTx(
            ValidatorChange(epoch: 1, validator: validators[0].publicKey, operation: .setBitcoinKey(taken)),
            approvers: Array(validators.prefix(3)), seq: 2)
        // Setting one's own key again is no conflict.
        let same = changeTx(
            ValidatorChange(epoch: 1, validator: validators[1].publicKey, operation: .setBitcoinKey(taken)),
            approvers: Array(validators.prefix(3)), seq: 3)
        let (receipts, _) = state.executeBlock(
            [add.encoded, set.encoded, same.encoded], proposer: validators[0].publicKey)
        #expect(receipts[0].failure?.contains("already") == true, "\(receipts[0])")
        #expect(receipts[1].failure?.contains("already") == true, "\(receipts[1])")
        #expect(receipts[2].failure == nil)
        let system = try #require(state.system)
        #expect(system.validators.count == 4 && Set(system.validators.map(\.bitcoinKey)).count == 4)
    }

    @Test("remove and set-btc-key; two changes in one block both apply; epochs also end by length")
    func removeSetKeyAndLength() throws {
        var state = genesis(epochLength: 3)
        let newKey = Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation
        let remove = changeTx(
            ValidatorChange(epoch: 1, validator: validators[3].publicKey, operation: .remove),
            approvers: Array(validators.prefix(3)), seq: 1)
        let setKey = changeTx(
            ValidatorChange(epoch: 1, validator: validators[0].publicKey, operation: .setBitcoinKey(newKey)),
            approvers: Array(validators.prefix(3)), seq: 2)
        let (receipts, ends) = state.executeBlock([remove.encoded, setKey.encoded], proposer: validators[0].publicKey)
        #expect(receipts.allSatisfy { $0.failure == nil } && ends)
        let system = try #require(state.system)
        #expect(system.epoch == 2 && system.validators.count == 3)
        #expect(system.validators.first { $0.id == validators[0].publicKey }?.bitcoinKey == newKey)
        // Approvals for epoch 1 no longer count in epoch 2 (replay).
        let replay = changeTx(
            ValidatorChange(epoch: 1, validator: validators[2].publicKey, operation: .remove),
            approvers: Array(validators.prefix(3)), seq: 3)
        #expect(state.executeBlock([replay.encoded], proposer: validators[0].publicKey).receipts[0].failure != nil)
        // Length: blocks 2 and 3 of epoch 2 (the replay's block was the first).
        #expect(!state.executeBlock([], proposer: validators[0].publicKey).endsEpoch)
        #expect(state.executeBlock([], proposer: validators[0].publicKey).endsEpoch)
        #expect(state.system?.epoch == 3 && state.system?.validators.count == 3)
    }
}

@Suite("Validator-change transactions never crash the decoder")
struct ValidatorChangeDecodingTests {
    @Test("every truncation of a change transaction is a decode error")
    func truncations() throws {
        let key = Ed25519.PrivateKey()
        let change = ValidatorChange(
            epoch: 4, validator: Ed25519.PrivateKey().publicKey,
            operation: .add(power: 3, bitcoinKey: Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation))
        let tx = Transaction(
            chainID: "c", author: key, seq: 1, fee: 0,
            payload: .validatorChange(change, approvals: [change.approve(chainID: "c", key: key)]), predecessors: [])
        #expect(try Transaction.decode(tx.encoded) == tx)
        for cut in 0..<tx.encoded.count {
            #expect(throws: WireError.self) { try Transaction.decode(Array(tx.encoded.prefix(cut))) }
        }
        #expect(try ValidatorChange.decode(change.encoded) == change)
        for cut in 0..<change.encoded.count {
            #expect(throws: WireError.self) { try ValidatorChange.decode(Array(change.encoded.prefix(cut))) }
        }
    }
}
