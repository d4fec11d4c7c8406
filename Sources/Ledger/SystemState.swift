import NodeCrypto
import Wire

/// The chain's own configuration inside the ledger state: the epoch, its validators
/// and when it ends. It is part of the state root, so a QC that certifies a state id
/// also certifies the validator set it names — which is how a node that catches up
/// learns, from certified data alone, who signs the next epoch.
///
/// An epoch ends after the block that executes a validator-set change, and otherwise
/// after `epochLength` blocks. The state after an epoch's last block already names the
/// next epoch and its validators.
public struct SystemState: Sendable, Equatable {
    public struct ValidatorInfo: Sendable, Equatable {
        public let id: Ed25519.PublicKey
        public var power: UInt64
        /// BIP340 x-only key the validator signs Bitcoin checkpoints with.
        public var bitcoinKey: [UInt8]

        public init(id: Ed25519.PublicKey, power: UInt64, bitcoinKey: [UInt8]) {
            self.id = id
            self.power = power
            self.bitcoinKey = bitcoinKey
        }
    }

    public private(set) var epoch: UInt64
    public let epochLength: UInt64
    public private(set) var blocksInEpoch: UInt64 = 0
    /// This epoch's validators, ascending by id.
    public private(set) var validators: [ValidatorInfo]
    /// The next epoch's set, while the block that changes it executes.
    var next: [ValidatorInfo]?

    public init(epoch: UInt64, epochLength: UInt64, validators: [ValidatorInfo]) {
        self.epoch = epoch
        self.epochLength = epochLength
        self.validators = Self.sorted(validators)
    }

    static func sorted(_ v: [ValidatorInfo]) -> [ValidatorInfo] {
        v.sorted { $0.id.rawRepresentation.lexicographicallyPrecedes($1.id.rawRepresentation) }
    }

    public var totalPower: UInt64 { validators.reduce(0) { $0 + $1.power } }
    /// More than two thirds of the power: the same quorum that forms QCs.
    public var quorumPower: UInt64 { totalPower * 2 / 3 + 1 }

    /// Counts an executed block; returns whether it ended the epoch.
    mutating func endBlock() -> Bool {
        blocksInEpoch += 1
        guard next != nil || blocksInEpoch >= epochLength else { return false }
        validators = next ?? validators
        next = nil
        epoch += 1
        blocksInEpoch = 0
        return true
    }

    /// Checks a change and its approvals against this epoch's set; on success the change
    /// joins the next epoch's set. Returns why it is refused.
    mutating func apply(_ change: ValidatorChange, approvals: [ValidatorChange.Approval], chainID: String) -> String? {
        guard change.epoch == epoch else {
            return "validator change approved for epoch \(change.epoch), the chain is in epoch \(epoch)"
        }
        var signers: Set<Ed25519.PublicKey> = []
        var power: UInt64 = 0
        let message = change.signingMessage(chainID: chainID)
        for approval in approvals {
            guard let validator = validators.first(where: { $0.id == approval.validator }) else {
                return "approval by \(approval.validator.hex.prefix(16)), not a validator of epoch \(epoch)"
            }
            guard signers.insert(approval.validator).inserted else {
                return "two approvals by \(approval.validator.hex.prefix(16))"
            }
            guard approval.validator.isValidSignature(approval.signature, for: message) else {
                return "invalid approval signature by \(approval.validator.hex.prefix(16))"
            }
            power += validator.power
        }
        guard power >= quorumPower else {
            return "approvals carry power \(power) of \(totalPower); more than two thirds (\(quorumPower)) are needed"
        }
        var set = next ?? validators
        let index = set.firstIndex { $0.id == change.validator }
        // Two validators with one Bitcoin key would put it twice in the coin's script: no
        // coin could be built for that set (and one key would count twice towards k).
        switch change.operation {
        case .add(_, let key), .setBitcoinKey(let key):
            if let holder = set.first(where: { $0.bitcoinKey == key && $0.id != change.validator }) {
                return "Bitcoin key \(key.hex.prefix(16)) is already \(holder.id.hex.prefix(16))'s"
            }
        case .remove:
            break
        }
        switch change.operation {
        case .add(let power, let key):
            guard index == nil else { return "\(change.validator.hex.prefix(16)) is already a validator" }
            set.append(ValidatorInfo(id: change.validator, power: power, bitcoinKey: key))
        case .remove:
            guard let index else { return "\(change.validator.hex.prefix(16)) is not a validator" }
            guard set.count > 1 else { return "the last validator cannot be removed" }
            set.remove(at: index)
        case .setBitcoinKey(let key):
            guard let index else { return "\(change.validator.hex.prefix(16)) is not a validator" }
            set[index].bitcoinKey = key
        }
        next = Self.sorted(set)
        return nil
    }

    func encode(_ w: inout WireWriter) {
        w.u64(epoch)
        w.u64(epochLength)
        w.u64(blocksInEpoch)
        w.u32(UInt32(validators.count))
        for v in validators {
            w.fixed(v.id.rawRepresentation)
            w.u64(v.power)
            w.fixed(v.bitcoinKey)
        }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> SystemState {
        let epoch = try r.u64("epoch")
        let length = try r.u64("epoch length")
        let blocks = try r.u64("blocks in epoch")
        let n = Int(try r.u32("validator count"))
        guard n >= 1, n <= 1024 else { throw WireError("\(n) validators") }
        var validators: [ValidatorInfo] = []
        for _ in 0..<n {
            // Read first (a short input is an error), then wrap: 32 bytes always make a key.
            let raw = try r.fixed(32, "validator")
            let id = try! Ed25519.PublicKey(uncheckedRawRepresentation: raw)
            validators.append(
                ValidatorInfo(id: id, power: try r.u64("power"), bitcoinKey: try r.fixed(32, "bitcoin key")))
        }
        var state = SystemState(epoch: epoch, epochLength: length, validators: validators)
        state.blocksInEpoch = blocks
        return state
    }

    /// The stored form (an epoch's record keeps the state it starts with).
    public var encoded: [UInt8] {
        var w = WireWriter()
        encode(&w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> SystemState {
        var r = WireReader(bytes)
        let state = try decode(&r)
        try r.finish()
        return state
    }
}

/// A change to the validator set, carried by a transaction (payload kind 3) with the
/// approvals of more than two thirds of the current epoch's voting power. Approvals
/// sign the change for one epoch only, so they cannot be replayed later.
///
///     change   = u64 epoch || u8 op || node id (32) || op body
///                op 1 add: u64 power || bitcoin x-only key (32)
///                op 2 remove: (empty)
///                op 3 set Bitcoin key: bitcoin x-only key (32)
///     approval = ed25519 signature over "sidenode-validator-change:" || string16 chain id || change
public struct ValidatorChange: Sendable, Equatable {
    public enum Operation: Sendable, Equatable {
        case add(power: UInt64, bitcoinKey: [UInt8])
        case remove
        case setBitcoinKey([UInt8])
    }

    public struct Approval: Sendable, Equatable {
        public let validator: Ed25519.PublicKey
        public let signature: Ed25519.Signature

        public init(validator: Ed25519.PublicKey, signature: Ed25519.Signature) {
            self.validator = validator
            self.signature = signature
        }

        /// From the hex an admin call or a change file carries (either case); nil if either
        /// is not a key or a 64-byte signature.
        public init?(validatorHex: String, signatureHex: String) {
            guard let v = try? Hex.decode(validatorHex), let validator = try? Ed25519.PublicKey(rawRepresentation: v),
                let s = try? Hex.decode(signatureHex), let signature = try? Ed25519.Signature(rawRepresentation: s)
            else { return nil }
            self.init(validator: validator, signature: signature)
        }
    }

    public let epoch: UInt64
    public let validator: Ed25519.PublicKey
    public let operation: Operation

    public init(epoch: UInt64, validator: Ed25519.PublicKey, operation: Operation) {
        self.epoch = epoch
        self.validator = validator
        self.operation = operation
    }

    public var encoded: [UInt8] {
        var w = WireWriter()
        w.u64(epoch)
        switch operation {
        case .add(let power, let key):
            w.u8(1)
            w.fixed(validator.rawRepresentation)
            w.u64(power)
            w.fixed(key)
        case .remove:
            w.u8(2)
            w.fixed(validator.rawRepresentation)
        case .setBitcoinKey(let key):
            w.u8(3)
            w.fixed(validator.rawRepresentation)
            w.fixed(key)
        }
        return w.bytes
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> ValidatorChange {
        let epoch = try r.u64("epoch")
        let op = try r.u8("operation")
        let raw = try r.fixed(32, "validator")
        let validator = try! Ed25519.PublicKey(uncheckedRawRepresentation: raw)  // exactly 32 bytes
        let operation: Operation
        switch op {
        case 1: operation = .add(power: try r.u64("power"), bitcoinKey: try r.fixed(32, "bitcoin key"))
        case 2: operation = .remove
        case 3: operation = .setBitcoinKey(try r.fixed(32, "bitcoin key"))
        default: throw WireError("unknown validator change operation \(op)")
        }
        return ValidatorChange(epoch: epoch, validator: validator, operation: operation)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> ValidatorChange {
        var r = WireReader(bytes)
        let change = try decode(&r)
        try r.finish()
        return change
    }

    public func signingMessage(chainID: String) -> [UInt8] {
        var w = WireWriter()
        w.fixed(Array("sidenode-validator-change:".utf8))
        w.string16(chainID)
        w.fixed(encoded)
        return w.bytes
    }

    /// Whether `approval` signs this change on `chainID`.
    public func verifies(_ approval: Approval, chainID: String) -> Bool {
        approval.validator.isValidSignature(approval.signature, for: signingMessage(chainID: chainID))
    }

    public func approve(chainID: String, key: Ed25519.PrivateKey) -> Approval {
        Approval(validator: key.publicKey, signature: key.signature(for: signingMessage(chainID: chainID)))
    }

    /// Field rules that need no state: a valid node id, a valid x-only key, a power.
    public func validate() -> String? {
        guard (try? Ed25519.PublicKey(rawRepresentation: validator.rawRepresentation)) != nil else {
            return "validator change: not a valid node id"
        }
        switch operation {
        case .add(let power, let key):
            guard power >= 1, power <= 1_000_000 else { return "validator change: power must be 1…1000000" }
            guard (try? Secp256k1.XOnlyPublicKey(rawRepresentation: key)) != nil else {
                return "validator change: not a valid x-only Bitcoin key"
            }
        case .setBitcoinKey(let key):
            guard (try? Secp256k1.XOnlyPublicKey(rawRepresentation: key)) != nil else {
                return "validator change: not a valid x-only Bitcoin key"
            }
        case .remove:
            break
        }
        return nil
    }
}
