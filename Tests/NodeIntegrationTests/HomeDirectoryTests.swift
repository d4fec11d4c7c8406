import Foundation
import Node
import Testing

@Suite("p2pnode init honours HOME")
struct HomeDirectoryTests {
    /// An operator who points HOME elsewhere (a service account, a container, a test)
    /// expects keys there, as git and ssh do, not in the password database's home.
    @Test("init NAME writes under $HOME/.sidenode/NAME with 0700/0600 modes")
    func initUsesHome() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("sidenode-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        let process = Process()
        process.executableURL = try LocalTestnet.findBinary()
        process.arguments = ["init", "carol"]
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = home.path
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let dir = home.appendingPathComponent(".sidenode/carol")
        let keys = try KeyStore(directory: dir).load()
        #expect(keys.nodeID.count == 64)
        let fileMode =
            try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("node_key.json").path)[
                .posixPermissions] as? Int
        let dirMode = try FileManager.default.attributesOfItem(atPath: dir.path)[.posixPermissions] as? Int
        #expect(fileMode == 0o600 && dirMode == 0o700)
    }

    @Test("an empty HOME falls back to the account's home")
    func emptyHome() {
        let dir = KeyStore.defaultDirectory(name: "n", environment: ["HOME": ""])
        #expect(dir.path.hasSuffix("/.sidenode/n") && dir.path != "/.sidenode/n")
        #expect(KeyStore.defaultDirectory(name: "n", environment: ["HOME": "/srv/x"]).path == "/srv/x/.sidenode/n")
    }
}
