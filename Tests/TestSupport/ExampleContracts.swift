import Foundation

/// The example contracts in Tests/ContractsTests/Examples/, built once per test run by scripts/build-contracts.sh.
public enum ExampleContracts {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let built: Result<URL, any Error> = {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("sidenode-contracts-\(getpid())")
        let process = Process()
        process.executableURL = root.appendingPathComponent("scripts/build-contracts.sh")
        var environment = ProcessInfo.processInfo.environment
        environment["OUT"] = out.path
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                return .failure(CocoaError(.executableLoad, userInfo: ["reason": "build-contracts.sh failed"]))
            }
            return .success(out)
        } catch {
            return .failure(error)
        }
    }()

    /// The built file's path (for the CLI).
    public static func path(_ name: String) throws -> String {
        try built.get().appendingPathComponent("\(name).wasm").path
    }

    public static func wasm(_ name: String) throws -> [UInt8] {
        let dir = try built.get()
        return Array(try Data(contentsOf: dir.appendingPathComponent("\(name).wasm")))
    }
}
