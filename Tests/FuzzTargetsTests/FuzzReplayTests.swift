import Foundation
import FuzzTargets
import TestSupport
import Testing

/// Replays every seed and regression input of every fuzz target (Fuzz/corpus/TARGET,
/// Fuzz/regressions/TARGET), then a few thousand seeded mutations of them: what
/// libFuzzer once found must never crash again, and the harness properties (stable
/// encodings, no delivery of forged frames) hold in every ordinary test run.
@Suite("Fuzz targets: corpus and regression inputs replayed")
struct FuzzReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func inputs(_ target: String) -> [[UInt8]] {
        ["corpus", "regressions"].flatMap { kind -> [[UInt8]] in
            let directory = root.appendingPathComponent(kind).appendingPathComponent(target)
            let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            return files.sorted().compactMap { try? Array(Data(contentsOf: directory.appendingPathComponent($0))) }
        }
    }

    @Test("every target has a seed corpus", arguments: FuzzTargets.all.keys.sorted())
    func seeded(_ target: String) {
        #expect(!Self.inputs(target).isEmpty, "Fuzz/corpus/\(target) is empty: scripts/fuzz.sh --seed writes it")
    }

    /// The corpus holds today's encodings (fixed keys make them deterministic): a format
    /// change must refresh the seeds (`scripts/fuzz.sh --seed`), or fuzzing starts from
    /// inputs the decoders no longer accept.
    @Test("the seed corpus holds the current encodings")
    func seedsCurrent() throws {
        let vectors = Self.root.deletingLastPathComponent().appendingPathComponent("Tests/Vectors")
        let write = ProcessInfo.processInfo.environment["SIDENODE_WRITE_FUZZ_SEEDS"] != nil
        for (target, inputs) in FuzzTargets.seeds(vectors: vectors) {
            #expect(!inputs.isEmpty, "\(target): no seeds generated")
            let directory = Self.root.appendingPathComponent("corpus").appendingPathComponent(target)
            for input in inputs {
                let file = directory.appendingPathComponent(FuzzTargets.corpusName(input))
                if write {
                    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                    try Data(input).write(to: file)
                } else {
                    #expect(
                        FileManager.default.fileExists(atPath: file.path),
                        "\(target): seed \(file.lastPathComponent) missing")
                }
            }
        }
    }

    @Test("corpus, regressions and 2,000 mutations of them run clean", arguments: FuzzTargets.all.keys.sorted())
    func replay(_ target: String) {
        let harness = FuzzTargets.all[target]!
        let inputs = Self.inputs(target)
        for input in inputs { harness(input) }
        var rng = SeededRandom(state: UInt64(target.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
        for _ in 0..<2_000 {
            var input = inputs.isEmpty ? [] : inputs[Int(rng.next() % UInt64(inputs.count))]
            switch rng.next() % 4 {
            case 0 where !input.isEmpty:
                input[Int(rng.next() % UInt64(input.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            case 1 where !input.isEmpty: input.removeLast(Int(rng.next() % UInt64(input.count)))
            case 2: input.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(input.count + 1)))
            default: input = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
            // A crash kills the test process: the input that caused it is left here.
            if let trace = ProcessInfo.processInfo.environment["SIDENODE_FUZZ_TRACE"] {
                try? Data(input).write(to: URL(fileURLWithPath: "\(trace)-\(target)"))
            }
            harness(input)
        }
    }
}
