import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Logs to stderr with a syslog priority prefix (`<4>` for a warning) when stderr is
/// connected to systemd's journal, so `journalctl -p warning` filters by level
/// (sd-daemon(3)'s `SD_WARNING` convention). journald stamps the time and the unit.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The syslog priority of a level (RFC 5424 severities).
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Longest line written; journald splits longer ones (`LineMax`, 48 KiB by default).
    public static let maxLine = 16 * 1024

    /// One journal line: priority, level, label, message, then the metadata sorted by key.
    /// journald starts a new entry, with a new `<N>` priority, after a line break or a NUL,
    /// and peers supply some of what is logged (chain ids, agents): every control
    /// character is escaped, and the line is cut at `maxLine`.
    public static func line(
        level: Logger.Level, label: String, message: String, metadata: Logger.Metadata
    ) -> String {
        var text = "\(level) \(label): \(message)"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { text += " \(key)=\(value)" }
        var out = "<\(priority(level))>"
        var bytes = 3
        for scalar in text.unicodeScalars {
            if bytes >= maxLine {
                out += "…"
                break
            }
            let piece: String
            switch scalar.value {
            case 0x0A: piece = "\\n"
            case 0x00..<0x20, 0x7F, 0x80..<0xA0, 0x2028, 0x2029: piece = "\\u{\(String(scalar.value, radix: 16))}"
            default: piece = String(scalar)
            }
            out += piece
            bytes += piece.utf8.count
        }
        return out + "\n"
    }

    /// Whether stderr is the journal stream systemd named in `JOURNAL_STREAM`
    /// ("DEVICE:INODE"): a redirect inside the unit leaves the variable but not the stream.
    public static func stderrIsJournal(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let text = Self.line(level: event.level, label: label, message: "\(event.message)", metadata: merged)
        FileHandle.standardError.write(Data(text.utf8))
    }
}
