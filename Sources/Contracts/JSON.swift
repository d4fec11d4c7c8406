import Foundation

/// JSON for the contract ABI. What the host writes into a contract (Env, MessageInfo,
/// Reply, query answers) must be byte-identical on every node — its length is charged
/// as gas — so it is built here field by field in CosmWasm's order, never through a
/// dictionary. What a contract returns is parsed with Foundation.
enum JSONText {
    static func string(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { string($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }

    static func base64(_ bytes: [UInt8]) -> String { string(Data(bytes).base64EncodedString()) }

    static func coins(_ amount: UInt64, denom: String) -> String {
        amount == 0 ? "[]" : array([object([("denom", string(denom)), ("amount", string(String(amount)))])])
    }

    /// Parses a contract's JSON (at most `limit` bytes), or nil.
    static func parse(_ bytes: [UInt8], limit: Int = 256 * 1024) -> Any? {
        guard bytes.count <= limit else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    }

    static func encode(_ value: Any) -> String {
        guard JSONSerialization.isValidJSONObject(value),
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Typed access to parsed JSON.
extension Dictionary where Key == String, Value == Any {
    func string(_ key: String) -> String? { self[key] as? String }
    func object(_ key: String) -> [String: Any]? { self[key] as? [String: Any] }
    func array(_ key: String) -> [Any]? { self[key] as? [Any] }
    func uint64(_ key: String) -> UInt64? {
        // An integer exactly: 1.5, -1 and 1e30 are not one.
        guard let n = self[key] as? NSNumber else { return nil }
        let u = n.uint64Value
        return n.stringValue == String(u) ? u : nil
    }
    /// A CosmWasm `Uint64`/`Uint128` (a decimal string) that fits a u64.
    func decimal(_ key: String) -> UInt64? { string(key).flatMap(UInt64.init) }
}

/// An event as CosmWasm (and wasmd's receipts) define it.
public struct ContractEvent: Sendable, Equatable {
    public var type: String
    public var attributes: [(key: String, value: String)]

    public static func == (a: ContractEvent, b: ContractEvent) -> Bool {
        a.type == b.type && a.attributes.map(\.key) == b.attributes.map(\.key)
            && a.attributes.map(\.value) == b.attributes.map(\.value)
    }

    var json: String {
        JSONText.object([
            ("type", JSONText.string(type)),
            (
                "attributes",
                JSONText.array(
                    attributes.map {
                        JSONText.object([("key", JSONText.string($0.key)), ("value", JSONText.string($0.value))])
                    })
            ),
        ])
    }
}
