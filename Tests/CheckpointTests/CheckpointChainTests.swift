import Bitcoin
import Checkpoint
import NodeCrypto
import Testing

@Suite("Checkpoint chain: what a light client verifies")
struct CheckpointChainTests {
    let epoch1 = (0..<4).map { _ in Secp256k1.PrivateKey() }
    let epoch2 = (0..<5).map { _ in Secp256k1.PrivateKey() }
    let genesis = OutPoint(txid: [UInt8](repeating: 4, count: 32), vout: 1)

    func coin(_ keys: [Secp256k1.PrivateKey]) -> CheckpointCoin {
        try! CheckpointCoin(keys: keys.map(\.xOnlyPublicKey.rawRepresentation))
    }

    /// Three checkpoints: two in epoch 1 (the second moves the coin to epoch 2's set),
    /// one in epoch 2.
    func chain() throws -> [BitcoinTransaction] {
        var out: [BitcoinTransaction] = []
        var outpoint = genesis
        var value: UInt64 = 100_000
        let steps: [([Secp256k1.PrivateKey], [Secp256k1.PrivateKey], UInt64, UInt64)] = [
            (epoch1, epoch1, 1, 5), (epoch1, epoch2, 1, 9), (epoch2, epoch2, 2, 3),
        ]
        for (from, to, epoch, round) in steps {
            let payload = try CheckpointPayload(
                epoch: epoch, round: round, commitStateID: [UInt8](repeating: UInt8(round), count: 32))
            var psbt = try CheckpointTransaction.psbt(
                spending: outpoint, value: value, of: coin(from), to: coin(to), payload: payload, fee: 500
            ).validated()
            for key in from.prefix(coin(from).threshold) { try psbt.sign(with: key) }
            try psbt.finalize()
            let tx = try psbt.extract()
            out.append(tx)
            outpoint = OutPoint(txid: tx.txid, vout: 0)
            value -= 500
        }
        return out
    }

    func keys(_ epoch: UInt64) -> CheckpointCoin? {
        epoch == 1 ? coin(epoch1) : epoch == 2 ? coin(epoch2) : nil
    }

    @Test("a valid chain with an epoch handover verifies in full")
    func valid() throws {
        let (entries, problem) = CheckpointChain.verify(
            start: genesis, startScript: coin(epoch1).scriptPubKey, startValue: 100_000, spends: try chain(),
            coinForEpoch: keys)
        #expect(problem == nil)
        #expect(entries.map(\.payload?.round) == [5, 9, 3])
        #expect(entries[2].keys.count == 5 && entries[2].signatures == 4)
    }

    @Test("a tampered genesis, foreign keys, a broken link or a payload going back are found")
    func tampered() throws {
        let spends = try chain()
        let other = (0..<4).map { _ in Secp256k1.PrivateKey() }
        // The genesis names other keys: the first spend is not of that coin.
        #expect(
            CheckpointChain.verify(
                start: genesis, startScript: coin(other).scriptPubKey, startValue: 100_000, spends: spends,
                coinForEpoch: keys
            )
            .problem != nil)
        #expect(
            CheckpointChain.verify(
                start: OutPoint(txid: [UInt8](repeating: 5, count: 32), vout: 1),
                startScript: coin(epoch1).scriptPubKey, startValue: 100_000,
                spends: spends, coinForEpoch: keys
            ).problem != nil)
        // The node says epoch 2 has other validators.
        let (entries, problem) = CheckpointChain.verify(
            start: genesis, startScript: coin(epoch1).scriptPubKey, startValue: 100_000, spends: spends,
            coinForEpoch: { $0 == 2 ? coin(other) : keys($0) })
        #expect(entries.count == 1 && problem?.contains("epoch 2") == true, "\(problem ?? "")")
        // A corrupted signature (the chain as a server might lie about it).
        var forged = spends
        let signed = try #require(forged[1].inputs[0].witness.dropLast(2).firstIndex { !$0.isEmpty })
        forged[1].inputs[0].witness[signed][7] ^= 1
        let corrupted = CheckpointChain.verify(
            start: genesis, startScript: coin(epoch1).scriptPubKey, startValue: 100_000, spends: forged,
            coinForEpoch: keys)
        #expect(corrupted.entries.count == 1 && corrupted.problem?.contains("invalid signature") == true)
        // Out of order.
        #expect(
            CheckpointChain.verify(
                start: genesis, startScript: coin(epoch1).scriptPubKey, startValue: 100_000,
                spends: [spends[0], spends[0]],
                coinForEpoch: keys
            ).problem != nil)
    }

    @Test("a coin two epochs behind is handed straight to the latest set by its own keys; going back is refused")
    func directHandover() throws {
        let epoch3 = (0..<4).map { _ in Secp256k1.PrivateKey() }
        let coins: (UInt64) -> CheckpointCoin? = { [self] in
            $0 == 1 ? coin(epoch1) : $0 == 2 ? coin(epoch2) : $0 == 3 ? coin(epoch3) : nil
        }
        func spend(
            _ from: [Secp256k1.PrivateKey], _ outpoint: OutPoint, _ value: UInt64, to: [Secp256k1.PrivateKey],
            epoch: UInt64, round: UInt64
        )
            throws -> BitcoinTransaction
        {
            let payload = try CheckpointPayload(
                epoch: epoch, round: round, commitStateID: [UInt8](repeating: UInt8(round), count: 32))
            var psbt = try CheckpointTransaction.psbt(
                spending: outpoint, value: value, of: coin(from), to: coin(to), payload: payload, fee: 500
            ).validated()
            for key in from.prefix(coin(from).threshold) { try psbt.sign(with: key) }
            try psbt.finalize()
            return try psbt.extract()
        }
        // Epoch 1's keys sign epoch 2's end, paying epoch 3's coin; then epoch 3's keys go on.
        let handover = try spend(epoch1, genesis, 100_000, to: epoch3, epoch: 2, round: 40)
        let next = try spend(epoch3, OutPoint(txid: handover.txid, vout: 0), 99_500, to: epoch3, epoch: 3, round: 2)
        let walk = CheckpointChain.verify(
            start: genesis, startScript: coin(epoch1).scriptPubKey, startValue: 100_000, spends: [handover, next],
            coinForEpoch: coins)
        #expect(walk.problem == nil && walk.entries.count == 2, "\(walk.problem ?? "")")
        // The follower adopts it and follows epoch 3's coin.
        var follower = CheckpointFollower(coin: genesis, value: 100_000, script: coin(epoch1).scriptPubKey, epoch: 1)
        guard case .adopted = follower.spendSeen(handover, confirmedAt: 10, coinForEpoch: coins) else {
            Issue.record("the direct handover was not adopted")
            return
        }
        #expect(follower.coinEpoch == 3)
        // Epoch 3's coin cannot checkpoint epoch 2 (it is past it).
        let back = try spend(epoch3, OutPoint(txid: handover.txid, vout: 0), 99_500, to: epoch3, epoch: 2, round: 41)
        guard case .rejected(let why) = follower.spendSeen(back, confirmedAt: 11, coinForEpoch: coins) else {
            Issue.record("a checkpoint of an epoch before the coin's was adopted")
            return
        }
        #expect(why.contains("before the coin's epoch"), "\(why)")
    }

    @Test("an unchanged set locks two epochs with one script: the coin is not taken to be ahead of its epoch")
    func unchangedSet() throws {
        let same: (UInt64) -> CheckpointCoin? = { [self] in $0 <= 3 ? coin(epoch1) : nil }
        func spend(_ outpoint: OutPoint, _ value: UInt64, epoch: UInt64, round: UInt64) throws -> BitcoinTransaction {
            let payload = try CheckpointPayload(
                epoch: epoch, round: round, commitStateID: [UInt8](repeating: UInt8(round), count: 32))
            var psbt = try CheckpointTransaction.psbt(
                spending: outpoint, value: value, of: coin(epoch1), to: coin(epoch1), payload: payload, fee: 500
            ).validated()
            for key in epoch1.prefix(3) { try psbt.sign(with: key) }
            try psbt.finalize()
            return try psbt.extract()
        }
        // Two checkpoints of epoch 1 (the second its end), then one of epoch 2.
        let a = try spend(genesis, 100_000, epoch: 1, round: 5)
        let b = try spend(OutPoint(txid: a.txid, vout: 0), 99_500, epoch: 1, round: 9)
        let c = try spend(OutPoint(txid: b.txid, vout: 0), 99_000, epoch: 2, round: 2)
        let walk = CheckpointChain.verify(
            start: genesis, startScript: coin(epoch1).scriptPubKey, startValue: 100_000, spends: [a, b, c],
            coinForEpoch: same)
        #expect(walk.problem == nil && walk.entries.count == 3, "\(walk.problem ?? "")")
        var follower = CheckpointFollower(coin: genesis, value: 100_000, script: coin(epoch1).scriptPubKey, epoch: 1)
        for tx in [a, b, c] {
            guard case .adopted = follower.spendSeen(tx, confirmedAt: 10, coinForEpoch: same) else {
                Issue.record("\(tx.displayTxid) was not adopted (coin epoch \(follower.coinEpoch))")
                return
            }
        }
        #expect(follower.coinEpoch == 2)
    }
}
