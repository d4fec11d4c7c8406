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
    }
}
