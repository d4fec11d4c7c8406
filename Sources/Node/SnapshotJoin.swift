import Consensus
import Foundation
import Gossip
import Ledger
import Logging
import StateSync
import StateTree
import Storage
import Wire

/// Joining a chain by state snapshot (`p2pnode run --sync snapshot`): the pure download
/// machine (`SnapshotSync`) with what the node does around it — keep its progress in the
/// consensus store so a restart resumes, show progress, and install the verified state as
/// the chain's starting point.
struct SnapshotJoin {
    var machine: SnapshotSync<PeerID>
    let genesis: Genesis
    let store: ConsensusStore
    private var lastReport = Date.distantPast
    private(set) var lastProgress: SnapshotSync<PeerID>.Progress?
    private let terminal = isatty(STDERR_FILENO) == 1

    init(genesis: Genesis, store: ConsensusStore, logger: Logger) throws {
        self.genesis = genesis
        self.store = store
        machine = SnapshotSync(
            genesis: genesis.consensusConfig(),
            epochConfig: { [genesis] system, block, state in
                genesis.consensusConfig(system: system, genesisBlockID: block, genesisStateID: state)
            })
        // A download a restart interrupted: its target and every chunk verified so far.
        if let bytes = try store.snapshotTarget(), let (descriptor, ends) = try? VerifiedSnapshot.decodeTarget(bytes) {
            var chunks: [ChunkRange: [StateLeaf]] = [:]
            for stored in try store.snapshotChunks() {
                guard let prefix = StateHash(bytes: stored.prefix), let leaves = try? Self.decodeLeaves(stored.leaves)
                else { continue }
                chunks[ChunkRange(prefix: prefix, depth: stored.depth)] = leaves
            }
            let notes = machine.resume(descriptor, epochEnds: ends, chunks: chunks)
            for case .note(let text) in notes { logger.info("\(text)") }
            if notes.contains(where: { if case .reset = $0 { true } else { false } }) {
                try store.clearSnapshotDownload()
            }
        }
    }

    static func encodeLeaves(_ leaves: [StateLeaf]) -> [UInt8] {
        var w = WireWriter()
        StateLeaf.encode(leaves, &w)
        return w.bytes
    }

    static func decodeLeaves(_ bytes: [UInt8]) throws(WireError) -> [StateLeaf] {
        var r = WireReader(bytes)
        let leaves = try StateLeaf.decodeList(
            &r, maxCount: SnapshotMessage.maxChunkLeaves, maxValue: maxStateValueBytes)
        try r.finish()
        return leaves
    }

    /// Keeps what must survive a restart (a store failure throws: the node stops).
    func persist(_ action: SnapshotSync<PeerID>.Action) throws {
        switch action {
        case .persistTarget(let target): try store.saveSnapshotTarget(target.encodedTarget)
        case .persistChunk(let range, let leaves):
            try store.saveSnapshotChunk(
                depth: range.depth, prefix: range.prefix.bytes, leaves: Self.encodeLeaves(leaves))
        case .reset: try store.clearSnapshotDownload()
        default: break
        }
    }

    /// A progress bar on a terminal (chunks, bytes, bytes/s, ETA), a log line every 5 s otherwise.
    mutating func report(_ p: SnapshotSync<PeerID>.Progress, logger: Logger, final: Bool = false) {
        lastProgress = p
        let rate = p.seconds > 0 ? Double(p.bytes) / p.seconds : 0
        let remaining = p.chunksKnown > 0 ? Double(p.chunksKnown - p.chunksDone) / Double(p.chunksKnown) : 1
        let eta = p.chunksDone > 0 && remaining > 0 ? p.seconds / (1 - remaining) * remaining : 0
        if terminal {
            let width = 30
            let filled = p.chunksKnown > 0 ? width * p.chunksDone / p.chunksKnown : 0
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            let line = String(
                format: "\rsnapshot %llu [%@] %d/%d chunks  %.1f MB  %.1f MB/s  ETA %.0fs ", p.height, bar,
                p.chunksDone,
                p.chunksKnown, Double(p.bytes) / 1e6, rate / 1e6, eta)
            FileHandle.standardError.write(Data((line + (final ? "\n" : "")).utf8))
        } else if final || Date().timeIntervalSince(lastReport) >= 5 {
            lastReport = Date()
            logger.info(
                "snapshot download",
                metadata: [
                    "height": "\(p.height)", "chunks": "\(p.chunksDone)/\(p.chunksKnown)", "leaves": "\(p.leaves)",
                    "bytes": "\(p.bytes)", "bytes_per_s": "\(Int(rate))", "eta_s": "\(Int(eta))",
                ])
        }
    }

    /// Installs a downloaded snapshot as the chain's start: the state (its root must be
    /// the certified one), the snapshot block as the committed tip, the epochs up to its
    /// own. Returns the installed state.
    func install(_ snapshot: VerifiedSnapshot, leaves: [StateLeaf]) throws -> LedgerState {
        let d = snapshot.descriptor
        let state = try LedgerState.restore(chainID: genesis.chain_id, version: d.height, leaves: leaves)
        guard state.root == d.stateID.bytes else {
            throw ConfigError(
                "the downloaded snapshot's root \(state.root.hex.prefix(16)) is not the certified \(d.stateID)")
        }
        let delta = state.tree.delta(from: nil, persistedVersion: nil, version: state.version)
        let write = ConsensusStore.StateWrite(
            height: d.height, version: state.version, root: delta.root.encoded,
            nodes: delta.nodes.map { ($0.version, $0.hash.bytes, $0.body) }, stale: [], snapshot: true, keepFrom: nil)
        let first = genesis.consensusConfig()
        var epochs = [
            ConsensusStore.EpochRecord(
                epoch: first.epoch, startHeight: 1, genesisBlock: first.genesisBlockID.bytes,
                genesisState: first.genesisStateID.bytes, system: genesis.initialState.system!.encoded)
        ]
        for end in snapshot.epochEnds {
            epochs[epochs.count - 1].endHeight = end.lastHeight
            epochs[epochs.count - 1].proof = end.proof.encoded()
            epochs[epochs.count - 1].lastBlock = end.lastBlock.encoded()
            epochs.append(
                .init(
                    epoch: end.lastBlock.epoch + 1, startHeight: end.lastHeight + 1,
                    genesisBlock: end.lastBlock.id.bytes,
                    genesisState: end.stateID.bytes, system: end.system, systemProof: end.systemProof.encoded,
                    heightProof: end.heightProof.encoded))
        }
        try store.installSnapshot(
            block: .init(
                height: d.height, id: d.block.id.bytes, round: d.block.round, block: d.block.encoded(),
                stateID: d.stateID.bytes, commitQC: d.commitQC.encoded()),
            state: write, epochs: epochs)
        return state
    }
}
