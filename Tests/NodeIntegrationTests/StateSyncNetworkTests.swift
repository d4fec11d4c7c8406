import Foundation
import Node
import NodeCrypto
import Testing

@Suite("Joining by state snapshot (multi-process)", .serialized)
struct StateSyncNetworkTests {
    func status(_ net: LocalTestnet, _ i: Int) throws -> JSONValue { try net.admin(i).call("getstatus") }
    func height(_ net: LocalTestnet, _ i: Int) -> Int {
        Int((try? status(net, i)["committed_height"]?.numberValue) ?? 0)
    }
    func stateID(_ net: LocalTestnet, _ i: Int, _ h: Int) throws -> String? {
        try net.admin(i).call("getblock", .object(["height": .int(h)]))["state_id"]?.stringValue
    }

    @Test(
        "a new node downloads a verified snapshot across epoch changes, installs it, catches up the tail and reaches every validator's root"
    )
    func joinBySnapshot() throws {
        let net = try LocalTestnet(nodes: 5)
        defer { net.shutdown() }
        let funder = try KeyStore(directory: net.dataDir(0)).load()
        try net.enableConsensus(validators: 4, balances: [funder.nodeID: 1_000_000], epochLength: 30)
        for i in 0..<5 {
            let extra = "\n[state]\nsnapshot_interval = 100\n" + (i == 4 ? "sync = \"snapshot\"\n" : "")
            let config = try String(contentsOf: net.configFile(i), encoding: .utf8)
            try (config + extra).write(to: net.configFile(i), atomically: true, encoding: .utf8)
        }
        for i in 0..<4 { try net.start(i) }
        for i in 0..<4 { try net.waitReady(i) }
        // Accounts in the state, so the snapshot carries more than the validator set.
        var recipients: [String] = []
        var txIDs: [String] = []
        for _ in 0..<6 {
            let recipient = Ed25519.PrivateKey().publicKey.hex
            recipients.append(recipient)
            let sent = try net.cli([
                "tx", "send", "--data-dir", net.dataDir(0).path, "--to", recipient, "--amount", "11", "--fee", "1",
            ])
            #expect(sent.status == 0, "\(sent.output)")
            txIDs.append(sent.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        try waitUntil(timeout: 120, "the validators to pass the snapshot at height 100") {
            (0..<4).allSatisfy { height(net, $0) >= 110 }
        }
        // Each transfer's receipt: executed (code 0), with the gas its reads and writes cost.
        for id in txIDs {
            let receipts = try net.admin(0).call("gettx", .object(["id": .string(id)]))["receipts"]?.arrayValue ?? []
            #expect(receipts.count == 1 && receipts.first?["code"]?.numberValue == 0, "\(receipts)")
            #expect((receipts.first?["gas"]?.numberValue ?? 0) > 0)
        }
        try net.start(4)
        try net.waitReady(4)
        do {
            try waitUntil(timeout: 90, "the new node to install the snapshot and reach the tip") {
                height(net, 4) >= height(net, 0) - 2 && height(net, 4) > 100
            }
        } catch {
            Issue.record(
                "node 4 log: \(net.log(4).split(separator: "\n").filter { !$0.contains("reason=banned") }.prefix(60).joined(separator: "\n"))"
            )
            throw error
        }
        let log = net.log(4)
        #expect(log.contains("snapshot installed"), "\(log.suffix(2_000))")
        #expect(log.contains("snapshot download"), "progress is logged")
        // It holds no block before the snapshot: the state came by snapshot, not by replay.
        #expect(throws: (any Error).self, "no block at 50") { try stateID(net, 4, 50) }
        // Then it follows consensus: the same state root as a validator at the same height.
        let next = height(net, 0) + 5
        try waitUntil(timeout: 60, "the new node to follow new blocks") { height(net, 4) >= next }
        let common = min(height(net, 4), height(net, 1))
        #expect(try stateID(net, 4, common) != nil && stateID(net, 4, common) == stateID(net, 1, common))
        for recipient in recipients {
            #expect(
                try net.admin(4).call("getbalance", .object(["account": .string(recipient)]))["balance"]?.numberValue
                    == 11)
        }
        // A light client checks a balance against the genesis alone, with a proof from the new node.
        let answer = try net.admin(4).call(
            "getaccount", .object(["account": .string(recipients[0]), "proof": .bool(true)]))
        #expect(answer["balance"]?.numberValue == 11)
        let proofFile = net.root.appendingPathComponent("proof.json")
        try answer.prettyText.write(to: proofFile, atomically: true, encoding: .utf8)
        let genesis = net.root.appendingPathComponent("genesis.json").path
        let verified = try net.cli(["verify-proof", "--genesis", genesis, proofFile.path])
        #expect(verified.status == 0 && verified.output.contains("balance 11"), "\(verified.output)")
        #expect(verified.output.contains("epoch change(s) checked"), "\(verified.output)")
        // One changed hex digit in the proof: refused.
        var hex = Array(try #require(answer["proof"]?["hex"]?.stringValue))
        let spot = hex.count - 40
        hex[spot] = hex[spot] == "0" ? "1" : "0"
        try String(hex).write(to: proofFile, atomically: true, encoding: .utf8)
        let forged = try net.cli(["verify-proof", "--genesis", genesis, proofFile.path])
        #expect(forged.status != 0 && forged.output.contains("REJECTED"), "\(forged.output)")

        // A restart loads the installed state from the store.
        net.stop(4)
        try net.start(4)
        try net.waitReady(4)
        let later = height(net, 0) + 3
        try waitUntil(timeout: 60, "the restarted node to follow again") { height(net, 4) >= later }
    }
}
