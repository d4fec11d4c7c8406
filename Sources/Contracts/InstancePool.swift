@_spi(Fuzzing) import WasmKit

import struct WasmParser.Parser

/// Recycled instances (WasmKit 0.4.2 keeps translated code per instance, so a fresh
/// instance per call pays translation every time). An instance is reused only in a
/// state identical to a fresh one: its memory is restored from the image taken right
/// after instantiation and every mutable global is reset to its initial value, so a
/// call's fuel — gas — is exactly what it would be on a fresh instance, on every node,
/// whatever each node's pool holds. Tables cannot change (the upload checks refuse
/// every table and bulk-memory instruction). An instance that trapped or grew its
/// memory is dropped.
final class PooledInstance {
    let store: Store
    let instance: Instance
    let environment: EnvironmentBox
    let memory: WasmKit.Memory
    let image: [UInt8]
    let globals: [(WasmKit.Global, Value)]

    init(module: Module) throws {
        store = Store(engine: VM.engine)
        store.resourceLimiter = MemoryLimiter()
        environment = EnvironmentBox()
        // Instantiation runs no code (no start function), but data segments are copied:
        // bounded by the fuel it does not use.
        store.fuel = nil
        instance = try module.instantiate(store: store, imports: VM.imports(store: store, box: environment))
        guard let memory = instance.exports[memory: "memory"] else { throw HostFailure(error: .trap("no memory")) }
        self.memory = memory
        image = memory.withUnsafeBufferPointer(offset: 0, count: memory.byteCount) { Array($0) }
        var globals: [(WasmKit.Global, Value)] = []
        for (name, export) in instance.exports where name.hasPrefix(GlobalExports.prefix) {
            if case .global(let g) = export { globals.append((g, g.value)) }
        }
        self.globals = globals
    }

    /// Back to the freshly instantiated state; false if that is impossible (memory grew).
    func reset() -> Bool {
        guard memory.byteCount == image.count else { return false }
        memory.withUnsafeMutableBufferPointer(offset: 0, count: image.count) { buffer in
            image.withUnsafeBytes { buffer.copyMemory(from: $0) }
        }
        for (global, value) in globals {
            do { try global.assign(value) } catch { return false }
        }
        return true
    }
}

/// The call a pooled instance's host functions serve (set for each call).
final class EnvironmentBox {
    var current: CallEnvironment?
}

/// One idle instance per code, for the most recently used codes. Used only under
/// `VM.lock`.
final class InstancePool: @unchecked Sendable {
    private var idle: [[UInt8]: PooledInstance] = [:]
    private var order: [[UInt8]] = []
    private var bytes = 0
    static let capacity = 64
    /// Memory the idle instances may hold (each holds its memory and its image).
    static let maxBytes = 256 << 20

    func take(_ checksum: [UInt8]) -> PooledInstance? {
        guard let instance = idle.removeValue(forKey: checksum) else { return nil }
        order.removeAll { $0 == checksum }
        bytes -= 2 * instance.image.count
        return instance
    }

    func give(_ checksum: [UInt8], _ instance: PooledInstance) {
        guard idle[checksum] == nil else { return }  // a nested call's second instance is dropped
        guard 2 * instance.image.count <= Self.maxBytes else { return }
        idle[checksum] = instance
        order.append(checksum)
        bytes += 2 * instance.image.count
        while order.count > Self.capacity || bytes > Self.maxBytes {
            let oldest = order.removeFirst()
            if let dropped = idle.removeValue(forKey: oldest) { bytes -= 2 * dropped.image.count }
        }
    }
}

/// Exports every mutable global under a reserved name, so a recycled instance's globals
/// can be read and reset (a contract's own exports may not use the prefix).
enum GlobalExports {
    static let prefix = "__sidenode_global_"

    static func rewrite(_ wasm: [UInt8]) throws -> [UInt8] {
        var parser = Parser(bytes: wasm, features: [])
        var mutable: [Int] = []
        var hasExports = false
        while let payload = try parser.parseNext() {
            if case .globalSection(let list) = payload {
                mutable = list.enumerated().compactMap { $0.element.type.mutability == .variable ? $0.offset : nil }
            }
            if case .exportSection = payload { hasExports = true }
        }
        guard !mutable.isEmpty, hasExports else { return wasm }
        // Section framing: id, LEB128 size, payload. Only the export section (7) changes.
        var out = Array(wasm[0..<8])
        var i = 8
        while i < wasm.count {
            let id = wasm[i]
            var j = i + 1
            let size = try leb(wasm, &j)
            guard j + size <= wasm.count else { throw HostFailure(error: .trap("truncated section")) }
            var payload = Array(wasm[j..<(j + size)])
            if id == 7 {
                var k = 0
                let count = try leb(payload, &k)
                var entries = Array(payload[k...])
                for index in mutable {
                    let name = Array((prefix + String(index)).utf8)
                    entries += encodeLEB(name.count) + name + [0x03] + encodeLEB(index)
                }
                payload = encodeLEB(count + mutable.count) + entries
            }
            out += [id] + encodeLEB(payload.count) + payload
            i = j + size
        }
        return out
    }

    static func leb(_ bytes: [UInt8], _ i: inout Int) throws -> Int {
        var result = 0
        var shift = 0
        while true {
            guard i < bytes.count, shift < 35 else { throw HostFailure(error: .trap("bad LEB128")) }
            let b = bytes[i]
            i += 1
            result |= Int(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    static func encodeLEB(_ value: Int) -> [UInt8] {
        var v = value
        var out: [UInt8] = []
        repeat {
            var b = UInt8(v & 0x7F)
            v >>= 7
            if v != 0 { b |= 0x80 }
            out.append(b)
        } while v != 0
        return out
    }
}
