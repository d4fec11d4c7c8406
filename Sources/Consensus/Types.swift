import NodeCrypto
import Wire

public typealias Round = UInt64
public typealias Epoch = UInt64
public typealias ValidatorID = Ed25519.PublicKey

/// A 32-byte hash (block ids, state ids, vote-info hashes).
public struct Hash32: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    // The bytes in one call: the synthesized hash feeds the hasher byte by byte, which
    // dominated profiles of the DAG and seen-caches.
    public func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }

    public init(bytes: [UInt8]) throws(WireError) {
        guard bytes.count == 32 else { throw WireError("hash of \(bytes.count) bytes, expected 32") }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }
    /// A 32-byte digest this process computed (a state root); bytes from the network go
    /// through `init(bytes:)`, which checks the length.
    public init(computed bytes: [UInt8]) {
        precondition(bytes.count == 32, "a computed digest is 32 bytes")
        self.bytes = bytes
    }

    public static let zero = Hash32(unchecked: [UInt8](repeating: 0, count: 32))
    public static func of(_ data: [UInt8]) -> Hash32 { Hash32(unchecked: BLAKE2b.hash256(data)) }
    public static func < (a: Hash32, b: Hash32) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
    public var hex: String { bytes.hex }
    public var description: String { String(hex.prefix(12)) }
}

public struct Validator: Sendable, Equatable {
    public let id: ValidatorID
    public let power: UInt64

    public init(id: ValidatorID, power: UInt64 = 1) {
        self.id = id
        self.power = power
    }
}

/// An epoch's validators, in canonical order (ascending id). Quorums are by voting
/// power: a quorum is more than two thirds of the total, the f+1 threshold more than
/// one third.
public struct ValidatorSet: Sendable, Equatable {
    public let validators: [Validator]
    public let totalPower: UInt64

    /// The round-robin cycle: validator indices, each as often as its power (reduced by
    /// their common divisor) and spread evenly (smooth weighted round-robin). With equal
    /// powers it is the canonical order. Leaders by power matter for liveness: a
    /// minority by power that held half the slots could alternate with the honest
    /// leaders, and a 2-chain commit needs two honest leaders in a row.
    private let cycle: [Int]
    /// Above this many slots the cycle is not built; leaders are drawn by power instead.
    static let maxCycle: UInt64 = 1 << 16

    public init(_ validators: [Validator]) {
        self.validators = validators.sorted { $0.id.precedesID($1.id) }
        totalPower = validators.reduce(0) { $0 + $1.power }
        cycle = Self.weightedCycle(self.validators.map(\.power))
    }

    static func weightedCycle(_ powers: [UInt64]) -> [Int] {
        func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 { b == 0 ? a : gcd(b, a % b) }
        let divisor = max(1, powers.reduce(0, gcd))
        let weights = powers.map { $0 / divisor }
        let total = weights.reduce(0, +)
        guard total > 0, total <= maxCycle else { return [] }
        var current = [Int64](repeating: 0, count: weights.count)
        var out: [Int] = []
        out.reserveCapacity(Int(total))
        for _ in 0..<total {
            for i in weights.indices { current[i] += Int64(weights[i]) }
            let best = current.indices.max { current[$0] < current[$1] || (current[$0] == current[$1] && $0 > $1) }!
            current[best] -= Int64(total)
            out.append(best)
        }
        return out
    }

    /// 2f+1 when every power is 1 and n = 3f+1.
    public var quorumPower: UInt64 { totalPower * 2 / 3 + 1 }
    /// f+1 when every power is 1 and n = 3f+1: at least one honest signer.
    public var amplificationPower: UInt64 { totalPower / 3 + 1 }

    public func power(of id: ValidatorID) -> UInt64 { validators.first { $0.id == id }?.power ?? 0 }
    public func contains(_ id: ValidatorID) -> Bool { validators.contains { $0.id == id } }

    public func power<S: Sequence>(of signers: S) -> UInt64 where S.Element == ValidatorID {
        Set(signers).reduce(0) { $0 + power(of: $1) }
    }

    /// Round-robin by power: a new leader every round, along `cycle` (equal powers: the
    /// canonical order). For very large powers, a draw by power seeded by the round.
    public func leader(of round: Round) -> ValidatorID {
        if !cycle.isEmpty { return validators[cycle[Int(round % UInt64(cycle.count))]].id }
        var w = WireWriter()
        w.string16("sidenode-round-robin")
        w.u64(round)
        var pick = Hash32.of(w.bytes).bytes.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } % max(1, totalPower)
        for v in validators {
            if pick < v.power { return v.id }
            pick -= v.power
        }
        return validators[validators.count - 1].id
    }
}

extension Ed25519.PublicKey {
    func precedesID(_ other: Ed25519.PublicKey) -> Bool {
        rawRepresentation.lexicographicallyPrecedes(other.rawRepresentation)
    }
}

/// Domain-separated signing: every signed consensus structure names the chain and
/// the epoch, so a signature cannot be replayed on another network or epoch.
struct SigningDomain: Sendable, Equatable {
    let chainID: String
    func message(_ kind: String, epoch: Epoch, _ body: [UInt8]) -> [UInt8] {
        var w = WireWriter(capacity: body.count + 48)
        w.string16("sidenode-consensus/\(kind)")
        w.string16(chainID)
        w.u64(epoch)
        w.fixed(body)
        return w.bytes
    }
}

/// What a vote is about: the block and its parent, and the speculated state after it.
public struct VoteInfo: Sendable, Equatable {
    public let blockID: Hash32
    public let round: Round
    public let parentID: Hash32
    public let parentRound: Round
    public let execStateID: Hash32
    public let epoch: Epoch

    public init(
        blockID: Hash32, round: Round, parentID: Hash32, parentRound: Round, execStateID: Hash32, epoch: Epoch
    ) {
        self.blockID = blockID
        self.round = round
        self.parentID = parentID
        self.parentRound = parentRound
        self.execStateID = execStateID
        self.epoch = epoch
    }

    func encode(_ w: inout WireWriter) {
        w.fixed(blockID.bytes)
        w.u64(round)
        w.fixed(parentID.bytes)
        w.u64(parentRound)
        w.fixed(execStateID.bytes)
        w.u64(epoch)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> VoteInfo {
        VoteInfo(
            blockID: try Hash32(bytes: try r.fixed(32)), round: try r.u64(),
            parentID: try Hash32(bytes: try r.fixed(32)),
            parentRound: try r.u64(), execStateID: try Hash32(bytes: try r.fixed(32)), epoch: try r.u64())
    }

    public var hash: Hash32 {
        var w = WireWriter()
        encode(&w)
        return Hash32.of(w.bytes)
    }
}

/// What validators sign when voting. `commitStateID` is set when a QC over this vote
/// commits the parent block (2-chain rule); the QC then certifies that state, and
/// epoch and round are part of the signed data (the Bitcoin checkpoint needs them).
public struct LedgerCommitInfo: Sendable, Equatable, Hashable {
    public let epoch: Epoch
    public let round: Round
    public let commitStateID: Hash32?
    public let voteInfoHash: Hash32

    public init(epoch: Epoch, round: Round, commitStateID: Hash32?, voteInfoHash: Hash32) {
        self.epoch = epoch
        self.round = round
        self.commitStateID = commitStateID
        self.voteInfoHash = voteInfoHash
    }

    func encode(_ w: inout WireWriter) {
        w.u64(epoch)
        w.u64(round)
        if let commitStateID {
            w.u8(1)
            w.fixed(commitStateID.bytes)
        } else {
            w.u8(0)
        }
        w.fixed(voteInfoHash.bytes)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> LedgerCommitInfo {
        let epoch = try r.u64()
        let round = try r.u64()
        let flag = try r.u8()
        guard flag <= 1 else { throw WireError("commit state flag must be 0 or 1") }
        let state = flag == 1 ? try Hash32(bytes: try r.fixed(32)) : nil
        return LedgerCommitInfo(
            epoch: epoch, round: round, commitStateID: state, voteInfoHash: try Hash32(bytes: try r.fixed(32)))
    }

    var bytes: [UInt8] {
        var w = WireWriter()
        encode(&w)
        return w.bytes
    }

    /// What a validator signs to vote for this (docs/wire.md §5): a QC is these signatures.
    public func signingMessage(chainID: String) -> [UInt8] {
        SigningDomain(chainID: chainID).message("vote", epoch: epoch, bytes)
    }
}

public struct SignerSignature: Sendable, Equatable {
    public let signer: ValidatorID
    public let signature: Ed25519.Signature

    public init(signer: ValidatorID, signature: Ed25519.Signature) {
        self.signer = signer
        self.signature = signature
    }
}

/// A quorum certificate: 2f+1 (by power) signatures over one LedgerCommitInfo.
/// Signatures are sorted by signer so a certificate has exactly one encoding.
public struct QuorumCert: Sendable, Equatable {
    public let voteInfo: VoteInfo
    public let commitInfo: LedgerCommitInfo
    public let signatures: [SignerSignature]

    public init(voteInfo: VoteInfo, commitInfo: LedgerCommitInfo, signatures: [SignerSignature]) {
        self.voteInfo = voteInfo
        self.commitInfo = commitInfo
        self.signatures = signatures.sorted { $0.signer.precedesID($1.signer) }
    }

    public var round: Round { voteInfo.round }
    public var blockID: Hash32 { voteInfo.blockID }

    /// The certificate every epoch starts from: it certifies the epoch's genesis block
    /// and is built locally by every node, never received.
    public static func genesis(epoch: Epoch, blockID: Hash32, stateID: Hash32) -> QuorumCert {
        let info = VoteInfo(
            blockID: blockID, round: 0, parentID: .zero, parentRound: 0, execStateID: stateID, epoch: epoch)
        return QuorumCert(
            voteInfo: info,
            commitInfo: LedgerCommitInfo(epoch: epoch, round: 0, commitStateID: stateID, voteInfoHash: info.hash),
            signatures: [])
    }

    public var isGenesis: Bool { voteInfo.round == 0 && signatures.isEmpty }

    func encode(_ w: inout WireWriter) {
        voteInfo.encode(&w)
        commitInfo.encode(&w)
        w.u16(UInt16(signatures.count))
        for s in signatures {
            w.fixed(s.signer.rawRepresentation)
            w.fixed(s.signature.rawRepresentation)
        }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> QuorumCert {
        let info = try VoteInfo.decode(&r)
        let commit = try LedgerCommitInfo.decode(&r)
        let n = Int(try r.u16())
        guard n <= 1024 else { throw WireError("\(n) signatures") }
        var sigs: [SignerSignature] = []
        for _ in 0..<n {
            let signer = try r.fixed(32)
            let sig = try r.fixed(64)
            sigs.append(
                SignerSignature(
                    signer: try! Ed25519.PublicKey(uncheckedRawRepresentation: signer),
                    signature: try! Ed25519.Signature(rawRepresentation: sig)))
        }
        // Canonical form: signers strictly ascending (one encoding per certificate).
        for (a, b) in zip(sigs, sigs.dropFirst()) where !a.signer.precedesID(b.signer) {
            throw WireError("certificate signers must be strictly ascending")
        }
        return QuorumCert(voteInfo: info, commitInfo: commit, signatures: sigs)
    }
}

/// A block: an ordered batch of opaque transactions extending the block its QC certifies.
public struct Block: Sendable, Equatable {
    public let epoch: Epoch
    public let round: Round
    public let author: ValidatorID
    public let payload: [[UInt8]]
    public let qc: QuorumCert
    /// The leaders of the rounds between the QC's round and this one, which produced no
    /// certified block (Aptos' `failed_authors`): reputation-based election weighs them
    /// down. Voters check the list against their own election; at most
    /// `maxFailedAuthors`, the most recent.
    public let failedAuthors: [FailedAuthor]
    public let id: Hash32

    public struct FailedAuthor: Sendable, Equatable {
        public let round: Round
        public let author: ValidatorID

        public init(round: Round, author: ValidatorID) {
            self.round = round
            self.author = author
        }
    }
    public static let maxFailedAuthors = 10

    /// Bytes of the transactions it carries (what `max_block_bytes` caps).
    public var payloadBytes: Int { payload.reduce(0) { $0 + $1.count } }

    public init(
        epoch: Epoch, round: Round, author: ValidatorID, payload: [[UInt8]], qc: QuorumCert,
        failedAuthors: [FailedAuthor] = []
    ) {
        self.epoch = epoch
        self.round = round
        self.author = author
        self.payload = payload
        self.qc = qc
        self.failedAuthors = failedAuthors
        var w = WireWriter()
        Self.encodeBody(
            &w, epoch: epoch, round: round, author: author, payload: payload, qc: qc, failedAuthors: failedAuthors)
        id = Hash32.of(w.bytes)
    }

    public var parentID: Hash32 { qc.blockID }

    static func encodeBody(
        _ w: inout WireWriter, epoch: Epoch, round: Round, author: ValidatorID, payload: [[UInt8]], qc: QuorumCert,
        failedAuthors: [FailedAuthor]
    ) {
        w.u64(epoch)
        w.u64(round)
        w.fixed(author.rawRepresentation)
        w.u32(UInt32(payload.count))
        for tx in payload { w.bytes32(tx) }
        qc.encode(&w)
        w.u16(UInt16(failedAuthors.count))
        for failed in failedAuthors {
            w.u64(failed.round)
            w.fixed(failed.author.rawRepresentation)
        }
    }

    func encode(_ w: inout WireWriter) {
        Self.encodeBody(
            &w, epoch: epoch, round: round, author: author, payload: payload, qc: qc, failedAuthors: failedAuthors)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> Block {
        let epoch = try r.u64()
        let round = try r.u64()
        let authorBytes = try r.fixed(32)
        let author = try! Ed25519.PublicKey(uncheckedRawRepresentation: authorBytes)  // 32 bytes
        let n = Int(try r.u32())
        guard n <= 100_000 else { throw WireError("\(n) transactions in a block") }
        var payload: [[UInt8]] = []
        for _ in 0..<n { payload.append(try r.bytes32(max: 1 << 20)) }
        let qc = try QuorumCert.decode(&r)
        let m = Int(try r.u16("failed authors"))
        guard m <= maxFailedAuthors else { throw WireError("\(m) failed authors in a block") }
        var failed: [FailedAuthor] = []
        for _ in 0..<m {
            let round = try r.u64("failed round")
            let bytes = try r.fixed(32, "failed author")
            failed.append(FailedAuthor(round: round, author: try! Ed25519.PublicKey(uncheckedRawRepresentation: bytes)))
        }
        return Block(epoch: epoch, round: round, author: author, payload: payload, qc: qc, failedAuthors: failed)
    }
}

/// A timeout vote for a round, carrying the sender's highest QC. The signature
/// covers (round, high QC round) only, as in DIP-201.
public struct TimeoutInfo: Sendable, Equatable {
    public let epoch: Epoch
    public let round: Round
    public let highQC: QuorumCert
    public let sender: ValidatorID
    public let signature: Ed25519.Signature
}

/// A timeout certificate: 2f+1 (by power) signed timeouts for one round.
public struct TimeoutCert: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let signer: ValidatorID
        public let highQCRound: Round
        public let signature: Ed25519.Signature

        public init(signer: ValidatorID, highQCRound: Round, signature: Ed25519.Signature) {
            self.signer = signer
            self.highQCRound = highQCRound
            self.signature = signature
        }
    }

    public let epoch: Epoch
    public let round: Round
    /// The highest QC among the signers' (Aptos `TwoChainTimeoutCertificate`): a TC is
    /// valid only if no entry claims a higher round than this QC's, so a Byzantine
    /// signer cannot inflate its claim and make honest proposals unvotable.
    public let highQC: QuorumCert
    public let entries: [Entry]

    public init(epoch: Epoch, round: Round, highQC: QuorumCert, entries: [Entry]) {
        self.epoch = epoch
        self.round = round
        self.highQC = highQC
        self.entries = entries.sorted { $0.signer.precedesID($1.signer) }
    }

    public var highestQCRound: Round { entries.map(\.highQCRound).max() ?? 0 }

    /// `u64 epoch ‖ u64 round ‖ qc ‖ u16 n ‖ n × (signer ‖ u64 high_qc_round ‖ signature)`.
    func encode(_ w: inout WireWriter) {
        w.u64(epoch)
        w.u64(round)
        highQC.encode(&w)
        w.u16(UInt16(entries.count))
        for e in entries {
            w.fixed(e.signer.rawRepresentation)
            w.u64(e.highQCRound)
            w.fixed(e.signature.rawRepresentation)
        }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> TimeoutCert {
        let epoch = try r.u64()
        let round = try r.u64()
        let highQC = try QuorumCert.decode(&r)
        let n = Int(try r.u16())
        guard n <= 1024 else { throw WireError("\(n) timeout signatures") }
        var entries: [Entry] = []
        for _ in 0..<n {
            let signerBytes = try r.fixed(32, "signer")
            let hqc = try r.u64()
            let signatureBytes = try r.fixed(64, "signature")
            // The reads above throw on truncation; the lengths are then exactly right.
            let signer = try! Ed25519.PublicKey(uncheckedRawRepresentation: signerBytes)
            let signature = try! Ed25519.Signature(rawRepresentation: signatureBytes)
            entries.append(Entry(signer: signer, highQCRound: hqc, signature: signature))
        }
        for (a, b) in zip(entries, entries.dropFirst()) where !a.signer.precedesID(b.signer) {
            throw WireError("timeout certificate signers must be strictly ascending")
        }
        return TimeoutCert(epoch: epoch, round: round, highQC: highQC, entries: entries)
    }
}

public struct ProposalMsg: Sendable, Equatable {
    public let block: Block
    public let lastRoundTC: TimeoutCert?
    public let highCommitQC: QuorumCert
    public let signature: Ed25519.Signature
}

public struct VoteMsg: Sendable, Equatable {
    public let voteInfo: VoteInfo
    public let commitInfo: LedgerCommitInfo
    public let highCommitQC: QuorumCert
    public let sender: ValidatorID
    public let signature: Ed25519.Signature

    public init(
        voteInfo: VoteInfo, commitInfo: LedgerCommitInfo, highCommitQC: QuorumCert, sender: ValidatorID,
        signature: Ed25519.Signature
    ) {
        self.voteInfo = voteInfo
        self.commitInfo = commitInfo
        self.highCommitQC = highCommitQC
        self.sender = sender
        self.signature = signature
    }
}

public struct TimeoutMsg: Sendable, Equatable {
    public let info: TimeoutInfo
    public let lastRoundTC: TimeoutCert?
    public let highCommitQC: QuorumCert
}

public enum ConsensusMessage: Sendable, Equatable {
    case proposal(ProposalMsg)
    case vote(VoteMsg)
    case timeout(TimeoutMsg)
    /// Ask a peer for a block by id (catch-up of missing ancestors).
    case blockRequest(Hash32)
    case blockResponse(Block)
    /// Catch-up (docs/wire.md §5): a neighbour's committed height, round and current
    /// epoch, and the commit QC of its committed tip that proves them (none at
    /// genesis), sent periodically and at once when its epoch changes.
    case chainStatus(height: UInt64, round: Round, epoch: Epoch, proof: QuorumCert?)
    /// Ask for committed blocks from `height` on (at most `count`).
    case getCommitted(height: UInt64, count: UInt16)
    /// Committed blocks from `height` on, in order, and the QC that commits the last.
    /// A range never crosses an epoch's end; one that ends an epoch carries the
    /// epoch-change proof: `suffix` and `proof` (see `EpochChangeProof`).
    case committedRange(height: UInt64, blocks: [Block], proof: QuorumCert, suffix: [Block])
}

/// Proof that the last block of an epoch is committed. The epoch ends exactly at that
/// block, but the QC that commits it may commit a later block of the reconfiguration
/// suffix (empty blocks that keep its state); those blocks link the QC to it.
public struct EpochChangeProof: Sendable, Equatable {
    public static let maxSuffix: UInt16 = 64
    public let suffix: [Block]
    public let commitQC: QuorumCert

    public init(suffix: [Block], commitQC: QuorumCert) {
        self.suffix = suffix
        self.commitQC = commitQC
    }

    /// Checks that this proves `last` committed with state `stateID` in `config`'s epoch:
    /// a valid commit QC (2-chain) for the last suffix block, or for `last` itself; the
    /// suffix blocks extend `last` by hash links, carry nothing, and each certifies the
    /// same state. Returns why not.
    public func verify(ending last: Block, stateID: Hash32, config: ConsensusConfig) -> String? {
        guard config.isValid(commitQC) else { return "epoch-change QC is not a valid QC of epoch \(config.epoch)" }
        var parent = last
        for block in suffix {
            guard block.parentID == parent.id, block.epoch == config.epoch, block.payload.isEmpty,
                block.qc.voteInfo.execStateID == stateID
            else { return "epoch-change suffix block \(block.id) does not follow the epoch's last block" }
            parent = block
        }
        guard commitQC.voteInfo.parentID == parent.id, commitQC.voteInfo.parentRound == parent.round,
            commitQC.voteInfo.round == parent.round + 1, commitQC.commitInfo.commitStateID == stateID
        else { return "the epoch-change QC does not commit the epoch's last block with state \(stateID)" }
        return nil
    }
}
