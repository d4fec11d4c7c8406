import Bitcoin
import Checkpoint
import Esplora
import Foundation
import Node
import NodeCrypto
import Testing

/// Issue 15 §6–7 on the offline regtest chain, where Bitcoin Core's engine judges every
/// spend: the weighted coin moves by power, not by key count, and the recovery leaf opens
/// exactly at its relative timelock, through `p2pnode checkpoint recover`.
@Suite("Checkpoint coins on Bitcoin: weighted leaf, recovery leaf", .serialized)
struct CheckpointCoinTests {
    /// Pays `sats` to `script` from the faucet and mines it; returns the outpoint.
    func fund(_ chain: RegtestChain, _ script: Script, sats: UInt64) async throws -> OutPoint {
        let address = try #require(SegwitAddress(scriptPubKey: script, network: .regtest)).description
        let txid = try await chain.faucet(address, sats: sats)
        try await chain.mine()
        let tx = try BitcoinTransaction(hex: try await chain.client.transactionHex(txid: txid))
        let vout = try #require(tx.outputs.firstIndex { $0.scriptPubKey == script })
        return try OutPoint(displayTxid: txid, vout: UInt32(vout))
    }

    func refusal(_ chain: RegtestChain, _ tx: BitcoinTransaction) async -> String? {
        do {
            _ = try await chain.client.broadcast(hex: tx.hex)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test("a weighted coin (powers 10,1,1,1): the heavy key alone moves it; the three light keys cannot")
    func weightedCoin() async throws {
        let chain = try RegtestChain(blockInterval: 0)
        defer { chain.stop() }
        try await chain.waitReady()
        let keys = (0..<4).map { _ in Secp256k1.PrivateKey() }
        let powers: [UInt64] = [10, 1, 1, 1]
        let coin = try CheckpointCoin(
            validators: zip(keys, powers).map { ($0.xOnlyPublicKey.rawRepresentation, $1) })
        let payload = try CheckpointPayload(epoch: 1, round: 5, commitStateID: [UInt8](repeating: 9, count: 32))
        let vsize = CheckpointTransaction.virtualSize(current: coin, next: coin)

        // The heavy key: the finalized checkpoint is valid for Bitcoin Core and mined.
        let first = try await fund(chain, coin.scriptPubKey, sats: 100_000)
        var heavy = try CheckpointTransaction.psbt(
            spending: first, value: 100_000, of: coin, to: coin, payload: payload, fee: UInt64(2 * vsize)
        ).validated()
        try heavy.sign(with: keys[0])
        try heavy.finalize()
        let spend = try heavy.extract()
        #expect(await refusal(chain, spend) == nil)
        try await chain.mine()
        #expect(try await chain.client.status(txid: spend.displayTxid).confirmed)
        #expect(spend.virtualSize <= vsize, "the fee covered the worst case")

        // Three light keys: 3 of 4 keys but 3 of 13 power. Our finalizer refuses; a witness
        // built by hand with their signatures is refused by Bitcoin Core too.
        let second = try await fund(chain, coin.scriptPubKey, sats: 100_000)
        var light = try CheckpointTransaction.psbt(
            spending: second, value: 100_000, of: coin, to: coin, payload: payload, fee: UInt64(2 * vsize)
        ).validated()
        for key in keys.dropFirst() { try light.sign(with: key) }
        #expect(throws: PSBTError.self) {
            var attempt = light
            try attempt.finalize()
        }
        let leafHash = coin.leaf.hash
        var forced = light.psbt.unsignedTx
        forced.inputs[0].witness =
            coin.keys.map { light.psbt.inputs[0].tapScriptSigs[$0 + leafHash] ?? [] }.reversed()
            + [coin.leaf.script.bytes, coin.controlBlock]
        let refused = await refusal(chain, forced)
        #expect(refused != nil, "Bitcoin Core accepted 3 of 13 power")
    }

    @Test(
        "checkpoint recover: two of four operators move the coin after the timelock; refused one block early; verify reports it"
    )
    func recoverAfterTimelock() async throws {
        let chain = try RegtestChain(blockInterval: 0)
        defer { chain.stop() }
        try await chain.waitReady()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sidenode-recover-\(chain.port)")
        defer { try? FileManager.default.removeItem(at: root) }
        let cli = try CLIRunner()
        let flags = ["--network", "regtest", "--esplora", "http://127.0.0.1:\(chain.port)"]
        var entries: [Genesis.ValidatorEntry] = []
        for i in 0..<4 {
            let dir = root.appendingPathComponent("v\(i)").path
            #expect(try cli.cli(["init", "v\(i)", "--data-dir", dir]).status == 0)
            let keys = try KeyStore(directory: URL(fileURLWithPath: dir)).load()
            entries.append(.init(node_id: keys.nodeID, power: 1, bitcoin_xonly: keys.bitcoin.xOnlyPublicKey.hex))
        }
        let recoveryBlocks: UInt32 = 5
        var genesis = Genesis(
            chainID: "recover", genesisTime: 0, epochLength: 100, validators: entries, balances: [:])
        genesis.checkpoint.recovery_blocks = recoveryBlocks
        let genesisPath = root.appendingPathComponent("genesis.json").path
        try JSONEncoder().encode(genesis).write(to: URL(fileURLWithPath: genesisPath))
        let address = try #require(
            try cli.cli(["checkpoint", "address", "--genesis", genesisPath] + flags).output
                .split(separator: "\n").first)
        let described = try cli.cli(["checkpoint", "address", "--genesis", genesisPath] + flags).output
        #expect(described.contains("and_v(v:older(5),multi_a(2,"), "\(described)")

        // Fund the coin (the funder's wallet from the faucet), written into the genesis.
        let funder = root.appendingPathComponent("funder").path
        #expect(try cli.cli(["init", "funder", "--data-dir", funder]).status == 0)
        let funderAddress = try #require(
            try cli.cli(["btc", "address", funder] + flags).output.split(separator: "\n").first)
        _ = try await chain.faucet(String(funderAddress), sats: 500_000)
        try await chain.mine()
        let funded = try cli.cli(
            ["checkpoint", "fund", "--genesis", genesisPath, "--from", funder, "--amount", "200000", "--write"]
                + flags)
        #expect(funded.status == 0, "\(funded.output)")
        let fundedAt = try await chain.mine()
        #expect(funded.output.contains(String(address)))

        // Operators 0 and 3 sign; the spend may enter block fundedAt + 5 at the earliest.
        let destination = try #require(
            try cli.cli(["btc", "address", funder] + flags).output.split(separator: "\n").first)
        let started = try cli.cli(
            [
                "checkpoint", "recover", "--genesis", genesisPath, "--key", root.appendingPathComponent("v0").path,
                "--to", String(destination),
            ] + flags)
        #expect(started.status == 0, "\(started.output)")
        let psbt = try #require(
            started.output.split(separator: "\n").first { $0.hasPrefix("psbt: ") }.map { String($0.dropFirst(6)) })
        #expect(started.output.contains("weight 1 of the 2 needed"))
        func second() throws -> (status: Int32, output: String) {
            try cli.cli(
                [
                    "checkpoint", "recover", "--genesis", genesisPath, "--key", root.appendingPathComponent("v3").path,
                    "--to", String(destination), "--psbt", psbt, "--broadcast",
                ] + flags)
        }
        // A PSBT paying elsewhere (operator 0's own address): operator 3, who agreed on
        // the funder's address, does not sign it.
        let elsewhere = try #require(
            try cli.cli(["btc", "address", root.appendingPathComponent("v0").path] + flags).output
                .split(separator: "\n").first)
        let sneaky = try cli.cli(
            [
                "checkpoint", "recover", "--genesis", genesisPath, "--key", root.appendingPathComponent("v0").path,
                "--to", String(elsewhere),
            ] + flags)
        let sneakyPSBT = try #require(
            sneaky.output.split(separator: "\n").first { $0.hasPrefix("psbt: ") }.map { String($0.dropFirst(6)) })
        let refused = try cli.cli(
            [
                "checkpoint", "recover", "--genesis", genesisPath, "--key", root.appendingPathComponent("v3").path,
                "--to", String(destination), "--psbt", sneakyPSBT,
            ] + flags)
        #expect(refused.status != 0 && refused.output.contains("not signed"), "\(refused.output)")
        // Tip fundedAt + 3: the next block is 4 past the coin's block (one early).
        try await chain.mine(3)
        let early = try second()
        #expect(early.status != 0 && early.output.contains("non-BIP68-final"), "\(early.output)")
        try await chain.mine()
        let onTime = try second()
        #expect(onTime.status == 0, "\(onTime.output)")
        try await chain.mine()
        let txid = try #require(
            onTime.output.split(separator: "\n").first { $0.hasPrefix("broadcast ") }.map { String($0.dropFirst(10)) })
        #expect(try await chain.client.status(txid: txid).confirmed)
        _ = fundedAt

        // The light client reports the recovery spend (and so does a follower's alarm).
        let verified = try cli.cli(["checkpoint", "verify", "--genesis", genesisPath] + flags)
        #expect(verified.output.contains("RECOVERY: \(txid)"), "\(verified.output)")
    }
}
