import Contracts
import WAT

/// Seeds for `contract_upload`: the skeleton contract, one with an import and a loop,
/// one that is refused (a float).
enum ContractFuzzSeeds {
    static func module(imports: String = "", body: String) -> [UInt8] {
        (try? wat2wasm(ContractSkeleton.wat(imports: imports, execute: body))) ?? []
    }

    static let modules: [[UInt8]] = [
        module(body: "(i32.const 16)"),
        module(
            imports: #"(import "env" "db_read" (func $r (param i32) (result i32)))"#,
            body:
                "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 100)))) (drop (call $r (local.get 2))) (i32.const 16)"
        ),
        module(body: "(drop (f32.const 1)) (i32.const 16)"),
    ].filter { !$0.isEmpty }
}
