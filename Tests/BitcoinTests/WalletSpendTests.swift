import Bitcoin
import NodeCrypto
import Testing

@Suite("Wallet payments: coin selection, change, fees, dust")
struct WalletSpendTests {
    let key = Secp256k1.PrivateKey()
    var own: Script { try! TaprootOutput(internalKey: key.xOnlyPublicKey).scriptPubKey }
    let destination = Script.p2wpkh(Secp256k1.PrivateKey().publicKey)

    func coin(_ value: UInt64, confirmed: Bool = true, _ n: UInt8 = 0) -> WalletCoin {
        WalletCoin(
            outpoint: OutPoint(txid: [UInt8](repeating: n, count: 32), vout: 0), value: value, confirmed: confirmed)
    }

    @Test("largest confirmed coins first; change back to the wallet; the fee matches the signed size")
    func selectionAndChange() throws {
        let coins = [coin(5_000, 1), coin(80_000, 2), coin(200_000, confirmed: false, 3), coin(40_000, 4)]
        let plan = try WalletSpend.plan(coins: coins, amount: 100_000, to: destination, change: own, feeRate: 2)
        #expect(plan.inputs.map(\.value) == [80_000, 40_000], "confirmed first, largest first")
        #expect(plan.change == 120_000 - 100_000 - plan.fee)
        let tx = try WalletSpend.sign(plan: plan, key: key, amount: 100_000, to: destination, lockTime: 500)
        #expect(tx.outputs.count == 2 && tx.outputs[1].scriptPubKey == own)
        #expect(tx.lockTime == 500 && tx.inputs.allSatisfy { $0.sequence == TxIn.rbfSequence })
        // The estimate is an upper bound of the real size, within a few vbytes.
        let rate = Double(plan.fee) / Double(tx.virtualSize)
        #expect(rate >= 2 && rate < 2.1, "\(rate) sat/vB for \(tx.virtualSize) vB")
    }

    @Test("change below dust goes to the fee; dust payments, shortfalls and absurd fees are refused")
    func refusals() throws {
        // 10,300 in, 10,000 out: what is left cannot pay for a change output above dust.
        let tight = try WalletSpend.plan(
            coins: [coin(10_300)], amount: 10_000, to: destination, change: own, feeRate: 2)
        #expect(tight.change == 0 && tight.fee == 300)
        #expect(throws: WalletSpend.Failure.dust(amount: 100, limit: 294)) {
            try WalletSpend.plan(coins: [coin(10_000)], amount: 100, to: destination, change: own, feeRate: 1)
        }
        #expect(throws: WalletSpend.Failure.noCoins) {
            try WalletSpend.plan(coins: [], amount: 1_000, to: destination, change: own, feeRate: 1)
        }
        do {
            _ = try WalletSpend.plan(coins: [coin(5_000)], amount: 10_000, to: destination, change: own, feeRate: 1)
            Issue.record("an underfunded payment was planned")
        } catch .insufficient(let needed, let available) {
            #expect(available == 5_000 && needed > 10_000)
        } catch {
            Issue.record("\(error)")
        }
        #expect(throws: WalletSpend.Failure.self) {
            try WalletSpend.plan(coins: [coin(1_000_000)], amount: 1_000, to: destination, change: own, feeRate: 500)
        }
    }
}
