import WAT

/// Seeds for `contract_upload`: a minimal contract, one with imports and a loop, one
/// that is refused (a float).
enum ContractFuzzSeeds {
    static let skeleton = """
        (module %IMPORTS%
          (memory (export "memory") 1)
          (global $heap (mut i32) (i32.const 1024))
          (func (export "interface_version_8"))
          (func (export "allocate") (param $n i32) (result i32) (local $r i32)
            (local.set $r (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $n) (i32.const 16))))
            (i32.store (local.get $r) (i32.add (local.get $r) (i32.const 12)))
            (i32.store offset=4 (local.get $r) (local.get $n))
            (local.get $r))
          (func (export "deallocate") (param i32))
          (func (export "instantiate") (param i32 i32 i32) (result i32) %BODY%)
        )
        """

    static func module(imports: String = "", body: String) -> [UInt8] {
        (try? wat2wasm(
            skeleton.replacingOccurrences(of: "%IMPORTS%", with: imports).replacingOccurrences(
                of: "%BODY%", with: body))) ?? []
    }

    static let modules: [[UInt8]] = [
        module(body: "(i32.const 0)"),
        module(
            imports: #"(import "env" "db_read" (func $r (param i32) (result i32)))"#,
            body:
                "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 100)))) (call $r (local.get 0))"
        ),
        module(body: "(drop (f32.const 1)) (i32.const 0)"),
    ].filter { !$0.isEmpty }
}
