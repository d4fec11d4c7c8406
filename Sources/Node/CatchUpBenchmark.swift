import Consensus
import Foundation
import Ledger
import NodeCrypto
import Storage

/// Catch-up cost on one core, from a node's own store: the committed chain is read
/// back in the ranges a peer would serve and verified and executed as a node that is
/// behind does (every signature checked: such a node has not seen the transactions),
/// next to plain execution of the same blocks and to Ed25519 verification. The
/// network is left out; `getstatus` → `catch_up` reports what a live catch-up took.
public enum CatchUpBenchmark {
    public struct Result: Sendable {
        public let blocks: Int
        public let transactions: Int
        public let catchUpSeconds: Double
        public let executeSeconds: Double
        public let ed25519VerifyPerSecond: Double
    }

    public static func run(store path: String, genesis: Genesis) throws -> Result {
        let store = try ConsensusStore(path: path)
        guard let last = try store.lastCommitted() else {
            throw ConfigError("\(path) holds no committed blocks: run a testnet with some load first")
        }
        var config = genesis.consensusConfig()
        var ranges: [(blocks: [Block], proof: QuorumCert, suffix: [Block])] = []
        var height: UInt64 = 1
        while height <= last.height {
            guard
                let range = try ConsensusHost.committedRange(store: store, from: height, count: CatchUp.maxRangeBlocks)
            else { throw ConfigError("no commit proof for the blocks from \(height)") }
            ranges.append(range)
            height += UInt64(range.blocks.count)
        }
        let blocks = ranges.reduce(0) { $0 + $1.blocks.count }
        let transactions = ranges.reduce(0) { $0 + $1.blocks.reduce(0) { $0 + $1.payload.count } }

        var state = genesis.initialState
        var tip = config.genesisBlockID
        let start = Date()
        for range in ranges {
            var endsEpoch = false
            if let problem = CatchUp.verifyRange(
                range.blocks, proof: range.proof, suffix: range.suffix, after: tip, config: config,
                execute: {
                    endsEpoch = state.executeBlock($0.payload, proposer: $0.author).endsEpoch
                    return ((try? Hash32(bytes: state.root)) ?? .zero, endsEpoch)
                })
            {
                throw ConfigError("the stored chain does not verify: \(problem)")
            }
            tip = range.blocks[range.blocks.count - 1].id
            if endsEpoch, let system = state.system {
                config = genesis.consensusConfig(
                    system: system, genesisBlockID: tip, genesisStateID: try Hash32(bytes: state.root))
            }
        }
        let catchUpSeconds = Date().timeIntervalSince(start)

        var plain = genesis.initialState
        let executeStart = Date()
        for range in ranges {
            for block in range.blocks {
                _ = plain.executeBlock(block.payload, proposer: block.author, signatureChecked: { _ in true })
                _ = plain.root
            }
        }
        let executeSeconds = Date().timeIntervalSince(executeStart)

        let key = Ed25519.PrivateKey()
        let message = [UInt8](repeating: 5, count: 200)
        let signature = key.signature(for: message)
        let verify = Measure.rate(seconds: 1) { _ = key.publicKey.isValidSignature(signature, for: message) }
        return Result(
            blocks: blocks, transactions: transactions, catchUpSeconds: catchUpSeconds, executeSeconds: executeSeconds,
            ed25519VerifyPerSecond: verify)
    }
}
