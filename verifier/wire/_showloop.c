/* The loop of `verifier show`, compiled: decode, analyse, track and text (JSON or transcript) of
 * every packet, the same texts as verifier/wire/show.py's object path (`connections()` with
 * `connection_json` / `connection_text`: the reference, and what runs when this is not built).
 *
 * show.py's `_compiled_texts` drives it: `Loop(records, linger, window, lookback, shape_max,
 * memo_max, hooks, transcript=False, verbose=False)` is an iterator of connection texts. `records` is
 * capture.read_records(...) (the pure-Python reader keeps every format rule, check, warning and
 * error); this file does, per record, what the object path does: a fast path for the common case
 * of every link type decode knows (anything else goes to hooks.decoded(record), i.e. decode.decode),
 * wire.analysis's Analyzer (its TCP analysis labels), track()'s and
 * Connection.add's rules (roles, relative numbers, loopback duplicates where connections.Doubling
 * proves them, reuse of a finished 4-tuple, hand-on LINGER seconds after a connection finishes, in first-packet order), and the
 * text. What is rare stays in Python through `hooks`: a connection's facts (classify.summary)
 * once per shape (with the ports' class, from the `server_ports` bitmap, and zero windows), the
 * whole text of connections show.py does not memoise (a moved base, more than `shape_max`
 * segments, packets spanning `untimed_span` seconds or more), IPv6 address text, flags text, TCP options that differ in bytes but may
 * parse the same. Every float operation is the Python code's, in the same order (IEEE doubles;
 * built with -ffp-contract=off), so times compare and print identically. tests/test_show.py pins
 * this to the plain object path. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define SYN 0x02
#define FIN 0x01
#define RST 0x04
#define ACK 0x10
#define HALF 0x80000000u
#define MAX_OPTIONS 40

typedef struct {
    double t;
    long long frame;
    long long length;
    uint32_t seq, ack, rseq, rack;
    long win;
    long ip_id; /* -1: None (IPv6, or decode gave None) */
    int flags;
    int labels; /* TCP analysis labels: analysis.py's TCP_A_* bits */
    int tos; /* the IP TOS / traffic class byte */
    char side; /* 'C' or 'S' */
    unsigned char opt_len; /* raw options (the fast path) when opt_obj is NULL */
    unsigned char opt[MAX_OPTIONS];
    PyObject *opt_obj; /* options as decode gave them (a tuple), or NULL */
    PyObject *comment; /* the packet's comment (None mostly) */
} Seg;

typedef struct { /* 40 bytes, no hidden padding (keys are zeroed first: memcmp and the hash see every byte) */
    unsigned char alen, pad1; /* address length: 4 or 16 */
    uint16_t sport, dport, pad2;
    unsigned char src[16], dst[16];
} Key;
_Static_assert(sizeof(Key) == 40, "Key has no hidden padding");

typedef struct Conn {
    long long index;
    Key key; /* the first packet's 4-tuple */
    int client_is_src; /* whether the client is key.src */
    Seg *segs;
    Py_ssize_t nsegs, cap;
    struct Half { /* one side's sequence space: [0] the client's, [1] the server's */
        uint32_t base, fin; /* the base of its relative numbers; just after its FIN */
        char has_base, has_fin, syn, acked; /* syn: the base is its SYN's; acked: the peer ACKed its FIN */
    } half[2];
    uint32_t client_isn;
    char has_client_isn, rst, moved;
    long long duplicates;
    struct Conn *next; /* in first-packet order */
} Conn;


typedef struct ANode ANode;
typedef struct {
    ANode **buckets;
    size_t nbuckets, nkeys;
} ATable; /* a 4-tuple table of the analysis (conversations, bases) */

typedef struct {
    PyObject_HEAD
    PyObject *records;
    PyObject *decoded, *conn_text, *facts_text, *addr_text, *flags_text, *same_options, *options_text;
    double linger, half_linger, window, ready, now, untimed_span;
    Py_buffer server_ports; /* zeek.LIKELY_SERVER_PORT_BITS: bit p % 8 of byte p / 8 (len 0: none) */
    Py_ssize_t lookback, shape_max, memo_max, slack;
    long long lo_segments, lo_copies; /* connections.Doubling's counts */
    ATable conns; /* open_by_key: both directions' 4-tuples -> Conn */
    Conn *head, *tail;
    long long count, packets, tcp, duplicates, cut_short; /* cut_short: handed on unfinished (max_waiting) */
    Py_ssize_t npending, max_waiting; /* connections waiting to be handed on; past max_waiting the head goes */
    int draining, ended;
    int transcript; /* texts as connection_text, not connection_json */
    int verbose; /* connection_text's verbose: window and options too */
    PyObject *shapes; /* dict: shape bytes -> facts text */
    PyObject *flags_cache[512];
    ATable convs, bases; /* the analysis's conversations (both directions) and forgotten ones' bases */
    double sweep_at, forget_after, closed_after;
    Py_ssize_t max_unacked, bases_max;
    long long fast_rtx_ns, ooo_ns;
    char *out;
    size_t out_len, out_cap;
} Loop;

/* ------------------------------------------------------------------ small things */

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int is_finished(const Conn *c) { return c->rst || (c->half[0].acked && c->half[1].acked); }

static void seg_clear(Seg *s) {
    Py_CLEAR(s->opt_obj);
    Py_CLEAR(s->comment);
}

static void conn_free(Conn *c) {
    for (Py_ssize_t i = 0; i < c->nsegs; i++) seg_clear(&c->segs[i]);
    PyMem_Free(c->segs);
    PyMem_Free(c);
}

/* ------------------------------------------------------------------ 4-tuple table */

static size_t key_hash(const Key *k) {
    uint64_t h = 0, w;
    for (size_t i = 0; i < sizeof(Key); i += 8) {
        memcpy(&w, (const char *)k + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 32;
    }
    return (size_t)h;
}

struct ANode {
    Key key;
    void *value; /* Conv* (conversations) or Bases* (bases) */
    ANode *next;
};

static int atable_init(ATable *t) {
    t->nbuckets = 1024, t->nkeys = 0;
    t->buckets = PyMem_Calloc(t->nbuckets, sizeof(ANode *));
    if (!t->buckets) PyErr_NoMemory();
    return t->buckets ? 0 : -1;
}

static ANode **atable_slot(ATable *t, const Key *k) {
    ANode **slot = &t->buckets[key_hash(k) & (t->nbuckets - 1)];
    while (*slot && memcmp(&(*slot)->key, k, sizeof(Key)) != 0) slot = &(*slot)->next;
    return slot;
}

static void *atable_get(ATable *t, const Key *k) {
    ANode *n = *atable_slot(t, k);
    return n ? n->value : NULL;
}

static int atable_grow(ATable *t) {
    size_t n = t->nbuckets * 2;
    ANode **b = PyMem_Calloc(n, sizeof(ANode *));
    if (!b) return -1;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (ANode *node = t->buckets[i], *next; node; node = next) {
            next = node->next;
            size_t j = key_hash(&node->key) & (n - 1);
            node->next = b[j];
            b[j] = node;
        }
    PyMem_Free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

/* t[k] = value; the value it replaces (or NULL) in *old; -1 out of memory */
static int atable_set(ATable *t, const Key *k, void *value, void **old) {
    ANode **slot = atable_slot(t, k);
    *old = NULL;
    if (*slot) {
        *old = (*slot)->value;
        (*slot)->value = value;
        return 0;
    }
    ANode *node = PyMem_Malloc(sizeof(ANode));
    if (!node) return -1;
    node->key = *k, node->value = value, node->next = NULL;
    *slot = node;
    if (++t->nkeys > t->nbuckets && atable_grow(t) < 0) return -1;
    return 0;
}

static void *atable_pop(ATable *t, const Key *k) { /* del t[k]; its value, or NULL */
    ANode **slot = atable_slot(t, k);
    if (!*slot) return NULL;
    ANode *node = *slot;
    void *value = node->value;
    *slot = node->next;
    PyMem_Free(node);
    t->nkeys--;
    return value;
}

/* frees the table and its nodes, each value through `release` (NULL: the values are not its own) */
static void atable_free(ATable *t, void (*release)(void *)) {
    if (!t->buckets) return;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (ANode *node = t->buckets[i], *next; node; node = next) {
            next = node->next;
            if (release) release(node->value);
            PyMem_Free(node);
        }
    PyMem_Free(t->buckets);
    t->buckets = NULL;
}

static int conns_set(Loop *self, const Key *k, Conn *c) { /* open_by_key[k] = c */
    void *old;
    return atable_set(&self->conns, k, c, &old);
}

static void conns_forget(Loop *self, const Key *k, Conn *c) { /* if open_by_key.get(k) is c: del */
    if (atable_get(&self->conns, k) == c) atable_pop(&self->conns, k);
}

static void reverse_key(const Key *k, Key *r) {
    memset(r, 0, sizeof(Key));
    r->alen = k->alen;
    memcpy(r->src, k->dst, 16);
    memcpy(r->dst, k->src, 16);
    r->sport = k->dport;
    r->dport = k->sport;
}

/* ------------------------------------------------------------------ output text */

static int out_grow(Loop *self, size_t more) {
    size_t cap = self->out_cap ? self->out_cap : 4096;
    while (cap < self->out_len + more) cap *= 2;
    char *p = PyMem_Realloc(self->out, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    self->out = p;
    self->out_cap = cap;
    return 0;
}

static inline int out_bytes(Loop *self, const char *s, size_t n) {
    if (self->out_len + n > self->out_cap && out_grow(self, n) < 0) return -1;
    memcpy(self->out + self->out_len, s, n);
    self->out_len += n;
    return 0;
}

#define OUT_LIT(self, lit) out_bytes(self, lit, sizeof(lit) - 1)

static int out_str(Loop *self, PyObject *text) { /* a hook's text: ASCII, as the whole text must be */
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        PyErr_Format(PyExc_ValueError, "a hook gave %R where ASCII text was expected", text);
        return -1;
    }
    return out_bytes(self, (const char *)PyUnicode_1BYTE_DATA(text), (size_t)PyUnicode_GET_LENGTH(text));
}

/* the decimal digits of v (snprintf's "%lld", without its cost: several per segment) */
static inline char *ll_text(char *end, long long v) {
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do *--end = (char)('0' + u % 10); while (u /= 10);
    if (v < 0) *--end = '-';
    return end;
}

static inline int out_ll(Loop *self, long long v) {
    char tmp[24], *end = tmp + sizeof tmp;
    char *p = ll_text(end, v);
    return out_bytes(self, p, (size_t)(end - p));
}

/* t as connection_json writes it (repr(t); json's Infinity / -Infinity / NaN for inf and nan),
 * without repr's costly shortest-digits search when t is a whole number of microseconds (classic
 * pcap): us / 1e6 == t says the decimal us/1e6 is what t was rounded from, and below 2**32 s (ulp
 * < 1e-6) no other decimal of <= 6 fractional digits rounds to t, so it is the shortest: repr's */
static int out_t(Loop *self, double t) {
    char tmp[40];
    if (1.0 <= t && t < 4294967296.0) {
        long long us = (long long)(t * 1e6 + 0.5);
        if (us && (double)us / 1e6 == t) { /* seconds, then the 6 digits of the fraction, trailing zeros cut */
            long long frac = us % 1000000;
            char *end = tmp + 20, *p = ll_text(end, us / 1000000);
            *end = '.';
            for (int i = 6; i > 0; i--, frac /= 10) end[i] = (char)('0' + frac % 10);
            int n = 7;
            while (n > 2 && end[n - 1] == '0') n--;
            return out_bytes(self, p, (size_t)(end + n - p));
        }
    }
    if (isnan(t)) return OUT_LIT(self, "NaN");
    if (isinf(t)) return t > 0 ? OUT_LIT(self, "Infinity") : OUT_LIT(self, "-Infinity");
    char *r = PyOS_double_to_string(t, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!r) return -1;
    int rc = out_bytes(self, r, strlen(r));
    PyMem_Free(r);
    return rc;
}

static int out_endpoint(Loop *self, const unsigned char *addr, int alen, unsigned port) {
    if (alen == 4) {
        for (int i = 0; i < 4; i++)
            if ((i && OUT_LIT(self, ".") < 0) || out_ll(self, addr[i]) < 0) return -1;
        return OUT_LIT(self, ":") < 0 ? -1 : out_ll(self, port);
    }
    PyObject *raw = PyBytes_FromStringAndSize((const char *)addr, alen);
    if (!raw) return -1;
    PyObject *text = PyObject_CallOneArg(self->addr_text, raw);
    Py_DECREF(raw);
    if (!text) return -1;
    int rc = OUT_LIT(self, "[") < 0 || out_str(self, text) < 0 ? -1 : 0;
    Py_DECREF(text);
    return rc < 0 || OUT_LIT(self, "]:") < 0 ? -1 : out_ll(self, port);
}

static PyObject *flags_text(Loop *self, int flags) { /* hooks.flags_text(flags), kept per value: a new reference */
    if (flags >= 0 && flags < 512) {
        if (!self->flags_cache[flags]) {
            PyObject *n = PyLong_FromLong(flags);
            if (!n) return NULL;
            self->flags_cache[flags] = PyObject_CallOneArg(self->flags_text, n);
            Py_DECREF(n);
            if (!self->flags_cache[flags]) return NULL;
        }
        Py_INCREF(self->flags_cache[flags]);
        return self->flags_cache[flags];
    }
    PyObject *n = PyLong_FromLong(flags);
    if (!n) return NULL;
    PyObject *text = PyObject_CallOneArg(self->flags_text, n);
    Py_DECREF(n);
    return text;
}

/* ------------------------------------------------------------------ a connection as Python data */

static PyObject *options_object(const Seg *s) {
    if (s->opt_obj) {
        Py_INCREF(s->opt_obj);
        return s->opt_obj;
    }
    return PyBytes_FromStringAndSize((const char *)s->opt, s->opt_len);
}

static PyObject *optional_u32(char has, uint32_t v) {
    if (has) return PyLong_FromUnsignedLong(v);
    Py_RETURN_NONE;
}

static PyObject *endpoint_tuple(const unsigned char *addr, int alen, unsigned port) {
    return Py_BuildValue("(y#I)", (const char *)addr, (Py_ssize_t)alen, port);
}

/* (index, client, server, segs, base_c, base_s, syn_c, syn_s, client_isn, fin_c, fin_s, acked_c,
 * acked_s, rst, duplicates, moved): show._Conn's fields, segs as its 15-tuples */
static PyObject *conn_tuple(const Conn *c) {
    const Key *k = &c->key;
    PyObject *src = endpoint_tuple(k->src, k->alen, k->sport), *dst = endpoint_tuple(k->dst, k->alen, k->dport);
    PyObject *segs = PyList_New(c->nsegs), *out = NULL;
    if (!src || !dst || !segs) goto done;
    for (Py_ssize_t i = 0; i < c->nsegs; i++) {
        const Seg *s = &c->segs[i];
        PyObject *options = options_object(s);
        if (!options) goto done;
        PyObject *ip_id = s->ip_id < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(s->ip_id);
        PyObject *r = ip_id ? Py_BuildValue("(sIIiLdLlIINNOii)", s->side == 'C' ? "C" : "S", s->rseq, s->rack, s->flags,
                                            s->length, s->t, s->frame, s->win, s->seq, s->ack, ip_id, options,
                                            s->comment, s->labels, s->tos)
                            : NULL;
        if (!r) {
            if (!ip_id) Py_DECREF(options);
            goto done;
        }
        PyList_SET_ITEM(segs, i, r);
    }
    const struct Half *hc = &c->half[0], *hs = &c->half[1];
    PyObject *base_c = optional_u32(hc->has_base, hc->base), *base_s = optional_u32(hs->has_base, hs->base),
             *isn = optional_u32(c->has_client_isn, c->client_isn), *fin_c = optional_u32(hc->has_fin, hc->fin),
             *fin_s = optional_u32(hs->has_fin, hs->fin);
    if (base_c && base_s && isn && fin_c && fin_s)
        out = Py_BuildValue("(LOOONNNNNNNNNNLN)", c->index, c->client_is_src ? src : dst, c->client_is_src ? dst : src,
                            segs, base_c, base_s, PyBool_FromLong(hc->syn), PyBool_FromLong(hs->syn), isn, fin_c,
                            fin_s, PyBool_FromLong(hc->acked), PyBool_FromLong(hs->acked), PyBool_FromLong(c->rst),
                            c->duplicates, PyBool_FromLong(c->moved));
    else {
        Py_XDECREF(base_c);
        Py_XDECREF(base_s);
        Py_XDECREF(isn);
        Py_XDECREF(fin_c);
        Py_XDECREF(fin_s);
    }
done:
    Py_XDECREF(src);
    Py_XDECREF(dst);
    Py_XDECREF(segs);
    return out;
}

static PyObject *call_with_conn(PyObject *hook, const Conn *c) {
    PyObject *t = conn_tuple(c);
    if (!t) return NULL;
    PyObject *r = PyObject_CallOneArg(hook, t);
    Py_DECREF(t);
    return r;
}

/* ------------------------------------------------------------------ a finished connection's text */

static int likely_server_port(const Loop *self, unsigned port) {
    const unsigned char *bits = self->server_ports.buf;
    return (Py_ssize_t)(port >> 3) < self->server_ports.len && (bits[port >> 3] >> (port & 7)) & 1;
}

/* zeek.port_class(client port, server port) */
static int port_class(const Loop *self, const Conn *c) {
    const Key *k = &c->key;
    unsigned cp = c->client_is_src ? k->sport : k->dport, sp = c->client_is_src ? k->dport : k->sport;
    int cs = likely_server_port(self, cp), ss = likely_server_port(self, sp);
    return cs + 2 * ss + (cs && ss ? 4 * (cp < sp) + 8 * (sp < cp) : 0);
}

/* show._timed: whether the packets span untimed_span seconds or more (or times that do not compare) */
static int timed(const Loop *self, const Conn *c) {
    double lo = c->segs[0].t, hi = lo;
    for (Py_ssize_t i = 0; i < c->nsegs; i++) {
        double t = c->segs[i].t;
        if (t < lo) lo = t;
        if (t > hi) hi = t;
    }
    return !(hi - lo < self->untimed_span);
}

/* hooks.facts_text of the connection, memoised by its shape (the ports' class; per segment: side,
 * relative seq and ack, flags, length, whether the window is zero); a new reference */
static PyObject *facts_of(Loop *self, const Conn *c) {
    size_t rec = 1 + 4 + 4 + 4 + 8 + 1;
    PyObject *shape = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(1 + rec * (size_t)c->nsegs));
    if (!shape) return NULL;
    char *p = PyBytes_AS_STRING(shape);
    *p++ = (char)port_class(self, c);
    for (Py_ssize_t i = 0; i < c->nsegs; i++) {
        const Seg *s = &c->segs[i];
        int32_t flags = s->flags;
        *p++ = (char)(s->win == 0);
        *p++ = s->side;
        memcpy(p, &s->rseq, 4), p += 4;
        memcpy(p, &s->rack, 4), p += 4;
        memcpy(p, &flags, 4), p += 4;
        memcpy(p, &s->length, 8), p += 8;
    }
    PyObject *facts = PyDict_GetItemWithError(self->shapes, shape);
    if (facts) {
        Py_INCREF(facts);
    } else if (!PyErr_Occurred() && (facts = call_with_conn(self->facts_text, c))) {
        if (PyDict_GET_SIZE(self->shapes) >= self->memo_max) PyDict_Clear(self->shapes);
        if (PyDict_SetItem(self->shapes, shape, facts) < 0) Py_CLEAR(facts);
    }
    Py_DECREF(shape);
    return facts;
}

static int out_endpoints(Loop *self, const Conn *c, const char *between) {
    const Key *k = &c->key;
    const unsigned char *ca = c->client_is_src ? k->src : k->dst, *sa = c->client_is_src ? k->dst : k->src;
    unsigned cp = c->client_is_src ? k->sport : k->dport, sp = c->client_is_src ? k->dport : k->sport;
    return out_endpoint(self, ca, k->alen, cp) < 0 || out_bytes(self, between, strlen(between)) < 0 ||
                   out_endpoint(self, sa, k->alen, sp) < 0
               ? -1
               : 0;
}

static int out_flags(Loop *self, int flags) {
    PyObject *text = flags_text(self, flags);
    if (!text) return -1;
    int rc = out_str(self, text);
    Py_DECREF(text);
    return rc;
}

static int out_labels(Loop *self, int labels, const char *quote, const char *between); /* below, with the analysis */

/* connection_json(conn): facts is `"outcome": ..., "index": ` */
static int out_json(Loop *self, const Conn *c, PyObject *facts) {
    if (OUT_LIT(self, "{\"client\": \"") < 0 || out_endpoints(self, c, "\", \"server\": \"") < 0 ||
        OUT_LIT(self, "\", ") < 0 || out_str(self, facts) < 0 || out_ll(self, c->index) < 0 ||
        OUT_LIT(self, ", \"segments\": [") < 0)
        return -1;
    for (Py_ssize_t i = 0; i < c->nsegs; i++) {
        const Seg *s = &c->segs[i];
        if ((i && OUT_LIT(self, ", ") < 0) || OUT_LIT(self, "{\"t\": ") < 0 || out_t(self, s->t) < 0 ||
            OUT_LIT(self, ", \"from\": \"") < 0 ||
            (s->side == 'C' ? OUT_LIT(self, "client") : OUT_LIT(self, "server")) < 0 ||
            OUT_LIT(self, "\", \"flags\": \"") < 0 || out_flags(self, s->flags) < 0 ||
            OUT_LIT(self, "\", \"seq\": ") < 0 || out_ll(self, s->rseq) < 0 || OUT_LIT(self, ", \"ack\": ") < 0 ||
            out_ll(self, s->rack) < 0 || OUT_LIT(self, ", \"len\": ") < 0 || out_ll(self, s->length) < 0 ||
            OUT_LIT(self, ", \"frame\": ") < 0 || out_ll(self, s->frame) < 0 || OUT_LIT(self, ", \"win\": ") < 0 ||
            out_ll(self, s->win) < 0 || OUT_LIT(self, ", \"analysis\": [") < 0 ||
            out_labels(self, s->labels, "\"", ", ") < 0 || OUT_LIT(self, "]}") < 0)
            return -1;
    }
    return OUT_LIT(self, "]}");
}

/* -v's ` tos 0x10` (SegmentLine.text: only where it is not 0) */
static int out_tos(Loop *self, int tos) {
    static const char hex[] = "0123456789abcdef";
    char text[10] = " tos 0x";
    if (!tos) return 0;
    text[7] = hex[(tos >> 4) & 15], text[8] = hex[tos & 15];
    return out_bytes(self, text, 9);
}

/* -v's ` <mss 65495,sackOK,...>`: hooks.options_text(options), nothing when that is empty */
static int out_options(Loop *self, const Seg *s) {
    if (!s->opt_obj && !s->opt_len) return 0;
    PyObject *options = options_object(s);
    PyObject *text = options ? PyObject_CallOneArg(self->options_text, options) : NULL;
    Py_XDECREF(options);
    if (!text) return -1;
    int rc = 0;
    if (!PyUnicode_Check(text) || PyUnicode_GET_LENGTH(text))
        rc = OUT_LIT(self, " <") < 0 || out_str(self, text) < 0 || OUT_LIT(self, ">") < 0 ? -1 : 0;
    Py_DECREF(text);
    return rc;
}

/* connection_text(conn, verbose): facts is `  outcome ...  zeek ...` */
static int out_transcript(Loop *self, const Conn *c, PyObject *facts) {
    if (OUT_LIT(self, "connection ") < 0 || out_ll(self, c->index) < 0 || OUT_LIT(self, ": ") < 0 ||
        out_endpoints(self, c, " > ") < 0 || out_str(self, facts) < 0)
        return -1;
    double t0 = c->segs[0].t;
    for (Py_ssize_t i = 0; i < c->nsegs; i++) {
        const Seg *s = &c->segs[i];
        char t[64];
        int n = snprintf(t, sizeof t, "\n+%.6f ", s->t - t0); /* as f"+{t:.6f}": both correctly rounded */
        if (n < 0 || n >= (int)sizeof t || out_bytes(self, t, (size_t)n) < 0 ||
            (s->side == 'C' ? OUT_LIT(self, "C > S  ") : OUT_LIT(self, "S > C  ")) < 0 || out_flags(self, s->flags) < 0 ||
            OUT_LIT(self, " ") < 0 || out_ll(self, s->rseq) < 0 || OUT_LIT(self, ":") < 0 ||
            out_ll(self, (long long)s->rseq + s->length) < 0 || OUT_LIT(self, "(") < 0 || out_ll(self, s->length) < 0 ||
            OUT_LIT(self, ")") < 0 || ((s->flags & ACK) && (OUT_LIT(self, " ack ") < 0 || out_ll(self, s->rack) < 0)))
            return -1;
        if (self->verbose && (OUT_LIT(self, " win ") < 0 || out_ll(self, s->win) < 0 || out_tos(self, s->tos) < 0 ||
                              out_options(self, s) < 0))
            return -1;
        if (s->labels && (OUT_LIT(self, " [") < 0 || out_labels(self, s->labels, "", ", ") < 0 || OUT_LIT(self, "]") < 0))
            return -1;
    }
    return 0;
}

/* a finished connection's text (connection_json, or connection_text in text mode) */
static PyObject *conn_text(Loop *self, Conn *c) {
    self->duplicates += c->duplicates;
    if (c->moved || c->nsegs > self->shape_max || timed(self, c)) return call_with_conn(self->conn_text, c);
    PyObject *facts = facts_of(self, c);
    if (!facts) return NULL;
    self->out_len = 0;
    int rc = self->transcript ? out_transcript(self, c, facts) : out_json(self, c, facts);
    Py_DECREF(facts);
    if (rc < 0) return NULL;
    PyObject *text = PyUnicode_New((Py_ssize_t)self->out_len, 127); /* ASCII: every piece is */
    if (text) memcpy(PyUnicode_1BYTE_DATA(text), self->out, self->out_len);
    return text;
}

/* ------------------------------------------------------------------ one packet */

typedef struct {
    Key key;
    uint32_t seq, ack;
    int flags;
    long win;
    long long length;
    long ip_id;
    int tos; /* the IP TOS / traffic class byte (Segment.tos) */
    int loopback; /* the link header is Linux lo's (Segment.loopback) */
    unsigned char opt_len;
    unsigned char opt[MAX_OPTIONS];
    PyObject *opt_obj; /* new reference, or NULL for raw options */
} Packet;

/* the TCP header at b + tcp (its IP payload `ip_payload` bytes): as decode.segments; 0 if its
 * options do not fit (the record is then for decode.decode) */
static int tcp_part(const unsigned char *b, Py_ssize_t n, Py_ssize_t tcp, unsigned ip_payload, Packet *p) {
    const unsigned char *h = b + tcp;
    unsigned thl = (unsigned)(h[12] >> 4) << 2;
    if (thl == 20) {
        p->opt_len = 0;
    } else if (thl > 20 && ip_payload >= thl && n >= tcp + (Py_ssize_t)thl) {
        p->opt_len = (unsigned char)(thl - 20);
        memcpy(p->opt, h + 20, thl - 20);
    } else {
        return 0;
    }
    p->key.sport = be16(h);
    p->key.dport = be16(h + 2);
    p->seq = be32(h + 4);
    p->ack = be32(h + 8);
    p->flags = h[13];
    p->win = be16(h + 14);
    p->length = (long long)ip_payload - thl;
    return 1;
}

static inline uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static int ip_version_of_ethertype(unsigned type) { return type == 0x0800 ? 4 : type == 0x86DD ? 6 : 0; }

static int ip_version_of_bsd_family(uint32_t family) {
    return family == 2 ? 4 : (family == 24 || family == 28 || family == 30) ? 6 : 0;
}

/* decode.decode's common case, for each link type it knows (Ethernet with at most two VLAN tags,
 * BSD NULL/LOOP, Linux cooked SLL/SLL2, raw IP; other encapsulations go to decode.decode), then IPv4 without options or IPv6 without extension
 * headers (neither with a zero length), then TCP whose options are all captured: 1 when decoded
 * (as decode.decode would), 0 when the record is for decode.decode */
static const unsigned char zero_macs[12];

static int fast_decode(const unsigned char *b, Py_ssize_t n, long linktype, Packet *p) {
    Py_ssize_t off;
    int version;
    p->loopback = 0;
    switch (linktype) {
    case 1: { /* Ethernet (lo's: both addresses zero), through up to two 802.1Q/802.1ad/QinQ tags */
        if (n < 14) return 0;
        unsigned type = be16(b + 12);
        off = 14;
        for (int tags = 0; tags < 2 && (type == 0x8100 || type == 0x88A8 || type == 0x9100); tags++) {
            if (n < off + 4) return 0;
            type = be16(b + off + 2);
            off += 4;
        }
        version = ip_version_of_ethertype(type);
        p->loopback = memcmp(b, zero_macs, 12) == 0;
        break;
    }
    case 0: /* NULL: the family in the capturing host's byte order (little-endian first, as decode) */
    case 108: { /* LOOP: network order */
        if (n < 4) return 0;
        uint32_t family = linktype == 0 ? le32(b) : be32(b);
        if (linktype == 0 && !ip_version_of_bsd_family(family)) family = be32(b);
        off = 4, version = ip_version_of_bsd_family(family);
        break;
    }
    case 113: /* Linux cooked (SLL): ARPHRD type at 2, protocol at 14, IP at 16 */
        if (n < 16) return 0;
        off = 16, version = ip_version_of_ethertype(be16(b + 14));
        p->loopback = be16(b + 2) == 772; /* ARPHRD_LOOPBACK */
        break;
    case 276: /* SLL2: protocol at 0, ARPHRD type at 8, IP at 20 */
        if (n < 20) return 0;
        off = 20, version = ip_version_of_ethertype(be16(b));
        p->loopback = be16(b + 8) == 772;
        break;
    case 101: case 12: case 14: /* raw IP: the version nibble */
        if (n < 1) return 0;
        off = 0, version = b[0] >> 4;
        break;
    case 228:
        off = 0, version = 4;
        break;
    case 229:
        off = 0, version = 6;
        break;
    default:
        return 0;
    }
    const unsigned char *ip = b + off;
    if (version == 4) {
        if (n < off + 40) return 0;
        unsigned total = be16(ip + 2), frag = be16(ip + 6);
        if (ip[0] != 0x45 || ip[9] != 6 || (frag & 0x1FFF) || total < 40) return 0;
        p->key.alen = 4;
        memcpy(p->key.src, ip + 12, 4);
        memcpy(p->key.dst, ip + 16, 4);
        p->ip_id = be16(ip + 4);
        p->tos = ip[1];
        return tcp_part(b, n, off + 20, total - 20, p);
    }
    if (version == 6) {
        if (n < off + 60) return 0;
        unsigned plen = be16(ip + 4);
        if (ip[0] >> 4 != 6 || ip[6] != 6 || plen < 20) return 0;
        p->key.alen = 16;
        memcpy(p->key.src, ip + 8, 16);
        memcpy(p->key.dst, ip + 24, 16);
        p->ip_id = -1;
        p->tos = (ip[0] & 0x0F) << 4 | ip[1] >> 4; /* the traffic class */
        return tcp_part(b, n, off + 40, plen, p);
    }
    return 0;
}

static int as_u32(PyObject *o, uint32_t *out) {
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
    *out = (uint32_t)v;
    return 0;
}

/* hooks.decoded(record): None, or (src, sport, dst, dport, seq, ack, flags, win, length, options,
 * ip_id, loopback, tos) with packed addresses; 1 decoded, 0 not TCP, -1 error */
static int slow_decode(Loop *self, PyObject *record, Packet *p) {
    PyObject *r = PyObject_CallOneArg(self->decoded, record);
    if (!r) return -1;
    if (r == Py_None) {
        Py_DECREF(r);
        return 0;
    }
    PyObject *src, *dst, *sport, *dport, *seq, *ack, *flags, *win, *length, *options, *ip_id;
    int loopback, tos;
    if (!PyArg_ParseTuple(r, "SOSOOOOOOOOpi", &src, &sport, &dst, &dport, &seq, &ack, &flags, &win, &length, &options,
                          &ip_id, &loopback, &tos))
        goto fail;
    p->loopback = loopback;
    p->tos = tos;
    Py_ssize_t alen = PyBytes_GET_SIZE(src);
    if ((alen != 4 && alen != 16) || PyBytes_GET_SIZE(dst) != alen) {
        PyErr_SetString(PyExc_ValueError, "decoded: addresses must be 4 or 16 packed bytes");
        goto fail;
    }
    memset(&p->key, 0, sizeof(Key));
    p->key.alen = (unsigned char)alen;
    memcpy(p->key.src, PyBytes_AS_STRING(src), (size_t)alen);
    memcpy(p->key.dst, PyBytes_AS_STRING(dst), (size_t)alen);
    uint32_t v;
    if (as_u32(sport, &v) < 0) goto fail;
    p->key.sport = (uint16_t)v;
    if (as_u32(dport, &v) < 0) goto fail;
    p->key.dport = (uint16_t)v;
    if (as_u32(seq, &p->seq) < 0 || as_u32(ack, &p->ack) < 0) goto fail;
    p->flags = (int)PyLong_AsLong(flags);
    p->win = PyLong_AsLong(win);
    p->length = PyLong_AsLongLong(length);
    p->ip_id = ip_id == Py_None ? -1 : PyLong_AsLong(ip_id);
    if (PyErr_Occurred()) goto fail;
    p->opt_len = 0;
    p->opt_obj = Py_NewRef(options);
    Py_DECREF(r);
    return 1;
fail:
    Py_DECREF(r);
    return -1;
}

/* _same_options(a, b) of show.py */
static int same_options(Loop *self, const Seg *s, const Packet *p) {
    if (!s->opt_obj && !p->opt_obj && s->opt_len == p->opt_len && memcmp(s->opt, p->opt, s->opt_len) == 0) return 1;
    PyObject *a = options_object(s);
    PyObject *b = p->opt_obj ? Py_NewRef(p->opt_obj) : PyBytes_FromStringAndSize((const char *)p->opt, p->opt_len);
    PyObject *r = a && b ? PyObject_CallFunctionObjArgs(self->same_options, a, b, NULL) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    if (!r) return -1;
    int same = PyObject_IsTrue(r);
    Py_DECREF(r);
    return same;
}

/* ------------------------------------------------------------------ TCP analysis (wire.analysis) */
/* Wireshark's TCP analysis labels, the rules of verifier/wire/analysis.py step for step (its
 * Analyzer: its own conversations, as Wireshark's outlive show's hand-on; bases of forgotten ones
 * kept per 4-tuple). A segment's labels are a bit set (analysis.py's TCP_A_* values);
 * LABEL_NAMES is analysis.LABELS, in order. */

#define A_RETRANSMISSION 0x0001
#define A_LOST_PACKET 0x0002
#define A_ACK_LOST_PACKET 0x0004
#define A_KEEP_ALIVE 0x0008
#define A_DUPLICATE_ACK 0x0010
#define A_ZERO_WINDOW 0x0020
#define A_ZERO_WINDOW_PROBE 0x0040
#define A_ZERO_WINDOW_PROBE_ACK 0x0080
#define A_KEEP_ALIVE_ACK 0x0100
#define A_OUT_OF_ORDER 0x0200
#define A_FAST_RETRANSMISSION 0x0400
#define A_WINDOW_UPDATE 0x0800
#define A_WINDOW_FULL 0x1000
#define A_REUSED_PORTS 0x2000
#define A_SPURIOUS_RETRANSMISSION 0x4000

static const struct { const char *name; int mask; } LABEL_NAMES[] = {
    {"retransmission", A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION},
    {"fast-retransmission", A_FAST_RETRANSMISSION},
    {"spurious-retransmission", A_SPURIOUS_RETRANSMISSION},
    {"out-of-order", A_OUT_OF_ORDER},
    {"dup-ack", A_DUPLICATE_ACK},
    {"keep-alive", A_KEEP_ALIVE},
    {"keep-alive-ack", A_KEEP_ALIVE_ACK},
    {"zero-window", A_ZERO_WINDOW},
    {"zero-window-probe", A_ZERO_WINDOW_PROBE},
    {"zero-window-probe-ack", A_ZERO_WINDOW_PROBE_ACK},
    {"window-full", A_WINDOW_FULL},
    {"window-update", A_WINDOW_UPDATE},
    {"lost-segment", A_LOST_PACKET},
    {"ack-lost-segment", A_ACK_LOST_PACKET},
    {"reused-ports", A_REUSED_PORTS},
};
#define NLABELS ((int)(sizeof LABEL_NAMES / sizeof LABEL_NAMES[0]))

typedef struct {
    uint32_t base_seq, window, nextseq, maxseqtobeacked, lastack;
    long long nextseq_ns, lastack_ns;
    int win_scale, last_flags, dupacknum;
    char base_set, is_first_ack, fin; /* fin: this direction has sent a FIN */
    uint32_t *unacked; /* next seqs of segments not yet ACKed (at most max_unacked) */
    Py_ssize_t nunacked, unacked_cap;
} Flow;

typedef struct Conv {
    Key key; /* flow[0] sends from key.src, flow[1] from key.dst */
    Flow flow[2];
    long long mru_syn_ns, first_rtt_ns;
    double last_t;
    int refs; /* table entries pointing here (2, or 1 for a 4-tuple whose ends are equal) */
    char closed; /* a RST, or a FIN each way, was seen */
} Conv;

typedef struct { /* a forgotten conversation's base seqs, by its key's sides */
    uint32_t base[2];
    char set[2];
} Bases;

static void conv_release(Conv *c) { /* one table entry less pointing at it */
    if (--c->refs > 0) return;
    for (int i = 0; i < 2; i++) PyMem_Free(c->flow[i].unacked);
    PyMem_Free(c);
}

static void conv_release_value(void *c) { conv_release(c); }


static void flow_init(Flow *f) {
    memset(f, 0, sizeof *f);
    f->win_scale = -1;
    f->window = 0xFFFFFFFFu;
}

/* analysis._ns: a time in whole nanoseconds as round(t * 1e9); 0 when it does not fit */
static long long time_ns(double t) {
    double x = t * 1e9;
    return (x > -4611686018427387904.0 && x < 4611686018427387904.0) ? (long long)nearbyint(x) : 0;
}

static inline int gt_seq(uint32_t x, uint32_t y) { return (uint32_t)(y - x) >= 0x80000000u; }
static inline int lt_seq(uint32_t x, uint32_t y) { return (uint32_t)(x - y) >= 0x80000000u; }
static inline int le_seq(uint32_t x, uint32_t y) {
    uint32_t d = x - y;
    return d == 0 || d >= 0x80000000u;
}

static Key reversed(const Key *k) {
    Key r;
    reverse_key(k, &r);
    return r;
}

/* Analyzer._new: a conversation for `key` (the packet's sender first), bases restored; NULL: no memory */
static Conv *conv_new(Loop *self, const Key *key, Bases *bases, int swapped) {
    Conv *c = PyMem_Calloc(1, sizeof(Conv));
    if (!c) return NULL;
    c->key = *key;
    flow_init(&c->flow[0]);
    flow_init(&c->flow[1]);
    if (bases)
        for (int i = 0; i < 2; i++)
            if (bases->set[i]) c->flow[swapped ? 1 - i : i].base_set = 1, c->flow[swapped ? 1 - i : i].base_seq = bases->base[i];
    Key r = reversed(key);
    int same = memcmp(key, &r, sizeof(Key)) == 0;
    void *old;
    if (atable_set(&self->convs, key, c, &old) < 0) goto nomem;
    c->refs++;
    if (old) conv_release(old);
    if (!same) {
        if (atable_set(&self->convs, &r, c, &old) < 0) goto nomem;
        c->refs++;
        if (old) conv_release(old);
    }
    return c;
nomem:
    if (!c->refs) PyMem_Free(c);
    return NULL;
}

static int forget_idle(Loop *self, double now) { /* Analyzer._forget_idle */
    self->sweep_at = now + (self->forget_after < self->closed_after ? self->forget_after : self->closed_after) / 4;
    ATable *t = &self->convs;
    Conv **idle = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < t->nbuckets; i++) /* first collect: removing walks the buckets too */
        for (ANode *node = t->buckets[i]; node; node = node->next) {
            Conv *c = node->value;
            if (memcmp(&node->key, &c->key, sizeof(Key)) == 0 &&
                now - c->last_t > (c->closed ? self->closed_after : self->forget_after)) {
                if (n == cap) {
                    Conv **more = PyMem_Realloc(idle, (cap = cap ? cap * 2 : 64) * sizeof(Conv *));
                    if (!more) goto nomem;
                    idle = more;
                }
                idle[n++] = c;
            }
        }
    size_t new = 0; /* cleared or not: decided once for the sweep, whatever order it comes in */
    for (size_t j = 0; j < n; j++) new += !atable_get(&self->bases, &idle[j]->key);
    if (new && self->bases.nkeys + new > (size_t)self->bases_max) { /* analysis.BASES_MAX */
        atable_free(&self->bases, PyMem_Free);
        if (atable_init(&self->bases) < 0) goto nomem;
    }
    for (size_t j = 0; j < n; j++) {
        Conv *c = idle[j];
        Bases *b = PyMem_Calloc(1, sizeof(Bases));
        void *old;
        if (!b) goto nomem;
        for (int s = 0; s < 2; s++) b->set[s] = c->flow[s].base_set, b->base[s] = c->flow[s].base_seq;
        if (atable_set(&self->bases, &c->key, b, &old) < 0) {
            PyMem_Free(b);
            goto nomem;
        }
        PyMem_Free(old);
        Key key = c->key, r = reversed(&key);
        int same = memcmp(&key, &r, sizeof(Key)) == 0;
        void *v = atable_pop(t, &key); /* c itself: popping may free it, so `same` was read first */
        Conv *w = same ? NULL : atable_pop(t, &r);
        if (v) conv_release(v);
        if (w) conv_release(w);
    }
    PyMem_Free(idle);
    return 0;
nomem:
    PyMem_Free(idle);
    PyErr_NoMemory();
    return -1;
}

/* analysis._retransmission: one bit or none */
static int retransmission_bits(const Loop *self, const Conv *conv, const Flow *fwd, const Flow *rev, uint32_t seq,
                               long long seglen, int flags, long long t_ns, int bits) {
    if (bits & A_KEEP_ALIVE) return 0;
    int not_advanced = fwd->nextseq && lt_seq(seq, fwd->nextseq);
    if (seglen > 1 && (uint32_t)(fwd->nextseq - 1) == seq) not_advanced = 0;
    if (seglen > 0 && rev->lastack && le_seq((uint32_t)(seq + (uint64_t)seglen), rev->lastack))
        return A_SPURIOUS_RETRANSMISSION;
    /* unsigned time differences, as packet-tcp.c: a time going backwards is huge */
    long long d = t_ns - rev->lastack_ns;
    if (not_advanced && rev->dupacknum >= 2 && rev->lastack == seq && d >= 0 && d < self->fast_rtx_ns)
        return A_FAST_RETRANSMISSION;
    unsigned long long threshold = conv->first_rtt_ns ? (unsigned long long)conv->first_rtt_ns : (unsigned long long)self->ooo_ns;
    d = t_ns - fwd->nextseq_ns;
    if (not_advanced && d >= 0 && (unsigned long long)d < threshold &&
        fwd->nextseq != (uint32_t)(seq + (uint64_t)seglen + ((flags & (SYN | FIN)) ? 1 : 0)))
        return A_OUT_OF_ORDER;
    return not_advanced ? A_RETRANSMISSION : 0;
}

/* analysis._analyze: tcp_analyze_sequence_number; -1 out of memory */
static int analyze_bits(Loop *self, Conv *conv, Flow *fwd, Flow *rev, uint32_t seq, uint32_t ack, long long seglen,
                        int flags, uint32_t window, long long t_ns) {
    int bits = 0, control = flags & (SYN | FIN | RST), done_fwd = 0;
    if (seglen == 1 && seq == fwd->nextseq && rev->window == 0) bits |= A_ZERO_WINDOW_PROBE, done_fwd = 1;
    if (!done_fwd) {
        if (window == 0 && !control) bits |= A_ZERO_WINDOW;
        if (fwd->nextseq && gt_seq(seq, fwd->nextseq) && !(flags & RST)) bits |= A_LOST_PACKET;
        if ((seglen == 0 || seglen == 1) && seq == (uint32_t)(fwd->nextseq - 1) && !control) bits |= A_KEEP_ALIVE;
        int same = seglen == 0 && seq == fwd->nextseq && ack == fwd->lastack && !control;
        if (same && window && window != fwd->window) bits |= A_WINDOW_UPDATE;
        if (seglen > 0 && rev->win_scale != -1 && !control) {
            int shift = rev->is_first_ack || rev->win_scale == -2 ? 0 : rev->win_scale;
            if ((uint32_t)(seq + (uint64_t)seglen) == (uint32_t)(rev->lastack + ((uint64_t)rev->window << shift)))
                bits |= A_WINDOW_FULL;
        }
        if (same && window && window == fwd->window && (rev->last_flags & A_KEEP_ALIVE)) {
            bits |= A_KEEP_ALIVE_ACK;
        } else if (same && window == 0 && window == fwd->window && (rev->last_flags & A_ZERO_WINDOW_PROBE)) {
            bits |= A_ZERO_WINDOW_PROBE_ACK;
        } else if (same && window && window == fwd->window) {
            fwd->dupacknum = fwd->dupacknum == -1 ? 1 : fwd->dupacknum + 1;
            bits |= A_DUPLICATE_ACK;
        }
    }
    if (ack != fwd->lastack) fwd->dupacknum = 0;
    if (rev->maxseqtobeacked && gt_seq(ack, rev->maxseqtobeacked) && (flags & ACK)) {
        if (lt_seq(rev->maxseqtobeacked, rev->nextseq)) {
            rev->maxseqtobeacked = rev->nextseq;
            bits |= A_ACK_LOST_PACKET;
        } else {
            if (rev->dupacknum == 0) bits |= A_ACK_LOST_PACKET;
            rev->dupacknum = -1;
        }
    }
    if (seglen > 0 || (flags & (SYN | FIN))) bits |= retransmission_bits(self, conv, fwd, rev, seq, seglen, flags, t_ns, bits);
    uint32_t nextseq = (uint32_t)(seq + (uint64_t)seglen);
    if ((seglen || (flags & (SYN | FIN))) && fwd->nunacked < self->max_unacked) {
        if (flags & (SYN | FIN)) nextseq += 1;
        if (fwd->nunacked == fwd->unacked_cap) {
            Py_ssize_t cap = fwd->unacked_cap ? fwd->unacked_cap * 2 : 8;
            uint32_t *more = PyMem_Realloc(fwd->unacked, (size_t)cap * sizeof(uint32_t));
            if (!more) return -1;
            fwd->unacked = more, fwd->unacked_cap = cap;
        }
        fwd->unacked[fwd->nunacked++] = nextseq;
    }
    if ((gt_seq(nextseq, fwd->nextseq) || !fwd->nextseq) && !(bits & A_ZERO_WINDOW_PROBE))
        fwd->nextseq = nextseq, fwd->nextseq_ns = t_ns;
    if ((seq == fwd->maxseqtobeacked || !fwd->maxseqtobeacked) && !(bits & A_ZERO_WINDOW_PROBE))
        fwd->maxseqtobeacked = fwd->nextseq;
    fwd->window = window;
    fwd->lastack = ack;
    fwd->lastack_ns = t_ns;
    fwd->last_flags = bits;
    if (rev->nunacked) { /* what this ACKs (Wireshark looks at the ack field whatever the flags) */
        Py_ssize_t kept = 0;
        for (Py_ssize_t i = 0; i < rev->nunacked; i++)
            if (gt_seq(rev->unacked[i], ack)) rev->unacked[kept++] = rev->unacked[i];
        rev->nunacked = kept;
    }
    return bits;
}

/* the wscale option's value (the last one) in decode._options's reading of raw option bytes, or -1 */
static int raw_wscale(const unsigned char *o, Py_ssize_t end) {
    int found = -1;
    Py_ssize_t i = 0;
    while (i < end) {
        unsigned kind = o[i];
        if (kind == 0) break;
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= end) break;
        unsigned length = o[i + 1];
        if (length < 2 || i + (Py_ssize_t)length > end) break;
        if (kind == 3 && length == 3) found = o[i + 2];
        i += length;
    }
    return found;
}

/* the same of decode's parsed options (a tuple of tuples); -2 on error */
static int parsed_wscale(PyObject *options) {
    int found = -1;
    if (!PyTuple_Check(options)) return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(options); i++) {
        PyObject *o = PyTuple_GET_ITEM(options, i);
        if (PyTuple_Check(o) && PyTuple_GET_SIZE(o) == 2 && PyUnicode_Check(PyTuple_GET_ITEM(o, 0)) &&
            PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(o, 0), "wscale") == 0) {
            long v = PyLong_AsLong(PyTuple_GET_ITEM(o, 1));
            if (v == -1 && PyErr_Occurred()) return -2;
            found = (int)v;
        }
    }
    return found;
}

/* a segment's labels as analysis.names gives them: each quoted, `between` between them */
static int out_labels(Loop *self, int labels, const char *quote, const char *between) {
    if (!labels) return 0; /* most segments */
    int first = 1;
    for (int i = 0; i < NLABELS; i++)
        if (labels & LABEL_NAMES[i].mask) {
            if ((!first && out_bytes(self, between, strlen(between)) < 0) || out_bytes(self, quote, strlen(quote)) < 0 ||
                out_bytes(self, LABEL_NAMES[i].name, strlen(LABEL_NAMES[i].name)) < 0 ||
                out_bytes(self, quote, strlen(quote)) < 0)
                return -1;
            first = 0;
        }
    return 0;
}

/* Analyzer.bits: this packet's labels; -1 on error (an exception set) */
static int analysis_bits(Loop *self, const Packet *p, double t) {
    long long t_ns = time_ns(t);
    const Key *key = &p->key;
    Key r = reversed(key);
    int same_ends = memcmp(key, &r, sizeof(Key)) == 0;
    Conv *conv = atable_get(&self->convs, key);
    if (!conv) {
        Bases *b = atable_pop(&self->bases, key);
        int swapped = 0;
        if (!b && (b = atable_pop(&self->bases, &r))) swapped = 1;
        conv = conv_new(self, key, b, swapped);
        PyMem_Free(b);
        if (!conv) goto nomem;
    }
    int flags = p->flags, bits = 0;
    uint32_t seq = p->seq, ack = p->ack;
    int mine = memcmp(&conv->key, key, sizeof(Key)) == 0 ? 0 : 1; /* the sender's flow */
    Flow *fwd = &conv->flow[mine], *rev = same_ends ? fwd : &conv->flow[1 - mine];
    if ((flags & (SYN | ACK)) == SYN && fwd->base_set) {
        if (seq != fwd->base_seq) { /* a new conversation on the same ports */
            if (!(conv = conv_new(self, key, NULL, 0))) goto nomem;
            fwd = &conv->flow[0], rev = same_ends ? fwd : &conv->flow[1];
            bits |= A_REUSED_PORTS;
        } else {
            fwd->nextseq = fwd->maxseqtobeacked;
        }
    }
    if ((flags & (SYN | ACK)) == (SYN | ACK) && fwd->base_set && seq != fwd->base_seq) {
        fwd->base_seq = seq;
        bits |= A_REUSED_PORTS;
    }
    if (!fwd->base_set) fwd->base_seq = (flags & SYN) ? seq : seq - 1, fwd->base_set = 1;
    if (!rev->base_set && (flags & ACK)) rev->base_seq = ack - 1, rev->base_set = 1;
    int a = analyze_bits(self, conv, fwd, rev, seq, ack, p->length, flags, (uint32_t)p->win, t_ns);
    if (a < 0) goto nomem;
    bits |= a;
    if (flags & SYN) {
        if (!(flags & ACK)) conv->mru_syn_ns = t_ns;
        fwd->is_first_ack = 1;
    }
    if ((flags & (SYN | ACK)) == ACK) {
        if (conv->mru_syn_ns && !conv->first_rtt_ns) conv->first_rtt_ns = t_ns - conv->mru_syn_ns;
        fwd->is_first_ack = 0;
    }
    int ws = p->opt_obj ? parsed_wscale(p->opt_obj) : raw_wscale(p->opt, p->opt_len);
    if (ws == -2) return -1;
    if (ws >= 0) fwd->win_scale = ws < 14 ? ws : 14;
    if (flags & SYN) {
        if (fwd->win_scale == -1) fwd->win_scale = rev->win_scale = -2;
        else if ((flags & ACK) && rev->win_scale == -2) fwd->win_scale = -2;
    }
    if (flags & FIN) fwd->fin = 1;
    if ((flags & RST) || (fwd->fin && rev->fin)) conv->closed = 1;
    conv->last_t = t;
    if (t >= self->sweep_at && forget_idle(self, t) < 0) return -1;
    return bits;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* track() and Connection.add for one decoded packet (owns p->opt_obj) with its analysis labels; -1 on error */
static int track(Loop *self, Packet *p, double t, long long frame, PyObject *comment, int labels) {
    Conn *c = atable_get(&self->conns, &p->key);
    int flags = p->flags;
    if (!c || ((flags & SYN) && !(flags & ACK) && is_finished(c) && (!c->has_client_isn || p->seq != c->client_isn))) {
        Key rkey;
        self->count++;
        c = PyMem_Calloc(1, sizeof(Conn));
        if (!c) goto nomem;
        c->index = self->count;
        c->key = p->key;
        c->client_is_src = !((flags & SYN) && (flags & ACK)); /* a SYN-ACK comes from the server */
        reverse_key(&p->key, &rkey);
        if (conns_set(self, &p->key, c) < 0 || conns_set(self, &rkey, c) < 0) {
            conns_forget(self, &p->key, c);
            conns_forget(self, &rkey, c);
            conn_free(c);
            goto nomem;
        }
        if (!self->head) self->head = c;
        else self->tail->next = c;
        self->tail = c;
        self->npending++;
    }
    /* the side: whether the packet comes from the client */
    const Key *k = &c->key;
    const unsigned char *caddr = c->client_is_src ? k->src : k->dst;
    unsigned cport = c->client_is_src ? k->sport : k->dport;
    char side = (p->key.sport == cport && memcmp(p->key.src, caddr, k->alen) == 0) ? 'C' : 'S';
    int duplicate = 0;
    Py_ssize_t from = c->nsegs > self->lookback ? c->nsegs - self->lookback : 0;
    if (p->loopback) { /* connections.Doubling.remove */
        self->lo_segments++;
        for (Py_ssize_t i = from; i < c->nsegs; i++) {
            const Seg *r = &c->segs[i];
            if (r->seq == p->seq && r->ack == p->ack && r->side == side && t - r->t <= self->window &&
                r->flags == flags && r->length == p->length && r->win == p->win && r->ip_id == p->ip_id) {
                int same = same_options(self, r, p);
                if (same < 0) goto fail;
                if (same) { /* a copy: removed when the doubling is proven (connections.doubled) */
                    long long n = self->lo_segments, unpaired = n - 2 * ++self->lo_copies;
                    duplicate = self->slack * unpaired <= (n > self->slack ? n : self->slack);
                    break;
                }
            }
        }
    }
    if (duplicate) {
        c->duplicates++;
        Py_CLEAR(p->opt_obj);
    } else {
        if (c->nsegs == c->cap) {
            Py_ssize_t cap = c->cap ? c->cap * 2 : 8;
            Seg *segs = PyMem_Realloc(c->segs, (size_t)cap * sizeof(Seg));
            if (!segs) goto nomem;
            c->segs = segs;
            c->cap = cap;
        }
        Seg *s = &c->segs[c->nsegs++];
        uint32_t syn = (flags & SYN) ? 1 : 0;
        s->t = t;
        s->frame = frame;
        s->length = p->length;
        s->seq = p->seq;
        s->ack = p->ack;
        s->win = p->win;
        s->ip_id = p->ip_id;
        s->flags = flags;
        s->labels = labels;
        s->tos = p->tos;
        s->side = side;
        s->opt_len = p->opt_len;
        memcpy(s->opt, p->opt, p->opt_len);
        s->opt_obj = p->opt_obj; /* the reference moves here */
        p->opt_obj = NULL;
        s->comment = Py_NewRef(comment);
        /* Connection.add's rules, for the sender's half and its peer's */
        struct Half *me = &c->half[side == 'C' ? 0 : 1], *peer = &c->half[side == 'C' ? 1 : 0];
        if (flags & SYN) {
            if (!me->syn) {
                if (me->has_base) c->moved = 1;
                me->base = p->seq, me->has_base = 1, me->syn = 1;
            }
            if (side == 'C' && !(flags & ACK) && !c->has_client_isn) c->client_isn = p->seq, c->has_client_isn = 1;
        } else if (!me->has_base) {
            me->base = p->seq - 1, me->has_base = 1;
        }
        if (flags & ACK) {
            if (!peer->has_base) peer->base = p->ack - 1, peer->has_base = 1;
            s->rack = p->ack - peer->base;
        } else {
            s->rack = 0;
        }
        s->rseq = p->seq - me->base;
        if (flags & RST) c->rst = 1;
        if (flags & FIN) me->fin = (uint32_t)((uint64_t)p->seq + (uint64_t)p->length + syn + 1), me->has_fin = 1;
        if ((flags & ACK) && peer->has_fin && (uint32_t)(p->ack - peer->fin) < HALF) peer->acked = 1;
    }
    if (c == self->head && !duplicate && is_finished(c)) self->ready = c->segs[c->nsegs - 1].t + self->half_linger;
    if (t >= self->ready || self->npending > self->max_waiting) {
        self->draining = 1;
        self->now = t;
    }
    return 0;
nomem:
    PyErr_NoMemory();
fail:
    Py_CLEAR(p->opt_obj);
    return -1;
}

/* the connection at the head handed on: its text (new reference); the connection is freed */
static PyObject *pop_head(Loop *self, int forget) {
    Conn *c = self->head;
    self->npending--;
    self->head = c->next;
    if (!self->head) self->tail = NULL;
    if (forget) {
        Key rkey;
        reverse_key(&c->key, &rkey);
        conns_forget(self, &c->key, c);
        conns_forget(self, &rkey, c);
    }
    PyObject *text = conn_text(self, c);
    conn_free(c);
    return text;
}

static PyObject *Loop_next(Loop *self) {
    if (!self->records) {
        PyErr_SetString(PyExc_RuntimeError, "Loop.__init__ was not called");
        return NULL;
    }
    for (;;) {
        if (self->draining) {
            Conn *h = self->head;
            if (h && is_finished(h) && !(self->now - h->segs[h->nsegs - 1].t < self->linger)) return pop_head(self, 1);
            if (h && self->npending > self->max_waiting) { /* track()'s max_waiting: the head goes as it is */
                self->cut_short += !is_finished(h);
                return pop_head(self, 1);
            }
            self->draining = 0;
            self->ready = h && is_finished(h) ? h->segs[h->nsegs - 1].t + self->half_linger : INFINITY;
        }
        if (self->ended) {
            if (self->head) return pop_head(self, 0);
            return NULL;
        }
        PyObject *record = PyIter_Next(self->records);
        if (!record) {
            if (PyErr_Occurred()) return NULL;
            self->ended = 1;
            continue;
        }
        if (record == Py_None) { /* capture.PAUSE: the stream paused longer than the linger: hand on what is finished */
            Py_DECREF(record);
            self->draining = 1;
            self->now = INFINITY;
            continue;
        }
        if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) < 10) {
            Py_DECREF(record);
            PyErr_SetString(PyExc_TypeError, "records must be read_records' 10-tuples");
            return NULL;
        }
        self->packets++;
        /* (index, t, linktype, buf, start, end, orig_len, comment, interface, section) */
        long long frame = PyLong_AsLongLong(PyTuple_GET_ITEM(record, 0));
        double t = PyFloat_AsDouble(PyTuple_GET_ITEM(record, 1));
        long lt = PyLong_AsLong(PyTuple_GET_ITEM(record, 2));
        PyObject *buf = PyTuple_GET_ITEM(record, 3);
        Py_ssize_t start = PyLong_AsSsize_t(PyTuple_GET_ITEM(record, 4)), end = PyLong_AsSsize_t(PyTuple_GET_ITEM(record, 5));
        if (PyErr_Occurred()) {
            Py_DECREF(record);
            return NULL;
        }
        Packet p;
        p.opt_obj = NULL;
        memset(&p.key, 0, sizeof(Key));
        int decoded = 0;
        if (PyBytes_Check(buf) && 0 <= start && start <= end && end <= PyBytes_GET_SIZE(buf))
            decoded = fast_decode((const unsigned char *)PyBytes_AS_STRING(buf) + start, end - start, lt, &p);
        if (!decoded) decoded = slow_decode(self, record, &p);
        if (decoded <= 0) {
            Py_DECREF(record);
            if (decoded < 0) return NULL;
            continue;
        }
        self->tcp++;
        int labels = analysis_bits(self, &p, t); /* every segment, loopback copies too: as Wireshark */
        if (labels < 0) {
            Py_CLEAR(p.opt_obj);
            Py_DECREF(record);
            return NULL;
        }
        int rc = track(self, &p, t, frame, PyTuple_GET_ITEM(record, 7), labels);
        Py_DECREF(record);
        if (rc < 0) return NULL;
    }
}

/* ------------------------------------------------------------------ the type */

static int Loop_init(Loop *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"records", "linger", "window", "lookback", "shape_max", "memo_max", "hooks", "transcript",
                         "verbose", "slack", "server_ports", "untimed_span", "analysis", "max_waiting", NULL};
    PyObject *records, *hooks;
    if (self->records) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is initialised once");
        return -1;
    }
    self->slack = 8;
    self->untimed_span = INFINITY;
    /* analysis.py's FORGET_AFTER, CLOSED_FORGET_AFTER, BASES_MAX, MAX_UNACKED, FAST_RETRANSMISSION_NS, OUT_OF_ORDER_NS */
    self->forget_after = 30.0, self->closed_after = 2.0, self->bases_max = 1 << 15, self->max_unacked = 10000;
    self->fast_rtx_ns = 20000000, self->ooo_ns = 3000000;
    self->max_waiting = 10000; /* connections.MAX_WAITING */
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OddnnnO|$ppny*d(ddnnLL)n", kw, &records, &self->linger, &self->window,
                                     &self->lookback, &self->shape_max, &self->memo_max, &hooks, &self->transcript,
                                     &self->verbose, &self->slack, &self->server_ports, &self->untimed_span,
                                     &self->forget_after, &self->closed_after, &self->bases_max, &self->max_unacked,
                                     &self->fast_rtx_ns, &self->ooo_ns, &self->max_waiting))
        return -1;
    if (!(self->records = PyObject_GetIter(records))) return -1;
    struct { PyObject **slot; const char *name; } names[] = {
        {&self->decoded, "decoded"},       {&self->conn_text, "conn_text"},   {&self->facts_text, "facts_text"},
        {&self->addr_text, "addr_text"},   {&self->flags_text, "flags_text"}, {&self->same_options, "same_options"},
        {&self->options_text, "options_text"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!(*names[i].slot = PyObject_GetAttrString(hooks, names[i].name))) return -1;
    self->half_linger = self->linger * 0.5;
    self->ready = INFINITY;
    if (atable_init(&self->conns) < 0) return -1;
    if (!(self->shapes = PyDict_New())) return -1;
    if (atable_init(&self->convs) < 0 || atable_init(&self->bases) < 0) return -1;
    return 0;
}

static void Loop_dealloc(Loop *self) {
    while (self->head) {
        Conn *c = self->head;
        self->head = c->next;
        conn_free(c);
    }
    for (int i = 0; i < 512; i++) Py_XDECREF(self->flags_cache[i]);
    atable_free(&self->convs, conv_release_value);
    atable_free(&self->bases, PyMem_Free);
    atable_free(&self->conns, NULL); /* the connections are the head list's */
    PyMem_Free(self->out);
    Py_XDECREF(self->records);
    Py_XDECREF(self->decoded);
    Py_XDECREF(self->conn_text);
    Py_XDECREF(self->facts_text);
    Py_XDECREF(self->addr_text);
    Py_XDECREF(self->flags_text);
    Py_XDECREF(self->same_options);
    Py_XDECREF(self->options_text);
    Py_XDECREF(self->shapes);
    if (self->server_ports.obj) PyBuffer_Release(&self->server_ports);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Loop_counts(Loop *self, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("(LLLL)", self->packets, self->tcp, self->duplicates, self->cut_short);
}

static PyMethodDef Loop_methods[] = {
    {"counts", (PyCFunction)Loop_counts, METH_NOARGS,
     "(packets, tcp packets, duplicates of the connections handed on so far, connections handed on unfinished)"},
    {NULL},
};

static PyTypeObject LoopType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "verifier.wire._showloop.Loop",
    .tp_basicsize = sizeof(Loop),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Loop(records, linger, window, lookback, shape_max, memo_max, hooks, *, transcript=False, "
              "verbose=False, slack=8, server_ports=b'', untimed_span=inf, analysis=(30.0, 2.0, 32768, 10000, 20000000, 3000000)): "
              "the texts of show --json (or of show's transcript, -v's with verbose)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Loop_init,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Loop_next,
    .tp_methods = Loop_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_showloop", "The loop of `verifier show --json`, compiled (see show.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__showloop(void) {
    if (PyType_Ready(&LoopType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&LoopType);
    if (PyModule_AddObject(m, "Loop", (PyObject *)&LoopType) < 0) {
        Py_DECREF(&LoopType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
