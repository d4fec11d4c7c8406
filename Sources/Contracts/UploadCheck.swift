import WasmKit
import WasmParser

/// CosmWasm's static checks on uploaded code (`check_wasm` in cosmwasm-vm's
/// compatibility.rs, limits from `WasmLimits`), run before code is stored: every
/// refusal names its reason. Differences, chosen for determinism on an interpreter that
/// does not canonicalize NaNs: floating-point instructions are refused (CosmWasm ≤ 1.4
/// did the same), as are the instructions CosmWasm's gatekeeper refuses (bulk memory,
/// reference types, SIMD, exceptions, threads, tail calls, GC).
public enum UploadCheck {
    public static let maxCodeBytes = 800 * 1024
    /// Pages of 64 KiB: 32 MiB, wasmd's contract memory limit.
    public static let maxMemoryPages: UInt64 = 512
    public static let maxTableElements: UInt64 = 2_500
    public static let maxImports = 100
    public static let maxFunctions = 20_000
    public static let maxFunctionParams = 100
    public static let maxTotalFunctionParams = 10_000
    public static let maxFunctionResults = 1

    /// The capabilities this chain offers (`requires_<cap>` exports must be among them).
    public static let capabilities: Set<String> = [
        "iterator", "cosmwasm_1_1", "cosmwasm_1_2", "cosmwasm_1_3", "cosmwasm_1_4", "cosmwasm_2_0",
    ]

    public struct Report: Sendable, Equatable {
        public var entryPoints: Set<String>
        public var imports: [String]
        public var capabilities: Set<String>
    }

    /// Checks `wasm`; the entry points it exports on success, else why it is refused.
    public static func check(_ wasm: [UInt8]) -> Result<Report, ContractError> {
        guard wasm.count <= maxCodeBytes else {
            return .failure(.upload("code of \(wasm.count) bytes exceeds \(maxCodeBytes)"))
        }
        guard wasm.starts(with: [0x00, 0x61, 0x73, 0x6D]) else {
            return .failure(.upload("not a wasm module (bad magic)"))
        }
        do {
            return try checkParsed(wasm)
        } catch let error as ContractError {
            return .failure(error)
        } catch {
            return .failure(.upload("invalid wasm: \(error)"))
        }
    }

    private static func checkParsed(_ wasm: [UInt8]) throws -> Result<Report, ContractError> {
        // Only the MVP plus what CosmWasm allows: the parser refuses the rest outright.
        var parser = Parser(bytes: wasm, features: [])
        var types: [FunctionType?] = []
        var imports: [Import] = []
        var functionTypes: [TypeIndex] = []
        var memories: [Limits] = []
        var tables: [TableType] = []
        var exports: [Export] = []
        var codes: [Code] = []
        while let payload = try parser.parseNext() {
            switch payload {
            case .typeSection(let groups):
                for group in groups {
                    for sub in group.types {
                        if case .function(let f) = sub.body { types.append(f) } else { types.append(nil) }
                    }
                }
            case .importSection(let list): imports = list
            case .functionSection(let list): functionTypes = list
            case .memorySection(let list): memories += list.map(\.type)
            case .tableSection(let list): tables += list.map(\.type)
            case .exportSection(let list): exports = list
            case .codeSection(let list): codes = list
            case .tagSection: return .failure(.upload("exception tags are not supported"))
            // A start function would run at every instantiation, outside any entry point.
            case .startSection: return .failure(.upload("a start function is not allowed"))
            case .globalSection(let globals):
                if globals.contains(where: { !$0.type.valueType.isInteger }) {
                    return .failure(.upload("a floating-point or reference global is not allowed"))
                }
            default: break
            }
        }
        // Imports: functions only, each one this host provides with its exact type.
        guard imports.count <= maxImports else {
            return .failure(.upload("\(imports.count) imports exceed \(maxImports)"))
        }
        var importNames: [String] = []
        for imp in imports {
            let name = "\(imp.module).\(imp.name)"
            guard case .function(let typeIndex) = imp.descriptor else {
                return .failure(.upload("import \(name) is not a function (only functions may be imported)"))
            }
            guard imp.module == "env", let expected = HostImports.signatures[imp.name] else {
                return .failure(.upload("unknown import \(name): this host provides only env.\(HostImports.names)"))
            }
            guard Int(typeIndex) < types.count, let actual = types[Int(typeIndex)], actual == expected else {
                return .failure(.upload("import \(name) has the wrong signature"))
            }
            importNames.append(name)
        }
        for imp in imports {
            if case .memory = imp.descriptor { return .failure(.upload("imported memory is not allowed")) }
        }
        // Exactly one memory, not too large, with no maximum (the host sets it).
        guard memories.count == 1 else {
            return .failure(.upload("a contract must define exactly one memory, found \(memories.count)"))
        }
        let memory = memories[0]
        guard !memory.isMemory64, !memory.shared else { return .failure(.upload("64-bit or shared memory")) }
        guard memory.min <= maxMemoryPages else {
            return .failure(.upload("initial memory of \(memory.min) pages exceeds \(maxMemoryPages)"))
        }
        guard memory.max == nil else { return .failure(.upload("memory must not declare a maximum")) }
        guard tables.count <= 1 else { return .failure(.upload("more than one table")) }
        if let table = tables.first {
            guard let max = table.limits.max, max <= maxTableElements else {
                return .failure(.upload("a table needs a maximum of at most \(maxTableElements) elements"))
            }
        }
        // Exports: the interface marker, allocate/deallocate, capabilities.
        let names = Set(exports.map(\.name))
        if let reserved = names.first(where: { $0.hasPrefix("__sidenode") }) {
            return .failure(.upload("the export name \(reserved) is reserved for the host"))
        }
        let markers = exports.filter { $0.name.hasPrefix("interface_version_") }
        guard markers.count == 1 else {
            return .failure(
                .upload(
                    markers.isEmpty
                        ? "missing the interface_version_8 export" : "more than one interface_version_* export"))
        }
        guard markers[0].name == "interface_version_8" else {
            return .failure(.upload("unsupported interface \(markers[0].name); this chain runs interface_version_8"))
        }
        for required in ["allocate", "deallocate"] where !names.contains(required) {
            return .failure(.upload("missing the required export \(required)"))
        }
        guard exports.contains(where: { $0.name == "memory" && $0.descriptor == .memory(0) }) else {
            return .failure(.upload("the memory must be exported as \"memory\""))
        }
        let required = Set(
            exports.compactMap { $0.name.hasPrefix("requires_") ? String($0.name.dropFirst("requires_".count)) : nil })
        let missing = required.subtracting(capabilities)
        guard missing.isEmpty else {
            return .failure(.upload("needs capabilities this chain lacks: \(missing.sorted().joined(separator: ", "))"))
        }
        // Function limits.
        guard functionTypes.count <= maxFunctions else {
            return .failure(.upload("\(functionTypes.count) functions exceed \(maxFunctions)"))
        }
        var totalParams = 0
        for t in functionTypes {
            guard Int(t) < types.count, let f = types[Int(t)] else { return .failure(.upload("bad function type")) }
            guard f.parameters.count <= maxFunctionParams else {
                return .failure(.upload("a function with \(f.parameters.count) parameters (max \(maxFunctionParams))"))
            }
            guard f.results.count <= maxFunctionResults else {
                return .failure(.upload("a function with \(f.results.count) results (max \(maxFunctionResults))"))
            }
            totalParams += f.parameters.count
        }
        guard totalParams <= maxTotalFunctionParams else {
            return .failure(.upload("\(totalParams) function parameters in all exceed \(maxTotalFunctionParams)"))
        }
        // Every instruction: refuse what the gatekeeper refuses.
        for (i, code) in codes.enumerated() {
            if let local = code.locals.first(where: { !$0.isInteger }) {
                return .failure(.upload("function \(i) has a \(local) local (floating point is not allowed)"))
            }
            var gate = Gatekeeper()
            var expression = ExpressionParser(code: code)
            while let visit = try expression.parse() {
                visit(visitor: &gate)
                if let refusal = gate.refusal {
                    return .failure(.upload("function \(i): \(refusal)"))
                }
            }
        }
        for (i, t) in types.enumerated() {
            if let f = t, (f.parameters + f.results).contains(where: { !$0.isInteger }) {
                return .failure(.upload("type \(i) uses floating point (not allowed)"))
            }
        }
        let entryPoints = names.intersection(["instantiate", "execute", "query", "migrate", "reply", "sudo"])
        return .success(Report(entryPoints: entryPoints, imports: importNames, capabilities: required))
    }
}

extension ValueType {
    var isInteger: Bool { self == .i32 || self == .i64 }
}

/// The instruction filter. Float instructions are found by name (every float opcode's
/// name has "f32"/"f64" in it, conversions included) so none is missed by a hand list.
struct Gatekeeper: InstructionVisitor {
    typealias VisitorError = Never
    var binaryOffset = 0
    var refusal: String?

    private mutating func refuse(_ what: String) {
        if refusal == nil { refusal = "\(what) is not allowed" }
    }

    private mutating func checkFloat(_ op: some Any) {
        let name = String(describing: op).lowercased()
        if name.contains("f32") || name.contains("f64") { refuse("floating point (\(name))") }
    }

    mutating func visitLoad(_ load: Instruction.Load, memarg: MemArg) { checkFloat(load) }
    mutating func visitStore(_ store: Instruction.Store, memarg: MemArg) { checkFloat(store) }
    mutating func visitCmp(_ cmp: Instruction.Cmp) { checkFloat(cmp) }
    mutating func visitUnary(_ unary: Instruction.Unary) { checkFloat(unary) }
    mutating func visitBinary(_ binary: Instruction.Binary) { checkFloat(binary) }
    mutating func visitConversion(_ conversion: Instruction.Conversion) { checkFloat(conversion) }
    private mutating func checkBlock(_ type: BlockType) {
        if case .type(let t) = type, !t.isInteger { refuse("a \(t) block (floating point)") }
    }
    mutating func visitBlock(blockType: BlockType) { checkBlock(blockType) }
    mutating func visitLoop(blockType: BlockType) { checkBlock(blockType) }
    mutating func visitIf(blockType: BlockType) { checkBlock(blockType) }
    mutating func visitF32Const(value: IEEE754.Float32) { refuse("floating point (f32.const)") }
    mutating func visitF64Const(value: IEEE754.Float64) { refuse("floating point (f64.const)") }
    mutating func visitTypedSelect(type: ValueType) { refuse("typed select (reference types)") }
    mutating func visitMemoryInit(dataIndex: UInt32, memory: UInt32) { refuse("bulk memory (memory.init)") }
    mutating func visitDataDrop(dataIndex: UInt32) { refuse("bulk memory (data.drop)") }
    mutating func visitMemoryCopy(dstMem: UInt32, srcMem: UInt32) { refuse("bulk memory (memory.copy)") }
    mutating func visitMemoryFill(memory: UInt32) { refuse("bulk memory (memory.fill)") }
    mutating func visitTableInit(elemIndex: UInt32, table: UInt32) { refuse("bulk memory (table.init)") }
    mutating func visitElemDrop(elemIndex: UInt32) { refuse("bulk memory (elem.drop)") }
    mutating func visitTableCopy(dstTable: UInt32, srcTable: UInt32) { refuse("bulk memory (table.copy)") }
    mutating func visitTableFill(table: UInt32) { refuse("reference types (table.fill)") }
    mutating func visitTableGet(table: UInt32) { refuse("reference types (table.get)") }
    mutating func visitTableSet(table: UInt32) { refuse("reference types (table.set)") }
    mutating func visitTableGrow(table: UInt32) { refuse("reference types (table.grow)") }
    mutating func visitTableSize(table: UInt32) { refuse("reference types (table.size)") }
    mutating func visitRefNull(type: HeapType) { refuse("reference types (ref.null)") }
    mutating func visitRefIsNull() { refuse("reference types (ref.is_null)") }
    mutating func visitRefFunc(functionIndex: UInt32) { refuse("reference types (ref.func)") }
    mutating func visitReturnCall(functionIndex: UInt32) { refuse("tail calls") }
    mutating func visitReturnCallIndirect(typeIndex: UInt32, tableIndex: UInt32) { refuse("tail calls") }
    mutating func visitThrow(tagIndex: UInt32) { refuse("exceptions") }
    mutating func visitThrowRef() { refuse("exceptions") }
    mutating func visitTryTable(blockType: BlockType, tryCatch: TryCatch) { refuse("exceptions") }
    mutating func visitAtomicFence() { refuse("threads (atomic.fence)") }
    mutating func visitV128Const(value: V128) { refuse("SIMD") }
    mutating func visitSimd(_ simd: Instruction.Simd) { refuse("SIMD") }
    mutating func visitSimdLane(_ simd: Instruction.SimdLane, lane: UInt8) { refuse("SIMD") }
    mutating func visitSimdMemLane(_ simd: Instruction.SimdMemLane, memarg: MemArg, lane: UInt8) { refuse("SIMD") }
    mutating func visitI8x16Shuffle(lanes: V128ShuffleMask) { refuse("SIMD") }
    mutating func visitUnknown(_ opcode: [UInt8]) -> Bool {
        refuse("opcode \(opcode)")
        return true
    }
}
