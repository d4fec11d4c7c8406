import Consensus
import Ledger
import StateTree

/// A key-hash range of the snapshot: the keys whose hash starts with the first `depth`
/// bits of `prefix`.
public struct ChunkRange: Hashable, Sendable, CustomStringConvertible {
    public let prefix: StateHash
    public let depth: Int

    public init(prefix: StateHash, depth: Int) {
        self.prefix = prefix.truncated(toBits: depth)
        self.depth = depth
    }

    /// The two halves one bit deeper.
    public var halves: [ChunkRange] {
        [ChunkRange(prefix: prefix, depth: depth + 1), ChunkRange(prefix: prefix.settingBit(depth), depth: depth + 1)]
    }

    /// Whether `other` lies inside this range (or is it).
    public func contains(_ other: ChunkRange) -> Bool {
        other.depth >= depth && other.prefix.sharesPrefix(with: prefix, bits: depth)
    }

    /// The 2^depth ranges of one depth, in key-hash order.
    public static func all(depth: Int) -> [ChunkRange] {
        var out = [ChunkRange(prefix: .placeholder, depth: 0)]
        for _ in 0..<depth { out = out.flatMap(\.halves) }
        return out
    }

    public var description: String { "\(prefix.hex.prefix((depth + 3) / 4))/\(depth)" }
}

/// Downloading a state snapshot from peers, as a pure state machine (no sockets, clock or
/// disk: the node feeds it messages and the time and carries out its actions).
///
/// 1. Ask every peer which snapshot it serves; after a short wait take the highest.
/// 2. Fetch the epoch ends from that peer and verify the chain from the genesis, then the
///    QC that commits the snapshot's state id. A peer whose offer fails is discouraged
///    and the next offer is tried.
/// 3. Fetch the state as key-hash ranges from every peer that serves it, a few requests
///    per peer at a time; verify each chunk on arrival against the certified root (a range
///    proof, docs/state.md); a peer is discouraged at its first bad chunk and the range
///    goes to another. A range too large for one answer is split in two.
/// 4. Every verified chunk is handed out to be stored, so a restart resumes with only the
///    missing ranges. When every range is in, the leaves are handed out with the snapshot.
public struct SnapshotSync<Peer: Hashable & Sendable>: Sendable {
    public struct Options: Sendable {
        /// The first ranges asked for: 2^depth of them.
        public var initialDepth = 6
        public var maxInFlightPerPeer = 4
        /// Seconds before a request is given to another peer.
        public var requestTimeout = 15.0
        /// Seconds to wait for more offers after the first.
        public var offerWait = 2.0
        /// Seconds between asking peers that have not answered for an offer again.
        public var offerRetry = 5.0
        /// A range that deep is small enough for any honest peer (2^24 ranges).
        public var maxSplitDepth = 24

        public init() {}
    }

    public enum Action: Sendable {
        case send(Peer, SnapshotMessage)
        /// The peer served something false: drop it and lower its standing.
        case discourage(Peer, String)
        /// Keep this verified target (a restart resumes it).
        case persistTarget(VerifiedSnapshot)
        case persistChunk(ChunkRange, [StateLeaf])
        /// No peer serves the kept target any more: forget it and its chunks.
        case reset
        case progress(Progress)
        case note(String)
        /// Every range is in: the snapshot and all its leaves, in key-hash order.
        case finished(VerifiedSnapshot, [StateLeaf])
    }

    public struct Progress: Sendable, Equatable {
        public var height: UInt64
        public var chunksDone: Int
        /// Done, pending and in flight (splits add to it).
        public var chunksKnown: Int
        public var leaves: Int
        public var bytes: Int
        public var seconds: Double

        public init(height: UInt64, chunksDone: Int, chunksKnown: Int, leaves: Int, bytes: Int, seconds: Double) {
            self.height = height
            self.chunksDone = chunksDone
            self.chunksKnown = chunksKnown
            self.leaves = leaves
            self.bytes = bytes
            self.seconds = seconds
        }
    }

    let genesis: ConsensusConfig
    let epochConfig: @Sendable (SystemState, Hash32, Hash32) -> ConsensusConfig
    public var options: Options

    private var peers: [Peer] = []
    private var bad: Set<Peer> = []
    private var offers: [Peer: SnapshotDescriptor] = [:]
    private var asked: [Peer: Double] = [:]
    private var answered: Set<Peer> = []
    private var firstOfferAt: Double?
    /// The offer being proved: its epoch ends so far, each verified on arrival against
    /// the configuration the chain reached (`config`), and whether a request is out.
    private struct Candidate {
        var peer: Peer
        var descriptor: SnapshotDescriptor
        /// When it last proved an end (or was chosen): no progress for long, it is passed over.
        var at: Double
        var awaiting = false
        var needed: Int
        /// The peer was busy: ask again from then.
        var retryAt: Double?
    }
    private var candidate: Candidate?
    /// The epoch ends verified so far from the genesis, and the configuration they reach.
    /// The chain's history is the same whoever serves it, so what one peer proved is kept
    /// for the next (a slow or dropped offer does not start the walk over).
    private var verifiedEnds: [EpochEnd] = []
    private var reached: ConsensusConfig
    /// Peers whose offer made no progress, and until when their offers are not taken.
    private var passedOver: [Peer: Double] = [:]
    /// "Busy" answers since a peer last served a chunk (many count as not serving).
    private var busyStreak: [Peer: Int] = [:]
    /// Most epochs a snapshot may be ahead of the genesis (bounds what an offer can ask for).
    public static var maxEpochGap: UInt64 { 1 << 20 }
    /// A range split because `peer` said it was too large: when both halves are in and
    /// would have fit one answer, that peer lied.
    private var splitBy: [ChunkRange: Peer] = [:]
    /// Requests that timed out, per peer (three count as not serving).
    private var timeouts: [Peer: Int] = [:]
    /// A busy peer is asked again from this time on.
    private var backoff: [Peer: Double] = [:]
    public private(set) var target: VerifiedSnapshot?
    private var queue: [ChunkRange] = []
    private var inFlight: [ChunkRange: (peer: Peer, at: Double)] = [:]
    private var done: [ChunkRange: [StateLeaf]] = [:]
    /// Slow peers (a request timed out) and peers that said they do not serve the target.
    private var unavailable: Set<Peer> = []
    private var refused: Set<Peer> = []
    private var startedAt: Double?
    private var bytes = 0
    public private(set) var isFinished = false

    public init(
        genesis: ConsensusConfig, epochConfig: @escaping @Sendable (SystemState, Hash32, Hash32) -> ConsensusConfig,
        options: Options = Options()
    ) {
        self.genesis = genesis
        self.epochConfig = epochConfig
        self.options = options
        reached = genesis
    }

    /// Resumes a kept target with the chunks already verified (they are trusted: this
    /// node verified and stored them). The target is verified again.
    public mutating func resume(_ kept: VerifiedSnapshot, chunks: [ChunkRange: [StateLeaf]]) -> [Action] {
        resume(kept.descriptor, epochEnds: kept.epochEnds, chunks: chunks)
    }

    public mutating func resume(
        _ descriptor: SnapshotDescriptor, epochEnds: [EpochEnd], chunks: [ChunkRange: [StateLeaf]]
    ) -> [Action] {
        guard
            case .success(let target) = VerifiedSnapshot.verify(
                descriptor, epochEnds: epochEnds, genesis: genesis, epochConfig: epochConfig)
        else { return [.reset, .note("the kept snapshot target no longer verifies; starting over")] }
        self.target = target
        verifiedEnds = target.epochEnds
        reached = target.config
        done = chunks
        queue = Self.missing(ChunkRange.all(depth: options.initialDepth), done: Set(chunks.keys))
        return [.note("resuming the snapshot at height \(target.descriptor.height): \(done.count) chunks kept")]
    }

    /// The ranges of `ranges` not covered by `done` (done ranges may be halves of halves).
    static func missing(_ ranges: [ChunkRange], done: Set<ChunkRange>) -> [ChunkRange] {
        ranges.flatMap { r -> [ChunkRange] in
            if done.contains(r) { return [] }
            guard r.depth < 256, done.contains(where: { r.contains($0) }) else { return [r] }
            return missing(r.halves, done: done)
        }
    }

    // MARK: Events

    public mutating func connected(_ peer: Peer, now: Double) -> [Action] {
        guard !peers.contains(peer), !bad.contains(peer) else { return [] }
        peers.append(peer)
        return tick(now: now)
    }

    public mutating func disconnected(_ peer: Peer, now: Double) -> [Action] {
        peers.removeAll { $0 == peer }
        offers[peer] = nil
        asked[peer] = nil
        for (range, flight) in inFlight where flight.peer == peer {
            inFlight[range] = nil
            queue.append(range)
        }
        if candidate?.peer == peer { candidate = nil }
        return tick(now: now)
    }

    public mutating func received(_ message: SnapshotMessage, from peer: Peer, now: Double) -> [Action] {
        guard !isFinished, !bad.contains(peer) else { return [] }
        var out: [Action] = []
        switch message {
        case .getSnapshot, .getEpochEnds, .getChunk, .getCode, .code:
            return []  // requests are the server's; code is `CodeFetch`'s
        case .snapshot(let descriptor):
            answered.insert(peer)
            // An offer from before the genesis, or absurdly far ahead, is not a chain's.
            if let descriptor, target == nil, (passedOver[peer] ?? 0) <= now, descriptor.epoch >= genesis.epoch,
                descriptor.epoch - genesis.epoch <= Self.maxEpochGap
            {
                offers[peer] = descriptor
                if firstOfferAt == nil { firstOfferAt = now }
            }
        case .epochEnds(let ends):
            // Only an answer to the request out; each end is verified as it arrives, so an
            // offer cannot make this node hold unverified ends.
            guard var c = candidate, c.peer == peer, c.awaiting else { return [] }
            // A late answer to an earlier request starts elsewhere: not a lie, ignored.
            guard let first = ends.first else {
                // Over its serving budget: ask again in a second (no progress for long, and
                // the offer is passed over).
                c.awaiting = false
                c.retryAt = now + 1
                candidate = c
                return []
            }
            guard first.lastBlock.epoch == genesis.epoch + UInt64(verifiedEnds.count) else { return [] }
            c.awaiting = false
            for end in ends.prefix(c.needed - verifiedEnds.count) {
                guard end.lastHeight > (verifiedEnds.last?.lastHeight ?? 0) else {
                    return reject(peer, "served epoch ends out of order", now: now)
                }
                switch end.verify(config: reached) {
                case .failure(let error): return reject(peer, "served a false epoch end: \(error)", now: now)
                case .success(let system):
                    reached = epochConfig(system, end.lastBlock.id, end.stateID)
                    verifiedEnds.append(end)
                }
            }
            c.at = now
            if verifiedEnds.count < c.needed {
                c.awaiting = true
                candidate = c
                out.append(.send(peer, .getEpochEnds(from: genesis.epoch + UInt64(verifiedEnds.count))))
            } else {
                out += adopt(c, now: now)
            }
        case .chunk(let height, let prefix, let depth, let reply):
            let range = ChunkRange(prefix: prefix, depth: depth)
            guard let target, height == target.descriptor.height, let flight = inFlight[range], flight.peer == peer
            else { return [] }  // late, duplicate or unasked: ignored
            inFlight[range] = nil
            switch reply {
            case .leaves(let leaves, let proof):
                do {
                    try proof.verify(range: range.prefix, depth: range.depth, leaves: leaves, root: target.root)
                } catch {
                    queue.append(range)
                    out += reject(peer, "chunk \(range) of snapshot \(height) does not prove: \(error)", now: now)
                    return out
                }
                done[range] = leaves
                timeouts[peer] = nil
                busyStreak[peer] = nil
                refused.remove(peer)  // it serves after all
                bytes += leaves.reduce(0) { $0 + $1.key.count + $1.value.count }
                out.append(.persistChunk(range, leaves))
                out.append(.progress(progress(now)))
                out += checkSplit(of: range, now: now)
            case .tooLarge:
                if range.depth < options.maxSplitDepth {
                    splitBy[range] = peer
                    queue += range.halves
                } else {
                    queue.append(range)
                    out += reject(peer, "claims chunk \(range) is too large", now: now)
                    return out
                }
            case .unavailable:
                unavailable.insert(peer)
                refused.insert(peer)
                queue.append(range)
            case .busy:
                backoff[peer] = now + 1
                queue.append(range)
                busyStreak[peer, default: 0] += 1
                if busyStreak[peer, default: 0] >= 30 { refused.insert(peer) }  // never has time: not serving
            }
        }
        return out + tick(now: now)
    }

    /// Timers: offers, request timeouts, new requests, completion.
    public mutating func tick(now: Double) -> [Action] {
        guard !isFinished else { return [] }
        if startedAt == nil { startedAt = now }
        var out: [Action] = []
        if target == nil {
            // Ask for offers; pick one when the wait is over; fetch its epoch ends.
            // Peers without an offer are asked again now and then: snapshots appear as
            // chains grow, and every offer so far may have failed.
            for peer in peers where !bad.contains(peer) && offers[peer] == nil {
                if let at = asked[peer], now - at < options.offerRetry { continue }
                asked[peer] = now
                answered.remove(peer)
                out.append(.send(peer, .getSnapshot))
            }
            if var c = candidate, let retry = c.retryAt, retry <= now {
                c.retryAt = nil
                c.awaiting = true
                candidate = c
                out.append(.send(c.peer, .getEpochEnds(from: genesis.epoch + UInt64(verifiedEnds.count))))
            }
            if let c = candidate, now - c.at > 2 * options.requestTimeout {
                candidate = nil
                offers[c.peer] = nil
                passedOver[c.peer] = now + 60
                out.append(.note("peer did not serve its snapshot's epoch ends in time"))
            }
            let waited = firstOfferAt.map { now - $0 >= options.offerWait } ?? false
            let everyoneAnswered = !peers.isEmpty && peers.allSatisfy { answered.contains($0) || bad.contains($0) }
            if candidate == nil, !offers.isEmpty, waited || everyoneAnswered {
                out += choose(now: now)
            }
            return out
        }
        var timedOut: Set<Peer> = []
        for (range, flight) in inFlight where now - flight.at > options.requestTimeout {
            inFlight[range] = nil
            queue.append(range)
            unavailable.insert(flight.peer)  // slow: leave it to the others while they serve
            timedOut.insert(flight.peer)
        }
        // One strike per peer per timeout, however many of its requests were out.
        for peer in timedOut {
            timeouts[peer, default: 0] += 1
            if timeouts[peer, default: 0] >= 3 { refused.insert(peer) }  // not serving at all
        }
        if !peers.isEmpty, peers.allSatisfy({ bad.contains($0) || refused.contains($0) }) {
            // Nobody serves the target any more (pruned since): start over with a new offer.
            self.target = nil
            queue = []
            inFlight = [:]
            done = [:]
            unavailable = []
            refused = []
            timeouts = [:]
            backoff = [:]
            splitBy = [:]
            busyStreak = [:]
            offers = [:]
            answered = []
            asked = [:]
            firstOfferAt = nil
            return [.reset, .note("no peer serves the snapshot being downloaded any more; starting over")]
                + tick(now: now)
        }
        var servers = peers.filter {
            !bad.contains($0) && !unavailable.contains($0) && !refused.contains($0) && (backoff[$0] ?? 0) <= now
        }
        if servers.isEmpty, !peers.isEmpty, inFlight.isEmpty, !queue.isEmpty {
            if peers.allSatisfy({ bad.contains($0) || unavailable.contains($0) }) && unavailable.count > 0 {
                // Give slow peers another chance before giving the target up.
                unavailable.removeAll()
                servers = peers.filter { !bad.contains($0) && !refused.contains($0) }
            }
        }
        // Fill every server's window, round-robin.
        var load: [Peer: Int] = [:]
        for flight in inFlight.values { load[flight.peer, default: 0] += 1 }
        var progressMade = true
        while !queue.isEmpty, progressMade {
            progressMade = false
            for peer in servers where !queue.isEmpty && load[peer, default: 0] < options.maxInFlightPerPeer {
                let range = queue.removeLast()  // any order will do; this one is O(1)
                inFlight[range] = (peer, now)
                load[peer, default: 0] += 1
                out.append(
                    .send(
                        peer,
                        .getChunk(height: target!.descriptor.height, prefix: range.prefix, depth: range.depth)))
                progressMade = true
            }
        }
        if queue.isEmpty, inFlight.isEmpty, let target {
            isFinished = true
            let leaves = done.values.flatMap { $0 }.sorted { $0.keyHash < $1.keyHash }
            out.append(.progress(progress(now)))
            out.append(.finished(target, leaves))
        }
        return out
    }

    // MARK: Offers

    private mutating func choose(now: Double) -> [Action] {
        // The highest snapshot; among equals, the one most peers offer.
        let offered = Array(offers.values)
        func count(_ d: SnapshotDescriptor) -> Int { offered.filter { $0 == d }.count }
        let best = offers.max { a, b in
            if a.value.height != b.value.height { return a.value.height < b.value.height }
            return count(a.value) < count(b.value)
        }
        guard let (peer, descriptor) = best else { return [] }
        var c = Candidate(
            peer: peer, descriptor: descriptor, at: now,
            needed: Int(descriptor.epoch - genesis.epoch))  // bounded by maxEpochGap on arrival
        guard verifiedEnds.count < c.needed else { return adopt(c, now: now) }
        c.awaiting = true
        candidate = c
        return [.send(peer, .getEpochEnds(from: genesis.epoch + UInt64(verifiedEnds.count)))]
    }

    private mutating func adopt(_ c: Candidate, now: Double) -> [Action] {
        candidate = nil
        // The ends were verified as they came; the descriptor against the epoch they reach.
        let ends = Array(verifiedEnds.prefix(c.needed))
        var config = reached
        if ends.count < verifiedEnds.count {
            // A snapshot in an earlier epoch than the ends verified: walk them again.
            guard
                case .success(let v) = VerifiedSnapshot.verify(
                    c.descriptor, epochEnds: ends, genesis: genesis, epochConfig: epochConfig)
            else { return reject(c.peer, "offered an unproven snapshot", now: now) }
            config = v.config
        }
        guard c.descriptor.height > (ends.last?.lastHeight ?? 0) else {
            return reject(c.peer, "offered a snapshot before its own epoch's start", now: now)
        }
        if let reason = c.descriptor.verify(config: config) {
            return reject(c.peer, "offered an unproven snapshot: \(reason)", now: now)
        }
        let verified = VerifiedSnapshot(descriptor: c.descriptor, epochEnds: ends, config: config)
        target = verified
        queue = ChunkRange.all(depth: options.initialDepth)
        return [
            .persistTarget(verified),
            .note(
                "snapshot at height \(verified.descriptor.height) (epoch \(verified.descriptor.epoch)) verified; downloading its state"
            ),
        ]
    }

    /// A range split on `peer`'s word that both halves show would have fit one answer:
    /// that peer fragments the download on purpose.
    private mutating func checkSplit(of range: ChunkRange, now: Double) -> [Action] {
        guard range.depth > 0 else { return [] }
        let parent = ChunkRange(prefix: range.prefix, depth: range.depth - 1)
        guard let splitter = splitBy[parent] else { return [] }
        let halves = parent.halves
        guard let a = done[halves[0]], let b = done[halves[1]] else { return [] }
        splitBy[parent] = nil
        let size = (a + b).reduce(0) { $0 + $1.encodedSize }
        guard a.count + b.count <= SnapshotMessage.maxChunkLeaves, size <= SnapshotMessage.maxChunkBytes,
            !bad.contains(splitter)
        else { return [] }
        return reject(splitter, "claimed chunk \(parent) too large; it holds \(a.count + b.count) leaves", now: now)
    }

    private mutating func reject(_ peer: Peer, _ reason: String, now: Double) -> [Action] {
        bad.insert(peer)
        offers[peer] = nil
        if candidate?.peer == peer { candidate = nil }
        for (range, flight) in inFlight where flight.peer == peer {
            inFlight[range] = nil
            queue.append(range)
        }
        return [.discourage(peer, reason)]
    }

    private func progress(_ now: Double) -> Progress {
        Progress(
            height: target?.descriptor.height ?? 0, chunksDone: done.count,
            chunksKnown: done.count + queue.count + inFlight.count,
            leaves: done.values.reduce(0) { $0 + $1.count }, bytes: bytes, seconds: now - (startedAt ?? now))
    }
}
