/* The bulk DNS engine's network side in C, for the forked worker process (measure/dns_bulk_worker.py).
 *
 * Why: in the worker, the Python engine (dns_bulk._Engine on asyncio) spends ~25 us of CPU per query,
 * ~16 us of it in Python bookkeeping (query objects, deques, timers, per-datagram dispatch) on top
 * of the system calls; the worker was the pipeline's slow stage (bench/dns_throughput.py). This file
 * runs the same engine with the same semantics, item for item (see dns_bulk._Engine, the reference,
 * whose method names the functions below keep): ids from each socket's permuted free pool, FIFO
 * reuse; ``concurrency`` bounds the queries awaiting a first response; a query is live until
 * ``hold`` seconds after its first response or ICMP error, and every datagram arriving meanwhile is
 * kept raw, in arrival order; an unknown id is attributed by question; deadlines are checked on a
 * timer armed at least TICK ahead, so a window may last up to TICK longer, never shorter. It
 * produces the same RawResult tuples and speaks the same marshal frames to the parent.
 *
 * Rare events call back into Python (``host``, a dns_bulk_worker._Host): opening a socket (options,
 * id permutation), reading the ICMP error queue, the question of a reply with an unknown id,
 * classifying a send error, the text of a new sender address. All Python state is touched with the
 * GIL held: the worker process has a single thread, and the loop never releases the GIL.
 *
 * Memory safety: datagrams are only copied into Python bytes objects here (the decoding happens in
 * the parent); the id of a datagram is read only when it has at least 2 bytes; receive buffers are
 * 64 KiB per slot, larger than any UDP payload, and the kernel is told their sizes; control messages
 * are walked with CMSG_FIRSTHDR/CMSG_NXTHDR, whose bounds the kernel set; a query is at most
 * 12 + 255 + 4 + 11 bytes and its slot 512. Every array indexed by a query or name number grows
 * with its pool; references into a pool carry the slot's generation, so a stale timer entry never
 * reaches the slot's next occupant.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#define TICK 0.005             /* dns_bulk.TICK */
#define MAX_SOCKETS 256        /* dns_bulk.MAX_SOCKETS */
#define SEND_BATCH 256         /* dns_bulk._BATCH */
#define SEND_SLOT 512          /* a query is at most 282 bytes */
#define RECV_BATCH 32          /* dns_bulk._RECV_BATCH */
#define RECV_SLOT 65536        /* larger than any UDP payload: never cut short */
#define CONTROL 64             /* one TTL/hop-limit control message (24 bytes) and then some */
#define DRAIN_ROUNDS (4096 / RECV_BATCH)
#define RESULTS_BATCH 256      /* dns_bulk_worker.RESULTS_BATCH */
#define FLUSH_EVERY 0.02       /* dns_bulk_worker.FLUSH_EVERY */
#define RETRY_AFTER 0.001      /* a full send buffer is tried again after this */
#define SOURCES_MAX 4096       /* sender texts cached (a spoofing flood must not grow it) */

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic()'s clock */
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --- pools and queues --------------------------------------------------------------------- */

typedef struct {           /* one name being resolved (dns_bulk._Name) */
    PyObject *key;         /* its number (int), what the result carries back */
    PyObject *wire;        /* its wire form (bytes) */
    double start;
    int pending;           /* queries not finished */
    PyObject *observations;/* list of RawQuery tuples, completion order */
} Name;

typedef struct {           /* one query (dns_bulk._Query) */
    uint32_t gen;          /* bumped each time the slot is reused */
    int32_t name;          /* its Name slot */
    int32_t index;         /* of its type in the engine's types */
    int32_t sock;          /* -1 until an id is taken */
    int32_t qid;           /* -1 until an id is taken */
    double t0, first;
    char has_first, done;
    PyObject *question;    /* name wire + type tail (bytes) */
    PyObject *key;         /* question.lower(): the by_question key */
    PyObject *responses;   /* list of (data, t, source, ttl) */
    PyObject *icmp;        /* list of ICMP error dicts */
} Query;

typedef struct { double when; int32_t slot; uint32_t gen; } Entry;

typedef struct { Entry *v; size_t cap, head, len; } Deque; /* a ring; cap is a power of two */

static int dq_grow(Deque *d) {
    size_t cap = d->cap ? d->cap * 2 : 1024;
    Entry *v = PyMem_Malloc(cap * sizeof(Entry));
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < d->len; i++)
        v[i] = d->v[(d->head + i) & (d->cap - 1)];
    PyMem_Free(d->v);
    d->v = v;
    d->cap = cap;
    d->head = 0;
    return 0;
}
static int dq_push(Deque *d, Entry e) {
    if (d->len == d->cap && dq_grow(d))
        return -1;
    d->v[(d->head + d->len++) & (d->cap - 1)] = e;
    return 0;
}
static int dq_push_front(Deque *d, Entry e) {
    if (d->len == d->cap && dq_grow(d))
        return -1;
    d->head = (d->head - 1) & (d->cap - 1);
    d->v[d->head] = e;
    d->len++;
    return 0;
}
static Entry *dq_front(Deque *d) { return d->len ? &d->v[d->head] : NULL; }
static Entry dq_pop(Deque *d) { /* only when len > 0 */
    Entry e = d->v[d->head];
    d->head = (d->head + 1) & (d->cap - 1);
    d->len--;
    return e;
}

typedef struct {           /* a UDP socket and its 65,536 ids (dns_bulk._Socket) */
    PyObject *sock;        /* the Python socket object (kept open while the engine runs) */
    int fd;
    uint16_t free_ids[65536];
    uint32_t free_head, free_len;  /* FIFO of free ids */
    int32_t live[65536];   /* id -> Query slot, or -1 */
} Sock;

typedef struct {
    /* configuration */
    PyObject *host;        /* callbacks */
    int parent_fd, epfd;
    PyObject *prefix, *suffix;  /* the query's header after the id, and its OPT record */
    PyObject *tails;       /* tuple of question tails (bytes), one per type */
    int ntypes;
    double hold, timeout, wall_offset;
    long concurrency;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    /* pools */
    Name *names; int32_t *free_names; size_t names_cap, free_names_len;
    Query *queries; int32_t *free_queries; size_t queries_cap, free_queries_len;
    Sock *socks[MAX_SOCKETS]; int nsocks;
    PyObject *by_question; /* key -> Query slot (int) */
    PyObject *sources;     /* raw sockaddr bytes -> "ip:port" */
    Deque ready, timeouts, holds;
    long waiting, live_names;
    int exhausted;
    /* names from the parent: chunks of wire forms, numbered in order */
    PyObject *chunks;      /* list of lists of bytes */
    Py_ssize_t chunk_pos;  /* next item of chunks[0] */
    int chunk_active;      /* chunks[0] is being read (its "want" was sent) */
    int ended;             /* the parent said "end" */
    long long numbered;
    char *inbuf; size_t inlen, incap;
    /* timers */
    int armed; double timer_when;
    int retry; double retry_when;
    double next_flush;
    /* results waiting to go to the parent */
    PyObject *batch;
    /* counters (BulkStats) */
    long long n_names, n_queries, n_responses, n_timeouts, n_send_errors, n_icmp, n_unmatched;
    /* I/O buffers */
    unsigned char *sendbuf, *recvbuf;
    struct mmsghdr smsgs[SEND_BATCH], rmsgs[RECV_BATCH];
    struct iovec siov[SEND_BATCH], riov[RECV_BATCH];
    struct sockaddr_storage rnames[RECV_BATCH];
    char rcontrol[RECV_BATCH][CONTROL];
    int ttl_level, ttl_type;
} Engine;

static int grow(void **array, size_t *cap, size_t item, size_t need) {
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 1024;
    while (cap2 < need)
        cap2 *= 2;
    void *v = PyMem_Realloc(*array, cap2 * item);
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *array = v;
    *cap = cap2;
    return 0;
}

/* A free slot of a pool (names or queries); the pool doubles when none is free. New slots are zeroed
 * (NULL references, generation 0); ``free`` always has room for every slot of the pool. */
static int32_t pool_take(void **pool, int32_t **free, size_t *cap, size_t *free_len, size_t item) {
    if (*free_len == 0) {
        size_t old = *cap, cap2 = old ? old * 2 : 1024;
        if (cap2 > INT32_MAX) {
            PyErr_NoMemory();
            return -1;
        }
        void *p = PyMem_Realloc(*pool, cap2 * item);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *pool = p;
        memset((char *)p + old * item, 0, (cap2 - old) * item);
        int32_t *f = PyMem_Realloc(*free, cap2 * sizeof(int32_t));
        if (f == NULL) {  /* the pool grew but stays usable: its size is only recorded below */
            PyErr_NoMemory();
            return -1;
        }
        *free = f;
        *cap = cap2;
        for (size_t i = cap2; i > old; i--)
            f[(*free_len)++] = (int32_t)(i - 1);  /* the lowest slot on top */
    }
    return (*free)[--*free_len];
}

static int32_t new_name(Engine *e) {
    return pool_take((void **)&e->names, &e->free_names, &e->names_cap, &e->free_names_len, sizeof(Name));
}

static int32_t new_query(Engine *e) {
    return pool_take((void **)&e->queries, &e->free_queries, &e->queries_cap, &e->free_queries_len, sizeof(Query));
}

/* --- results to the parent ----------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n); /* blocking: waits while the parent is behind (back-pressure) */
        if (w < 0) {
            if (errno == EINTR)
                continue;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One frame: 4-byte big-endian length, then marshal (version 4, as marshal.dumps). */
static int send_frame(Engine *e, PyObject *message) {
    PyObject *data = PyMarshal_WriteObjectToString(message, Py_MARSHAL_VERSION);
    if (data == NULL)
        return -1;
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    unsigned char head[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                             (unsigned char)n};
    int r = write_all(e->parent_fd, (char *)head, 4) || write_all(e->parent_fd, PyBytes_AS_STRING(data), (size_t)n);
    Py_DECREF(data);
    return r ? -1 : 0;
}

static int send_want(Engine *e) {
    PyObject *m = Py_BuildValue("(s)", "want");
    if (m == NULL)
        return -1;
    int r = send_frame(e, m);
    Py_DECREF(m);
    return r;
}

static int flush(Engine *e) {
    if (PyList_GET_SIZE(e->batch) == 0)
        return 0;
    PyObject *m = Py_BuildValue("(sO)", "results", e->batch);
    if (m == NULL)
        return -1;
    int r = send_frame(e, m);
    Py_DECREF(m);
    if (r == 0)
        r = PyList_SetSlice(e->batch, 0, PY_SSIZE_T_MAX, NULL);
    return r;
}

/* --- finishing ------------------------------------------------------------------------------ */

/* dns_bulk._Engine._finish: release the id, append the RawQuery, emit the name when complete. */
static int finish(Engine *e, int32_t slot, double now, PyObject *failure, const char *failed_step) {
    Query *q = &e->queries[slot];
    q->done = 1;
    if (q->sock >= 0 && e->socks[q->sock]->live[q->qid] == slot) {
        Sock *s = e->socks[q->sock];
        s->live[q->qid] = -1;
        s->free_ids[(s->free_head + s->free_len++) & 0xFFFF] = (uint16_t)q->qid;
    }
    PyObject *held = q->key ? PyDict_GetItemWithError(e->by_question, q->key) : NULL;
    if (held != NULL && PyLong_AsLong(held) == slot && PyDict_DelItem(e->by_question, q->key))
        return -1;
    if (PyErr_Occurred())
        return -1;
    Name *nm = &e->names[q->name];
    PyObject *obs = Py_BuildValue("(iiddOsOO)", q->index, q->qid, q->t0 - nm->start, now - nm->start,
                                  failure ? failure : Py_None, failed_step, q->responses, q->icmp);
    if (obs == NULL)
        return -1;
    int r = PyList_Append(nm->observations, obs);
    Py_DECREF(obs);
    if (r)
        return -1;
    int32_t name_slot = q->name;
    Py_CLEAR(q->question);
    Py_CLEAR(q->key);
    Py_CLEAR(q->responses);
    Py_CLEAR(q->icmp);
    q->gen++;
    e->free_queries[e->free_queries_len++] = slot;
    if (--nm->pending)
        return 0;
    e->live_names--;
    PyObject *raw = Py_BuildValue("(OddO)", nm->key, e->wall_offset + nm->start, now - nm->start, nm->observations);
    Py_CLEAR(nm->key);
    Py_CLEAR(nm->wire);
    Py_CLEAR(nm->observations);
    e->free_names[e->free_names_len++] = name_slot;
    if (raw == NULL)
        return -1;
    r = PyList_Append(e->batch, raw);
    Py_DECREF(raw);
    if (r)
        return -1;
    return PyList_GET_SIZE(e->batch) >= RESULTS_BATCH ? flush(e) : 0;
}

/* --- timers ----------------------------------------------------------------------------------- */

/* dns_bulk._Engine._arm: the timer fires by ``when``, but not sooner than TICK from now. */
static void arm(Engine *e, double when) {
    double soonest = now_mono() + TICK;
    if (when < soonest)
        when = soonest;
    if (e->armed && e->timer_when <= when)
        return;
    e->armed = 1;
    e->timer_when = when;
}

static void first_event(Engine *e, int32_t slot, double now) {
    Query *q = &e->queries[slot];
    q->has_first = 1;
    q->first = now;
    e->waiting--;
    Entry h = {now + e->hold, slot, q->gen};
    if (dq_push(&e->holds, h))
        return; /* the error is set; the caller checks PyErr_Occurred */
    if (!e->armed || e->timer_when > now + e->hold + TICK)
        arm(e, now + e->hold);
}

static int stale(Engine *e, Entry *t) {
    Query *q = &e->queries[t->slot];
    return q->gen != t->gen || q->has_first || q->done;
}

static int fill(Engine *e);

/* dns_bulk._Engine._tick */
static int tick(Engine *e) {
    e->armed = 0;
    double now = now_mono();
    Entry *t;
    while ((t = dq_front(&e->timeouts)) && stale(e, t))
        dq_pop(&e->timeouts);
    while ((t = dq_front(&e->timeouts)) && t->when <= now) {
        Entry x = dq_pop(&e->timeouts);
        if (!stale(e, &x)) {
            e->waiting--;
            e->n_timeouts++;
            if (finish(e, x.slot, now, NULL, NULL))
                return -1;
        }
    }
    while ((t = dq_front(&e->holds)) && t->when <= now) {
        Entry x = dq_pop(&e->holds); /* a query in its window finishes only here: never stale */
        if (finish(e, x.slot, now, NULL, NULL))
            return -1;
    }
    while ((t = dq_front(&e->timeouts)) && stale(e, t))
        dq_pop(&e->timeouts);
    Entry *a = dq_front(&e->timeouts), *b = dq_front(&e->holds);
    if (a || b)
        arm(e, a && b ? (a->when < b->when ? a->when : b->when) : (a ? a->when : b->when));
    return fill(e);
}

/* --- ICMP errors ---------------------------------------------------------------------------------- */

/* dns_bulk._Engine._icmp: attribute each queued error through the query it quotes. */
static int icmp(Engine *e, int si) {
    double now = now_mono();
    Sock *s = e->socks[si];
    PyObject *errors = PyObject_CallMethod(e->host, "read_errors", "O", s->sock);
    if (errors == NULL)
        return -1;
    PyObject *it = PyObject_GetIter(errors), *item;
    Py_DECREF(errors);
    if (it == NULL)
        return -1;
    while ((item = PyIter_Next(it))) {
        PyObject *original, *info;
        int32_t slot = -1;
        if (!PyArg_ParseTuple(item, "SO!", &original, &PyDict_Type, &info))
            goto fail;
        if (PyBytes_GET_SIZE(original) >= 2) {
            const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(original);
            slot = s->live[(p[0] << 8) | p[1]];
        }
        if (slot < 0) {
            e->n_unmatched++;
            Py_DECREF(item);
            continue;
        }
        Query *q = &e->queries[slot];
        e->n_icmp++;
        PyObject *t = PyFloat_FromDouble(now - e->names[q->name].start);
        PyObject *rounded = t ? PyObject_CallMethod(t, "__round__", "i", 6) : NULL;
        Py_XDECREF(t);
        PyObject *d = rounded ? PyDict_New() : NULL;
        if (d == NULL || PyDict_SetItemString(d, "t", rounded) || PyDict_Update(d, info)
            || PyList_Append(q->icmp, d)) {
            Py_XDECREF(rounded);
            Py_XDECREF(d);
            goto fail;
        }
        Py_DECREF(rounded);
        Py_DECREF(d);
        Py_DECREF(item);
        if (!q->has_first) {
            first_event(e, slot, now);
            if (PyErr_Occurred())
                goto fail_it;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
fail:
    Py_DECREF(item);
fail_it:
    Py_DECREF(it);
    return -1;
}

/* --- sending ---------------------------------------------------------------------------------------- */

static int socket_with_free_id(Engine *e) {
    for (int i = 0; i < e->nsocks; i++)
        if (e->socks[i]->free_len)
            return i;
    if (e->nsocks >= MAX_SOCKETS)
        return -1;
    PyObject *r = PyObject_CallMethod(e->host, "new_socket", NULL); /* (socket, fd, ids: 65,536 u16) */
    if (r == NULL)
        return -2;
    PyObject *sock;
    int fd;
    Py_buffer ids;
    if (!PyArg_ParseTuple(r, "Oiy*", &sock, &fd, &ids)) {
        Py_DECREF(r);
        return -2;
    }
    Sock *s = PyMem_Malloc(sizeof(Sock));
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)e->nsocks};
    if (s == NULL || ids.len != (Py_ssize_t)sizeof s->free_ids || epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        if (s == NULL)
            PyErr_NoMemory();
        else if (ids.len != (Py_ssize_t)sizeof s->free_ids)
            PyErr_SetString(PyExc_ValueError, "new_socket: need 65,536 ids");
        else
            PyErr_SetFromErrno(PyExc_OSError);
        PyMem_Free(s);
        PyBuffer_Release(&ids);
        Py_DECREF(r);
        return -2;
    }
    memcpy(s->free_ids, ids.buf, sizeof s->free_ids);
    PyBuffer_Release(&ids);
    s->free_head = 0;
    s->free_len = 65536;
    for (int i = 0; i < 65536; i++)
        s->live[i] = -1;
    Py_INCREF(sock);
    s->sock = sock;
    s->fd = fd;
    Py_DECREF(r);
    e->socks[e->nsocks] = s;
    return e->nsocks++;
}

/* dns_bulk._Engine._next_name: the next name's queries into ``ready``; 0 when none is available now. */
static int next_name(Engine *e) {
    for (;;) {
        if (PyList_GET_SIZE(e->chunks)) {
            PyObject *chunk = PyList_GET_ITEM(e->chunks, 0);
            if (!e->chunk_active) {  /* _Feed.more: take a chunk, ask for the next one */
                e->chunk_active = 1;
                if (!e->ended && send_want(e))
                    return -1;
            }
            if (e->chunk_pos < PyList_GET_SIZE(chunk)) {
                PyObject *wire = PyList_GET_ITEM(chunk, e->chunk_pos++);
                if (!PyBytes_Check(wire)) {
                    PyErr_SetString(PyExc_TypeError, "names must be bytes");
                    return -1;
                }
                int32_t ns = new_name(e);
                if (ns < 0)
                    return -1;
                Name *nm = &e->names[ns];
                nm->key = PyLong_FromLongLong(e->numbered++);
                nm->observations = PyList_New(0);
                if (nm->key == NULL || nm->observations == NULL)
                    return -1;
                Py_INCREF(wire);
                nm->wire = wire;
                nm->start = now_mono();
                nm->pending = e->ntypes;
                e->n_names++;
                e->live_names++;
                for (int i = 0; i < e->ntypes; i++) {
                    int32_t qs = new_query(e);
                    if (qs < 0)
                        return -1;
                    Query *q = &e->queries[qs];
                    q->name = ns;
                    q->index = i;
                    q->sock = q->qid = -1;
                    q->has_first = q->done = 0;
                    q->key = NULL;
                    q->question = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(wire)
                                                            + PyBytes_GET_SIZE(PyTuple_GET_ITEM(e->tails, i)));
                    q->responses = PyList_New(0);
                    q->icmp = PyList_New(0);
                    if (q->question == NULL || q->responses == NULL || q->icmp == NULL)
                        return -1;
                    char *p = PyBytes_AS_STRING(q->question);
                    memcpy(p, PyBytes_AS_STRING(wire), (size_t)PyBytes_GET_SIZE(wire));
                    memcpy(p + PyBytes_GET_SIZE(wire), PyBytes_AS_STRING(PyTuple_GET_ITEM(e->tails, i)),
                           (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(e->tails, i)));
                    /* bytes.lower(): ASCII letters only (a name's other bytes stay as they are) */
                    Py_ssize_t qlen = PyBytes_GET_SIZE(q->question);
                    q->key = PyBytes_FromStringAndSize(NULL, qlen);
                    if (q->key == NULL)
                        return -1;
                    char *k = PyBytes_AS_STRING(q->key);
                    for (Py_ssize_t c = 0; c < qlen; c++)
                        k[c] = (char)(p[c] >= 'A' && p[c] <= 'Z' ? p[c] + 32 : p[c]);
                    Entry x = {0.0, qs, q->gen};
                    if (dq_push(&e->ready, x))
                        return -1;
                }
                return 1;
            }
            if (PySequence_DelItem(e->chunks, 0))
                return -1;
            e->chunk_pos = 0;
            e->chunk_active = 0;
            continue;
        }
        if (e->ended)
            e->exhausted = 1;
        return 0;
    }
}

static PyObject *classify(Engine *e, int err) {
    return PyObject_CallMethod(e->host, "classify", "i", err);
}

static int retry_icmp_codes(int err) { /* dns_bulk._PENDING_ICMP */
    return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN || err == EPROTO
           || err == EMSGSIZE;
}

/* dns_bulk._Engine._send: 1 = all handled, 0 = the send buffer is full (the rest is queued again). */
static int send_batch(Engine *e, int si, int32_t *batch, int n) {
    Sock *s = e->socks[si];
    const char *prefix = PyBytes_AS_STRING(e->prefix), *suffix = PyBytes_AS_STRING(e->suffix);
    size_t plen = (size_t)PyBytes_GET_SIZE(e->prefix), slen = (size_t)PyBytes_GET_SIZE(e->suffix);
    for (int k = 0; k < n; k++) {  /* dnswire.build_query_fast: id, header tail, question, OPT */
        Query *q = &e->queries[batch[k]];
        unsigned char *p = e->sendbuf + (size_t)k * SEND_SLOT;
        size_t qlen = (size_t)PyBytes_GET_SIZE(q->question);
        if (2 + plen + qlen + slen > SEND_SLOT) {
            PyErr_SetString(PyExc_ValueError, "query longer than its slot");
            return -1;
        }
        p[0] = (unsigned char)(q->qid >> 8);
        p[1] = (unsigned char)q->qid;
        memcpy(p + 2, prefix, plen);
        memcpy(p + 2 + plen, PyBytes_AS_STRING(q->question), qlen);
        memcpy(p + 2 + plen + qlen, suffix, slen);
        e->siov[k].iov_base = p;
        e->siov[k].iov_len = 2 + plen + qlen + slen;
        memset(&e->smsgs[k], 0, sizeof e->smsgs[k]);
        e->smsgs[k].msg_hdr.msg_name = &e->addr;
        e->smsgs[k].msg_hdr.msg_namelen = e->addrlen;
        e->smsgs[k].msg_hdr.msg_iov = &e->siov[k];
        e->smsgs[k].msg_hdr.msg_iovlen = 1;
    }
    int i = 0, retried_icmp = 0;
    while (i < n) {
        int sent = sendmmsg(s->fd, e->smsgs + i, (unsigned)(n - i), 0);
        int err = sent < 0 ? errno : 0;
        if (sent < 0)
            sent = 0;
        double now = now_mono();
        for (int k = i; k < i + sent; k++) {
            Query *q = &e->queries[batch[k]];
            q->t0 = now;
            PyObject *v = PyLong_FromLong(batch[k]);
            if (v == NULL || PyDict_SetItem(e->by_question, q->key, v)) {
                Py_XDECREF(v);
                return -1;
            }
            Py_DECREF(v);
            Entry x = {now + e->timeout, batch[k], q->gen};
            if (dq_push(&e->timeouts, x))
                return -1;
        }
        e->waiting += sent;
        e->n_queries += sent;
        if (sent) {
            arm(e, now + e->timeout);
            retried_icmp = 0;
        }
        i += sent;
        if (i == n || (sent && !err))
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
            for (int k = n - 1; k >= i; k--) {
                Entry x = {0.0, batch[k], e->queries[batch[k]].gen};
                if (dq_push_front(&e->ready, x))
                    return -1;
            }
            if (!e->retry) {
                e->retry = 1;
                e->retry_when = now + RETRY_AFTER;
            }
            return 0;
        }
        if (retry_icmp_codes(err) && !retried_icmp) {
            /* an earlier query's ICMP error reported on this send: attribute it, then send again */
            if (icmp(e, si))
                return -1;
            retried_icmp = 1;
            continue;
        }
        Query *q = &e->queries[batch[i]]; /* this datagram could not be sent: that is its result */
        q->t0 = now;
        e->n_queries++;
        e->n_send_errors++;
        PyObject *failure = classify(e, err);
        if (failure == NULL)
            return -1;
        int r = finish(e, batch[i], now, failure, "send");
        Py_DECREF(failure);
        if (r)
            return -1;
        i++;
        retried_icmp = 0;
    }
    return 1;
}

/* dns_bulk._Engine._fill: send until ``concurrency`` queries wait for their first answer. */
static int fill(Engine *e) {
    int32_t batch[SEND_BATCH];
    while (e->waiting < e->concurrency) {
        int n = 0, si = -1;
        long room = e->concurrency - e->waiting;
        if (room > SEND_BATCH)
            room = SEND_BATCH;
        while (n < room) {
            if (!e->ready.len) {
                if (e->exhausted)
                    break;
                int got = next_name(e);
                if (got < 0)
                    return -1;
                if (!got)
                    break;
            }
            Entry *x = dq_front(&e->ready);
            Query *q = &e->queries[x->slot];
            int s = q->sock;
            if (s < 0) {  /* a new query: an id on this batch's socket while it has free ones */
                s = si >= 0 && e->socks[si]->free_len ? si : socket_with_free_id(e);
                if (s == -2)
                    return -1;
            }
            if (s < 0 || (si >= 0 && s != si))
                break;  /* no free id anywhere (wait for windows to close), or another socket's batch */
            si = s;
            if (q->sock < 0) {
                Sock *k = e->socks[s];
                q->sock = s;
                q->qid = k->free_ids[k->free_head];
                k->free_head = (k->free_head + 1) & 0xFFFF;
                k->free_len--;
                k->live[q->qid] = x->slot;
            }
            batch[n++] = dq_pop(&e->ready).slot;
        }
        if (si < 0)
            break;
        int r = send_batch(e, si, batch, n);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
    }
    return 0;
}

/* --- receiving ----------------------------------------------------------------------------------------- */

/* The IP TTL / hop limit of received datagram ``i`` (None when the kernel gave none). */
static PyObject *ttl_of(Engine *e, int i) {
    struct msghdr *h = &e->rmsgs[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c))
        if (c->cmsg_level == e->ttl_level && c->cmsg_type == e->ttl_type && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof v);
            return PyLong_FromLong(v);
        }
    Py_RETURN_NONE;
}

static PyObject *source_of(Engine *e, int i) {
    PyObject *key = PyBytes_FromStringAndSize((char *)&e->rnames[i], e->rmsgs[i].msg_hdr.msg_namelen);
    if (key == NULL)
        return NULL;
    PyObject *text = PyDict_GetItemWithError(e->sources, key);
    if (text != NULL) {
        Py_INCREF(text);
    } else if (!PyErr_Occurred()) {
        if (PyDict_GET_SIZE(e->sources) > SOURCES_MAX)
            PyDict_Clear(e->sources);
        text = PyObject_CallMethod(e->host, "source_text", "O", key);
        if (text != NULL && PyDict_SetItem(e->sources, key, text))
            Py_CLEAR(text);
    }
    Py_DECREF(key);
    return text;
}

/* The query an unknown-id datagram asks about (dns_bulk._Engine._by_question), or -1. */
static int32_t by_question(Engine *e, PyObject *data) {
    PyObject *key = PyObject_CallMethod(e->host, "question_key", "O", data);
    if (key == NULL)
        return -2;
    int32_t slot = -1;
    if (key != Py_None) {
        PyObject *v = PyDict_GetItemWithError(e->by_question, key);
        if (v != NULL)
            slot = (int32_t)PyLong_AsLong(v);
        else if (PyErr_Occurred())
            slot = -2;
    }
    Py_DECREF(key);
    return slot;
}

/* dns_bulk._Engine._drain: read every ready datagram of socket ``si`` (bounded rounds). */
static int drain(Engine *e, int si) {
    Sock *s = e->socks[si];
    for (int round = 0; round < DRAIN_ROUNDS; round++) {
        for (int i = 0; i < RECV_BATCH; i++) {  /* the kernel rewrites these lengths: reset them */
            e->rmsgs[i].msg_hdr.msg_namelen = sizeof e->rnames[i];
            e->rmsgs[i].msg_hdr.msg_controllen = CONTROL;
            e->rmsgs[i].msg_hdr.msg_flags = 0;
        }
        int got = recvmmsg(s->fd, e->rmsgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            if (icmp(e, si)) /* a pending ICMP error (sk_err): read the error queue */
                return -1;
            continue;
        }
        if (got == 0)
            return 0;
        double now = now_mono(); /* one reading per batch: the datagrams were all queued already */
        for (int i = 0; i < got; i++) {
            size_t size = e->rmsgs[i].msg_len;
            const unsigned char *p = e->recvbuf + (size_t)i * RECV_SLOT;
            PyObject *data = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)size);
            if (data == NULL)
                return -1;
            int32_t slot = size >= 2 ? s->live[(p[0] << 8) | p[1]] : -1;
            if (slot < 0) {
                slot = by_question(e, data);
                if (slot == -2) {
                    Py_DECREF(data);
                    return -1;
                }
                if (slot < 0) {
                    e->n_unmatched++;
                    Py_DECREF(data);
                    continue;
                }
            }
            Query *q = &e->queries[slot];
            e->n_responses++;
            PyObject *source = source_of(e, i), *ttl = source ? ttl_of(e, i) : NULL;
            PyObject *item = ttl ? Py_BuildValue("(NdNN)", data, now - e->names[q->name].start, source, ttl) : NULL;
            if (item == NULL) {
                if (ttl == NULL) {
                    Py_DECREF(data);
                    Py_XDECREF(source);
                }
                return -1;
            }
            int r = PyList_Append(q->responses, item);
            Py_DECREF(item);
            if (r)
                return -1;
            if (!q->has_first) {
                first_event(e, slot, now);
                if (PyErr_Occurred())
                    return -1;
            }
        }
    }
    return 0;
}

/* --- messages from the parent ------------------------------------------------------------------ */

/* Read what the parent sent: ("names", [wire, ...]) or ("end",). 1 = the parent went away. */
static int on_parent(Engine *e) {
    for (;;) {
        if (grow((void **)&e->inbuf, &e->incap, 1, e->inlen + 65536))
            return -1;
        ssize_t r = recv(e->parent_fd, e->inbuf + e->inlen, e->incap - e->inlen, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (r == 0)
            return 1;
        e->inlen += (size_t)r;
    }
    size_t off = 0;
    while (e->inlen - off >= 4) {
        const unsigned char *h = (const unsigned char *)e->inbuf + off;
        size_t size = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
        if (e->inlen - off - 4 < size)
            break;
        PyObject *m = PyMarshal_ReadObjectFromString(e->inbuf + off + 4, (Py_ssize_t)size);
        off += 4 + size;
        if (m == NULL)
            return -1;
        if (!PyTuple_Check(m) || PyTuple_GET_SIZE(m) < 1) {
            Py_DECREF(m);
            PyErr_SetString(PyExc_ValueError, "bad message from the parent");
            return -1;
        }
        int r = 0;
        if (PyTuple_GET_SIZE(m) == 2 && PyList_Check(PyTuple_GET_ITEM(m, 1)))
            r = PyList_Append(e->chunks, PyTuple_GET_ITEM(m, 1));  /* ("names", [...]) */
        else
            e->ended = 1;  /* ("end",) */
        Py_DECREF(m);
        if (r)
            return -1;
    }
    memmove(e->inbuf, e->inbuf + off, e->inlen - off);
    e->inlen -= off;
    return 0;
}

/* --- the loop ------------------------------------------------------------------------------------------ */

static int run_loop(Engine *e) {
    struct epoll_event pev = {.events = EPOLLIN, .data.u32 = MAX_SOCKETS};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->parent_fd, &pev)) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (send_want(e) || send_want(e) || fill(e))
        return -1;
    e->next_flush = now_mono() + FLUSH_EVERY;
    struct epoll_event events[MAX_SOCKETS + 1];
    for (;;) {
        if (e->exhausted && !e->ready.len && e->live_names == 0)
            return flush(e);  /* dns_bulk._Engine._maybe_done */
        double now = now_mono(), when = e->next_flush;
        if (e->armed && e->timer_when < when)
            when = e->timer_when;
        if (e->retry && e->retry_when < when)
            when = e->retry_when;
        double wait = when - now;
        int ms = wait <= 0 ? 0 : (int)(wait * 1000.0) + 1; /* rounded up: a deadline is never early */
        int n = epoll_wait(e->epfd, events, MAX_SOCKETS + 1, ms);
        if (n < 0 && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        for (int k = 0; k < n; k++) {
            uint32_t id = events[k].data.u32;
            if (id == MAX_SOCKETS) {
                int r = on_parent(e);
                if (r < 0)
                    return -1;
                if (r == 1) {
                    PyErr_SetString(PyExc_RuntimeError, "the parent closed the connection");
                    return -1;
                }
            } else if (drain(e, (int)id)) {
                return -1;
            }
            if (fill(e))
                return -1;
        }
        now = now_mono();
        if (e->retry && e->retry_when <= now) {
            e->retry = 0;
            if (fill(e))
                return -1;
        }
        if (e->armed && e->timer_when <= now && tick(e))
            return -1;
        if (now >= e->next_flush) {
            if (flush(e))
                return -1;
            e->next_flush = now + FLUSH_EVERY;
        }
        if (PyErr_CheckSignals())
            return -1;
    }
}

static void engine_free(Engine *e) {
    for (size_t i = 0; i < e->names_cap; i++) {
        Py_CLEAR(e->names[i].key);
        Py_CLEAR(e->names[i].wire);
        Py_CLEAR(e->names[i].observations);
    }
    for (size_t i = 0; i < e->queries_cap; i++) {
        Py_CLEAR(e->queries[i].question);
        Py_CLEAR(e->queries[i].key);
        Py_CLEAR(e->queries[i].responses);
        Py_CLEAR(e->queries[i].icmp);
    }
    for (int i = 0; i < e->nsocks; i++) {
        Py_CLEAR(e->socks[i]->sock);
        PyMem_Free(e->socks[i]);
    }
    PyMem_Free(e->names);
    PyMem_Free(e->free_names);
    PyMem_Free(e->queries);
    PyMem_Free(e->free_queries);
    PyMem_Free(e->ready.v);
    PyMem_Free(e->timeouts.v);
    PyMem_Free(e->holds.v);
    PyMem_Free(e->inbuf);
    PyMem_Free(e->sendbuf);
    PyMem_Free(e->recvbuf);
    Py_XDECREF(e->by_question);
    Py_XDECREF(e->sources);
    Py_XDECREF(e->chunks);
    Py_XDECREF(e->batch);
    if (e->epfd >= 0)
        close(e->epfd);
    PyMem_Free(e);
}

static PyObject *run(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"host", "parent_fd", "address", "tails", "prefix", "suffix", "hold", "timeout",
                             "concurrency", "wall_offset", NULL};
    PyObject *host, *tails, *prefix, *suffix;
    int parent_fd;
    Py_buffer address;
    double hold, timeout, wall_offset;
    long concurrency;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oiy*O!SSddld", kwlist, &host, &parent_fd, &address, &PyTuple_Type,
                                     &tails, &prefix, &suffix, &hold, &timeout, &concurrency, &wall_offset))
        return NULL;
    Engine *e = PyMem_Calloc(1, sizeof(Engine));
    if (e == NULL) {
        PyBuffer_Release(&address);
        return PyErr_NoMemory();
    }
    e->epfd = -1;
    if (address.len < (Py_ssize_t)sizeof(sa_family_t) || (size_t)address.len > sizeof e->addr
        || PyTuple_GET_SIZE(tails) < 1 || concurrency < 1) {
        PyBuffer_Release(&address);
        PyMem_Free(e);
        PyErr_SetString(PyExc_ValueError, "bad engine arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tails); i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(tails, i))) {
            PyBuffer_Release(&address);
            PyMem_Free(e);
            PyErr_SetString(PyExc_TypeError, "tails must be bytes");
            return NULL;
        }
    memcpy(&e->addr, address.buf, (size_t)address.len);
    e->addrlen = (socklen_t)address.len;
    PyBuffer_Release(&address);
    int v6 = e->addr.ss_family == AF_INET6;
    e->ttl_level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
    e->ttl_type = v6 ? IPV6_HOPLIMIT : IP_TTL;
    e->host = host;
    e->parent_fd = parent_fd;
    e->tails = tails;
    e->ntypes = (int)PyTuple_GET_SIZE(tails);
    e->prefix = prefix;
    e->suffix = suffix;
    e->hold = hold;
    e->timeout = timeout;
    e->concurrency = concurrency;
    e->wall_offset = wall_offset;
    e->by_question = PyDict_New();
    e->sources = PyDict_New();
    e->chunks = PyList_New(0);
    e->batch = PyList_New(0);
    e->sendbuf = PyMem_Malloc((size_t)SEND_BATCH * SEND_SLOT);
    e->recvbuf = PyMem_Malloc((size_t)RECV_BATCH * RECV_SLOT);
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->by_question == NULL || e->sources == NULL || e->chunks == NULL || e->batch == NULL || e->sendbuf == NULL
        || e->recvbuf == NULL || e->epfd < 0) {
        if (!PyErr_Occurred()) {
            if (e->epfd < 0)
                PyErr_SetFromErrno(PyExc_OSError);
            else
                PyErr_NoMemory();
        }
        engine_free(e);
        return NULL;
    }
    for (int i = 0; i < RECV_BATCH; i++) {
        e->riov[i].iov_base = e->recvbuf + (size_t)i * RECV_SLOT;
        e->riov[i].iov_len = RECV_SLOT;
        e->rmsgs[i].msg_hdr.msg_name = &e->rnames[i];
        e->rmsgs[i].msg_hdr.msg_iov = &e->riov[i];
        e->rmsgs[i].msg_hdr.msg_iovlen = 1;
        e->rmsgs[i].msg_hdr.msg_control = e->rcontrol[i];
    }
    PyObject *result = NULL;
    if (run_loop(e) == 0)
        result = Py_BuildValue("{sLsLsLsLsLsLsLsi}", "names", e->n_names, "queries", e->n_queries, "responses",
                               e->n_responses, "timeouts", e->n_timeouts, "send_errors", e->n_send_errors,
                               "icmp_errors", e->n_icmp, "unmatched", e->n_unmatched, "sockets", e->nsocks);
    engine_free(e);
    return result;
}

static PyMethodDef methods[] = {
    {"run", (PyCFunction)(void (*)(void))run, METH_VARARGS | METH_KEYWORDS,
     "run(host, parent_fd, address, tails, prefix, suffix, hold, timeout, concurrency, wall_offset) -> stats\n\n"
     "Run the bulk DNS engine against the resolver at ``address`` (a raw sockaddr) until the parent says\n"
     "\"end\" and every name is finished; results go to the parent as marshal frames. See the C source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dns_bulk_engine",
                                    "The bulk DNS engine's worker loop in C (see the C source).", -1, methods};

PyMODINIT_FUNC PyInit__dns_bulk_engine(void) { return PyModule_Create(&module); }
