import ArgumentParser
import Foundation
import Ledger
import Node
import NodeCrypto

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit signed transfers at a steady rate and report committed tx/s and commit latency.",
        discussion: """
            Signs with the data directory's key (its account must be funded, e.g. node0 of \
            scripts/testnet.sh), submits through the admin socket in binary batches \
            (submitbatch), and watches the account's committed sequence number: a transfer \
            counts when it committed with success. Prints the Ed25519 bound measured in the \
            same run: verify/s × cores ÷ nodes, since every node verifies every transaction once.
            With --sweep, runs one measurement per rate and prints a table (offered, \
            committed, p50, p99, bound, ratio); --plot writes it as an SVG chart.
            """
    )

    @OptionGroup var socket: SocketOptions

    @Option(help: "Transactions per second to submit.")
    var rate: Double = 200

    @Option(help: "Seconds to submit for (per rate with --sweep).")
    var duration: Double = 20

    @Option(help: "Validators sharing this machine, for the bound.")
    var nodes: Int = 4

    @Option(help: "Recipient account (node id hex) of the transfers; default: a new random account.")
    var to: String?

    @Flag(
        name: .customLong("new-accounts"),
        help: "Send each transfer to a new account (grows the state by one account per transaction).")
    var newAccounts = false

    @Option(help: "Comma-separated rates to measure one after the other (e.g. 1000,3000,6000); overrides --rate.")
    var sweep: String?

    @Option(help: "With --sweep: write an SVG chart of committed tx/s and latency against offered load here.")
    var plot: String?

    var rates: [Double] {
        get throws {
            guard let sweep else { return [rate] }
            let parts = sweep.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--sweep takes rates separated by commas, e.g. 1000,3000,6000")
            }
            return parts.map { $0! }
        }
    }

    func validate() throws {
        guard duration > 0, duration <= 3600, nodes >= 1 else {
            throw ValidationError("--duration 0…3600, --nodes ≥ 1")
        }
        for rate in try rates where !(rate > 0 && rate <= 50_000) {
            throw ValidationError("every rate must be in 0…50000 (got \(rate))")
        }
        if plot != nil && sweep == nil { throw ValidationError("--plot needs --sweep") }
        if let to, (try? Ed25519.PublicKey(rawRepresentation: Hex.decode(to))) == nil {
            throw ValidationError("--to must be an account: a node id (64 hex characters)")
        }
    }

    /// One rate's figures.
    struct Row {
        var offered: Double
        /// What the submitter reached (it shares the cores with the nodes).
        var submitted: Double
        var sent: Int
        var refused: Int
        var committed: Int
        var throughput: Double
        var p50: Double
        var p99: Double
    }

    func run() async throws {
        let directory = URL(fileURLWithPath: socket.dataDir ?? KeyStore.defaultDirectory(name: "node").path)
        let keys: NodeKeys
        do { keys = try KeyStore(directory: directory).load() } catch { throw CLIError("\(error)") }
        let client = AdminClient(socketPath: socket.path)
        let sample = [UInt8](repeating: 2, count: 200)
        let signature = keys.identity.signature(for: sample)
        let pureVerify = Measure.rate(seconds: 1) {
            _ = keys.identity.publicKey.isValidSignature(signature, for: sample)
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let bound = pureVerify * Double(cores) / Double(nodes)
        let recipient: Ed25519.PublicKey
        do {
            recipient =
                try to.map { try Ed25519.PublicKey(rawRepresentation: Hex.decode($0)) }
                ?? Ed25519.PrivateKey().publicKey
        } catch { throw CLIError("\(error)") }
        print("recipient \(recipient.hex)")
        var rows: [Row] = []
        for (index, rate) in try rates.enumerated() {
            if index > 0 { try await Task.sleep(for: .seconds(3)) }  // let the chain drain
            let row: Row
            do {
                row = try await measure(rate: rate, keys: keys, client: client, recipient: recipient)
            } catch let error as CLIError {
                throw error
            } catch {
                throw CLIError("\(error)")
            }
            rows.append(row)
            print(
                String(
                    format: "submitted %d in %.1f s (%.0f tx/s offered; the submitter shares the cores)", row.sent,
                    Double(row.sent) / max(row.submitted, 0.001), row.submitted))
            print("committed \(row.committed) of \(row.sent) (\(row.refused) refused at submission)")
            print(String(format: "committed throughput  %8.1f tx/s", row.throughput))
            print(String(format: "commit latency        p50 %.0f ms, p99 %.0f ms", row.p50 * 1000, row.p99 * 1000))
            print(
                String(
                    format:
                        "bound                 %8.0f tx/s (Ed25519 verify %.0f/s × %d cores ÷ %d nodes); ratio %.2f",
                    bound, pureVerify, cores, nodes, row.throughput / bound))
        }
        guard sweep != nil else { return }
        print()
        print(Self.table(rows, bound: bound))
        if let plot {
            do {
                try Self.svg(rows, bound: bound).write(toFile: plot, atomically: true, encoding: .utf8)
            } catch { throw CLIError("cannot write \(plot): \(error)") }
            print("plot written to \(plot)")
        }
    }

    /// Submits `rate` transfers per second for `duration` seconds and waits (at most 30 s
    /// more) for them to commit.
    func measure(rate: Double, keys: NodeKeys, client: AdminClient, recipient: Ed25519.PublicKey) async throws -> Row {
        let info = try client.call("getnextseq", .object(["author": .string(keys.nodeID)]))
        guard let chainID = info["chain_id"]?.stringValue, let next = info["next_seq"]?.numberValue else {
            throw CLIError("unexpected reply: \(info)")
        }
        func committedSeq() throws -> UInt64 {
            let account = try client.call("getaccount", .object(["account": .string(keys.nodeID)]))
            return UInt64(account["seq"]?.numberValue ?? 0)
        }
        var seq = UInt64(next)
        // Chained transfers: each names the previous as its predecessor, so a refusal
        // means re-signing from there.
        var previous: TxID?
        // Submission time by seq; a transfer committed once the account's committed seq reaches it.
        var submitted: [UInt64: Date] = [:]
        var latencies: [Double] = []
        var lastCommit: Date?
        let total = Int(rate * duration)
        func transfer(seq: UInt64, after previous: TxID?) -> Transaction {
            Transaction(
                chainID: chainID, author: keys.identity, seq: seq, fee: 0,
                payload: .transfer(to: newAccounts ? Ed25519.PrivateKey().publicKey : recipient, amount: 1),
                predecessors: previous.map { [$0] } ?? [])
        }
        // Clients sign on their own machines: sign the whole run before the clock
        // starts (when it fits in memory), so the measured window holds the nodes'
        // work and not the signing.
        var presigned: [Transaction] = []
        if total <= 500_000 {
            print("signing \(total) transfers…")
            var chainSeq = seq
            var chainPrevious = previous
            presigned.reserveCapacity(total)
            for _ in 0..<total {
                let tx = transfer(seq: chainSeq, after: chainPrevious)
                presigned.append(tx)
                chainPrevious = tx.id
                chainSeq += 1
            }
        }
        var presignedIndex = 0
        var watched = try committedSeq()
        let start = Date()
        var sent = 0
        var submittedAt: Date?
        var rejected = 0
        print("submitting \(total) transfers at \(Int(rate))/s to \(socket.path)")
        while sent < total || (submitted.count > 0 && Date().timeIntervalSince(start) < duration + 30) {
            let due = min(total, Int(Date().timeIntervalSince(start) * rate))
            // What is due goes in binary batches of up to 1,000 per admin call: one call
            // per transaction would make the socket round trip the limit, not the node.
            while sent < due {
                var batch: [Transaction] = []
                while sent + batch.count < due, batch.count < 1_000 {
                    let tx: Transaction
                    if presignedIndex < presigned.count, presigned[presignedIndex].seq == seq {
                        tx = presigned[presignedIndex]
                        presignedIndex += 1
                    } else {
                        // After a refusal the chain is re-signed from there.
                        presignedIndex = presigned.count
                        tx = transfer(seq: seq, after: previous)
                    }
                    batch.append(tx)
                    previous = tx.id
                    seq += 1
                }
                var blob: [UInt8] = []
                blob.reserveCapacity(batch.reduce(0) { $0 + 4 + $1.encoded.count })
                for tx in batch {
                    let n = UInt32(tx.encoded.count)
                    blob += [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
                    blob += tx.encoded
                }
                let reply = try client.call("submitbatch", .object(["txs": .string(Data(blob).base64EncodedString())]))
                let at = Date()
                // A node names refused transactions by index; one it cannot name counts as the first.
                let firstRefused = reply["errors"]?.arrayValue?.compactMap { $0["index"]?.numberValue }.min()
                    .map { min(max(0, Int(exactly: $0.rounded()) ?? 0), batch.count) }
                let acceptedCount = firstRefused ?? batch.count
                for tx in batch.prefix(acceptedCount) { submitted[tx.seq] = at }
                if let firstRefused, firstRefused < batch.count {
                    // Later transactions chain on a refused one: re-sign from there.
                    rejected += batch.count - firstRefused
                    seq -= UInt64(batch.count - firstRefused)
                    previous = firstRefused > 0 ? batch[firstRefused - 1].id : batch.first?.predecessors.first
                }
                sent += batch.count
                if sent >= total, submittedAt == nil { submittedAt = Date() }
            }
            // One cheap call tells what committed: the account's committed seq.
            let committed = try committedSeq()
            if committed > watched {
                let now = Date()
                for s in (watched + 1)...committed {
                    if let at = submitted.removeValue(forKey: s) {
                        latencies.append(now.timeIntervalSince(at))
                        lastCommit = now
                    }
                }
                watched = committed
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        latencies.sort()
        func percentile(_ p: Double) -> Double {
            latencies.isEmpty ? .nan : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
        }
        let window = max(0.001, (lastCommit ?? start).timeIntervalSince(start))
        let submitSeconds = (submittedAt ?? Date()).timeIntervalSince(start)
        return Row(
            offered: rate, submitted: Double(sent) / max(0.001, submitSeconds), sent: sent, refused: rejected,
            committed: latencies.count, throughput: Double(latencies.count) / window, p50: percentile(0.5),
            p99: percentile(0.99))
    }

    static func table(_ rows: [Row], bound: Double) -> String {
        var out = "| offered tx/s | reached | committed tx/s | p50 ms | p99 ms | bound tx/s | ratio |\n"
        out += "|---|---|---|---|---|---|---|\n"
        for r in rows {
            out += String(
                format: "| %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f |\n", r.offered, r.submitted, r.throughput,
                r.p50 * 1000, r.p99 * 1000, bound, r.throughput / bound)
        }
        return out
    }

    /// Two panels side by side: committed tx/s against offered (with the bound and the
    /// line committed = offered), and p50/p99 latency against offered (log scale).
    static func svg(_ rows: [Row], bound: Double) -> String {
        let width = 900.0
        let height = 380.0
        let panel = (w: 360.0, h: 280.0)
        let maxX = max(rows.map(\.offered).max() ?? 1, 1) * 1.05
        let maxY = max(bound, rows.map(\.throughput).max() ?? 1, maxX) * 1.05
        let latencies = rows.flatMap { [$0.p50, $0.p99] }.filter { $0.isFinite && $0 > 0 }.map { $0 * 1000 }
        let lowMS = pow(10, floor(log10(max(1, latencies.min() ?? 1))))
        let highMS = pow(10, ceil(log10(max(lowMS * 10, latencies.max() ?? 1000))))
        func x(_ v: Double, _ left: Double) -> Double { left + v / maxX * panel.w }
        func y(_ v: Double) -> Double { 50 + panel.h - v / maxY * panel.h }
        func yLog(_ ms: Double) -> Double {
            50 + panel.h - (log10(max(ms, lowMS)) - log10(lowMS)) / (log10(highMS) - log10(lowMS)) * panel.h
        }
        func polyline(_ points: [(Double, Double)], _ color: String, dashed: Bool = false) -> String {
            let list = points.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\""
                + (dashed ? " stroke-dasharray=\"5,4\"" : "") + " points=\"\(list)\"/>\n"
                + points.map {
                    String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"\(color)\"/>", $0.0, $0.1)
                }
                .joined(separator: "\n") + "\n"
        }
        func text(_ s: String, _ px: Double, _ py: Double, anchor: String = "middle", size: Int = 12) -> String {
            String(format: "<text x=\"%.1f\" y=\"%.1f\" font-size=\"\(size)\" text-anchor=\"\(anchor)\">", px, py) + s
                + "</text>\n"
        }
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            font-family="sans-serif">
            <rect width="100%" height="100%" fill="white"/>

            """
        let lefts = [70.0, 520.0]
        for left in lefts {
            s += String(
                format: "<rect x=\"%.0f\" y=\"50\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#999\"/>\n",
                left, panel.w, panel.h)
            for i in 0...4 {
                let v = maxX * Double(i) / 4
                s += text(String(format: "%.0f", v), x(v, left), 50 + panel.h + 16, size: 10)
            }
            s += text("offered tx/s", left + panel.w / 2, 50 + panel.h + 34)
        }
        // Left: throughput.
        s += text("committed tx/s (bound dashed red)", lefts[0] + panel.w / 2, 36, size: 13)
        for i in 0...4 {
            let v = maxY * Double(i) / 4
            s += text(String(format: "%.0f", v), lefts[0] - 6, y(v) + 4, anchor: "end", size: 10)
        }
        s += polyline([(x(0, lefts[0]), y(0)), (x(maxX, lefts[0]), y(min(maxX, maxY)))], "#bbb", dashed: true)
        s += polyline([(x(0, lefts[0]), y(bound)), (x(maxX, lefts[0]), y(bound))], "#d33", dashed: true)
        s += polyline(rows.map { (x($0.offered, lefts[0]), y($0.throughput)) }, "#1f5fbf")
        // Right: latency, log scale.
        s += text("commit latency ms, log (p50 blue, p99 orange)", lefts[1] + panel.w / 2, 36, size: 13)
        var tick = lowMS
        while tick <= highMS * 1.001 {
            s += text(String(format: "%.0f", tick), lefts[1] - 6, yLog(tick) + 4, anchor: "end", size: 10)
            tick *= 10
        }
        let finite = rows.filter { $0.p50.isFinite && $0.p99.isFinite }
        s += polyline(finite.map { (x($0.offered, lefts[1]), yLog($0.p50 * 1000)) }, "#1f5fbf")
        s += polyline(finite.map { (x($0.offered, lefts[1]), yLog($0.p99 * 1000)) }, "#e07b00")
        s += "</svg>\n"
        return s
    }
}
