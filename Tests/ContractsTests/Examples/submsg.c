/*
 * submsg.c - exercises submessages, replies and state rollback in the host.
 *
 *   instantiate {}                                   -> attribute action=instantiate
 *   execute {"forward":{"contract":A,"msg":B64,"reply_on":R?,"id":N?,"payload":B64?}}
 *             writes before=1; SubMsg wasm execute of B64 on A (no funds)
 *           {"spawn":{"code_id":N,"msg":B64,"label":L,"admin":A?,"reply_on":R?,"id":N?}}
 *             SubMsg wasm instantiate
 *           {"send_funds":{"to":A,"amount":"N","denom":D,"reply_on":R?,"id":N?}}
 *             SubMsg bank send
 *           {"fail":{}}      writes poisoned=1, then fails: the host must roll it back
 *           {"touch":{"key":K,"value":V}}   writes K=V, attribute touched=K, event "touch"
 *           {"echo":{"data":B64}}           returns B64 as the Response data
 *   reply    stores reply:<id> = "ok" | "err:<error>", attributes reply_id, reply_result
 *            (plus reply_payload / reply_data when present); an error reply with id 99
 *            fails the reply itself, so the host must roll back the whole transaction.
 *   query   {"get":{"key":K}}  -> {"value":V|null}
 *
 * R is one of "always", "error", "success", "never" (default "never"); id defaults to 0.
 */
#include "cosmwasm.h"

#define MSG_TYPE(name) "submsg::msg::" name
#define FAILING_REPLY_ID 99

static const Bytes EMPTY = {(const u8 *)"", 0};

/* ReplyOn is a snake_case unit enum: a JSON string. */
static const char *opt_reply_on(const JField *f, const char **out) {
    static const char *const names[4] = {"always", "error", "success", "never"};
    Bytes s;
    *out = "never";
    if (!field_present(f)) return NULL;
    TRY(req_str(f, &s));
    for (u32 k = 0; k < 4; k++) {
        if (bytes_eq_c(s, names[k])) {
            *out = names[k];
            return NULL;
        }
    }
    return str3("unknown variant `", s, "`, expected one of `always`, `error`, `success`, `never`");
}

static const char *opt_id(const JField *f, u64 *id) {
    *id = 0;
    return field_present(f) ? req_u64(f, id) : NULL;
}

static const char *opt_binary(const JField *f, Bytes *out) {
    *out = EMPTY;
    return field_present(f) ? req_binary(f, out) : NULL;
}

/* ==== instantiate ==================================================================== */

CW_EXPORT("instantiate") u32 instantiate(u32 env_ptr, u32 info_ptr, u32 msg_ptr) {
    Env env;
    Info info;
    const char *err = parse_env(env_ptr, &env);
    if (!err) err = parse_info(info_ptr, &info);
    if (err) return result_err(err);
    Bytes doc = region_read(msg_ptr);
    err = json_check(doc);
    if (!err) err = req_empty_object(doc);
    if (err) return result_err(parse_err(MSG_TYPE("InstantiateMsg"), err));

    Response r;
    resp_init(&r);
    resp_attr_c(&r, "action", "instantiate");
    return resp_ok(&r);
}

/* ==== execute ======================================================================== */

enum { X_FORWARD, X_SPAWN, X_SEND_FUNDS, X_FAIL, X_TOUCH, X_ECHO };

typedef struct {
    int kind;
    Bytes addr;    /* forward: contract, send_funds: to, spawn: admin (ptr NULL = none) */
    Bytes msg;     /* decoded Binary for forward / spawn */
    Bytes payload; /* decoded Binary */
    Bytes label, denom, key, value, data;
    U128 amount;
    u64 id, code_id;
    const char *reply_on;
} ExecuteMsg;

static const char *parse_execute(Bytes doc, ExecuteMsg *m) {
    Bytes variant, body;
    m->payload = EMPTY;
    m->reply_on = "never";
    TRY(json_check(doc));
    TRY(json_enum(doc, &variant, &body));
    if (json_key_eq(variant, "forward")) {
        JField f[5] = {{"contract"}, {"msg"}, {"reply_on"}, {"id"}, {"payload"}};
        m->kind = X_FORWARD;
        TRY(json_object(body, f, 5, 1));
        TRY(req_str(&f[0], &m->addr));
        TRY(req_binary(&f[1], &m->msg));
        TRY(opt_reply_on(&f[2], &m->reply_on));
        TRY(opt_id(&f[3], &m->id));
        return opt_binary(&f[4], &m->payload);
    }
    if (json_key_eq(variant, "spawn")) {
        JField f[6] = {{"code_id"}, {"msg"}, {"label"}, {"admin"}, {"reply_on"}, {"id"}};
        m->kind = X_SPAWN;
        TRY(json_object(body, f, 6, 1));
        TRY(req_u64(&f[0], &m->code_id));
        TRY(req_binary(&f[1], &m->msg));
        TRY(req_str(&f[2], &m->label));
        TRY(opt_str(&f[3], &m->addr));
        TRY(opt_reply_on(&f[4], &m->reply_on));
        return opt_id(&f[5], &m->id);
    }
    if (json_key_eq(variant, "send_funds")) {
        JField f[5] = {{"to"}, {"amount"}, {"denom"}, {"reply_on"}, {"id"}};
        m->kind = X_SEND_FUNDS;
        TRY(json_object(body, f, 5, 1));
        TRY(req_str(&f[0], &m->addr));
        TRY(req_u128(&f[1], &m->amount));
        TRY(req_str(&f[2], &m->denom));
        TRY(opt_reply_on(&f[3], &m->reply_on));
        return opt_id(&f[4], &m->id);
    }
    if (json_key_eq(variant, "touch")) {
        JField f[2] = {{"key"}, {"value"}};
        m->kind = X_TOUCH;
        TRY(json_object(body, f, 2, 1));
        TRY(req_str(&f[0], &m->key));
        return req_str(&f[1], &m->value);
    }
    if (json_key_eq(variant, "echo")) {
        JField f[1] = {{"data"}};
        m->kind = X_ECHO;
        TRY(json_object(body, f, 1, 1));
        return req_binary(&f[0], &m->data);
    }
    if (json_key_eq(variant, "fail")) {
        m->kind = X_FAIL;
        return req_empty_object(body);
    }
    return unknown_variant(variant, "`forward`, `spawn`, `send_funds`, `fail`, `touch`, `echo`");
}

static void wasm_execute_msg(Buf *b, Bytes contract, Bytes msg) {
    buf_c(b, "{\"wasm\":{\"execute\":{\"contract_addr\":");
    buf_jstr(b, contract);
    buf_c(b, ",\"msg\":\"");
    buf_b64(b, msg);
    buf_c(b, "\",\"funds\":[]}}}");
}

static void wasm_instantiate_msg(Buf *b, const ExecuteMsg *m) {
    buf_c(b, "{\"wasm\":{\"instantiate\":{\"admin\":");
    if (m->addr.ptr) {
        buf_jstr(b, m->addr);
    } else {
        buf_c(b, "null");
    }
    buf_c(b, ",\"code_id\":");
    buf_u64(b, m->code_id);
    buf_c(b, ",\"msg\":\"");
    buf_b64(b, m->msg);
    buf_c(b, "\",\"funds\":[],\"label\":");
    buf_jstr(b, m->label);
    buf_c(b, "}}}");
}

static void bank_send_msg(Buf *b, const ExecuteMsg *m) {
    buf_c(b, "{\"bank\":{\"send\":{\"to_address\":");
    buf_jstr(b, m->addr);
    buf_c(b, ",\"amount\":[{\"denom\":");
    buf_jstr(b, m->denom);
    buf_c(b, ",\"amount\":\"");
    buf_u128(b, m->amount);
    buf_c(b, "\"}]}}}");
}

static const char *do_execute(const ExecuteMsg *m, Response *r) {
    Buf msg;
    buf_init(&msg, 128 + m->msg.len * 2);
    switch (m->kind) {
    case X_FORWARD:
        TRY(addr_validate(m->addr));
        db_set(bytes_c("before"), bytes_c("1"));
        wasm_execute_msg(&msg, m->addr, m->msg);
        resp_submsg(r, m->id, m->payload, buf_view(&msg), m->reply_on);
        resp_attr_c(r, "action", "forward");
        return NULL;
    case X_SPAWN:
        if (m->addr.ptr) TRY(addr_validate(m->addr));
        wasm_instantiate_msg(&msg, m);
        resp_submsg(r, m->id, m->payload, buf_view(&msg), m->reply_on);
        resp_attr_c(r, "action", "spawn");
        return NULL;
    case X_SEND_FUNDS:
        TRY(addr_validate(m->addr));
        bank_send_msg(&msg, m);
        resp_submsg(r, m->id, m->payload, buf_view(&msg), m->reply_on);
        resp_attr_c(r, "action", "send_funds");
        return NULL;
    case X_TOUCH:
        db_set(m->key, m->value);
        resp_attr(r, "touched", m->key);
        resp_event1(r, "touch", "key", m->key);
        return NULL;
    case X_ECHO:
        r->data = m->data;
        resp_attr_c(r, "action", "echo");
        return NULL;
    default: /* X_FAIL: the write must not survive the failed call */
        db_set(bytes_c("poisoned"), bytes_c("1"));
        return "intentional failure";
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
    err = do_execute(&m, &r);
    return err ? result_err(err) : resp_ok(&r);
}

/* ==== reply ========================================================================== */

typedef struct {
    u64 id;
    Bytes payload; /* decoded */
    int ok;
    Bytes error;   /* when !ok */
    Bytes data;    /* decoded, ptr == NULL when null (ok only) */
} Reply;

/* The host builds Reply, so unknown fields (gas_used, msg_responses, ...) are allowed. */
static const char *parse_reply(Bytes doc, Reply *rep) {
    TRY(json_check(doc));
    JField f[3] = {{"id"}, {"payload"}, {"result"}};
    TRY(json_object(doc, f, 3, 0));
    TRY(req_u64(&f[0], &rep->id));
    TRY(opt_binary(&f[1], &rep->payload));
    if (f[2].v.ptr == NULL) return "missing field `result`";
    Bytes variant, body;
    TRY(json_enum(f[2].v, &variant, &body));
    rep->data.ptr = NULL;
    rep->data.len = 0;
    if (json_key_eq(variant, "ok")) {
        JField ok[1] = {{"data"}};
        rep->ok = 1;
        TRY(json_object(body, ok, 1, 0));
        if (field_present(&ok[0])) TRY(req_binary(&ok[0], &rep->data));
        return NULL;
    }
    if (json_key_eq(variant, "error")) {
        JField e = {"error", body};
        rep->ok = 0;
        return req_str(&e, &rep->error);
    }
    return unknown_variant(variant, "`ok`, `error`");
}

CW_EXPORT("reply") u32 reply(u32 env_ptr, u32 reply_ptr) {
    Env env;
    Reply rep;
    const char *err = parse_env(env_ptr, &env);
    if (err) return result_err(err);
    err = parse_reply(region_read(reply_ptr), &rep);
    if (err) return result_err(parse_err("cosmwasm_std::results::submessages::Reply", err));

    Buf id;
    buf_init(&id, 24);
    buf_u64(&id, rep.id);
    Buf key;
    buf_init(&key, 32);
    buf_c(&key, "reply:");
    buf_bytes(&key, buf_view(&id));
    Buf value;
    buf_init(&value, 16 + rep.error.len);
    if (rep.ok) {
        buf_c(&value, "ok");
    } else {
        buf_c(&value, "err:");
        buf_bytes(&value, rep.error);
    }
    db_set(buf_view(&key), buf_view(&value));

    if (!rep.ok && rep.id == FAILING_REPLY_ID)
        return result_err(str3("reply 99 failed: ", rep.error, NULL));

    Response r;
    resp_init(&r);
    resp_attr(&r, "reply_id", buf_view(&id));
    resp_attr_c(&r, "reply_result", rep.ok ? "ok" : "err");
    if (rep.payload.len) {
        Buf p;
        buf_init(&p, rep.payload.len * 2 + 4);
        buf_b64(&p, rep.payload);
        resp_attr(&r, "reply_payload", buf_view(&p));
    }
    if (rep.data.ptr) {
        Buf d;
        buf_init(&d, rep.data.len * 2 + 4);
        buf_b64(&d, rep.data);
        resp_attr(&r, "reply_data", buf_view(&d));
    }
    return resp_ok(&r);
}

/* ==== query ========================================================================== */

static const char *parse_query(Bytes doc, Bytes *key) {
    Bytes variant, body;
    TRY(json_check(doc));
    TRY(json_enum(doc, &variant, &body));
    if (!json_key_eq(variant, "get")) return unknown_variant(variant, "`get`");
    JField f[1] = {{"key"}};
    TRY(json_object(body, f, 1, 1));
    return req_str(&f[0], key);
}

CW_EXPORT("query") u32 query(u32 env_ptr, u32 msg_ptr) {
    Env env;
    Bytes key;
    const char *err = parse_env(env_ptr, &env);
    if (err) return result_err(err);
    err = parse_query(region_read(msg_ptr), &key);
    if (err) return result_err(parse_err(MSG_TYPE("QueryMsg"), err));

    Bytes value = db_get(key);
    Buf out;
    buf_init(&out, 32 + value.len);
    buf_c(&out, "{\"value\":");
    if (value.ptr) {
        buf_jstr(&out, value);
    } else {
        buf_c(&out, "null");
    }
    buf_byte(&out, '}');
    return query_ok(buf_view(&out));
}
