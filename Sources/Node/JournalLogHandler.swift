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

    /// One journal line: priority, level, label, message, then the metadata sorted by key.
    /// Line breaks inside a message would start new journal entries at the default
    /// priority, so they are escaped.
    public static func line(
        level: Logger.Level, label: String, message: String, metadata: Logger.Metadata
    ) -> String {
        var text = "<\(priority(level))>\(level) \(label): \(message)"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { text += " \(key)=\(value)" }
        return text.replacingOccurrences(of: "\n", with: "\\n") + "\n"
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
