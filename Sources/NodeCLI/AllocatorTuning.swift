#if canImport(Glibc)
    import Glibc
#endif

/// glibc's malloc defaults suit short programs, not a node that runs for weeks. Two of them
/// made a soak's resident memory climb while the live heap stayed flat:
///
/// - one arena per thread, up to 8 per core: Swift tasks hop threads, so a value allocated
///   in one arena is freed into it from another thread, and the holes it leaves are reused
///   only by that arena's next owner while the others keep growing;
/// - a dynamic mmap threshold: after a large block (a DAG table resize) is freed, blocks up
///   to that size are carved from the arenas instead of mapped, and leave large holes there.
///
/// The node caps the arenas at 2 and fixes the threshold at glibc's initial 128 KiB, which
/// is what `MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072` would do. An operator's own
/// `MALLOC_*` setting for either wins.
public enum AllocatorTuning {
    /// One `mallopt` call: the option's glibc number and the value.
    public struct Setting: Equatable, Sendable {
        public let name: String
        public let option: Int32
        public let value: Int32
    }

    public static let arenaMax = Setting(name: "MALLOC_ARENA_MAX", option: -8, value: 2)
    public static let mmapThreshold = Setting(name: "MALLOC_MMAP_THRESHOLD_", option: -3, value: 128 * 1024)

    /// The settings to apply, given the process environment: each unless the operator set it.
    public static func settings(environment: [String: String]) -> [Setting] {
        [arenaMax, mmapThreshold].filter { environment[$0.name] == nil }
    }

    /// Applies `settings(environment:)`. Called first thing, before the node's threads start
    /// allocating. Returns what was applied (empty where glibc is not the C library).
    @discardableResult
    public static func apply(environment: [String: String]) -> [Setting] {
        #if canImport(Glibc)
            // Looked up at run time: Swift's Glibc module does not export <malloc.h>, and a C
            // library without mallopt (musl) simply keeps its defaults.
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return [] }
            typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
            let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
            return settings(environment: environment).filter { mallopt($0.option, $0.value) == 1 }
        #else
            return []
        #endif
    }
}
