import Checkpoint
import Consensus
import Foundation
import Ledger
import NodeCrypto

/// The genesis file: everything every validator must agree on before block 1.
/// JSON, documented in docs/configuration.md.
public struct Genesis: Codable, Sendable, Equatable {
    public struct ValidatorEntry: Codable, Sendable, Equatable {
        public var node_id: String
        public var power: UInt64
        public var bitcoin_xonly: String

        public init(node_id: String, power: UInt64, bitcoin_xonly: String) {
            self.node_id = node_id
            self.power = power
            self.bitcoin_xonly = bitcoin_xonly
        }
    }

    public struct ConsensusParameters: Codable, Sendable, Equatable {
        public var base_timeout: Double = 1.0
        public var timeout_backoff: Double = 1.5
        public var max_backoff_exponent: Int = 4
        /// Transactions per block at most.
        public var max_block_transactions: Int = 2_000
        /// Seconds a leader waits before proposing an empty block, so an idle chain does
        /// not race through empty blocks; with transactions waiting it proposes at once.
        public var min_block_interval: Double = 0.25
        /// "round-robin" (absent) or "reputation" (Aptos-style; see `LeaderElection`).
        /// Optional so that files written before it existed keep their genesis block id.
        public var leader_election: String?
        /// Bytes of transactions per block at most (default 1 MiB, at most 2 MiB).
        /// Optional so that files written before it existed keep their genesis block id.
        public var max_block_bytes: Int?

        var maxBlockBytes: Int { max_block_bytes ?? ConsensusConfig.defaultMaxBlockBytes }

        /// Reputation window: the last 10 × n committed blocks, 40 rounds back (Aptos's defaults).
        func election(validators: Int) -> LeaderElection {
            leader_election == "reputation" ? .reputation(window: 10 * validators, excludeRounds: 40) : .roundRobin
        }
    }

    public struct CheckpointParameters: Codable, Sendable, Equatable {
        /// Blocks between Bitcoin checkpoints.
        public var interval_blocks: UInt64 = 100
        /// Seconds before a later leader takes over an unseen checkpoint.
        public var timeout_seconds: Double = 120
        public var fee_rate_min: UInt64 = 1
        public var fee_rate_max: UInt64 = 100
        /// The first checkpoint coin, `TXID:VOUT` (display txid), paid to epoch 1's
        /// `tr(NUMS, multi_a(…))` script (`p2pnode checkpoint fund`), and its value.
        /// Optional, so files written before they existed keep their genesis block id.
        public var coin: String?
        public var coin_value: UInt64?
        /// A validator co-signs at most this many times its own fee-rate estimate (default
        /// 2), and any leader replaces a checkpoint stuck in the mempool for
        /// `bump_after_blocks` Bitcoin blocks (default 3). Optional, as `coin`.
        public var fee_tolerance: Double?
        public var bump_after_blocks: Int?
        /// Blocks (relative, BIP68) after which more than a third of an epoch's power may
        /// move its coin through the recovery leaf (`p2pnode checkpoint recover`). Absent:
        /// no recovery leaf (files written before it existed keep their coin's script).
        public var recovery_blocks: UInt32?

        var feeTolerance: Double { fee_tolerance ?? 2 }
        var bumpAfterBlocks: Int { bump_after_blocks ?? 3 }

        /// The coin's txid (display hex) and output index, if one is set.
        public var coinOutpoint: (txid: String, vout: UInt32)? {
            guard let coin else { return nil }
            let parts = coin.split(separator: ":")
            guard parts.count == 2, parts[0].count == 64, (try? Hex.decode(String(parts[0]))) != nil,
                let vout = UInt32(parts[1])
            else { return nil }
            return (String(parts[0]), vout)
        }
    }

    public var chain_id: String
    public var genesis_time: Int
    public var epoch_length: UInt64
    public var validators: [ValidatorEntry]
    /// Initial balances by account (node id hex).
    public var balances: [String: UInt64]
    public var consensus = ConsensusParameters()
    public var checkpoint = CheckpointParameters()

    public init(
        chainID: String, genesisTime: Int, epochLength: UInt64, validators: [ValidatorEntry], balances: [String: UInt64]
    ) {
        chain_id = chainID
        genesis_time = genesisTime
        epoch_length = epochLength
        self.validators = validators
        self.balances = balances
    }

    /// Parses and checks a genesis file; every problem names the field.
    public static func load(_ data: Data, source: String) throws -> Genesis {
        let genesis: Genesis
        do {
            genesis = try JSONDecoder().decode(Genesis.self, from: data)
        } catch {
            throw ConfigError("\(source): not a valid genesis file: \(error)")
        }
        try genesis.validate(source: source)
        return genesis
    }

    public func validate(source: String = "genesis") throws {
        guard !chain_id.isEmpty, chain_id.utf8.count <= 64 else {
            throw ConfigError("\(source): chain_id must be 1…64 bytes")
        }
        guard !validators.isEmpty else { throw ConfigError("\(source): at least one validator is needed") }
        guard epoch_length > 0 else { throw ConfigError("\(source): epoch_length must be positive") }
        var seen: Set<String> = []
        var seenKeys: Set<String> = []
        for (i, v) in validators.enumerated() {
            guard let bytes = try? Hex.decode(v.node_id), (try? Ed25519.PublicKey(rawRepresentation: bytes)) != nil
            else {
                throw ConfigError("\(source): validators[\(i)].node_id is not a node id")
            }
            guard let x = try? Hex.decode(v.bitcoin_xonly), (try? Secp256k1.XOnlyPublicKey(rawRepresentation: x)) != nil
            else { throw ConfigError("\(source): validators[\(i)].bitcoin_xonly is not an x-only public key") }
            guard v.power > 0 else { throw ConfigError("\(source): validators[\(i)].power must be positive") }
            guard seen.insert(v.node_id.lowercased()).inserted else {
                throw ConfigError("\(source): validator \(v.node_id) appears twice")
            }
            // One key twice in the coin's script: no checkpoint coin could be built.
            guard seenKeys.insert(v.bitcoin_xonly.lowercased()).inserted else {
                throw ConfigError("\(source): validators[\(i)].bitcoin_xonly is another validator's key too")
            }
        }
        for account in balances.keys {
            guard let bytes = try? Hex.decode(account), (try? Ed25519.PublicKey(rawRepresentation: bytes)) != nil else {
                throw ConfigError("\(source): balances key \(account) is not an account (node id)")
            }
        }
        guard consensus.base_timeout > 0, consensus.timeout_backoff >= 1, consensus.max_backoff_exponent >= 0,
            consensus.max_backoff_exponent < 32, consensus.max_block_transactions > 0,
            consensus.min_block_interval >= 0, consensus.min_block_interval < consensus.base_timeout
        else { throw ConfigError("\(source): consensus parameters out of range") }
        guard consensus.maxBlockBytes >= Transaction.maxStandardSize,
            consensus.maxBlockBytes <= ConsensusConfig.maxBlockBytesLimit
        else {
            throw ConfigError(
                "\(source): consensus.max_block_bytes must be within \(Transaction.maxStandardSize)…\(ConsensusConfig.maxBlockBytesLimit) (one transaction … 2 MiB)"
            )
        }
        if checkpoint.coin != nil {
            guard checkpoint.coinOutpoint != nil, (checkpoint.coin_value ?? 0) > 0 else {
                throw ConfigError("\(source): checkpoint.coin must be TXID:VOUT with a positive checkpoint.coin_value")
            }
        }
        guard checkpoint.interval_blocks >= 1, checkpoint.timeout_seconds > 0 else {
            throw ConfigError("\(source): checkpoint.interval_blocks must be ≥ 1 and timeout_seconds positive")
        }
        guard checkpoint.fee_rate_min >= 1, checkpoint.fee_rate_min <= checkpoint.fee_rate_max,
            checkpoint.fee_rate_max <= 100_000
        else {
            throw ConfigError(
                "\(source): checkpoint.fee_rate_min must be 1…fee_rate_max, and fee_rate_max at most 100000")
        }
        if let blocks = checkpoint.recovery_blocks, !(1...0xFFFF).contains(blocks) {
            throw ConfigError("\(source): checkpoint.recovery_blocks must be 1…65535 (BIP68 blocks)")
        }
        guard (1...10).contains(checkpoint.feeTolerance), (1...1_008).contains(checkpoint.bumpAfterBlocks) else {
            throw ConfigError("\(source): checkpoint.fee_tolerance must be 1…10 and bump_after_blocks 1…1008")
        }
        guard [nil, "round-robin", "reputation"].contains(consensus.leader_election) else {
            throw ConfigError("\(source): consensus.leader_election must be \"round-robin\" or \"reputation\"")
        }
    }

    public var validatorSet: ValidatorSet {
        ValidatorSet(
            validators.map {
                Validator(id: try! Ed25519.PublicKey(rawRepresentation: Hex.decode($0.node_id)), power: $0.power)
            })
    }

    /// Genesis is epoch 1 (0 is never used, so "no epoch yet" needs no special value).
    public static let firstEpoch: Epoch = 1

    public var initialState: LedgerState {
        LedgerState(
            chainID: chain_id,
            balances: Dictionary(
                uniqueKeysWithValues: balances.map {
                    (try! Ed25519.PublicKey(rawRepresentation: Hex.decode($0.key)), $0.value)
                }
            ),
            system: SystemState(
                epoch: Self.firstEpoch, epochLength: epoch_length,
                validators: validators.map {
                    SystemState.ValidatorInfo(
                        id: try! Ed25519.PublicKey(rawRepresentation: Hex.decode($0.node_id)), power: $0.power,
                        bitcoinKey: try! Hex.decode($0.bitcoin_xonly))
                }))
    }

    /// The genesis block id: a hash of the canonical (sorted-key) JSON of this file, so
    /// any difference between two validators' files gives different chains.
    public var blockID: Hash32 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Hash32.of(Array((try? encoder.encode(self)) ?? Data()))
    }

    /// The first epoch's configuration.
    public func consensusConfig() -> ConsensusConfig {
        consensusConfig(
            system: initialState.system!, genesisBlockID: blockID, genesisStateID: try! Hash32(bytes: initialState.root)
        )
    }

    /// An epoch's configuration: its validators from the system state it starts with,
    /// built on the previous epoch's last block (or the genesis block).
    public func consensusConfig(system: SystemState, genesisBlockID: Hash32, genesisStateID: Hash32) -> ConsensusConfig
    {
        let set = ValidatorSet(system.validators.map { Validator(id: $0.id, power: $0.power) })
        var config = ConsensusConfig(
            chainID: chain_id, epoch: system.epoch, validators: set, genesisBlockID: genesisBlockID,
            genesisStateID: genesisStateID)
        config.baseTimeout = consensus.base_timeout
        config.timeoutBackoff = consensus.timeout_backoff
        config.maxBackoffExponent = consensus.max_backoff_exponent
        config.leaderElection = consensus.election(validators: system.validators.count)
        config.maxBlockTransactions = consensus.max_block_transactions
        config.maxBlockBytes = consensus.maxBlockBytes
        return config
    }
}

extension Genesis {
    /// The checkpoint coin a validator set locks: its Bitcoin keys weighted by power, with
    /// the genesis recovery leaf if one is configured.
    public func checkpointCoin(validators: [(bitcoinKey: [UInt8], power: UInt64)]) throws -> CheckpointCoin {
        try CheckpointCoin(
            validators: validators.map { ($0.bitcoinKey, $0.power) }, recoveryBlocks: checkpoint.recovery_blocks)
    }

    /// Epoch 1's coin: the genesis validators.
    public func firstCheckpointCoin() throws -> CheckpointCoin {
        try checkpointCoin(validators: validators.map { (try Hex.decode($0.bitcoin_xonly), $0.power) })
    }
}
