/// A token of a Noise message pattern (§7.1). PSK patterns are not supported.
public enum NoiseToken: String, Sendable, Hashable {
    case e, s, ee, es, se, ss
}

/// A handshake pattern: pre-messages and the message sequence, written in the
/// notation of the Noise specification §7 so each entry can be checked against it.
public struct HandshakePattern: Sendable, Hashable {
    public let name: String
    public let initiatorPreMessage: [NoiseToken]
    public let responderPreMessage: [NoiseToken]
    /// Messages in order; even indexes are sent by the initiator, except in one-way
    /// patterns where every message goes from initiator to responder.
    public let messages: [[NoiseToken]]
    public let isOneWay: Bool

    /// Parses the spec's notation, e.g. `"-> s\n<- s\n...\n-> e, es, ss\n<- e, ee, se"`.
    init(name: String, _ notation: String, oneWay: Bool = false) {
        var pre = true
        var initiatorPre: [NoiseToken] = []
        var responderPre: [NoiseToken] = []
        var messages: [[NoiseToken]] = []
        let hasPre = notation.contains("...")
        for rawLine in notation.split(separator: "\n") {
            let line = trimmed(rawLine)
            if line == "..." {
                pre = false
                continue
            }
            let fromInitiator = line.hasPrefix("->")
            let tokens = line.dropFirst(2).split(separator: ",").map {
                NoiseToken(rawValue: trimmed($0))!
            }
            if hasPre && pre {
                if fromInitiator { initiatorPre += tokens } else { responderPre += tokens }
            } else {
                messages.append(tokens)
            }
        }
        self.name = name
        self.initiatorPreMessage = initiatorPre
        self.responderPreMessage = responderPre
        self.messages = messages
        self.isOneWay = oneWay
    }

    /// Who sends message `index`.
    func initiatorSends(_ index: Int) -> Bool { isOneWay || index % 2 == 0 }

    public static func named(_ name: String) -> HandshakePattern? { all[name] }

    // §7.4 one-way patterns, §7.5 interactive patterns, §7.6 deferred patterns.
    static let all: [String: HandshakePattern] = {
        let table: [(String, String, Bool)] = [
            ("N", "<- s\n...\n-> e, es", true),
            ("K", "-> s\n<- s\n...\n-> e, es, ss", true),
            ("X", "<- s\n...\n-> e, es, s, ss", true),
            ("NN", "-> e\n<- e, ee", false),
            ("NK", "<- s\n...\n-> e, es\n<- e, ee", false),
            ("NX", "-> e\n<- e, ee, s, es", false),
            ("KN", "-> s\n...\n-> e\n<- e, ee, se", false),
            ("KK", "-> s\n<- s\n...\n-> e, es, ss\n<- e, ee, se", false),
            ("KX", "-> s\n...\n-> e\n<- e, ee, se, s, es", false),
            ("XN", "-> e\n<- e, ee\n-> s, se", false),
            ("XK", "<- s\n...\n-> e, es\n<- e, ee\n-> s, se", false),
            ("XX", "-> e\n<- e, ee, s, es\n-> s, se", false),
            ("IN", "-> e, s\n<- e, ee, se", false),
            ("IK", "<- s\n...\n-> e, es, s, ss\n<- e, ee, se", false),
            ("IX", "-> e, s\n<- e, ee, se, s, es", false),
            ("NK1", "<- s\n...\n-> e\n<- e, ee, es", false),
            ("NX1", "-> e\n<- e, ee, s\n-> es", false),
            ("X1N", "-> e\n<- e, ee\n-> s\n<- se", false),
            ("X1K", "<- s\n...\n-> e, es\n<- e, ee\n-> s\n<- se", false),
            ("XK1", "<- s\n...\n-> e\n<- e, ee, es\n-> s, se", false),
            ("X1K1", "<- s\n...\n-> e\n<- e, ee, es\n-> s\n<- se", false),
            ("X1X", "-> e\n<- e, ee, s, es\n-> s\n<- se", false),
            ("XX1", "-> e\n<- e, ee, s\n-> es, s, se", false),
            ("X1X1", "-> e\n<- e, ee, s\n-> es, s\n<- se", false),
            ("K1N", "-> s\n...\n-> e\n<- e, ee\n-> se", false),
            ("K1K", "-> s\n<- s\n...\n-> e, es\n<- e, ee\n-> se", false),
            ("KK1", "-> s\n<- s\n...\n-> e\n<- e, ee, se, es", false),
            ("K1K1", "-> s\n<- s\n...\n-> e\n<- e, ee, es\n-> se", false),
            ("K1X", "-> s\n...\n-> e\n<- e, ee, s, es\n-> se", false),
            ("KX1", "-> s\n...\n-> e\n<- e, ee, se, s\n-> es", false),
            ("K1X1", "-> s\n...\n-> e\n<- e, ee, s\n-> se, es", false),
            ("I1N", "-> e, s\n<- e, ee\n-> se", false),
            ("I1K", "<- s\n...\n-> e, es, s\n<- e, ee\n-> se", false),
            ("IK1", "<- s\n...\n-> e, s\n<- e, ee, se, es", false),
            ("I1K1", "<- s\n...\n-> e, s\n<- e, ee, es\n-> se", false),
            ("I1X", "-> e, s\n<- e, ee, s, es\n-> se", false),
            ("IX1", "-> e, s\n<- e, ee, se, s\n-> es", false),
            ("I1X1", "-> e, s\n<- e, ee, s\n-> se, es", false),
        ]
        var patterns: [String: HandshakePattern] = [:]
        for (name, notation, oneWay) in table {
            patterns[name] = HandshakePattern(name: name, notation, oneWay: oneWay)
        }
        return patterns
    }()
}

/// The hash functions this implementation offers for Noise (§12.5, §12.8).
public enum NoiseHash: String, Sendable, Hashable {
    case sha256 = "SHA256"
    case blake2b = "BLAKE2b"
}

/// A parsed protocol name `Noise_<pattern>_25519_ChaChaPoly_<hash>`.
public struct NoiseProtocol: Sendable, Hashable {
    public let name: String
    public let pattern: HandshakePattern
    public let hash: NoiseHash

    public init(name: String) throws(NoiseError) {
        let parts = name.split(separator: "_").map(String.init)
        guard parts.count == 5, parts[0] == "Noise", parts[2] == "25519", parts[3] == "ChaChaPoly" else {
            throw NoiseError(.unsupportedProtocol, "only Noise_*_25519_ChaChaPoly_* is supported, got \(name)")
        }
        guard let pattern = HandshakePattern.named(parts[1]) else {
            throw NoiseError(.unsupportedProtocol, "unknown or unsupported pattern \(parts[1])")
        }
        guard let hash = NoiseHash(rawValue: parts[4]) else {
            throw NoiseError(.unsupportedProtocol, "unsupported hash \(parts[4])")
        }
        self.name = name
        self.pattern = pattern
        self.hash = hash
    }
}

private func trimmed(_ s: Substring) -> String {
    String(s.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
}
