import NodeCrypto
import Synchronization
import WasmKit

/// Stored contract code, by SHA-256 checksum (content-addressed, outside the state tree,
/// as wasmd keeps it in the VM's cache). The state holds each code's checksum, so code
/// from anywhere — an upload, a peer, the disk — is usable only if it hashes to it.
/// Parsed modules are cached. `persist` and `load` connect it to the node's database.
public final class CodeStore: Sendable {
    private struct Entries {
        var wasm: [[UInt8]: [UInt8]] = [:]
        var modules: [[UInt8]: Module] = [:]
    }
    private let entries = Mutex(Entries())
    private let persist: (@Sendable (_ checksum: [UInt8], _ wasm: [UInt8]) -> Void)?
    private let load: (@Sendable (_ checksum: [UInt8]) -> [UInt8]?)?

    public init(
        persist: (@Sendable ([UInt8], [UInt8]) -> Void)? = nil, load: (@Sendable ([UInt8]) -> [UInt8]?)? = nil
    ) {
        self.persist = persist
        self.load = load
    }

    public static func checksum(_ wasm: [UInt8]) -> [UInt8] { SHA256.hash(wasm) }

    /// Keeps `wasm` (already checked) and returns its checksum.
    @discardableResult
    public func put(_ wasm: [UInt8]) -> [UInt8] {
        let checksum = Self.checksum(wasm)
        let isNew = entries.withLock { e -> Bool in
            guard e.wasm[checksum] == nil else { return false }
            e.wasm[checksum] = wasm
            return true
        }
        if isNew { persist?(checksum, wasm) }
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
        entries.withLock { $0.wasm[checksum] = w }
        return w
    }

    public func contains(_ checksum: [UInt8]) -> Bool { wasm(checksum) != nil }

    func module(_ checksum: [UInt8]) throws(ContractError) -> Module {
        if let m = entries.withLock({ $0.modules[checksum] }) { return m }
        guard let wasm = wasm(checksum) else {
            throw .refused("code \(Hex.encode(checksum)) is not on this node (it is fetched from peers on join)")
        }
        let module: Module
        do {
            module = try parseWasm(bytes: wasm, features: [])
        } catch {
            throw .trap("stored code does not parse: \(error)")
        }
        entries.withLock { $0.modules[checksum] = module }
        return module
    }

    public var count: Int { entries.withLock { $0.wasm.count } }
}
