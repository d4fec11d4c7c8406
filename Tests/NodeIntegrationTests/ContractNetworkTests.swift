import Foundation
import Node
import NodeCrypto
import TestSupport
import Testing

@Suite("Contracts on a live testnet (multi-process)", .serialized)
struct ContractNetworkTests {
    func height(_ net: LocalTestnet, _ i: Int) -> Int {
        Int((try? net.admin(i).call("getstatus")["committed_height"]?.numberValue) ?? 0)
    }

    func field(_ output: String, _ name: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix("\(name): ") }.map { String($0.dropFirst(name.count + 2)) }
    }

    @Test(
        "CW20 through the CLI: stored, instantiated, transferred; every validator answers the same query with the same gas and root; a node joining by snapshot fetches the code and answers too"
    )
    func cw20OnTestnet() throws {
        let net = try LocalTestnet(nodes: 5)
        defer { net.shutdown() }
        let owner = try KeyStore(directory: net.dataDir(0)).load()
        try net.enableConsensus(validators: 4, balances: [owner.nodeID: 100_000_000], epochLength: 1_000)
        for i in 0..<5 {
            let extra = "\n[state]\nsnapshot_interval = 100\n" + (i == 4 ? "sync = \"snapshot\"\n" : "")
            let config = try String(contentsOf: net.configFile(i), encoding: .utf8)
            try (config + extra).write(to: net.configFile(i), atomically: true, encoding: .utf8)
        }
        for i in 0..<4 { try net.start(i) }
        for i in 0..<4 { try net.waitReady(i) }
        let dir = ["--data-dir", net.dataDir(0).path]

        let stored = try net.cli(
            ["contract", "store"] + dir + [try ExampleContracts.path("cw20"), "--gas", "5000000"])
        #expect(stored.status == 0, "\(stored.output)")
        let codeID = try #require(field(stored.output, "code_id"), "\(stored.output)")

        // Addresses as contracts see them (bech32): the owner's from its node, a fresh key's from the CLI.
        let ownerAddress = try #require(try net.admin(0).call("getinfo")["account_address"]?.stringValue)
        #expect(try net.admin(1).call("listcodes").arrayValue?.first?["creator"]?.stringValue == ownerAddress)
        let converted = try net.cli(["contract", "address", Ed25519.PrivateKey().publicKey.rawRepresentation.hex])
        let recipientAddress = try #require(converted.output.split(separator: "\n").first.map(String.init))
        #expect(recipientAddress.hasPrefix("side1"), "\(converted.output)")
        let instantiateMsg = """
            {"name":"Side Token","symbol":"SIDE","decimals":6,"initial_balances":[{"address":"\(ownerAddress)","amount":"1000000"}],"mint":null}
            """
        let instantiated = try net.cli(
            ["contract", "instantiate"] + dir + [
                codeID, instantiateMsg, "--label", "side-token", "--admin", owner.nodeID,
            ])
        #expect(instantiated.status == 0, "\(instantiated.output)")
        let token = try #require(field(instantiated.output, "contract_address"), "\(instantiated.output)")
        // The recipient: an account's bech32 form, got from the node for a fresh key.
        #expect(try net.admin(0).call("listcontracts").arrayValue?.count == 1)
        let transfer = try net.cli(
            ["contract", "execute"] + dir + [
                token, #"{"transfer":{"recipient":"\#(recipientAddress)","amount":"2500"}}"#,
            ])
        #expect(transfer.status == 0, "\(transfer.output)")
        #expect(transfer.output.contains("action: transfer"), "events are shown: \(transfer.output)")
        let txid = try #require(field(transfer.output, "txid"))
        let gas = field(transfer.output, "gas_used")

        // Every validator: the same receipt gas, the same balances, the same state root.
        let committed = height(net, 0)
        try waitUntil(timeout: 30, "every validator to commit the transfer") {
            (0..<4).allSatisfy { height(net, $0) >= committed }
        }
        for i in 0..<4 {
            let receipt = try net.admin(i).call("gettx", .object(["id": .string(txid)]))["receipts"]?.arrayValue?.first
            #expect(receipt?["gas"]?.numberValue.map { String(Int($0)) } == gas, "node \(i) gas")
            let balance = try net.admin(i).call(
                "querycontract",
                .object([
                    "contract": .string(token), "msg": .string(#"{"balance":{"address":"\#(recipientAddress)"}}"#),
                ]))
            #expect(balance["data"]?["balance"]?.stringValue == "2500", "node \(i): \(balance)")
            let root = try net.admin(i).call("getblock", .object(["height": .int(committed)]))["state_id"]?.stringValue
            let root0 = try net.admin(0).call("getblock", .object(["height": .int(committed)]))["state_id"]?.stringValue
            #expect(root != nil && root == root0, "node \(i) state root at \(committed)")
        }
        let query = try net.cli(
            ["contract", "query", "--data-dir", net.dataDir(2).path, token, #"{"token_info":{}}"#])
        #expect(query.output.contains(#""total_supply":"1000000""#), "\(query.output)")

        // A late node joins by snapshot: it holds the code only after fetching it by checksum.
        try waitUntil(timeout: 120, "the validators to pass a snapshot at height 100") {
            (0..<4).allSatisfy { height(net, $0) >= 105 }
        }
        try net.start(4)
        try net.waitReady(4)
        try waitUntil(timeout: 90, "the new node to fetch the code and follow") {
            height(net, 4) > 100 && height(net, 4) >= height(net, 0) - 3
        }
        #expect(net.log(4).contains("contract code fetched"), "\(net.log(4).suffix(1_500))")
        let late = try net.admin(4).call(
            "querycontract",
            .object(["contract": .string(token), "msg": .string(#"{"balance":{"address":"\#(recipientAddress)"}}"#)]))
        #expect(late["data"]?["balance"]?.stringValue == "2500", "\(late)")
        let state = try net.admin(4).call(
            "getcontractstate", .object(["contract": .string(token), "proof": .bool(true)]))
        #expect((state["entries"]?.arrayValue?.count ?? 0) >= 3)
        // Each entry's proof checks offline against the genesis alone.
        let proofHex = try #require(state["entries"]?.arrayValue?.first?["proof_hex"]?.stringValue)
        let proofFile = net.root.appendingPathComponent("contract-proof.hex")
        try proofHex.write(to: proofFile, atomically: true, encoding: .utf8)
        let verified = try net.cli([
            "verify-proof", "--genesis", net.root.appendingPathComponent("genesis.json").path, proofFile.path,
        ])
        #expect(verified.status == 0 && verified.output.contains("contract \(token) key"), "\(verified.output)")
    }
}
