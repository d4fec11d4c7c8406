import ArgumentParser
import Foundation
import Ledger
import Node
import NodeCrypto
import TestSupport
import Testing

@testable import NodeCLI

/// `validator show FILE` is what an operator reads before `validator approve FILE`: it must
/// decode exactly what would be signed and refuse approvals that do not verify.
@Suite("p2pnode validator show")
struct ValidatorShowTests {
    let alice = Ed25519.PrivateKey()
    let erin = Ed25519.PrivateKey()
    let erinBitcoin = Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation

    var change: ValidatorChange {
        ValidatorChange(epoch: 3, validator: erin.publicKey, operation: .add(power: 2, bitcoinKey: erinBitcoin))
    }

    func files(
        approvals: [ValidatorChange.Approval], change hex: String? = nil
    ) throws -> (dir: URL, file: String, genesis: String) {
        let dir = try makeTemporaryDirectory()
        let genesis = Genesis(
            chainID: "show-test", genesisTime: 0, epochLength: 100,
            validators: [
                .init(
                    node_id: alice.publicKey.rawRepresentation.hex, power: 1,
                    bitcoin_xonly: Secp256k1.PrivateKey().xOnlyPublicKey.rawRepresentation.hex)
            ], balances: [:])
        let genesisPath = dir.appendingPathComponent("genesis.json").path
        try JSONEncoder().encode(genesis).write(to: URL(fileURLWithPath: genesisPath))
        let proposal = ValidatorCommand.Proposal(
            change: hex ?? change.encoded.hex,
            approvals: approvals.map {
                ["validator": $0.validator.rawRepresentation.hex, "signature": $0.signature.rawRepresentation.hex]
            })
        let file = dir.appendingPathComponent("change.json").path
        try proposal.save(file)
        return (dir, file, genesisPath)
    }

    func show(_ arguments: [String]) async throws {
        let command = try #require(
            try P2PNode.parseAsRoot(["validator", "show"] + arguments) as? ValidatorCommand.Show)
        try await command.run()
    }

    @Test func summaryNamesWhatIsApproved() {
        #expect(
            change.summary
                == "epoch 3: ADD validator \(erin.publicKey.rawRepresentation.hex) with power 2, Bitcoin key \(erinBitcoin.hex)"
        )
        let remove = ValidatorChange(epoch: 4, validator: erin.publicKey, operation: .remove)
        #expect(remove.summary == "epoch 4: REMOVE validator \(erin.publicKey.rawRepresentation.hex)")
    }

    @Test func goodApprovalsPassOffline() async throws {
        let (dir, file, genesis) = try files(approvals: [change.approve(chainID: "show-test", key: alice)])
        defer { try? FileManager.default.removeItem(at: dir) }
        try await show([file, "--genesis", genesis])
    }

    @Test func anApprovalForAnotherChainOrChangeFails() async throws {
        let otherChain = change.approve(chainID: "another-chain", key: alice)
        let otherChange = ValidatorChange(epoch: 3, validator: erin.publicKey, operation: .remove)
            .approve(chainID: "show-test", key: alice)
        for approval in [otherChain, otherChange] {
            let (dir, file, genesis) = try files(approvals: [approval])
            defer { try? FileManager.default.removeItem(at: dir) }
            await #expect(throws: ExitCode(1)) { try await show([file, "--genesis", genesis]) }
        }
        #expect(ValidatorChange.Approval(validatorHex: "zz", signatureHex: "00") == nil)
    }

    /// What the chain would refuse is refused here too, whatever the file's text looks like.
    @Test func duplicateAndDisguisedApproversFail() async throws {
        let good = change.approve(chainID: "show-test", key: alice)
        let hex = alice.publicKey.rawRepresentation.hex
        let cases: [[[String: String]]] = [
            // the same key twice, once in upper case (the chain reads both as one validator)
            [
                ["validator": hex, "signature": good.signature.rawRepresentation.hex],
                ["validator": hex.uppercased(), "signature": good.signature.rawRepresentation.hex],
            ],
            // a terminal escape in place of a key
            [["validator": "\u{1b}[3A\u{1b}[2K" + hex, "signature": good.signature.rawRepresentation.hex]],
        ]
        for approvals in cases {
            let (dir, file, genesis) = try files(approvals: [])
            defer { try? FileManager.default.removeItem(at: dir) }
            try ValidatorCommand.Proposal(change: change.encoded.hex, approvals: approvals).save(file)
            await #expect(throws: ExitCode(1)) { try await show([file, "--genesis", genesis]) }
        }
        #expect("a\u{1b}[2Kb\u{9b}c\n".escapingControlCharacters == "a\\u{1b}[2Kb\\u{9b}c\\u{a}")
    }

    /// Against a node's epoch: only verified approvals by members count, duplicates and
    /// outsiders are flagged, and nothing from the file's text reaches the terminal.
    @Test func theReportAgainstAnEpoch() {
        let bob = Ed25519.PrivateKey()
        let outsider = Ed25519.PrivateKey()
        let epoch = ValidatorCommand.EpochView(
            epoch: 3,
            powers: [alice.publicKey.rawRepresentation.hex: 2, bob.publicKey.rawRepresentation.hex: 5],
            quorum: 5, total: 7)
        func entry(_ a: ValidatorChange.Approval, validator: String? = nil) -> [String: String] {
            [
                "validator": validator ?? a.validator.rawRepresentation.hex,
                "signature": a.signature.rawRepresentation.hex,
            ]
        }
        let good = change.approve(chainID: "show-test", key: alice)
        let badBob = change.approve(chainID: "other", key: bob)
        let proposal = ValidatorCommand.Proposal(
            change: change.encoded.hex,
            approvals: [
                entry(good), entry(good, validator: good.validator.rawRepresentation.hex.uppercased()), entry(badBob),
                entry(change.approve(chainID: "show-test", key: outsider)),
                ["validator": "\u{1b}[2K" + good.validator.rawRepresentation.hex, "signature": "00"],
            ])
        let (lines, problems) = ValidatorCommand.report(proposal, change: change, chainID: "show-test", epoch: epoch)
        #expect(problems == 4)
        #expect(lines.contains { $0.hasSuffix("TWICE: the chain refuses the file") })
        #expect(lines.contains { $0.contains("SIGNATURE BAD; validator, power 5") })
        #expect(lines.contains { $0.hasSuffix("signature good; NOT a validator of this epoch") })
        #expect(lines.contains("approval with a malformed key or signature: the chain refuses the file"))
        #expect(lines.last == "approvals with good signatures carry power 2; 5 needed")
        #expect(!lines.joined().unicodeScalars.contains { $0.value < 0x20 })

        var later = epoch
        later.epoch = 4
        let onlyGood = ValidatorCommand.Proposal(change: change.encoded.hex, approvals: [entry(good)])
        let (wrong, wrongProblems) = ValidatorCommand.report(
            onlyGood, change: change, chainID: "show-test", epoch: later)
        #expect(wrongProblems == 1)
        #expect(wrong.contains { $0.hasPrefix("WRONG EPOCH: the node is in epoch 4") })
        #expect(ValidatorCommand.report(onlyGood, change: change, chainID: "show-test", epoch: epoch).problems == 0)
    }

    @Test func aChangeTheChainWouldRefuseFails() async throws {
        let zeroPower = ValidatorChange(
            epoch: 3, validator: erin.publicKey, operation: .add(power: 0, bitcoinKey: erinBitcoin))
        let (dir, file, genesis) = try files(
            approvals: [zeroPower.approve(chainID: "show-test", key: alice)], change: zeroPower.encoded.hex)
        defer { try? FileManager.default.removeItem(at: dir) }
        await #expect(throws: ExitCode(1)) { try await show([file, "--genesis", genesis]) }
    }

    @Test func aMalformedChangeIsRefusedBeforeAnythingIsSigned() async throws {
        var bytes = change.encoded
        bytes[8] = 9  // an operation that does not exist
        for hex in [bytes.hex, "not hex", change.encoded.hex + "00"] {
            let (dir, file, genesis) = try files(approvals: [], change: hex)
            defer { try? FileManager.default.removeItem(at: dir) }
            let error = await #expect(throws: CLIError.self) { try await show([file, "--genesis", genesis]) }
            #expect(error?.description.contains("not a valid encoded validator change") == true)
            // approve decodes first too, so it fails before it reaches any node.
            let approve = try #require(
                try P2PNode.parseAsRoot(["validator", "approve", file, "--socket", "/nonexistent.sock"])
                    as? ValidatorCommand.Approve)
            await #expect(throws: CLIError.self) { try await approve.run() }
        }
    }
}
