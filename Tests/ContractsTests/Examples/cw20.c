/*
 * cw20.c - a C port of cw-plus's cw20-base (messages, queries, storage layout,
 * attributes and error texts follow cw20-base 1.1).
 *
 * Storage (cw-storage-plus layout, so state is readable by the Rust contract too):
 *   Item "contract_info"            cw2 {"contract":"crates.io:cw20-base","version":..}
 *   Item "token_info"               {"name","symbol","decimals","total_supply","mint"}
 *   Map  "balance"  addr            "<Uint128>"
 *   Map  "allowance" (owner,spender)          {"allowance":"N","expires":..}
 *   Map  "allowance_spender" (spender,owner)  same value, for all_spender_allowances
 * A Map key is u16be(len ns) ‖ ns ‖ (u16be(len k) ‖ k)* ‖ last k; addresses are stored
 * as their human string bytes, as cosmwasm's Addr is.
 *
 * Beyond the basic cw20 spec it also has cw20-base's update_minter, all_spender_allowances
 * and marketing_info (always empty). Not supported: marketing info and logos
 * (instantiate with "marketing": null or absent; upload_logo etc. are unknown variants).
 */
#include "cosmwasm.h"

#define MSG_TYPE(name) "cw20_base::msg::" name
#define CONTRACT_NAME "crates.io:cw20-base"
#define CONTRACT_VERSION "1.1.2"
#define DEFAULT_LIMIT 10
#define MAX_LIMIT 30

#define NS_BALANCE "balance"
#define NS_ALLOWANCE "allowance"
#define NS_ALLOWANCE_SPENDER "allowance_spender"
#define KEY_TOKEN_INFO "token_info"
#define KEY_CONTRACT_INFO "contract_info"

/* The iterator capability: db_scan/db_next are used by the enumerable queries. */
CW_EXPORT("requires_iterator") void requires_iterator(void) {}

/* ==== Storage keys =================================================================== */

static void put_u16be(Buf *b, u32 n) {
    buf_byte(b, (u8)(n >> 8));
    buf_byte(b, (u8)n);
}

/* u16be(len ns) ‖ ns ‖ [u16be(len a) ‖ a] — the prefix of a Map (or of one of its
 * sub-prefixes when `a` is given). */
static Bytes map_prefix(const char *ns, Bytes a) {
    Buf b;
    buf_init(&b, 32 + a.len);
    put_u16be(&b, cw_strlen(ns));
    buf_c(&b, ns);
    if (a.ptr) {
        put_u16be(&b, a.len);
        buf_bytes(&b, a);
    }
    return buf_view(&b);
}

static Bytes map_key(const char *ns, Bytes k) {
    Bytes none = {NULL, 0};
    return bytes_cat(map_prefix(ns, none), k);
}

static Bytes map_key2(const char *ns, Bytes a, Bytes b) { return bytes_cat(map_prefix(ns, a), b); }

/* Smallest key greater than every key starting with `prefix` (cw-storage-plus'
 * namespace_upper_bound): increment the last byte that is not 0xFF. */
static Bytes prefix_end(Bytes prefix) {
    u8 *p = cw_alloc(prefix.len);
    memcpy(p, prefix.ptr, prefix.len);
    u32 n = prefix.len;
    while (n && p[n - 1] == 0xFF) n--;
    if (n == 0) {
        Bytes open = {NULL, 0};
        return open;
    }
    p[n - 1]++;
    Bytes r = {p, n};
    return r;
}

/* ==== Balances ======================================================================= */

static const char *decode_uint128(Bytes raw, U128 *out) {
    const char *err = json_check(raw);
    JField f = {"value", raw};
    if (!err) err = req_u128(&f, out);
    return err ? parse_err("cosmwasm_std::math::uint128::Uint128", err) : NULL;
}

static const char *balance_load(Bytes addr, U128 *out) {
    Bytes raw = db_get(map_key(NS_BALANCE, addr));
    *out = u128_from_u64(0);
    return raw.ptr ? decode_uint128(raw, out) : NULL;
}

static void balance_save(Bytes addr, U128 v) {
    Buf b;
    buf_init(&b, 48);
    buf_byte(&b, '"');
    buf_u128(&b, v);
    buf_byte(&b, '"');
    db_set(map_key(NS_BALANCE, addr), buf_view(&b));
}

/* BALANCES.update(.., |b| b.unwrap_or_default().checked_sub(amount)) */
static const char *balance_sub(Bytes addr, U128 amount) {
    U128 bal, rest;
    TRY(balance_load(addr, &bal));
    if (!u128_sub(bal, amount, &rest)) return u128_overflow("Sub", bal, amount);
    balance_save(addr, rest);
    return NULL;
}

static const char *balance_add(Bytes addr, U128 amount) {
    U128 bal, sum;
    TRY(balance_load(addr, &bal));
    if (!u128_add(bal, amount, &sum)) return u128_overflow("Add", bal, amount);
    balance_save(addr, sum);
    return NULL;
}

/* ==== Token info ===================================================================== */

typedef struct {
    Bytes name;
    Bytes symbol;
    u64 decimals;
    U128 total_supply;
    int has_mint;
    Bytes minter;
    int has_cap;
    U128 cap;
} TokenInfo;

static const char *decode_minter(Bytes v, TokenInfo *t) {
    JField f[2] = {{"minter"}, {"cap"}};
    TRY(json_object(v, f, 2, 1));
    TRY(req_str(&f[0], &t->minter));
    return opt_u128(&f[1], &t->cap, &t->has_cap);
}

static const char *token_info_load(TokenInfo *t) {
    Bytes raw = db_get(bytes_c(KEY_TOKEN_INFO));
    if (raw.ptr == NULL) return "cw20_base::state::TokenInfo not found";
    JField f[5] = {{"name"}, {"symbol"}, {"decimals"}, {"total_supply"}, {"mint"}};
    const char *err = json_check(raw);
    if (!err) err = json_object(raw, f, 5, 1);
    if (!err) err = req_str(&f[0], &t->name);
    if (!err) err = req_str(&f[1], &t->symbol);
    if (!err) err = req_u64(&f[2], &t->decimals);
    if (!err) err = req_u128(&f[3], &t->total_supply);
    t->has_mint = field_present(&f[4]);
    t->has_cap = 0;
    if (!err && t->has_mint) err = decode_minter(f[4].v, t);
    return err ? parse_err("cw20_base::state::TokenInfo", err) : NULL;
}

static void buf_minter(Buf *b, const TokenInfo *t) {
    buf_c(b, "{\"minter\":");
    buf_jstr(b, t->minter);
    buf_c(b, ",\"cap\":");
    if (t->has_cap) {
        buf_byte(b, '"');
        buf_u128(b, t->cap);
        buf_byte(b, '"');
    } else {
        buf_c(b, "null");
    }
    buf_byte(b, '}');
}

static void token_info_save(const TokenInfo *t) {
    Buf b;
    buf_init(&b, 160);
    buf_c(&b, "{\"name\":");
    buf_jstr(&b, t->name);
    buf_c(&b, ",\"symbol\":");
    buf_jstr(&b, t->symbol);
    buf_c(&b, ",\"decimals\":");
    buf_u64(&b, t->decimals);
    buf_c(&b, ",\"total_supply\":\"");
    buf_u128(&b, t->total_supply);
    buf_c(&b, "\",\"mint\":");
    if (t->has_mint) {
        buf_minter(&b, t);
    } else {
        buf_c(&b, "null");
    }
    buf_byte(&b, '}');
    db_set(bytes_c(KEY_TOKEN_INFO), buf_view(&b));
}

/* ==== Allowances ===================================================================== */

enum { EXP_NEVER, EXP_AT_HEIGHT, EXP_AT_TIME };

typedef struct {
    int kind;
    u64 value; /* block height, or nanoseconds for at_time */
} Expiration;

typedef struct {
    U128 allowance;
    Expiration expires;
} Allowance;

static const char *parse_expiration(Bytes v, Expiration *e) {
    Bytes variant, body;
    TRY(json_enum(v, &variant, &body));
    if (json_key_eq(variant, "never")) {
        e->kind = EXP_NEVER;
        e->value = 0;
        return req_empty_object(body);
    }
    if (json_key_eq(variant, "at_height")) {
        JField f = {"at_height", body};
        e->kind = EXP_AT_HEIGHT;
        return req_u64(&f, &e->value);
    }
    if (json_key_eq(variant, "at_time")) {
        JField f = {"at_time", body};
        e->kind = EXP_AT_TIME;
        return req_u64_str(&f, &e->value);
    }
    return unknown_variant(variant, "`at_height`, `at_time`, `never`");
}

static void buf_expiration(Buf *b, Expiration e) {
    if (e.kind == EXP_AT_HEIGHT) {
        buf_c(b, "{\"at_height\":");
        buf_u64(b, e.value);
        buf_byte(b, '}');
    } else if (e.kind == EXP_AT_TIME) {
        buf_c(b, "{\"at_time\":\"");
        buf_u64(b, e.value);
        buf_c(b, "\"}");
    } else {
        buf_c(b, "{\"never\":{}}");
    }
}

static int is_expired(Expiration e, const Env *env) {
    if (e.kind == EXP_AT_HEIGHT) return env->height >= e.value;
    if (e.kind == EXP_AT_TIME) return env->time_ns >= e.value;
    return 0;
}

static const char *decode_allowance(Bytes raw, Allowance *a) {
    JField f[2] = {{"allowance"}, {"expires"}};
    const char *err = json_check(raw);
    if (!err) err = json_object(raw, f, 2, 1);
    if (!err) err = req_u128(&f[0], &a->allowance);
    if (!err && f[1].v.ptr == NULL) err = "missing field `expires`";
    if (!err) err = parse_expiration(f[1].v, &a->expires);
    return err ? parse_err("cw20::query::AllowanceResponse", err) : NULL;
}

/* Loads ALLOWANCES[(owner, spender)]; *found = 0 leaves the default (0, never). */
static const char *allowance_load(Bytes owner, Bytes spender, Allowance *a, int *found) {
    Bytes raw = db_get(map_key2(NS_ALLOWANCE, owner, spender));
    a->allowance = u128_from_u64(0);
    a->expires.kind = EXP_NEVER;
    a->expires.value = 0;
    *found = raw.ptr != NULL;
    return raw.ptr ? decode_allowance(raw, a) : NULL;
}

static void buf_allowance_fields(Buf *b, const Allowance *a) {
    buf_c(b, "\"allowance\":\"");
    buf_u128(b, a->allowance);
    buf_c(b, "\",\"expires\":");
    buf_expiration(b, a->expires);
}

/* Saves under both indexes, like cw20-base's ALLOWANCES and ALLOWANCES_SPENDER. */
static void allowance_save(Bytes owner, Bytes spender, const Allowance *a) {
    Buf b;
    buf_init(&b, 96);
    buf_byte(&b, '{');
    buf_allowance_fields(&b, a);
    buf_byte(&b, '}');
    db_set(map_key2(NS_ALLOWANCE, owner, spender), buf_view(&b));
    db_set(map_key2(NS_ALLOWANCE_SPENDER, spender, owner), buf_view(&b));
}

static void allowance_remove(Bytes owner, Bytes spender) {
    db_del(map_key2(NS_ALLOWANCE, owner, spender));
    db_del(map_key2(NS_ALLOWANCE_SPENDER, spender, owner));
}

/* cw20-base's deduct_allowance. */
static const char *deduct_allowance(Bytes owner, Bytes spender, const Env *env, U128 amount) {
    Allowance a;
    int found;
    TRY(allowance_load(owner, spender, &a, &found));
    if (!found) return "No allowance for this account";
    if (is_expired(a.expires, env)) return "Allowance is expired";
    U128 rest;
    if (!u128_sub(a.allowance, amount, &rest)) return u128_overflow("Sub", a.allowance, amount);
    a.allowance = rest;
    allowance_save(owner, spender, &a);
    return NULL;
}

/* ==== Messages ======================================================================= */

enum {
    X_TRANSFER,
    X_BURN,
    X_SEND,
    X_MINT,
    X_INCREASE_ALLOWANCE,
    X_DECREASE_ALLOWANCE,
    X_TRANSFER_FROM,
    X_BURN_FROM,
    X_SEND_FROM,
    X_UPDATE_MINTER,
};

typedef struct {
    int kind;
    Bytes owner, recipient, contract, spender, new_minter;
    Bytes msg; /* decoded Binary */
    U128 amount;
    int has_expires;
    Expiration expires;
} ExecuteMsg;

static const char *opt_expiration(const JField *f, int *present, Expiration *e) {
    *present = field_present(f);
    return *present ? parse_expiration(f->v, e) : NULL;
}

static const char *parse_execute(Bytes doc, ExecuteMsg *m) {
    Bytes variant, body;
    TRY(json_check(doc));
    TRY(json_enum(doc, &variant, &body));
    if (json_key_eq(variant, "transfer")) {
        JField f[2] = {{"recipient"}, {"amount"}};
        m->kind = X_TRANSFER;
        TRY(json_object(body, f, 2, 1));
        TRY(req_str(&f[0], &m->recipient));
        return req_u128(&f[1], &m->amount);
    }
    if (json_key_eq(variant, "burn")) {
        JField f[1] = {{"amount"}};
        m->kind = X_BURN;
        TRY(json_object(body, f, 1, 1));
        return req_u128(&f[0], &m->amount);
    }
    if (json_key_eq(variant, "send")) {
        JField f[3] = {{"contract"}, {"amount"}, {"msg"}};
        m->kind = X_SEND;
        TRY(json_object(body, f, 3, 1));
        TRY(req_str(&f[0], &m->contract));
        TRY(req_u128(&f[1], &m->amount));
        return req_binary(&f[2], &m->msg);
    }
    if (json_key_eq(variant, "mint")) {
        JField f[2] = {{"recipient"}, {"amount"}};
        m->kind = X_MINT;
        TRY(json_object(body, f, 2, 1));
        TRY(req_str(&f[0], &m->recipient));
        return req_u128(&f[1], &m->amount);
    }
    if (json_key_eq(variant, "increase_allowance") || json_key_eq(variant, "decrease_allowance")) {
        JField f[3] = {{"spender"}, {"amount"}, {"expires"}};
        m->kind = json_key_eq(variant, "increase_allowance") ? X_INCREASE_ALLOWANCE
                                                              : X_DECREASE_ALLOWANCE;
        TRY(json_object(body, f, 3, 1));
        TRY(req_str(&f[0], &m->spender));
        TRY(req_u128(&f[1], &m->amount));
        return opt_expiration(&f[2], &m->has_expires, &m->expires);
    }
    if (json_key_eq(variant, "transfer_from")) {
        JField f[3] = {{"owner"}, {"recipient"}, {"amount"}};
        m->kind = X_TRANSFER_FROM;
        TRY(json_object(body, f, 3, 1));
        TRY(req_str(&f[0], &m->owner));
        TRY(req_str(&f[1], &m->recipient));
        return req_u128(&f[2], &m->amount);
    }
    if (json_key_eq(variant, "burn_from")) {
        JField f[2] = {{"owner"}, {"amount"}};
        m->kind = X_BURN_FROM;
        TRY(json_object(body, f, 2, 1));
        TRY(req_str(&f[0], &m->owner));
        return req_u128(&f[1], &m->amount);
    }
    if (json_key_eq(variant, "send_from")) {
        JField f[4] = {{"owner"}, {"contract"}, {"amount"}, {"msg"}};
        m->kind = X_SEND_FROM;
        TRY(json_object(body, f, 4, 1));
        TRY(req_str(&f[0], &m->owner));
        TRY(req_str(&f[1], &m->contract));
        TRY(req_u128(&f[2], &m->amount));
        return req_binary(&f[3], &m->msg);
    }
    if (json_key_eq(variant, "update_minter")) {
        JField f[1] = {{"new_minter"}};
        m->kind = X_UPDATE_MINTER;
        TRY(json_object(body, f, 1, 1));
        return opt_str(&f[0], &m->new_minter);
    }
    return unknown_variant(variant, "`transfer`, `burn`, `send`, `mint`, `increase_allowance`, "
                                    "`decrease_allowance`, `transfer_from`, `send_from`, "
                                    "`burn_from`, `update_minter`");
}

/* ==== Execute ======================================================================== */

/* WasmMsg::Execute of Cw20ReceiveMsg{sender, amount, msg} to `contract` (into_cosmos_msg). */
static void add_receive_msg(Response *r, Bytes contract, Bytes sender, U128 amount, Bytes msg) {
    Buf inner;
    buf_init(&inner, 128 + msg.len * 2);
    buf_c(&inner, "{\"receive\":{\"sender\":");
    buf_jstr(&inner, sender);
    buf_c(&inner, ",\"amount\":\"");
    buf_u128(&inner, amount);
    buf_c(&inner, "\",\"msg\":\"");
    buf_b64(&inner, msg);
    buf_c(&inner, "\"}}");

    Buf cosmos;
    buf_init(&cosmos, 128 + inner.len * 2);
    buf_c(&cosmos, "{\"wasm\":{\"execute\":{\"contract_addr\":");
    buf_jstr(&cosmos, contract);
    buf_c(&cosmos, ",\"msg\":\"");
    buf_b64(&cosmos, buf_view(&inner));
    buf_c(&cosmos, "\",\"funds\":[]}}}");

    Bytes no_payload = {(const u8 *)"", 0};
    resp_submsg(r, 0, no_payload, buf_view(&cosmos), "never");
}

static const char *sub_supply(U128 amount) {
    TokenInfo t;
    TRY(token_info_load(&t));
    U128 rest;
    if (!u128_sub(t.total_supply, amount, &rest))
        return u128_overflow("Sub", t.total_supply, amount);
    t.total_supply = rest;
    token_info_save(&t);
    return NULL;
}

static const char *exec_transfer(const Info *info, const ExecuteMsg *m, Response *r) {
    if (u128_is_zero(m->amount)) return "Invalid zero amount";
    TRY(addr_validate(m->recipient));
    TRY(balance_sub(info->sender, m->amount));
    TRY(balance_add(m->recipient, m->amount));
    resp_attr_c(r, "action", "transfer");
    resp_attr(r, "from", info->sender);
    resp_attr(r, "to", m->recipient);
    resp_attr_u128(r, "amount", m->amount);
    return NULL;
}

static const char *exec_burn(const Info *info, const ExecuteMsg *m, Response *r) {
    if (u128_is_zero(m->amount)) return "Invalid zero amount";
    TRY(balance_sub(info->sender, m->amount));
    TRY(sub_supply(m->amount));
    resp_attr_c(r, "action", "burn");
    resp_attr(r, "from", info->sender);
    resp_attr_u128(r, "amount", m->amount);
    return NULL;
}

static const char *exec_send(const Info *info, const ExecuteMsg *m, Response *r) {
    if (u128_is_zero(m->amount)) return "Invalid zero amount";
    TRY(addr_validate(m->contract));
    TRY(balance_sub(info->sender, m->amount));
    TRY(balance_add(m->contract, m->amount));
    resp_attr_c(r, "action", "send");
    resp_attr(r, "from", info->sender);
    resp_attr(r, "to", m->contract);
    resp_attr_u128(r, "amount", m->amount);
    add_receive_msg(r, m->contract, info->sender, m->amount, m->msg);
    return NULL;
}

static const char *exec_mint(const Info *info, const ExecuteMsg *m, Response *r) {
    if (u128_is_zero(m->amount)) return "Invalid zero amount";
    TokenInfo t;
    TRY(token_info_load(&t));
    if (!t.has_mint || !bytes_eq(t.minter, info->sender)) return "Unauthorized";
    U128 supply;
    if (!u128_add(t.total_supply, m->amount, &supply))
        return u128_overflow("Add", t.total_supply, m->amount);
    if (t.has_cap && u128_cmp(supply, t.cap) > 0) return "Minting cannot exceed the cap";
    t.total_supply = supply;
    token_info_save(&t);
    TRY(addr_validate(m->recipient));
    TRY(balance_add(m->recipient, m->amount));
    resp_attr_c(r, "action", "mint");
    resp_attr(r, "to", m->recipient);
    resp_attr_u128(r, "amount", m->amount);
    return NULL;
}

static const char *exec_increase_allowance(const Env *env, const Info *info, const ExecuteMsg *m,
                                           Response *r) {
    TRY(addr_validate(m->spender));
    if (bytes_eq(m->spender, info->sender)) return "Cannot set to own account";
    Allowance a;
    int found;
    TRY(allowance_load(info->sender, m->spender, &a, &found));
    if (m->has_expires) {
        if (is_expired(m->expires, env)) return "Invalid expiration value";
        a.expires = m->expires;
    }
    U128 sum;
    if (!u128_add(a.allowance, m->amount, &sum))
        return u128_overflow("Add", a.allowance, m->amount);
    a.allowance = sum;
    allowance_save(info->sender, m->spender, &a);
    resp_attr_c(r, "action", "increase_allowance");
    resp_attr(r, "owner", info->sender);
    resp_attr(r, "spender", m->spender);
    resp_attr_u128(r, "amount", m->amount);
    return NULL;
}

static const char *exec_decrease_allowance(const Env *env, const Info *info, const ExecuteMsg *m,
                                           Response *r) {
    TRY(addr_validate(m->spender));
    if (bytes_eq(m->spender, info->sender)) return "Cannot set to own account";
    Allowance a;
    int found;
    TRY(allowance_load(info->sender, m->spender, &a, &found));
    if (!found) return "cw20::query::AllowanceResponse not found";
    if (u128_cmp(m->amount, a.allowance) < 0) {
        u128_sub(a.allowance, m->amount, &a.allowance);
        if (m->has_expires) {
            if (is_expired(m->expires, env)) return "Invalid expiration value";
            a.expires = m->expires;
        }
        allowance_save(info->sender, m->spender, &a);
    } else {
        allowance_remove(info->sender, m->spender);
    }
    resp_attr_c(r, "action", "decrease_allowance");
    resp_attr(r, "owner", info->sender);
    resp_attr(r, "spender", m->spender);
    resp_attr_u128(r, "amount", m->amount);
    return NULL;
}

static const char *exec_transfer_from(const Env *env, const Info *info, const ExecuteMsg *m,
                                      Response *r) {
    TRY(addr_validate(m->recipient));
    TRY(addr_validate(m->owner));
    TRY(deduct_allowance(m->owner, info->sender, env, m->amount));
    TRY(balance_sub(m->owner, m->amount));
    TRY(balance_add(m->recipient, m->amount));
    resp_attr_c(r, "action", "transfer_from");
    resp_attr(r, "from", m->owner);
    resp_attr(r, "to", m->recipient);
    resp_attr(r, "by", info->sender);
    resp_attr_u128(r, "amount", m->amount);
    return NULL;
}

static const char *exec_burn_from(const Env *env, const Info *info, const ExecuteMsg *m,
                                  Response *r) {
    TRY(addr_validate(m->owner));
    TRY(deduct_allowance(m->owner, info->sender, env, m->amount));
    TRY(balance_sub(m->owner, m->amount));
    TRY(sub_supply(m->amount));
    resp_attr_c(r, "action", "burn_from");
    resp_attr(r, "from", m->owner);
    resp_attr(r, "by", info->sender);
    resp_attr_u128(r, "amount", m->amount);
    return NULL;
}

static const char *exec_send_from(const Env *env, const Info *info, const ExecuteMsg *m,
                                  Response *r) {
    TRY(addr_validate(m->contract));
    TRY(addr_validate(m->owner));
    TRY(deduct_allowance(m->owner, info->sender, env, m->amount));
    TRY(balance_sub(m->owner, m->amount));
    TRY(balance_add(m->contract, m->amount));
    resp_attr_c(r, "action", "send_from");
    resp_attr(r, "from", m->owner);
    resp_attr(r, "to", m->contract);
    resp_attr(r, "by", info->sender);
    resp_attr_u128(r, "amount", m->amount);
    add_receive_msg(r, m->contract, info->sender, m->amount, m->msg);
    return NULL;
}

static const char *exec_update_minter(const Info *info, const ExecuteMsg *m, Response *r) {
    TokenInfo t;
    TRY(token_info_load(&t));
    if (!t.has_mint || !bytes_eq(t.minter, info->sender)) return "Unauthorized";
    if (m->new_minter.ptr) {
        TRY(addr_validate(m->new_minter));
        t.minter = m->new_minter; /* the cap is kept */
    } else {
        t.has_mint = 0;
    }
    token_info_save(&t);
    resp_attr_c(r, "action", "update_minter");
    resp_attr(r, "new_minter", m->new_minter.ptr ? m->new_minter : bytes_c("None"));
    return NULL;
}

static const char *do_execute(const Env *env, const Info *info, const ExecuteMsg *m, Response *r) {
    switch (m->kind) {
    case X_TRANSFER: return exec_transfer(info, m, r);
    case X_BURN: return exec_burn(info, m, r);
    case X_SEND: return exec_send(info, m, r);
    case X_MINT: return exec_mint(info, m, r);
    case X_INCREASE_ALLOWANCE: return exec_increase_allowance(env, info, m, r);
    case X_DECREASE_ALLOWANCE: return exec_decrease_allowance(env, info, m, r);
    case X_TRANSFER_FROM: return exec_transfer_from(env, info, m, r);
    case X_BURN_FROM: return exec_burn_from(env, info, m, r);
    case X_SEND_FROM: return exec_send_from(env, info, m, r);
    default: return exec_update_minter(info, m, r);
    }
}

CW_EXPORT("execute") u32 execute(u32 env_ptr, u32 info_ptr, u32 msg_ptr) {
    Env env;
    Info info;
    ExecuteMsg m;
    memset(&m, 0, sizeof m);
    const char *err = parse_env(env_ptr, &env);
    if (!err) err = parse_info(info_ptr, &info);
    if (err) return result_err(err);
    err = parse_execute(region_read(msg_ptr), &m);
    if (err) return result_err(parse_err(MSG_TYPE("ExecuteMsg"), err));

    Response r;
    resp_init(&r);
    err = do_execute(&env, &info, &m, &r);
    return err ? result_err(err) : resp_ok(&r);
}

/* ==== Instantiate ==================================================================== */

typedef struct {
    Bytes address;
    U128 amount;
} Coin;

typedef struct {
    TokenInfo token; /* total_supply is computed from the balances */
    Coin *balances;
    u32 n_balances;
    int has_marketing;
} InstantiateMsg;

static const char *parse_balances(Bytes v, InstantiateMsg *m) {
    if (v.ptr == NULL) return "missing field `initial_balances`";
    if (json_kind(v) != J_ARR) return "invalid type: expected a sequence for `initial_balances`";
    JIter it;
    Bytes item;
    u32 n = 0;
    json_iter(&it, v);
    while (json_next_item(&it, &item)) n++;
    m->balances = cw_alloc(n * sizeof(Coin));
    m->n_balances = n;
    json_iter(&it, v);
    for (u32 k = 0; k < n && json_next_item(&it, &item); k++) {
        JField f[2] = {{"address"}, {"amount"}};
        TRY(json_object(item, f, 2, 1));
        TRY(req_str(&f[0], &m->balances[k].address));
        TRY(req_u128(&f[1], &m->balances[k].amount));
    }
    return NULL;
}

static const char *parse_instantiate(Bytes doc, InstantiateMsg *m) {
    TRY(json_check(doc));
    JField f[6] = {{"name"}, {"symbol"}, {"decimals"},
                   {"initial_balances"}, {"mint"}, {"marketing"}};
    TRY(json_object(doc, f, 6, 1));
    TRY(req_str(&f[0], &m->token.name));
    TRY(req_str(&f[1], &m->token.symbol));
    TRY(req_u64(&f[2], &m->token.decimals));
    if (m->token.decimals > 255) return "invalid value: integer, expected u8";
    TRY(parse_balances(f[3].v, m));
    m->token.has_mint = field_present(&f[4]);
    m->token.has_cap = 0;
    if (m->token.has_mint) TRY(decode_minter(f[4].v, &m->token));
    m->has_marketing = field_present(&f[5]);
    return NULL;
}

/* InstantiateMsg::validate */
static const char *validate_token(const TokenInfo *t) {
    if (t->name.len < 3 || t->name.len > 50)
        return "Generic error: Name is not in the expected format (3-50 UTF-8 bytes)";
    int ok = t->symbol.len >= 3 && t->symbol.len <= 12;
    for (u32 i = 0; ok && i < t->symbol.len; i++) {
        u8 c = t->symbol.ptr[i];
        ok = c == '-' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    }
    if (!ok) return "Generic error: Ticker symbol is not in expected format [a-zA-Z\\-]{3,12}";
    if (t->decimals > 18) return "Generic error: Decimals must not exceed 18";
    return NULL;
}

/* Sorts addresses (merge sort: O(n log n) however long the list) to find duplicates. */
static void sort_addrs(Bytes *a, Bytes *tmp, u32 n) {
    if (n < 2) return;
    u32 half = n / 2;
    sort_addrs(a, tmp, half);
    sort_addrs(a + half, tmp, n - half);
    u32 i = 0, j = half, k = 0;
    while (i < half && j < n) tmp[k++] = bytes_cmp(a[i], a[j]) <= 0 ? a[i++] : a[j++];
    while (i < half) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof(Bytes));
}

static const char *validate_accounts(const InstantiateMsg *m) {
    u32 n = m->n_balances;
    Bytes *addrs = cw_alloc(n * sizeof(Bytes));
    Bytes *tmp = cw_alloc(n * sizeof(Bytes));
    for (u32 k = 0; k < n; k++) addrs[k] = m->balances[k].address;
    sort_addrs(addrs, tmp, n);
    for (u32 k = 1; k < n; k++) {
        if (bytes_eq(addrs[k - 1], addrs[k])) return "Duplicate initial balance addresses";
    }
    return NULL;
}

static const char *do_instantiate(InstantiateMsg *m) {
    Buf version;
    buf_init(&version, 80);
    buf_c(&version, "{\"contract\":\"" CONTRACT_NAME "\",\"version\":\"" CONTRACT_VERSION "\"}");
    db_set(bytes_c(KEY_CONTRACT_INFO), buf_view(&version));

    TokenInfo *t = &m->token;
    TRY(validate_token(t));
    TRY(validate_accounts(m));
    t->total_supply = u128_from_u64(0);
    for (u32 k = 0; k < m->n_balances; k++) {
        const Coin *c = &m->balances[k];
        TRY(addr_validate(c->address));
        balance_save(c->address, c->amount);
        if (!u128_add(t->total_supply, c->amount, &t->total_supply))
            return u128_overflow("Add", t->total_supply, c->amount);
    }
    if (t->has_mint && t->has_cap && u128_cmp(t->total_supply, t->cap) > 0)
        return "Generic error: Initial supply greater than cap";
    if (t->has_mint) TRY(addr_validate(t->minter));
    token_info_save(t);
    if (m->has_marketing) return "Generic error: marketing info is not supported by this contract";
    return NULL;
}

CW_EXPORT("instantiate") u32 instantiate(u32 env_ptr, u32 info_ptr, u32 msg_ptr) {
    Env env;
    Info info;
    InstantiateMsg m;
    const char *err = parse_env(env_ptr, &env);
    if (!err) err = parse_info(info_ptr, &info);
    if (err) return result_err(err);
    err = parse_instantiate(region_read(msg_ptr), &m);
    if (err) return result_err(parse_err(MSG_TYPE("InstantiateMsg"), err));

    err = do_instantiate(&m);
    if (err) return result_err(err);
    Response r; /* Response::default(): no attributes */
    resp_init(&r);
    return resp_ok(&r);
}

/* ==== Queries ======================================================================== */

enum {
    Q_BALANCE,
    Q_TOKEN_INFO,
    Q_MINTER,
    Q_ALLOWANCE,
    Q_ALL_ALLOWANCES,
    Q_ALL_SPENDER_ALLOWANCES,
    Q_ALL_ACCOUNTS,
    Q_MARKETING_INFO,
    Q_DOWNLOAD_LOGO,
};

typedef struct {
    int kind;
    Bytes address, owner, spender;
    Bytes start_after; /* ptr == NULL for None */
    u32 limit;
} QueryMsg;

/* limit: Option<u32> -> limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) */
static const char *parse_limit(const JField *f, u32 *limit) {
    u64 v = DEFAULT_LIMIT;
    if (field_present(f)) {
        TRY(req_u64(f, &v));
        if (v > 0xFFFFFFFFull) return "invalid value: integer, expected u32";
    }
    *limit = v > MAX_LIMIT ? MAX_LIMIT : (u32)v;
    return NULL;
}

static const char *parse_query(Bytes doc, QueryMsg *q) {
    Bytes variant, body;
    TRY(json_check(doc));
    TRY(json_enum(doc, &variant, &body));
    if (json_key_eq(variant, "balance")) {
        JField f[1] = {{"address"}};
        q->kind = Q_BALANCE;
        TRY(json_object(body, f, 1, 1));
        return req_str(&f[0], &q->address);
    }
    if (json_key_eq(variant, "allowance")) {
        JField f[2] = {{"owner"}, {"spender"}};
        q->kind = Q_ALLOWANCE;
        TRY(json_object(body, f, 2, 1));
        TRY(req_str(&f[0], &q->owner));
        return req_str(&f[1], &q->spender);
    }
    if (json_key_eq(variant, "all_allowances") || json_key_eq(variant, "all_spender_allowances")) {
        int by_owner = json_key_eq(variant, "all_allowances");
        JField f[3] = {{by_owner ? "owner" : "spender"}, {"start_after"}, {"limit"}};
        q->kind = by_owner ? Q_ALL_ALLOWANCES : Q_ALL_SPENDER_ALLOWANCES;
        TRY(json_object(body, f, 3, 1));
        TRY(req_str(&f[0], by_owner ? &q->owner : &q->spender));
        TRY(opt_str(&f[1], &q->start_after));
        return parse_limit(&f[2], &q->limit);
    }
    if (json_key_eq(variant, "all_accounts")) {
        JField f[2] = {{"start_after"}, {"limit"}};
        q->kind = Q_ALL_ACCOUNTS;
        TRY(json_object(body, f, 2, 1));
        TRY(opt_str(&f[0], &q->start_after));
        return parse_limit(&f[1], &q->limit);
    }
    if (json_key_eq(variant, "token_info")) q->kind = Q_TOKEN_INFO;
    else if (json_key_eq(variant, "minter")) q->kind = Q_MINTER;
    else if (json_key_eq(variant, "marketing_info")) q->kind = Q_MARKETING_INFO;
    else if (json_key_eq(variant, "download_logo")) q->kind = Q_DOWNLOAD_LOGO;
    else
        return unknown_variant(variant, "`balance`, `token_info`, `minter`, `allowance`, "
                                        "`all_allowances`, `all_spender_allowances`, "
                                        "`all_accounts`, `marketing_info`, `download_logo`");
    return req_empty_object(body);
}

/* Walks the Map entries under `prefix` in ascending order, starting after
 * `start_after` (Bound::ExclusiveRaw: prefix ‖ start_after ‖ 0x00), at most `limit`. */
typedef struct {
    Bytes prefix;
    u32 iter;
    u32 left;
} Page;

static void page_open(Page *p, Bytes prefix, Bytes start_after, u32 limit) {
    p->prefix = prefix;
    p->left = limit;
    p->iter = 0;
    if (limit == 0) return;
    Bytes start = prefix;
    if (start_after.ptr) {
        Bytes zero = {(const u8 *)"", 1}; /* the NUL terminator is the 0x00 byte */
        start = bytes_cat(bytes_cat(prefix, start_after), zero);
    }
    p->iter = db_range(start, prefix_end(prefix), 0);
}

/* Next entry; *rest is the key without the prefix. */
static int page_next(Page *p, Bytes *rest, Bytes *value) {
    Bytes key;
    if (p->left == 0 || !db_range_next(p->iter, &key, value)) return 0;
    if (key.len < p->prefix.len || memcmp(key.ptr, p->prefix.ptr, p->prefix.len) != 0) return 0;
    p->left--;
    rest->ptr = key.ptr + p->prefix.len;
    rest->len = key.len - p->prefix.len;
    return 1;
}

static const char *query_allowances(const QueryMsg *q, Buf *out) {
    int by_owner = q->kind == Q_ALL_ALLOWANCES;
    Bytes who = by_owner ? q->owner : q->spender;
    TRY(addr_validate(who));
    Page p;
    page_open(&p, map_prefix(by_owner ? NS_ALLOWANCE : NS_ALLOWANCE_SPENDER, who), q->start_after,
              q->limit);
    Bytes other, raw;
    buf_c(out, "{\"allowances\":[");
    for (u32 n = 0; page_next(&p, &other, &raw); n++) {
        Allowance a;
        TRY(decode_allowance(raw, &a));
        if (n) buf_byte(out, ',');
        buf_c(out, by_owner ? "{\"spender\":" : "{\"owner\":");
        buf_jstr(out, other);
        buf_byte(out, ',');
        buf_allowance_fields(out, &a);
        buf_byte(out, '}');
    }
    buf_c(out, "]}");
    return NULL;
}

static const char *query_all_accounts(const QueryMsg *q, Buf *out) {
    Bytes none = {NULL, 0};
    Page p;
    page_open(&p, map_prefix(NS_BALANCE, none), q->start_after, q->limit);
    Bytes addr, raw;
    buf_c(out, "{\"accounts\":[");
    for (u32 n = 0; page_next(&p, &addr, &raw); n++) {
        if (n) buf_byte(out, ',');
        buf_jstr(out, addr);
    }
    buf_c(out, "]}");
    return NULL;
}

static const char *do_query(const QueryMsg *q, Buf *out) {
    TokenInfo t;
    switch (q->kind) {
    case Q_BALANCE: {
        U128 bal;
        TRY(addr_validate(q->address));
        TRY(balance_load(q->address, &bal));
        buf_c(out, "{\"balance\":\"");
        buf_u128(out, bal);
        buf_c(out, "\"}");
        return NULL;
    }
    case Q_TOKEN_INFO:
        TRY(token_info_load(&t));
        buf_c(out, "{\"name\":");
        buf_jstr(out, t.name);
        buf_c(out, ",\"symbol\":");
        buf_jstr(out, t.symbol);
        buf_c(out, ",\"decimals\":");
        buf_u64(out, t.decimals);
        buf_c(out, ",\"total_supply\":\"");
        buf_u128(out, t.total_supply);
        buf_c(out, "\"}");
        return NULL;
    case Q_MINTER: /* Option<MinterResponse> */
        TRY(token_info_load(&t));
        if (t.has_mint) {
            buf_minter(out, &t);
        } else {
            buf_c(out, "null");
        }
        return NULL;
    case Q_ALLOWANCE: {
        Allowance a;
        int found;
        TRY(addr_validate(q->owner));
        TRY(addr_validate(q->spender));
        TRY(allowance_load(q->owner, q->spender, &a, &found));
        buf_byte(out, '{');
        buf_allowance_fields(out, &a);
        buf_byte(out, '}');
        return NULL;
    }
    case Q_ALL_ALLOWANCES:
    case Q_ALL_SPENDER_ALLOWANCES: return query_allowances(q, out);
    case Q_ALL_ACCOUNTS: return query_all_accounts(q, out);
    case Q_MARKETING_INFO: /* nothing is ever stored: every field is None */
        buf_c(out, "{\"project\":null,\"description\":null,\"logo\":null,\"marketing\":null}");
        return NULL;
    default: return "cw20::logo::Logo not found";
    }
}

CW_EXPORT("query") u32 query(u32 env_ptr, u32 msg_ptr) {
    Env env;
    QueryMsg q;
    memset(&q, 0, sizeof q);
    const char *err = parse_env(env_ptr, &env);
    if (err) return result_err(err);
    err = parse_query(region_read(msg_ptr), &q);
    if (err) return result_err(parse_err(MSG_TYPE("QueryMsg"), err));

    Buf out;
    buf_init(&out, 256);
    err = do_query(&q, &out);
    return err ? result_err(err) : query_ok(buf_view(&out));
}
