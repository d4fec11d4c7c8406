import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A client of the esplora HTTP API (Blockstream's electrs; mempool.space, Mutinynet).
///
/// Built on Foundation's `URLSession` (FoundationNetworking on Linux, itself on
/// libcurl): async/await, timeouts and TLS come with it, and no C code is ours to
/// maintain. Requests that fail on the way (connection refused, timeout, HTTP 5xx/429)
/// are retried with exponential backoff; an answer the server gives (HTTP 4xx, such as a
/// rejected broadcast) is not, and its text — the server's own message, e.g.
/// `bad-txns-inputs-missingorspent` — is in the error.
public struct EsploraClient: Sendable {
    public let base: URL
    public var timeout: Double = 15
    public var retries = 3
    /// First retry after this many seconds, doubling each time.
    public var backoff: Double = 0.5

    public init(base: URL) {
        self.base = base
    }

    public init(_ text: String) throws(EsploraError) {
        guard let url = URL(string: text.hasSuffix("/") ? String(text.dropLast()) : text), url.scheme != nil else {
            throw .badURL(text)
        }
        base = url
    }

    /// Block heights a server may report: anything else is a lie that arithmetic on
    /// heights must never see (Bitcoin is far below 10^8 blocks).
    public static let heights = 0...100_000_000

    public struct Status: Sendable, Equatable, Decodable {
        public let confirmed: Bool
        public let block_height: Int?
        public let block_hash: String?
        public let block_time: Int?

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            confirmed = try c.decode(Bool.self, forKey: .confirmed)
            block_height = try c.decodeIfPresent(Int.self, forKey: .block_height)
            block_hash = try c.decodeIfPresent(String.self, forKey: .block_hash)
            block_time = try c.decodeIfPresent(Int.self, forKey: .block_time)
            if let height = block_height, !EsploraClient.heights.contains(height) {
                throw DecodingError.dataCorruptedError(
                    forKey: .block_height, in: c, debugDescription: "block height \(height) out of range")
            }
        }

        enum CodingKeys: String, CodingKey {
            case confirmed, block_height, block_hash, block_time
        }
    }

    public struct UTXO: Sendable, Equatable, Decodable {
        public let txid: String
        public let vout: UInt32
        public let value: UInt64
        public let status: Status
    }

    public struct Outspend: Sendable, Equatable, Decodable {
        public let spent: Bool
        public let txid: String?
        public let vin: Int?
        public let status: Status?
    }

    public func tipHeight() async throws(EsploraError) -> Int {
        let text = try await string("blocks/tip/height")
        guard let height = Int(text), Self.heights.contains(height) else {
            throw .decode("tip height: \(text.prefix(80))")
        }
        return height
    }

    public func tipHash() async throws(EsploraError) -> String { try await string("blocks/tip/hash") }
    public func blockHash(height: Int) async throws(EsploraError) -> String {
        try await string("block-height/\(height)")
    }

    public func utxos(address: String) async throws(EsploraError) -> [UTXO] {
        try await json("address/\(address)/utxo")
    }

    public func status(txid: String) async throws(EsploraError) -> Status { try await json("tx/\(txid)/status") }
    public func transactionHex(txid: String) async throws(EsploraError) -> String { try await string("tx/\(txid)/hex") }

    public func outspend(txid: String, vout: UInt32) async throws(EsploraError) -> Outspend {
        try await json("tx/\(txid)/outspend/\(vout)")
    }

    /// Fee rates (sat/vB) by confirmation target in blocks.
    public func feeEstimates() async throws(EsploraError) -> [Int: Double] {
        let raw: [String: Double] = try await json("fee-estimates")
        return Dictionary(uniqueKeysWithValues: raw.compactMap { key, value in Int(key).map { ($0, value) } })
    }

    /// The fee rate for confirmation within `target` blocks: the estimate for the
    /// largest target not above it.
    public func feeRate(target: Int) async throws(EsploraError) -> Double {
        let estimates = try await feeEstimates()
        guard
            let best = estimates.filter({ $0.key <= target }).max(by: { $0.key < $1.key })
                ?? estimates.min(by: { $0.key < $1.key })
        else { throw .decode("no fee estimates") }
        return best.value
    }

    /// `POST /tx`: returns the txid; a refusal carries the node's reason.
    public func broadcast(hex: String) async throws(EsploraError) -> String {
        let data = try await request("tx", method: "POST", body: Data(hex.utf8), retry: false)
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: Transport

    func string(_ path: String) async throws(EsploraError) -> String {
        String(decoding: try await request(path), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func json<T: Decodable>(_ path: String) async throws(EsploraError) -> T {
        let data = try await request(path)
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw .decode("\(path): \(error)")
        }
    }

    public func request(
        _ path: String, method: String = "GET", body: Data? = nil, retry: Bool = true
    ) async throws(EsploraError) -> Data {
        var request = URLRequest(url: base.appendingPathComponent(path), timeoutInterval: timeout)
        request.httpMethod = method
        request.httpBody = body
        if body != nil { request.setValue("text/plain", forHTTPHeaderField: "Content-Type") }
        var attempt = 0
        while true {
            let outcome: Result<(Data, Int), EsploraError>
            do {
                let (data, response) = try await URLSession.shared.data(for: request)
                outcome = .success((data, (response as? HTTPURLResponse)?.statusCode ?? 0))
            } catch {
                outcome = .failure(.transport("\(base.absoluteString)/\(path): \(error.localizedDescription)"))
            }
            switch outcome {
            case .success((let data, let status)) where (200..<300).contains(status):
                return data
            case .success((let data, let status)) where status == 429 || status >= 500:
                if !retry || attempt >= retries { throw .http(status: status, message: Self.message(data)) }
            case .success((let data, let status)):
                throw .http(status: status, message: Self.message(data))
            case .failure(let error):
                if !retry || attempt >= retries { throw error }
            }
            attempt += 1
            try? await Task.sleep(for: .seconds(backoff * Double(1 << (attempt - 1))))
        }
    }

    static func message(_ data: Data) -> String {
        String(decoding: data.prefix(2_000), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

public enum EsploraError: Error, Equatable, CustomStringConvertible, Sendable {
    case badURL(String)
    case transport(String)
    case http(status: Int, message: String)
    case decode(String)

    public var description: String {
        switch self {
        case .badURL(let text): "not an esplora URL: \(text)"
        case .transport(let text): "esplora unreachable: \(text)"
        case .http(let status, let message): "esplora HTTP \(status): \(message)"
        case .decode(let text): "unexpected esplora answer: \(text)"
        }
    }
}
