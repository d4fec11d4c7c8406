internal import CSodium

/// libsodium must be initialised once before use; `sodium_init` is idempotent
/// and thread-safe, and a Swift global is initialised exactly once.
private let sodiumInitialised: Bool = sodium_init() >= 0

@inline(__always)
func ensureSodium() {
    precondition(sodiumInitialised, "libsodium failed to initialise")
}

/// Cryptographically secure random bytes from the operating system (via libsodium).
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        ensureSodium()
        var out = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return out }
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
        return out
    }
}

/// Comparison in time independent of where the inputs differ, for MACs, keys and tags.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    ensureSodium()
    return a.withUnsafeBytes { pa in
        b.withUnsafeBytes { pb in sodium_memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0 }
    }
}

/// Heap storage for secret material that is zeroed when the last reference goes away.
///
/// Swift arrays may be copied anywhere by the optimiser, so secrets live here instead
/// and are only exposed through scoped pointer access.
final class SecretBytes: @unchecked Sendable {
    // Immutable after init, so sharing across threads is safe.
    private let pointer: UnsafeMutableRawBufferPointer

    init(count: Int, initializer: (UnsafeMutableRawBufferPointer) -> Void) {
        pointer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        pointer.initializeMemory(as: UInt8.self, repeating: 0)
        initializer(pointer)
    }

    convenience init(_ bytes: [UInt8]) {
        self.init(count: bytes.count) { dest in
            bytes.withUnsafeBytes { dest.copyMemory(from: $0) }
        }
    }

    var count: Int { pointer.count }

    func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(pointer))
    }

    /// A copy the caller is responsible for; used only where an API must hand out bytes.
    var bytes: [UInt8] { Array(pointer) }

    deinit {
        ensureSodium()
        sodium_memzero(pointer.baseAddress, pointer.count)
        pointer.deallocate()
    }
}
