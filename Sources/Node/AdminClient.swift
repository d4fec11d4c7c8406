import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking JSON-RPC client for the admin socket, for the CLI and tests.
public struct AdminClient: Sendable {
    public let socketPath: String
    public var timeoutSeconds: Int

    public init(socketPath: String, timeoutSeconds: Int = 30) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
    }

    /// Sends one request and returns `result`, or throws the server's error.
    public func call(_ method: String, _ params: JSONValue = .object([:])) throws -> JSONValue {
        let request = JSONValue.object([
            "jsonrpc": .string("2.0"), "id": .int(1), "method": .string(method), "params": params,
        ])
        let response = try JSONValue.parse(try exchange(request.jsonText))
        if let error = response["error"] {
            throw AdminCallError(
                code: Int(error["code"]?.numberValue ?? 0), message: error["message"]?.stringValue ?? "unknown error")
        }
        return response["result"] ?? .null
    }

    /// Sends one line, returns one line.
    public func exchange(_ line: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw AdminCallError(code: -1, message: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw AdminCallError(code: -1, message: "socket path too long: \(socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            throw AdminCallError(
                code: -1,
                message: "cannot connect to \(socketPath): \(String(cString: strerror(errno))) (is the node running?)")
        }
        let data = Array((line + "\n").utf8)
        var sent = 0
        while sent < data.count {
            let n = data[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw AdminCallError(code: -1, message: "write failed") }
            sent += n
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !received.contains(UInt8(ascii: "\n")) {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw AdminCallError(code: -1, message: "no response from \(socketPath)") }
            received += chunk[0..<n]
        }
        let end = received.firstIndex(of: UInt8(ascii: "\n"))!
        return String(decoding: received[..<end], as: UTF8.self)
    }
}

public struct AdminCallError: Error, CustomStringConvertible, Sendable {
    public let code: Int
    public let message: String
    public var description: String { "error \(code): \(message)" }
}
