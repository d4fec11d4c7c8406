import Ledger
import NodeCrypto
@_spi(Fuzzing) import WasmKit

/// Gas: CosmWasm gas inside the VM, Cosmos SDK gas outside (wasmd's
/// `DefaultGasMultiplier`: 1 SDK gas = 140,000 CosmWasm gas). CosmWasm prices gas at
/// 1 Teragas per second of execution and host calls in microseconds (`GasConfig`);
/// its 115 per operator assumes a compiler. WasmKit interprets about 1.35 G operators/s
/// (measured here, docs/contracts.md), so one fuel unit (one operator) costs 750
/// CosmWasm gas: gas stays a measure of time, and a transaction's limit bounds it.
public enum ContractGas {
    public static let perSDKGas: UInt64 = 140_000
    public static let perFuel: UInt64 = 750
    static let hostCall: UInt64 = 18_000
    static let readRegionBase: UInt64 = 200_000
    static let readRegionPerByte: UInt64 = 115
    static let writeRegionBase: UInt64 = 230_000
    static let writeRegionPerByte: UInt64 = 570
    static let perMicrosecond: UInt64 = 1_000_000
    static let secp256k1Verify = 96 * perMicrosecond
    static let secp256k1Recover = 194 * perMicrosecond
    static let ed25519Verify = 35 * perMicrosecond
    static let ed25519BatchBase = 24 * perMicrosecond
    static let ed25519BatchPerItem = 21 * perMicrosecond
    /// SHA-512 of a message inside Ed25519 verification: about 2 ns a byte here.
    static let hashPerByte: UInt64 = 2_000
    /// wasmd's per-instance cost (SDK gas), charged for every call into a contract.
    static let instanceSDK: UInt64 = 60_000
    /// wasmd's compile cost, per byte of stored code (SDK gas).
    static let compilePerByteSDK: UInt64 = 3
    /// wasmd's event costs (SDK gas).
    static let perAttributeSDK: UInt64 = 10
    static let perCustomEventSDK: UInt64 = 20
    static let perEventByteSDK: UInt64 = 1
    static let freeEventBytes = 100
}

/// Why a contract call did not succeed.
public enum ContractError: Error, Sendable, Equatable, CustomStringConvertible {
    case upload(String)
    case outOfGas
    /// The contract returned `{"error": …}`.
    case contract(String)
    /// The contract trapped or aborted (a panic), or broke the ABI.
    case trap(String)
    /// A request the chain refuses (unknown contract, bad address, …).
    case refused(String)

    public var description: String {
        switch self {
        case .upload(let s): "code refused: \(s)"
        case .outOfGas: "out of gas"
        case .contract(let s): s
        case .trap(let s): "contract trapped: \(s)"
        case .refused(let s): s
        }
    }
}

/// The `env` functions of interface_version_8, with their Wasm types. Every one is
/// linkable; those this chain cannot serve (secp256r1, BLS12-381) fail the call.
enum HostImports {
    static let signatures: [String: FunctionType] = {
        let i = ValueType.i32
        return [
            "db_read": .init(parameters: [i], results: [i]),
            "db_write": .init(parameters: [i, i], results: []),
            "db_remove": .init(parameters: [i], results: []),
            "db_scan": .init(parameters: [i, i, i], results: [i]),
            "db_next": .init(parameters: [i], results: [i]),
            "db_next_key": .init(parameters: [i], results: [i]),
            "db_next_value": .init(parameters: [i], results: [i]),
            "addr_validate": .init(parameters: [i], results: [i]),
            "addr_canonicalize": .init(parameters: [i, i], results: [i]),
            "addr_humanize": .init(parameters: [i, i], results: [i]),
            "secp256k1_verify": .init(parameters: [i, i, i], results: [i]),
            "secp256k1_recover_pubkey": .init(parameters: [i, i, i], results: [.i64]),
            "secp256r1_verify": .init(parameters: [i, i, i], results: [i]),
            "secp256r1_recover_pubkey": .init(parameters: [i, i, i], results: [.i64]),
            "ed25519_verify": .init(parameters: [i, i, i], results: [i]),
            "ed25519_batch_verify": .init(parameters: [i, i, i], results: [i]),
            "bls12_381_aggregate_g1": .init(parameters: [i, i], results: [i]),
            "bls12_381_aggregate_g2": .init(parameters: [i, i], results: [i]),
            "bls12_381_pairing_equality": .init(parameters: [i, i, i, i], results: [i]),
            "bls12_381_hash_to_g1": .init(parameters: [i, i, i, i], results: [i]),
            "bls12_381_hash_to_g2": .init(parameters: [i, i, i, i], results: [i]),
            "debug": .init(parameters: [i], results: []),
            "abort": .init(parameters: [i], results: []),
            "query_chain": .init(parameters: [i], results: [i]),
        ]
    }()
    static var names: String { signatures.keys.sorted().joined(separator: ", ") }

    // CosmWasm's input limits (imports.rs).
    static let maxKey = 64 * 1024
    static let maxValue = 128 * 1024
    static let maxAddress = 256
    static let maxCanonical = 64
    static let maxMessage = 128 * 1024
    static let maxDebug = 2 * 1024 * 1024
    static let maxQuery = 64 * 1024
    static let maxBatchItems = 256
}

/// A host function's way out: the call traps, with `reason` kept for the receipt.
struct HostFailure: Error {
    let error: ContractError
}

/// 32 MiB per instance (wasmd's contract memory limit), enforced on `memory.grow`.
final class MemoryLimiter: ResourceLimiter {
    static let maxBytes = 32 * 1024 * 1024
    func limitMemoryGrowth(to desired: Int) throws -> Bool { desired <= Self.maxBytes }
    func limitTableGrowth(to desired: Int) throws -> Bool { desired <= Int(UploadCheck.maxTableElements) }
}

/// One call's view of guest memory: every Region is checked against the memory's size
/// before it is touched (WasmKit's accessors trap the process, not the guest, when out
/// of range).
struct GuestMemory {
    let memory: Memory

    struct Region {
        var offset: UInt32
        var capacity: UInt32
        var length: UInt32
    }

    func region(_ ptr: UInt32) throws(HostFailure) -> Region {
        let size = memory.byteCount
        guard ptr != 0, Int(ptr) + 12 <= size else {
            throw HostFailure(error: .trap("region pointer \(ptr) out of bounds"))
        }
        let (o, c, l) = memory.withUnsafeBufferPointer(offset: UInt(ptr), count: 12) { b in
            (
                b.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian,
                b.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian,
                b.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
            )
        }
        guard o != 0 else { throw HostFailure(error: .trap("region offset is 0")) }
        guard l <= c else { throw HostFailure(error: .trap("region length \(l) exceeds its capacity \(c)")) }
        guard c <= UInt32.max - o else { throw HostFailure(error: .trap("region capacity overflows")) }
        guard Int(o) + Int(c) <= size else { throw HostFailure(error: .trap("region out of bounds")) }
        return Region(offset: o, capacity: c, length: l)
    }

    func read(_ ptr: UInt32, max: Int) throws(HostFailure) -> [UInt8] {
        let r = try region(ptr)
        guard Int(r.length) <= max else {
            throw HostFailure(error: .trap("region of \(r.length) bytes exceeds the \(max)-byte limit"))
        }
        return memory.withUnsafeBufferPointer(offset: UInt(r.offset), count: Int(r.length)) { Array($0) }
    }

    func write(_ ptr: UInt32, _ data: [UInt8]) throws(HostFailure) {
        let r = try region(ptr)
        guard data.count <= Int(r.capacity) else {
            throw HostFailure(error: .trap("\(data.count) bytes do not fit a region of capacity \(r.capacity)"))
        }
        memory.withUnsafeMutableBufferPointer(offset: UInt(r.offset), count: data.count) { b in
            data.withUnsafeBytes { b.copyMemory(from: $0) }
        }
        let length = UInt32(data.count).littleEndian
        memory.withUnsafeMutableBufferPointer(offset: UInt(ptr) + 8, count: 4) { b in
            b.storeBytes(of: length, as: UInt32.self)
        }
    }
}
