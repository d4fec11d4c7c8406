import NodeCrypto
import Synchronization
import WasmKit

/// Stored contract code, by SHA-256 checksum (content-addressed, outside the state tree,
/// as wasmd keeps it in the VM's cache). The state holds each code's checksum, so code
/// from anywhere — an upload, a peer, the disk — is usable only if it hashes to it.
/// Parsed modules are cached. `persist` and `load` connect it to the node's database.
public final class CodeStore: Sendable {
    private struct Entries {
        /// Code not on disk (no `load`): kept here. With a disk, only parsed modules are.
        var wasm: [[UInt8]: [UInt8]] = [:]
        var modules: [[UInt8]: Module] = [:]
        var moduleOrder: [[UInt8]] = []
    }
    /// Parsed modules kept at most (the most recently parsed).
    static let moduleCache = 64
    private let entries = Mutex(Entries())
    /// Writes code to disk; false if it could not (the code is then kept in memory).
    private let persist: (@Sendable (_ checksum: [UInt8], _ wasm: [UInt8]) -> Bool)?
    private let load: (@Sendable (_ checksum: [UInt8]) -> [UInt8]?)?

    public init(
        persist: (@Sendable ([UInt8], [UInt8]) -> Bool)? = nil, load: (@Sendable ([UInt8]) -> [UInt8]?)? = nil
    ) {
        self.persist = persist
        self.load = load
    }

    public static func checksum(_ wasm: [UInt8]) -> [UInt8] { SHA256.hash(wasm) }

    /// Keeps `wasm` (already checked) and returns its checksum.
    @discardableResult
    public func put(_ wasm: [UInt8]) -> [UInt8] {
        let checksum = Self.checksum(wasm)
        if let load, let persist {
            // On disk: written once, read back (and re-hashed) when needed.
            if entries.withLock({ $0.wasm[checksum] != nil }) || load(checksum) != nil || persist(checksum, wasm) {
                return checksum
            }
        }
        entries.withLock { e in
            if e.wasm[checksum] == nil { e.wasm[checksum] = wasm }
        }
        return checksum
    }

    /// Keeps code received from elsewhere (a peer) if it hashes to `checksum`.
    public func put(_ wasm: [UInt8], expecting checksum: [UInt8]) -> Bool {
        guard Self.checksum(wasm) == checksum else { return false }
        put(wasm)
        return true
    }

    public func wasm(_ checksum: [UInt8]) -> [UInt8]? {
        if let w = entries.withLock({ $0.wasm[checksum] }) { return w }
        // From the disk: re-hashed, so a damaged file is never run (cosmwasm-vm does the same).
        guard let w = load?(checksum), Self.checksum(w) == checksum else { return nil }
        return w
    }

    public func contains(_ checksum: [UInt8]) -> Bool {
        if entries.withLock({ $0.modules[checksum] != nil || $0.wasm[checksum] != nil }) { return true }
        return wasm(checksum) != nil
    }

    func module(_ checksum: [UInt8]) throws(ContractError) -> Module {
        if let m = entries.withLock({ $0.modules[checksum] }) { return m }
        guard let wasm = wasm(checksum) else {
            throw .refused("code \(Hex.encode(checksum)) is not on this node (it is fetched from peers on join)")
        }
        let module: Module
        do {
            module = try parseWasm(bytes: try GlobalExports.rewrite(wasm), features: [])
        } catch {
            throw .trap("stored code does not parse: \(error)")
        }
        entries.withLock { e in
            e.modules[checksum] = module
            e.moduleOrder.append(checksum)
            while e.moduleOrder.count > Self.moduleCache { e.modules[e.moduleOrder.removeFirst()] = nil }
        }
        return module
    }

    public var count: Int { entries.withLock { $0.wasm.count } }
}
