/*
 * cosmwasm.h - a tiny freestanding runtime for CosmWasm contracts written in C.
 *
 * Targets the CosmWasm "interface_version_8" ABI (cosmwasm-std 1.x / 2.x VMs):
 *   - exports: memory, allocate, deallocate, interface_version_8 (defined in cosmwasm.c)
 *     and the entry points each contract defines with CW_EXPORT;
 *   - arguments and results travel as Regions: {u32 offset; u32 capacity; u32 length}
 *     in little-endian linear memory, holding JSON bytes;
 *   - imports come from module "env" (db_read, db_write, ...).
 *
 * Memory is a bump allocator that never frees: every call runs on a fresh instance,
 * so deallocate is a no-op. Errors are returned as NUL-terminated strings (NULL = ok)
 * so that malformed input becomes {"error": "..."} rather than a trap.
 */
#ifndef COSMWASM_H
#define COSMWASM_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;

#define NULL ((void *)0)

/* Export a function under `name` (no --export-dynamic, so nothing else leaks out). */
#define CW_EXPORT(name) __attribute__((export_name(name), used))
/* Import a host function `name` from module "env". */
#define CW_IMPORT(name) __attribute__((import_module("env"), import_name(name)))

/* Propagate an error string out of a function that returns `const char *`. */
#define TRY(expr)                                                                          \
    do {                                                                                   \
        const char *try_err_ = (expr);                                                     \
        if (try_err_) return try_err_;                                                     \
    } while (0)

/* ---- ABI types ---------------------------------------------------------------------- */

/* The 12-byte Region the host and the contract exchange pointers to. */
typedef struct {
    u32 offset;
    u32 capacity;
    u32 length;
} Region;

/* A borrowed byte span (not NUL-terminated). ptr == NULL means "absent". */
typedef struct {
    const u8 *ptr;
    u32 len;
} Bytes;

/* ---- Host imports (module "env"); C names are prefixed to avoid libc clashes ------- */

CW_IMPORT("db_read") u32 env_db_read(u32 key);
CW_IMPORT("db_write") void env_db_write(u32 key, u32 value);
CW_IMPORT("db_remove") void env_db_remove(u32 key);
CW_IMPORT("db_scan") u32 env_db_scan(u32 start, u32 end, i32 order);
CW_IMPORT("db_next") u32 env_db_next(u32 iterator);
CW_IMPORT("addr_validate") u32 env_addr_validate(u32 human);
CW_IMPORT("debug") void env_debug(u32 msg);
CW_IMPORT("abort") void env_abort(u32 msg);

/* ---- Memory ------------------------------------------------------------------------ */

void *cw_alloc(u32 size);
void *memcpy(void *dst, const void *src, unsigned long n);
void *memmove(void *dst, const void *src, unsigned long n);
void *memset(void *dst, int c, unsigned long n);
int memcmp(const void *a, const void *b, unsigned long n);
u32 cw_strlen(const char *s);

/* Aborts the call through the host's `abort` import (the VM turns it into a trap). */
__attribute__((noreturn)) void cw_panic(const char *msg);

/* Region helpers. */
u32 region_new(const void *data, u32 len); /* a Region describing existing bytes */
Bytes region_read(u32 region_ptr);         /* the bytes a Region points at */

/* ---- Bytes ------------------------------------------------------------------------- */

Bytes bytes_c(const char *s);
int bytes_eq(Bytes a, Bytes b);
int bytes_eq_c(Bytes a, const char *s);
int bytes_cmp(Bytes a, Bytes b); /* lexicographic, like Rust's Ord for [u8] */
Bytes bytes_cat(Bytes a, Bytes b);

/* ---- Growable output buffer (JSON writer) ------------------------------------------ */

typedef struct {
    u8 *ptr;
    u32 len;
    u32 cap;
} Buf;

void buf_init(Buf *b, u32 cap);
void buf_put(Buf *b, const void *data, u32 len);
void buf_byte(Buf *b, u8 c);
void buf_c(Buf *b, const char *s);
void buf_bytes(Buf *b, Bytes s);
void buf_jstr(Buf *b, Bytes s);          /* JSON string literal with escaping */
void buf_jstr_c(Buf *b, const char *s);
void buf_u64(Buf *b, u64 v);
void buf_i64(Buf *b, i64 v);
void buf_b64(Buf *b, Bytes data);        /* base64 characters, no quotes */
Bytes buf_view(const Buf *b);
const char *buf_cstr(Buf *b);            /* NUL-terminates and returns the text */

/* Concatenates up to three pieces into a fresh NUL-terminated string (for errors). */
const char *str3(const char *a, Bytes b, const char *c);

/* ---- Base64 (standard alphabet, padded, canonical - like cosmwasm_std::Binary) ----- */

/* Returns 0 on invalid input. */
int b64_decode(Bytes in, Bytes *out);

/* ---- Uint128 (decimal strings in JSON) --------------------------------------------- */

typedef struct {
    u64 lo;
    u64 hi;
} U128;

U128 u128_from_u64(u64 v);
int u128_is_zero(U128 a);
int u128_cmp(U128 a, U128 b);
int u128_add(U128 a, U128 b, U128 *out); /* 0 on overflow */
int u128_sub(U128 a, U128 b, U128 *out); /* 0 on underflow */
const char *u128_parse(Bytes s, U128 *out);
void buf_u128(Buf *b, U128 v);
Bytes u128_text(U128 v);
/* cosmwasm-std style overflow message, e.g. "Overflow: Cannot Sub with 1 and 5". */
const char *u128_overflow(const char *op, U128 a, U128 b);

/* ---- JSON reader -------------------------------------------------------------------- */

enum { J_NONE, J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

/* Full syntax check (RFC 8259 + UTF-8, depth <= 128). Run it on every untrusted
 * document first: the navigation helpers below assume well-formed text but still
 * never read outside the span they are given. */
const char *json_check(Bytes doc);

/* Kind of a value span (J_NONE for an absent value). */
int json_kind(Bytes v);

/* Iterates the members of an object or the items of an array. */
typedef struct {
    Bytes src;
    u32 pos;
} JIter;

void json_iter(JIter *it, Bytes container);
int json_next_member(JIter *it, Bytes *raw_key, Bytes *value);
int json_next_item(JIter *it, Bytes *value);

/* Compares a raw (still escaped) key or string body with a literal. */
int json_key_eq(Bytes raw_key, const char *name);

/* Decodes a string value span (including quotes) into its bytes. */
Bytes json_str(Bytes v);

/* One named member of an object, filled in by json_object. */
typedef struct {
    const char *name;
    Bytes v; /* ptr == NULL when the member is absent */
} JField;

/* Collects `fields` from object `obj`. With deny_unknown (serde deny_unknown_fields,
 * which #[cw_serde] sets) any other member is an error; duplicates always are. */
const char *json_object(Bytes obj, JField *fields, u32 n, int deny_unknown);

/* An externally tagged enum value {"variant": body}. */
const char *json_enum(Bytes doc, Bytes *raw_variant, Bytes *body);
const char *unknown_variant(Bytes raw_variant, const char *expected);

/* Typed field readers; error messages follow serde's wording. */
int field_present(const JField *f); /* present and not null (Option::Some) */
const char *req_str(const JField *f, Bytes *out);
const char *opt_str(const JField *f, Bytes *out); /* out->ptr == NULL for None */
const char *req_u128(const JField *f, U128 *out); /* Uint128: decimal string */
const char *opt_u128(const JField *f, U128 *out, int *present);
const char *req_u64(const JField *f, u64 *out);   /* JSON number */
const char *req_i64(const JField *f, i64 *out);   /* JSON number */
const char *req_u64_str(const JField *f, u64 *out); /* Uint64 / Timestamp: string */
const char *req_binary(const JField *f, Bytes *out); /* Binary: base64 string */
const char *req_empty_object(Bytes v);            /* `{}` of a unit-like struct variant */

/* Prefixes a deserialization error the way cosmwasm_std::from_json does. */
const char *parse_err(const char *type, const char *msg);

/* ---- Entry point plumbing ----------------------------------------------------------- */

typedef struct {
    u64 height;
    u64 time_ns;
    Bytes chain_id;
    Bytes contract;
} Env;

typedef struct {
    Bytes sender;
    Bytes funds; /* raw JSON array of coins */
} Info;

const char *parse_env(u32 region_ptr, Env *env);
const char *parse_info(u32 region_ptr, Info *info);

/* The Response under construction; serialized by resp_ok. */
typedef struct {
    Buf messages;
    Buf attributes;
    Buf events;
    u32 n_messages;
    u32 n_attributes;
    u32 n_events;
    Bytes data; /* raw bytes, ptr == NULL for none */
} Response;

void resp_init(Response *r);
void resp_attr(Response *r, const char *key, Bytes value);
void resp_attr_c(Response *r, const char *key, const char *value);
void resp_attr_u128(Response *r, const char *key, U128 value);
void resp_attr_u64(Response *r, const char *key, u64 value);
/* Adds an event with one attribute (enough for the examples). */
void resp_event1(Response *r, const char *type, const char *key, Bytes value);
/* Adds a SubMsg; msg_json is a complete CosmosMsg JSON object. */
void resp_submsg(Response *r, u64 id, Bytes payload, Bytes msg_json, const char *reply_on);

/* Result Regions. */
u32 resp_ok(Response *r);        /* {"ok":{"messages":..,"attributes":..,"events":..,"data":..}} */
u32 result_err(const char *msg); /* {"error":"msg"} */
u32 query_ok(Bytes answer_json); /* {"ok":"<base64 answer>"} */

/* Storage and API wrappers. */
Bytes db_get(Bytes key); /* ptr == NULL when absent */
void db_set(Bytes key, Bytes value);
void db_del(Bytes key);
u32 db_range(Bytes start, Bytes end, int descending); /* ptr == NULL bounds are open */
int db_range_next(u32 iter, Bytes *key, Bytes *value);
const char *addr_validate(Bytes human);
void debug_log(const char *msg);

#endif
