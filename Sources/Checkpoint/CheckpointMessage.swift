import Bitcoin
import Consensus
import Wire

/// Checkpoint protocol messages between validators (docs/wire.md §6):
///
///     request   = u8 1 || bytes32 psbt || bytes32 qc      the initiator's PSBT and the QC it anchors
///     signature = u8 2 || bytes32 psbt                     a validator's co-signed copy
///     refusal   = u8 3 || string16 txid || string16 reason
///
/// PSBTs are BIP174 bytes (with the BIP371 fields), QCs the consensus encoding.
public enum CheckpointMessage: Sendable, Equatable {
    case request(CheckpointRequest)
    case signature(PSBT)
    case refusal(txid: String, reason: String)

    /// A PSBT for one input with a k-of-n leaf stays far below this.
    public static let maxPSBTBytes = 256 * 1024

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .request(let r):
            w.u8(1)
            w.bytes32(r.psbt.serialized)
            w.bytes32(r.qc.encoded())
        case .signature(let psbt):
            w.u8(2)
            w.bytes32(psbt.serialized)
        case .refusal(let txid, let reason):
            w.u8(3)
            w.string16(txid)
            w.string16(String(reason.prefix(500)))
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> CheckpointMessage {
        var r = WireReader(bytes)
        let message: CheckpointMessage
        func psbt(_ raw: [UInt8]) throws(WireError) -> PSBT {
            do { return try PSBT(bytes: raw) } catch { throw WireError("checkpoint PSBT: \(error)") }
        }
        switch try r.u8("checkpoint message tag") {
        case 1:
            let p = try psbt(try r.bytes32(max: maxPSBTBytes, "psbt"))
            let qc = try QuorumCert.decode(try r.bytes32(max: 64 * 1024, "qc"))
            message = .request(CheckpointRequest(psbt: p, qc: qc))
        case 2:
            message = .signature(try psbt(try r.bytes32(max: maxPSBTBytes, "psbt")))
        case 3:
            message = .refusal(txid: try r.string16(max: 64, "txid"), reason: try r.string16(max: 2_000, "reason"))
        case let tag:
            throw WireError("unknown checkpoint message tag \(tag)")
        }
        try r.finish()
        return message
    }
}
