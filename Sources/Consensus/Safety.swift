/// The safety state: the only state whose loss could make an honest validator
/// equivocate. The driver writes it durably (fsync) before any vote or timeout that
/// the same action list sends.
public struct SafetyState: Sendable, Equatable {
    public var epoch: Epoch
    /// No vote or timeout is signed for a round at or below this again.
    public var highestVoteRound: Round = 0
    /// The highest QC round this validator voted on top of (DIP-201's one-chain round).
    public var highestQCRound: Round = 0
    /// Re-sent unchanged if the same proposal is seen again after a restart.
    public var lastVote: VoteMsg?
    /// Certificates known at the time of the last signature, to resume from.
    public var highQC: QuorumCert?
    public var highCommitQC: QuorumCert?
    public var lastRoundTC: TimeoutCert?
    /// No block is proposed for a round at or below this again (a restarted leader
    /// must not sign a second, different block for a round it already led).
    public var lastProposedRound: Round = 0

    public init(epoch: Epoch) { self.epoch = epoch }
}

/// The DiemBFT v4 voting and timeout predicates with the DIP-201 (2-chain) rules.
/// A missing TC counts as round 0 with high-QC round 0, as in Aptos.
public enum SafetyRules {
    /// Vote for a block of `round` whose QC is from `qcRound` only if it is above every
    /// round voted in, and it extends the previous round's QC, or follows a TC whose
    /// highest QC it does not go below.
    public static func safeToVote(round: Round, qcRound: Round, tc: TimeoutCert?, state: SafetyState) -> Bool {
        guard round > state.highestVoteRound else { return false }
        if round == qcRound + 1 { return true }
        guard let tc else { return false }
        return round == tc.round + 1 && qcRound >= tc.highestQCRound
    }

    /// Time out in `round` only if not below the last vote round, the high QC is not
    /// older than the one voted on, and the round follows that QC or the last TC.
    public static func safeToTimeout(round: Round, qcRound: Round, tc: TimeoutCert?, state: SafetyState) -> Bool {
        guard qcRound >= state.highestQCRound, round >= state.highestVoteRound, round > qcRound else { return false }
        return round == qcRound + 1 || (tc.map { round == $0.round + 1 } ?? false)
    }

    /// The 2-chain rule: a vote for a block directly after its QC's block carries that
    /// block's state as the commit candidate.
    public static func commitCandidate(round: Round, qcRound: Round) -> Bool { round == qcRound + 1 }
}
