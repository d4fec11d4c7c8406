import NodeCrypto

/// Fetching contract code a joining node lacks (the snapshot's state names each code by
/// its SHA-256, the code itself lives outside the tree). A pure core: it asks one peer
/// per code at a time, checks every answer against the checksum, moves on when a peer
/// has no copy, lies (discouraged) or stays silent (after `timeout` seconds), and is
/// done when every code is held.
public struct CodeFetch<Peer: Hashable & Sendable>: Sendable {
    public enum Action: Sendable, Equatable {
        case send(Peer, SnapshotMessage)
        /// Code that hashes to its checksum: keep it.
        case store(checksum: [UInt8], wasm: [UInt8])
        case discourage(Peer, String)
        case done
    }

    public static var timeout: Double { 10 }

    private var missing: Set<[UInt8]>
    private var inflight: [[UInt8]: (peer: Peer, deadline: Double)] = [:]
    /// Peers that failed a code (no copy, wrong bytes, silence): asked again only when
    /// every peer has failed it (a peer may have fetched it since).
    private var failed: [[UInt8]: Set<Peer>] = [:]
    private var peers: [Peer] = []
    private var cursor = 0

    public init(missing: Set<[UInt8]>) { self.missing = missing }

    public var isDone: Bool { missing.isEmpty }
    public var remaining: Int { missing.count }

    public mutating func start(peers: [Peer], now: Double) -> [Action] {
        self.peers = peers
        return assign(now: now)
    }

    public mutating func connected(_ peer: Peer, now: Double) -> [Action] {
        if !peers.contains(peer) { peers.append(peer) }
        return assign(now: now)
    }

    public mutating func disconnected(_ peer: Peer, now: Double) -> [Action] {
        peers.removeAll { $0 == peer }
        for (checksum, ask) in inflight where ask.peer == peer { inflight[checksum] = nil }
        return assign(now: now)
    }

    public mutating func received(_ message: SnapshotMessage, from peer: Peer, now: Double) -> [Action] {
        guard case .code(let checksum, let wasm) = message, let ask = inflight[checksum], ask.peer == peer else {
            return []  // unasked: ignored
        }
        inflight[checksum] = nil
        var actions: [Action] = []
        if let wasm {
            if SHA256.hash(wasm) == checksum {
                missing.remove(checksum)
                failed[checksum] = nil
                actions.append(.store(checksum: checksum, wasm: wasm))
            } else {
                failed[checksum, default: []].insert(peer)
                actions.append(.discourage(peer, "served code that does not hash to \(checksum.hex.prefix(16))"))
            }
        } else {
            failed[checksum, default: []].insert(peer)
        }
        return actions + assign(now: now)
    }

    public mutating func tick(now: Double) -> [Action] {
        for (checksum, ask) in inflight where ask.deadline <= now {
            inflight[checksum] = nil
            failed[checksum, default: []].insert(ask.peer)
        }
        return assign(now: now)
    }

    private mutating func assign(now: Double) -> [Action] {
        guard !missing.isEmpty else { return [.done] }
        guard !peers.isEmpty else { return [] }
        var actions: [Action] = []
        for checksum in missing.sorted(by: { $0.lexicographicallyPrecedes($1) }) where inflight[checksum] == nil {
            var tried = failed[checksum] ?? []
            if tried.count >= peers.count {
                tried = []  // every peer failed it: start over
                failed[checksum] = nil
            }
            for _ in 0..<peers.count {
                let peer = peers[cursor % peers.count]
                cursor += 1
                guard !tried.contains(peer) else { continue }
                inflight[checksum] = (peer, now + Self.timeout)
                actions.append(.send(peer, .getCode(checksum: checksum)))
                break
            }
        }
        return actions
    }
}
