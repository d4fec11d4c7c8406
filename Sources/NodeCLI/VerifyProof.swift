import ArgumentParser
import Consensus
import Contracts
import Foundation
import Ledger
import Node
import NodeCrypto
import StateSync
import StateTree

/// Checks a certified proof offline, trusting only the genesis file.
struct VerifyProof: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-proof",
        abstract: "Verify an account proof offline against the genesis: no trust in the node that served it.",
        discussion: """
            Takes the output of `p2pnode admin getaccount '{"account":HEX,"proof":true}'` (or the proof's hex alone) \
            from a file or standard input. Checks the epoch changes from the genesis to the proof's epoch (each \
            signed by a quorum of the epoch before, naming the next set), the QC that commits the state id, and \
            the account's proof against that state id; then prints the balance. Exit status 1 if anything fails.
            """
    )

    @Option(help: "The chain's genesis file (the only thing trusted).")
    var genesis: String

    @Argument(help: "File with the getaccount JSON or the proof hex; - or none for standard input.")
    var file: String?

    func run() async throws {
        let text: String
        if let file, file != "-" {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        }
        let hex: String
        if let json = try? JSONValue.parse(text) {
            guard let found = json["proof"]?["hex"]?.stringValue ?? json["hex"]?.stringValue else {
                throw CLIError("no proof in the JSON: ask with {\"proof\": true}")
            }
            hex = found
        } else {
            hex = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let proof: CertifiedProof
        do { proof = try CertifiedProof.decode(try Hex.decode(hex)) } catch {
            throw CLIError("not a certified proof: \(error)")
        }
        let chain: Genesis
        do { chain = try Genesis.load(try Data(contentsOf: URL(fileURLWithPath: genesis)), source: genesis) } catch {
            throw CLIError("\(error)")
        }
        let result = proof.verify(
            genesis: chain.consensusConfig(),
            epochConfig: { chain.consensusConfig(system: $0, genesisBlockID: $1, genesisStateID: $2) })
        switch result {
        case .failure(let error):
            throw CLIError("proof REJECTED: \(error)")
        case .success(let certified):
            let d = certified.descriptor
            let bank = StateKey.account([UInt8](repeating: 0, count: 32)).count
            var what = "key \(proof.key.hex)"
            if proof.key.count == bank, proof.key.starts(with: Array("bank/".utf8)) {
                let account = Array(proof.key.dropFirst(5)).hex
                if let value = proof.value, let a = LedgerState.Account(value) {
                    what = "account \(account): balance \(a.balance), seq \(a.seq)"
                } else {
                    what = "account \(account): absent (balance 0)"
                }
            } else if let (contract, key) = ContractKeyIndex.split(proof.key) {
                // A contract's storage entry (admin getcontractstate '{"proof":true}').
                let shown = String(validating: key, as: UTF8.self).map { "'\($0)'" } ?? key.hex
                what =
                    "contract \(ContractAddressFormat.humanize(contract) ?? contract.hex) key \(shown): "
                    + (proof.value.map { String(validating: $0, as: UTF8.self).map { "'\($0)'" } ?? $0.hex } ?? "absent")
            } else if proof.value == nil {
                what += ": absent"
            }
            print("verified: \(what)")
            print(
                "  at height \(d.height) (named by the state), state id \(d.stateID.hex), epoch \(d.epoch), round "
                    + "\(d.commitQC.commitInfo.round); committed by a QC of \(d.commitQC.signatures.count) of "
                    + "\(certified.config.validators.validators.count) validators; "
                    + "\(certified.epochEnds.count) epoch change(s) checked from the genesis")
        }
    }
}
