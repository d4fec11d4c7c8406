import ArgumentParser
import Foundation
import Ledger
import Node
import NodeCrypto

/// Validator-set changes. A change needs the approvals of validators holding more than
/// two thirds of the current epoch's power (docs/admin-api.md): each operator approves
/// on their own node, through its local admin socket, and any node submits the result.
struct ValidatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validator",
        abstract: "Propose, approve and submit validator-set changes (effective from the next epoch).",
        discussion: """
            The change is built for the current epoch and approved by every node named with \
            --socket (each signs with its own validator key). When the approvals reach more \
            than two thirds of the power, it is submitted at once; otherwise it is written to \
            --out, to be passed to other operators for `p2pnode validator approve FILE` and \
            then `p2pnode validator submit FILE`. Approvals are for one epoch only: collect \
            them within it.
            """,
        subcommands: [Add.self, Remove.self, SetBitcoinKey.self, Show.self, Approve.self, Submit.self]
    )

    struct Target: ParsableArguments {
        @Option(
            name: .customLong("socket"),
            help: "Admin socket of a validator that approves (repeat; the first also submits).")
        var sockets: [String] = []

        @Option(help: "Where to write the change and its approvals if they are not yet enough.")
        var out: String = "validator-change.json"
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a validator.")
        @Argument(help: "Node id (64 hex digits) of the new validator.") var nodeID: String?
        @Option(name: .customLong("bitcoin-key"), help: "Its x-only Bitcoin key (64 hex digits) for checkpoints.")
        var bitcoinKey: String?
        @Option(
            name: .customLong("keys-of"),
            help: "Take the node id and Bitcoin key from the public parts of a data directory's key files.")
        var keysOf: String?
        @Option(help: "Its voting power.") var power: UInt64 = 1
        @OptionGroup var target: Target

        func run() async throws {
            var id = nodeID
            var bitcoin = bitcoinKey
            if let dir = keysOf {
                let (node, xonly) = try publicKeys(in: dir)
                id = id ?? node
                bitcoin = bitcoin ?? xonly
            }
            guard let id, let bitcoin else { throw CLIError("give NODE_ID and --bitcoin-key, or --keys-of DIR") }
            let key = try parseBitcoinKey(bitcoin)
            try propose(nodeID: id, target: target) { .add(power: power, bitcoinKey: key) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a validator.")
        @Argument(help: "Node id of the validator to remove.") var nodeID: String
        @OptionGroup var target: Target

        func run() async throws { try propose(nodeID: nodeID, target: target) { .remove } }
    }

    struct SetBitcoinKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-btc-key", abstract: "Change the Bitcoin key a validator signs checkpoints with.")
        @Argument(help: "Node id of the validator.") var nodeID: String
        @Option(name: .customLong("bitcoin-key"), help: "The new x-only Bitcoin key (64 hex digits).")
        var bitcoinKey: String
        @OptionGroup var target: Target

        func run() async throws {
            let key = try parseBitcoinKey(bitcoinKey)
            try propose(nodeID: nodeID, target: target) { .setBitcoinKey(key) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print what a change file changes and check its approvals, before approving it.",
            discussion: """
                Offline with --genesis (checks each approval's signature against the chain id); \
                with --socket or --data-dir also against the node's current epoch: whether the change is for \
                it, who of the approvers is a validator, and the power they carry against the \
                quorum. Exits 1 on anything the chain would refuse: an invalid change, a wrong \
                epoch, a bad signature, an approver twice or outside the set.
                """
        )
        @Argument(help: "The change file.") var file: String
        @Option(help: "The chain's genesis file, to check the approvals' signatures offline.") var genesis: String?
        @Option(help: "Admin socket of a node, to check against its current epoch (and chain id).") var socket: String?
        @Option(name: .customLong("data-dir"), help: "Data directory of a running node: its admin.sock, as --socket.")
        var dataDir: String?

        func run() async throws {
            let socket = socket ?? dataDir.map { URL(fileURLWithPath: $0).appendingPathComponent("admin.sock").path }
            let proposal = try Proposal.load(file)
            let change = try proposal.decoded(file)
            var chainID: String?
            if let genesis {
                let data = try Data(contentsOf: URL(fileURLWithPath: genesis))
                chainID = try Genesis.load(data, source: genesis).chain_id
            }
            var epoch: EpochView?
            if let socket {
                let client = AdminClient(socketPath: socket)
                let nodeChain = try client.call("getinfo")["chain_id"]?.stringValue
                if let chainID, let nodeChain, chainID != nodeChain {
                    throw CLIError("\(socket) runs chain \(nodeChain), the genesis names \(chainID)")
                }
                chainID = chainID ?? nodeChain
                epoch = EpochView(getepoch: try client.call("getepoch"))
            }
            let (lines, problems) = ValidatorCommand.report(proposal, change: change, chainID: chainID, epoch: epoch)
            for line in lines { print(line) }
            if problems > 0 { throw ExitCode(1) }
        }
    }

    /// What `show` prints, and how many things in it the chain would refuse. Each approver
    /// appears as the key the chain reads (hex of any case), never as the file's text, which
    /// could carry terminal escapes; the chain refuses a file naming one validator twice,
    /// and counts only approvals that verify.
    static func report(
        _ proposal: Proposal, change: ValidatorChange, chainID: String?, epoch: EpochView?
    )
        -> (lines: [String], problems: Int)
    {
        var lines = [change.summary]
        var problems = 0
        if let reason = change.validate() {
            lines.append("INVALID: \(reason): the chain would refuse it")
            problems += 1
        }
        if let current = epoch?.epoch, current != change.epoch {
            lines.append(
                "WRONG EPOCH: the node is in epoch \(current); the chain refuses a change for epoch \(change.epoch)")
            problems += 1
        }
        var seen: Set<String> = []
        var carried: UInt64 = 0
        for entry in proposal.approvals {
            guard
                let approval = ValidatorChange.Approval(
                    validatorHex: entry["validator"] ?? "", signatureHex: entry["signature"] ?? "")
            else {
                lines.append("approval with a malformed key or signature: the chain refuses the file")
                problems += 1
                continue
            }
            let who = approval.validator.rawRepresentation.hex
            guard seen.insert(who).inserted else {
                lines.append("approval by \(who): TWICE: the chain refuses the file")
                problems += 1
                continue
            }
            var verdict = "signature not checked (give --genesis or --socket)"
            var good = chainID == nil
            if let chainID {
                good = change.verifies(approval, chainID: chainID)
                verdict = good ? "signature good" : "SIGNATURE BAD"
                if !good { problems += 1 }
            }
            var member = ""
            if let epoch {
                if let power = epoch.powers[who] {
                    member = "; validator, power \(power)"
                    if good { carried += power }
                } else {
                    member = "; NOT a validator of this epoch"
                    problems += 1
                }
            }
            lines.append("approval by \(who): \(verdict)\(member)")
        }
        if proposal.approvals.isEmpty { lines.append("no approvals yet") }
        if let quorum = epoch?.quorum {
            lines.append("approvals with good signatures carry power \(carried); \(quorum) needed")
        }
        return (lines, problems)
    }

    /// A node's current epoch as `getepoch` gives it: its number, each validator's power
    /// by node id (lower-case hex) and the quorum.
    struct EpochView {
        var epoch: UInt64?
        var powers: [String: UInt64]
        var quorum: UInt64?
        var total: UInt64?

        init(epoch: UInt64?, powers: [String: UInt64], quorum: UInt64?, total: UInt64?) {
            self.epoch = epoch
            self.powers = powers
            self.quorum = quorum
            self.total = total
        }

        init(getepoch info: JSONValue) {
            self.init(
                epoch: info["epoch"]?.numberValue.map { UInt64($0) },
                powers: Dictionary(
                    (info["validators"]?.arrayValue ?? []).compactMap { v -> (String, UInt64)? in
                        guard let id = v["node_id"]?.stringValue?.lowercased(), let power = v["power"]?.numberValue
                        else { return nil }
                        return (id, UInt64(power))
                    }, uniquingKeysWith: { a, _ in a }),
                quorum: info["quorum_power"]?.numberValue.map { UInt64($0) },
                total: info["total_power"]?.numberValue.map { UInt64($0) })
        }
    }

    struct Approve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add this node's approval to a change file.")
        @Argument(help: "The change file.") var file: String
        @OptionGroup var socket: SocketOptions

        func run() async throws {
            var proposal = try Proposal.load(file)
            // What is signed is printed first: `validator show FILE` prints it without signing.
            print("approving: \(try proposal.decoded(file).summary)")
            let approval = try AdminClient(socketPath: socket.path).call(
                "approvevalidatorchange", .object(["change": .string(proposal.change)]))
            proposal.add(approval)
            try proposal.save(file)
            print(
                "approved by \(approval["validator"]?.stringValue ?? "?"); \(proposal.approvals.count) approvals in \(file)"
            )
        }
    }

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Submit a change file with its approvals.")
        @Argument(help: "The change file.") var file: String
        @OptionGroup var socket: SocketOptions

        func run() async throws {
            try submit(try Proposal.load(file), socket: socket.path)
        }
    }

    /// The change file: the encoded change and the approvals collected so far.
    struct Proposal: Codable {
        var change: String
        var approvals: [[String: String]]

        static func load(_ path: String) throws -> Proposal {
            do {
                return try JSONDecoder().decode(Proposal.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                // The decoder's message can quote the file's own keys: no terminal escapes.
                throw CLIError(
                    "\(path): not a validator change file: \(String(describing: error).escapingControlCharacters)")
            }
        }

        func save(_ path: String) throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(self).write(to: URL(fileURLWithPath: path))
        }

        func decoded(_ path: String) throws -> ValidatorChange {
            guard let bytes = try? Hex.decode(change), let decoded = try? ValidatorChange.decode(bytes) else {
                throw CLIError("\(path): the change is not a valid encoded validator change")
            }
            return decoded
        }

        mutating func add(_ approval: JSONValue) {
            guard let validator = approval["validator"]?.stringValue, let signature = approval["signature"]?.stringValue
            else { return }
            approvals.removeAll { $0["validator"] == validator }
            approvals.append(["validator": validator, "signature": signature])
        }
    }
}

/// The public halves of `node_key.json` and `bitcoin_key.json` in a data directory.
private func publicKeys(in dir: String) throws -> (node: String, bitcoin: String) {
    func field(_ file: String, _ name: String) throws -> String {
        let url = URL(fileURLWithPath: dir).appendingPathComponent(file)
        guard let data = try? Data(contentsOf: url),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let value = object[name] as? String
        else { throw CLIError("\(url.path): no \(name)") }
        return value
    }
    return (try field(KeyStore.identityFile, "public_key"), try field(KeyStore.bitcoinFile, "xonly_public_key"))
}

private func parseBitcoinKey(_ hex: String) throws -> [UInt8] {
    guard let bytes = try? Hex.decode(hex), (try? Secp256k1.XOnlyPublicKey(rawRepresentation: bytes)) != nil else {
        throw CLIError("--bitcoin-key must be 64 hex digits of an x-only secp256k1 public key")
    }
    return bytes
}

/// Builds the change for the first node's current epoch, collects every node's
/// approval, and submits when they carry a quorum; else writes the file.
private func propose(
    nodeID: String, target: ValidatorCommand.Target, operation: () -> ValidatorChange.Operation
) throws {
    guard let first = target.sockets.first else { throw CLIError("name at least one validator with --socket") }
    guard let bytes = try? Hex.decode(nodeID), let validator = try? Ed25519.PublicKey(rawRepresentation: bytes) else {
        throw CLIError("\(nodeID) is not a node id (64 hex digits)")
    }
    let status = try AdminClient(socketPath: first).call("getstatus")
    guard let epoch = status["epoch"]?.numberValue else { throw CLIError("\(first): no epoch in getstatus") }
    let change = ValidatorChange(epoch: UInt64(epoch), validator: validator, operation: operation())
    var proposal = ValidatorCommand.Proposal(change: change.encoded.hex, approvals: [])
    for socket in target.sockets {
        do {
            proposal.add(
                try AdminClient(socketPath: socket).call(
                    "approvevalidatorchange", .object(["change": .string(proposal.change)])))
        } catch {
            print("\(socket): no approval: \(error)")
        }
    }
    let info = ValidatorCommand.EpochView(getepoch: try AdminClient(socketPath: first).call("getepoch"))
    let power = proposal.approvals.reduce(UInt64(0)) { $0 + (info.powers[$1["validator"]?.lowercased() ?? ""] ?? 0) }
    print(
        "epoch \(Int(epoch)): \(proposal.approvals.count) approvals carrying power \(power) of \(info.total ?? 0);"
            + " \(info.quorum.map { "\($0)" } ?? "?") needed")
    guard let quorum = info.quorum, power >= quorum else {
        try proposal.save(target.out)
        print("not yet a quorum: wrote \(target.out); other validators run `p2pnode validator approve \(target.out)`,")
        print("then anyone runs `p2pnode validator submit \(target.out)` (before epoch \(Int(epoch)) ends)")
        return
    }
    try submit(proposal, socket: first)
}

private func submit(_ proposal: ValidatorCommand.Proposal, socket: String) throws {
    let result = try AdminClient(socketPath: socket).call(
        "submitvalidatorchange",
        .object([
            "change": .string(proposal.change),
            "approvals": .array(proposal.approvals.map { .object($0.mapValues { .string($0) }) }),
        ]))
    let epoch = Int(result["change"]?["epoch"]?.numberValue ?? 0)
    print("submitted \(result["txid"]?.stringValue ?? "?"): the epoch ends with the block that executes it;")
    print("the new set signs from epoch \(epoch + 1) (see `p2pnode admin getepoch`)")
}

extension ValidatorChange {
    /// One line an operator reads before approving.
    var summary: String {
        let id = validator.rawRepresentation.hex
        switch operation {
        case .add(let power, let key):
            return "epoch \(epoch): ADD validator \(id) with power \(power), Bitcoin key \(key.hex)"
        case .remove:
            return "epoch \(epoch): REMOVE validator \(id)"
        case .setBitcoinKey(let key):
            return "epoch \(epoch): SET the Bitcoin key of validator \(id) to \(key.hex)"
        }
    }
}

extension String {
    /// Control characters (C0, DEL, C1) as `\u{…}`, so text from a file cannot drive the terminal.
    var escapingControlCharacters: String {
        var out = ""
        for scalar in unicodeScalars {
            if scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
