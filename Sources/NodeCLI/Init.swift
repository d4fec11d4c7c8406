import ArgumentParser
import Foundation
import Node

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a node's identity key and Bitcoin key.",
        discussion: """
            Writes node_key.json (Ed25519 node identity; its public key is the node id) and \
            bitcoin_key.json (secp256k1 key for Bitcoin checkpoints and the wallet) into the \
            data directory, mode 0600, directory mode 0700. Existing keys are never overwritten.
            """
    )

    @Argument(help: "A name for the node; the default data directory is ~/.sidenode/NAME.")
    var name: String

    @Option(name: .customLong("data-dir"), help: "Data directory to create the keys in.")
    var dataDir: String?

    func validate() throws {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw ValidationError("NAME must be a plain name without '/', got '\(name)'")
        }
    }

    func run() async throws {
        let directory =
            dataDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? KeyStore.defaultDirectory(name: name)
        let store = KeyStore(directory: directory)
        let keys: NodeKeys
        do {
            keys = try store.create()
        } catch let error as KeyStoreError {
            throw CLIError(error.message)
        }
        print("created keys for \(name) in \(directory.path)")
        print("node_id:          \(keys.nodeID)")
        print("bitcoin_xonly:    \(keys.bitcoin.xOnlyPublicKey.hex)")
    }
}

/// A failure reported to the operator as one line on stderr with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
