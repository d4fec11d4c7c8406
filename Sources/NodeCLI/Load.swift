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
            scripts/testnet.sh), submits through the admin socket, and watches committed blocks \
            for the submitted ids. Prints the Ed25519 bound measured in the same run: \
            verify/s × cores ÷ nodes, since every node verifies every transaction once.
            """
    )

    @OptionGroup var socket: SocketOptions

    @Option(help: "Transactions per second to submit.")
    var rate: Double = 200

    @Option(help: "Seconds to submit for.")
    var duration: Double = 20

    @Option(help: "Validators sharing this machine, for the bound.")
    var nodes: Int = 4

    @Option(help: "Recipient account (node id hex) of the transfers; default: a new random account.")
    var to: String?

    @Flag(
        name: .customLong("new-accounts"),
        help: "Send each transfer to a new account (grows the state by one account per transaction).")
    var newAccounts = false

    func validate() throws {
        guard rate > 0, rate <= 50_000, duration > 0, duration <= 3600, nodes >= 1 else {
            throw ValidationError("--rate 0…50000, --duration 0…3600, --nodes ≥ 1")
        }
        if let to, (try? Ed25519.PublicKey(rawRepresentation: Hex.decode(to))) == nil {
            throw ValidationError("--to must be an account: a node id (64 hex characters)")
        }
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

        do {
            let info = try client.call("getnextseq", .object(["author": .string(keys.nodeID)]))
            guard let chainID = info["chain_id"]?.stringValue, let next = info["next_seq"]?.numberValue else {
                throw CLIError("unexpected reply: \(info)")
            }
            let startHeight = Int(try client.call("getstatus")["committed_height"]?.numberValue ?? 0)
            let recipient =
                try to.map { try Ed25519.PublicKey(rawRepresentation: Hex.decode($0)) }
                ?? Ed25519.PrivateKey().publicKey
            print("recipient \(recipient.hex)")
            var seq = UInt64(next)
            var previous: TxID?
            var submitted: [String: Date] = [:]
            var latencies: [Double] = []
            var lastCommit: Date?
            var seenHeight = startHeight
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
            let start = Date()
            var sent = 0
            var submittedAt: Date?
            var rejected = 0
            print("submitting \(total) transfers at \(Int(rate))/s to \(socket.path)")
            while sent < total || (submitted.count > 0 && Date().timeIntervalSince(start) < duration + 30) {
                let due = min(total, Int(Date().timeIntervalSince(start) * rate))
                // What is due goes in batches of up to 500 per admin call: one call per
                // transaction would make the socket round trip the limit, not the node.
                while sent < due {
                    var batch: [Transaction] = []
                    while sent + batch.count < due, batch.count < 500 {
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
                    let reply = try client.call(
                        "submittxs", .object(["txs": .array(batch.map { .string($0.encoded.hex) })]))
                    let results = reply["results"]?.arrayValue ?? []
                    let at = Date()
                    for (tx, result) in zip(batch, results) {
                        if result["id"] != nil { submitted[tx.id.hex] = at } else { rejected += 1 }
                    }
                    if results.count < batch.count { rejected += batch.count - results.count }
                    if let firstRefused = results.firstIndex(where: { $0["id"] == nil }) {
                        // Later transactions chain on a refused one: re-sign from there.
                        seq -= UInt64(batch.count - firstRefused)
                        previous = firstRefused > 0 ? batch[firstRefused - 1].id : batch.first?.predecessors.first
                    }
                    sent += batch.count
                    if sent >= total, submittedAt == nil { submittedAt = Date() }
                }
                // Watch new committed blocks for our transactions.
                let height = Int(try client.call("getstatus")["committed_height"]?.numberValue ?? 0)
                while seenHeight < height {
                    seenHeight += 1
                    let block = try client.call("getblock", .object(["height": .int(seenHeight)]))
                    let now = Date()
                    for case .string(let id) in block["transactions"]?.arrayValue ?? [] {
                        if let at = submitted.removeValue(forKey: id) {
                            latencies.append(now.timeIntervalSince(at))
                            lastCommit = now
                        }
                    }
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            latencies.sort()
            func percentile(_ p: Double) -> Double {
                latencies.isEmpty ? .nan : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
            }
            let window = max(0.001, (lastCommit ?? start).timeIntervalSince(start))
            let throughput = Double(latencies.count) / window
            let submitSeconds = (submittedAt ?? Date()).timeIntervalSince(start)
            print(
                String(
                    format: "submitted %d in %.1f s (%.0f tx/s offered; the submitter shares the cores)", sent,
                    submitSeconds,
                    Double(sent) / max(0.001, submitSeconds)))
            print("committed \(latencies.count) of \(sent) (\(rejected) refused at submission)")
            print(String(format: "committed throughput  %8.1f tx/s", throughput))
            print(
                String(
                    format: "commit latency        p50 %.0f ms, p99 %.0f ms", percentile(0.5) * 1000,
                    percentile(0.99) * 1000))
            print(
                String(
                    format:
                        "bound                 %8.0f tx/s (Ed25519 verify %.0f/s × %d cores ÷ %d nodes); ratio %.2f",
                    bound, pureVerify, cores, nodes, throughput / bound))
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("\(error)")
        }
    }
}
