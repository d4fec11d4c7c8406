import ArgumentParser
import Foundation
import Node
import TestSupport
import Testing

@testable import NodeCLI

@Suite("p2pnode init")
struct InitCommandTests {
    @Test func initCreatesKeysAndASecondRunRefuses() async throws {
        let dir = try makeTemporaryDirectory().appendingPathComponent("alice")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        let first = try #require(try P2PNode.parseAsRoot(["init", "alice", "--data-dir", dir.path]) as? Init)
        try await first.run()
        let keys = try KeyStore(directory: dir).load()
        #expect(keys.nodeID.count == 64)

        let second = try #require(try P2PNode.parseAsRoot(["init", "alice", "--data-dir", dir.path]) as? Init)
        let error = await #expect(throws: CLIError.self) { try await second.run() }
        #expect(error?.description.contains("refusing to overwrite") == true)
        #expect(try KeyStore(directory: dir).load().nodeID == keys.nodeID)
    }

    @Test func badNamesAreRejectedAtParseTime() {
        #expect(throws: (any Error).self) { try P2PNode.parseAsRoot(["init", "../etc"]) }
        #expect(throws: (any Error).self) { try P2PNode.parseAsRoot(["init"]) }
    }

    @Test func helpNamesEverySubcommand() {
        let help = P2PNode.helpMessage()
        #expect(help.contains("init"))
        #expect(help.contains("bench"))
        #expect(help.contains("run") && help.contains("peers") && help.contains("admin"))
    }
}

@Suite("p2pnode command line")
struct CommandLineTests {
    @Test("`p2pnode --bootstrap FILE` is `p2pnode run --bootstrap FILE`")
    func runIsTheDefaultSubcommand() throws {
        let implicit = try #require(
            try P2PNode.parseAsRoot(["--bootstrap", "peers.txt", "--data-dir", "/tmp/d"]) as? Run)
        let explicit = try #require(
            try P2PNode.parseAsRoot(["run", "--bootstrap", "peers.txt", "--data-dir", "/tmp/d"]) as? Run)
        #expect(implicit.bootstrap == "peers.txt" && explicit.bootstrap == "peers.txt")
        #expect(implicit.dataDir == explicit.dataDir)
    }

    @Test func adminAndPeersParse() throws {
        let admin = try #require(
            try P2PNode.parseAsRoot(["admin", "--socket", "/tmp/a.sock", "setban", "{\"ip\":\"1.2.3.4\"}"]) as? Admin)
        #expect(admin.method == "setban" && admin.socket.path == "/tmp/a.sock")
        let peers = try #require(try P2PNode.parseAsRoot(["peers", "--data-dir", "/tmp/n"]) as? Peers)
        #expect(peers.socket.path == "/tmp/n/admin.sock")
    }
}
