import NodeCrypto
import Wire

/// A transaction id: BLAKE2b-256 of the transaction's full encoding (body and signature).
public struct TxID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    // The bytes in one call: the synthesized hash feeds the hasher byte by byte, which
    // dominated profiles of the DAG and seen-caches.
    public func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }

    public init(bytes: [UInt8]) throws(WireError) {
        guard bytes.count == 32 else { throw WireError("a transaction id is 32 bytes, got \(bytes.count)") }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public init(hex: String) throws {
        try self.init(bytes: Hex.decode(hex))
    }

    public static func < (a: TxID, b: TxID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
    public var hex: String { bytes.hex }
    public var description: String { hex }
}

/// What a transaction does. The encoding is `u16 kind || bytes32 body`, so later
/// kinds (validator-set changes, contract calls) add new numbers without changing
/// how existing transactions encode, and so without changing their ids.
public enum TxPayload: Sendable, Equatable {
    case transfer(to: Ed25519.PublicKey, amount: UInt64)
    case data([UInt8])
    /// A validator-set change with the current quorum's approvals (see `ValidatorChange`).
    case validatorChange(ValidatorChange, approvals: [ValidatorChange.Approval])
    /// A contract message (the `wasm/` module).
    case contract(ContractMsg)

    public static let maxDataBytes = 16 * 1024

    enum Kind: UInt16 {
        case transfer = 1
        case data = 2
        case validatorChange = 3
        case storeCode = 4
        case instantiate = 5
        case execute = 6
        case migrate = 7
    }

    var kind: Kind {
        switch self {
        case .transfer: .transfer
        case .data: .data
        case .validatorChange: .validatorChange
        case .contract(let msg): msg.kind
        }
    }

    func encodeBody() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .transfer(let to, let amount):
            w.fixed(to.rawRepresentation)
            w.u64(amount)
        case .data(let bytes):
            w.bytes32(bytes)
        case .validatorChange(let change, let approvals):
            w.bytes32(change.encoded)
            w.u16(UInt16(approvals.count))
            for a in approvals {
                w.fixed(a.validator.rawRepresentation)
                w.fixed(a.signature.rawRepresentation)
            }
        case .contract(let msg):
            msg.encode(&w)
        }
        return w.bytes
    }

    static func decode(kind raw: UInt16, body: [UInt8]) throws(WireError) -> TxPayload {
        guard let kind = Kind(rawValue: raw) else { throw WireError("unknown payload kind \(raw)") }
        var r = WireReader(body)
        let payload: TxPayload
        switch kind {
        case .transfer:
            // An account is 32 bytes; the point is not checked here (it costs as much as a
            // verification). A transfer to a key nobody can sign for is burnt, as a payment
            // to an unspendable address is; `p2pnode tx send` checks the key it is given.
            let recipient = try r.fixed(32, "recipient")
            let to = try! Ed25519.PublicKey(uncheckedRawRepresentation: recipient)  // exactly 32 bytes
            payload = .transfer(to: to, amount: try r.u64("amount"))
        case .data:
            payload = .data(try r.bytes32(max: maxDataBytes, "data"))
        case .validatorChange:
            let change = try ValidatorChange.decode(try r.bytes32(max: 128, "validator change"))
            let n = Int(try r.u16("approval count"))
            guard n <= 128 else { throw WireError("\(n) approvals exceed 128") }
            var approvals: [ValidatorChange.Approval] = []
            for _ in 0..<n {
                // Read first (a short input is an error), then wrap the exact-size bytes.
                let rawKey = try r.fixed(32, "approver")
                let rawSignature = try r.fixed(64, "approval")
                let validator = try! Ed25519.PublicKey(uncheckedRawRepresentation: rawKey)
                let signature = try! Ed25519.Signature(rawRepresentation: rawSignature)
                approvals.append(.init(validator: validator, signature: signature))
            }
            payload = .validatorChange(change, approvals: approvals)
        case .storeCode, .instantiate, .execute, .migrate:
            payload = .contract(try ContractMsg.decode(kind, &r))
        }
        try r.finish()
        return payload
    }
}

/// A signed transaction: the unit of the BFT-CRDT. Encoding (docs/wire.md §3):
///
///     body = u8 version (1) || string16 chain_id || author (32) || u64 seq || u64 fee
///            || u16 kind || bytes32 payload_body || u16 n || n × predecessor id (32, ascending)
///     tx   = body || ed25519 signature (64) over "sidenode-tx:" || body
///     id   = BLAKE2b-256(tx)
public struct Transaction: Sendable, Equatable {
    public static let version: UInt8 = 1
    public static let maxPredecessors = 16
    /// Stored code makes the largest transactions (`ContractMsg.maxCodeBytes`); every
    /// other payload has its own, smaller cap.
    public static let maxEncodedSize = ContractMsg.maxCodeBytes + 32 * 1024
    /// The largest transaction that is not a code upload: a block must fit one. (A chain
    /// whose blocks are smaller than an upload refuses that upload at submission.)
    public static let maxStandardSize = 20 * 1024
    static let signingDomain = Array("sidenode-tx:".utf8)

    public let chainID: String
    public let author: Ed25519.PublicKey
    public let seq: UInt64
    public let fee: UInt64
    public let payload: TxPayload
    /// Ids of the heads the author knew, strictly ascending.
    public let predecessors: [TxID]
    public let signature: Ed25519.Signature
    /// The full canonical encoding and its hash, kept so they are computed once.
    public let encoded: [UInt8]
    public let id: TxID

    /// Builds and signs a transaction. Predecessors are sorted and de-duplicated.
    public init(
        chainID: String, author: Ed25519.PrivateKey, seq: UInt64, fee: UInt64, payload: TxPayload,
        predecessors: [TxID]
    ) {
        let preds = Array(Set(predecessors)).sorted()
        let body = Self.encodeBody(
            chainID: chainID, author: author.publicKey, seq: seq, fee: fee, payload: payload, predecessors: preds)
        let signature = author.signature(for: Self.signingDomain + body)
        self.init(
            chainID: chainID, author: author.publicKey, seq: seq, fee: fee, payload: payload, predecessors: preds,
            signature: signature, encoded: body + signature.rawRepresentation)
    }

    private init(
        chainID: String, author: Ed25519.PublicKey, seq: UInt64, fee: UInt64, payload: TxPayload,
        predecessors: [TxID], signature: Ed25519.Signature, encoded: [UInt8]
    ) {
        self.chainID = chainID
        self.author = author
        self.seq = seq
        self.fee = fee
        self.payload = payload
        self.predecessors = predecessors
        self.signature = signature
        self.encoded = encoded
        self.id = TxID(unchecked: BLAKE2b.hash256(encoded))
    }

    static func encodeBody(
        chainID: String, author: Ed25519.PublicKey, seq: UInt64, fee: UInt64, payload: TxPayload,
        predecessors: [TxID]
    ) -> [UInt8] {
        var w = WireWriter(capacity: 160)
        w.u8(version)
        w.string16(chainID)
        w.fixed(author.rawRepresentation)
        w.u64(seq)
        w.u64(fee)
        w.u16(payload.kind.rawValue)
        w.bytes32(payload.encodeBody())
        w.u16(UInt16(predecessors.count))
        for p in predecessors { w.fixed(p.bytes) }
        return w.bytes
    }

    /// Decodes strictly (canonical form only) without checking the signature.
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Transaction {
        guard bytes.count <= maxEncodedSize else {
            throw WireError("transaction of \(bytes.count) bytes exceeds \(maxEncodedSize)")
        }
        var r = WireReader(bytes)
        let version = try r.u8("version")
        guard version == Self.version else { throw WireError("unsupported transaction version \(version)") }
        let chainID = try r.string16(max: 64, "chain id")
        // Checked by the signature verification in validateStandalone, which rejects
        // non-canonical and small-order keys.
        let authorBytes = try r.fixed(32, "author")
        let author = try! Ed25519.PublicKey(uncheckedRawRepresentation: authorBytes)
        let seq = try r.u64("seq")
        let fee = try r.u64("fee")
        let kind = try r.u16("payload kind")
        let body = try r.bytes32(max: maxEncodedSize, "payload")
        let payload = try TxPayload.decode(kind: kind, body: body)
        // Only a code upload may be large: everything else stays near a standard transaction.
        if case .contract(.storeCode) = payload {
        } else if bytes.count > maxStandardSize + ContractMsg.maxMessageBytes {
            throw WireError("a transaction of \(bytes.count) bytes that is not a code upload")
        }
        let count = Int(try r.u16("predecessor count"))
        guard count <= maxPredecessors else { throw WireError("\(count) predecessors exceed \(maxPredecessors)") }
        var preds: [TxID] = []
        for _ in 0..<count {
            let id = TxID(unchecked: try r.fixed(32, "predecessor"))
            if let last = preds.last, !(last < id) {
                throw WireError("predecessors must be strictly ascending (sorted, no duplicates)")
            }
            preds.append(id)
        }
        let signatureBytes = try r.fixed(64, "signature")
        let signature = try! Ed25519.Signature(rawRepresentation: signatureBytes)  // exactly 64 bytes
        try r.finish()
        return Transaction(
            chainID: chainID, author: author, seq: seq, fee: fee, payload: payload, predecessors: preds,
            signature: signature, encoded: bytes)
    }

    /// The bytes the author signed.
    public var signingMessage: [UInt8] { Self.signingDomain + Array(encoded.dropLast(64)) }

    /// Checks that depend on the transaction alone: chain, signature, field rules.
    public func validateStandalone(chainID expected: String, checkSignature: Bool = true) -> String? {
        guard chainID == expected else { return "wrong chain id '\(chainID)' (expected '\(expected)')" }
        guard seq >= 1 else { return "seq must be at least 1" }
        if case .transfer(_, let amount) = payload, amount == 0 { return "transfer amount must be positive" }
        if case .validatorChange(let change, _) = payload, let problem = change.validate() { return problem }
        if case .contract(let msg) = payload {
            if let problem = msg.validate() { return problem }
            let minimum = ContractMsg.minimumFee(gasLimit: msg.gasLimit)
            guard fee >= minimum else {
                return "fee \(fee) is below \(minimum), the minimum for a gas limit of \(msg.gasLimit) (0.001 per gas)"
            }
        }
        guard !checkSignature || author.isValidSignature(signature, for: signingMessage) else {
            return "invalid signature"
        }
        return nil
    }
}
