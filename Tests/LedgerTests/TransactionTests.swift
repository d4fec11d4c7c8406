import Ledger
import NodeCrypto
import Testing
import Wire

@Suite("Transactions: canonical encoding and standalone rules")
struct TransactionTests {
    let alice = Ed25519.PrivateKey()
    let bob = Ed25519.PrivateKey()

    func someID(_ byte: UInt8) -> TxID { try! TxID(bytes: [UInt8](repeating: byte, count: 32)) }

    @Test func roundTripAndIdentity() throws {
        let tx = Transaction(
            chainID: "c", author: alice, seq: 1, fee: 10, payload: .transfer(to: bob.publicKey, amount: 5),
            predecessors: [someID(2), someID(1), someID(2)])
        #expect(tx.predecessors == [someID(1), someID(2)], "sorted and de-duplicated")
        let decoded = try Transaction.decode(tx.encoded)
        #expect(decoded == tx)
        #expect(decoded.id == tx.id)
        #expect(tx.id.bytes == BLAKE2b.hash256(tx.encoded))
        #expect(tx.validateStandalone(chainID: "c") == nil)
        let data = Transaction(
            chainID: "c", author: alice, seq: 2, fee: 0, payload: .data([1, 2, 3]), predecessors: [tx.id])
        #expect(try Transaction.decode(data.encoded) == data)
    }

    @Test func nonCanonicalOrMalformedEncodingsAreRejected() throws {
        let tx = Transaction(
            chainID: "c", author: alice, seq: 1, fee: 0, payload: .data([9]), predecessors: [someID(1), someID(2)])
        var cases: [[UInt8]] = [[], tx.encoded + [0], Array(tx.encoded.dropLast()), [2] + tx.encoded.dropFirst()]
        // Swap the two predecessors: unsorted, so not canonical.
        var swapped = tx.encoded
        let predStart = swapped.count - 64 - 64
        let first = Array(swapped[predStart..<predStart + 32])
        swapped.replaceSubrange(predStart..<predStart + 32, with: swapped[predStart + 32..<predStart + 64])
        swapped.replaceSubrange(predStart + 32..<predStart + 64, with: first)
        cases.append(swapped)
        // Duplicate predecessors.
        var duplicated = tx.encoded
        duplicated.replaceSubrange(predStart + 32..<predStart + 64, with: first)
        cases.append(duplicated)
        // Unknown payload kind: the kind field sits right after version, chain id, author, seq, fee.
        var unknownKind = tx.encoded
        let kindOffset = 1 + 2 + 1 + 32 + 8 + 8
        unknownKind[kindOffset + 1] = 99
        cases.append(unknownKind)
        // An oversized data payload and too many predecessors are refused by decode.
        let big = Transaction(
            chainID: "c", author: alice, seq: 1, fee: 0, payload: .data([UInt8](repeating: 0, count: 16 * 1024 + 1)),
            predecessors: [])
        cases.append(big.encoded)
        let many = Transaction(
            chainID: "c", author: alice, seq: 1, fee: 0, payload: .data([]), predecessors: (1...17).map { someID($0) })
        cases.append(many.encoded)
        for bytes in cases {
            #expect(throws: WireError.self) { try Transaction.decode(bytes) }
        }
        for _ in 0..<3000 {
            _ = try? Transaction.decode(SecureRandom.bytes(Int.random(in: 0...300)))
        }
    }

    @Test func standaloneRules() throws {
        let good = Transaction(chainID: "c", author: alice, seq: 1, fee: 0, payload: .data([1]), predecessors: [])
        #expect(good.validateStandalone(chainID: "other")?.contains("wrong chain id") == true)
        var forged = good.encoded
        forged[1 + 3 + 32 + 8 + 7] ^= 1  // the fee's last byte: the signature no longer matches
        let decoded = try Transaction.decode(forged)
        #expect(decoded.validateStandalone(chainID: "c") == "invalid signature")
        let zeroSeq = Transaction(chainID: "c", author: alice, seq: 0, fee: 0, payload: .data([]), predecessors: [])
        #expect(zeroSeq.validateStandalone(chainID: "c") != nil)
        let zeroAmount = Transaction(
            chainID: "c", author: alice, seq: 1, fee: 0, payload: .transfer(to: bob.publicKey, amount: 0),
            predecessors: [])
        #expect(zeroAmount.validateStandalone(chainID: "c") != nil)
    }
}
