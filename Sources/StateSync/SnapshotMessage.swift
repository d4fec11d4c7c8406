import StateTree
import Wire

/// Snapshot sync over direct messages (docs/wire.md §7). Every field is bounded so a
/// hostile peer's message fails decoding instead of allocating.
public enum SnapshotMessage: Sendable, Equatable {
    /// "Which snapshot do you serve?"
    case getSnapshot
    /// The newest snapshot the peer serves, if any.
    case snapshot(SnapshotDescriptor?)
    /// The ends of epochs `from` on (as many as fit one message).
    case getEpochEnds(from: UInt64)
    case epochEnds([EpochEnd])
    /// Every leaf of the snapshot at `height` whose key hash starts with the first `depth` bits of `prefix`.
    case getChunk(height: UInt64, prefix: StateHash, depth: Int)
    case chunk(height: UInt64, prefix: StateHash, depth: Int, ChunkReply)
    /// Contract code by its SHA-256 checksum (kept outside the state tree).
    case getCode(checksum: [UInt8])
    /// The code, or nil if this peer does not have it.
    case code(checksum: [UInt8], wasm: [UInt8]?)

    public enum ChunkReply: Sendable, Equatable {
        case leaves([StateLeaf], RangeProof)
        /// More leaves than one answer carries: ask for the two halves.
        case tooLarge
        /// This peer does not (or no longer) serve that snapshot.
        case unavailable
        /// Over this requester's serving budget: ask again a little later, or elsewhere.
        case busy
    }

    public static let tags: ClosedRange<UInt8> = 0x20...0x27
    /// The largest code (wasmd's `MaxWasmSize`).
    public static let maxCodeBytes = 800 * 1024
    /// Most leaves one chunk answer carries.
    public static let maxChunkLeaves = 4_096
    /// Most bytes of leaves one chunk answer carries (well under the 4 MiB message limit).
    public static let maxChunkBytes = 2 << 20
    public static let maxEpochEnds = 256

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .getSnapshot: w.u8(0x20)
        case .snapshot(let d):
            w.u8(0x21)
            if let d {
                w.u8(1)
                d.encode(&w)
            } else {
                w.u8(0)
            }
        case .getEpochEnds(let from):
            w.u8(0x22)
            w.u64(from)
        case .epochEnds(let ends):
            w.u8(0x23)
            w.u16(UInt16(ends.count))
            for e in ends { e.encode(&w) }
        case .getChunk(let height, let prefix, let depth):
            w.u8(0x24)
            Self.range(&w, height, prefix, depth)
        case .chunk(let height, let prefix, let depth, let reply):
            w.u8(0x25)
            Self.range(&w, height, prefix, depth)
            switch reply {
            case .leaves(let leaves, let proof):
                w.u8(0)
                StateLeaf.encode(leaves, &w)
                proof.encode(&w)
            case .tooLarge: w.u8(1)
            case .unavailable: w.u8(2)
            case .busy: w.u8(3)
            }
        case .getCode(let checksum):
            w.u8(0x26)
            w.fixed(checksum)
        case .code(let checksum, let wasm):
            w.u8(0x27)
            w.fixed(checksum)
            if let wasm {
                w.u8(1)
                w.bytes32(wasm)
            } else {
                w.u8(0)
            }
        }
        return w.bytes
    }

    private static func range(_ w: inout WireWriter, _ height: UInt64, _ prefix: StateHash, _ depth: Int) {
        w.u64(height)
        w.u16(UInt16(depth))
        w.fixed(prefix.bytes)
    }

    private static func range(_ r: inout WireReader) throws(WireError) -> (UInt64, StateHash, Int) {
        let height = try r.u64("height")
        guard height <= UInt64(Int64.max) else { throw WireError("height \(height) out of range") }
        let depth = Int(try r.u16("depth"))
        guard depth <= 256 else { throw WireError("prefix depth \(depth) over 256") }
        let prefix = StateHash(bytes: try r.fixed(32, "prefix"))!
        guard prefix == prefix.truncated(toBits: depth) else { throw WireError("prefix bits past its depth") }
        return (height, prefix, depth)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> SnapshotMessage {
        var r = WireReader(bytes)
        let message: SnapshotMessage
        switch try r.u8("tag") {
        case 0x20: message = .getSnapshot
        case 0x21:
            switch try r.u8("flag") {
            case 0: message = .snapshot(nil)
            case 1: message = .snapshot(try SnapshotDescriptor.decode(&r))
            case let f: throw WireError("snapshot flag \(f)")
            }
        case 0x22:
            let from = try r.u64("epoch")
            guard from <= UInt64(Int64.max) else { throw WireError("epoch \(from) out of range") }
            message = .getEpochEnds(from: from)
        case 0x23:
            let n = Int(try r.u16("count"))
            guard n <= maxEpochEnds else { throw WireError("\(n) epoch ends") }
            var ends: [EpochEnd] = []
            for _ in 0..<n { ends.append(try EpochEnd.decode(&r)) }
            message = .epochEnds(ends)
        case 0x24:
            let (h, p, d) = try range(&r)
            message = .getChunk(height: h, prefix: p, depth: d)
        case 0x25:
            let (h, p, d) = try range(&r)
            let reply: ChunkReply
            switch try r.u8("status") {
            case 0:
                let leaves = try StateLeaf.decodeList(&r, maxCount: maxChunkLeaves, maxValue: maxChunkBytes)
                reply = .leaves(leaves, try RangeProof.decode(&r))
            case 1: reply = .tooLarge
            case 2: reply = .unavailable
            case 3: reply = .busy
            case let s: throw WireError("chunk status \(s)")
            }
            message = .chunk(height: h, prefix: p, depth: d, reply)
        case 0x26:
            message = .getCode(checksum: try r.fixed(32, "checksum"))
        case 0x27:
            let checksum = try r.fixed(32, "checksum")
            switch try r.u8("flag") {
            case 0: message = .code(checksum: checksum, wasm: nil)
            case 1: message = .code(checksum: checksum, wasm: try r.bytes32(max: maxCodeBytes, "code"))
            case let f: throw WireError("code flag \(f)")
            }
        case let t: throw WireError("unknown snapshot message \(t)")
        }
        try r.finish()
        return message
    }
}

/// The serving side: answers a snapshot request from what this node keeps. The node
/// reads its SQLite store through the closures; tests serve from memory.
public enum SnapshotServer {
    public enum RangeAnswer: Sendable {
        case leaves([StateLeaf], RangeProof)
        case tooLarge
        /// No snapshot at that height here.
        case unavailable
    }

    /// The answer to `request`, or nil when it is not a request.
    public static func answer(
        _ request: SnapshotMessage, newest: SnapshotDescriptor?, epochEnds: (UInt64) throws -> [EpochEnd],
        range: (UInt64, ChunkRange) throws -> RangeAnswer
    ) rethrows -> SnapshotMessage? {
        switch request {
        case .getSnapshot: return .snapshot(newest)
        case .getEpochEnds(let from): return .epochEnds(try epochEnds(from))
        case .getChunk(let height, let prefix, let depth):
            let reply: SnapshotMessage.ChunkReply
            switch try range(height, ChunkRange(prefix: prefix, depth: depth)) {
            case .leaves(let leaves, let proof):
                let size = leaves.reduce(0) { $0 + $1.encodedSize }
                reply =
                    leaves.count > SnapshotMessage.maxChunkLeaves || size > SnapshotMessage.maxChunkBytes
                    ? .tooLarge : .leaves(leaves, proof)
            case .tooLarge: reply = .tooLarge
            case .unavailable: reply = .unavailable
            }
            return .chunk(height: height, prefix: prefix, depth: depth, reply)
        case .snapshot, .epochEnds, .chunk, .getCode, .code: return nil  // code is served from the code store
        }
    }
}
