import ArgumentParser
import Foundation
import Node

struct GenesisCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genesis",
        abstract: "Write a genesis file for a set of validators.",
        discussion: """
            The validators file has one validator per line: NODE_ID BITCOIN_XONLY [POWER] \
            (as `p2pnode init` prints them; # starts a comment). Every validator must use \
            the identical genesis file: its hash is the genesis block id.
            """
    )

    @Option(help: "Validators file: NODE_ID BITCOIN_XONLY [POWER] per line.")
    var validators: String

    @Option(help: "Where to write the genesis JSON.")
    var out: String

    @Option(name: .customLong("chain-id"), help: "Chain id.")
    var chainID = "sidenode-local"

    @Option(name: .customLong("epoch-length"), help: "Blocks per epoch.")
    var epochLength: UInt64 = 1_000

    @Option(name: .customLong("balance"), help: "Initial balance ACCOUNT=AMOUNT (repeatable).")
    var balances: [String] = []

    @Option(name: .customLong("genesis-time"), help: "UNIX seconds (default: now).")
    var genesisTime: Int?

    @Option(
        name: .customLong("leader-election"),
        help: "round-robin, or reputation (validators that stop proposing and voting stop being elected).")
    var leaderElection = "round-robin"

    @Option(name: .customLong("checkpoint-interval"), help: "Committed blocks between Bitcoin checkpoints.")
    var checkpointInterval: UInt64 = 100

    @Option(
        name: .customLong("checkpoint-timeout"),
        help: "Seconds before a later leader takes over a checkpoint not seen on Bitcoin.")
    var checkpointTimeout: Double = 120

    @Option(
        name: .customLong("recovery-blocks"),
        help: ArgumentHelp(
            "Bitcoin blocks a checkpoint coin must sit unspent before more than a third of its power may move it (0: no recovery leaf).",
            discussion:
                "The coin's second tapleaf (docs/checkpoints.md); 2016 blocks is about two weeks. At most 65535."))
    var recoveryBlocks: UInt32 = 2_016

    @Flag(help: "Overwrite an existing output file.")
    var force = false

    func run() async throws {
        let text: String
        do { text = try String(contentsOfFile: validators, encoding: .utf8) } catch {
            throw CLIError("cannot read \(validators): \(error.localizedDescription)")
        }
        var entries: [Genesis.ValidatorEntry] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: \.isWhitespace).map(String.init)
            if fields.isEmpty { continue }
            guard fields.count == 2 || fields.count == 3, let power = fields.count == 3 ? UInt64(fields[2]) : 1 else {
                throw CLIError("\(validators):\(index + 1): expected NODE_ID BITCOIN_XONLY [POWER]")
            }
            entries.append(
                Genesis.ValidatorEntry(
                    node_id: fields[0].lowercased(), power: power, bitcoin_xonly: fields[1].lowercased()))
        }
        var initial: [String: UInt64] = [:]
        for entry in balances {
            let parts = entry.split(separator: "=")
            guard parts.count == 2, let amount = UInt64(parts[1]) else {
                throw CLIError("--balance must be ACCOUNT=AMOUNT, got \(entry)")
            }
            initial[String(parts[0]).lowercased(), default: 0] += amount
        }
        var genesis = Genesis(
            chainID: chainID, genesisTime: genesisTime ?? Int(Date().timeIntervalSince1970), epochLength: epochLength,
            validators: entries, balances: initial)
        genesis.consensus.leader_election = leaderElection == "round-robin" ? nil : leaderElection
        guard checkpointInterval >= 1, checkpointTimeout > 0 else {
            throw CLIError("--checkpoint-interval must be ≥ 1 block and --checkpoint-timeout positive")
        }
        genesis.checkpoint.interval_blocks = checkpointInterval
        genesis.checkpoint.timeout_seconds = checkpointTimeout
        genesis.checkpoint.recovery_blocks = recoveryBlocks == 0 ? nil : recoveryBlocks
        do { try genesis.validate(source: validators) } catch { throw CLIError("\(error)") }
        if FileManager.default.fileExists(atPath: out) && !force {
            throw CLIError("\(out) exists; pass --force to overwrite")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(genesis).write(to: URL(fileURLWithPath: out))
        print("wrote \(out): chain \(chainID), \(entries.count) validators, genesis block \(genesis.blockID.hex)")
    }
}
