import Consensus
import Ledger
import StateTree
import Wire

/// A key's value (or its absence) with everything a light client needs to trust it
/// without trusting the node: the proof against a state root, the QC that commits that
/// root, and the epoch ends from the genesis that name the QC's validators.
///
///     certified_proof = descriptor ‖ u32 n ‖ n × epoch_end ‖ bytes16 key
///                     ‖ u8 present ‖ [bytes32 value] ‖ range_proof
public struct CertifiedProof: Sendable, Equatable {
    public let root: SnapshotDescriptor
    public let epochEnds: [EpochEnd]
    public let key: [UInt8]
    public let value: [UInt8]?
    public let proof: RangeProof

    public init(root: SnapshotDescriptor, epochEnds: [EpochEnd], key: [UInt8], value: [UInt8]?, proof: RangeProof) {
        self.root = root
        self.epochEnds = epochEnds
        self.key = key
        self.value = value
        self.proof = proof
    }

    public var encoded: [UInt8] {
        var w = WireWriter()
        root.encode(&w)
        w.u32(UInt32(epochEnds.count))
        for e in epochEnds { e.encode(&w) }
        w.bytes16(key)
        if let value {
            w.u8(1)
            w.bytes32(value)
        } else {
            w.u8(0)
        }
        proof.encode(&w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> CertifiedProof {
        var r = WireReader(bytes)
        let root = try SnapshotDescriptor.decode(&r)
        let n = Int(try r.u32("epoch ends"))
        guard n <= 1 << 20 else { throw WireError("\(n) epoch ends") }
        var ends: [EpochEnd] = []
        for _ in 0..<n { ends.append(try EpochEnd.decode(&r)) }
        let key = try r.bytes16(max: 1_024, "key")
        let value: [UInt8]?
        switch try r.u8("present") {
        case 0: value = nil
        case 1: value = try r.bytes32(max: maxStateValueBytes, "value")
        case let f: throw WireError("present flag \(f)")
        }
        let proof = try RangeProof.decode(&r)
        try r.finish()
        return CertifiedProof(root: root, epochEnds: ends, key: key, value: value, proof: proof)
    }

    /// Verifies the whole chain: epoch ends from `genesis`, the QC that commits the root,
    /// and the key's proof against it. Returns the verified root on success.
    public func verify(
        genesis: ConsensusConfig, epochConfig: (SystemState, Hash32, Hash32) -> ConsensusConfig
    ) -> Result<VerifiedSnapshot, SnapshotError> {
        switch VerifiedSnapshot.verify(root, epochEnds: epochEnds, genesis: genesis, epochConfig: epochConfig) {
        case .failure(let error): return .failure(error)
        case .success(let certified):
            do {
                try proof.verify(key: key, value: value, root: certified.root)
            } catch {
                return .failure(SnapshotError("the value is not proved against the certified root: \(error)"))
            }
            return .success(certified)
        }
    }
}
