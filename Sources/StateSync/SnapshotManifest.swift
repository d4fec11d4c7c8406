import Consensus
import Ledger
import StateTree
import Wire

/// A snapshot a node offers: the state after the block at `height`, and the QC that
/// commits that block with that state id. On its own it proves nothing: the QC's signers
/// must be that epoch's validators, which the chain of epoch ends from the genesis proves.
///
///     descriptor = u64 height ‖ bytes32 block ‖ state_id (32) ‖ bytes32 commit_qc
public struct SnapshotDescriptor: Sendable, Equatable {
    public let height: UInt64
    public let block: Block
    public let stateID: Hash32
    public let commitQC: QuorumCert

    public init(height: UInt64, block: Block, stateID: Hash32, commitQC: QuorumCert) {
        self.height = height
        self.block = block
        self.stateID = stateID
        self.commitQC = commitQC
    }

    public var epoch: Epoch { block.epoch }

    public func encode(_ w: inout WireWriter) {
        w.u64(height)
        w.bytes32(block.encoded())
        w.fixed(stateID.bytes)
        w.bytes32(commitQC.encoded())
    }

    public static func decode(_ r: inout WireReader) throws(WireError) -> SnapshotDescriptor {
        let height = try r.u64("height")
        let block = try Block.decode(try r.bytes32(max: 4 << 20, "block"))
        let state = try Hash32(bytes: try r.fixed(32, "state id"))
        let qc = try QuorumCert.decode(try r.bytes32(max: 1 << 20, "commit QC"))
        return SnapshotDescriptor(height: height, block: block, stateID: state, commitQC: qc)
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
        return nil
    }
}

/// How an epoch ended and what the next one is: its last block, committed with this
/// state id by the epoch-change proof, and the next epoch's validators, proved to be
/// under `system/validators` in that state.
///
///     epoch_end = u64 last_height ‖ bytes32 last_block ‖ state_id (32) ‖ bytes32 epoch_change_proof
///               ‖ bytes32 system ‖ bytes32 system_proof (range_proof, docs/state.md)
public struct EpochEnd: Sendable, Equatable {
    public let lastHeight: UInt64
    public let lastBlock: Block
    public let stateID: Hash32
    public let proof: EpochChangeProof
    public let system: [UInt8]
    public let systemProof: RangeProof

    public init(
        lastHeight: UInt64, lastBlock: Block, stateID: Hash32, proof: EpochChangeProof, system: [UInt8],
        systemProof: RangeProof
    ) {
        self.lastHeight = lastHeight
        self.lastBlock = lastBlock
        self.stateID = stateID
        self.proof = proof
        self.system = system
        self.systemProof = systemProof
    }

    public func encode(_ w: inout WireWriter) {
        w.u64(lastHeight)
        w.bytes32(lastBlock.encoded())
        w.fixed(stateID.bytes)
        w.bytes32(proof.encoded())
        w.bytes32(system)
        w.bytes32(systemProof.encoded)
    }

    public static func decode(_ r: inout WireReader) throws(WireError) -> EpochEnd {
        EpochEnd(
            lastHeight: try r.u64("height"), lastBlock: try Block.decode(try r.bytes32(max: 4 << 20, "block")),
            stateID: try Hash32(bytes: try r.fixed(32, "state id")),
            proof: try EpochChangeProof.decode(try r.bytes32(max: 8 << 20, "epoch-change proof")),
            system: try r.bytes32(max: 1 << 20, "system"),
            systemProof: try RangeProof.decode(try r.bytes32(max: 16_384, "system proof")))
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
        guard UInt64(epochEnds.count) == descriptor.epoch - genesis.epoch else {
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
