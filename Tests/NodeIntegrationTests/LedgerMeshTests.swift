import Foundation
import Gossip
import Ledger
import Node
import NodeCrypto
import Testing

@testable import Noise

@Suite("Multi-process BFT-CRDT", .serialized)
struct LedgerMeshTests {
    func digest(_ net: LocalTestnet, _ i: Int) throws -> String {
        try net.admin(i).call("getmempool")["digest"]?.stringValue ?? ""
    }

    @Test("1,000 transactions round-robin to 4 nodes converge; a node restarted mid-load catches up")
    func convergenceUnderLoad() throws {
        // Each suite has its own port range, so suites running in parallel never collide.
        let net = try LocalTestnet(nodes: 4)
        defer { net.shutdown() }
        for i in 0..<4 { try net.start(i) }
        for i in 0..<4 { try net.waitReady(i) }
        try waitUntil(timeout: 30, "a connected mesh") {
            try (0..<4).allSatisfy { (try net.admin($0).call("getinfo")["connections"]?.numberValue ?? 0) >= 2 }
        }
        let authors = (0..<4).map { _ in Ed25519.PrivateKey() }
        var last: [TxID?] = [nil, nil, nil, nil]
        var seq: [UInt64] = [0, 0, 0, 0]
        var submitted = 0
        func submit(author a: Int, to node: Int) throws {
            seq[a] += 1
            let tx = Transaction(
                chainID: "sidenode-it", author: authors[a], seq: seq[a], fee: 1,
                payload: submitted % 3 == 0
                    ? .transfer(to: authors[(a + 1) % 4].publicKey, amount: UInt64(submitted + 1))
                    : .data(Array("tx \(submitted)".utf8)),
                predecessors: last[a].map { [$0] } ?? [])
            let result = try net.admin(node).call("submittx", .object(["hex": .string(tx.encoded.hex)]))
            #expect(result["id"]?.stringValue == tx.id.hex)
            last[a] = tx.id
            submitted += 1
        }
        for k in 0..<500 { try submit(author: k % 4, to: k % 4) }
        // Stop node 3 mid-load; the load goes on at the others.
        net.stop(3)
        for k in 500..<1000 { try submit(author: k % 3, to: k % 3) }
        #expect(submitted == 1000)
        try waitUntil(timeout: 30, "nodes 0–2 to agree") {
            let digests = try (0..<3).map { try digest(net, $0) }
            let count = try net.admin(0).call("getmempool")["count"]?.numberValue
            return Set(digests).count == 1 && count == 1000
        }
        // Restarted, node 3 catches up through anti-entropy alone: nothing is resent by hand.
        try net.start(3)
        try net.waitReady(3)
        try waitUntil(timeout: 60, "node 3 to catch up") {
            try digest(net, 3) == digest(net, 0)
        }
        let mempool = try net.admin(3).call("getmempool")
        #expect(mempool["count"]?.numberValue == 1000)
        #expect(mempool["pending"]?.numberValue == 0)
        // Any transaction can be looked up on any node.
        let tx = try net.admin(2).call("gettx", .object(["id": .string(last[0]!.hex)]))
        #expect(tx["author"]?.stringValue == authors[0].publicKey.hex)

        // The CLI signs with the node's key and submits through the admin socket.
        let recipient = Ed25519.PrivateKey().publicKey.hex
        let sent = try net.cli(["tx", "send", "--data-dir", net.dataDir(1).path, "--to", recipient, "--amount", "42"])
        #expect(sent.status == 0, "\(sent.output)")
        let sentID = sent.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let data = try net.cli(["tx", "data", "--data-dir", net.dataDir(1).path, "--text", "hello ledger"])
        #expect(data.status == 0, "\(data.output)")
        try waitUntil(timeout: 20, "the CLI transactions on node 0") {
            (try? net.admin(0).call("gettx", .object(["id": .string(sentID)]))) != nil
        }
        let viaCLI = try net.admin(0).call("gettx", .object(["id": .string(sentID)]))
        #expect(viaCLI["payload"]?["amount"]?.numberValue == 42)
        #expect(viaCLI["payload"]?["to"]?.stringValue == recipient)
        #expect(viaCLI["seq"]?.numberValue == 1)
        let bad = try net.cli(["tx", "send", "--data-dir", net.dataDir(1).path, "--to", "abcd", "--amount", "1"])
        #expect(bad.status != 0 && bad.output.contains("--to must be a node id"))

        // submitbatch: length-prefixed binary, judged in order, failures named by index.
        func framed(_ txs: [[UInt8]]) -> String {
            var blob: [UInt8] = []
            for tx in txs {
                let n = UInt32(tx.count)
                blob += [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + tx
            }
            return Data(blob).base64EncodedString()
        }
        let batchAuthor = Ed25519.PrivateKey()
        let first = Transaction(
            chainID: "sidenode-it", author: batchAuthor, seq: 1, fee: 0, payload: .data([1]), predecessors: [])
        let second = Transaction(
            chainID: "sidenode-it", author: batchAuthor, seq: 2, fee: 0, payload: .data([2]), predecessors: [first.id])
        var forged = second.encoded
        forged[forged.count - 1] ^= 1  // the signature's last byte
        let reply = try net.admin(2).call("submitbatch", .object(["txs": .string(framed([first.encoded, forged]))]))
        #expect(reply["accepted"]?.numberValue == 1)
        #expect(reply["errors"]?.arrayValue?.first?["index"]?.numberValue == 1, "\(reply)")
        #expect(try net.admin(2).call("gettx", .object(["id": .string(first.id.hex)]))["seq"]?.numberValue == 1)
        // A truncated frame or text that is not base64 is refused whole, with the format named.
        var truncated = [UInt8](Data(base64Encoded: framed([second.encoded]))!)
        truncated.removeLast()
        for bad in [Data(truncated).base64EncodedString(), "not base64!"] {
            #expect(throws: AdminCallError.self) {
                try net.admin(2).call("submitbatch", .object(["txs": .string(bad)]))
            }
        }
        #expect(try net.admin(2).call("getmempool")["count"]?.numberValue == 1003, "nothing of a refused batch entered")
    }

    @Test("a Byzantine sender is discouraged; orphan floods stay bounded")
    func byzantineSender() throws {
        let net = try LocalTestnet(nodes: 1)
        defer { net.shutdown() }
        try net.start(0, bootstrap: false)
        try net.waitReady(0)
        let evil = Ed25519.PrivateKey()
        var (client, channel) = try outsidePeer(port: net.port(0), identity: evil)
        func gossip(_ tx: [UInt8]) throws {
            client.send(try channel.send(GossipMessage.publish(payload: [LedgerSync.transactionTopic] + tx).encoded()))
        }
        // A flood of orphans (predecessors nobody has) is held, bounded, never forwarded.
        let author = Ed25519.PrivateKey()
        for i in 0..<1_500 {
            let ghost = try TxID(bytes: SecureRandom.bytes(32))
            try gossip(
                Transaction(
                    chainID: "sidenode-it", author: author, seq: UInt64(i + 1), fee: 0, payload: .data([1]),
                    predecessors: [ghost]
                ).encoded)
        }
        try waitUntil(timeout: 20, "the orphans to be processed") {
            (try net.admin(0).call("getmempool")["pending"]?.numberValue ?? 0) >= 900
        }
        let pending = try net.admin(0).call("getmempool")["pending"]?.numberValue ?? 0
        #expect(pending <= 1_000, "pending per source is bounded (got \(pending))")
        // Then forged signatures: rejected, scored down, discouraged.
        for i in 0..<10 {
            var bytes = Transaction(
                chainID: "sidenode-it", author: author, seq: UInt64(5000 + i), fee: 0, payload: .data([2]),
                predecessors: []
            ).encoded
            bytes[1 + 2 + 11 + 32 + 8 + 7] ^= 1  // the fee: the signature no longer matches
            try gossip(bytes)
        }
        try waitUntil(timeout: 20, "the sender to be discouraged") {
            (try net.admin(0).call("listdiscouraged").arrayValue ?? []).contains {
                $0["target"]?.stringValue == "id:\(evil.publicKey.hex)"
            }
        }
        #expect(try net.admin(0).call("getmempool")["count"]?.numberValue == 0)
        #expect(try net.admin(0).call("getinfo")["connections"]?.numberValue == 0)
    }
}
