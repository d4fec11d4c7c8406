import Consensus
import Ledger
import StateTree
import Wire

/// A snapshot a node offers: the state after the block at `height`, and the QC that
/// commits that block with that state id. The state names its height and its epoch's
/// validators (`system/height`, `system/validators`): proofs of both come along, so the
/// height is certified and a state that ends its epoch (naming the next set) is refused.
/// On its own it proves nothing: the QC's signers must be that epoch's validators, which
/// the chain of epoch ends from the genesis proves.
///
///     descriptor = u64 height ‖ bytes32 block ‖ state_id (32) ‖ bytes32 commit_qc
///                ‖ bytes32 height_proof ‖ bytes32 system ‖ bytes32 system_proof
public struct SnapshotDescriptor: Sendable, Equatable {
    public let height: UInt64
    public let block: Block
    public let stateID: Hash32
    public let commitQC: QuorumCert
    public let heightProof: RangeProof
    public let system: [UInt8]
    public let systemProof: RangeProof

    public init(
        height: UInt64, block: Block, stateID: Hash32, commitQC: QuorumCert, heightProof: RangeProof, system: [UInt8],
        systemProof: RangeProof
    ) {
        self.height = height
        self.block = block
        self.stateID = stateID
        self.commitQC = commitQC
        self.heightProof = heightProof
        self.system = system
        self.systemProof = systemProof
    }

    public var epoch: Epoch { block.epoch }

    public func encode(_ w: inout WireWriter) {
        w.u64(height)
        w.bytes32(block.encoded())
        w.fixed(stateID.bytes)
        w.bytes32(commitQC.encoded())
        w.bytes32(heightProof.encoded)
        w.bytes32(system)
        w.bytes32(systemProof.encoded)
    }

    public static func decode(_ r: inout WireReader) throws(WireError) -> SnapshotDescriptor {
        let height = try r.u64("height")
        // Heights and epochs are stored as SQLite integers: past Int64 they are not real.
        guard height <= UInt64(Int64.max) else { throw WireError("height \(height) out of range") }
        let block = try Block.decode(try r.bytes32(max: 4 << 20, "block"))
        let state = try Hash32(bytes: try r.fixed(32, "state id"))
        let qc = try QuorumCert.decode(try r.bytes32(max: 1 << 20, "commit QC"))
        return SnapshotDescriptor(
            height: height, block: block, stateID: state, commitQC: qc,
            heightProof: try RangeProof.decode(try r.bytes32(max: 16_384, "height proof")),
            system: try r.bytes32(max: 1 << 20, "system"),
            systemProof: try RangeProof.decode(try r.bytes32(max: 16_384, "system proof")))
    }

    /// Why `config` (the snapshot's epoch's validators) does not certify this, or nil.
    public func verify(config: ConsensusConfig) -> String? {
        guard block.epoch == config.epoch else {
            return "snapshot block of epoch \(block.epoch), expected \(config.epoch)"
        }
        guard config.isValid(commitQC) else {
            return "the snapshot's commit QC is not a valid QC of epoch \(config.epoch)"
        }
        guard commitQC.voteInfo.parentID == block.id, commitQC.voteInfo.parentRound == block.round,
            commitQC.commitInfo.commitStateID == stateID
        else { return "the QC does not commit the snapshot block with its state id" }
        guard let root = StateHash(bytes: stateID.bytes) else { return "state id" }
        do {
            try heightProof.verify(key: StateKey.height, value: heightValue(height), root: root)
        } catch {
            return "the snapshot's height \(height) is not the one its state names: \(error)"
        }
        do {
            try systemProof.verify(key: StateKey.system, value: system, root: root)
        } catch {
            return "the snapshot state's validators are not proved: \(error)"
        }
        // A state that ended its epoch already names the next one: not a place to start.
        guard let named = try? SystemState.decode(system), named.epoch == config.epoch,
            ValidatorSet(named.validators.map { Validator(id: $0.id, power: $0.power) }) == config.validators
        else { return "the snapshot state is not in epoch \(config.epoch) with its validators (an epoch's end?)" }
        return nil
    }
}

/// The value under `system/height`.
func heightValue(_ height: UInt64) -> [UInt8] {
    var w = WireWriter(capacity: 8)
    w.u64(height)
    return w.bytes
}

/// How an epoch ended and what the next one is: its last block, committed with this
/// state id by the epoch-change proof, and the next epoch's validators, proved to be
/// under `system/validators` in that state.
///
///     epoch_end = u64 last_height ‖ bytes32 last_block ‖ state_id (32) ‖ bytes32 epoch_change_proof
///               ‖ bytes32 system ‖ bytes32 system_proof ‖ bytes32 height_proof (range proofs, docs/state.md)
public struct EpochEnd: Sendable, Equatable {
    public let lastHeight: UInt64
    public let lastBlock: Block
    public let stateID: Hash32
    public let proof: EpochChangeProof
    public let system: [UInt8]
    public let systemProof: RangeProof
    /// Proves `lastHeight` is the height that state names.
    public let heightProof: RangeProof

    public init(
        lastHeight: UInt64, lastBlock: Block, stateID: Hash32, proof: EpochChangeProof, system: [UInt8],
        systemProof: RangeProof, heightProof: RangeProof
    ) {
        self.lastHeight = lastHeight
        self.lastBlock = lastBlock
        self.stateID = stateID
        self.proof = proof
        self.system = system
        self.systemProof = systemProof
        self.heightProof = heightProof
    }

    public func encode(_ w: inout WireWriter) {
        w.u64(lastHeight)
        w.bytes32(lastBlock.encoded())
        w.fixed(stateID.bytes)
        w.bytes32(proof.encoded())
        w.bytes32(system)
        w.bytes32(systemProof.encoded)
        w.bytes32(heightProof.encoded)
    }

    public static func decode(_ r: inout WireReader) throws(WireError) -> EpochEnd {
        let height = try r.u64("height")
        guard height <= UInt64(Int64.max) else { throw WireError("height \(height) out of range") }
        return EpochEnd(
            lastHeight: height, lastBlock: try Block.decode(try r.bytes32(max: 4 << 20, "block")),
            stateID: try Hash32(bytes: try r.fixed(32, "state id")),
            proof: try EpochChangeProof.decode(try r.bytes32(max: 8 << 20, "epoch-change proof")),
            system: try r.bytes32(max: 1 << 20, "system"),
            systemProof: try RangeProof.decode(try r.bytes32(max: 16_384, "system proof")),
            heightProof: try RangeProof.decode(try r.bytes32(max: 16_384, "height proof")))
    }

    /// Checks this end against its epoch's configuration and returns the next epoch's
    /// system state (its validators), or why not.
    public func verify(config: ConsensusConfig) -> Result<SystemState, SnapshotError> {
        guard lastBlock.epoch == config.epoch else {
            return .failure(SnapshotError("epoch end for epoch \(lastBlock.epoch), expected \(config.epoch)"))
        }
        if let reason = proof.verify(ending: lastBlock, stateID: stateID, config: config) {
            return .failure(SnapshotError(reason))
        }
        guard let root = StateHash(bytes: stateID.bytes) else { return .failure(SnapshotError("state id")) }
        do {
            try systemProof.verify(key: StateKey.system, value: system, root: root)
        } catch {
            return .failure(SnapshotError("the next epoch's validators are not proved: \(error)"))
        }
        do {
            try heightProof.verify(key: StateKey.height, value: heightValue(lastHeight), root: root)
        } catch {
            return .failure(SnapshotError("the epoch's last height is not the one its state names: \(error)"))
        }
        guard let next = try? SystemState.decode(system), next.epoch == config.epoch + 1 else {
            return .failure(SnapshotError("the proved system state does not start epoch \(config.epoch + 1)"))
        }
        return .success(next)
    }
}

public struct SnapshotError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A snapshot whose descriptor and epoch chain verified from the genesis: everything a
/// node needs to start at its height once the state is downloaded.
public struct VerifiedSnapshot: Sendable, Equatable {
    public let descriptor: SnapshotDescriptor
    public let epochEnds: [EpochEnd]
    /// The snapshot epoch's configuration.
    public let config: ConsensusConfig

    public var root: StateHash { StateHash(bytes: descriptor.stateID.bytes)! }

    /// Verifies the epoch chain from `genesis` and then the descriptor. `epochConfig` makes
    /// an epoch's configuration from its system state, first block and state id (the
    /// genesis file's parameters).
    public static func verify(
        _ descriptor: SnapshotDescriptor, epochEnds: [EpochEnd], genesis: ConsensusConfig,
        epochConfig: (SystemState, Hash32, Hash32) -> ConsensusConfig
    ) -> Result<VerifiedSnapshot, SnapshotError> {
        var config = genesis
        guard descriptor.epoch >= genesis.epoch, UInt64(epochEnds.count) == descriptor.epoch - genesis.epoch else {
            return .failure(SnapshotError("\(epochEnds.count) epoch ends for a snapshot in epoch \(descriptor.epoch)"))
        }
        var height: UInt64 = 0
        for end in epochEnds {
            guard end.lastHeight > height else { return .failure(SnapshotError("epoch ends out of order")) }
            height = end.lastHeight
            switch end.verify(config: config) {
            case .failure(let error): return .failure(error)
            case .success(let system): config = epochConfig(system, end.lastBlock.id, end.stateID)
            }
        }
        guard descriptor.height > height else { return .failure(SnapshotError("snapshot height before its epoch")) }
        if let reason = descriptor.verify(config: config) { return .failure(SnapshotError(reason)) }
        return .success(VerifiedSnapshot(descriptor: descriptor, epochEnds: epochEnds, config: config))
    }
}

extension VerifiedSnapshot {
    /// What a node keeps to resume a download: descriptor ‖ u32 n ‖ n × epoch_end. It is
    /// verified again on resume.
    public var encodedTarget: [UInt8] {
        var w = WireWriter()
        descriptor.encode(&w)
        w.u32(UInt32(epochEnds.count))
        for e in epochEnds { e.encode(&w) }
        return w.bytes
    }

    public static func decodeTarget(_ bytes: [UInt8]) throws(WireError) -> (SnapshotDescriptor, [EpochEnd]) {
        var r = WireReader(bytes)
        let descriptor = try SnapshotDescriptor.decode(&r)
        let n = Int(try r.u32("epoch ends"))
        var ends: [EpochEnd] = []
        for _ in 0..<min(n, 1 << 20) { ends.append(try EpochEnd.decode(&r)) }
        guard ends.count == n else { throw WireError("epoch end count") }
        try r.finish()
        return (descriptor, ends)
    }
}
