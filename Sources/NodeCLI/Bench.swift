import ArgumentParser
import Bitcoin
import Checkpoint
import Contracts
import Foundation
import Node
import NodeCrypto

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure this machine's bounds (run a release build: swift run -c release).",
        subcommands: [
            CryptoBench.self, TransportBench.self, LedgerBench.self, CatchUpBench.self, CheckpointBench.self,
            StateBench.self, ContractsBench.self,
        ]
    )
}

struct CryptoBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crypto",
        abstract: "Ed25519 and BIP340 verifications per second, ChaCha20-Poly1305 and hash throughput.",
        discussion: "Single-threaded figures; later throughput goals are stated as ratios to these."
    )

    @Option(help: "Seconds to spend on each measurement.")
    var seconds: Double = 1.0

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
    }

    func run() async throws {
        let results = CryptoBenchmarks.run(secondsEach: seconds)
        if json {
            let data = try JSONSerialization.data(
                withJSONObject: Dictionary(uniqueKeysWithValues: results.map { ($0.key, $0.value) }),
                options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        #if DEBUG
            print("warning: debug build; figures are not representative (use swift run -c release)")
        #endif
        print("cores: \(ProcessInfo.processInfo.activeProcessorCount), figures are per core")
        for result in results {
            print(result.label.padding(toLength: 40, withPad: " ", startingAt: 0) + result.formatted)
        }
    }
}

struct BenchResult {
    let key: String
    let label: String
    let value: Double
    let unit: String
    var formatted: String { String(format: "%12.1f %@", value, unit) }
}

/// The measurements themselves, reusable by later benchmarks that report ratios.
enum CryptoBenchmarks {
    static func run(secondsEach: Double) -> [BenchResult] {
        var results: [BenchResult] = []

        let edKey = Ed25519.PrivateKey()
        let message = SecureRandom.bytes(200)
        let edSig = edKey.signature(for: message)
        let edVerify = Measure.rate(seconds: secondsEach) {
            precondition(edKey.publicKey.isValidSignature(edSig, for: message))
        }
        results.append(BenchResult(key: "ed25519_verify_per_s", label: "Ed25519 verify", value: edVerify, unit: "/s"))
        let edSign = Measure.rate(seconds: secondsEach) { _ = edKey.signature(for: message) }
        results.append(BenchResult(key: "ed25519_sign_per_s", label: "Ed25519 sign", value: edSign, unit: "/s"))

        let btcKey = Secp256k1.PrivateKey()
        let digest = SHA256.hash(message)
        let schnorr = try! btcKey.schnorrSignature(for: digest)
        let xonly = btcKey.xOnlyPublicKey
        let bip340 = Measure.rate(seconds: secondsEach) {
            precondition(xonly.isValidSchnorrSignature(schnorr, for: digest))
        }
        results.append(BenchResult(key: "bip340_verify_per_s", label: "BIP340 verify", value: bip340, unit: "/s"))
        let ecdsa = try! btcKey.ecdsaSignature(forDigest: digest)
        let pub = btcKey.publicKey
        let ecdsaRate = Measure.rate(seconds: secondsEach) {
            precondition(pub.isValidECDSASignature(ecdsa, forDigest: digest))
        }
        results.append(BenchResult(key: "ecdsa_verify_per_s", label: "ECDSA verify", value: ecdsaRate, unit: "/s"))

        // 64 KiB records: the largest Noise transport message, so the AEAD's per-call
        // overhead is amortised as it would be in bulk gossip.
        let key = ChaChaPoly.Key.random()
        let nonce = ChaChaPoly.Nonce(noiseCounter: 1)
        let block = SecureRandom.bytes(65_519)
        let sealRate = Measure.rate(seconds: secondsEach) { _ = ChaChaPoly.seal(block, key: key, nonce: nonce) }
        results.append(
            BenchResult(
                key: "chachapoly_seal_mb_per_s", label: "ChaCha20-Poly1305 seal (64 KiB)",
                value: sealRate * Double(block.count) / 1_000_000, unit: "MB/s"))
        let sealed = ChaChaPoly.seal(block, key: key, nonce: nonce)
        let openRate = Measure.rate(seconds: secondsEach) { _ = try! ChaChaPoly.open(sealed, key: key, nonce: nonce) }
        results.append(
            BenchResult(
                key: "chachapoly_open_mb_per_s", label: "ChaCha20-Poly1305 open (64 KiB)",
                value: openRate * Double(block.count) / 1_000_000, unit: "MB/s"))

        let blakeRate = Measure.rate(seconds: secondsEach) { _ = BLAKE2b.hash256(block) }
        results.append(
            BenchResult(
                key: "blake2b_mb_per_s", label: "BLAKE2b (64 KiB)", value: blakeRate * Double(block.count) / 1_000_000,
                unit: "MB/s"))
        let shaRate = Measure.rate(seconds: secondsEach) { _ = SHA256.hash(block) }
        results.append(
            BenchResult(
                key: "sha256_mb_per_s", label: "SHA-256 (64 KiB)", value: shaRate * Double(block.count) / 1_000_000,
                unit: "MB/s"))
        return results
    }
}

struct TransportBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport",
        abstract: "Encrypted stream throughput over loopback TCP next to raw ChaCha20-Poly1305, and handshakes/s.",
        discussion: "The goal is a stream at ≥ 70 % of one core's raw AEAD rate."
    )

    @Option(help: "Seconds to spend on each measurement.")
    var seconds: Double = 3

    @Option(name: .customLong("message-size"), help: "Application message size in bytes.")
    var messageSize: Int = 1 << 20

    func validate() throws {
        guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
        guard messageSize > 0, messageSize <= 4 << 20 else { throw ValidationError("--message-size must be 1…4 MiB") }
    }

    func run() async throws {
        #if DEBUG
            print("warning: debug build; figures are not representative (use swift run -c release)")
        #endif
        let r = try await TransportBenchmark.run(seconds: seconds, messageBytes: messageSize)
        print(
            "raw ChaCha20-Poly1305 seal, 65519-byte frames  \(String(format: "%8.1f", r.rawSealMBps)) MB/s (one core)")
        print(
            "raw ChaCha20-Poly1305 open, 65519-byte frames  \(String(format: "%8.1f", r.rawOpenMBps)) MB/s (one core)")
        print(
            "encrypted stream, \(r.messageBytes)-byte messages, loopback TCP  \(String(format: "%8.1f", r.streamMBps)) MB/s"
                + "  = \(String(format: "%.0f", 100 * r.streamMBps / min(r.rawSealMBps, r.rawOpenMBps))) % of raw")
        // Where the rest goes: both ends share this machine, so each byte is sealed and
        // opened here, and the kernel copies it through loopback TCP twice.
        let aeadCores = r.streamMBps / r.rawSealMBps + r.streamMBps / r.rawOpenMBps
        print(
            String(
                format:
                    "  the stream used %.2f of %d cores: %.2f sealing and opening at the raw rates, %.2f the rest (kernel TCP both ways, NIO, framing)",
                r.streamCores, ProcessInfo.processInfo.activeProcessorCount, aeadCores, r.streamCores - aeadCores))
        print(
            "Noise XX handshakes with identity binding (both ends, one core)  \(String(format: "%8.0f", r.handshakesPerSecond)) /s"
        )
    }
}

struct LedgerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Signed transactions verified and inserted per second, next to Ed25519 verify/s.",
        discussion: "The goal is ≥ 0.8 × the single-core Ed25519 verification rate."
    )

    @Option(help: "Number of transactions.")
    var transactions: Int = 20_000

    func validate() throws {
        guard transactions >= 100, transactions <= 1_000_000 else {
            throw ValidationError("--transactions must be 100…1000000")
        }
    }

    func run() async throws {
        #if DEBUG
            print("warning: debug build; figures are not representative (use swift run -c release)")
        #endif
        let r = try LedgerBenchmark.run(transactions: transactions, directory: FileManager.default.temporaryDirectory)
        func line(_ label: String, _ value: Double) {
            print(
                label.padding(toLength: 52, withPad: " ", startingAt: 0) + String(format: "%10.0f /s", value)
                    + String(format: "  (%.2f × verify)", value / r.ed25519VerifyPerSecond))
        }
        print("transactions: \(r.transactions), one core")
        line("Ed25519 verify (the bound)", r.ed25519VerifyPerSecond)
        line("decode + verify + insert into the DAG", r.insertPerSecond)
        line("… + SQLite store (WAL, fsync per 100)", r.insertAndStorePerSecond)
        line("execute in blocks of 300 (with each block's root)", r.executePerSecond)
    }
}

struct CatchUpBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catchup",
        abstract: "Catch-up speed (verify and execute served ranges) next to plain execution, from a node's store.",
        discussion: """
            Reads DIR/consensus.sqlite of a node that has committed blocks (e.g. testnet/node0 after \
            scripts/load.sh) and replays the chain from genesis as a node that is behind would. One core; \
            the network is left out.
            """
    )

    @Option(name: .customLong("data-dir"), help: "Data directory of a node with committed blocks.")
    var dataDir: String

    @Option(help: "The chain's genesis file.")
    var genesis: String

    func run() async throws {
        #if DEBUG
            print("warning: debug build; figures are not representative (use swift run -c release)")
        #endif
        let r: CatchUpBenchmark.Result
        do {
            let g = try Genesis.load(try Data(contentsOf: URL(fileURLWithPath: genesis)), source: genesis)
            r = try CatchUpBenchmark.run(
                store: URL(fileURLWithPath: dataDir).appendingPathComponent("consensus.sqlite").path, genesis: g)
        } catch {
            throw CLIError("\(error)")
        }
        func rates(_ seconds: Double) -> String {
            String(
                format: "%9.0f blocks/s %9.0f tx/s", Double(r.blocks) / max(seconds, 1e-9),
                Double(r.transactions) / max(seconds, 1e-9))
        }
        print("chain: \(r.blocks) blocks, \(r.transactions) transactions; one core")
        print("catch-up (verify ranges + every signature + execute)  " + rates(r.catchUpSeconds))
        print("execution alone (signatures already checked)          " + rates(r.executeSeconds))
        print(String(format: "Ed25519 verify (the bound for catch-up tx/s)         %9.0f /s", r.ed25519VerifyPerSecond))
    }
}

struct CheckpointBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract:
            "Checkpoint transaction sizes and fees by validator count: multi_a (equal powers), weighted (unequal), each with and without the recovery leaf."
    )

    @Option(help: "Validator counts.") var validators: [Int] = [4, 7, 20, 50]
    @Option(name: .customLong("recovery-blocks"), help: "The recovery leaf's timelock.") var recoveryBlocks: UInt32 =
        2_016

    func run() async throws {
        print("multi_a = equal powers (k = ⌊2n/3⌋+1 signatures, the size optimum for k of n Schnorr keys);")
        print("weighted = powers 1…n (each signer adds its power; the fee covers the most signatures it may take);")
        print("+recovery = a second leaf, its 32-byte branch hash in every control block.")
        print("    n    k  multi_a  +recovery  weighted  +recovery   fee @2 sat/vB (multi_a+recovery)")
        for n in validators {
            let keys = (0..<n).map { _ in Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation }
            func size(_ coin: CheckpointCoin) -> Int { CheckpointTransaction.virtualSize(current: coin, next: coin) }
            let plain = try CheckpointCoin(keys: keys)
            let recovering = try CheckpointCoin(keys: keys, recoveryBlocks: recoveryBlocks)
            let powers = keys.enumerated().map { ($0.element, UInt64($0.offset + 1)) }
            let weighted = try CheckpointCoin(validators: powers)
            let weightedRecovering = try CheckpointCoin(validators: powers, recoveryBlocks: recoveryBlocks)
            print(
                String(
                    format: "%5d %4d %5d vB %7d vB %6d vB %7d vB %10d sats", n, plain.threshold, size(plain),
                    size(recovering), size(weighted), size(weightedRecovering), 2 * size(recovering)))
        }
    }
}

struct StateBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract:
            "The state root's cost per block: the sparse Merkle tree's update of the changed keys beside a full recompute.",
        discussion: """
            For each state size: build a tree of that many accounts, then time blocks that change \
            --changed random accounts (the incremental root) and the full recompute the ledger did \
            before the tree (sort and hash every account), in one run, on one core. The bound is the \
            raw BLAKE2b-256 rate: an update rehashes about changed × log2(n) nodes.
            """
    )

    @Option(help: "State sizes (accounts).") var accounts: [Int] = [10_000, 100_000, 1_000_000]
    @Option(help: "Changed accounts per block.") var changed: Int = 1_000
    @Option(help: "Blocks timed per size (incremental).") var blocks: Int = 20
    @Option(name: .customLong("full-blocks"), help: "Blocks timed per size (full recompute).") var fullBlocks: Int = 2

    func validate() throws {
        guard accounts.allSatisfy({ (1...5_000_000).contains($0) }) else {
            throw ValidationError("--accounts must be 1…5000000")
        }
        guard (1...1_000_000).contains(changed), (1...10_000).contains(blocks), (1...100).contains(fullBlocks) else {
            throw ValidationError("--changed 1…1000000, --blocks 1…10000, --full-blocks 1…100")
        }
    }

    func run() async throws {
        #if DEBUG
            print("warning: debug build; figures are not representative (use swift run -c release)")
        #endif
        let r = try StateBenchmark.run(
            sizes: accounts, changed: changed, blocks: blocks, fullBlocks: fullBlocks,
            storeIn: FileManager.default.temporaryDirectory,
            progress: { FileHandle.standardError.write(Data("… \($0)\n".utf8)) })
        print(String(format: "BLAKE2b-256 of 65 bytes (the bound): %.0f hashes/s, one core", r.hashesPerSecond))
        print("changed accounts per block: \(r.changedPerBlock)")
        print(
            "  accounts  depth   build s   tree update ms/block changed×depth hashes, ms   full recompute ms/block   ratio"
        )
        for row in r.rows {
            let bound = Double(r.changedPerBlock) * row.meanDepth / r.hashesPerSecond * 1_000
            print(
                String(
                    format: "%10d %6.1f %9.2f %22.2f %33.2f %25.1f %7.0f×", row.accounts, row.meanDepth,
                    row.buildSeconds, row.incrementalSeconds * 1_000, bound, row.fullSeconds * 1_000,
                    row.fullSeconds / row.incrementalSeconds))
        }
        print("whole tree to SQLite (a snapshot install) and back (a restart's load, every hash checked):")
        for row in r.rows {
            guard let store = row.storeSeconds, let load = row.loadSeconds else { continue }
            print(
                String(
                    format: "%10d accounts  %9d nodes  write %6.2f s  load %6.2f s", row.accounts, row.storedNodes,
                    store,
                    load))
        }
    }
}

struct ContractsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contracts",
        abstract: "A warm CW20 transfer (latency, gas/s) beside a pure-Wasm loop and an empty host call.",
        discussion: "Needs the example contracts: scripts/build-contracts.sh writes them to .build/contracts/."
    )

    @Option(help: "The CW20 contract to run.")
    var cw20 = ".build/contracts/cw20.wasm"

    @Option(help: "Transfers to time.")
    var transfers = 2_000

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: cw20) else {
            throw CLIError("cannot read \(cw20): build the example contracts with scripts/build-contracts.sh")
        }
        #if DEBUG
            print("warning: debug build; figures are not representative (use swift run -c release)")
        #endif
        let figures = try ContractBenchmark.run(cw20: Array(data), transfers: max(100, transfers))
        for f in figures {
            print(
                f.label.padding(toLength: 46, withPad: " ", startingAt: 0)
                    + String(format: "%14.3f %@", f.value, f.unit))
        }
    }
}
