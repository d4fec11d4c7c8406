/*
 * cosmwasm.c - shared runtime for the example contracts (see cosmwasm.h).
 * Everything here is integer-only and needs no libc, so -mcpu=mvp output contains
 * no float, bulk-memory, sign-extension or SIMD instructions.
 */
#include "cosmwasm.h"

/* ==== Memory ========================================================================= */

extern u8 __heap_base; /* provided by wasm-ld: first byte after data and stack */
static u8 *heap_top = &__heap_base;

void *cw_alloc(u32 size) {
    u32 start = ((u32)heap_top + 7u) & ~7u;
    if (size > 0xFFFFFFF0u - start) cw_panic("allocation too large");
    u32 end = start + size;
    u64 have = (u64)__builtin_wasm_memory_size(0) * 65536u;
    if ((u64)end > have) {
        u32 pages = (u32)(((u64)end - have + 65535u) / 65536u);
        if (__builtin_wasm_memory_grow(0, pages) == (unsigned long)-1) cw_panic("out of memory");
    }
    heap_top = (u8 *)end;
    return (void *)start;
}

/* clang may emit calls to these for struct copies even in freestanding mode. */
void *memcpy(void *dst, const void *src, unsigned long n) {
    u8 *d = dst;
    const u8 *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, unsigned long n) {
    u8 *d = dst;
    const u8 *s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, unsigned long n) {
    u8 *d = dst;
    while (n--) *d++ = (u8)c;
    return dst;
}

int memcmp(const void *a, const void *b, unsigned long n) {
    const u8 *x = a, *y = b;
    for (unsigned long i = 0; i < n; i++) {
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}

u32 cw_strlen(const char *s) {
    u32 n = 0;
    while (s[n]) n++;
    return n;
}

u32 region_new(const void *data, u32 len) {
    if (data == NULL) data = ""; /* the VM refuses Regions with a zero offset */
    Region *r = cw_alloc(sizeof(Region));
    r->offset = (u32)data;
    r->capacity = len;
    r->length = len;
    return (u32)r;
}

Bytes region_read(u32 region_ptr) {
    if (region_ptr == 0) cw_panic("null region");
    const Region *r = (const Region *)region_ptr;
    if (r->length > r->capacity) cw_panic("region length exceeds capacity");
    Bytes b = {(const u8 *)r->offset, r->length};
    return b;
}

void cw_panic(const char *msg) {
    env_abort(region_new(msg, cw_strlen(msg)));
    __builtin_trap(); /* abort never returns; keep the compiler honest */
}

/* ==== ABI exports common to every contract =========================================== */

/* Called by the host to place arguments (and db_read results) in our memory. */
CW_EXPORT("allocate") u32 allocate(u32 size) {
    Region *r = cw_alloc(sizeof(Region));
    r->offset = (u32)cw_alloc(size);
    r->capacity = size;
    r->length = 0;
    return (u32)r;
}

/* Bump allocator: memory lives until the instance is dropped after this call. */
CW_EXPORT("deallocate") void deallocate(u32 region_ptr) { (void)region_ptr; }

/* Marker export: tells the VM which ABI this module speaks. */
CW_EXPORT("interface_version_8") void interface_version_8(void) {}

/* ==== Bytes ========================================================================== */

Bytes bytes_c(const char *s) {
    Bytes b = {(const u8 *)s, cw_strlen(s)};
    return b;
}

int bytes_eq(Bytes a, Bytes b) { return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0; }

int bytes_eq_c(Bytes a, const char *s) { return bytes_eq(a, bytes_c(s)); }

int bytes_cmp(Bytes a, Bytes b) {
    u32 n = a.len < b.len ? a.len : b.len;
    int c = memcmp(a.ptr, b.ptr, n);
    if (c) return c;
    return a.len < b.len ? -1 : (a.len > b.len ? 1 : 0);
}

Bytes bytes_cat(Bytes a, Bytes b) {
    u8 *p = cw_alloc(a.len + b.len);
    memcpy(p, a.ptr, a.len);
    memcpy(p + a.len, b.ptr, b.len);
    Bytes r = {p, a.len + b.len};
    return r;
}

/* ==== Buf ============================================================================ */

void buf_init(Buf *b, u32 cap) {
    b->ptr = cw_alloc(cap);
    b->len = 0;
    b->cap = cap;
}

static void buf_reserve(Buf *b, u32 extra) {
    if (extra > 0x7FFFFFFFu - b->len) cw_panic("buffer too large");
    u32 need = b->len + extra;
    if (need <= b->cap) return;
    u32 cap = b->cap ? b->cap * 2 : 64;
    while (cap < need) cap *= 2;
    u8 *p = cw_alloc(cap); /* the old block is simply abandoned (bump allocator) */
    memcpy(p, b->ptr, b->len);
    b->ptr = p;
    b->cap = cap;
}

void buf_put(Buf *b, const void *data, u32 len) {
    buf_reserve(b, len);
    memcpy(b->ptr + b->len, data, len);
    b->len += len;
}

void buf_byte(Buf *b, u8 c) { buf_put(b, &c, 1); }

void buf_c(Buf *b, const char *s) { buf_put(b, s, cw_strlen(s)); }

void buf_bytes(Buf *b, Bytes s) { buf_put(b, s.ptr, s.len); }

static const char HEX[] = "0123456789abcdef";

/* Escapes like serde_json: quote, backslash and control characters. */
void buf_jstr(Buf *b, Bytes s) {
    buf_byte(b, '"');
    for (u32 i = 0; i < s.len; i++) {
        u8 c = s.ptr[i];
        if (c == '"' || c == '\\') {
            buf_byte(b, '\\');
            buf_byte(b, c);
        } else if (c == '\n') {
            buf_c(b, "\\n");
        } else if (c == '\r') {
            buf_c(b, "\\r");
        } else if (c == '\t') {
            buf_c(b, "\\t");
        } else if (c == '\b') {
            buf_c(b, "\\b");
        } else if (c == '\f') {
            buf_c(b, "\\f");
        } else if (c < 0x20) {
            u8 esc[6] = {'\\', 'u', '0', '0', (u8)HEX[c >> 4], (u8)HEX[c & 15]};
            buf_put(b, esc, 6);
        } else {
            buf_byte(b, c);
        }
    }
    buf_byte(b, '"');
}

void buf_jstr_c(Buf *b, const char *s) { buf_jstr(b, bytes_c(s)); }

void buf_u64(Buf *b, u64 v) {
    char tmp[20];
    u32 n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) buf_byte(b, (u8)tmp[--n]);
}

void buf_i64(Buf *b, i64 v) {
    if (v < 0) {
        buf_byte(b, '-');
        buf_u64(b, (u64)0 - (u64)v);
    } else {
        buf_u64(b, (u64)v);
    }
}

Bytes buf_view(const Buf *b) {
    Bytes r = {b->ptr, b->len};
    return r;
}

const char *buf_cstr(Buf *b) {
    buf_byte(b, 0);
    b->len--;
    return (const char *)b->ptr;
}

const char *str3(const char *a, Bytes b, const char *c) {
    Buf out;
    buf_init(&out, 64);
    buf_c(&out, a);
    if (b.ptr) buf_bytes(&out, b);
    if (c) buf_c(&out, c);
    return buf_cstr(&out);
}

/* ==== Base64 ========================================================================= */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void buf_b64(Buf *b, Bytes d) {
    u32 i = 0;
    for (; i + 3 <= d.len; i += 3) {
        u32 v = ((u32)d.ptr[i] << 16) | ((u32)d.ptr[i + 1] << 8) | d.ptr[i + 2];
        u8 q[4] = {(u8)B64[v >> 18], (u8)B64[(v >> 12) & 63], (u8)B64[(v >> 6) & 63],
                   (u8)B64[v & 63]};
        buf_put(b, q, 4);
    }
    u32 rest = d.len - i;
    if (rest == 1) {
        u32 v = (u32)d.ptr[i] << 16;
        u8 q[4] = {(u8)B64[v >> 18], (u8)B64[(v >> 12) & 63], '=', '='};
        buf_put(b, q, 4);
    } else if (rest == 2) {
        u32 v = ((u32)d.ptr[i] << 16) | ((u32)d.ptr[i + 1] << 8);
        u8 q[4] = {(u8)B64[v >> 18], (u8)B64[(v >> 12) & 63], (u8)B64[(v >> 6) & 63], '='};
        buf_put(b, q, 4);
    }
}

static int b64_val(u8 c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict decoding like the base64 crate's STANDARD engine used by Binary:
 * padding required, no whitespace, unused trailing bits must be zero. */
int b64_decode(Bytes in, Bytes *out) {
    if (in.len % 4) return 0;
    u8 *p = cw_alloc(in.len / 4 * 3);
    u32 n = 0;
    for (u32 i = 0; i < in.len; i += 4) {
        int last = i + 4 == in.len;
        int v[4];
        u32 pad = 0;
        for (u32 k = 0; k < 4; k++) {
            u8 c = in.ptr[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad) return 0; /* data after padding */
                v[k] = b64_val(c);
                if (v[k] < 0) return 0;
            }
        }
        u32 w = ((u32)v[0] << 18) | ((u32)v[1] << 12) | ((u32)v[2] << 6) | (u32)v[3];
        if (pad == 2 && (w & 0xFFFF)) return 0;
        if (pad == 1 && (w & 0xFF)) return 0;
        p[n++] = (u8)(w >> 16);
        if (pad < 2) p[n++] = (u8)(w >> 8);
        if (pad < 1) p[n++] = (u8)w;
    }
    out->ptr = p;
    out->len = n;
    return 1;
}

/* ==== Uint128 ======================================================================== */
/* Two u64 halves; multiplication and division go through 32-bit limbs so that no
 * compiler-rt helper (__multi3, __udivti3) is needed. */

U128 u128_from_u64(u64 v) {
    U128 r = {v, 0};
    return r;
}

int u128_is_zero(U128 a) { return (a.lo | a.hi) == 0; }

int u128_cmp(U128 a, U128 b) {
    if (a.hi != b.hi) return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo) return a.lo < b.lo ? -1 : 1;
    return 0;
}

int u128_add(U128 a, U128 b, U128 *out) {
    U128 r;
    r.lo = a.lo + b.lo;
    u64 carry = r.lo < a.lo;
    r.hi = a.hi + b.hi;
    if (r.hi < a.hi) return 0;
    r.hi += carry;
    if (r.hi < carry) return 0;
    *out = r;
    return 1;
}

int u128_sub(U128 a, U128 b, U128 *out) {
    if (u128_cmp(a, b) < 0) return 0;
    out->hi = a.hi - b.hi - (a.lo < b.lo);
    out->lo = a.lo - b.lo;
    return 1;
}

/* Rust's u128::from_str: optional '+', ASCII digits, leading zeros allowed. */
const char *u128_parse(Bytes s, U128 *out) {
    const char *why = NULL;
    u32 i = 0;
    if (s.len && s.ptr[0] == '+') i = 1;
    if (s.len == 0) why = "cannot parse integer from empty string";
    else if (i == s.len) why = "invalid digit found in string";
    u32 limb[4] = {0, 0, 0, 0};
    for (; !why && i < s.len; i++) {
        u8 c = s.ptr[i];
        if (c < '0' || c > '9') {
            why = "invalid digit found in string";
            break;
        }
        u64 carry = (u64)(c - '0');
        for (u32 k = 0; k < 4; k++) {
            u64 t = (u64)limb[k] * 10u + carry;
            limb[k] = (u32)t;
            carry = t >> 32;
        }
        if (carry) why = "number too large to fit in target type";
    }
    if (why) {
        Buf e;
        buf_init(&e, 64);
        buf_c(&e, "invalid Uint128 '");
        buf_bytes(&e, s);
        buf_c(&e, "' - ");
        buf_c(&e, why);
        return buf_cstr(&e);
    }
    out->lo = ((u64)limb[1] << 32) | limb[0];
    out->hi = ((u64)limb[3] << 32) | limb[2];
    return NULL;
}

void buf_u128(Buf *b, U128 v) {
    u32 limb[4] = {(u32)v.lo, (u32)(v.lo >> 32), (u32)v.hi, (u32)(v.hi >> 32)};
    char tmp[40];
    u32 n = 0;
    do {
        u64 rem = 0;
        for (int k = 3; k >= 0; k--) {
            u64 cur = (rem << 32) | limb[k];
            limb[k] = (u32)(cur / 10u);
            rem = cur % 10u;
        }
        tmp[n++] = (char)('0' + rem);
    } while (limb[0] | limb[1] | limb[2] | limb[3]);
    while (n) buf_byte(b, (u8)tmp[--n]);
}

Bytes u128_text(U128 v) {
    Buf b;
    buf_init(&b, 40);
    buf_u128(&b, v);
    return buf_view(&b);
}

const char *u128_overflow(const char *op, U128 a, U128 b) {
    Buf e;
    buf_init(&e, 96);
    buf_c(&e, "Overflow: Cannot ");
    buf_c(&e, op);
    buf_c(&e, " with ");
    buf_u128(&e, a);
    buf_c(&e, " and ");
    buf_u128(&e, b);
    return buf_cstr(&e);
}

/* ==== JSON validation ================================================================ */

typedef struct {
    const u8 *p;
    u32 n;
    u32 i;
} JParse;

static int is_ws(u8 c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int is_digit(u8 c) { return c >= '0' && c <= '9'; }

static void jp_ws(JParse *j) {
    while (j->i < j->n && is_ws(j->p[j->i])) j->i++;
}

static int hex_digit(u8 c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at p[i..i+4); -1 if out of range or not hex. */
static i32 hex4(const u8 *p, u32 n, u32 i) {
    if (i > n || n - i < 4) return -1;
    i32 v = 0;
    for (u32 k = 0; k < 4; k++) {
        int d = hex_digit(p[i + k]);
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at p[0..n), 0 if malformed. */
static u32 utf8_len(const u8 *p, u32 n) {
    u8 c = p[0];
    if (c < 0x80) return 1;
    u32 len;
    u8 lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (u32 k = 2; k < len; k++) {
        if (p[k] < 0x80 || p[k] > 0xBF) return 0;
    }
    return len;
}

static const char *jp_string(JParse *j) {
    j->i++; /* opening quote */
    for (;;) {
        if (j->i >= j->n) return "EOF while parsing a string";
        u8 c = j->p[j->i];
        if (c == '"') {
            j->i++;
            return NULL;
        }
        if (c < 0x20) return "control character (\\u0000-\\u001F) found while parsing a string";
        if (c == '\\') {
            if (j->i + 1 >= j->n) return "EOF while parsing a string";
            u8 e = j->p[j->i + 1];
            if (e == 'u') {
                i32 cp = hex4(j->p, j->n, j->i + 2);
                if (cp < 0) return "invalid escape";
                j->i += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return "lone trailing surrogate in hex escape";
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (j->i + 1 >= j->n || j->p[j->i] != '\\' || j->p[j->i + 1] != 'u')
                        return "lone leading surrogate in hex escape";
                    i32 lo = hex4(j->p, j->n, j->i + 2);
                    if (lo < 0xDC00 || lo > 0xDFFF) return "lone leading surrogate in hex escape";
                    j->i += 6;
                }
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                j->i += 2;
            } else {
                return "invalid escape";
            }
            continue;
        }
        u32 l = utf8_len(j->p + j->i, j->n - j->i);
        if (l == 0) return "invalid unicode code point";
        j->i += l;
    }
}

static const char *jp_number(JParse *j) {
    if (j->p[j->i] == '-') j->i++;
    if (j->i >= j->n || !is_digit(j->p[j->i])) return "invalid number";
    if (j->p[j->i] == '0') {
        j->i++;
    } else {
        while (j->i < j->n && is_digit(j->p[j->i])) j->i++;
    }
    if (j->i < j->n && j->p[j->i] == '.') {
        j->i++;
        if (j->i >= j->n || !is_digit(j->p[j->i])) return "invalid number";
        while (j->i < j->n && is_digit(j->p[j->i])) j->i++;
    }
    if (j->i < j->n && (j->p[j->i] == 'e' || j->p[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->p[j->i] == '+' || j->p[j->i] == '-')) j->i++;
        if (j->i >= j->n || !is_digit(j->p[j->i])) return "invalid number";
        while (j->i < j->n && is_digit(j->p[j->i])) j->i++;
    }
    return NULL;
}

static const char *jp_literal(JParse *j, const char *lit) {
    u32 len = cw_strlen(lit);
    if (j->n - j->i < len || memcmp(j->p + j->i, lit, len) != 0) return "expected value";
    j->i += len;
    return NULL;
}

#define JSON_MAX_DEPTH 128 /* serde_json's recursion limit */

static const char *jp_value(JParse *j, u32 depth) {
    jp_ws(j);
    if (j->i >= j->n) return "EOF while parsing a value";
    u8 c = j->p[j->i];
    if (c == '{' || c == '[') {
        u8 close = c == '{' ? '}' : ']';
        if (depth >= JSON_MAX_DEPTH) return "recursion limit exceeded";
        j->i++;
        jp_ws(j);
        if (j->i < j->n && j->p[j->i] == close) {
            j->i++;
            return NULL;
        }
        for (;;) {
            if (c == '{') {
                jp_ws(j);
                if (j->i >= j->n) return "EOF while parsing an object";
                if (j->p[j->i] != '"') return "key must be a string";
                TRY(jp_string(j));
                jp_ws(j);
                if (j->i >= j->n || j->p[j->i] != ':') return "expected `:`";
                j->i++;
            }
            TRY(jp_value(j, depth + 1));
            jp_ws(j);
            if (j->i >= j->n) return "EOF while parsing a list or object";
            if (j->p[j->i] == ',') {
                j->i++;
                continue;
            }
            if (j->p[j->i] == close) {
                j->i++;
                return NULL;
            }
            return c == '{' ? "expected `,` or `}`" : "expected `,` or `]`";
        }
    }
    if (c == '"') return jp_string(j);
    if (c == 't') return jp_literal(j, "true");
    if (c == 'f') return jp_literal(j, "false");
    if (c == 'n') return jp_literal(j, "null");
    if (c == '-' || is_digit(c)) return jp_number(j);
    return "expected value";
}

const char *json_check(Bytes doc) {
    if (doc.ptr == NULL) return "EOF while parsing a value";
    JParse j = {doc.ptr, doc.len, 0};
    TRY(jp_value(&j, 0));
    jp_ws(&j);
    if (j.i != j.n) return "trailing characters";
    return NULL;
}

/* ==== JSON navigation (on checked text) ============================================== */

int json_kind(Bytes v) {
    if (v.ptr == NULL || v.len == 0) return J_NONE;
    switch (v.ptr[0]) {
    case '{': return J_OBJ;
    case '[': return J_ARR;
    case '"': return J_STR;
    case 'n': return J_NULL;
    case 't':
    case 'f': return J_BOOL;
    default: return J_NUM;
    }
}

static u32 ws_at(Bytes s, u32 i) {
    while (i < s.len && is_ws(s.ptr[i])) i++;
    return i;
}

static u32 skip_string(Bytes s, u32 i) {
    i++;
    while (i < s.len) {
        if (s.ptr[i] == '\\') {
            i += 2;
        } else if (s.ptr[i] == '"') {
            return i + 1;
        } else {
            i++;
        }
    }
    return s.len;
}

/* Index just past the value starting at i; iterative, so depth costs no stack. */
static u32 skip_value(Bytes s, u32 i) {
    if (i >= s.len) return s.len;
    u8 c = s.ptr[i];
    if (c == '"') return skip_string(s, i);
    if (c == '{' || c == '[') {
        u32 depth = 0;
        while (i < s.len) {
            c = s.ptr[i];
            if (c == '"') {
                i = skip_string(s, i);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
            i++;
        }
        return s.len;
    }
    while (i < s.len && !is_ws(s.ptr[i]) && s.ptr[i] != ',' && s.ptr[i] != '}' && s.ptr[i] != ']')
        i++;
    return i;
}

static Bytes span(Bytes s, u32 from, u32 to) {
    if (to > s.len) to = s.len;
    if (from > to) from = to;
    Bytes r = {s.ptr + from, to - from};
    return r;
}

void json_iter(JIter *it, Bytes container) {
    it->src = container;
    it->pos = 1; /* past '{' or '[' */
}

/* Positions at the next element, or returns 0 at the closing bracket. */
static int iter_advance(JIter *it) {
    u32 i = ws_at(it->src, it->pos);
    if (i < it->src.len && it->src.ptr[i] == ',') i = ws_at(it->src, i + 1);
    it->pos = i;
    if (i >= it->src.len) return 0;
    u8 c = it->src.ptr[i];
    return c != '}' && c != ']';
}

int json_next_member(JIter *it, Bytes *raw_key, Bytes *value) {
    if (!iter_advance(it) || it->src.ptr[it->pos] != '"') return 0;
    u32 kend = skip_string(it->src, it->pos);
    *raw_key = span(it->src, it->pos + 1, kend - 1);
    u32 i = ws_at(it->src, kend);
    if (i < it->src.len && it->src.ptr[i] == ':') i++;
    i = ws_at(it->src, i);
    u32 vend = skip_value(it->src, i);
    *value = span(it->src, i, vend);
    it->pos = vend;
    return value->len != 0;
}

int json_next_item(JIter *it, Bytes *value) {
    if (!iter_advance(it)) return 0;
    u32 vend = skip_value(it->src, it->pos);
    *value = span(it->src, it->pos, vend);
    it->pos = vend;
    return value->len != 0;
}

static void put_utf8(u8 *out, u32 *n, u32 cp) {
    if (cp < 0x80) {
        out[(*n)++] = (u8)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (u8)(0xC0 | (cp >> 6));
        out[(*n)++] = (u8)(0x80 | (cp & 63));
    } else if (cp < 0x10000) {
        out[(*n)++] = (u8)(0xE0 | (cp >> 12));
        out[(*n)++] = (u8)(0x80 | ((cp >> 6) & 63));
        out[(*n)++] = (u8)(0x80 | (cp & 63));
    } else {
        out[(*n)++] = (u8)(0xF0 | (cp >> 18));
        out[(*n)++] = (u8)(0x80 | ((cp >> 12) & 63));
        out[(*n)++] = (u8)(0x80 | ((cp >> 6) & 63));
        out[(*n)++] = (u8)(0x80 | (cp & 63));
    }
}

/* Unescapes a string body (without quotes). Escapes never grow the text, so the
 * output fits in body.len bytes. Bodies without a backslash are returned as is. */
static Bytes unescape(Bytes body) {
    u32 i = 0;
    while (i < body.len && body.ptr[i] != '\\') i++;
    if (i == body.len) return body;
    u8 *out = cw_alloc(body.len);
    u32 n = 0;
    for (i = 0; i < body.len;) {
        u8 c = body.ptr[i];
        if (c != '\\' || i + 1 >= body.len) {
            out[n++] = c;
            i++;
            continue;
        }
        u8 e = body.ptr[i + 1];
        i += 2;
        switch (e) {
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            i32 cp = hex4(body.ptr, body.len, i);
            if (cp < 0) cp = 0xFFFD;
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                i32 lo = hex4(body.ptr, body.len, i + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            put_utf8(out, &n, (u32)cp);
            break;
        }
        default: out[n++] = e; break; /* \" \\ \/ */
        }
    }
    Bytes r = {out, n};
    return r;
}

Bytes json_str(Bytes v) {
    if (v.len < 2) {
        Bytes empty = {v.ptr, 0};
        return empty;
    }
    return unescape(span(v, 1, v.len - 1));
}

int json_key_eq(Bytes raw_key, const char *name) { return bytes_eq_c(unescape(raw_key), name); }

static const char *kind_name(Bytes v) {
    switch (json_kind(v)) {
    case J_NULL: return "null";
    case J_BOOL: return "boolean";
    case J_NUM: return "number";
    case J_STR: return "string";
    case J_ARR: return "sequence";
    case J_OBJ: return "map";
    default: return "nothing";
    }
}

static const char *invalid_type(Bytes v, const char *expected) {
    Buf e;
    buf_init(&e, 64);
    buf_c(&e, "invalid type: ");
    buf_c(&e, kind_name(v));
    buf_c(&e, ", expected ");
    buf_c(&e, expected);
    return buf_cstr(&e);
}

const char *json_object(Bytes obj, JField *fields, u32 n, int deny_unknown) {
    for (u32 k = 0; k < n; k++) fields[k].v.ptr = NULL, fields[k].v.len = 0;
    if (json_kind(obj) != J_OBJ) return invalid_type(obj, "struct");
    JIter it;
    Bytes key, val;
    json_iter(&it, obj);
    while (json_next_member(&it, &key, &val)) {
        Bytes name = unescape(key);
        u32 k = 0;
        while (k < n && !bytes_eq_c(name, fields[k].name)) k++;
        if (k == n) {
            if (deny_unknown) return str3("unknown field `", name, "`");
            continue;
        }
        if (fields[k].v.ptr) return str3("duplicate field `", name, "`");
        fields[k].v = val;
    }
    return NULL;
}

const char *json_enum(Bytes doc, Bytes *raw_variant, Bytes *body) {
    if (json_kind(doc) != J_OBJ) return invalid_type(doc, "an enum variant object");
    JIter it;
    json_iter(&it, doc);
    if (!json_next_member(&it, raw_variant, body)) return "expected an enum variant, found {}";
    Bytes k2, v2;
    if (json_next_member(&it, &k2, &v2)) return "expected a single-key object (enum variant)";
    return NULL;
}

const char *unknown_variant(Bytes raw_variant, const char *expected) {
    Buf e;
    buf_init(&e, 128);
    buf_c(&e, "unknown variant `");
    buf_bytes(&e, unescape(raw_variant));
    buf_c(&e, "`, expected one of ");
    buf_c(&e, expected);
    return buf_cstr(&e);
}

int field_present(const JField *f) {
    int k = json_kind(f->v);
    return k != J_NONE && k != J_NULL;
}

static const char *missing(const JField *f) {
    return str3("missing field `", bytes_c(f->name), "`");
}

const char *req_str(const JField *f, Bytes *out) {
    if (f->v.ptr == NULL) return missing(f);
    if (json_kind(f->v) != J_STR) return invalid_type(f->v, "a string");
    *out = json_str(f->v);
    return NULL;
}

const char *opt_str(const JField *f, Bytes *out) {
    out->ptr = NULL;
    out->len = 0;
    if (!field_present(f)) return NULL;
    return req_str(f, out);
}

const char *req_u128(const JField *f, U128 *out) {
    Bytes s;
    if (f->v.ptr == NULL) return missing(f);
    if (json_kind(f->v) != J_STR) return invalid_type(f->v, "string-encoded integer");
    s = json_str(f->v);
    return u128_parse(s, out);
}

const char *opt_u128(const JField *f, U128 *out, int *present) {
    *present = field_present(f);
    if (!*present) return NULL;
    return req_u128(f, out);
}

/* Non-negative JSON integer (no fraction or exponent), as serde reads a u64. */
const char *req_u64(const JField *f, u64 *out) {
    if (f->v.ptr == NULL) return missing(f);
    if (json_kind(f->v) != J_NUM) return invalid_type(f->v, "u64");
    u64 v = 0;
    for (u32 i = 0; i < f->v.len; i++) {
        u8 c = f->v.ptr[i];
        if (!is_digit(c)) return "invalid type: number, expected an unsigned integer";
        if (v > (0xFFFFFFFFFFFFFFFFull - (c - '0')) / 10) return "number out of range for u64";
        v = v * 10 + (c - '0');
    }
    *out = v;
    return NULL;
}

const char *req_i64(const JField *f, i64 *out) {
    if (f->v.ptr == NULL) return missing(f);
    if (json_kind(f->v) != J_NUM) return invalid_type(f->v, "i64");
    u32 i = 0;
    int neg = f->v.ptr[0] == '-';
    if (neg) i = 1;
    u64 v = 0, limit = neg ? 0x8000000000000000ull : 0x7FFFFFFFFFFFFFFFull;
    for (; i < f->v.len; i++) {
        u8 c = f->v.ptr[i];
        if (!is_digit(c)) return "invalid type: number, expected an integer";
        if (v > (limit - (c - '0')) / 10) return "number out of range for i64";
        v = v * 10 + (c - '0');
    }
    *out = neg ? (i64)((u64)0 - v) : (i64)v;
    return NULL;
}

/* Uint64 and Timestamp serialize as decimal strings. */
const char *req_u64_str(const JField *f, u64 *out) {
    U128 v;
    TRY(req_u128(f, &v));
    if (v.hi) return "invalid Uint64: number too large to fit in target type";
    *out = v.lo;
    return NULL;
}

const char *req_binary(const JField *f, Bytes *out) {
    Bytes s;
    TRY(req_str(f, &s));
    if (!b64_decode(s, out)) return "invalid base64";
    return NULL;
}

const char *req_empty_object(Bytes v) { return json_object(v, NULL, 0, 1); }

const char *parse_err(const char *type, const char *msg) {
    Buf e;
    buf_init(&e, 128);
    buf_c(&e, "Error parsing into type ");
    buf_c(&e, type);
    buf_c(&e, ": ");
    buf_c(&e, msg);
    return buf_cstr(&e);
}

/* ==== Env / MessageInfo ============================================================== */
/* These come from the host, so unknown fields are tolerated (newer VMs add some). */

static const char *parse_env_doc(Bytes doc, Env *env) {
    TRY(json_check(doc));
    JField top[3] = {{"block"}, {"transaction"}, {"contract"}};
    TRY(json_object(doc, top, 3, 0));
    if (top[0].v.ptr == NULL) return "missing field `block`";
    if (top[2].v.ptr == NULL) return "missing field `contract`";
    JField block[3] = {{"height"}, {"time"}, {"chain_id"}};
    TRY(json_object(top[0].v, block, 3, 0));
    TRY(req_u64(&block[0], &env->height));
    TRY(req_u64_str(&block[1], &env->time_ns));
    TRY(req_str(&block[2], &env->chain_id));
    JField contract[1] = {{"address"}};
    TRY(json_object(top[2].v, contract, 1, 0));
    TRY(req_str(&contract[0], &env->contract));
    return NULL;
}

const char *parse_env(u32 region_ptr, Env *env) {
    const char *err = parse_env_doc(region_read(region_ptr), env);
    return err ? parse_err("cosmwasm_std::types::Env", err) : NULL;
}

static const char *parse_info_doc(Bytes doc, Info *info) {
    TRY(json_check(doc));
    JField f[2] = {{"sender"}, {"funds"}};
    TRY(json_object(doc, f, 2, 0));
    TRY(req_str(&f[0], &info->sender));
    if (f[1].v.ptr == NULL) return "missing field `funds`";
    if (json_kind(f[1].v) != J_ARR) return invalid_type(f[1].v, "a sequence");
    info->funds = f[1].v;
    return NULL;
}

const char *parse_info(u32 region_ptr, Info *info) {
    const char *err = parse_info_doc(region_read(region_ptr), info);
    return err ? parse_err("cosmwasm_std::types::MessageInfo", err) : NULL;
}

/* ==== Response / results ============================================================= */

void resp_init(Response *r) {
    buf_init(&r->messages, 256);
    buf_init(&r->attributes, 256);
    buf_init(&r->events, 64);
    r->n_messages = r->n_attributes = r->n_events = 0;
    r->data.ptr = NULL;
    r->data.len = 0;
}

static void attr_json(Buf *b, const char *key, Bytes value) {
    buf_c(b, "{\"key\":");
    buf_jstr_c(b, key);
    buf_c(b, ",\"value\":");
    buf_jstr(b, value);
    buf_byte(b, '}');
}

void resp_attr(Response *r, const char *key, Bytes value) {
    if (r->n_attributes++) buf_byte(&r->attributes, ',');
    attr_json(&r->attributes, key, value);
}

void resp_attr_c(Response *r, const char *key, const char *value) {
    resp_attr(r, key, bytes_c(value));
}

void resp_attr_u128(Response *r, const char *key, U128 value) {
    resp_attr(r, key, u128_text(value));
}

void resp_attr_u64(Response *r, const char *key, u64 value) {
    Buf b;
    buf_init(&b, 24);
    buf_u64(&b, value);
    resp_attr(r, key, buf_view(&b));
}

void resp_event1(Response *r, const char *type, const char *key, Bytes value) {
    if (r->n_events++) buf_byte(&r->events, ',');
    buf_c(&r->events, "{\"type\":");
    buf_jstr_c(&r->events, type);
    buf_c(&r->events, ",\"attributes\":[");
    attr_json(&r->events, key, value);
    buf_c(&r->events, "]}");
}

void resp_submsg(Response *r, u64 id, Bytes payload, Bytes msg_json, const char *reply_on) {
    Buf *b = &r->messages;
    if (r->n_messages++) buf_byte(b, ',');
    buf_c(b, "{\"id\":");
    buf_u64(b, id);
    buf_c(b, ",\"payload\":\"");
    buf_b64(b, payload);
    buf_c(b, "\",\"msg\":");
    buf_bytes(b, msg_json);
    buf_c(b, ",\"gas_limit\":null,\"reply_on\":");
    buf_jstr_c(b, reply_on);
    buf_byte(b, '}');
}

static u32 region_of_buf(Buf *b) {
    Region *r = cw_alloc(sizeof(Region));
    r->offset = (u32)b->ptr;
    r->capacity = b->cap;
    r->length = b->len;
    return (u32)r;
}

u32 resp_ok(Response *r) {
    Buf out;
    buf_init(&out, 64 + r->messages.len + r->attributes.len + r->events.len);
    buf_c(&out, "{\"ok\":{\"messages\":[");
    buf_bytes(&out, buf_view(&r->messages));
    buf_c(&out, "],\"attributes\":[");
    buf_bytes(&out, buf_view(&r->attributes));
    buf_c(&out, "],\"events\":[");
    buf_bytes(&out, buf_view(&r->events));
    buf_c(&out, "],\"data\":");
    if (r->data.ptr) {
        buf_byte(&out, '"');
        buf_b64(&out, r->data);
        buf_byte(&out, '"');
    } else {
        buf_c(&out, "null");
    }
    buf_c(&out, "}}");
    return region_of_buf(&out);
}

u32 result_err(const char *msg) {
    Buf out;
    buf_init(&out, 32 + cw_strlen(msg));
    buf_c(&out, "{\"error\":");
    buf_jstr_c(&out, msg);
    buf_byte(&out, '}');
    return region_of_buf(&out);
}

u32 query_ok(Bytes answer_json) {
    Buf out;
    buf_init(&out, 16 + answer_json.len / 3 * 4 + 4);
    buf_c(&out, "{\"ok\":\"");
    buf_b64(&out, answer_json);
    buf_c(&out, "\"}");
    return region_of_buf(&out);
}

/* ==== Storage / API ================================================================== */

Bytes db_get(Bytes key) {
    u32 r = env_db_read(region_new(key.ptr, key.len));
    if (r == 0) {
        Bytes none = {NULL, 0};
        return none;
    }
    Bytes v = region_read(r);
    if (v.ptr == NULL) v.ptr = (const u8 *)""; /* present but empty */
    return v;
}

void db_set(Bytes key, Bytes value) {
    env_db_write(region_new(key.ptr, key.len), region_new(value.ptr, value.len));
}

void db_del(Bytes key) { env_db_remove(region_new(key.ptr, key.len)); }

u32 db_range(Bytes start, Bytes end, int descending) {
    u32 s = start.ptr ? region_new(start.ptr, start.len) : 0;
    u32 e = end.ptr ? region_new(end.ptr, end.len) : 0;
    return env_db_scan(s, e, descending ? 2 : 1);
}

static u32 be32(const u8 *p) {
    return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3];
}

/* db_next returns key ‖ u32be(len key) ‖ value ‖ u32be(len value); an empty key ends. */
int db_range_next(u32 iter, Bytes *key, Bytes *value) {
    Bytes r = region_read(env_db_next(iter));
    if (r.len < 8) cw_panic("db_next: short region");
    u32 vlen = be32(r.ptr + r.len - 4);
    if (vlen > r.len - 8) cw_panic("db_next: bad value length");
    u32 vstart = r.len - 4 - vlen;
    u32 klen = be32(r.ptr + vstart - 4);
    if (klen != vstart - 4) cw_panic("db_next: bad key length");
    if (klen == 0) return 0;
    key->ptr = r.ptr;
    key->len = klen;
    value->ptr = r.ptr + vstart;
    value->len = vlen;
    return 1;
}

#define MAX_ADDRESS_LENGTH 256 /* cosmwasm-std refuses longer input before asking the VM */

const char *addr_validate(Bytes human) {
    if (human.len > MAX_ADDRESS_LENGTH) return "Generic error: input too long for addr_validate";
    u32 r = env_addr_validate(region_new(human.ptr, human.len));
    if (r == 0) return NULL;
    return str3("Generic error: addr_validate errored: ", region_read(r), NULL);
}

void debug_log(const char *msg) { env_debug(region_new(msg, cw_strlen(msg))); }
