import Foundation
import Node
import NodeCrypto
import TestSupport
import Testing

@Suite("Node key files")
struct KeyStoreTests {
    func mode(_ url: URL) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        return (attributes[.posixPermissions] as? Int ?? -1) & 0o777
    }

    @Test func createWritesPrivateFilesAndLoadRoundTrips() throws {
        let root = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("alice")
        let store = KeyStore(directory: dir)
        let created = try store.create()
        #expect(try mode(dir) == 0o700)
        #expect(try mode(dir.appendingPathComponent(KeyStore.identityFile)) == 0o600)
        #expect(try mode(dir.appendingPathComponent(KeyStore.bitcoinFile)) == 0o600)
        let loaded = try store.load()
        #expect(loaded.nodeID == created.nodeID)
        #expect(loaded.bitcoin.xOnlyPublicKey == created.bitcoin.xOnlyPublicKey)
        let message = Array("hello".utf8)
        #expect(created.identity.publicKey.isValidSignature(loaded.identity.signature(for: message), for: message))
    }

    @Test func secondCreateRefusesAndKeepsTheOriginalKeys() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = KeyStore(directory: dir)
        let first = try store.create()
        let before = try Data(contentsOf: dir.appendingPathComponent(KeyStore.identityFile))
        #expect(throws: KeyStoreError.self) { try store.create() }
        #expect(try Data(contentsOf: dir.appendingPathComponent(KeyStore.identityFile)) == before)
        #expect(try store.load().nodeID == first.nodeID)
    }

    @Test func corruptedOrMismatchedKeyFilesAreReportedWithTheirPath() throws {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = KeyStore(directory: dir)
        try store.create()
        let identity = dir.appendingPathComponent(KeyStore.identityFile)
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: identity)) as? [String: String])
        json["public_key"] = Ed25519.PrivateKey().publicKey.hex
        try JSONSerialization.data(withJSONObject: json).write(to: identity)
        let mismatch = #expect(throws: KeyStoreError.self) { try store.load() }
        #expect(mismatch?.message.contains(KeyStore.identityFile) == true)
        #expect(mismatch?.message.contains("does not match") == true)

        try Data("{not json".utf8).write(to: identity)
        #expect(throws: KeyStoreError.self) { try store.load() }

        json["private_key"] = "abcd"
        try JSONSerialization.data(withJSONObject: json).write(to: identity)
        #expect(throws: KeyStoreError.self) { try store.load() }

        try FileManager.default.removeItem(at: identity)
        let missing = #expect(throws: KeyStoreError.self) { try store.load() }
        #expect(missing?.message.contains("p2pnode init") == true)
    }
}

@Suite("Node state files")
struct StateFileTests {
    @Test(
        "the checkpoint fee override survives a restart: a rate, back to the estimate, or never set; garbage is an error"
    )
    func feeRateOverride() throws {
        let directory = try makeTemporaryDirectory("fee-override")
        defer { try? FileManager.default.removeItem(at: directory) }
        let files = StateFiles(directory: directory)
        #expect(try files.loadFeeRateOverride() == nil, "never set: the config file's bitcoin.fee_rate applies")
        try files.saveFeeRateOverride(7.5)
        #expect(try files.loadFeeRateOverride() == .some(7.5))
        try files.saveFeeRateOverride(nil)
        #expect(try files.loadFeeRateOverride() == .some(nil), "back to the estimate, also after a restart")
        for bad in [#"{"override": -1}"#, #"{"override": "fast"}"#, "not json"] {
            try Data(bad.utf8).write(to: files.feeRateURL)
            let error = #expect(throws: ConfigError.self) { try files.loadFeeRateOverride() }
            #expect(error?.description.contains("checkpoint-fee-rate.json") == true)
        }
    }
}
