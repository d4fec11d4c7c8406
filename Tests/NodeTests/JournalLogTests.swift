import Foundation
import Logging
import Testing

@testable import Node

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
        // journald also ends an entry at a NUL: a chain id "x\0<0>…" must not become an
        // emergency-level entry. No control character survives; the line is bounded.
        let nul = JournalLogHandler.line(
            level: .info, label: "s", message: "rejected", metadata: ["reason": "wrong chain id 'x\u{0}<0>boom\r'"])
        #expect(!nul.dropLast().unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
        #expect(nul.contains("\\u{0}<0>boom\\u{d}"))
        let long = JournalLogHandler.line(
            level: .info, label: "s", message: String(repeating: "a", count: 100_000), metadata: [:])
        #expect(long.utf8.count <= JournalLogHandler.maxLine + 8)
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

@Suite("Status endpoint and outbound address: hostile or mistaken input")
struct StatusEndpointTests {
    @Test("the status page answers only requests that name the node by address (no DNS rebinding)")
    func hostMustBeAnAddress() {
        for good in ["127.0.0.1:9464", "127.0.0.1", "[::1]:9464", "localhost:9464", "10.0.0.5"] {
            #expect(MetricsServer.hostIsAddress(good), "\(good)")
        }
        for bad in [nil, "", "evil.example:9464", "evil.example", "[::1", "127.0.0.1.evil.example", "localhost.evil"] {
            #expect(!MetricsServer.hostIsAddress(bad), "\(bad ?? "nil")")
        }
    }

    @Test("an outbound_address that is not on this host stops start-up with a clear error")
    func outboundAddressMustBeLocal() throws {
        try NodeRuntime.checkLocalAddress("127.0.0.1")
        let error = #expect(throws: ConfigError.self) { try NodeRuntime.checkLocalAddress("192.0.2.77") }
        #expect(error?.description.contains("is not an address of this host") == true)
    }
}
