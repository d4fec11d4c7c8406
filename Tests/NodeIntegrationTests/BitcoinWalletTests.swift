import Bitcoin
import Checkpoint
import Esplora
import Foundation
import Node
import NodeCrypto
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs p2pnode subcommands to completion.
struct CLIRunner {
    let binary = try? LocalTestnet.findBinary()

    init() throws {
        guard binary != nil else { throw TestnetError("p2pnode binary not found; run `swift build --build-tests`") }
    }

    func cli(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString).out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        process.waitUntilExit()
        try handle.close()
        return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }
}

/// The offline regtest chain (tools/regtest/regtest.py): every block it mines is
/// validated by Bitcoin Core's engine through py-bitcoinkernel.
final class RegtestChain: @unchecked Sendable {
    let process = Process()
    let port: Int
    let client: EsploraClient
    let log: URL

    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    init(blockInterval: Double = 1) throws {
        port = TestPorts.single()
        let python = Self.repository.appendingPathComponent(".venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw TestnetError("no .venv: scripts/test.sh creates it (pip install -r tools/regtest/requirements.txt)")
        }
        process.executableURL = python
        process.arguments = [
            Self.repository.appendingPathComponent("tools/regtest/regtest.py").path, "--port", "\(port)",
            "--block-interval", "\(blockInterval)",
        ]
        log = FileManager.default.temporaryDirectory.appendingPathComponent("regtest-\(port).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        client = try EsploraClient("http://127.0.0.1:\(port)")
    }

    func waitReady() async throws {
        for _ in 0..<100 {
            // A server that could not start must not be mistaken for another test's.
            guard process.isRunning else { break }
            if let height = try? await client.tipHeight(), height >= 101 { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestnetError(
            "regtest chain did not start: \(String(decoding: (try? Data(contentsOf: log)) ?? Data(), as: UTF8.self))")
    }

    func faucet(_ address: String, sats: UInt64) async throws -> String {
        let body = try JSONSerialization.data(withJSONObject: ["address": address, "sats": sats])
        let data = try await client.request("regtest/faucet", method: "POST", body: body, retry: false)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try #require(object?["txid"] as? String)
    }

    /// Mines `blocks` blocks now.
    @discardableResult
    func mine(_ blocks: Int = 1) async throws -> Int {
        let body = try JSONSerialization.data(withJSONObject: ["blocks": blocks])
        let data = try await client.request("regtest/mine", method: "POST", body: body, retry: false)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try #require(object?["height"] as? Int)
    }

    /// Replaces the last `depth` blocks with a longer branch (Bitcoin Core's engine switches
    /// to it); `replace` puts a conflicting transaction (hex) in place of a txid.
    func reorg(depth: Int, replace: [String: String] = [:], drop: [String] = []) async throws -> [String] {
        let body = try JSONSerialization.data(withJSONObject: [
            "depth": depth, "replace": replace, "drop": drop,
        ])
        let data = try await client.request("regtest/reorg", method: "POST", body: body, retry: false)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try #require(object?["hashes"] as? [String])
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<50 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

@Suite("Bitcoin wallet on the offline regtest chain (blocks validated by Bitcoin Core)", .serialized)
struct BitcoinWalletTests {
    /// The server's refusal, or nil if the broadcast was accepted.
    func broadcastError(_ client: EsploraClient, _ hex: String) async -> String? {
        do {
            _ = try await client.broadcast(hex: hex)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test("faucet → dave; btc send dave → sammy confirms; balances add up; an unfunded sender fails cleanly")
    func sendBetweenWallets() async throws {
        let chain = try RegtestChain()
        defer { chain.stop() }
        try await chain.waitReady()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sidenode-btc-\(chain.port)")
        defer { try? FileManager.default.removeItem(at: root) }
        let net = try CLIRunner()
        let dave = root.appendingPathComponent("dave").path
        let sammy = root.appendingPathComponent("sammy").path
        for dir in [dave, sammy] { #expect(try net.cli(["init", "x", "--data-dir", dir]).status == 0) }
        let esplora = ["--network", "regtest", "--esplora", "http://127.0.0.1:\(chain.port)"]

        // Unfunded: exit status 2, a clear message, nothing broadcast.
        let unfunded = try net.cli(["btc", "send", "--from", dave, "--to", sammy, "--amount", "10000"] + esplora)
        #expect(unfunded.status == 2)
        #expect(unfunded.output.contains("has no coins") && unfunded.output.contains("nothing was sent"))

        let daveAddress = try #require(
            try net.cli(["btc", "address", dave] + esplora).output.split(separator: "\n").first)
        #expect(daveAddress.hasPrefix("bcrt1p"))
        _ = try await chain.faucet(String(daveAddress), sats: 200_000)

        let sent = try net.cli(["btc", "send", "--from", dave, "--to", sammy, "--amount", "50000", "--wait"] + esplora)
        #expect(sent.status == 0, "\(sent.output)")
        #expect(sent.output.contains("confirmed in block"))
        let txid = try #require(
            sent.output.split(separator: "\n").first { $0.hasPrefix("sent ") }?.split(separator: " ").last.map(
                String.init))
        // The block that holds it was accepted by Bitcoin Core's engine (the chain only
        // grows by blocks the kernel connected).
        let status = try await chain.client.status(txid: txid)
        #expect(status.confirmed)
        let blockTxids = try await chain.client.request("block/\(try #require(status.block_hash))/txids")
        #expect(String(decoding: blockTxids, as: UTF8.self).contains(txid))

        // Balances: sammy has the amount; dave the rest less the fee.
        let hex = try await chain.client.transactionHex(txid: txid)
        let tx = try BitcoinTransaction(hex: hex)
        let fee = 200_000 - tx.outputs.reduce(UInt64(0)) { $0 + $1.value }
        func balance(_ who: String) throws -> UInt64 {
            let out = try net.cli(["btc", "balance", who] + esplora).output
            let line = try #require(out.split(separator: "\n").first { $0.hasPrefix("confirmed") })
            return try #require(UInt64(line.split(separator: " ").dropFirst().first ?? ""))
        }
        #expect(try balance(sammy) == 50_000)
        #expect(try balance(dave) == 200_000 - 50_000 - fee)
        #expect(fee >= UInt64(tx.virtualSize), "at least 1 sat/vB")
        #expect(tx.inputs.allSatisfy { $0.sequence == TxIn.rbfSequence }, "RBF signalled")

        // Too much: exit 2, nothing broadcast.
        let tooMuch = try net.cli(["btc", "send", "--from", sammy, "--to", dave, "--amount", "60000"] + esplora)
        #expect(tooMuch.status == 2 && tooMuch.output.contains("insufficient funds"))
    }

    @Test("a transaction with a corrupted signature is refused with Bitcoin Core's reason")
    func corruptedSignature() async throws {
        let chain = try RegtestChain(blockInterval: 0.5)
        defer { chain.stop() }
        try await chain.waitReady()
        let key = Secp256k1.PrivateKey()
        let own = try TaprootOutput(internalKey: key.xOnlyPublicKey)
        let funding = try await chain.faucet(own.address(.regtest).description, sats: 100_000)
        for _ in 0..<50 {
            let status = try? await chain.client.status(txid: funding)
            if status?.confirmed == true { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let utxo = try #require(try await chain.client.utxos(address: own.address(.regtest).description).first)
        let coin = WalletCoin(
            outpoint: try OutPoint(displayTxid: utxo.txid, vout: utxo.vout), value: utxo.value, confirmed: true)
        let destination = Script.p2wpkh(Secp256k1.PrivateKey().publicKey)
        let plan = try WalletSpend.plan(
            coins: [coin], amount: 30_000, to: destination, change: own.scriptPubKey, feeRate: 2)
        var tx = try WalletSpend.sign(plan: plan, key: key, amount: 30_000, to: destination, lockTime: 0)
        var corrupted = tx
        corrupted.inputs[0].witness[0][10] ^= 0x01
        let refusal = await broadcastError(chain.client, corrupted.hex)
        #expect(refusal?.contains("HTTP 400") == true)
        #expect(refusal?.contains("Invalid Schnorr signature") == true, "\(refusal ?? "accepted")")
        // The same transaction correctly signed is accepted; spending the coin again is not.
        #expect(try await chain.client.broadcast(hex: tx.hex) == tx.displayTxid)
        tx.outputs[0].value -= 1
        #expect(await broadcastError(chain.client, tx.hex) != nil, "a conflicting spend with a lower fee")
    }

    @Test("the checkpoint coin: a 2-of-3 tr(NUMS, multi_a) script-path spend built by our PSBT code confirms")
    func multisigCoinSpend() async throws {
        let chain = try RegtestChain(blockInterval: 0.5)
        defer { chain.stop() }
        try await chain.waitReady()
        let keys = (0..<3).map { _ in Secp256k1.PrivateKey() }
        let leaf = TapLeaf(script: try Script.multiA(threshold: 2, keys: keys.map(\.xOnlyPublicKey.rawRepresentation)))
        let coin = try TaprootOutput(
            internalKey: try Secp256k1.XOnlyPublicKey(rawRepresentation: TaprootOutput.unspendableKey),
            tree: .leaf(leaf))
        let funding = try await chain.faucet(coin.address(.regtest).description, sats: 100_000)
        let fundingTx = try BitcoinTransaction(hex: try await chain.client.transactionHex(txid: funding))
        let vout = try #require(fundingTx.outputs.firstIndex { $0.scriptPubKey == coin.scriptPubKey })
        var psbt = PSBT(
            unsignedTx: BitcoinTransaction(
                inputs: [TxIn(previousOutput: OutPoint(txid: fundingTx.txid, vout: UInt32(vout)))],
                outputs: [
                    TxOut(value: 99_000, scriptPubKey: coin.scriptPubKey),
                    TxOut(value: 0, scriptPubKey: .opReturn(Array("SNCP".utf8) + [UInt8](repeating: 5, count: 49))),
                ]))
        psbt.inputs[0].witnessUtxo = fundingTx.outputs[vout]
        psbt.inputs[0].tapInternalKey = TaprootOutput.unspendableKey
        psbt.inputs[0].tapMerkleRoot = coin.merkleRoot
        psbt.inputs[0].tapLeafScripts[try #require(coin.controlBlock(for: leaf))] = leaf.script.bytes + [leaf.version]
        var validated = try psbt.validated()
        try validated.sign(with: keys[0])
        try validated.sign(with: keys[2])
        try validated.finalize()
        let tx = try validated.extract()
        // Spending an unconfirmed parent is fine for the mempool; Core validates both in the block.
        #expect(try await chain.client.broadcast(hex: tx.hex) == tx.displayTxid)
        var confirmed = false
        for _ in 0..<50 {
            if (try? await chain.client.status(txid: tx.displayTxid))?.confirmed == true {
                confirmed = true
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(confirmed, "the block with the multisig spend was accepted by Bitcoin Core")
        let spent = try await chain.client.outspend(txid: fundingTx.displayTxid, vout: UInt32(vout))
        #expect(spent.spent && spent.txid == tx.displayTxid)
    }

    @Test(
        "checkpoint fund writes the coin into the genesis; checkpoint verify accepts the chain and rejects a tampered genesis"
    )
    func checkpointFundAndVerify() async throws {
        let chain = try RegtestChain(blockInterval: 0.5)
        defer { chain.stop() }
        try await chain.waitReady()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sidenode-cp-\(chain.port)")
        defer { try? FileManager.default.removeItem(at: root) }
        let net = try CLIRunner()
        let esplora = ["--network", "regtest", "--esplora", "http://127.0.0.1:\(chain.port)"]
        var lines: [String] = []
        var bitcoinKeys: [Secp256k1.PrivateKey] = []
        for i in 0..<4 {
            let dir = root.appendingPathComponent("v\(i)")
            #expect(try net.cli(["init", "v\(i)", "--data-dir", dir.path]).status == 0)
            let keys = try KeyStore(directory: dir).load()
            bitcoinKeys.append(keys.bitcoin)
            lines.append("\(keys.nodeID) \(keys.bitcoin.xOnlyPublicKey.hex)")
        }
        try lines.joined(separator: "\n").write(
            to: root.appendingPathComponent("validators.txt"), atomically: true, encoding: .utf8)
        let genesis = root.appendingPathComponent("genesis.json").path
        #expect(
            try net.cli([
                "genesis", "--validators", root.appendingPathComponent("validators.txt").path, "--out", genesis,
            ]).status == 0)
        let dave = root.appendingPathComponent("dave").path
        #expect(try net.cli(["init", "dave", "--data-dir", dave]).status == 0)
        let daveAddress = try #require(
            try net.cli(["btc", "address", dave] + esplora).output.split(separator: "\n").first)
        _ = try await chain.faucet(String(daveAddress), sats: 500_000)

        let funded = try net.cli(
            ["checkpoint", "fund", "--genesis", genesis, "--from", dave, "--amount", "100000", "--write", "--wait"]
                + esplora)
        #expect(funded.status == 0, "\(funded.output)")
        let file = try Genesis.load(Data(contentsOf: URL(fileURLWithPath: genesis)), source: genesis)
        let (txid, vout) = try #require(file.checkpoint.coinOutpoint)
        #expect(file.checkpoint.coin_value == 100_000)

        // Two checkpoints by three of the four validators (the node will do this; here by hand).
        // The genesis's coin: `p2pnode genesis` gives it a recovery leaf (2016 blocks) by default.
        let coin = try file.firstCheckpointCoin()
        #expect(coin.recovery?.blocks == 2_016 && coin.keys.count == bitcoinKeys.count)
        var outpoint = try OutPoint(displayTxid: txid, vout: vout)
        var value: UInt64 = 100_000
        for round in [UInt64(7), 12] {
            let payload = try CheckpointPayload(
                epoch: 1, round: round, commitStateID: [UInt8](repeating: UInt8(round), count: 32))
            var psbt = try CheckpointTransaction.psbt(
                spending: outpoint, value: value, of: coin, to: coin, payload: payload, fee: 400
            ).validated()
            for key in bitcoinKeys.prefix(3) { try psbt.sign(with: key) }
            try psbt.finalize()
            let tx = try psbt.extract()
            #expect(try await chain.client.broadcast(hex: tx.hex) == tx.displayTxid)
            outpoint = OutPoint(txid: tx.txid, vout: 0)
            value -= 400
        }
        try await Task.sleep(for: .seconds(1.5))
        let verified = try net.cli(["checkpoint", "verify", "--genesis", genesis] + esplora)
        #expect(verified.status == 0, "\(verified.output)")
        #expect(verified.output.contains("2 checkpoints verified"))
        #expect(verified.output.contains(String(repeating: "0c", count: 32)), "round 12's state id in the table")

        // A genesis that names another coin value, or other validators, does not match.
        var tampered = file
        tampered.checkpoint.coin_value = 99_999
        let tamperedPath = root.appendingPathComponent("tampered.json").path
        try JSONEncoder().encode(tampered).write(to: URL(fileURLWithPath: tamperedPath))
        let refused = try net.cli(["checkpoint", "verify", "--genesis", tamperedPath] + esplora)
        #expect(refused.status == 1 && refused.output.contains("does not match"), "\(refused.output)")
        var otherKeys = file
        otherKeys.validators[0].bitcoin_xonly = Secp256k1.PrivateKey().xOnlyPublicKey.hex
        try JSONEncoder().encode(otherKeys).write(to: URL(fileURLWithPath: tamperedPath))
        #expect(try net.cli(["checkpoint", "verify", "--genesis", tamperedPath] + esplora).status == 1)
    }
}
