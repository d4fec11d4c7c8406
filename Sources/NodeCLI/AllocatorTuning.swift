import Foundation

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
/// The node caps the arenas at one per core, between 2 and 8 (glibc's default is 8 per
/// core), and fixes the threshold at glibc's initial 128 KiB: on 2 cores that is
/// `MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072`. An operator's own setting for either
/// (that variable, or `glibc.malloc.arena_max` / `glibc.malloc.mmap_threshold` in
/// `GLIBC_TUNABLES`) wins.
public enum AllocatorTuning {
    /// One `mallopt` call: the option's glibc number and the value.
    public struct Setting: Equatable, Sendable {
        public let name: String
        public let option: Int32
        public let value: Int32
    }

    public static func arenaMax(cores: Int) -> Setting {
        Setting(name: "MALLOC_ARENA_MAX", option: -8, value: Int32(min(8, max(2, cores))))
    }
    public static let mmapThreshold = Setting(name: "MALLOC_MMAP_THRESHOLD_", option: -3, value: 128 * 1024)

    /// The settings to apply, given the process environment: each unless the operator set it.
    public static func settings(environment: [String: String], cores: Int) -> [Setting] {
        let tunables = environment["GLIBC_TUNABLES"] ?? ""
        func setByOperator(_ variable: String, tunable: String) -> Bool {
            !(environment[variable] ?? "").isEmpty || tunables.contains("glibc.malloc.\(tunable)=")
        }
        var chosen: [Setting] = []
        if !setByOperator("MALLOC_ARENA_MAX", tunable: "arena_max") { chosen.append(arenaMax(cores: cores)) }
        if !setByOperator("MALLOC_MMAP_THRESHOLD_", tunable: "mmap_threshold") { chosen.append(mmapThreshold) }
        return chosen
    }

    /// Applies `settings(environment:cores:)`. Called first thing, before the node's threads
    /// start allocating. Returns what was applied (empty where glibc is not the C library).
    @discardableResult
    public static func apply(
        environment: [String: String], cores: Int = ProcessInfo.processInfo.activeProcessorCount
    ) -> [Setting] {
        #if canImport(Glibc)
            // Looked up at run time: Swift's Glibc module does not export <malloc.h>, and a C
            // library without mallopt (musl) simply keeps its defaults.
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return [] }
            typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
            let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
            return settings(environment: environment, cores: cores).filter { mallopt($0.option, $0.value) == 1 }
        #else
            return []
        #endif
    }
}
