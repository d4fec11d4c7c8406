import NodeCrypto
import StateSync
import Testing

@Suite("Contract code fetch: by checksum, verified, around liars and silent peers")
struct CodeFetchTests {
    let code = Array("(module)".utf8) + [1, 2, 3]
    var checksum: [UInt8] { SHA256.hash(code) }

    func asked(_ actions: [CodeFetch<String>.Action]) -> [String] {
        actions.compactMap { if case .send(let peer, .getCode) = $0 { peer } else { nil } }
    }

    @Test("a liar is discouraged and the next peer is asked; the true code is stored and the fetch is done")
    func liarThenHonest() {
        var fetch = CodeFetch<String>(missing: [checksum])
        let first = asked(fetch.start(peers: ["a", "b"], now: 0))
        #expect(first.count == 1)
        let liar = first[0]
        let honest = liar == "a" ? "b" : "a"
        let afterLie = fetch.received(.code(checksum: checksum, wasm: [9, 9]), from: liar, now: 1)
        #expect(afterLie.contains(.discourage(liar, "served code that does not hash to \(checksum.hex.prefix(16))")))
        #expect(asked(afterLie) == [honest])
        // An answer from a peer that was not asked is ignored.
        #expect(fetch.received(.code(checksum: checksum, wasm: code), from: liar, now: 2).isEmpty)
        let end = fetch.received(.code(checksum: checksum, wasm: code), from: honest, now: 2)
        #expect(end.contains(.store(checksum: checksum, wasm: code)))
        #expect(end.contains(.done))
        #expect(fetch.isDone)
    }

    @Test("silence times out and another peer is asked; with no peers it waits for one")
    func timeoutAndWaiting() {
        var fetch = CodeFetch<String>(missing: [checksum])
        #expect(fetch.start(peers: [], now: 0).isEmpty)
        let first = asked(fetch.connected("a", now: 1))
        #expect(first == ["a"])
        _ = fetch.connected("b", now: 2)
        #expect(asked(fetch.tick(now: 5)).isEmpty, "not yet timed out")
        #expect(asked(fetch.tick(now: 1 + CodeFetch<String>.timeout)) == ["b"])
        // "No copy" moves on as well; once every peer failed, it starts over.
        let retry = asked(fetch.received(.code(checksum: checksum, wasm: nil), from: "b", now: 12))
        #expect(retry.count == 1)
        #expect(!fetch.isDone)
    }

    @Test("the code messages round-trip and refuse code over 800 KiB")
    func wire() throws {
        let message = SnapshotMessage.code(checksum: checksum, wasm: code)
        #expect(try SnapshotMessage.decode(message.encoded()) == message)
        #expect(
            try SnapshotMessage.decode(SnapshotMessage.getCode(checksum: checksum).encoded())
                == .getCode(checksum: checksum))
        let huge = SnapshotMessage.code(checksum: checksum, wasm: [UInt8](repeating: 0, count: 800 * 1024 + 1))
        #expect(throws: (any Error).self) { try SnapshotMessage.decode(huge.encoded()) }
    }
}
