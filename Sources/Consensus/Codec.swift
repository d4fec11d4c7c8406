import NodeCrypto
import Wire

/// Canonical encoding of consensus messages for the wire (docs/wire.md §5). The same
/// strict rules as elsewhere: exact lengths, no trailing bytes.
extension ConsensusMessage {
    public static let maxEncodedSize = 8 * 1024 * 1024

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .proposal(let p):
            w.u8(1)
            p.block.encode(&w)
            encodeTC(&w, p.lastRoundTC)
            p.highCommitQC.encode(&w)
            w.fixed(p.signature.rawRepresentation)
        case .vote(let v):
            w.u8(2)
            v.voteInfo.encode(&w)
            v.commitInfo.encode(&w)
            v.highCommitQC.encode(&w)
            w.fixed(v.sender.rawRepresentation)
            w.fixed(v.signature.rawRepresentation)
        case .timeout(let t):
            w.u8(3)
            w.u64(t.info.epoch)
            w.u64(t.info.round)
            t.info.highQC.encode(&w)
            w.fixed(t.info.sender.rawRepresentation)
            w.fixed(t.info.signature.rawRepresentation)
            encodeTC(&w, t.lastRoundTC)
            t.highCommitQC.encode(&w)
        case .blockRequest(let id):
            w.u8(4)
            w.fixed(id.bytes)
        case .blockResponse(let block):
            w.u8(5)
            block.encode(&w)
        case .chainStatus(let height, let round, let epoch, let proof):
            w.u8(6)
            w.u64(height)
            w.u64(round)
            w.u64(epoch)
            if let proof {
                w.u8(1)
                proof.encode(&w)
            } else {
                w.u8(0)
            }
        case .getCommitted(let height, let count):
            w.u8(7)
            w.u64(height)
            w.u16(count)
        case .committedRange(let height, let blocks, let proof, let suffix):
            w.u8(8)
            w.u64(height)
            w.u16(UInt16(blocks.count))
            for block in blocks { block.encode(&w) }
            proof.encode(&w)
            w.u16(UInt16(suffix.count))
            for block in suffix { block.encode(&w) }
        }
        return w.bytes
    }

    private func encodeTC(_ w: inout WireWriter, _ tc: TimeoutCert?) {
        guard let tc else {
            w.u8(0)
            return
        }
        w.u8(1)
        tc.encode(&w)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> ConsensusMessage {
        guard bytes.count <= maxEncodedSize else { throw WireError("consensus message of \(bytes.count) bytes") }
        var r = WireReader(bytes)
        let tag = try r.u8("tag")
        let message: ConsensusMessage
        switch tag {
        case 1:
            let block = try Block.decode(&r)
            let tc = try decodeTC(&r)
            let commit = try QuorumCert.decode(&r)
            message = .proposal(
                ProposalMsg(block: block, lastRoundTC: tc, highCommitQC: commit, signature: try signature(&r)))
        case 2:
            let info = try VoteInfo.decode(&r)
            let commitInfo = try LedgerCommitInfo.decode(&r)
            let commit = try QuorumCert.decode(&r)
            let sender = try key(&r)
            message = .vote(
                VoteMsg(
                    voteInfo: info, commitInfo: commitInfo, highCommitQC: commit, sender: sender,
                    signature: try signature(&r)))
        case 3:
            let epoch = try r.u64()
            let round = try r.u64()
            let highQC = try QuorumCert.decode(&r)
            let sender = try key(&r)
            let sig = try signature(&r)
            let tc = try decodeTC(&r)
            let commit = try QuorumCert.decode(&r)
            message = .timeout(
                TimeoutMsg(
                    info: TimeoutInfo(epoch: epoch, round: round, highQC: highQC, sender: sender, signature: sig),
                    lastRoundTC: tc, highCommitQC: commit))
        case 4:
            message = .blockRequest(try Hash32(bytes: try r.fixed(32)))
        case 5:
            message = .blockResponse(try Block.decode(&r))
        case 6:
            let height = try r.u64("height")
            let round = try r.u64("round")
            let epoch = try r.u64("epoch")
            let flag = try r.u8("proof flag")
            guard flag <= 1 else { throw WireError("proof flag must be 0 or 1") }
            message = .chainStatus(
                height: height, round: round, epoch: epoch, proof: flag == 1 ? try QuorumCert.decode(&r) : nil)
        case 7:
            let height = try r.u64("height")
            let count = try r.u16("count")
            guard count >= 1, count <= CatchUp.maxRangeBlocks else { throw WireError("range of \(count) blocks") }
            message = .getCommitted(height: height, count: count)
        case 8:
            let height = try r.u64("height")
            let n = Int(try r.u16("block count"))
            guard n >= 1, n <= Int(CatchUp.maxRangeBlocks) else { throw WireError("range of \(n) blocks") }
            var blocks: [Block] = []
            for _ in 0..<n { blocks.append(try Block.decode(&r)) }
            let proof = try QuorumCert.decode(&r)
            message = .committedRange(height: height, blocks: blocks, proof: proof, suffix: try decodeSuffix(&r))
        default:
            throw WireError("unknown consensus message tag \(tag)")
        }
        try r.finish()
        return message
    }

    private static func key(_ r: inout WireReader) throws(WireError) -> ValidatorID {
        let bytes = try r.fixed(32, "key")
        return try! Ed25519.PublicKey(uncheckedRawRepresentation: bytes)  // 32 bytes; checked by signature verification
    }

    private static func signature(_ r: inout WireReader) throws(WireError) -> Ed25519.Signature {
        let bytes = try r.fixed(64, "signature")
        return try! Ed25519.Signature(rawRepresentation: bytes)  // exactly 64 bytes
    }

    private static func decodeTC(_ r: inout WireReader) throws(WireError) -> TimeoutCert? {
        let present = try r.u8("tc flag")
        guard present <= 1 else { throw WireError("tc flag must be 0 or 1") }
        guard present == 1 else { return nil }
        return try TimeoutCert.decode(&r)
    }
}

extension ConsensusMessage {
    /// Who signed the message (nil for block requests and responses, which are unsigned).
    public var signer: ValidatorID? {
        switch self {
        case .proposal(let p): p.block.author
        case .vote(let v): v.sender
        case .timeout(let t): t.info.sender
        case .blockRequest, .blockResponse, .chainStatus, .getCommitted, .committedRange: nil
        }
    }

    /// The epoch a signed message belongs to.
    public var epoch: Epoch? {
        switch self {
        case .proposal(let p): p.block.epoch
        case .vote(let v): v.voteInfo.epoch
        case .timeout(let t): t.info.epoch
        case .blockRequest, .blockResponse, .chainStatus, .getCommitted, .committedRange: nil
        }
    }
}

/// The suffix of an epoch-change proof: u16 n || n blocks.
private func decodeSuffix(_ r: inout WireReader) throws(WireError) -> [Block] {
    let n = Int(try r.u16("suffix count"))
    guard n <= Int(EpochChangeProof.maxSuffix) else { throw WireError("epoch-change suffix of \(n) blocks") }
    var blocks: [Block] = []
    for _ in 0..<n { blocks.append(try Block.decode(&r)) }
    return blocks
}

extension EpochChangeProof {
    /// u16 n || n blocks || commit QC.
    public func encoded() -> [UInt8] {
        var w = WireWriter()
        w.u16(UInt16(suffix.count))
        for block in suffix { block.encode(&w) }
        commitQC.encode(&w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> EpochChangeProof {
        var r = WireReader(bytes)
        let suffix = try decodeSuffix(&r)
        let proof = EpochChangeProof(suffix: suffix, commitQC: try QuorumCert.decode(&r))
        try r.finish()
        return proof
    }
}

extension Block {
    public func encoded() -> [UInt8] {
        var w = WireWriter()
        encode(&w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Block {
        var r = WireReader(bytes)
        let block = try decode(&r)
        try r.finish()
        return block
    }
}

extension QuorumCert {
    public func encoded() -> [UInt8] {
        var w = WireWriter()
        encode(&w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> QuorumCert {
        var r = WireReader(bytes)
        let qc = try decode(&r)
        try r.finish()
        return qc
    }
}

extension SafetyState {
    /// The stored form of the safety state (docs/wire.md §5).
    public func encoded() -> [UInt8] {
        var w = WireWriter()
        w.u8(2)  // format version (2 adds the last proposed round at the end)
        w.u64(epoch)
        w.u64(highestVoteRound)
        w.u64(highestQCRound)
        func optional(_ bytes: [UInt8]?) {
            if let bytes {
                w.u8(1)
                w.bytes32(bytes)
            } else {
                w.u8(0)
            }
        }
        optional(lastVote.map { ConsensusMessage.vote($0).encoded() })
        optional(highQC?.encoded())
        optional(highCommitQC?.encoded())
        optional(
            lastRoundTC.map { tc in
                var t = WireWriter()
                tc.encode(&t)
                return t.bytes
            })
        w.u64(lastProposedRound)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> SafetyState {
        var r = WireReader(bytes)
        let version = try r.u8("version")
        guard version == 1 || version == 2 else { throw WireError("unknown safety state version \(version)") }
        var state = SafetyState(epoch: try r.u64())
        state.highestVoteRound = try r.u64()
        state.highestQCRound = try r.u64()
        func optional() throws(WireError) -> [UInt8]? {
            let flag = try r.u8()
            guard flag <= 1 else { throw WireError("bad optional flag") }
            return flag == 1 ? try r.bytes32(max: 1 << 24) : nil
        }
        if let vote = try optional() {
            guard case .vote(let v) = try ConsensusMessage.decode(vote) else {
                throw WireError("stored vote is not a vote")
            }
            state.lastVote = v
        }
        state.highQC = try optional().map { (b) throws(WireError) in try QuorumCert.decode(b) }
        state.highCommitQC = try optional().map { (b) throws(WireError) in try QuorumCert.decode(b) }
        if let tcBytes = try optional(), version >= 2 {
            // Version 1 stored a TC without its high QC: dropped (only liveness needs it).
            var t = WireReader(tcBytes)
            state.lastRoundTC = try TimeoutCert.decode(&t)
            try t.finish()
        }
        if version >= 2 { state.lastProposedRound = try r.u64("last proposed round") }
        try r.finish()
        return state
    }
}
