import ArgumentParser
import Bitcoin
import Esplora
import Foundation
import Node
import NodeCrypto

/// The Bitcoin wallet of a node's key (`bitcoin_key.json`): a single-key taproot address
/// (key path, no script tree) on the chosen network, over an esplora server.
struct BtcCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "btc",
        abstract: "Bitcoin wallet of a node's key: address, balance, send (over esplora).",
        discussion: """
            NAME is a key directory made by `p2pnode init NAME` (~/.sidenode/NAME), or a path \
            to one. The same commands work on Mutinynet (the default, https://mutinynet.com/api), \
            signet, testnet and a local regtest chain (tools/regtest/regtest.py, --esplora \
            http://127.0.0.1:3002).
            """,
        subcommands: [Address.self, Balance.self, Send.self]
    )

    struct NetworkOptions: ParsableArguments {
        @Option(help: "mainnet, testnet, signet, mutinynet or regtest.")
        var network: String = "mutinynet"

        @Option(help: "Esplora API base URL (default: the network's public server).")
        var esplora: String?

        func resolve() throws -> (Bitcoin.Network, EsploraClient?) {
            guard let network = Bitcoin.Network(rawValue: network) else {
                throw CLIError(
                    "--network must be one of \(Bitcoin.Network.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard let url = esplora ?? network.defaultEsplora else { return (network, nil) }
            do { return (network, try EsploraClient(url)) } catch { throw CLIError("\(error)") }
        }

        func client() throws -> (Bitcoin.Network, EsploraClient) {
            let (network, client) = try resolve()
            guard let client else {
                throw CLIError("\(network.rawValue) has no public esplora server: pass --esplora URL")
            }
            return (network, client)
        }
    }

    /// A wallet: the key of NAME and its address.
    struct Wallet {
        let name: String
        let key: Secp256k1.PrivateKey
        let output: TaprootOutput

        init(_ name: String) throws {
            let directory =
                name.contains("/") ? URL(fileURLWithPath: name) : KeyStore.defaultDirectory(name: name)
            do {
                key = try KeyStore(directory: directory).load().bitcoin
            } catch {
                throw CLIError(
                    "no keys for \(name) in \(directory.path) (create them with `p2pnode init \(name)`): \(error)")
            }
            self.name = name
            output = try TaprootOutput(internalKey: key.xOnlyPublicKey)
        }

        func address(_ network: Bitcoin.Network) -> String { output.address(network).description }

        /// Pays `amount` to `destination` from this wallet's coins (the `btc send` and
        /// `checkpoint fund` payment): coin selection, fee from the server's estimate for
        /// `target` unless `feeRate` is given, signing, broadcast. A payment the coins
        /// cannot make exits with status 2, nothing broadcast.
        func pay(
            amount: UInt64, to destination: Script, feeRate: Double?, target: Int, network net: Bitcoin.Network,
            client: EsploraClient
        ) async throws -> (txid: String, tx: BitcoinTransaction, plan: WalletSpend.Plan) {
            let coins = try await client.utxos(address: address(net)).map {
                WalletCoin(
                    outpoint: try OutPoint(displayTxid: $0.txid, vout: $0.vout), value: $0.value,
                    confirmed: $0.status.confirmed)
            }
            var rate = feeRate ?? 0
            if feeRate == nil { rate = max(1, try await client.feeRate(target: target)) }
            guard rate >= 1, rate <= 1_000 else { throw CLIError("fee rate \(rate) sat/vB is outside 1…1000") }
            let plan: WalletSpend.Plan
            do {
                plan = try WalletSpend.plan(
                    coins: coins, amount: amount, to: destination, change: output.scriptPubKey, feeRate: rate)
            } catch .noCoins {
                throw fail("\(name) (\(address(net))) has no coins on \(net.rawValue): fund it first; nothing was sent")
            } catch {
                throw fail("\(name): \(error); nothing was sent")
            }
            let tx = try WalletSpend.sign(
                plan: plan, key: key, amount: amount, to: destination, lockTime: UInt32(try await client.tipHeight()))
            return (try await client.broadcast(hex: tx.hex), tx, plan)
        }
    }

    struct Address: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print NAME's address and descriptor.")
        @Argument(help: "Key directory name or path.") var name: String
        @OptionGroup var network: NetworkOptions

        func run() async throws {
            let (net, _) = try network.resolve()
            let wallet = try Wallet(name)
            print(wallet.address(net))
            print("descriptor: \(Descriptor.tr(wallet.key.xOnlyPublicKey.rawRepresentation))")
        }
    }

    struct Balance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show NAME's confirmed and unconfirmed balance.")
        @Argument(help: "Key directory name or path.") var name: String
        @OptionGroup var network: NetworkOptions

        func run() async throws {
            let (net, client) = try network.client()
            let wallet = try Wallet(name)
            let address = wallet.address(net)
            let utxos: [EsploraClient.UTXO]
            do { utxos = try await client.utxos(address: address) } catch { throw CLIError("\(error)") }
            let confirmed = utxos.filter(\.status.confirmed).reduce(UInt64(0)) { $0 + $1.value }
            let pending = utxos.filter { !$0.status.confirmed }.reduce(UInt64(0)) { $0 + $1.value }
            print("address      \(address)")
            print("confirmed    \(confirmed) sats")
            print("unconfirmed  \(pending) sats")
            print("coins        \(utxos.count)")
        }
    }

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send sats from NAME to an address or another NAME (RBF enabled).")
        @Option(help: "Key directory name or path that pays.") var from: String
        @Option(help: "Destination address, or a key directory name.") var to: String
        @Option(help: "Amount in sats.") var amount: UInt64
        @Option(name: .customLong("fee-rate"), help: "sat/vB (default: the server's estimate for --target).")
        var feeRate: Double?
        @Option(help: "Confirmation target in blocks for the fee estimate.") var target: Int = 6
        @Flag(help: "Wait until the transaction confirms, showing progress.") var wait = false
        @OptionGroup var network: NetworkOptions

        func run() async throws {
            let (net, client) = try network.client()
            let wallet = try Wallet(from)
            let destination: Script
            if let address = try? SegwitAddress(to, network: net) {
                destination = address.scriptPubKey
            } else if to.contains("1") && !to.contains("/") && (try? SegwitAddress(to)) != nil {
                throw CLIError("\(to) is an address of another network, not \(net.rawValue)")
            } else {
                destination = try Wallet(to).output.scriptPubKey
            }
            do {
                let (txid, tx, plan) = try await wallet.pay(
                    amount: amount, to: destination, feeRate: feeRate, target: target, network: net, client: client)
                print("sent \(amount) sats to \(to) in \(txid)")
                print(
                    "fee \(plan.fee) sats (\(String(format: "%.1f", Double(plan.fee) / Double(tx.virtualSize))) sat/vB, \(tx.virtualSize) vB), change \(plan.change) sats, RBF enabled"
                )
                if wait { try await Self.waitForConfirmation(client, txid) }
            } catch let error as EsploraError {
                throw CLIError("\(error)")
            }
        }

        static func waitForConfirmation(_ client: EsploraClient, _ txid: String) async throws {
            let start = Date()
            while true {
                let status = try await client.status(txid: txid)
                if status.confirmed {
                    print(
                        "confirmed in block \(status.block_height ?? 0) after \(Int(Date().timeIntervalSince(start))) s"
                    )
                    return
                }
                let waited = Int(Date().timeIntervalSince(start))
                if waited % 10 < 2 { print("waiting for confirmation… \(waited) s") }
                try await Task.sleep(for: .seconds(2))
            }
        }
    }
}

/// A payment that cannot be made: the message on stderr and exit status 2 (nothing was
/// sent), so scripts can tell it from a usage or network error (status 1).
func fail(_ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    return ExitCode(2)
}
