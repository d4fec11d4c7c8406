import Contracts
import Foundation
import Ledger
import NodeCrypto
import StateSync
import StateTree

/// The admin socket's contract methods, on the committed state: `querycontract` (smart
/// or raw, wasmd's two query kinds), `listcodes`, `listcontracts`, `getcontract`,
/// `getcode`, and `getcontractstate` (a contract's storage, each entry with its proof
/// against the certified state root when asked).
enum ContractAdmin {
    static let methods: Set<String> = [
        "querycontract", "listcodes", "listcontracts", "getcontract", "getcode", "getcontractstate",
    ]

    static func call(
        _ method: String, _ params: JSONValue, state: LedgerState, height: UInt64, engine: WasmEngine,
        certify: ([UInt8]) throws -> CertifiedProof
    ) throws(AdminError) -> JSONValue {
        switch method {
        case "querycontract":
            let contract = try address(params)
            if let raw = params["raw_key_hex"]?.stringValue
                ?? params["raw_key"]?.stringValue.map({ Array($0.utf8).hex })
            {
                guard let key = try? Hex.decode(raw) else { throw .invalidParams("raw_key_hex must be hex") }
                let value = state.tree.get(StateKey.contractStore(contract, key))
                return .object([
                    "height": .int(height), "key_hex": .string(key.hex),
                    "value": value.map { .string(String(decoding: $0, as: UTF8.self)) } ?? .null,
                    "value_hex": value.map { .string($0.hex) } ?? .null,
                ])
            }
            guard let msg = params["msg"] else {
                throw .invalidParams(
                    #"querycontract needs {"contract": ADDR, "msg": JSON} or {"contract", "raw_key_hex"}"#)
            }
            let text = msg.stringValue ?? msg.jsonText
            switch engine.query(state: state, contract: contract, msg: Array(text.utf8)) {
            case .success(let bytes):
                let answer = String(decoding: bytes, as: UTF8.self)
                return .object([
                    "height": .int(height), "data": (try? JSONValue.parse(answer)) ?? .string(answer),
                ])
            case .failure(let error):
                throw .serverError("query failed: \(error)")
            }
        case "listcodes":
            var codes: [JSONValue] = []
            state.tree.visitLeaves { leaf in
                guard leaf.key.starts(with: StateKey.codePrefix), leaf.key.count == StateKey.codePrefix.count + 8,
                    let info = try? CodeInfo.decode(leaf.value)
                else { return }
                let id = leaf.key.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                codes.append(codeJSON(id, info, engine: engine))
            }
            return .array(codes.sorted { ($0["code_id"]?.numberValue ?? 0) < ($1["code_id"]?.numberValue ?? 0) })
        case "listcontracts":
            var filter: UInt64?
            if let n = params["code_id"]?.numberValue {
                guard n >= 1, n < 1e15, n == n.rounded() else {
                    throw .invalidParams("code_id must be a whole number ≥ 1")
                }
                filter = UInt64(n)
            }
            var out: [JSONValue] = []
            state.tree.visitLeaves { leaf in
                guard leaf.key.starts(with: StateKey.contractPrefix),
                    leaf.key.count == StateKey.contractPrefix.count + 32,
                    let info = try? ContractInfo.decode(leaf.value), filter == nil || filter == info.codeID
                else { return }
                out.append(contractJSON(Array(leaf.key.suffix(32)), info, state: state))
            }
            return .array(out.sorted { ($0["created"]?.numberValue ?? 0) < ($1["created"]?.numberValue ?? 0) })
        case "getcontract":
            let contract = try address(params)
            guard let info = state.tree.get(StateKey.contract(contract)).flatMap({ try? ContractInfo.decode($0) })
            else {
                throw .serverError("no contract \(human(contract))")
            }
            return contractJSON(contract, info, state: state)
        case "getcode":
            guard let n = params["code_id"]?.numberValue, n >= 1, n == n.rounded(), n < 1e15 else {
                throw .invalidParams(#"getcode needs {"code_id": N}"#)
            }
            guard let info = state.tree.get(StateKey.code(UInt64(n))).flatMap({ try? CodeInfo.decode($0) }) else {
                throw .serverError("no code with id \(Int(n))")
            }
            var out = codeJSON(UInt64(n), info, engine: engine)
            if params["wasm"] == .bool(true) {
                guard let wasm = engine.codes.wasm(info.checksum) else {
                    throw .serverError("code \(info.checksum.hex) is not on this node yet")
                }
                if case .object(var fields) = out {
                    fields["wasm_hex"] = .string(wasm.hex)
                    out = .object(fields)
                }
            }
            return out
        case "getcontractstate":
            let contract = try address(params)
            let keys = state.contractIndex.keys(of: contract)
            let rawLimit = params["limit"]?.numberValue ?? 1_000
            guard rawLimit >= 1, rawLimit <= 10_000, rawLimit == rawLimit.rounded() else {
                throw .invalidParams("limit must be a whole number within 1…10000")
            }
            let limit = Int(rawLimit)
            let after = params["start_after_hex"]?.stringValue.flatMap { try? Hex.decode($0) }
            var selected = keys
            if let after { selected = selected.filter { after.lexicographicallyPrecedes($0) } }
            let page = Array(selected.prefix(limit))
            let withProof = params["proof"] == .bool(true)
            var entries: [JSONValue] = []
            for key in page {
                let treeKey = StateKey.contractStore(contract, key)
                var entry: [String: JSONValue] = [
                    "key_hex": .string(key.hex), "value_hex": .string((state.tree.get(treeKey) ?? []).hex),
                ]
                if withProof {
                    do { entry["proof_hex"] = .string(try certify(treeKey).encoded.hex) } catch {
                        throw .serverError("\(error)")
                    }
                }
                entries.append(.object(entry))
            }
            return .object([
                "contract": .string(human(contract)), "height": .int(height), "state_id": .string(state.root.hex),
                "entries": .array(entries), "more": .bool(selected.count > page.count),
            ])
        default:
            throw .methodNotFound(method)
        }
    }

    static func address(_ params: JSONValue) throws(AdminError) -> [UInt8] {
        guard let text = params["contract"]?.stringValue, let a = ContractAddressFormat.parse32(text) else {
            throw .invalidParams("contract must be a side1… address (or 64 hex digits)")
        }
        return a
    }

    static func human(_ bytes: [UInt8]) -> String { ContractAddressFormat.humanize(bytes) ?? bytes.hex }

    static func codeJSON(_ id: UInt64, _ info: CodeInfo, engine: WasmEngine) -> JSONValue {
        .object([
            "code_id": .int(id), "checksum": .string(info.checksum.hex),
            "creator": .string(human(info.creator.rawRepresentation)),
            "size": .int(Int(info.size)), "present": .bool(engine.codes.contains(info.checksum)),
        ])
    }

    static func contractJSON(_ address: [UInt8], _ info: ContractInfo, state: LedgerState) -> JSONValue {
        .object([
            "address": .string(human(address)), "address_hex": .string(address.hex), "code_id": .int(info.codeID),
            "label": .string(info.label), "creator": .string(human(info.creator.rawRepresentation)),
            "admin": info.admin.map { .string(human($0.rawRepresentation)) } ?? .null, "created": .int(info.created),
            "balance": .int(state.tree.get(StateKey.account(address)).flatMap(LedgerState.Account.init)?.balance ?? 0),
            "storage_keys": .int(state.contractIndex.keys(of: address).count),
        ])
    }
}
