import Foundation
import Gossip
import Ledger
import Node
import NodeCrypto
import Testing

@testable import Consensus
@testable import Noise

@Suite("Multi-process DiemBFT", .serialized)
struct ConsensusNetworkTests {
    func status(_ net: LocalTestnet, _ i: Int) throws -> JSONValue { try net.admin(i).call("getstatus") }
    func height(_ net: LocalTestnet, _ i: Int) -> Int {
        Int((try? status(net, i)["committed_height"]?.numberValue) ?? 0)
    }
    func blockID(_ net: LocalTestnet, _ i: Int, _ h: Int) throws -> String? {
        try net.admin(i).call("getblock", .object(["height": .int(h)]))["block_id"]?.stringValue
    }

    /// `nodes` nodes in one genesis, the first 4 validators (node 0's account funded),
    /// the validators started. Epochs are short (25 blocks), so every test crosses epoch
    /// changes. Each suite has its own port range, so suites running in parallel never
    /// collide.
    func startValidators(nodes: Int) throws -> LocalTestnet {
        let net = try LocalTestnet(nodes: nodes)
        do {
            let funder = try KeyStore(directory: net.dataDir(0)).load()
            try net.enableConsensus(validators: 4, balances: [funder.nodeID: 1_000_000], epochLength: 25)
            for i in 0..<4 { try net.start(i) }
            for i in 0..<4 { try net.waitReady(i) }
            return net
        } catch {
            net.shutdown()
            throw error
        }
    }

    /// `count` transfers of `amount` (fee 1) from node 0's account to a new account, through the CLI.
    func sendTransfers(_ net: LocalTestnet, count: Int, amount: Int) throws -> String {
        let recipient = Ed25519.PrivateKey().publicKey.hex
        for _ in 0..<count {
            let sent = try net.cli([
                "tx", "send", "--data-dir", net.dataDir(0).path, "--to", recipient, "--amount", "\(amount)", "--fee",
                "1",
            ])
            #expect(sent.status == 0, "\(sent.output)")
        }
        return recipient
    }

    @Test("4 validators commit transfers and agree on every block; kill -9 of one: the rest go on, it rejoins")
    func commitAgreeCrashRejoin() throws {
        let net = try startValidators(nodes: 4)
        defer { net.shutdown() }
        try waitUntil(timeout: 60, "every validator to commit 5 blocks") { (0..<4).allSatisfy { height(net, $0) >= 5 } }

        // Signed transfers go through the DAG into blocks and execute everywhere alike.
        let recipient = try sendTransfers(net, count: 5, amount: 100)
        try waitUntil(timeout: 60, "the transfers to execute on every node") {
            try (0..<4).allSatisfy {
                try net.admin($0).call("getbalance", .object(["account": .string(recipient)]))["balance"]?.numberValue
                    == 500
            }
        }
        let states = try (0..<4).map { try status(net, $0)["commit_state_id"]?.stringValue }
        let common = (0..<4).map { height(net, $0) }.min()!
        for h in stride(from: 1, through: common, by: max(1, common / 20)) {
            let ids = try (0..<4).map { try blockID(net, $0, h) }
            #expect(Set(ids).count == 1 && ids[0] != nil, "height \(h): \(ids)")
        }
        _ = states

        // Prometheus metrics are served over HTTP.
        let http = try RawTCPClient(port: net.metricsPort(0))
        http.send(Array("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8))
        var response = ""
        while !response.contains("sidenode_p2p_peers"), let bytes = http.receive(), !bytes.isEmpty {
            response += String(decoding: bytes, as: UTF8.self)
        }
        #expect(response.hasPrefix("HTTP/1.1 200"))
        for metric in [
            "sidenode_consensus_round ", "sidenode_consensus_commits_total",
            "sidenode_consensus_commit_latency_seconds_bucket",
            "sidenode_consensus_round_duration_seconds_count", "sidenode_p2p_peers",
            "sidenode_consensus_timeouts_total{reason=\"local_timer\"}", "sidenode_sync_syncing ",
            "sidenode_sync_target_height ",
        ] {
            #expect(response.contains(metric), "metric \(metric)")
        }

        // kill -9 a validator: the other three keep committing.
        net.kill9(2)
        let before = height(net, 0)
        try waitUntil(timeout: 60, "commits without validator 2") { height(net, 0) >= before + 10 }
        // Restarted, it recovers its safety state and blocks from SQLite, catches up and agrees.
        try net.start(2)
        try net.waitReady(2)
        let target = height(net, 0)
        try waitUntil(timeout: 90, "validator 2 to catch up") { height(net, 2) >= target + 3 }
        let top = min(height(net, 2), height(net, 0))
        for h in [1, top / 2, top - 1, top] where h >= 1 {
            #expect(try blockID(net, 2, h) == blockID(net, 0, h), "height \(h) after the restart")
        }
        #expect(
            try net.admin(2).call("getbalance", .object(["account": .string(recipient)]))["balance"]?.numberValue == 500
        )
    }

    /// Issue 14 §1 over the wire: an outside peer (no validator key) sends a validator
    /// direct votes that claim the validator's own id, with garbage signatures, while
    /// another validator is down. Before the fix the validator counted them as its own and
    /// dropped its real votes as duplicates, so the three live validators stopped forming
    /// QCs; now the forgery is refused, recorded as evidence and the peer discouraged.
    @Test(
        "an outside peer's forged 'own' votes: refused, recorded, the peer discouraged, the chain commits with one down"
    )
    func forgedOwnVotesOverTheWire() throws {
        let net = try startValidators(nodes: 4)
        defer { net.shutdown() }
        try waitUntil(timeout: 60, "every validator to commit 3 blocks") { (0..<4).allSatisfy { height(net, $0) >= 3 } }
        net.kill9(3)
        let target = try status(net, 0)
        let victim = try Ed25519.PublicKey(
            rawRepresentation: try Hex.decode(try #require(try net.admin(0).call("getinfo")["node_id"]?.stringValue)))
        let epoch = UInt64(try #require(target["epoch"]?.numberValue))
        let round = UInt64(try #require(target["round"]?.numberValue))

        let evil = Ed25519.PrivateKey()
        var (client, channel) = try outsidePeer(port: net.port(0), identity: evil)
        client.send(try channel.send(GossipMessage.hello(listenPort: 0, agent: "forger").encoded()))
        // A vote for each of the next rounds, each "from" node 0 itself.
        for r in round..<(round + 40) {
            let info = VoteInfo(
                blockID: Hash32.of(Array("forged \(r)".utf8)), round: r, parentID: .zero, parentRound: r - 1,
                execStateID: .zero, epoch: epoch)
            let vote = VoteMsg(
                voteInfo: info,
                commitInfo: LedgerCommitInfo(epoch: epoch, round: r, commitStateID: nil, voteInfoHash: info.hash),
                highCommitQC: QuorumCert.genesis(epoch: epoch, blockID: .zero, stateID: .zero), sender: victim,
                signature: try Ed25519.Signature(rawRepresentation: SecureRandom.bytes(64)))
            let payload = [UInt8(0x10)] + ConsensusMessage.vote(vote).encoded()
            client.send(try channel.send(GossipMessage.direct(payload: payload).encoded()))
        }
        let closed = client.closesSoon()
        #expect(closed, "the node drops the connection of a peer that forges consensus messages")
        let evidence = try net.admin(0).call("getevidence")
        let recent = evidence["recent"]?.arrayValue ?? []
        #expect(
            recent.contains {
                $0["kind"]?.stringValue == "forged_message" && $0["peer"]?.stringValue == evil.publicKey.hex
            },
            "getevidence names the forger: \(evidence)")
        let bans = try net.admin(0).call("listdiscouraged").arrayValue ?? []
        #expect(bans.contains { $0["target"]?.stringValue == "id:\(evil.publicKey.hex)" })
        // With validator 3 down every QC needs all three live validators, node 0's real vote included.
        let before = height(net, 1)
        try waitUntil(timeout: 60, "10 commits with validator 3 down after the forgery") {
            (0..<3).allSatisfy { height(net, $0) >= before + 10 }
        }
        for h in [before + 1, before + 5, before + 10] {
            let ids = try (0..<3).map { try blockID(net, $0, h) }
            #expect(Set(ids).count == 1 && ids[0] != nil, "height \(h): \(ids)")
        }
    }

    @Test("a full node started late syncs the committed chain by ranges, reaches the same state root, then follows")
    func lateFullNodeCatchesUp() throws {
        let net = try startValidators(nodes: 5)
        defer { net.shutdown() }
        let recipient = try sendTransfers(net, count: 3, amount: 7)
        try waitUntil(timeout: 90, "the validators to commit 40 blocks") {
            (0..<4).allSatisfy { height(net, $0) >= 40 }
        }

        // Node 4 is in the genesis file but not a validator; it knows only node 0's address.
        try net.start(4)
        try net.waitReady(4)
        let target = height(net, 0)
        try waitUntil(timeout: 90, "the late node to reach height \(target)") { height(net, 4) >= target }
        let late = try status(net, 4)
        #expect(late["validator"] == .bool(false))
        let synced = Int(late["catch_up"]?["blocks"]?.numberValue ?? 0)
        #expect(synced >= target - Int(8), "most of the chain came by catch-up ranges, not block by block (\(synced))")
        #expect(net.log(4).contains("catching up"), "progress is logged")
        for h in [1, target / 3, target / 2, target] {
            #expect(try blockID(net, 4, h) == blockID(net, 0, h), "height \(h)")
        }
        #expect(
            try net.admin(4).call("getbalance", .object(["account": .string(recipient)]))["balance"]?.numberValue == 21)
        // It then follows consensus: same state root as a validator at the same height.
        let next = height(net, 0) + 5
        try waitUntil(timeout: 60, "the late node to follow new blocks") { height(net, 4) >= next }
        let common = min(height(net, 4), height(net, 1))
        func stateAfter(_ i: Int) throws -> String? {
            try net.admin(i).call("getblock", .object(["height": .int(common)]))["state_id"]?.stringValue
        }
        #expect(try stateAfter(4) != nil && stateAfter(4) == stateAfter(1), "state root at height \(common)")
        #expect(try status(net, 4)["syncing"] == .bool(false))

        // It synced across epoch changes: epoch 1 ended with a quorum-signed proof.
        let first = try net.admin(4).call("getepoch", .object(["epoch": .int(1)]))
        #expect(first["last_height"] == .int(25))
        #expect((first["proof"]?["signers"]?.arrayValue?.count ?? 0) >= 3)
        let syncedEpoch = Int(try status(net, 4)["epoch"]?.numberValue ?? 0)
        #expect(syncedEpoch >= 2, "the late node crossed at least one epoch change")

        // A quorum (3 of 4) approves adding node 4; it signs QCs from the next epoch on.
        let keys = try KeyStore(directory: net.dataDir(4)).load()
        let sockets = (0..<3).flatMap { ["--socket", net.dataDir($0).appendingPathComponent("admin.sock").path] }
        let added = try net.cli(
            ["validator", "add", keys.nodeID, "--bitcoin-key", keys.bitcoin.xOnlyPublicKey.hex] + sockets)
        #expect(added.status == 0, "\(added.output)")
        #expect(added.output.contains("submitted"), "\(added.output)")
        try waitUntil(timeout: 60, "node 4 to become a validator") {
            (try? status(net, 4)["validator"]) == .bool(true)
        }
        let epoch = Int(try status(net, 4)["epoch"]?.numberValue ?? 0)
        // Asked of node 4, which is in that epoch (node 0 may be a block behind entering it).
        let info = try net.admin(4).call("getepoch", .object(["epoch": .int(epoch)]))
        #expect(info["validators"]?.arrayValue?.count == 5)
        #expect(info["validators"]?.arrayValue?.contains { $0["node_id"]?.stringValue == keys.nodeID } == true)
        // Committed blocks of that epoch carry commit QCs that node 4 signed.
        let start = Int(info["first_height"]?.numberValue ?? 0)
        var signedByNew = 0
        try waitUntil(timeout: 60, "a commit QC signed by node 4") {
            signedByNew = 0
            let top = height(net, 0)
            guard top >= start else { return false }
            for h in start...top {
                let block = try net.admin(0).call("getblock", .object(["height": .int(h)]))
                guard block["epoch"] == .int(epoch) else { continue }
                if block["commit_proof"]?["signers"]?.arrayValue?.contains(.string(keys.nodeID)) == true {
                    signedByNew += 1
                }
            }
            return signedByNew >= 3
        }
        #expect(net.log(4).contains("epoch \(epoch) begins"))
    }
}
