import Contracts
import Foundation
import Ledger
import NodeCrypto
import TestSupport
import Testing

func json(_ text: String) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
}

@Suite("Example contracts run on the ledger: counter, CW20, submessages")
struct ExampleContractTests {
    @Test("counter: instantiate, increment, reset by its owner only, query, migrate by the admin only")
    func counter() throws {
        var h = ContractHarness()
        let (codeID, stored) = h.store(try ExampleContracts.wasm("counter"))
        #expect(stored.code == .ok, "\(stored.failure ?? "")")
        let id = try #require(codeID)
        let (address, receipt) = h.instantiate(id, #"{"count":5}"#, admin: h.alice.publicKey)
        #expect(receipt.code == .ok, "\(receipt.failure ?? "")")
        let contract = try #require(address)
        #expect(h.execute(contract, #"{"increment":{}}"#).code == .ok)
        #expect(try h.query(contract, #"{"get_count":{}}"#).get() == #"{"count":6}"#)
        // Only the owner resets; the failure leaves the count as it was.
        let denied = h.execute(contract, #"{"reset":{"count":0}}"#, from: h.bob)
        #expect(denied.code == .failed)
        #expect(denied.failure?.contains("Unauthorized") == true)
        #expect(try h.query(contract, #"{"get_count":{}}"#).get() == #"{"count":6}"#)
        #expect(h.execute(contract, #"{"reset":{"count":42}}"#).code == .ok)
        #expect(try h.query(contract, #"{"get_count":{}}"#).get() == #"{"count":42}"#)
        // The receipt carries the wasm event with the contract's attributes.
        let inc = h.execute(contract, #"{"increment":{}}"#)
        let events = try #require(json(inc.output ?? "")?["events"] as? [[String: Any]])
        #expect(events.contains { ($0["type"] as? String) == "wasm" })
        // Migrate: bob is not the admin.
        let notAdmin = h.run(
            .migrate(contract: contract, codeID: id, msg: Array("{}".utf8), gasLimit: 5_000_000), from: h.bob)
        #expect(notAdmin.failure?.contains("admin") == true)
        let migrated = h.run(.migrate(contract: contract, codeID: id, msg: Array("{}".utf8), gasLimit: 5_000_000))
        #expect(migrated.code == .ok, "\(migrated.failure ?? "")")
    }

    @Test("CW20: transfer, balances, token_info, allowances, all_accounts with pagination, mint cap")
    func cw20() throws {
        var h = ContractHarness()
        let id = try #require(h.store(try ExampleContracts.wasm("cw20")).0)
        let alice = h.human(h.alice.publicKey)
        let bob = h.human(h.bob.publicKey)
        let instantiate = """
            {"name":"Side Token","symbol":"SIDE","decimals":6,"initial_balances":[{"address":"\(alice)","amount":"1000"}],"mint":{"minter":"\(alice)","cap":"2000"}}
            """
        let (address, receipt) = h.instantiate(id, instantiate)
        #expect(receipt.code == .ok, "\(receipt.failure ?? "")")
        let token = try #require(address)
        let transfer = h.execute(token, #"{"transfer":{"recipient":"\#(bob)","amount":"250"}}"#)
        #expect(transfer.code == .ok, "\(transfer.failure ?? "")")
        #expect(try h.query(token, #"{"balance":{"address":"\#(alice)"}}"#).get() == #"{"balance":"750"}"#)
        #expect(try h.query(token, #"{"balance":{"address":"\#(bob)"}}"#).get() == #"{"balance":"250"}"#)
        let info = try #require(json(try h.query(token, #"{"token_info":{}}"#).get()))
        #expect(info["total_supply"] as? String == "1000")
        #expect(info["symbol"] as? String == "SIDE")
        // Overspending fails and changes nothing.
        let over = h.execute(token, #"{"transfer":{"recipient":"\#(alice)","amount":"251"}}"#, from: h.bob)
        #expect(over.code == .failed)
        #expect(try h.query(token, #"{"balance":{"address":"\#(bob)"}}"#).get() == #"{"balance":"250"}"#)
        // Allowances.
        #expect(h.execute(token, #"{"increase_allowance":{"spender":"\#(bob)","amount":"100"}}"#).code == .ok)
        let from = h.execute(
            token, #"{"transfer_from":{"owner":"\#(alice)","recipient":"\#(bob)","amount":"60"}}"#, from: h.bob)
        #expect(from.code == .ok, "\(from.failure ?? "")")
        let allowance = try #require(
            json(try h.query(token, #"{"allowance":{"owner":"\#(alice)","spender":"\#(bob)"}}"#).get()))
        #expect(allowance["allowance"] as? String == "40")
        // Mint up to the cap, not past it.
        #expect(h.execute(token, #"{"mint":{"recipient":"\#(bob)","amount":"1000"}}"#).code == .ok)
        let capped = h.execute(token, #"{"mint":{"recipient":"\#(bob)","amount":"1"}}"#)
        #expect(capped.failure?.contains("cap") == true)
        // all_accounts pages through the iterator in address order.
        var accounts: [String] = [alice, bob]
        for _ in 0..<5 {
            let k = Ed25519.PrivateKey()
            let human = h.human(k.publicKey)
            accounts.append(human)
            #expect(h.execute(token, #"{"transfer":{"recipient":"\#(human)","amount":"1"}}"#).code == .ok)
        }
        accounts.sort()
        let first = try #require(json(try h.query(token, #"{"all_accounts":{"limit":3}}"#).get()))
        #expect(first["accounts"] as? [String] == Array(accounts.prefix(3)))
        let next = try #require(
            json(try h.query(token, #"{"all_accounts":{"start_after":"\#(accounts[2])","limit":30}}"#).get()))
        #expect(next["accounts"] as? [String] == Array(accounts.dropFirst(3)))
    }

    @Test("CW20 send: the receiving contract's failure rolls back the whole transfer")
    func cw20Send() throws {
        var h = ContractHarness()
        let cw20 = try #require(h.store(try ExampleContracts.wasm("cw20")).0)
        let counter = try #require(h.store(try ExampleContracts.wasm("counter")).0)
        let alice = h.human(h.alice.publicKey)
        let token = try #require(
            h.instantiate(
                cw20,
                #"{"name":"Tok","symbol":"TOK","decimals":0,"initial_balances":[{"address":"\#(alice)","amount":"10"}],"mint":null}"#
            ).0)
        // The counter has no "receive" message: the send's submessage fails, so does the send.
        let target = try #require(h.instantiate(counter, #"{"count":0}"#).0)
        let targetHuman = ContractAddressFormat.humanize(target)!
        let send = h.execute(token, #"{"send":{"contract":"\#(targetHuman)","amount":"4","msg":"e30="}}"#)
        #expect(send.code == .failed)
        #expect(try h.query(token, #"{"balance":{"address":"\#(alice)"}}"#).get() == #"{"balance":"10"}"#)
        #expect(try h.query(token, #"{"balance":{"address":"\#(targetHuman)"}}"#).get() == #"{"balance":"0"}"#)
    }

    @Test(
        "submessages: reply on error keeps the caller's writes and drops the callee's; an unhandled failure reverts all"
    )
    func submessages() throws {
        var h = ContractHarness()
        let id = try #require(h.store(try ExampleContracts.wasm("submsg")).0)
        let a = try #require(h.instantiate(id, "{}").0)
        let b = try #require(h.instantiate(id, "{}").0)
        let bHuman = ContractAddressFormat.humanize(b)!
        let fail = Data(#"{"fail":{}}"#.utf8).base64EncodedString()
        // reply_on error: a's own write ("before") and its reply stay; b's "poisoned" does not.
        let caught = h.execute(
            a, #"{"forward":{"contract":"\#(bHuman)","msg":"\#(fail)","reply_on":"error","id":7}}"#)
        #expect(caught.code == .ok, "\(caught.failure ?? "")")
        #expect(try h.query(a, #"{"get":{"key":"before"}}"#).get().contains("\"1\""))
        #expect(try h.query(a, #"{"get":{"key":"reply:7"}}"#).get().contains("err:"))
        #expect(try h.query(b, #"{"get":{"key":"poisoned"}}"#).get() == #"{"value":null}"#)
        // reply_on never: the failure propagates and nothing of the transaction stays.
        let c = try #require(h.instantiate(id, "{}").0)
        let uncaught = h.execute(
            c, #"{"forward":{"contract":"\#(bHuman)","msg":"\#(fail)","reply_on":"never","id":8}}"#)
        #expect(uncaught.code == .failed)
        #expect(try h.query(c, #"{"get":{"key":"before"}}"#).get() == #"{"value":null}"#)
        // A successful submessage with reply_on success: both contracts' writes stay.
        let touch = Data(#"{"touch":{"key":"k","value":"v"}}"#.utf8).base64EncodedString()
        let ok = h.execute(a, #"{"forward":{"contract":"\#(bHuman)","msg":"\#(touch)","reply_on":"success","id":9}}"#)
        #expect(ok.code == .ok, "\(ok.failure ?? "")")
        #expect(try h.query(b, #"{"get":{"key":"k"}}"#).get() == #"{"value":"v"}"#)
        #expect(try h.query(a, #"{"get":{"key":"reply:9"}}"#).get() == #"{"value":"ok"}"#)
        // Reply id 99 fails the reply itself: the whole transaction reverts.
        let reverted = h.execute(
            c, #"{"forward":{"contract":"\#(bHuman)","msg":"\#(fail)","reply_on":"error","id":99}}"#)
        #expect(reverted.code == .failed)
        #expect(try h.query(c, #"{"get":{"key":"reply:99"}}"#).get() == #"{"value":null}"#)
    }

    @Test("bank submessage: a contract pays out of its own balance, never more")
    func bankSend() throws {
        var h = ContractHarness()
        let id = try #require(h.store(try ExampleContracts.wasm("submsg")).0)
        let a = try #require(h.instantiate(id, "{}").0)
        let bob = h.human(h.bob.publicKey)
        let bobBefore = h.state.balance(of: h.bob.publicKey)
        // Fund the contract with 100 through `funds`, then have it send 60 to bob.
        let send = h.execute(
            a, #"{"send_funds":{"to":"\#(bob)","amount":"60","denom":"uside"}}"#, funds: 100)
        #expect(send.code == .ok, "\(send.failure ?? "")")
        #expect(h.state.balance(of: h.bob.publicKey) == bobBefore + 60)
        let tooMuch = h.execute(a, #"{"send_funds":{"to":"\#(bob)","amount":"41","denom":"uside"}}"#)
        #expect(tooMuch.code == .failed)
        #expect(h.state.balance(of: h.bob.publicKey) == bobBefore + 60)
    }

    @Test(
        "gas is a function of the inputs: two copies of a state running the same transfer agree on gas, receipt and root"
    )
    func deterministicGas() throws {
        let wasm = try ExampleContracts.wasm("cw20")
        // Two copies of one state run the same transfer (same signer, same seq, same
        // bytes): gas, receipts and roots must match exactly.
        var h = ContractHarness()
        let id = try #require(h.store(wasm).0)
        let alice = h.human(h.alice.publicKey)
        let bob = h.human(h.bob.publicKey)
        let token = try #require(
            h.instantiate(
                id,
                #"{"name":"Tok","symbol":"TOK","decimals":0,"initial_balances":[{"address":"\#(alice)","amount":"100"},{"address":"\#(bob)","amount":"100"}],"mint":null}"#
            ).0)
        var copy = h
        let one = h.execute(token, #"{"transfer":{"recipient":"\#(bob)","amount":"1"}}"#)
        let two = copy.execute(token, #"{"transfer":{"recipient":"\#(bob)","amount":"1"}}"#)
        #expect(one.gas == two.gas)
        #expect(one.gas > 60_000)
        #expect(h.state.root == copy.state.root)
        #expect(one.output == two.output)
    }
}
