import Foundation
import NodeCrypto

#if canImport(Glibc)
    import Glibc
#endif

/// The two long-lived keys of a node: its Ed25519 identity (the node id, also the
/// validator key) and its secp256k1 Bitcoin key (checkpoint multisig and wallet).
public struct NodeKeys: Sendable {
    public let identity: Ed25519.PrivateKey
    public let bitcoin: Secp256k1.PrivateKey

    public init(identity: Ed25519.PrivateKey, bitcoin: Secp256k1.PrivateKey) {
        self.identity = identity
        self.bitcoin = bitcoin
    }

    /// The node id: hex of the Ed25519 public key.
    public var nodeID: String { identity.publicKey.hex }
}

/// An error reading or writing a node's data directory, with a message meant for operators.
public struct KeyStoreError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Key files in a node's data directory.
///
/// Layout (documented in docs/configuration.md):
/// - `node_key.json`: `{"type":"ed25519","private_key":HEX(seed),"public_key":HEX}`
/// - `bitcoin_key.json`: `{"type":"secp256k1","private_key":HEX,"xonly_public_key":HEX}`
///
/// Files are created with O_EXCL and mode 0600, the directory with mode 0700, so a
/// second `init` can never overwrite a key and no other user can read one.
public struct KeyStore: Sendable {
    public static let identityFile = "node_key.json"
    public static let bitcoinFile = "bitcoin_key.json"

    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    /// `~/.sidenode/NAME`, the default data directory of a named node. `~` is `$HOME` when
    /// set (as git, ssh and bitcoind read it), else the account's home directory.
    public static func defaultDirectory(
        name: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> URL {
        let home =
            environment["HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0, isDirectory: true) }
            ?? FileManager.default.homeDirectoryForCurrentUser
        return home.appendingPathComponent(".sidenode", isDirectory: true)
            .appendingPathComponent(name, isDirectory: true)
    }

    private struct IdentityFile: Codable {
        var type: String
        var private_key: String
        var public_key: String
    }

    private struct BitcoinFile: Codable {
        var type: String
        var private_key: String
        var xonly_public_key: String
    }

    var identityPath: URL { directory.appendingPathComponent(Self.identityFile) }
    var bitcoinPath: URL { directory.appendingPathComponent(Self.bitcoinFile) }

    /// Creates the directory and fresh keys. Refuses if either key file exists.
    @discardableResult
    public func create(
        keys: NodeKeys = NodeKeys(identity: Ed25519.PrivateKey(), bitcoin: Secp256k1.PrivateKey())
    )
        throws -> NodeKeys
    {
        for path in [identityPath, bitcoinPath] where FileManager.default.fileExists(atPath: path.path) {
            throw KeyStoreError("refusing to overwrite existing key file \(path.path)")
        }
        try createPrivateDirectory(directory)
        let identity = IdentityFile(
            type: "ed25519", private_key: keys.identity.seed.hex, public_key: keys.identity.publicKey.hex)
        let bitcoin = BitcoinFile(
            type: "secp256k1", private_key: keys.bitcoin.rawRepresentation.hex,
            xonly_public_key: keys.bitcoin.xOnlyPublicKey.hex)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeExclusive(try encoder.encode(identity), to: identityPath)
        do {
            try writeExclusive(try encoder.encode(bitcoin), to: bitcoinPath)
        } catch {
            // Leave no half-initialised directory behind.
            try? FileManager.default.removeItem(at: identityPath)
            throw error
        }
        return keys
    }

    /// Loads and cross-checks both keys; every failure names the file and the reason.
    public func load() throws -> NodeKeys {
        let decoder = JSONDecoder()
        let identityData = try read(identityPath)
        let bitcoinData = try read(bitcoinPath)
        let identity: Ed25519.PrivateKey
        let bitcoin: Secp256k1.PrivateKey
        do {
            let file = try decoder.decode(IdentityFile.self, from: identityData)
            guard file.type == "ed25519" else { throw KeyStoreError("key type is \(file.type), expected ed25519") }
            identity = try Ed25519.PrivateKey(seed: Hex.decode(file.private_key))
            guard identity.publicKey.hex == file.public_key.lowercased() else {
                throw KeyStoreError("public_key does not match private_key")
            }
        } catch {
            throw KeyStoreError("\(identityPath.path): \(error)")
        }
        do {
            let file = try decoder.decode(BitcoinFile.self, from: bitcoinData)
            guard file.type == "secp256k1" else { throw KeyStoreError("key type is \(file.type), expected secp256k1") }
            bitcoin = try Secp256k1.PrivateKey(rawRepresentation: Hex.decode(file.private_key))
            guard bitcoin.xOnlyPublicKey.hex == file.xonly_public_key.lowercased() else {
                throw KeyStoreError("xonly_public_key does not match private_key")
            }
        } catch {
            throw KeyStoreError("\(bitcoinPath.path): \(error)")
        }
        return NodeKeys(identity: identity, bitcoin: bitcoin)
    }

    private func read(_ url: URL) throws -> Data {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw KeyStoreError("\(url.path) does not exist; create keys with `p2pnode init NAME --data-dir DIR`")
        }
        return try Data(contentsOf: url)
    }
}

/// Creates `url` (and parents) and forces mode 0700 on the leaf, whatever the umask.
public func createPrivateDirectory(_ url: URL) throws {
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    guard chmod(url.path, 0o700) == 0 else {
        throw KeyStoreError("cannot set mode 0700 on \(url.path): \(String(cString: strerror(errno)))")
    }
}

/// Writes a new file with mode 0600; fails if it already exists (O_EXCL), so
/// concurrent `init`s cannot race one key over another.
public func writeExclusive(_ data: Data, to url: URL) throws {
    let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
        throw KeyStoreError("cannot create \(url.path): \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    // The umask can only remove bits, but make the mode explicit anyway.
    _ = fchmod(fd, 0o600)
    try data.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw KeyStoreError("cannot write \(url.path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }
    guard fsync(fd) == 0 else { throw KeyStoreError("cannot sync \(url.path): \(String(cString: strerror(errno)))") }
}
