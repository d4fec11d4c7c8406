import NodeCrypto
import Wire

/// A contract transaction's payload (the `wasm/` module). The shapes follow wasmd's
/// `MsgStoreCode`, `MsgInstantiateContract`, `MsgExecuteContract` and
/// `MsgMigrateContract`; `funds` are in the chain's one coin (`ContractMsg.denom`), and
/// every message carries its gas limit (Cosmos SDK gas, as wasmd counts it).
public enum ContractMsg: Sendable, Equatable {
    case storeCode(wasm: [UInt8], gasLimit: UInt64)
    case instantiate(
        codeID: UInt64, admin: Ed25519.PublicKey?, label: String, msg: [UInt8], funds: UInt64, gasLimit: UInt64)
    case execute(contract: [UInt8], msg: [UInt8], funds: UInt64, gasLimit: UInt64)
    /// Only the contract's admin may migrate it.
    case migrate(contract: [UInt8], codeID: UInt64, msg: [UInt8], gasLimit: UInt64)

    /// wasmd's `MaxWasmSize`: larger code is refused before it costs more than its bytes.
    public static let maxCodeBytes = 800 * 1024
    /// A contract message's JSON (wasmd's `MaxInstantiateMsgSize` / execute limits are
    /// larger; 64 KiB keeps a transaction small next to blocks and gossip frames).
    public static let maxMessageBytes = 64 * 1024
    public static let maxLabelBytes = 128
    /// The chain's one coin as contracts see it (`Coin.denom`).
    public static let denom = "uside"
    /// A transaction's gas limit cannot exceed this (about 1.4 s of interpreted Wasm).
    public static let maxGasLimit: UInt64 = 10_000_000
    /// Compute is paid for: a contract transaction's fee covers its gas limit at
    /// 0.001 per gas (wasmd nodes' `minimum-gas-prices`, here a chain rule).
    public static func minimumFee(gasLimit: UInt64) -> UInt64 { (gasLimit + 999) / 1_000 }
    /// A block runs contract transactions whose gas limits add up to at most this; the
    /// rest wait for a later block (`LedgerState.Receipt.Code.blockGasFull`).
    public static let maxBlockGas: UInt64 = 20_000_000

    public var gasLimit: UInt64 {
        switch self {
        case .storeCode(_, let g), .instantiate(_, _, _, _, _, let g), .execute(_, _, _, let g),
            .migrate(_, _, _, let g):
            g
        }
    }

    var kind: TxPayload.Kind {
        switch self {
        case .storeCode: .storeCode
        case .instantiate: .instantiate
        case .execute: .execute
        case .migrate: .migrate
        }
    }

    func encode(_ w: inout WireWriter) {
        switch self {
        case .storeCode(let wasm, let gas):
            w.bytes32(wasm)
            w.u64(gas)
        case .instantiate(let codeID, let admin, let label, let msg, let funds, let gas):
            w.u64(codeID)
            if let admin {
                w.u8(1)
                w.fixed(admin.rawRepresentation)
            } else {
                w.u8(0)
            }
            w.string16(label)
            w.bytes32(msg)
            w.u64(funds)
            w.u64(gas)
        case .execute(let contract, let msg, let funds, let gas):
            w.fixed(contract)
            w.bytes32(msg)
            w.u64(funds)
            w.u64(gas)
        case .migrate(let contract, let codeID, let msg, let gas):
            w.fixed(contract)
            w.u64(codeID)
            w.bytes32(msg)
            w.u64(gas)
        }
    }

    static func decode(_ kind: TxPayload.Kind, _ r: inout WireReader) throws(WireError) -> ContractMsg {
        switch kind {
        case .storeCode:
            let wasm = try r.bytes32(max: maxCodeBytes, "wasm code")
            return .storeCode(wasm: wasm, gasLimit: try r.u64("gas limit"))
        case .instantiate:
            let codeID = try r.u64("code id")
            let admin: Ed25519.PublicKey?
            switch try r.u8("admin flag") {
            case 0: admin = nil
            case 1: admin = try! Ed25519.PublicKey(uncheckedRawRepresentation: try r.fixed(32, "admin"))
            case let f: throw WireError("admin flag \(f) is neither 0 nor 1")
            }
            let label = try r.string16(max: maxLabelBytes, "label")
            let msg = try r.bytes32(max: maxMessageBytes, "message")
            let funds = try r.u64("funds")
            return .instantiate(
                codeID: codeID, admin: admin, label: label, msg: msg, funds: funds, gasLimit: try r.u64("gas limit"))
        case .execute:
            let contract = try r.fixed(32, "contract")
            let msg = try r.bytes32(max: maxMessageBytes, "message")
            let funds = try r.u64("funds")
            return .execute(contract: contract, msg: msg, funds: funds, gasLimit: try r.u64("gas limit"))
        case .migrate:
            let contract = try r.fixed(32, "contract")
            let codeID = try r.u64("code id")
            let msg = try r.bytes32(max: maxMessageBytes, "message")
            return .migrate(contract: contract, codeID: codeID, msg: msg, gasLimit: try r.u64("gas limit"))
        default:
            throw WireError("not a contract payload kind")
        }
    }

    /// Field rules that need no state.
    func validate() -> String? {
        guard gasLimit > 0, gasLimit <= Self.maxGasLimit else {
            return "gas limit must be within 1…\(Self.maxGasLimit), got \(gasLimit)"
        }
        switch self {
        case .storeCode(let wasm, _):
            guard !wasm.isEmpty else { return "empty wasm code" }
        case .instantiate(_, _, let label, _, _, _):
            guard !label.isEmpty else { return "a contract needs a label" }
        default: break
        }
        return nil
    }
}

/// The `wasm/` module's state keys (docs/state.md).
extension StateKey {
    /// `wasm/code/` ‖ u64 code id → `CodeInfo`.
    public static func code(_ id: UInt64) -> [UInt8] {
        var w = WireWriter(capacity: 18)
        w.fixed(codePrefix)
        w.u64(id)
        return w.bytes
    }
    public static let codePrefix = Array("wasm/code/".utf8)
    /// `wasm/contract/` ‖ address (32) → `ContractInfo`.
    public static func contract(_ address: [UInt8]) -> [UInt8] { contractPrefix + address }
    public static let contractPrefix = Array("wasm/contract/".utf8)
    /// `wasm/store/` ‖ address (32) ‖ key → the contract's value (its own storage).
    public static func contractStore(_ address: [UInt8], _ key: [UInt8]) -> [UInt8] {
        contractStorePrefix + address + key
    }
    public static let contractStorePrefix = Array("wasm/store/".utf8)
    /// `wasm/seq/code`, `wasm/seq/instance`: u64, the last id given out.
    public static let lastCodeID = Array("wasm/seq/code".utf8)
    public static let lastInstanceID = Array("wasm/seq/instance".utf8)
}

/// What the state records about stored code: the wasm itself is kept outside the tree,
/// by its SHA-256 (`checksum`), as wasmd keeps it in the VM's cache.
public struct CodeInfo: Sendable, Equatable {
    public let checksum: [UInt8]
    public let creator: Ed25519.PublicKey
    public let size: UInt32

    public init(checksum: [UInt8], creator: Ed25519.PublicKey, size: UInt32) {
        self.checksum = checksum
        self.creator = creator
        self.size = size
    }

    public var encoded: [UInt8] {
        var w = WireWriter(capacity: 68)
        w.fixed(checksum)
        w.fixed(creator.rawRepresentation)
        w.u32(size)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> CodeInfo {
        var r = WireReader(bytes)
        let checksum = try r.fixed(32, "checksum")
        let creator = try! Ed25519.PublicKey(uncheckedRawRepresentation: try r.fixed(32, "creator"))
        let size = try r.u32("size")
        try r.finish()
        return CodeInfo(checksum: checksum, creator: creator, size: size)
    }
}

/// A contract instance (wasmd's `ContractInfo`).
public struct ContractInfo: Sendable, Equatable {
    public var codeID: UInt64
    public let creator: Ed25519.PublicKey
    public var admin: Ed25519.PublicKey?
    public let label: String
    /// The height of the block that instantiated it.
    public let created: UInt64

    public init(codeID: UInt64, creator: Ed25519.PublicKey, admin: Ed25519.PublicKey?, label: String, created: UInt64) {
        self.codeID = codeID
        self.creator = creator
        self.admin = admin
        self.label = label
        self.created = created
    }

    public var encoded: [UInt8] {
        var w = WireWriter(capacity: 96)
        w.u64(codeID)
        w.fixed(creator.rawRepresentation)
        if let admin {
            w.u8(1)
            w.fixed(admin.rawRepresentation)
        } else {
            w.u8(0)
        }
        w.string16(label)
        w.u64(created)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> ContractInfo {
        var r = WireReader(bytes)
        let codeID = try r.u64("code id")
        let creator = try! Ed25519.PublicKey(uncheckedRawRepresentation: try r.fixed(32, "creator"))
        let admin: Ed25519.PublicKey?
        switch try r.u8("admin flag") {
        case 0: admin = nil
        case 1: admin = try! Ed25519.PublicKey(uncheckedRawRepresentation: try r.fixed(32, "admin"))
        case let f: throw WireError("admin flag \(f)")
        }
        let label = try r.string16(max: ContractMsg.maxLabelBytes, "label")
        let created = try r.u64("created")
        try r.finish()
        return ContractInfo(codeID: codeID, creator: creator, admin: admin, label: label, created: created)
    }
}

/// A contract address: wasmd's `BuildContractAddressClassic`, Cosmos ADR-028
/// `address.Module("wasm", be64(code id) ‖ be64(instance id))` =
/// SHA-256(SHA-256("module") ‖ "wasm" ‖ 0x00 ‖ key).
public enum ContractAddress {
    public static func classic(codeID: UInt64, instanceID: UInt64) -> [UInt8] {
        var key = WireWriter(capacity: 16)
        key.u64(codeID)
        key.u64(instanceID)
        return SHA256.hash(SHA256.hash(Array("module".utf8)) + Array("wasm".utf8) + [0] + key.bytes)
    }
}
