import NodeCrypto
import TestSupport
import Wire

@testable import Consensus

/// The simulated network's adversary (issue 14). It controls some validators (their
/// keys and their place in the network) and, every `interval` seconds, does what a
/// Byzantine peer can: sends messages under other validators' identities (spoofing),
/// with forged or borrowed signatures, replays what it overheard, inflates timeout
/// certificate claims, spams future rounds with validly signed votes and timeouts, and
/// lies about its height. The validators it controls can also refuse to serve ranges
/// and propose oversized blocks. Every message it sends goes through the receiver's
/// shipped provenance check and core, as in the node.
struct Adversary {
    /// Node indices of the validators it controls.
    var nodes: Set<Int> = []
    var spoof = false
    var replay = false
    var inflateTimeouts = false
    var futureSpam = false
    var lieAboutHeight = false
    var refuseToServe = false
    var oversized = false
    var interval = 0.2
    /// Recent messages of honest nodes it overheard (bounded).
    private(set) var overheard: [ConsensusMessage] = []
    /// What it did, for the tests' assertions.
    var sent = (spoofed: 0, replayed: 0, inflated: 0, spam: 0, lies: 0)

    mutating func overhear(_ message: ConsensusMessage) {
        switch message {
        case .proposal, .vote, .timeout:
            overheard.append(message)
            if overheard.count > 256 { overheard.removeFirst(128) }
        default: break
        }
    }

    static func all(_ nodes: Set<Int>) -> Adversary {
        var a = Adversary()
        a.nodes = nodes
        a.spoof = true
        a.replay = true
        a.inflateTimeouts = true
        a.futureSpam = true
        a.lieAboutHeight = true
        a.refuseToServe = true
        a.oversized = true
        return a
    }
}

extension Simulator {
    /// Puts validators under the adversary's control (the oracles then ignore them).
    mutating func corrupt(_ adversary: Adversary) {
        self.adversary = adversary
        for i in adversary.nodes { byzantine.insert(nodes[i].key.publicKey) }
    }

    private mutating func pick<T>(_ items: [T]) -> T? {
        items.isEmpty ? nil : items[Int(rng.next() % UInt64(items.count))]
    }

    private func sign(_ key: Ed25519.PrivateKey, _ kind: String, epoch: Epoch, _ body: [UInt8]) -> Ed25519.Signature {
        var w = WireWriter()
        w.string16("sidenode-consensus/\(kind)")
        w.string16(config.chainID)
        w.u64(epoch)
        w.fixed(body)
        return key.signature(for: w.bytes)
    }

    private func timeoutBody(_ round: Round, _ hqc: Round) -> [UInt8] {
        var w = WireWriter()
        w.u64(round)
        w.u64(hqc)
        return w.bytes
    }

    private mutating func inject(_ message: ConsensusMessage, from b: Int, toAll: Bool = true) {
        let targets = toAll ? honestIndices : [pick(honestIndices)].compactMap { $0 }
        for to in targets where canTalk(b, to) {
            let flooded = rng.next() % 2 == 0
            schedule(0.001 + Double(rng.next() % 20) / 1000, .inject(to: to, transport: b, message, flooded: flooded))
        }
    }

    mutating func adversaryTick() {
        guard let b = pick(Array(adversary.nodes).sorted()), nodes[b].alive else { return }
        let key = nodes[b].key
        let core = nodes[b].core
        let epoch = core.config.epoch
        let validators = core.config.validators.validators.map(\.id)
        let round = honestIndices.map { nodes[$0].core.currentRound }.max() ?? core.currentRound

        if adversary.spoof, let message = pick(adversary.overheard) {
            // Claim an honest validator's identity: its message with another signer named,
            // or a signature not its own, direct from the adversary's node.
            let victim = pick(validators.filter { $0 != key.publicKey }) ?? key.publicKey
            let garbage = try! Ed25519.Signature(
                rawRepresentation: (0..<64).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            switch message {
            case .vote(let v):
                inject(
                    .vote(
                        VoteMsg(
                            voteInfo: v.voteInfo, commitInfo: v.commitInfo, highCommitQC: v.highCommitQC,
                            sender: victim,
                            signature: rng.next() % 2 == 0 ? v.signature : garbage)), from: b)
            case .proposal(let p):
                inject(
                    .proposal(
                        ProposalMsg(
                            block: p.block, lastRoundTC: p.lastRoundTC, highCommitQC: p.highCommitQC, signature: garbage
                        )),
                    from: b)
            case .timeout(let t):
                let info = TimeoutInfo(
                    epoch: t.info.epoch, round: t.info.round, highQC: t.info.highQC, sender: victim,
                    signature: t.info.signature)
                inject(
                    .timeout(TimeoutMsg(info: info, lastRoundTC: t.lastRoundTC, highCommitQC: t.highCommitQC)), from: b)
            default: break
            }
            adversary.sent.spoofed += 1
        }
        if adversary.replay, let message = pick(adversary.overheard) {
            // A genuine message again, later, relayed by the adversary.
            inject(message, from: b, toAll: false)
            adversary.sent.replayed += 1
        }
        if adversary.futureSpam {
            // Validly signed by the adversary's own validator, for rounds far ahead.
            let genesisQC = QuorumCert.genesis(
                epoch: epoch, blockID: core.config.genesisBlockID, stateID: core.config.genesisStateID)
            for k in 0..<8 {
                let r = round + 2 + Round(rng.next() % 1000) + Round(k)
                let info = VoteInfo(
                    blockID: Hash32.of(Array("spam \(r)".utf8)), round: r, parentID: .zero, parentRound: r - 1,
                    execStateID: .zero, epoch: epoch)
                let commit = LedgerCommitInfo(epoch: epoch, round: r, commitStateID: nil, voteInfoHash: info.hash)
                inject(
                    .vote(
                        VoteMsg(
                            voteInfo: info, commitInfo: commit, highCommitQC: genesisQC, sender: key.publicKey,
                            signature: sign(key, "vote", epoch: epoch, commit.bytes))), from: b, toAll: false)
                let timeout = TimeoutInfo(
                    epoch: epoch, round: r, highQC: genesisQC, sender: key.publicKey,
                    signature: sign(key, "timeout", epoch: epoch, timeoutBody(r, 0)))
                inject(
                    .timeout(TimeoutMsg(info: timeout, lastRoundTC: nil, highCommitQC: genesisQC)), from: b,
                    toAll: false)
            }
            adversary.sent.spam += 1
        }
        if adversary.inflateTimeouts {
            // A TC for a recent round from the honest timeouts it overheard plus its own
            // entry with an inflated high-QC claim (validly signed, backed by no QC).
            var byRound: [Round: [TimeoutInfo]] = [:]
            for case .timeout(let t) in adversary.overheard where t.info.epoch == epoch {
                byRound[t.info.round, default: []].append(t.info)
            }
            if let (r, infos) = byRound.max(by: { $0.key < $1.key }),
                let best = infos.max(by: { $0.highQC.round < $1.highQC.round })
            {
                let inflated = best.highQC.round + 50
                var entries = Dictionary(infos.map { ($0.sender, $0) }, uniquingKeysWith: { a, _ in a }).values.map {
                    TimeoutCert.Entry(signer: $0.sender, highQCRound: $0.highQC.round, signature: $0.signature)
                }
                entries.removeAll { $0.signer == key.publicKey }
                entries.append(
                    TimeoutCert.Entry(
                        signer: key.publicKey, highQCRound: inflated,
                        signature: sign(key, "timeout", epoch: epoch, timeoutBody(r, inflated))))
                let tc = TimeoutCert(epoch: epoch, round: r, highQC: best.highQC, entries: entries)
                let own = TimeoutInfo(
                    epoch: epoch, round: r + 1, highQC: best.highQC, sender: key.publicKey,
                    signature: sign(key, "timeout", epoch: epoch, timeoutBody(r + 1, best.highQC.round)))
                inject(.timeout(TimeoutMsg(info: own, lastRoundTC: tc, highCommitQC: core.highCommitQC)), from: b)
                adversary.sent.inflated += 1
            }
        }
        if adversary.lieAboutHeight {
            // A height a million blocks ahead, without a proof, or with an old real one.
            let proof = rng.next() % 2 == 0 ? nil : tipProof(b)
            let lie = ConsensusMessage.chainStatus(
                height: UInt64(nodes[b].committed.count) + 1_000_000, round: round + 1_000, epoch: epoch, proof: proof)
            for to in honestIndices where canTalk(b, to) { schedule(0.002, .deliver(to: to, from: b, lie)) }
            adversary.sent.lies += 1
        }
    }
}
