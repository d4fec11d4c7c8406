import Bitcoin
import Checkpoint
import Foundation
import NodeCrypto
import Testing

@Suite("Checkpoint follower: the coin a node follows on Bitcoin")
struct CheckpointFollowerTests {
    let epoch1 = (0..<4).map { _ in Secp256k1.PrivateKey() }
    let epoch2 = (0..<5).map { _ in Secp256k1.PrivateKey() }
    let genesis = OutPoint(txid: [UInt8](repeating: 4, count: 32), vout: 1)

    func coin(_ keys: [Secp256k1.PrivateKey]) -> CheckpointCoin {
        try! CheckpointCoin(keys: keys.map(\.xOnlyPublicKey.rawRepresentation))
    }

    func coins(_ epoch: UInt64) -> CheckpointCoin? { epoch == 1 ? coin(epoch1) : epoch == 2 ? coin(epoch2) : nil }

    /// A checkpoint spending `outpoint`, signed by k of `from`'s keys.
    func checkpoint(
        _ outpoint: OutPoint, value: UInt64, from: [Secp256k1.PrivateKey], to: [Secp256k1.PrivateKey], epoch: UInt64,
        round: UInt64, fee: UInt64 = 500
    ) throws -> BitcoinTransaction {
        let payload = try CheckpointPayload(
            epoch: epoch, round: round, commitStateID: [UInt8](repeating: UInt8(round), count: 32))
        let unsigned = try CheckpointTransaction.psbt(
            spending: outpoint, value: value, of: coin(from), to: coin(to), payload: payload, fee: fee)
        var psbt = try unsigned.validated()
        for key in from.prefix(coin(from).threshold) { try psbt.sign(with: key) }
        try psbt.finalize()
        return try psbt.extract()
    }

    func follower() -> CheckpointFollower {
        CheckpointFollower(coin: genesis, value: 100_000, script: coin(epoch1).scriptPubKey, epoch: 1)
    }

    @Test("a mempool spend is reported without moving the coin; once confirmed it is adopted with its audit PSBT")
    func mempoolThenConfirmed() throws {
        var f = follower()
        let tx = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 7)
        guard case .inMempool(let pending) = f.spendSeen(tx, confirmedAt: nil, coinForEpoch: coins) else {
            Issue.record("expected a mempool sighting")
            return
        }
        #expect(pending.round == 7 && pending.bitcoinHeight == nil)
        #expect(f.coin == genesis, "the coin stays until the spend confirms (a fee bump spends the same coin)")
        let outcome = f.spendSeen(tx, confirmedAt: 120, coinForEpoch: coins, initiator: "initiator-id")
        guard case .adopted(let record) = outcome else {
            Issue.record("expected adoption, got \(outcome)")
            return
        }
        #expect(record.bitcoinHeight == 120 && record.fee == 500 && record.signatures == 3)
        #expect(record.initiator == "initiator-id")
        #expect(record.commitStateID == String(repeating: "07", count: 32))
        #expect(f.coin == OutPoint(txid: tx.txid, vout: 0) && f.coinValue == 99_500 && f.coinEpoch == 1)
        #expect(f.unconfirmed == nil && f.records.count == 1)
        // The audit PSBT is BIP174-final: extracting it gives the very transaction on Bitcoin.
        let audit = try PSBT(base64: try #require(record.psbt)).validated()
        #expect(try audit.extract() == tx)
    }

    @Test(
        "a mempool spend remembers when it was first seen, across sightings and a restart (for any leader's fee bump)")
    func mempoolAge() throws {
        var f = follower()
        let tx = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 7)
        _ = f.spendSeen(tx, confirmedAt: nil, coinForEpoch: coins, bitcoinTip: 100)
        _ = f.spendSeen(tx, confirmedAt: nil, coinForEpoch: coins, bitcoinTip: 103)
        let pending = try #require(f.unconfirmed)
        #expect(pending.firstSeenAtBitcoinHeight == 100, "it has waited since the first sighting")
        #expect(pending.vsize == tx.virtualSize && pending.feeRate == 500 / Double(tx.virtualSize))
        // The state file round-trips it: a restarted node still knows it is stuck.
        let restored = try JSONDecoder().decode(CheckpointFollower.self, from: JSONEncoder().encode(f))
        #expect(restored.unconfirmed?.firstSeenAtBitcoinHeight == 100)
        // A replacement (another txid) starts its own clock.
        let bumped = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 7, fee: 900)
        _ = f.spendSeen(bumped, confirmedAt: nil, coinForEpoch: coins, bitcoinTip: 104)
        #expect(f.unconfirmed?.txid == bumped.displayTxid && f.unconfirmed?.firstSeenAtBitcoinHeight == 104)
        f.unspent()
        #expect(f.unconfirmed == nil)
    }

    @Test("an epoch's last checkpoint moves the coin to the next set, which signs the one after")
    func epochHandover() throws {
        var f = follower()
        let first = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch2, epoch: 1, round: 30)
        #expect(f.spendSeen(first, confirmedAt: 101, coinForEpoch: coins) != .rejected(""))
        #expect(f.coinEpoch == 2 && f.coinScript == coin(epoch2).scriptPubKey)
        // Epoch 1's keys can no longer move it: the spend does not verify against the coin.
        let stale = try checkpoint(f.coin, value: f.coinValue, from: epoch1, to: epoch1, epoch: 2, round: 4)
        guard case .rejected = f.spendSeen(stale, confirmedAt: 102, coinForEpoch: coins) else {
            Issue.record("a spend by the old set must be rejected")
            return
        }
        let next = try checkpoint(f.coin, value: f.coinValue, from: epoch2, to: epoch2, epoch: 2, round: 4)
        guard case .adopted(let record) = f.spendSeen(next, confirmedAt: 102, coinForEpoch: coins) else {
            Issue.record("the new set's checkpoint must be adopted")
            return
        }
        #expect(record.epoch == 2 && record.signatures == 4 && f.records.count == 2)
        // Only the newest records are kept: the coin and the last checkpoint are untouched,
        // and a reorg can still undo the last one.
        let coinBefore = f.coin
        f.trim(keeping: 1)
        #expect(f.records.map(\.txid) == [record.txid] && f.coin == coinBefore)
        #expect(f.orphaned()?.txid == record.txid && f.coinEpoch == 2 && f.records.isEmpty)
    }

    @Test("too few signatures, a payload going back, or output 0 to a foreign script are rejected and change nothing")
    func rejections() throws {
        var f = follower()
        // A finalizer refuses too few signatures, so blank one in a valid witness instead.
        var weak = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 5)
        let signed = try #require(weak.inputs[0].witness.firstIndex { !$0.isEmpty })
        weak.inputs[0].witness[signed] = []
        guard case .rejected = f.spendSeen(weak, confirmedAt: 100, coinForEpoch: coins) else {
            Issue.record("2 of 4 signatures must not be adopted")
            return
        }
        let stranger = (0..<4).map { _ in Secp256k1.PrivateKey() }
        let foreign = try checkpoint(genesis, value: 100_000, from: epoch1, to: stranger, epoch: 1, round: 5)
        guard case .rejected(let why) = f.spendSeen(foreign, confirmedAt: 100, coinForEpoch: coins) else {
            Issue.record("output 0 to a foreign script must be rejected")
            return
        }
        #expect(why.contains("output 0"))
        #expect(f.coin == genesis && f.records.isEmpty)
        let good = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 9)
        _ = f.spendSeen(good, confirmedAt: 100, coinForEpoch: coins)
        let back = try checkpoint(f.coin, value: f.coinValue, from: epoch1, to: epoch1, epoch: 1, round: 8)
        guard case .rejected = f.spendSeen(back, confirmedAt: 101, coinForEpoch: coins) else {
            Issue.record("a checkpoint of an earlier round must be rejected")
            return
        }
        #expect(f.records.count == 1)
    }

    @Test("a spend naming an epoch this node does not know yet waits instead of being judged")
    func unknownEpochWaits() throws {
        var f = follower()
        let tx = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch2, epoch: 1, round: 30)
        guard case .notYet = f.spendSeen(tx, confirmedAt: 100, coinForEpoch: { $0 == 1 ? coin(epoch1) : nil }) else {
            Issue.record("without epoch 2's set the handover cannot be judged yet")
            return
        }
        #expect(f.coin == genesis)
        guard case .adopted = f.spendSeen(tx, confirmedAt: 100, coinForEpoch: coins) else {
            Issue.record("once epoch 2 is known it is adopted")
            return
        }
    }

    @Test(
        "adopted only at the configured depth; a reorg that removes it returns to the coin it spent, a sibling is then adopted"
    )
    func depthAndReorg() throws {
        var f = follower()
        let a = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 7)
        // In a block at 100, tip 101: two deep of three. Still an attempt in flight.
        guard
            case .inMempool(let confirming) = f.spendSeen(
                a, confirmedAt: 100, coinForEpoch: coins, bitcoinTip: 101, blockHash: "b100", depth: 3)
        else {
            Issue.record("adopted before it was three blocks deep")
            return
        }
        #expect(confirming.bitcoinHeight == 100 && f.coin == genesis)
        guard
            case .adopted(let record) = f.spendSeen(
                a, confirmedAt: 100, coinForEpoch: coins, bitcoinTip: 102, blockHash: "b100", depth: 3)
        else {
            Issue.record("not adopted three blocks deep")
            return
        }
        #expect(record.blockHash == "b100" && f.coin == OutPoint(txid: a.txid, vout: 0))
        // The block leaves the best chain: back to the genesis coin, which a sibling spends.
        let undone = f.orphaned()
        #expect(undone?.txid == a.displayTxid && f.coin == genesis && f.coinValue == 100_000 && f.records.isEmpty)
        let b = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 7, fee: 700)
        guard
            case .adopted(let sibling) = f.spendSeen(
                b, confirmedAt: 101, coinForEpoch: coins, bitcoinTip: 103, blockHash: "b101'", depth: 3)
        else {
            Issue.record("the sibling was not adopted")
            return
        }
        #expect(sibling.txid == b.displayTxid && f.coinValue == 99_300)
        // Survives a restart with the block hash, so the check goes on after it.
        let restored = try JSONDecoder().decode(CheckpointFollower.self, from: JSONEncoder().encode(f))
        #expect(restored.last?.blockHash == "b101'" && restored.last?.spent?.value == 100_000)
        #expect(f.orphaned()?.txid == b.displayTxid && f.orphaned() == nil, "the genesis coin has nothing before it")
    }

    @Test("a buried spend the rules reject raises the alarm (a mempool one does not); it clears if the spend goes")
    func alarm() throws {
        var f = follower()
        let weak = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 7)
        var stripped = weak
        stripped.inputs[0].witness[0] = []
        stripped.inputs[0].witness[1] = []
        _ = f.spendSeen(stripped, confirmedAt: nil, coinForEpoch: coins, bitcoinTip: 100)
        #expect(f.alarm == nil, "in the mempool: perhaps never mined")
        _ = f.spendSeen(stripped, confirmedAt: 101, coinForEpoch: coins, bitcoinTip: 101, depth: 3)
        #expect(f.alarm == nil, "not yet buried")
        guard case .rejected = f.spendSeen(stripped, confirmedAt: 101, coinForEpoch: coins, bitcoinTip: 103, depth: 3)
        else {
            Issue.record("the spend should be rejected")
            return
        }
        #expect(f.alarm?.contains(stripped.displayTxid) == true && f.coin == genesis)
        f.unspent()
        #expect(f.alarm == nil)
        // An adopted checkpoint contradicting the node's chain: the next poll finding the
        // new coin unspent does not clear it; only that checkpoint's orphaning does.
        let honest = try checkpoint(genesis, value: 100_000, from: epoch1, to: epoch1, epoch: 1, round: 8)
        _ = f.spendSeen(honest, confirmedAt: 102, coinForEpoch: coins, bitcoinTip: 102, blockHash: "h")
        f.raiseAlarm("contradicts this chain")
        f.unspent()
        #expect(f.alarm == "contradicts this chain")
        _ = f.orphaned()
        #expect(f.alarm == nil)
    }
}
