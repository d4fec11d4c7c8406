import Foundation
import NIOCore
import NIOPosix
import NodeCrypto
import Noise
import Synchronization

/// Measures the encrypted stream between two secure channels over loopback TCP,
/// next to raw ChaCha20-Poly1305 on the same machine in the same run.
public enum TransportBenchmark {
    public struct Result: Sendable {
        public var rawSealMBps: Double
        public var rawOpenMBps: Double
        public var streamMBps: Double
        /// Cores the process used while streaming (CPU time ÷ wall time, both ends).
        public var streamCores: Double
        public var messageBytes: Int
        public var handshakesPerSecond: Double
    }

    public static func run(seconds: Double, messageBytes: Int = 1 << 20) async throws -> Result {
        // Raw AEAD over maximal Noise frames: the bound for one core.
        let key = ChaChaPoly.Key.random()
        let nonce = ChaChaPoly.Nonce(noiseCounter: 7)
        let frame = SecureRandom.bytes(SecureChannelConfiguration.maxFramePlaintext)
        // In place, into preallocated memory: libsodium's own speed with no allocation.
        var out = [UInt8](repeating: 0, count: frame.count + ChaChaPoly.tagLength)
        let seal = Measure.rate(seconds: seconds) {
            frame.withUnsafeBytes { pt in
                out.withUnsafeMutableBytes { ChaChaPoly.seal(pt, key: key, nonce: nonce, into: $0) }
            }
        }
        let sealed = ChaChaPoly.seal(frame, key: key, nonce: nonce)
        var plain = [UInt8](repeating: 0, count: frame.count)
        let open = Measure.rate(seconds: seconds) {
            _ = sealed.withUnsafeBytes { ct in
                plain.withUnsafeMutableBytes { try! ChaChaPoly.open(ct, key: key, nonce: nonce, into: $0) }
            }
        }

        // Full XX handshakes with identity binding, both ends on this thread.
        let configA = SecureChannelConfiguration(chainID: "bench", identity: Ed25519.PrivateKey())
        let configB = SecureChannelConfiguration(chainID: "bench", identity: Ed25519.PrivateKey())
        let handshakes = Measure.rate(seconds: seconds) {
            var a = SecureChannel(role: .initiator(expectedPeer: nil), configuration: configA)
            var b = SecureChannel(role: .responder, configuration: configB)
            var toB = a.start()
            while !(a.isEstablished && b.isEstablished) {
                var toA: [SecureChannel.Action] = []
                for case .write(let bytes) in toB { toA += b.receive(bytes) }
                toB = []
                for case .write(let bytes) in toA { toB += a.receive(bytes) }
                if toA.isEmpty && toB.isEmpty { break }
            }
            precondition(a.isEstablished && b.isEstablished)
        }

        let stream = try await streamThroughput(seconds: seconds, messageBytes: messageBytes)
        return Result(
            rawSealMBps: seal * Double(frame.count) / 1e6, rawOpenMBps: open * Double(frame.count) / 1e6,
            streamMBps: stream.mbps, streamCores: stream.cores, messageBytes: messageBytes,
            handshakesPerSecond: handshakes)
    }

    /// Bytes of application payload per second delivered from one channel to the other.
    /// This process's CPU time so far (user + system), in seconds.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    static func streamThroughput(seconds: Double, messageBytes: Int) async throws -> (mbps: Double, cores: Double) {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .childChannelOption(.recvAllocator, value: SecureChannelReads.allocator)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let port = server.channel.localAddress!.port!
        let client = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: SecureChannelReads.allocator)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let config = SecureChannelConfiguration(chainID: "bench", identity: Ed25519.PrivateKey())
        let payload = SecureRandom.bytes(messageBytes)

        return try await withThrowingTaskGroup(of: (mbps: Double, cores: Double).self) { group in
            // Receiver: handshake as responder, then count delivered bytes for `seconds`.
            group.addTask {
                try await server.executeThenClose { inbound in
                    var iterator = inbound.makeAsyncIterator()
                    guard let connection = try await iterator.next() else { return (0, 0) }
                    return try await connection.executeThenClose { input, output in
                        var channel = SecureChannel(role: .responder, configuration: config)
                        var delivered = 0
                        var start: ContinuousClock.Instant?
                        var cpuAtStart = 0.0
                        let clock = ContinuousClock()
                        for try await buffer in input {
                            for action in channel.receive(buffer.readableBytesView) {
                                switch action {
                                case .write(let bytes): try await output.write(ByteBuffer(bytes: bytes))
                                case .deliver(let m):
                                    if start == nil {
                                        start = clock.now
                                        cpuAtStart = Self.cpuSeconds()
                                    } else {
                                        delivered += m.count
                                    }
                                case .established, .close: break
                                }
                            }
                            if let start, clock.now - start >= .seconds(seconds) {
                                let elapsed = (clock.now - start).inSeconds
                                return (Double(delivered) / elapsed / 1e6, (Self.cpuSeconds() - cpuAtStart) / elapsed)
                            }
                        }
                        return (0, 0)
                    }
                }
            }
            // Sender: handshake as initiator, then stream until the receiver closes.
            group.addTask {
                try await client.executeThenClose { input, output in
                    var channel = SecureChannel(role: .initiator(expectedPeer: nil), configuration: config)
                    for case .write(let bytes) in channel.start() { try await output.write(ByteBuffer(bytes: bytes)) }
                    var iterator = input.makeAsyncIterator()
                    while !channel.isEstablished {
                        guard let buffer = try await iterator.next() else { return (0, 0) }
                        for case .write(let bytes) in channel.receive(buffer.readableBytesView) {
                            try await output.write(ByteBuffer(bytes: bytes))
                        }
                    }
                    let sender = Mutex(channel)
                    do {
                        while true {
                            try await output.write(try sender.sealed(payload))
                        }
                    } catch {
                        return (0, 0)  // the receiver closed: done
                    }
                }
            }
            var result = (mbps: 0.0, cores: 0.0)
            for try await value in group where value.mbps > result.mbps { result = value }
            return result
        }
    }
}
