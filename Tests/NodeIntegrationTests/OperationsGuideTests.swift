import Foundation
import Testing

/// docs/operations.md, the deployment guide, run as written: tools/opsguide/check.py
/// runs every block marked for the offline checker on five simulated machines (the genesis
/// ceremony, the systemd unit's command line, validators on loopback, an upgrade, a new
/// validator, a backup and a restore) and checks every `p2pnode` command in the guide
/// against `--help`.
@Suite("Operations guide")
struct OperationsGuideTests {
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    @Test(
        "every offline step of docs/operations.md runs and the validators it sets up commit, upgrade, grow and restore")
    func guideRuns() throws {
        let binary = try LocalTestnet.findBinary()
        // Five nodes: P2P ports base…base+4, metrics ports 10,000 below (TestPorts reserves both).
        let base = TestPorts.block(5)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", Self.repository.appendingPathComponent("tools/opsguide/check.py").path,
            "--build-dir", binary.deletingLastPathComponent().path,
            "--base-port", "\(base)", "--metrics-base-port", "\(base - TestPorts.metricsOffset)",
        ]
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(
            "opsguide-\(UUID().uuidString.prefix(8)).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        process.waitUntilExit()
        try handle.close()
        let log = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        #expect(
            process.terminationStatus == 0 && log.hasSuffix("opsguide: PASS\n"),
            "tools/opsguide/check.py failed:\n\(log.split(separator: "\n").suffix(60).joined(separator: "\n"))")
    }
}
