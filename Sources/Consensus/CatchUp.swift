import NodeCrypto

/// Catch-up for a node that is behind (new, restarted after a long time, or on the
/// losing side of a partition), as a pure state machine. Neighbours report their
/// committed height (`chainStatus`); when one is more than `lagThreshold` blocks
/// ahead, the node asks for ranges of committed blocks (`getCommitted`), rotating
/// over the peers that are ahead, verifies each range against its own chain tip
/// (`verifyRange`), applies it, and asks again until it has reached the highest
/// height it heard of. Then consensus takes over again; if the node falls behind
/// later, the same reports bring it back here.
///
/// It takes the local height and the time with every event and returns requests and
/// penalties; the driver sends, verifies, executes and stores.
public struct CatchUp: Sendable {
    public static let maxRangeBlocks: UInt16 = 64
    /// Bytes of blocks in one range answer: under the gossip layer's 4 MiB message limit,
    /// with room for the QC and an epoch suffix of empty blocks.
    public static let rangeBudget = 3 * 1024 * 1024
    /// Blocks behind the best neighbour before the node stops following consensus and
    /// syncs; smaller gaps are closed by consensus's own fetch of missing ancestors.
    public static let lagThreshold: UInt64 = 8
    /// Seconds to wait for a range before asking another peer.
    public static let requestTimeout: Double = 5
    /// Seconds a peer that served an invalid range is not asked.
    public static let exclusion: Double = 60
    /// Seconds a peer that did not answer in time is not asked: short, since a link that
    /// was down (a partition) may be back, and it may be the only peer ahead.
    public static let silenceExclusion: Double = 10

    public enum Action: Sendable, Equatable {
        case request(peer: ValidatorID, height: UInt64, count: UInt16)
        /// The peer sent something false (an invalid range or proof): score it down.
        case penalize(peer: ValidatorID, reason: String)
        /// The peer did not serve what it claimed in time: a light score (it may have
        /// been cut off honestly).
        case discourage(peer: ValidatorID, reason: String)
    }

    /// Heights neighbours have proven (bounded by the rounds their commit QC proves).
    public private(set) var peerHeights: [ValidatorID: UInt64] = [:]
    private var peerEpochs: [ValidatorID: Epoch] = [:]
    /// Neighbours that claim a later epoch with a commit QC this node cannot check yet
    /// (its validators are not known here): asked for one range, without leaving
    /// consensus, and believed once that range verifies.
    public private(set) var unproven: [ValidatorID: UInt64] = [:]
    /// The epoch this node is in (the driver reports each change).
    public private(set) var localEpoch: Epoch = 0
    public private(set) var syncing = false
    private var inFlight: (peer: ValidatorID, height: UInt64, sentAt: Double, probe: Bool)?
    private var excludedUntil: [ValidatorID: Double] = [:]
    private var silences: [ValidatorID: Int] = [:]
    private var rotation = 0

    public init() {}

    /// The highest committed height a neighbour reported.
    public var target: UInt64 { peerHeights.values.max() ?? 0 }

    /// A neighbour's chain status: its committed `height` and `epoch`, proven by
    /// `proof`, the commit QC of its committed tip. Only a proof counts: checked
    /// against this node's epoch (`config`), it shows how many rounds the peer has
    /// committed past this node's `localRound`, and no chain commits more blocks than
    /// rounds, so the believed height is at most the local height plus that gap. A QC of
    /// a later epoch cannot be checked here: that peer is asked for one range (a probe)
    /// while this node stays in consensus. A forged proof is penalised.
    public mutating func statusReceived(
        from peer: ValidatorID, height: UInt64, epoch: Epoch, proof: QuorumCert?, localHeight: UInt64,
        localRound: Round, config: ConsensusConfig, now: Double
    ) -> [Action] {
        // A peer left out (it did not serve what it claimed) cannot set the target
        // meanwhile: a false height would otherwise keep the node out of consensus.
        if let until = excludedUntil[peer], until > now { return next(localHeight: localHeight, now: now) }
        peerHeights[peer] = nil
        peerEpochs[peer] = nil
        unproven[peer] = nil
        guard let proof, height > localHeight else { return next(localHeight: localHeight, now: now) }
        let proofEpoch = proof.commitInfo.epoch
        if proofEpoch == config.epoch {
            guard config.isValid(proof), proof.commitInfo.commitStateID != nil,
                proof.voteInfo.round == proof.voteInfo.parentRound + 1, epoch >= proofEpoch
            else {
                excludedUntil[peer] = now + Self.exclusion
                return [.penalize(peer: peer, reason: "a chain status with an invalid commit QC")]
                    + next(localHeight: localHeight, now: now)
            }
            let proven = proof.voteInfo.parentRound
            if proven > localRound {
                peerHeights[peer] = min(height, localHeight + (proven - localRound))
                peerEpochs[peer] = epoch
            }
        } else if proofEpoch > config.epoch {
            unproven[peer] = height
        }
        return next(localHeight: localHeight, now: now)
    }

    /// The node entered `epoch` (by consensus or by an applied range).
    public mutating func enteredEpoch(_ epoch: Epoch) { localEpoch = epoch }

    /// A peer went away: it can no longer serve.
    public mutating func peerGone(_ peer: ValidatorID, localHeight: UInt64, now: Double) -> [Action] {
        peerHeights[peer] = nil
        peerEpochs[peer] = nil
        unproven[peer] = nil
        if inFlight?.peer == peer { inFlight = nil }
        return next(localHeight: localHeight, now: now)
    }

    /// Periodic: a request that took too long goes to another peer.
    public mutating func tick(localHeight: UInt64, now: Double) -> [Action] {
        var actions: [Action] = []
        if let pending = inFlight, now - pending.sentAt >= Self.requestTimeout {
            inFlight = nil
            // Each silence in a row doubles the time out (10 s … 5 min): a peer that is
            // really ahead but never serves cannot pull this node out of consensus often.
            let strikes = min(silences[pending.peer, default: 0], 5)
            silences[pending.peer] = strikes + 1
            excludedUntil[pending.peer] = now + Self.silenceExclusion * Double(1 << strikes)
            peerHeights[pending.peer] = nil
            unproven[pending.peer] = nil
            actions.append(.discourage(peer: pending.peer, reason: "did not serve the committed range it claimed"))
        }
        return actions + next(localHeight: localHeight, now: now)
    }

    /// Whether a range is the one awaited (from that peer, starting at that height);
    /// anything else is dropped unread.
    public func isAwaited(from peer: ValidatorID, height: UInt64) -> Bool {
        inFlight?.peer == peer && inFlight?.height == height
    }

    /// The awaited range verified and was applied.
    /// The awaited range verified and was applied. A probe's claim is not believed for
    /// all that: the peer is probed again (each range is real progress, checked against
    /// this node's own chain) until this node reaches an epoch whose QCs it can check.
    public mutating func applied(localHeight: UInt64, now: Double) -> [Action] {
        if let pending = inFlight { silences[pending.peer] = nil }
        inFlight = nil
        return next(localHeight: localHeight, now: now)
    }

    /// The awaited range no longer starts at this node's next height (consensus
    /// committed meanwhile): nothing was applied and nothing is believed; ask again.
    public mutating func superseded(localHeight: UInt64, now: Double) -> [Action] {
        inFlight = nil
        return next(localHeight: localHeight, now: now)
    }

    /// The awaited range failed verification: the peer is scored down and left out for
    /// a while, and another peer is asked.
    public mutating func failed(reason: String, localHeight: UInt64, now: Double) -> [Action] {
        guard let pending = inFlight else { return [] }
        inFlight = nil
        excludedUntil[pending.peer] = now + Self.exclusion
        peerHeights[pending.peer] = nil
        unproven[pending.peer] = nil
        return [.penalize(peer: pending.peer, reason: reason)] + next(localHeight: localHeight, now: now)
    }

    private mutating func next(localHeight: UInt64, now: Double) -> [Action] {
        // Start when clearly behind, or at once when a peer ahead has entered a later
        // epoch (this node missed the end of its epoch: the old epoch's validators have
        // moved on and will not finish it here); once syncing, go on until level.
        // A peer a few blocks ahead in a later epoch is asked for a range without leaving
        // consensus (a probe): if the set has moved on, that range takes this node into
        // the new epoch; if the peer does not serve (a Byzantine peer that withheld the
        // epoch's last commit QC and refuses ranges), the honest validators here can still
        // finish the epoch themselves. Leaving consensus for it let two such peers keep
        // five honest validators out of consensus for good (campaign seed 405757).
        let laterEpoch = peerHeights.filter { $0.value > localHeight && (peerEpochs[$0.key] ?? 0) > localEpoch }
        syncing = syncing ? target > localHeight : target > localHeight + Self.lagThreshold
        // A probe never holds up a sync that proofs have started.
        if syncing, inFlight?.probe == true { inFlight = nil }
        guard inFlight == nil else { return [] }
        func eligible(_ heights: [ValidatorID: UInt64]) -> [ValidatorID] {
            heights.filter { $0.value > localHeight && (excludedUntil[$0.key] ?? 0) <= now }
                .keys.sorted { $0.rawRepresentation.lexicographicallyPrecedes($1.rawRepresentation) }
        }
        let candidates = syncing ? eligible(peerHeights) : eligible(unproven.merging(laterEpoch) { max($0, $1) })
        guard !candidates.isEmpty else {
            // Nobody ahead can be asked now: follow consensus rather than wait out of it.
            if syncing && eligible(peerHeights).isEmpty { syncing = false }
            return []
        }
        // Rotate, so consecutive ranges come from different peers.
        rotation += 1
        let peer = candidates[rotation % candidates.count]
        let claimed = syncing ? peerHeights[peer]! : max(unproven[peer] ?? 0, laterEpoch[peer] ?? 0)
        let count = UInt16(min(UInt64(Self.maxRangeBlocks), claimed - localHeight))
        inFlight = (peer, localHeight + 1, now, !syncing)
        return [.request(peer: peer, height: localHeight + 1, count: count)]
    }

    // MARK: Verification

    /// Checks a served range of committed blocks against the local chain tip `trusted`:
    /// the blocks extend it by hash links, `proof` is a valid commit QC (2-chain) for
    /// the last one, and executing them reproduces every state id their successors'
    /// QCs certify and the one the proof commits. One QC's signatures vouch for the
    /// whole range, since each block's id fixes its parent's. `execute` returns the
    /// state id after a block, applied on top of the previous one, and whether that
    /// block ended the epoch; the driver applies the result only when this returns nil.
    /// A range stops at the end of an epoch, and is then proven by an epoch-change
    /// proof (`suffix` and `proof`). Returns why the range is invalid.
    public static func verifyRange(
        _ blocks: [Block], proof: QuorumCert, suffix: [Block] = [], after trusted: Hash32, config: ConsensusConfig,
        execute: (Block) -> (state: Hash32, endsEpoch: Bool)
    ) -> String? {
        guard !blocks.isEmpty else { return "empty range" }
        // Signatures first: a forged proof costs no execution.
        guard config.isValid(proof) else { return "commit proof is not a valid QC of epoch \(config.epoch)" }
        guard proof.commitInfo.commitStateID != nil,
            let committed = suffix.last ?? blocks.last, proof.voteInfo.parentID == committed.id,
            proof.voteInfo.parentRound == committed.round, proof.voteInfo.round == committed.round + 1
        else { return "the proof does not commit the last block of the range" }
        var parent = trusted
        for block in blocks {
            guard block.parentID == parent else { return "block \(block.id) does not extend \(parent)" }
            guard block.epoch == config.epoch else { return "block \(block.id) is from epoch \(block.epoch)" }
            parent = block.id
        }
        for (i, block) in blocks.enumerated() {
            let (state, endsEpoch) = execute(block)
            if i + 1 < blocks.count {
                guard !endsEpoch else { return "block \(block.id) ends epoch \(config.epoch) but the range goes on" }
                let certified = blocks[i + 1].qc.voteInfo.execStateID
                guard state == certified else {
                    return "executing block \(block.id) gives state \(state), the chain certifies \(certified)"
                }
            } else if endsEpoch {
                return EpochChangeProof(suffix: suffix, commitQC: proof).verify(
                    ending: block, stateID: state, config: config)
            } else {
                guard suffix.isEmpty else { return "a suffix after a block that does not end the epoch" }
                guard state == proof.commitInfo.commitStateID else {
                    return
                        "executing block \(block.id) gives state \(state), the chain certifies \(proof.commitInfo.commitStateID?.description ?? "none")"
                }
            }
        }
        return nil
    }
}

extension ConsensusConfig {
    /// A QC of this epoch whose vote-info hash matches, whose signers are distinct
    /// validators with quorum power, and whose every signature verifies.
    public func isValid(_ qc: QuorumCert) -> Bool {
        guard qc.voteInfo.epoch == epoch, qc.commitInfo.epoch == epoch, qc.commitInfo.round == qc.voteInfo.round,
            qc.commitInfo.voteInfoHash == qc.voteInfo.hash, !qc.isGenesis
        else { return false }
        let signers = qc.signatures.map(\.signer)
        guard Set(signers).count == signers.count, signers.allSatisfy(validators.contains),
            validators.power(of: signers) >= validators.quorumPower
        else { return false }
        let message = SigningDomain(chainID: chainID).message("vote", epoch: epoch, qc.commitInfo.bytes)
        return qc.signatures.allSatisfy { $0.signer.isValidSignature($0.signature, for: message) }
    }
}
