/*
 * counter.c - the classic cw-template counter.
 *
 *   instantiate {"count": N}                 N is a JSON number (i32, like cw-template)
 *   execute     {"increment": {}}            count += 1
 *               {"reset": {"count": N}}      owner only, else "Unauthorized"
 *   query       {"get_count": {}}            -> {"count": N}
 *   migrate     {}                           adds attribute migrated=true
 *
 * State lives under the Item key "state" as {"count":N,"owner":"<addr>"}, the same
 * JSON cw-storage-plus would store for cw-template's State struct.
 */
#include "cosmwasm.h"

#define STATE_KEY "state"
#define MSG_TYPE(name) "counter::msg::" name

typedef struct {
    i64 count;
    Bytes owner;
} State;

static const char *read_count(const JField *f, i64 *out) {
    TRY(req_i64(f, out));
    if (*out < -2147483648LL || *out > 2147483647LL) return "invalid value: integer, expected i32";
    return NULL;
}

static const char *load_state(State *s) {
    Bytes raw = db_get(bytes_c(STATE_KEY));
    if (raw.ptr == NULL) return "counter::state::State not found";
    const char *err = json_check(raw);
    JField f[2] = {{"count"}, {"owner"}};
    if (!err) err = json_object(raw, f, 2, 1);
    if (!err) err = read_count(&f[0], &s->count);
    if (!err) err = req_str(&f[1], &s->owner);
    return err ? parse_err("counter::state::State", err) : NULL;
}

static void save_state(const State *s) {
    Buf b;
    buf_init(&b, 64);
    buf_c(&b, "{\"count\":");
    buf_i64(&b, s->count);
    buf_c(&b, ",\"owner\":");
    buf_jstr(&b, s->owner);
    buf_byte(&b, '}');
    db_set(bytes_c(STATE_KEY), buf_view(&b));
}

static void count_attr(Response *r, i64 count) {
    Buf b;
    buf_init(&b, 24);
    buf_i64(&b, count);
    resp_attr(r, "count", buf_view(&b));
}

/* ---- instantiate -------------------------------------------------------------------- */

static const char *parse_instantiate(Bytes doc, i64 *count) {
    TRY(json_check(doc));
    JField f[1] = {{"count"}};
    TRY(json_object(doc, f, 1, 1));
    return read_count(&f[0], count);
}

CW_EXPORT("instantiate") u32 instantiate(u32 env_ptr, u32 info_ptr, u32 msg_ptr) {
    Env env;
    Info info;
    State s;
    const char *err = parse_env(env_ptr, &env);
    if (!err) err = parse_info(info_ptr, &info);
    if (err) return result_err(err);
    err = parse_instantiate(region_read(msg_ptr), &s.count);
    if (err) return result_err(parse_err(MSG_TYPE("InstantiateMsg"), err));

    s.owner = info.sender;
    save_state(&s);

    Response r;
    resp_init(&r);
    resp_attr_c(&r, "method", "instantiate");
    resp_attr(&r, "owner", info.sender);
    count_attr(&r, s.count);
    return resp_ok(&r);
}

/* ---- execute ------------------------------------------------------------------------ */

enum { EXEC_INCREMENT, EXEC_RESET };

static const char *parse_execute(Bytes doc, int *kind, i64 *count) {
    Bytes variant, body;
    TRY(json_check(doc));
    TRY(json_enum(doc, &variant, &body));
    if (json_key_eq(variant, "increment")) {
        *kind = EXEC_INCREMENT;
        return req_empty_object(body);
    }
    if (json_key_eq(variant, "reset")) {
        *kind = EXEC_RESET;
        JField f[1] = {{"count"}};
        TRY(json_object(body, f, 1, 1));
        return read_count(&f[0], count);
    }
    return unknown_variant(variant, "`increment`, `reset`");
}

static const char *do_execute(const Info *info, int kind, i64 count, Response *r) {
    State s;
    TRY(load_state(&s));
    if (kind == EXEC_INCREMENT) {
        if (s.count == 2147483647LL) return "Overflow: Cannot Add with 2147483647 and 1";
        s.count += 1;
        resp_attr_c(r, "method", "increment");
    } else {
        if (!bytes_eq(info->sender, s.owner)) return "Unauthorized";
        s.count = count;
        resp_attr_c(r, "method", "reset");
    }
    save_state(&s);
    count_attr(r, s.count);
    return NULL;
}

CW_EXPORT("execute") u32 execute(u32 env_ptr, u32 info_ptr, u32 msg_ptr) {
    Env env;
    Info info;
    int kind = 0;
    i64 count = 0;
    const char *err = parse_env(env_ptr, &env);
    if (!err) err = parse_info(info_ptr, &info);
    if (err) return result_err(err);
    err = parse_execute(region_read(msg_ptr), &kind, &count);
    if (err) return result_err(parse_err(MSG_TYPE("ExecuteMsg"), err));

    Response r;
    resp_init(&r);
    err = do_execute(&info, kind, count, &r);
    return err ? result_err(err) : resp_ok(&r);
}

/* ---- query -------------------------------------------------------------------------- */

static const char *parse_query(Bytes doc) {
    Bytes variant, body;
    TRY(json_check(doc));
    TRY(json_enum(doc, &variant, &body));
    if (json_key_eq(variant, "get_count")) return req_empty_object(body);
    return unknown_variant(variant, "`get_count`");
}

CW_EXPORT("query") u32 query(u32 env_ptr, u32 msg_ptr) {
    Env env;
    const char *err = parse_env(env_ptr, &env);
    if (err) return result_err(err);
    err = parse_query(region_read(msg_ptr));
    if (err) return result_err(parse_err(MSG_TYPE("QueryMsg"), err));

    State s;
    err = load_state(&s);
    if (err) return result_err(err);
    Buf b;
    buf_init(&b, 32);
    buf_c(&b, "{\"count\":");
    buf_i64(&b, s.count);
    buf_byte(&b, '}');
    return query_ok(buf_view(&b));
}

/* ---- migrate (2-argument form) ------------------------------------------------------ */

CW_EXPORT("migrate") u32 migrate(u32 env_ptr, u32 msg_ptr) {
    Env env;
    const char *err = parse_env(env_ptr, &env);
    if (err) return result_err(err);
    Bytes doc = region_read(msg_ptr);
    err = json_check(doc);
    if (!err) err = req_empty_object(doc);
    if (err) return result_err(parse_err(MSG_TYPE("MigrateMsg"), err));

    State s;
    err = load_state(&s);
    if (err) return result_err(err);
    Response r;
    resp_init(&r);
    resp_attr_c(&r, "method", "migrate");
    resp_attr_c(&r, "migrated", "true");
    count_attr(&r, s.count);
    return resp_ok(&r);
}
