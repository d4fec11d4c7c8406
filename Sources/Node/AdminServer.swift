import Foundation
import Logging
import NIOCore
import NIOPosix

/// A JSON-RPC 2.0 error as the admin socket returns it.
public struct AdminError: Error, Sendable, Equatable {
    public let code: Int
    public let message: String

    static func invalidParams(_ m: String) -> AdminError { AdminError(code: -32602, message: m) }
    static func methodNotFound(_ m: String) -> AdminError {
        AdminError(code: -32601, message: "method not found: \(m)")
    }
    static func serverError(_ m: String) -> AdminError { AdminError(code: -32000, message: m) }
    static let parseError = AdminError(code: -32700, message: "parse error: not valid JSON")
    static func invalidRequest(_ m: String) -> AdminError { AdminError(code: -32600, message: "invalid request: \(m)") }
}

/// One JSON-RPC 2.0 request line, checked for shape before any method runs.
public struct AdminRequest: Sendable {
    public let id: JSONValue
    public let method: String
    /// Always an object (absent params are `{}`).
    public let params: JSONValue

    public struct Failure: Error, Sendable {
        public let id: JSONValue
        public let error: AdminError
    }

    public static func parse(_ line: String) -> Result<AdminRequest, Failure> {
        guard let request = try? JSONValue.parse(line) else { return .failure(Failure(id: .null, error: .parseError)) }
        let id = request["id"] ?? .null
        guard case .object = request, request["jsonrpc"]?.stringValue == "2.0",
            let method = request["method"]?.stringValue
        else {
            return .failure(
                Failure(id: id, error: .invalidRequest("expected {\"jsonrpc\":\"2.0\",\"method\":…,\"id\":…}")))
        }
        let params = request["params"] ?? .object([:])
        guard case .object = params else {
            return .failure(Failure(id: id, error: .invalidParams("params must be an object")))
        }
        return .success(AdminRequest(id: id, method: method, params: params))
    }
}

/// The admin socket: a Unix domain socket (mode 0600) speaking line-delimited
/// JSON-RPC 2.0, one request per line, one response per line.
struct AdminServer: Sendable {
    static let maxLine = 4 << 20

    let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    let runtime: NodeRuntime
    let logger: Logger
    let path: String

    static func bind(path: String, runtime: NodeRuntime, logger: Logger) async throws -> AdminServer {
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ConfigError("cannot open the admin socket \(path): \(error)")
        }
        // File permissions are the only authentication, as with geth's IPC socket.
        guard chmod(path, 0o600) == 0 else {
            try? await server.channel.close()
            throw ConfigError("cannot set mode 0600 on \(path)")
        }
        return AdminServer(server: server, runtime: runtime, logger: logger, path: path)
    }

    func close() {
        server.channel.close(promise: nil)
        unlink(path)
    }

    func run() async {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } catch {
            logger.debug("admin socket closed", metadata: ["error": "\(error)"])
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var pending: [UInt8] = []
                for try await buffer in inbound {
                    pending += buffer.readableBytesView
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        // Blank lines are skipped on the bytes: a Foundation trim would copy a
                        // large request (a `submittxs` batch) to UTF-16 first.
                        let blank = pending[..<newline].allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
                        let line = blank ? "" : String(decoding: pending[..<newline], as: UTF8.self)
                        pending.removeSubrange(...newline)
                        if blank { continue }
                        let (response, stop) = await handle(line)
                        try await outbound.write(ByteBuffer(string: response + "\n"))
                        if stop {
                            runtime.requestStop()
                            return
                        }
                    }
                    if pending.count > Self.maxLine {
                        let error = Self.errorResponse(.null, AdminError.invalidRequest("line longer than 1 MiB"))
                        try await outbound.write(ByteBuffer(string: error + "\n"))
                        return
                    }
                }
            }
        } catch {
            logger.debug("admin connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// The response line, and whether the node should stop once it is sent.
    func handle(_ line: String) async -> (String, Bool) {
        let request: AdminRequest
        switch AdminRequest.parse(line) {
        case .success(let parsed): request = parsed
        case .failure(let failure): return (Self.errorResponse(failure.id, failure.error), false)
        }
        do {
            let result = try await runtime.admin(request.method, request.params)
            return (
                JSONValue.object(["jsonrpc": .string("2.0"), "id": request.id, "result": result]).jsonText,
                request.method == "stop"
            )
        } catch {
            return (Self.errorResponse(request.id, error), false)
        }
    }

    static func errorResponse(_ id: JSONValue, _ error: AdminError) -> String {
        JSONValue.object([
            "jsonrpc": .string("2.0"), "id": id,
            "error": .object(["code": .int(error.code), "message": .string(error.message)]),
        ]).jsonText
    }
}
