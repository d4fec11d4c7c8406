import ArgumentParser
import Bitcoin
import Checkpoint
import Esplora
import Foundation
import Node
import NodeCrypto

/// The checkpoint coin: its address, funding it, and verifying the chain of checkpoints
/// on Bitcoin as a light client would.
struct CheckpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "The Bitcoin checkpoint coin: address, fund, verify.",
        subcommands: [Address.self, Fund.self, Verify.self]
    )

    struct GenesisOption: ParsableArguments {
        @Option(help: "The chain's genesis file.") var genesis: String

        func load() throws -> Genesis {
            do {
                return try Genesis.load(Data(contentsOf: URL(fileURLWithPath: genesis)), source: genesis)
            } catch let error as ConfigError {
                throw CLIError("\(error)")
            } catch {
                throw CLIError("cannot read \(genesis): \(error.localizedDescription)")
            }
        }
    }

    /// Epoch 1's coin: the genesis validators' Bitcoin keys.
    static func firstCoin(_ genesis: Genesis) throws -> CheckpointCoin {
        do { return try CheckpointCoin(keys: genesis.validators.map { try Hex.decode($0.bitcoin_xonly) }) } catch {
            throw CLIError("genesis validators' Bitcoin keys: \(error)")
        }
    }

    struct Address: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print epoch 1's checkpoint coin address and descriptor (fund it with `checkpoint fund`).")
        @OptionGroup var genesis: GenesisOption
        @OptionGroup var network: BtcCommand.NetworkOptions

        func run() async throws {
            let coin = try CheckpointCommand.firstCoin(try genesis.load())
            let (net, _) = try network.resolve()
            print(coin.address(net))
            print("descriptor: \(coin.descriptor)")
            print("threshold:  \(coin.threshold) of \(coin.keys.count) validators")
        }
    }

    struct Fund: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the first checkpoint coin at epoch 1's script from NAME's wallet.",
            discussion: """
                Prints the coin's outpoint; with --write it goes into the genesis file \
                (checkpoint.coin and coin_value), which changes the genesis block id: fund \
                before the chain starts.
                """)
        @OptionGroup var genesis: GenesisOption
        @Option(help: "Key directory name or path that pays.") var from: String
        @Option(help: "Sats in the coin (its checkpoints' fees come out of it).") var amount: UInt64
        @Option(name: .customLong("fee-rate"), help: "sat/vB (default: the server's estimate).") var feeRate: Double?
        @Flag(help: "Write the outpoint into the genesis file.") var write = false
        @Flag(help: "Wait until the funding transaction confirms.") var wait = false
        @OptionGroup var network: BtcCommand.NetworkOptions

        func run() async throws {
            var file = try genesis.load()
            let coin = try CheckpointCommand.firstCoin(file)
            let (net, client) = try network.client()
            let wallet = try BtcCommand.Wallet(from)
            do {
                let (txid, _, _) = try await wallet.pay(
                    amount: amount, to: coin.scriptPubKey, feeRate: feeRate, target: 6, network: net, client: client)
                print("coin \(txid):0 value \(amount) sats at \(coin.address(net))")
                if write {
                    file.checkpoint.coin = "\(txid):0"
                    file.checkpoint.coin_value = amount
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try encoder.encode(file).write(to: URL(fileURLWithPath: genesis.genesis))
                    print("wrote checkpoint.coin into \(genesis.genesis); genesis block \(file.blockID.hex)")
                }
                if wait { try await BtcCommand.Send.waitForConfirmation(client, txid) }
            } catch let error as EsploraError {
                throw CLIError("\(error)")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk the checkpoint coin from the genesis outpoint and verify every checkpoint.",
            discussion: """
                Follows each spend of the coin (esplora `outspend`), checks that it reveals a \
                multi_a leaf committed in the coin with ⌊2n/3⌋+1 of the epoch's keys and \
                valid signatures, and decodes its OP_RETURN; the first epoch's keys come from \
                the genesis file. Prints a table; exits 1 on any mismatch.
                """)
        @OptionGroup var genesis: GenesisOption
        @OptionGroup var network: BtcCommand.NetworkOptions

        func run() async throws {
            let file = try genesis.load()
            guard let (txid, vout) = file.checkpoint.coinOutpoint, let value = file.checkpoint.coin_value else {
                throw CLIError("\(genesis.genesis) names no checkpoint coin (checkpoint.coin)")
            }
            let coin = try CheckpointCommand.firstCoin(file)
            let (_, client) = try network.client()
            var spends: [BitcoinTransaction] = []
            var confirmations: [String: Int] = [:]
            do {
                let tip = try await client.tipHeight()
                // The genesis coin must exist with the value and script the genesis names.
                let funding = try BitcoinTransaction(hex: try await client.transactionHex(txid: txid))
                guard Int(vout) < funding.outputs.count,
                    funding.outputs[Int(vout)] == TxOut(value: value, scriptPubKey: coin.scriptPubKey)
                else {
                    print(
                        "genesis coin \(txid):\(vout) is not \(value) sats at epoch 1's script: the genesis does not match"
                    )
                    throw ExitCode(1)
                }
                var current = (txid: txid, vout: vout)
                while true {
                    let spend = try await client.outspend(txid: current.txid, vout: current.vout)
                    guard spend.spent, let next = spend.txid else { break }
                    spends.append(try BitcoinTransaction(hex: try await client.transactionHex(txid: next)))
                    if let height = spend.status?.block_height { confirmations[next] = tip - height + 1 }
                    current = (next, 0)
                }
            } catch let error as EsploraError {
                throw CLIError("\(error)")
            } catch let error as BitcoinError {
                throw CLIError("\(error)")
            }
            let genesisKeys = coin.keys
            let (entries, problem) = CheckpointChain.verify(
                start: try OutPoint(displayTxid: txid, vout: vout), startScript: coin.scriptPubKey, startValue: value,
                spends: spends, keysForEpoch: { $0 == 1 ? genesisKeys : nil })
            print(
                "epoch    round  commit_state_id                                                   signers  conf  txid")
            for e in entries {
                print(
                    String(format: "%5d %8d  ", e.payload.epoch, e.payload.round) + e.payload.commitStateID.hex
                        + String(format: "  %3d/%-3d %5d  ", e.signatures, e.keys.count, confirmations[e.txid] ?? 0)
                        + e.txid)
            }
            if let problem {
                print("MISMATCH: \(problem)")
                throw ExitCode(1)
            }
            print("\(entries.count) checkpoints verified from \(txid):\(vout)")
        }
    }
}
