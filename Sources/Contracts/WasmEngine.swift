import Foundation
import Ledger
import NodeCrypto
@_spi(Fuzzing) import WasmKit

/// The `wasm/` module: wasmd's keeper on this ledger. Stores code, instantiates
/// contracts at wasmd's addresses, executes and migrates them, dispatches their
/// submessages depth-first with replies (a failed submessage's writes are rolled back),
/// and answers queries. The ledger hands it a transaction's store and rolls everything
/// back if it fails.
public final class WasmEngine: ContractEngine, Sendable {
    public let codes: CodeStore
    /// Idle instances by code (used under `VM.lock`).
    let pool = InstancePool()

    public init(codes: CodeStore = CodeStore()) {
        self.codes = codes
    }

    public func handle(
        _ msg: ContractMsg, sender: Ed25519.PublicKey, context: ContractContext, store: inout ContractStore
    ) -> ContractOutcome {
        VM.lock.lock()
        defer { VM.lock.unlock() }
        let session = Session(
            engine: self, context: context, limitSDK: msg.gasLimit, store: ContractStore.take(&store), readOnly: false)
        defer { ContractStore.put(session.store, into: &store) }
        let sender = sender.rawRepresentation
        let result: Result<Session.Output, ContractError>
        switch msg {
        case .storeCode(let wasm, _):
            result = session.storeCode(wasm, creator: sender)
        case .instantiate(let codeID, let admin, let label, let message, let funds, _):
            result = session.instantiate(
                codeID: codeID, sender: sender, admin: admin?.rawRepresentation, label: label, msg: message,
                funds: funds)
        case .execute(let contract, let message, let funds, _):
            result = session.execute(contract: contract, sender: sender, msg: message, funds: funds)
        case .migrate(let contract, let codeID, let message, _):
            result = session.migrate(contract: contract, sender: sender, codeID: codeID, msg: message)
        }
        session.settleGas(failed: { if case .failure(.outOfGas) = result { true } else { false } }())
        switch result {
        case .success(let output):
            return ContractOutcome(failure: nil, output: output.json(events: session.events))
        case .failure(let error):
            return ContractOutcome(failure: error.description, output: nil)
        }
    }

    /// A smart query on the committed `state` (wasmd's `QuerySmartContractState`, with
    /// its default 3,000,000 gas). The answer is the contract's JSON.
    public func query(
        state: LedgerState, contract: [UInt8], msg: [UInt8], gasLimit: UInt64 = 3_000_000
    ) -> Result<[UInt8], ContractError> {
        VM.lock.lock()
        defer { VM.lock.unlock() }
        let context = ContractContext(chainID: state.chainID, height: state.version, txIndex: 0, txHash: [])
        let session = Session(
            engine: self, context: context, limitSDK: gasLimit, store: ContractStore(readOnly: state), readOnly: true)
        return session.smartQuery(contract: contract, msg: msg, fuel: nil)
    }

    /// Whether `wasm` would be accepted by `store_code` (the CLI checks before sending).
    public static func check(_ wasm: [UInt8]) -> ContractError? {
        switch UploadCheck.check(wasm) {
        case .failure(let e): return e
        case .success: return VM.validate(wasm)
        }
    }
}

extension ContractStore {
    /// Moves a store out of `slot` without copying its buffers (the slot keeps an empty one).
    static func take(_ slot: inout ContractStore) -> ContractStore {
        var out = ContractStore(readOnly: LedgerState(chainID: "", balances: [:]))
        swap(&out, &slot)
        return out
    }

    static func put(_ store: ContractStore, into slot: inout ContractStore) { slot = store }
}

/// One transaction's (or query's) contract work: the store it writes, the gas it has
/// used (CosmWasm units) against its limit, the events it has emitted.
final class Session {
    unowned let engine: WasmEngine
    let context: ContractContext
    var store: ContractStore
    let readOnly: Bool
    let limitCW: UInt64
    var usedCW: UInt64 = 0
    /// SDK gas the store charged for storage during calls (already in the store's count).
    var storageSDK: UInt64 = 0
    let startGas: UInt64
    var events: [ContractEvent] = []
    var queryDepth = 0

    static let maxDispatchDepth = 16
    static let maxQueryDepth = 10

    init(engine: WasmEngine, context: ContractContext, limitSDK: UInt64, store: ContractStore, readOnly: Bool) {
        self.engine = engine
        self.context = context
        self.store = store
        self.readOnly = readOnly
        limitCW =
            limitSDK.multipliedReportingOverflow(by: ContractGas.perSDKGas).overflow
            ? UInt64.max : limitSDK * ContractGas.perSDKGas
        startGas = store.pendingGas
    }

    struct Output {
        var contract: [UInt8]?
        var codeID: UInt64?
        var checksum: [UInt8]?
        var data: [UInt8]?

        func json(events: [ContractEvent]) -> String {
            var fields: [(String, String)] = []
            if let contract { fields.append(("contract_address", JSONText.string(human(contract)))) }
            if let codeID { fields.append(("code_id", String(codeID))) }
            if let checksum { fields.append(("checksum", JSONText.string(Hex.encode(checksum)))) }
            fields.append(("data", data.map(JSONText.base64) ?? "null"))
            let eventsJSON = JSONText.array(events.map(\.json))
            // The receipt is kept on disk by every node: its events are capped (they are
            // paid by size, but not part of the state root).
            if eventsJSON.utf8.count <= Self.maxEventsJSON {
                fields.append(("events", eventsJSON))
            } else {
                fields.append(("events", "[]"))
                fields.append(("events_omitted", String(events.count)))
            }
            return JSONText.object(fields)
        }

        static let maxEventsJSON = 64 * 1024
    }

    // MARK: Gas

    /// Where the running call must stop: the transaction's limit, or a submessage's own.
    var endCW: UInt64 { min(limitCW, subLimitEnd ?? .max) }
    var remainingCW: UInt64 { endCW > usedCW ? endCW - usedCW : 0 }

    /// Charges SDK gas the store does not see (instances, compile, events).
    func charge(sdk: UInt64) throws(ContractError) {
        try charge(cw: sdk.multipliedReportingOverflow(by: ContractGas.perSDKGas).partialValue)
    }

    func charge(cw: UInt64) throws(ContractError) {
        guard cw <= remainingCW else {
            usedCW = endCW
            throw .outOfGas
        }
        usedCW += cw
    }

    /// Puts the contract work's gas on the transaction (the store already counted the
    /// storage part); running out charges the whole limit, as the VM's meter does.
    func settleGas(failed outOfGas: Bool) {
        let used = outOfGas ? limitCW : usedCW
        let sdk = used / ContractGas.perSDKGas + (used % ContractGas.perSDKGas == 0 ? 0 : 1)
        if sdk > storageSDK { store.charge(sdk - storageSDK) }
    }

    // MARK: Calls

    func module(for codeID: UInt64) throws(ContractError) -> (checksum: [UInt8], module: Module) {
        guard let info = store.codeInfo(codeID) else { throw .refused("no code with id \(codeID)") }
        return (info.checksum, try engine.codes.module(info.checksum))
    }

    /// Runs one entry point of `contract` on a fresh instance. `fuelBudget` (a nested
    /// query's) replaces the session's own budget.
    func call(
        contract: [UInt8], codeID: UInt64, entry: String, readOnly: Bool, fuelBudget: UInt64? = nil,
        args: @escaping (Int) -> [[UInt8]]
    ) throws(ContractError) -> [UInt8] {
        let (checksum, module) = try module(for: codeID)
        if fuelBudget == nil { try charge(sdk: ContractGas.instanceSDK) }
        let fuel = fuelBudget ?? remainingCW / ContractGas.perFuel
        let env = CallEnvironment(session: self, contract: contract, readOnly: readOnly || self.readOnly)
        let (result, fuelUsed) = VM.run(
            module: module, checksum: checksum, pool: engine.pool, environment: env, entry: entry, fuel: fuel,
            argsFor: args)
        if fuelBudget == nil {
            // Fuel paid for the Wasm, the host calls and (as it was spent) the storage.
            usedCW = min(endCW, usedCW &+ fuelUsed &* ContractGas.perFuel)
        } else {
            lastNestedFuel = fuelUsed
        }
        return try result.get()
    }
    /// Fuel the last nested query used (its caller pays it from its own fuel).
    var lastNestedFuel: UInt64 = 0

    func envJSON(_ contract: [UInt8]) -> [UInt8] {
        let transaction =
            readOnly ? "null" : JSONText.object([("index", String(context.txIndex))])
        return Array(
            JSONText.object([
                (
                    "block",
                    JSONText.object([
                        ("height", String(context.height)), ("time", JSONText.string(String(context.timeNanos))),
                        ("chain_id", JSONText.string(context.chainID)),
                    ])
                ),
                ("transaction", transaction),
                ("contract", JSONText.object([("address", JSONText.string(human(contract)))])),
            ]).utf8)
    }

    func infoJSON(sender: [UInt8], funds: UInt64) -> [UInt8] {
        Array(
            JSONText.object([
                ("sender", JSONText.string(human(sender))),
                ("funds", JSONText.coins(funds, denom: ContractMsg.denom)),
            ]).utf8)
    }

    // MARK: Messages

    func storeCode(_ wasm: [UInt8], creator: [UInt8]) -> Result<Output, ContractError> {
        do throws(ContractError) {
            try charge(sdk: ContractGas.compilePerByteSDK &* UInt64(wasm.count))
            if let refusal = WasmEngine.check(wasm) { throw refusal }
            let checksum = engine.codes.put(wasm)
            let id = store.nextID(StateKey.lastCodeID)
            store.set(
                StateKey.code(id),
                CodeInfo(
                    checksum: checksum, creator: try! Ed25519.PublicKey(uncheckedRawRepresentation: creator),
                    size: UInt32(wasm.count)
                ).encoded)
            events.append(
                ContractEvent(
                    type: "store_code", attributes: [("code_checksum", Hex.encode(checksum)), ("code_id", String(id))]))
            return .success(Output(codeID: id, checksum: checksum))
        } catch {
            return .failure(error)
        }
    }

    func instantiate(
        codeID: UInt64, sender: [UInt8], admin: [UInt8]?, label: String, msg: [UInt8], funds: UInt64
    ) -> Result<Output, ContractError> {
        do throws(ContractError) {
            let (address, data) = try instantiateContract(
                codeID: codeID, sender: sender, admin: admin, label: label, msg: msg, funds: funds, depth: 0)
            return .success(Output(contract: address, codeID: codeID, data: data))
        } catch {
            return .failure(error)
        }
    }

    func instantiateContract(
        codeID: UInt64, sender: [UInt8], admin: [UInt8]?, label: String, msg: [UInt8], funds: UInt64, depth: Int
    ) throws(ContractError) -> ([UInt8], [UInt8]?) {
        guard store.codeInfo(codeID) != nil else { throw .refused("no code with id \(codeID)") }
        guard !label.isEmpty, label.utf8.count <= ContractMsg.maxLabelBytes else {
            throw .refused("a label must be 1…\(ContractMsg.maxLabelBytes) bytes")
        }
        if let admin, admin.count != 32 { throw .refused("an admin address is 32 bytes") }
        let instanceID = store.nextID(StateKey.lastInstanceID)
        let address = ContractAddress.classic(codeID: codeID, instanceID: instanceID)
        guard store.contractInfo(address) == nil else { throw .refused("contract address already in use") }
        store.setContractInfo(
            address,
            ContractInfo(
                codeID: codeID, creator: try! Ed25519.PublicKey(uncheckedRawRepresentation: sender),
                admin: admin.map { try! Ed25519.PublicKey(uncheckedRawRepresentation: $0) }, label: label,
                created: context.height))
        if let failure = store.transfer(from: sender, to: address, amount: funds) { throw .refused(failure) }
        events.append(
            ContractEvent(
                type: "instantiate", attributes: [("_contract_address", human(address)), ("code_id", String(codeID))]))
        let env = envJSON(address)
        let info = infoJSON(sender: sender, funds: funds)
        let result = try call(contract: address, codeID: codeID, entry: "instantiate", readOnly: false) { _ in
            [env, info, msg]
        }
        let data = try process(result, contract: address, depth: depth)
        return (address, data)
    }

    func execute(contract: [UInt8], sender: [UInt8], msg: [UInt8], funds: UInt64) -> Result<Output, ContractError> {
        do throws(ContractError) {
            let data = try executeContract(contract: contract, sender: sender, msg: msg, funds: funds, depth: 0)
            return .success(Output(contract: contract, data: data))
        } catch {
            return .failure(error)
        }
    }

    func executeContract(
        contract: [UInt8], sender: [UInt8], msg: [UInt8], funds: UInt64, depth: Int
    ) throws(ContractError) -> [UInt8]? {
        guard let info = store.contractInfo(contract) else { throw .refused("no contract at \(human(contract))") }
        if let failure = store.transfer(from: sender, to: contract, amount: funds) { throw .refused(failure) }
        events.append(
            ContractEvent(type: "execute", attributes: [("_contract_address", human(contract))]))
        let env = envJSON(contract)
        let infoJSON = infoJSON(sender: sender, funds: funds)
        let result = try call(contract: contract, codeID: info.codeID, entry: "execute", readOnly: false) { _ in
            [env, infoJSON, msg]
        }
        return try process(result, contract: contract, depth: depth)
    }

    func migrate(contract: [UInt8], sender: [UInt8], codeID: UInt64, msg: [UInt8]) -> Result<Output, ContractError> {
        do throws(ContractError) {
            let data = try migrateContract(contract: contract, sender: sender, codeID: codeID, msg: msg, depth: 0)
            return .success(Output(contract: contract, codeID: codeID, data: data))
        } catch {
            return .failure(error)
        }
    }

    func migrateContract(
        contract: [UInt8], sender: [UInt8], codeID: UInt64, msg: [UInt8], depth: Int
    ) throws(ContractError) -> [UInt8]? {
        guard var info = store.contractInfo(contract) else { throw .refused("no contract at \(human(contract))") }
        guard let admin = info.admin, admin.rawRepresentation == sender else {
            throw .refused("unauthorized: only the contract's admin may migrate it")
        }
        guard store.codeInfo(codeID) != nil else { throw .refused("no code with id \(codeID)") }
        info.codeID = codeID
        store.setContractInfo(contract, info)
        events.append(
            ContractEvent(
                type: "migrate", attributes: [("_contract_address", human(contract)), ("code_id", String(codeID))]))
        let env = envJSON(contract)
        let migrateInfo = Array(
            JSONText.object([("sender", JSONText.string(human(sender))), ("old_migrate_version", "null")]).utf8)
        let result = try call(contract: contract, codeID: codeID, entry: "migrate", readOnly: false) { arity in
            arity == 3 ? [env, msg, migrateInfo] : [env, msg]
        }
        return try process(result, contract: contract, depth: depth)
    }

    // MARK: Responses and submessages

    /// Reads a `ContractResult<Response>`, records its events, dispatches its messages
    /// (depth-first, replies as asked) and returns the data it ends with.
    func process(_ result: [UInt8], contract: [UInt8], depth: Int) throws(ContractError) -> [UInt8]? {
        guard let top = JSONText.parse(result) as? [String: Any] else {
            throw .trap("the contract's result is not a JSON object")
        }
        if let error = top["error"] { throw .contract((error as? String) ?? "contract error") }
        guard let response = top.object("ok") else { throw .trap("the result has neither ok nor error") }
        try recordEvents(response, contract: contract)
        var data: [UInt8]? = nil
        if let d = response.string("data") {
            guard let bytes = Data(base64Encoded: d) else { throw .trap("data is not base64") }
            data = Array(bytes)
        }
        for item in response.array("messages") ?? [] {
            guard let sub = item as? [String: Any], let msg = sub.object("msg") else {
                throw .trap("a submessage without msg")
            }
            guard let id = sub.uint64("id") else { throw .trap("a submessage without a u64 id") }
            let replyOn = sub.string("reply_on") ?? "never"
            guard ["always", "success", "error", "never"].contains(replyOn) else {
                throw .trap("reply_on '\(replyOn)'")
            }
            let payload = sub.string("payload") ?? ""
            let subLimit = sub.uint64("gas_limit").map {
                $0.multipliedReportingOverflow(by: ContractGas.perSDKGas).partialValue
            }
            let savepoint = store.savepoint
            let eventMark = events.count
            let gasBefore = usedCW
            let outcome: Result<(events: [ContractEvent], data: [UInt8]?), ContractError>
            do {
                let subData = try dispatch(msg, sender: contract, depth: depth + 1, limitCW: subLimit)
                outcome = .success((Array(events[eventMark...]), subData))
            } catch .outOfGas where subLimit == nil || remainingCW == 0 {
                throw .outOfGas  // the whole transaction's gas, which no reply can catch
            } catch {
                store.rollback(to: savepoint)
                events.removeSubrange(eventMark...)
                outcome = .failure(error)
            }
            let gasUsed = (usedCW - gasBefore) / ContractGas.perSDKGas
            let wantsReply: Bool
            switch (outcome, replyOn) {
            case (.success, "always"), (.success, "success"), (.failure, "always"), (.failure, "error"):
                wantsReply = true
            default: wantsReply = false
            }
            if case .failure(let error) = outcome, !wantsReply { throw error }
            guard wantsReply else { continue }
            let resultJSON: String
            switch outcome {
            case .success(let r):
                resultJSON = JSONText.object([
                    (
                        "ok",
                        JSONText.object([
                            ("events", JSONText.array(r.events.map(\.json))),
                            ("data", r.data.map(JSONText.base64) ?? "null"),
                            ("msg_responses", "[]"),
                        ])
                    )
                ])
            case .failure(let error):
                resultJSON = JSONText.object([("error", JSONText.string(error.description))])
            }
            let reply = Array(
                JSONText.object([
                    ("id", String(id)), ("payload", JSONText.string(payload)), ("gas_used", String(gasUsed)),
                    ("result", resultJSON),
                ]).utf8)
            guard let info = store.contractInfo(contract) else { throw .refused("the contract vanished") }
            let env = envJSON(contract)
            let replyResult = try call(contract: contract, codeID: info.codeID, entry: "reply", readOnly: false) { _ in
                [env, reply]
            }
            if let replyData = try process(replyResult, contract: contract, depth: depth + 1) { data = replyData }
        }
        return data
    }

    /// Runs one `CosmosMsg` sent by `sender` (a contract).
    func dispatch(
        _ msg: [String: Any], sender: [UInt8], depth: Int, limitCW: UInt64?
    ) throws(ContractError) -> [UInt8]? {
        guard depth <= Self.maxDispatchDepth else { throw .refused("submessages nested too deep") }
        if let bank = msg.object("bank") {
            guard let send = bank.object("send") else { throw .refused("unsupported bank message") }
            guard let to = send.string("to_address"),
                case .success(let recipient) = ContractAddressFormat.canonicalize(to),
                recipient.count == 32
            else { throw .refused("invalid to_address") }
            let amount = try nativeAmount(send.array("amount") ?? [])
            if let failure = store.transfer(from: sender, to: recipient, amount: amount) { throw .refused(failure) }
            events.append(
                ContractEvent(
                    type: "transfer",
                    attributes: [
                        ("recipient", to), ("sender", human(sender)), ("amount", "\(amount)\(ContractMsg.denom)"),
                    ]))
            return nil
        }
        guard let wasm = msg.object("wasm") else {
            throw .refused("unsupported message \(msg.keys.sorted().first ?? "?") (bank and wasm are supported)")
        }
        func address(_ text: String?) throws(ContractError) -> [UInt8] {
            guard let text, case .success(let a) = ContractAddressFormat.canonicalize(text), a.count == 32 else {
                throw .refused("invalid contract address")
            }
            return a
        }
        func message(_ text: String?) throws(ContractError) -> [UInt8] {
            guard let text, let d = Data(base64Encoded: text), d.count <= ContractMsg.maxMessageBytes else {
                throw .refused("msg must be base64 JSON")
            }
            return Array(d)
        }
        if let execute = wasm.object("execute") {
            let contract = try address(execute.string("contract_addr"))
            let funds = try nativeAmount(execute.array("funds") ?? [])
            return try withLimit(limitCW) { () throws(ContractError) in
                try executeContract(
                    contract: contract, sender: sender, msg: try message(execute.string("msg")), funds: funds,
                    depth: depth)
            }
        }
        if let instantiate = wasm.object("instantiate") {
            guard let codeID = instantiate.uint64("code_id") else { throw .refused("code_id missing") }
            let admin = try instantiate.string("admin").map { (t: String) throws(ContractError) in try address(t) }
            let funds = try nativeAmount(instantiate.array("funds") ?? [])
            let label = instantiate.string("label") ?? ""
            let msgBytes = try message(instantiate.string("msg"))
            return try withLimit(limitCW) { () throws(ContractError) in
                try instantiateContract(
                    codeID: codeID, sender: sender, admin: admin, label: label, msg: msgBytes, funds: funds,
                    depth: depth
                ).1
            }
        }
        if let migrate = wasm.object("migrate") {
            let contract = try address(migrate.string("contract_addr"))
            guard let codeID = migrate.uint64("new_code_id") else { throw .refused("new_code_id missing") }
            let msgBytes = try message(migrate.string("msg"))
            return try withLimit(limitCW) { () throws(ContractError) in
                try migrateContract(contract: contract, sender: sender, codeID: codeID, msg: msgBytes, depth: depth)
            }
        }
        throw .refused("unsupported wasm message")
    }

    /// Runs `body` with at most `limitCW` more gas (a submessage's own `gas_limit`).
    func withLimit<T>(_ limitCW: UInt64?, _ body: () throws(ContractError) -> T) throws(ContractError) -> T {
        guard let limitCW, limitCW < remainingCW else { return try body() }
        let start = usedCW
        let outerLimit = self.subLimitEnd
        self.subLimitEnd = min(outerLimit ?? .max, start + limitCW)
        defer { self.subLimitEnd = outerLimit }
        let result = try body()
        if usedCW > start + limitCW { throw .outOfGas }
        return result
    }
    var subLimitEnd: UInt64?

    func nativeAmount(_ coins: [Any]) throws(ContractError) -> UInt64 {
        var total: UInt64 = 0
        for item in coins {
            guard let coin = item as? [String: Any], let denom = coin.string("denom"),
                let amount = coin.decimal("amount")
            else { throw .refused("invalid coin") }
            guard denom == ContractMsg.denom else {
                throw .refused("unknown denom '\(denom)' (this chain has \(ContractMsg.denom))")
            }
            let (sum, overflow) = total.addingReportingOverflow(amount)
            guard !overflow else { throw .refused("coin amount overflows") }
            total = sum
        }
        return total
    }

    /// wasmd's events: the response's attributes in a `wasm` event, custom events as
    /// `wasm-<type>`, each led by `_contract_address`; attribute keys may not be empty or
    /// start with `_` (reserved). Events cost gas by count and size.
    func recordEvents(_ response: [String: Any], contract: [UInt8]) throws(ContractError) {
        func attributes(_ list: [Any]?) throws(ContractError) -> [(key: String, value: String)] {
            var out: [(key: String, value: String)] = []
            for item in list ?? [] {
                guard let a = item as? [String: Any], let key = a.string("key"), let value = a.string("value") else {
                    throw .trap("an attribute without key or value")
                }
                let trimmed = key.trimmingCharacters(in: .whitespaces)
                guard !trimmed.isEmpty else { throw .refused("empty attribute key") }
                guard !trimmed.hasPrefix("_") else { throw .refused("attribute key '\(key)' starts with _ (reserved)") }
                out.append((key, value))
            }
            return out
        }
        let address = human(contract)
        var new: [ContractEvent] = []
        let attrs = try attributes(response.array("attributes"))
        if !attrs.isEmpty {
            new.append(ContractEvent(type: "wasm", attributes: [("_contract_address", address)] + attrs))
        }
        for item in response.array("events") ?? [] {
            guard let e = item as? [String: Any], let type = e.string("type") else {
                throw .trap("an event without type")
            }
            guard type.trimmingCharacters(in: .whitespaces).count >= 2 else { throw .refused("event type too short") }
            new.append(
                ContractEvent(
                    type: "wasm-" + type,
                    attributes: [("_contract_address", address)] + (try attributes(e.array("attributes")))))
        }
        var sdk: UInt64 = 0
        for event in new {
            if event.type != "wasm" { sdk &+= ContractGas.perCustomEventSDK }
            sdk &+= ContractGas.perAttributeSDK &* UInt64(event.attributes.count)
            let bytes = event.attributes.reduce(event.type.utf8.count) { $0 + $1.key.utf8.count + $1.value.utf8.count }
            if bytes > ContractGas.freeEventBytes { sdk &+= UInt64(bytes - ContractGas.freeEventBytes) }
        }
        try charge(sdk: sdk)
        events += new
    }

    // MARK: Queries

    func smartQuery(contract: [UInt8], msg: [UInt8], fuel: UInt64?) -> Result<[UInt8], ContractError> {
        do {
            guard let info = store.contractInfo(contract) else {
                throw ContractError.refused("no contract at \(human(contract))")
            }
            let env = envJSON(contract)
            let result = try call(
                contract: contract, codeID: info.codeID, entry: "query", readOnly: true, fuelBudget: fuel
            ) { _ in [env, msg] }
            guard let top = JSONText.parse(result) as? [String: Any] else {
                throw ContractError.trap("the query result is not a JSON object")
            }
            if let error = top["error"] { throw ContractError.contract((error as? String) ?? "query error") }
            guard let ok = top.string("ok"), let data = Data(base64Encoded: ok) else {
                throw ContractError.trap("the query result is not {\"ok\": base64}")
            }
            return .success(Array(data))
        } catch let error as ContractError {
            return .failure(error)
        } catch {
            return .failure(.trap("\(error)"))
        }
    }

    /// `query_chain`: bank balances and wasm smart/raw/contract-info queries, answered as
    /// `SystemResult<ContractResult<Binary>>`. A nested smart query runs on its own
    /// instance and pays from the caller's fuel.
    func queryChain(_ request: [UInt8], caller: borrowing Caller) -> String {
        func ok(_ json: String) -> String {
            JSONText.object([("ok", JSONText.object([("ok", JSONText.base64(Array(json.utf8)))]))])
        }
        func contractError(_ text: String) -> String {
            JSONText.object([("ok", JSONText.object([("error", JSONText.string(text))]))])
        }
        func systemError(_ kind: String, _ fields: [(String, String)]) -> String {
            JSONText.object([("error", JSONText.object([(kind, JSONText.object(fields))]))])
        }
        guard let req = JSONText.parse(request) as? [String: Any] else {
            return systemError(
                "invalid_request",
                [("error", JSONText.string("not a JSON object")), ("request", JSONText.base64(request))])
        }
        if let bank = req.object("bank") {
            if let balance = bank.object("balance"), let address = balance.string("address") {
                let denom = balance.string("denom") ?? ContractMsg.denom
                var amount: UInt64 = 0
                if denom == ContractMsg.denom, case .success(let a) = ContractAddressFormat.canonicalize(address) {
                    amount = store.balance(of: a)
                }
                return ok(
                    JSONText.object([
                        (
                            "amount",
                            JSONText.object([
                                ("denom", JSONText.string(denom)), ("amount", JSONText.string(String(amount))),
                            ])
                        )
                    ]))
            }
            if let all = bank.object("all_balances"), let address = all.string("address") {
                var amount: UInt64 = 0
                if case .success(let a) = ContractAddressFormat.canonicalize(address) { amount = store.balance(of: a) }
                return ok(JSONText.object([("amount", JSONText.coins(amount, denom: ContractMsg.denom))]))
            }
        }
        if let wasm = req.object("wasm") {
            func target(_ q: [String: Any]) -> [UInt8]? {
                guard let text = q.string("contract_addr"),
                    case .success(let a) = ContractAddressFormat.canonicalize(text),
                    a.count == 32, store.contractInfo(a) != nil
                else { return nil }
                return a
            }
            if let smart = wasm.object("smart") {
                guard let contract = target(smart) else {
                    return systemError(
                        "no_such_contract", [("addr", JSONText.string(smart.string("contract_addr") ?? ""))])
                }
                guard let text = smart.string("msg"), let msg = Data(base64Encoded: text) else {
                    return contractError("msg must be base64")
                }
                guard queryDepth < Self.maxQueryDepth else { return contractError("query stack too deep") }
                // A nested instance costs what any call does (wasmd's SetupContractCost), from the caller's fuel.
                let setup = ContractGas.instanceSDK * ContractGas.perSDKGas / ContractGas.perFuel
                guard let have = caller.store.fuel?.remaining, have >= setup else {
                    caller.store.fuel = Fuel(remaining: 0)
                    return contractError("out of gas")
                }
                caller.store.fuel = Fuel(remaining: have - setup)
                let budget = caller.store.fuel?.remaining ?? 0
                lastNestedFuel = 0
                queryDepth += 1
                let answer = smartQuery(contract: contract, msg: Array(msg), fuel: budget)
                queryDepth -= 1
                caller.store.fuel = Fuel(remaining: budget - min(budget, lastNestedFuel))
                switch answer {
                case .success(let bytes):
                    return JSONText.object([("ok", JSONText.object([("ok", JSONText.base64(bytes))]))])
                case .failure(let error):
                    return contractError(error.description)
                }
            }
            if let raw = wasm.object("raw") {
                guard let contract = target(raw) else {
                    return systemError(
                        "no_such_contract", [("addr", JSONText.string(raw.string("contract_addr") ?? ""))])
                }
                guard let text = raw.string("key"), let key = Data(base64Encoded: text) else {
                    return contractError("key must be base64")
                }
                let value = store.contractGet(contract, Array(key)) ?? []
                return JSONText.object([("ok", JSONText.object([("ok", JSONText.base64(value))]))])
            }
            if let q = wasm.object("contract_info") {
                guard let contract = target(q), let info = store.contractInfo(contract) else {
                    return systemError("no_such_contract", [("addr", JSONText.string(q.string("contract_addr") ?? ""))])
                }
                return ok(
                    JSONText.object([
                        ("code_id", String(info.codeID)),
                        ("creator", JSONText.string(human(info.creator.rawRepresentation))),
                        ("admin", info.admin.map { JSONText.string(human($0.rawRepresentation)) } ?? "null"),
                        ("pinned", "false"), ("ibc_port", "null"),
                    ]))
            }
        }
        let kind = req.keys.sorted().first ?? "unknown"
        return systemError("unsupported_request", [("kind", JSONText.string(kind))])
    }
}

func human(_ address: [UInt8]) -> String { ContractAddressFormat.humanize(address) ?? Hex.encode(address) }
