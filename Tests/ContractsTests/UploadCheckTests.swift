import Contracts
import Ledger
import NodeCrypto
import Testing
import WAT

@Suite("Upload checks refuse what CosmWasm refuses, each with its reason")
struct UploadCheckTests {
    func refusal(_ wat: String) throws -> String? {
        WasmEngine.check(try WATContract.wasm(wat))?.description
    }

    @Test("a well-formed contract passes")
    func accepts() throws {
        #expect(try refusal(WATContract.module(execute: "(i32.const 16)")) == nil)
    }

    @Test("floating point is refused (instructions, locals, globals)")
    func floats() throws {
        let add = WATContract.module(execute: "(drop (f32.add (f32.const 1) (f32.const 2))) (i32.const 16)")
        #expect(try refusal(add)?.contains("floating point") == true)
        let local = WATContract.module(execute: "(i32.const 16)", extra: "(func (local f64))")
        #expect(try refusal(local)?.contains("floating point") == true)
        let conversion = WATContract.module(
            execute: "(drop (i32.trunc_f64_s (f64.const 1))) (i32.const 16)")
        #expect(try refusal(conversion)?.contains("floating point") == true)
    }

    @Test("an unknown import is refused by name; a known one with the wrong type too")
    func imports() throws {
        let unknown = WATContract.module(
            imports: #"(import "env" "steal_keys" (func (param i32) (result i32)))"#, execute: "(i32.const 16)")
        #expect(try refusal(unknown)?.contains("unknown import env.steal_keys") == true)
        let wrongType = WATContract.module(
            imports: #"(import "env" "db_read" (func (param i32 i32) (result i32)))"#, execute: "(i32.const 16)")
        #expect(try refusal(wrongType)?.contains("wrong signature") == true)
        let otherModule = WATContract.module(
            imports: #"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            execute: "(i32.const 16)")
        #expect(try refusal(otherModule)?.contains("unknown import") == true)
    }

    @Test("exports: the interface marker and allocate/deallocate are required")
    func exports() throws {
        let base = WATContract.module(execute: "(i32.const 16)")
        let noMarker = base.replacingOccurrences(of: #"(func (export "interface_version_8"))"#, with: "")
        #expect(try refusal(noMarker)?.contains("interface_version_8") == true)
        let oldMarker = base.replacingOccurrences(of: "interface_version_8", with: "interface_version_7")
        #expect(try refusal(oldMarker)?.contains("unsupported interface") == true)
        let noAllocate = base.replacingOccurrences(of: #"(export "allocate")"#, with: "")
        #expect(try refusal(noAllocate)?.contains("allocate") == true)
        let capability = WATContract.module(execute: "(i32.const 16)", extra: #"(func (export "requires_staking"))"#)
        #expect(try refusal(capability)?.contains("staking") == true)
    }

    @Test("memory: a declared maximum or more than 512 initial pages is refused")
    func memory() throws {
        #expect(try refusal(WATContract.module(execute: "(i32.const 16)", memoryPages: 513))?.contains("513") == true)
        let bounded = WATContract.module(execute: "(i32.const 16)").replacingOccurrences(
            of: #"(memory (export "memory") 2)"#, with: #"(memory (export "memory") 2 4)"#)
        #expect(try refusal(bounded)?.contains("maximum") == true)
    }

    @Test("bulk memory and a start function are refused")
    func gatekeeper() throws {
        let fill = WATContract.module(
            execute: "(memory.fill (i32.const 0) (i32.const 0) (i32.const 8)) (i32.const 16)")
        #expect(try refusal(fill) != nil)
        let start = WATContract.module(execute: "(i32.const 16)", extra: "(func $s) (start $s)")
        #expect(try refusal(start)?.contains("start") == true)
    }

    @Test("not wasm, truncated wasm and code over 800 KiB are refused")
    func garbage() throws {
        #expect(WasmEngine.check(Array("hello".utf8))?.description.contains("magic") == true)
        let good = try WATContract.wasm(WATContract.module(execute: "(i32.const 16)"))
        #expect(WasmEngine.check(Array(good.prefix(good.count - 3))) != nil)
        #expect(
            WasmEngine.check(good + [UInt8](repeating: 0, count: 800 * 1024))?.description.contains("exceeds") == true)
    }

    @Test("a 100 MB upload cannot even be a transaction")
    func hugeUpload() throws {
        let key = Ed25519.PrivateKey()
        let tx = Transaction(
            chainID: "c", author: key, seq: 1, fee: 0,
            payload: .contract(.storeCode(wasm: [UInt8](repeating: 0, count: 100 << 20), gasLimit: 1)),
            predecessors: [])
        #expect(throws: (any Error).self) { try Transaction.decode(tx.encoded) }
    }
}
