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
        @Option(
            help: ArgumentHelp(
                "A node's admin socket: also check each checkpoint against its certified chain.",
                discussion: "Every epoch's keys come from the node (getepoch), and each state id must be the node's "
                    + "committed state at the block the QC commits (its parent, one round earlier).",
                valueName: "SOCKET"))
        var node: String?

        func run() async throws {
            let file = try genesis.load()
            guard let (txid, vout) = file.checkpoint.coinOutpoint, let value = file.checkpoint.coin_value else {
                throw CLIError("\(genesis.genesis) names no checkpoint coin (checkpoint.coin)")
            }
            let admin = node.map { AdminClient(socketPath: $0) }
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
            var epochKeys: [UInt64: [[UInt8]]] = [1: coin.keys]
            var epochs: [UInt64: JSONValue] = [:]
            if let admin {
                // The node's validator sets for every epoch the checkpoints name.
                let named = Set(spends.compactMap { try? CheckpointPayload(script: $0.outputs[1].scriptPubKey).epoch })
                for epoch in named.sorted() {
                    let info = try admin.call("getepoch", .object(["epoch": .int(epoch)]))
                    epochs[epoch] = info
                    epochKeys[epoch] = (info["validators"]?.arrayValue ?? []).compactMap {
                        $0["bitcoin_xonly"]?.stringValue.flatMap { try? Hex.decode($0) }
                    }
                }
            }
            let known = epochKeys
            var (entries, problem) = CheckpointChain.verify(
                start: try OutPoint(displayTxid: txid, vout: vout), startScript: coin.scriptPubKey, startValue: value,
                spends: spends, keysForEpoch: { known[$0] })
            if let admin, problem == nil {
                problem = try Self.crossCheck(entries, node: admin, epochs: epochs)
            }
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
            print(
                "\(entries.count) checkpoints verified from \(txid):\(vout)"
                    + (node.map { " and against the certified chain of the node at \($0)" } ?? ""))
        }

        /// Each entry's state id is the node's committed state at the block its QC commits:
        /// the block of that epoch one round before the QC (2-chain rule).
        static func crossCheck(
            _ entries: [CheckpointChain.Entry], node: AdminClient, epochs: [UInt64: JSONValue]
        ) throws -> String? {
            let top = Int(try node.call("getstatus")["committed_height"]?.numberValue ?? 0)
            var states: [UInt64: [UInt64: String]] = [:]  // epoch → round → state id
            for entry in entries {
                let epoch = entry.payload.epoch
                if states[epoch] == nil {
                    var rounds: [UInt64: String] = [:]
                    let first = Int(epochs[epoch]?["first_height"]?.numberValue ?? 1)
                    let last = epochs[epoch]?["last_height"]?.numberValue.map { Int($0) } ?? top
                    for height in stride(from: first, through: min(last, top), by: 1) {
                        let block = try node.call("getblock", .object(["height": .int(height)]))
                        if let round = block["round"]?.numberValue, let id = block["state_id"]?.stringValue {
                            rounds[UInt64(round)] = id
                            // The QC that ended the epoch may certify an empty suffix block
                            // (not stored as committed) whose state is the last block's.
                            if height == last, let commit = epochs[epoch]?["proof"]?["commit_round"]?.numberValue,
                                commit >= 1
                            {
                                rounds[UInt64(commit) - 1] = id
                            }
                        }
                    }
                    states[epoch] = rounds
                }
                guard entry.payload.round >= 1, let own = states[epoch]?[entry.payload.round - 1] else {
                    return "\(entry.txid): the node has no committed block of epoch \(epoch) at round "
                        + "\(entry.payload.round - 1) (behind, or not this chain)"
                }
                guard own == entry.payload.commitStateID.hex else {
                    return "\(entry.txid): state id \(entry.payload.commitStateID.hex) is not the node's \(own)"
                }
            }
            return nil
        }
    }
}
