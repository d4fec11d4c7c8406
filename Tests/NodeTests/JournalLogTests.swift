import Foundation
import Logging
import Node
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Logs under systemd's journal")
struct JournalLogTests {
    @Test("each level gets its syslog priority; metadata sorted; a line break cannot start a forged entry")
    func lines() {
        #expect(
            JournalLogHandler.line(
                level: .warning, label: "sidenode", message: "peer slow", metadata: ["b": "2", "a": "1"])
                == "<4>warning sidenode: peer slow a=1 b=2\n")
        #expect(JournalLogHandler.line(level: .critical, label: "s", message: "x", metadata: [:]).hasPrefix("<2>"))
        #expect(JournalLogHandler.line(level: .debug, label: "s", message: "x", metadata: [:]).hasPrefix("<7>"))
        // A peer-supplied string logged as metadata must not inject "<2>…" as a new entry.
        let forged = JournalLogHandler.line(
            level: .info, label: "s", message: "agent", metadata: ["agent": "x\n<2>critical fake"])
        #expect(forged.split(separator: "\n").count == 1 && forged.hasPrefix("<6>"))
    }

    @Test("JOURNAL_STREAM counts only when it names stderr itself")
    func detection() {
        var info = stat()
        #expect(fstat(STDERR_FILENO, &info) == 0)
        let mine = "\(info.st_dev):\(info.st_ino)"
        #expect(JournalLogHandler.stderrIsJournal(environment: ["JOURNAL_STREAM": mine]))
        #expect(!JournalLogHandler.stderrIsJournal(environment: ["JOURNAL_STREAM": "1:2"]))
        #expect(!JournalLogHandler.stderrIsJournal(environment: ["JOURNAL_STREAM": "junk"]))
        #expect(!JournalLogHandler.stderrIsJournal(environment: [:]))
    }
}
