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
        subcommands: [Address.self, Fund.self, Verify.self, Recover.self]
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

    /// The coin the node at `node` follows, its value, and the script its epoch's
    /// validators lock it with.
    static func followedCoin(_ file: Genesis, node: String) throws -> (OutPoint, UInt64, CheckpointCoin) {
        let admin = AdminClient(socketPath: node)
        let followed = try admin.call("getcheckpoints")
        guard let text = followed["coin"]?.stringValue, let value = followed["coin_value"]?.numberValue,
            let epoch = followed["coin_epoch"]?.numberValue
        else { throw CLIError("the node at \(node) does not follow a checkpoint coin") }
        let parts = text.split(separator: ":")
        guard parts.count == 2, let vout = UInt32(parts[1]),
            let outpoint = try? OutPoint(displayTxid: String(parts[0]), vout: vout)
        else { throw CLIError("the node's coin \(text) is not TXID:VOUT") }
        let info = try admin.call("getepoch", .object(["epoch": .int(Int(epoch))]))
        let set: [(bitcoinKey: [UInt8], power: UInt64)] = (info["validators"]?.arrayValue ?? []).compactMap {
            guard let key = $0["bitcoin_xonly"]?.stringValue.flatMap({ try? Hex.decode($0) }),
                let power = $0["power"]?.numberValue, power >= 1
            else { return nil }
            return (key, UInt64(power))
        }
        let coin: CheckpointCoin
        do { coin = try file.checkpointCoin(validators: set) } catch {
            throw CLIError("epoch \(Int(epoch))'s validators from the node: \(error)")
        }
        return (outpoint, UInt64(value), coin)
    }

    /// Epoch 1's coin: the genesis validators' Bitcoin keys.
    static func firstCoin(_ genesis: Genesis) throws -> CheckpointCoin {
        do { return try genesis.firstCheckpointCoin() } catch {
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
            if let descriptor = coin.descriptor {
                print("descriptor: \(descriptor)")
                print("threshold:  \(coin.threshold) of \(coin.keys.count) validators")
            } else {
                // No descriptor expresses a weighted leaf: the script itself.
                print("weighted leaf: \(coin.leaf.script.hex)")
                print("threshold:  power \(coin.threshold) of \(coin.main.totalWeight)")
            }
            if let recovery = coin.recovery {
                print(
                    "recovery:   \(recovery.script.threshold) of \(recovery.script.totalWeight) after \(recovery.blocks) blocks unspent"
                )
            }
        }
    }

    struct Fund: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the first checkpoint coin at epoch 1's script, or top up a running chain's coin.",
            discussion: """
                Prints the coin's outpoint; with --write it goes into the genesis file \
                (checkpoint.coin and coin_value), which changes the genesis block id: fund \
                before the chain starts. With --node SOCKET it pays the script of the coin that \
                node follows instead: a top-up, which the next checkpoint sweeps into the coin \
                once it is confirmed (`getcheckpoints` shows checkpoints_left).
                """)
        @OptionGroup var genesis: GenesisOption
        @Option(help: "Key directory name or path that pays.") var from: String
        @Option(help: "Sats in the coin (its checkpoints' fees come out of it).") var amount: UInt64
        @Option(name: .customLong("fee-rate"), help: "sat/vB (default: the server's estimate).") var feeRate: Double?
        @Flag(help: "Write the outpoint into the genesis file.") var write = false
        @Option(
            help: ArgumentHelp(
                "A running node's admin socket: top up the coin it follows.", valueName: "SOCKET"))
        var node: String?
        @Flag(help: "Wait until the funding transaction confirms.") var wait = false
        @OptionGroup var network: BtcCommand.NetworkOptions

        func run() async throws {
            var file = try genesis.load()
            if node != nil, write {
                throw CLIError("--write names the first coin; a top-up (--node) changes no genesis")
            }
            let coin =
                try node.map { try CheckpointCommand.followedCoin(file, node: $0).2 }
                ?? CheckpointCommand.firstCoin(file)
            let (net, client) = try network.client()
            let wallet = try BtcCommand.Wallet(from)
            do {
                let (txid, _, _) = try await wallet.pay(
                    amount: amount, to: coin.scriptPubKey, feeRate: feeRate, target: 6, network: net, client: client)
                print(
                    "\(node == nil ? "coin" : "top-up") \(txid):0 value \(amount) sats at \(coin.address(net))")
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
            var prevouts: [OutPoint: TxOut] = [:]
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
                    let tx = try BitcoinTransaction(hex: try await client.transactionHex(txid: next))
                    spends.append(tx)
                    // Swept-in top-ups: their outputs (every signature commits to them).
                    for input in tx.inputs.dropFirst().prefix(CheckpointTransaction.maxTopUps) {
                        let parent = try BitcoinTransaction(
                            hex: try await client.transactionHex(txid: input.previousOutput.displayTxid))
                        if Int(input.previousOutput.vout) < parent.outputs.count {
                            prevouts[input.previousOutput] = parent.outputs[Int(input.previousOutput.vout)]
                        }
                    }
                    if let height = spend.status?.block_height { confirmations[next] = tip - height + 1 }
                    current = (next, 0)
                }
            } catch let error as EsploraError {
                throw CLIError("\(error)")
            } catch let error as BitcoinError {
                throw CLIError("\(error)")
            }
            var epochCoins: [UInt64: CheckpointCoin] = [1: coin]
            var epochs: [UInt64: JSONValue] = [:]
            if let admin {
                // The node's validator sets for every epoch the checkpoints name.
                let named = Set(
                    spends.compactMap {
                        $0.outputs.count > 1 ? try? CheckpointPayload(script: $0.outputs[1].scriptPubKey).epoch : nil
                    })
                // Each named epoch and the next (an epoch-end checkpoint pays the next set's coin).
                for epoch in Set(named.flatMap { $0 < UInt64.max ? [$0, $0 + 1] : [$0] }).sorted() {
                    guard let info = try? admin.call("getepoch", .object(["epoch": .int(epoch)])) else {
                        if named.contains(epoch) { throw CLIError("the node does not know epoch \(epoch)") }
                        continue  // the next epoch has not begun
                    }
                    epochs[epoch] = info
                    let set: [(bitcoinKey: [UInt8], power: UInt64)] = (info["validators"]?.arrayValue ?? []).compactMap
                    {
                        guard let key = $0["bitcoin_xonly"]?.stringValue.flatMap({ try? Hex.decode($0) }),
                            let power = $0["power"]?.numberValue, power >= 1
                        else { return nil }
                        return (key, UInt64(power))
                    }
                    epochCoins[epoch] = try? file.checkpointCoin(validators: set)
                }
            }
            let known = epochCoins
            var (entries, problem) = CheckpointChain.verify(
                start: try OutPoint(displayTxid: txid, vout: vout), startScript: coin.scriptPubKey, startValue: value,
                spends: spends, coinForEpoch: { known[$0] }, prevouts: prevouts)
            if let admin, problem == nil {
                problem = try Self.crossCheck(entries, node: admin, epochs: epochs)
            }
            print(
                "epoch    round  commit_state_id                                                   signers  conf  txid")
            for e in entries {
                guard let payload = e.payload else {
                    print(
                        "RECOVERY: \(e.txid) moved the coin through the recovery leaf (\(e.signatures) of \(e.keys.count) keys, "
                            + "after \(e.recoveryBlocks ?? 0) blocks): checkpointing ended there")
                    continue
                }
                print(
                    String(format: "%5d %8d  ", payload.epoch, payload.round) + payload.commitStateID.hex
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
                guard let payload = entry.payload else { continue }  // a recovery spend: no state
                let epoch = payload.epoch
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
                guard payload.round >= 1, let own = states[epoch]?[payload.round - 1] else {
                    return "\(entry.txid): the node has no committed block of epoch \(epoch) at round "
                        + "\(payload.round - 1) (behind, or not this chain)"
                }
                guard own == payload.commitStateID.hex else {
                    return "\(entry.txid): state id \(payload.commitStateID.hex) is not the node's \(own)"
                }
            }
            return nil
        }
    }

    struct Recover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Move the checkpoint coin through its recovery leaf (more than a third of its keys, after the timelock).",
            discussion: """
                For when too many of an epoch's validators have lost their keys or gone silent for \
                checkpoints to go on: once the coin has been unspent for the genesis \
                checkpoint.recovery_blocks, keys holding more than a third of the coin's power can \
                send it to an address they agree on. Each operator runs this with their key \
                directory: the first without --psbt builds the spend and prints a PSBT with their \
                signature; the next passes it with --psbt to add theirs; with --broadcast the PSBT \
                is finalized and sent once it has enough signatures. Bitcoin refuses it before the \
                timelock ("non-BIP68-final"). The coin is then outside checkpointing: every node \
                raises its alarm (docs/checkpoints.md).
                """)
        @OptionGroup var genesis: GenesisOption
        @Option(help: "Key directory name or path of a signer of the coin.") var key: String
        @Option(help: "Where the coin goes (an address).") var to: String
        @Option(help: "A PSBT (base64) another signer printed: add this key's signature to it.") var psbt: String?
        @Option(
            help: ArgumentHelp(
                "A node's admin socket: the coin it follows and that epoch's validators.", valueName: "SOCKET"))
        var node: String?
        @Option(name: .customLong("fee-rate"), help: "sat/vB (default: the server's estimate).") var feeRate: Double?
        @Option(
            name: .customLong("max-fee-rate"),
            help:
                "The most sat/vB this signer lets the spend pay (a PSBT from another operator above it is not signed).")
        var maxFeeRate: Double = 50
        @Flag(help: "Finalize and broadcast once the PSBT has enough signatures.") var broadcast = false
        @OptionGroup var network: BtcCommand.NetworkOptions

        func run() async throws {
            let file = try genesis.load()
            let (net, client) = try network.client()
            let wallet = try BtcCommand.Wallet(key)
            // Every signer builds what it expects from its own view — the coin (from the node
            // or the genesis), --to, the recovery leaf — and signs a PSBT from another
            // operator only if it is exactly that, at a fee within --max-fee-rate: another
            // key holder cannot slip in another destination, leaf or sighash type.
            let (coin, value, current) = try await followedCoin(file, client: client)
            guard let recovery = current.recovery, let control = current.recoveryControlBlock else {
                throw CLIError("this coin has no recovery leaf (genesis checkpoint.recovery_blocks)")
            }
            let destination: Script
            do { destination = try SegwitAddress(to, network: net).scriptPubKey } catch {
                throw CLIError("--to \(to): \(error)")
            }
            let vsize = CheckpointTransaction.recoveryVirtualSize(current)
            var partial: PSBT
            if let psbt {
                do { partial = try PSBT(base64: psbt) } catch { throw CLIError("--psbt: \(error)") }
                let tx = partial.unsignedTx
                guard partial.inputs.count == 1, tx.inputs.count == 1, tx.inputs[0].previousOutput == coin,
                    tx.inputs[0].sequence == recovery.blocks, tx.version == 2, tx.lockTime == 0,
                    tx.outputs.count == 1, tx.outputs[0].scriptPubKey == destination, tx.outputs[0].value < value,
                    partial.inputs[0].witnessUtxo == TxOut(value: value, scriptPubKey: current.scriptPubKey),
                    partial.inputs[0].tapLeafScripts == [control: recovery.leaf.script.bytes + [recovery.leaf.version]],
                    partial.inputs[0].sighashType ?? 0 == 0, partial.inputs[0].tapKeySig == nil,
                    partial.inputs[0].finalScriptWitness == nil, partial.inputs[0].partialSigs.isEmpty
                else {
                    throw CLIError(
                        "the PSBT is not the recovery spend of coin \(coin) to \(to) through its recovery leaf: not signed"
                    )
                }
                let rate = Double(value - tx.outputs[0].value) / Double(max(vsize, 1))
                guard rate <= maxFeeRate else {
                    throw CLIError(
                        "the PSBT pays \(String(format: "%.1f", rate)) sat/vB, above --max-fee-rate \(maxFeeRate): not signed"
                    )
                }
                // Rebuilt from this signer's own view, with only the other operators'
                // signatures that verify (junk would make the final witness invalid).
                let leafHash = recovery.leaf.hash
                let theirs = partial.inputs[0].tapScriptSigs
                do {
                    partial = try CheckpointTransaction.recoveryPSBT(
                        spending: coin, value: value, of: current, to: destination, fee: value - tx.outputs[0].value)
                } catch { throw CLIError("\(error)") }
                let digest = try? partial.unsignedTx.taprootSighash(
                    index: 0, spent: [TxOut(value: value, scriptPubKey: current.scriptPubKey)], type: .default,
                    scriptSpend: .init(leafHash: leafHash))
                for key in recovery.script.keys {
                    guard let digest, let signature = theirs[key + leafHash],
                        isDefaultSchnorrSignature(signature, by: key, over: digest)
                    else { continue }
                    partial.inputs[0].tapScriptSigs[key + leafHash] = signature
                }
            } else {
                let rate: Double
                if let feeRate {
                    rate = feeRate
                } else {
                    do { rate = try await client.feeRate(target: 6) } catch { rate = 2 }
                }
                do {
                    let fee = UInt64((min(max(rate, 1), maxFeeRate) * Double(vsize)).rounded(.up))
                    partial = try CheckpointTransaction.recoveryPSBT(
                        spending: coin, value: value, of: current, to: destination, fee: fee)
                } catch { throw CLIError("\(error)") }
            }
            let script = recovery.script
            guard script.keys.contains(wallet.key.xOnlyPublicKey.rawRepresentation) else {
                throw CLIError("\(key)'s Bitcoin key is not one of the coin's keys")
            }
            print(
                "spend: coin \(coin) (\(value) sats) to \(to): \(partial.unsignedTx.outputs[0].value) sats, fee \(value - partial.unsignedTx.outputs[0].value) sats"
            )
            var validated: ValidatedPSBT
            do {
                validated = try partial.validated()
                _ = try validated.sign(with: wallet.key)
            } catch { throw CLIError("cannot sign: \(error)") }
            // Only signatures that verify count (another operator's PSBT may carry junk).
            let leafHash = recovery.leaf.hash
            let digest = try? validated.psbt.unsignedTx.taprootSighash(
                index: 0, spent: [TxOut(value: value, scriptPubKey: current.scriptPubKey)], type: .default,
                scriptSpend: .init(leafHash: leafHash))
            let verified = Set(
                script.keys.filter { key in
                    guard let digest, let signature = validated.psbt.inputs[0].tapScriptSigs[key + leafHash] else {
                        return false
                    }
                    return isDefaultSchnorrSignature(signature, by: key, over: digest)
                })
            let weight = script.weight(of: verified)
            print("psbt: \(validated.psbt.base64)")
            print(
                "signatures: weight \(weight) of the \(script.threshold) needed; timelock \(recovery.blocks) blocks"
            )
            guard broadcast else { return }
            guard weight >= script.threshold else {
                throw CLIError("not enough signatures to broadcast yet: pass the PSBT to the next signer")
            }
            do {
                try validated.finalize()
                let tx = try validated.extract()
                let txid = try await client.broadcast(hex: tx.hex)
                print("broadcast \(txid)")
            } catch let error as EsploraError {
                throw CLIError("broadcast refused: \(error)")
            } catch { throw CLIError("\(error)") }
        }

        /// The coin to recover: the one the node follows (its epoch's validators from the
        /// node), or, without a node, the genesis coin if no checkpoint has moved it.
        func followedCoin(_ file: Genesis, client: EsploraClient) async throws -> (OutPoint, UInt64, CheckpointCoin) {
            if let node { return try CheckpointCommand.followedCoin(file, node: node) }
            guard let (txid, vout) = file.checkpoint.coinOutpoint, let value = file.checkpoint.coin_value else {
                throw CLIError("\(genesis.genesis) names no checkpoint coin (checkpoint.coin)")
            }
            do {
                let spend = try await client.outspend(txid: txid, vout: vout)
                if spend.spent {
                    throw CLIError(
                        "checkpoints have moved the genesis coin: pass --node SOCKET to recover the current one")
                }
            } catch let error as EsploraError {
                throw CLIError("\(error)")
            }
            return (try OutPoint(displayTxid: txid, vout: vout), value, try CheckpointCommand.firstCoin(file))
        }
    }
}
