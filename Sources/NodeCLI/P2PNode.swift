import ArgumentParser
import Foundation

/// The `p2pnode` command tree. Kept in a library so tests can parse and run
/// subcommands in-process.
public struct P2PNode: AsyncParsableCommand {
    public static let version = "0.1.0"

    public static let configuration = CommandConfiguration(
        commandName: "p2pnode",
        abstract: "SideNode: a peer-to-peer BFT side chain that checkpoints its state into Bitcoin.",
        discussion: """
            `p2pnode --bootstrap FILE` runs a node exactly as `p2pnode run --bootstrap FILE`: \
            `run` is the default subcommand. Create keys ahead with `p2pnode init NAME` \
            (run creates them on first start otherwise); inspect a running node with \
            `p2pnode peers` and `p2pnode admin METHOD`.
            """,
        version: version,
        subcommands: [
            Run.self, Init.self, Status.self, Admin.self, Peers.self, Tx.self, GenesisCommand.self, Load.self,
            Bench.self, ValidatorCommand.self, BtcCommand.self, CheckpointCommand.self, VerifyProof.self,
            ContractCommand.self,
        ],
        defaultSubcommand: Run.self
    )

    public init() {}
}

extension P2PNode {
    /// Parses and runs a command, awaiting async subcommands. The executable calls
    /// this because the root's inherited synchronous `main()` would be chosen from
    /// top-level code and would not run async subcommands.
    public static func execute(_ arguments: [String]? = nil) async {
        AllocatorTuning.apply(environment: ProcessInfo.processInfo.environment)
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
