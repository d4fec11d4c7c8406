import Foundation

/// Access to the official test vectors copied into `Tests/Vectors` (see its README).
public enum Vectors {
    public static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // TestSupport
        .deletingLastPathComponent()  // Tests
        .appendingPathComponent("Vectors", isDirectory: true)

    public static func data(_ name: String) throws -> Data {
        try Data(contentsOf: directory.appendingPathComponent(name))
    }

    public static func json(_ name: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: data(name)) as? [String: Any] else {
            throw VectorError("\(name) is not a JSON object")
        }
        return object
    }

    public static func text(_ name: String) throws -> String {
        String(decoding: try data(name), as: UTF8.self)
    }
}

public struct VectorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A fresh directory under the system temporary directory, removed by the caller.
public func makeTemporaryDirectory(_ prefix: String = "sidenode-test") throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("\(prefix)-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
