import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Hands out loopback ports to the integration tests. Suites run in parallel in one
/// process, so random picks from overlapping ranges collided: a second regtest server
/// failed to bind and its test talked to another test's chain until that one stopped.
/// Every port handed out is unique within the run and was free when handed out.
enum TestPorts {
    /// Node ports live here; each node's metrics port is 10,000 lower. Both stay below
    /// Linux's ephemeral range (32768–60999), where outgoing connections take ports.
    static let range = 20_000..<32_000
    static let metricsOffset = 10_000

    private final class State: @unchecked Sendable {
        let lock = NSLock()
        var next = TestPorts.range.lowerBound + Int.random(in: 0..<1_000) * 10
        var taken = Set<Int>()
    }
    private static let state = State()

    /// The first of `count` consecutive free ports; with `metrics`, the ports 10,000 below
    /// them are free and reserved too.
    static func block(_ count: Int, metrics: Bool = true) -> Int {
        state.lock.lock()
        defer { state.lock.unlock() }
        for _ in 0..<(range.count / 10) {
            let base = state.next
            state.next += ((count + 9) / 10) * 10
            if state.next + count >= range.upperBound { state.next = range.lowerBound }
            var ports = Array(base..<(base + count))
            if metrics { ports += ports.map { $0 - metricsOffset } }
            if ports.allSatisfy({ !state.taken.contains($0) && isFree($0) }) {
                state.taken.formUnion(ports)
                return base
            }
        }
        fatalError("no \(count) free consecutive loopback ports in \(range)")
    }

    /// One free port (a regtest server, a raw listener).
    static func single() -> Int { block(1, metrics: false) }

    /// True when a listener can bind 127.0.0.1:`port` now.
    private static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bound = withLoopback(port) { bind(fd, $0, $1) }
        return bound == 0
    }

    /// Calls `body` with 127.0.0.1:`port` as a socket address (bind, connect).
    static func withLoopback(_ port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}
