import NIOCore
import Noise
import Synchronization

extension Mutex where Value == SecureChannel {
    /// One message encrypted and framed straight into a socket buffer (no copy after).
    func sealed(_ message: [UInt8]) throws(SecureChannelError) -> ByteBuffer {
        let count = SecureChannel.sealedCount(ofMessage: message.count)
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        var failure: SecureChannelError?
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            withLock { channel in
                do throws(SecureChannelError) {
                    return try channel.send(message, into: out)
                } catch {
                    failure = error
                    return 0
                }
            }
        }
        if let failure { throw failure }
        return buffer
    }
}

/// How peer connections read from their sockets.
enum SecureChannelReads {
    /// Reads grow (adaptively, as NIO's default does) up to 128 KiB rather than 64 KiB:
    /// a full Noise frame is 65,537 bytes on the wire, so with 64 KiB reads nearly every
    /// frame is cut in two and copied aside. Not more: a flooding peer's reads wait in
    /// the channel's inbound buffer (16 reads at most), beside a 4 MiB reassembly.
    static let allocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2_048, maximum: 131_072)
}
