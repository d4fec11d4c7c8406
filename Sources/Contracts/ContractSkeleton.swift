import Foundation

/// A minimal interface_version_8 contract in WAT around a chosen `execute` body: memory,
/// a bump allocator, the marker, and `instantiate`/`query` answering an empty ok
/// Response (its JSON at 64, its Region at 16). The benchmark's probes, the fuzz seeds
/// and the hostile-contract tests are built from it.
public enum ContractSkeleton {
    public static let okJSON = #"{"ok":{"messages":[],"attributes":[],"events":[],"data":null}}"#

    public static func wat(imports: String = "", execute: String, extra: String = "", memoryPages: Int = 2) -> String {
        let len = String(format: "%02x", okJSON.utf8.count)
        let escaped = okJSON.replacingOccurrences(of: "\"", with: "\\\"")
        return """
            (module
              \(imports)
              (memory (export "memory") \(memoryPages))
              (global $heap (mut i32) (i32.const 4096))
              (data (i32.const 16) "\\40\\00\\00\\00\\\(len)\\00\\00\\00\\\(len)\\00\\00\\00")
              (data (i32.const 64) "\(escaped)")
              (func (export "interface_version_8"))
              (func $allocate (export "allocate") (param $size i32) (result i32)
                (local $region i32)
                (local.set $region (global.get $heap))
                (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $size) (i32.const 16))))
                (block $fits
                  (br_if $fits (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
                  (drop (memory.grow (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1)))))
                (i32.store (local.get $region) (i32.add (local.get $region) (i32.const 12)))
                (i32.store offset=4 (local.get $region) (local.get $size))
                (i32.store offset=8 (local.get $region) (i32.const 0))
                (local.get $region))
              (func (export "deallocate") (param i32))
              (func (export "instantiate") (param i32 i32 i32) (result i32) (i32.const 16))
              (func (export "execute") (param $env i32) (param $info i32) (param $msg i32) (result i32)
                \(execute))
              (func (export "query") (param i32 i32) (result i32) (i32.const 16))
              \(extra)
            )
            """
    }
}
