/// Timing helpers shared by the benchmarks.
public enum Measure {
    /// Operations per second of `body`, called in growing batches until `seconds` have
    /// passed (after a short warm-up outside the measurement).
    public static func rate(seconds: Double, _ body: () -> Void) -> Double {
        let clock = ContinuousClock()
        for _ in 0..<3 { body() }
        var iterations = 0
        var batch = 1
        let start = clock.now
        var elapsed = Duration.zero
        while elapsed < .seconds(seconds) {
            for _ in 0..<batch { body() }
            iterations += batch
            elapsed = clock.now - start
            if elapsed < .milliseconds(50) { batch *= 2 }
        }
        return Double(iterations) / elapsed.inSeconds
    }
}

extension Duration {
    /// The duration as floating-point seconds.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
