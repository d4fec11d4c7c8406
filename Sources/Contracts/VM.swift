import Foundation
import Ledger
import NodeCrypto
@_spi(Fuzzing) import WasmKit

/// One contract call's host state: which contract, whether it may write, its open
/// iterators, and the guest's memory and allocator once instantiated.
final class CallEnvironment {
    unowned let session: Session
    let contract: [UInt8]
    let readOnly: Bool
    var memory: GuestMemory?
    var allocate: Function?
    var iterators: [ContractIterator] = []
    /// Why a host function failed the call (the trap WasmKit reports is generic).
    var failure: ContractError?
    /// The host is inside the guest's `allocate`: an import called from there would nest
    /// host and guest frames without bound (each invoke has a fresh Wasm stack).
    var inAllocate = false

    init(session: Session, contract: [UInt8], readOnly: Bool) {
        self.session = session
        self.contract = contract
        self.readOnly = readOnly
    }

    static let maxIterators = 1_024
}

/// The WasmKit side: instantiates a module with the `env` imports bound to one call and
/// runs an entry point under a fuel budget. A fresh instance per call: nothing of one
/// call (a panic's state, a grown heap) reaches the next, and the gas of a call depends
/// only on its inputs, so it is the same on every node.
enum VM {
    /// The interpreter and its settings are consensus parameters: the stack size bounds
    /// recursion depth, fuel metering prices operators.
    static let engine = Engine(
        configuration: EngineConfiguration(
            compilationMode: .lazy, stackSize: 512 * 1024, features: [], memoryBoundsChecking: .software,
            fuelMetering: true))
    /// Checks every function body at upload (WasmKit validates as it translates).
    static let validatingEngine = Engine(
        configuration: EngineConfiguration(
            compilationMode: .eager, stackSize: 512 * 1024, features: [], memoryBoundsChecking: .software,
            fuelMetering: true))
    static let lock = NSLock()

    static let entryTypes: [String: [FunctionType]] = [
        "instantiate": [.init(parameters: [.i32, .i32, .i32], results: [.i32])],
        "execute": [.init(parameters: [.i32, .i32, .i32], results: [.i32])],
        "query": [.init(parameters: [.i32, .i32], results: [.i32])],
        "reply": [.init(parameters: [.i32, .i32], results: [.i32])],
        "migrate": [
            .init(parameters: [.i32, .i32, .i32], results: [.i32]), .init(parameters: [.i32, .i32], results: [.i32]),
        ],
    ]
    /// A contract's result is read up to CosmWasm's JSON limit.
    static let maxResult = 256 * 1024

    /// Instantiates `module` for one call and runs `entry` with `args` (each written into
    /// a guest Region). Returns the result Region's bytes and the fuel used. `args` may
    /// depend on the entry's arity (`migrate`): `argsFor` picks them.
    static func run(
        module: Module, checksum: [UInt8], pool: InstancePool, environment env: CallEnvironment, entry: String,
        fuel: UInt64, argsFor: (Int) -> [[UInt8]]
    ) -> (Result<[UInt8], ContractError>, fuelUsed: UInt64) {
        let pooled: PooledInstance
        do {
            if let idle = pool.take(checksum), idle.reset() {
                pooled = idle
            } else {
                pooled = try PooledInstance(module: module)
            }
        } catch {
            return (.failure(.trap("cannot instantiate: \(firstLine(error))")), 0)
        }
        let store = pooled.store
        store.fuel = Fuel(remaining: fuel)
        pooled.environment.current = env
        defer { pooled.environment.current = nil }
        func used() -> UInt64 { fuel - min(fuel, store.fuel?.remaining ?? 0) }
        do {
            let instance = pooled.instance
            guard let memory = instance.exports[memory: "memory"], let allocate = instance.exports[function: "allocate"]
            else { return (.failure(.trap("the contract lacks memory or allocate")), used()) }
            env.memory = GuestMemory(memory: memory)
            env.allocate = allocate
            guard let function = instance.exports[function: entry] else {
                return (.failure(.refused("the contract has no \(entry) entry point")), used())
            }
            guard entryTypes[entry]?.contains(function.type) == true else {
                return (.failure(.trap("\(entry) has the wrong signature")), used())
            }
            var pointers: [Value] = []
            for arg in argsFor(function.type.parameters.count) {
                pointers.append(.i32(try write(arg, env: env)))
            }
            let results = try function.invoke(pointers)
            guard results.count == 1, case .i32(let resultPointer) = results[0] else {
                return (.failure(.trap("\(entry) returned no region")), used())
            }
            let bytes = try env.memory!.read(resultPointer, max: maxResult)
            // Clean exit: the instance can serve the next call (reset to its image then).
            if memory.byteCount == pooled.image.count { pool.give(checksum, pooled) }
            return (.success(bytes), used())
        } catch let failure as HostFailure {
            return (.failure(env.failure ?? failure.error), failure.error == .outOfGas ? fuel : used())
        } catch {
            if let failure = env.failure { return (.failure(failure), failure == .outOfGas ? fuel : used()) }
            let text = String(describing: error)
            if text.contains("out of fuel") { return (.failure(.outOfGas), fuel) }
            return (.failure(.trap(firstLine(error))), used())
        }
    }

    /// A trap's description carries a long backtrace: its first line, without "Trap: ".
    static func firstLine(_ error: any Error) -> String {
        let text = String(describing: error)
        let line = text.split(separator: "\n").first.map(String.init) ?? text
        return line.replacingOccurrences(of: "Trap: ", with: "")
    }

    /// Copies `data` into a fresh guest Region (the contract's own allocator).
    static func write(_ data: [UInt8], env: CallEnvironment) throws -> UInt32 {
        guard let allocate = env.allocate, let memory = env.memory else {
            throw HostFailure(error: .trap("no allocator"))
        }
        guard !env.inAllocate else { throw HostFailure(error: .trap("allocate re-entered the host")) }
        env.inAllocate = true
        defer { env.inAllocate = false }
        let results = try allocate.invoke([.i32(UInt32(data.count))])
        guard results.count == 1, case .i32(let pointer) = results[0] else {
            throw HostFailure(error: .trap("allocate returned no pointer"))
        }
        try memory.write(pointer, data)
        return pointer
    }

    /// Validates every function body of checked code (eager translation) with the real
    /// import signatures, without running anything.
    static func validate(_ wasm: [UInt8]) -> ContractError? {
        do {
            // The form that runs: mutable globals exported for resetting (InstancePool).
            let module = try parseWasm(bytes: try GlobalExports.rewrite(wasm), features: [])
            let store = Store(engine: validatingEngine)
            store.resourceLimiter = MemoryLimiter()
            var imports = Imports()
            for imp in module.imports {
                guard let type = HostImports.signatures[imp.name] else { continue }
                imports.define(
                    module: "env", name: imp.name,
                    Function(store: store, type: type) { _, _ in throw HostFailure(error: .trap("not callable")) })
            }
            _ = try module.instantiate(store: store, imports: imports)
            return nil
        } catch {
            let line = String(describing: error).split(separator: "\n").first.map(String.init) ?? "invalid"
            return .upload("invalid wasm: \(line)")
        }
    }
}
