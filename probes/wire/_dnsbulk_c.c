/* The bulk DNS engine's usual-response decoder in C: ``echo_record`` of probes/wire/dnsbulk.py.
 *
 * Why: the bulk engine decodes every received datagram in one Python thread, and the Python
 * shortcut costs ~5 us per response, a fifth of the CPU the engine spends per query
 * (PERF-NOTES.md, bench/dns_throughput.py). This file does the same work in well under a
 * microsecond.
 *
 * Contract (tests/unit/test_dnsbulk_cext.py checks it against the Python code on valid,
 * truncated, mutated and random datagrams): ``echo_record(data, question, qname, qid, t,
 * source, ip_ttl)`` returns a dict EQUAL to what the Python ``dnsbulk.echo_record`` returns
 * (same keys in the same order, same values), and None exactly where the Python returns None
 * ("not the usual response": the caller then takes the general decoder). It only accepts:
 *   - our question section echoed byte for byte at offset 12, opcode QUERY, QDCOUNT 1;
 *   - answers that are A (4 bytes) or AAAA (16 bytes), class IN, each owned by the
 *     compression pointer 0xC00C (the question name);
 *   - authority/additional records owned by the root or by any compression pointer, whose
 *     rdata fits in the datagram, and no OPT record carrying an extended rcode.
 * Anything else (CNAME, other types, other owners, bad lengths) is "not usual".
 *
 * The datagrams are untrusted (forged and injected replies are what the tool looks for):
 * every read below is preceded by a bounds check against ``n``, the datagram's length;
 * no name is followed (the only pointer accepted is compared, never dereferenced), so there
 * is no recursion and no loop whose length the datagram controls beyond its record counts,
 * each of which advances ``off`` by at least 11 bytes or stops; no fixed-size buffer is
 * written except the address text, sized by INET6_ADDRSTRLEN.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Interned strings, created once at import. */
static PyObject *k_t, *k_source, *k_query_id, *k_rcode, *k_flags, *k_ip_ttl, *k_answers, *k_addresses,
    *k_size, *k_id_mismatch, *k_question_mismatch, *k_parse_error, *k_raw_b64, *k_name, *k_type, *k_ttl,
    *k_data, *v_A, *v_AAAA;
/* ... and those of an observation (measure.dns_bulk.decode) */
static PyObject *k_id, *k_operation, *k_parent_id, *k_t0, *k_failure, *k_query_name, *k_query_type, *k_transport,
    *k_resolver, *k_hold_window, *k_responses, *k_icmp_errors, *k_failed_step, *v_dns_query, *v_udp;
static PyObject *rcode_text[16];                    /* dnswire.RCODES, else str(code) */
static PyObject *flag_text[7];                      /* in dig's order, as dnswire._FLAG_BITS */
static const unsigned flag_bit[7] = {0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010};
static PyObject *py_round;                          /* builtins.round: t is rounded exactly as Python does */
static PyObject *six;                               /* the int 6 (ndigits) */

static inline unsigned u16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline uint32_t u32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* True when the ``count`` authority/additional records from ``off`` are what dnswire.usual_rr_head
 * accepts: owner the root (1 byte) or a pointer (2 bytes), a whole RR header, rdata inside the
 * datagram, no OPT (type 41) whose TTL field carries extended-rcode bits. */
static int rest_ok(const unsigned char *d, Py_ssize_t n, Py_ssize_t off, unsigned count) {
    for (unsigned i = 0; i < count; i++) {
        Py_ssize_t head;                        /* offset of TYPE */
        if (off + 11 <= n && d[off] == 0)
            head = off + 1;
        else if (off + 12 <= n && d[off] >= 0xC0)
            head = off + 2;
        else
            return 0;
        /* head + 10 <= n holds by the checks above */
        unsigned rtype = u16(d + head);
        uint32_t ttl = u32(d + head + 4);
        unsigned rdlen = u16(d + head + 8);
        if (rtype == 41 && (ttl >> 24))
            return 0;
        off = head + 10 + rdlen;
        if (off > n)
            return 0;
    }
    return 1;
}

/* "a.b.c.d" of 4 bytes, as socket.inet_ntoa writes it (glibc's inet_ntop goes through printf: slower).
 * ``out`` has room for 16 bytes ("255.255.255.255" and the NUL). */
static void ipv4_text(const unsigned char *p, char *out) {
    for (int i = 0; i < 4; i++) {
        unsigned v = p[i];
        if (v >= 100)
            *out++ = (char)('0' + v / 100);
        if (v >= 10)
            *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

/* round(t, 6), Python's value to the last bit.
 *
 * Why not always builtins.round: for a float it goes through a decimal string (dtoa, snprintf, strtod),
 * ~1 us, and a name needs three. The fast path: y = t * 1e6 is within half an ulp of the exact product
 * (|error| <= |y| * 2^-53); when y is farther than that from a half-integer, the exact product rounds
 * (half to even, as Python) to the same integer r = nearbyint(y), and r / 1e6 (exact operands, one
 * correctly rounded division) is the double nearest to r * 10^-6, which is what Python's strtod of the
 * rounded decimal gives. Anything else (near a tie, huge, not a float, an int) takes builtins.round. */
static PyObject *round6(PyObject *t) {
    if (PyFloat_CheckExact(t)) {
        double y = PyFloat_AS_DOUBLE(t) * 1e6;
        if (isfinite(y) && fabs(y) < 0x1p50) {
            double r = nearbyint(y);
            if (0.5 - fabs(y - r) > fabs(y) * 0x1p-50)  /* the margin is 8x the product's error bound */
                return PyFloat_FromDouble(r / 1e6);
        }
    }
    PyObject *args[2] = {t, six};
    return PyObject_Vectorcall(py_round, args, 2, NULL);
}

/* round6(t): the function above, for the tests (they compare it with round(t, 6)). */
static PyObject *round6_py(PyObject *self, PyObject *t) { return round6(t); }

/* One answer dict {name, type, ttl, data}; NULL with an exception set on failure. */
static PyObject *answer(PyObject *qname, PyObject *type, uint32_t ttl, PyObject *text) {
    PyObject *a = _PyDict_NewPresized(4);
    PyObject *ttl_obj = PyLong_FromUnsignedLong(ttl);
    if (a == NULL || ttl_obj == NULL || PyDict_SetItem(a, k_name, qname) || PyDict_SetItem(a, k_type, type)
        || PyDict_SetItem(a, k_ttl, ttl_obj) || PyDict_SetItem(a, k_data, text)) {
        Py_XDECREF(a);
        Py_XDECREF(ttl_obj);
        return NULL;
    }
    Py_DECREF(ttl_obj);
    return a;
}

/* Set key=value in d, stealing the reference to value; -1 on failure (value released). */
static int set_steal(PyObject *d, PyObject *key, PyObject *value) {
    if (value == NULL)
        return -1;
    int r = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    return r;
}

/* What the first pass learnt about a usual reply. */
typedef struct {
    unsigned id, flags, an;
    Py_ssize_t answers_at;  /* offset of the first answer */
} Shape;

/* 1 when ``d`` (``n`` bytes) is the usual reply to the question ``wire`` + ``tail`` (see the top of the
 * file), 0 otherwise. Reads only, allocates nothing. */
static int usual_shape(const unsigned char *d, Py_ssize_t n, const char *wire, Py_ssize_t wl, const char *tail,
                       Py_ssize_t tl, Shape *s) {
    /* Our question echoed byte for byte at offset 12 (this also proves n >= 12 + wl + tl >= 12). */
    if (n < 12 + wl + tl || memcmp(d + 12, wire, (size_t)wl) != 0 || memcmp(d + 12 + wl, tail, (size_t)tl) != 0)
        return 0;
    s->id = u16(d);
    s->flags = u16(d + 2);
    s->an = u16(d + 6);
    unsigned qd = u16(d + 4), ns = u16(d + 8), ar = u16(d + 10);
    if ((s->flags & 0x7800) || qd != 1) /* opcode other than QUERY, or not exactly one question */
        return 0;
    Py_ssize_t off = s->answers_at = 12 + wl + tl;
    for (unsigned i = 0; i < s->an; i++) {
        if (off + 12 > n)
            return 0;
        unsigned ptr = u16(d + off), rtype = u16(d + off + 2), rclass = u16(d + off + 4),
                 rdlen = u16(d + off + 10);
        if (ptr != 0xC00C || rclass != 1 || off + 12 + rdlen > n)
            return 0;
        if (!((rtype == 1 && rdlen == 4) || (rtype == 28 && rdlen == 16)))
            return 0;
        off += 12 + rdlen;
    }
    return ns + ar == 0 || rest_ok(d, n, off, ns + ar);
}

/* The record of a reply ``usual_shape`` accepted (every bound was checked there): the dict
 * probes.dns.response_record returns for it, keys in its order. NULL with an exception on failure. */
static PyObject *build_record(const unsigned char *d, Py_ssize_t n, const Shape *s, PyObject *qname,
                              int id_mismatch, PyObject *t, PyObject *source, PyObject *ip_ttl) {
    PyObject *answers = PyList_New(s->an), *addresses = PyList_New(s->an), *flag_list = NULL, *rec = NULL;
    if (answers == NULL || addresses == NULL)
        goto fail;
    Py_ssize_t off = s->answers_at;
    for (unsigned i = 0; i < s->an; i++) {
        unsigned rtype = u16(d + off + 2), rdlen = u16(d + off + 10);
        uint32_t ttl = u32(d + off + 6);
        char text[INET6_ADDRSTRLEN];
        if (rtype == 1)
            ipv4_text(d + off + 12, text);
        else if (inet_ntop(AF_INET6, d + off + 12, text, sizeof text) == NULL) { /* as socket.inet_ntop */
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        PyObject *str = PyUnicode_FromString(text);
        if (str == NULL)
            goto fail;
        PyList_SET_ITEM(addresses, i, str); /* steals str */
        PyObject *a = answer(qname, rtype == 1 ? v_A : v_AAAA, ttl, str);
        if (a == NULL)
            goto fail;
        PyList_SET_ITEM(answers, i, a);
        off += 12 + rdlen;
    }
    flag_list = PyList_New(0);
    if (flag_list == NULL)
        goto fail;
    for (int i = 0; i < 7; i++)
        if ((s->flags & flag_bit[i]) && PyList_Append(flag_list, flag_text[i]))
            goto fail;
    rec = _PyDict_NewPresized(13);
    if (rec == NULL)
        goto fail;
    if (set_steal(rec, k_t, round6(t)) || PyDict_SetItem(rec, k_source, source)
        || set_steal(rec, k_query_id, PyLong_FromUnsignedLong(s->id))
        || PyDict_SetItem(rec, k_rcode, rcode_text[s->flags & 0x000F]) || PyDict_SetItem(rec, k_flags, flag_list)
        || PyDict_SetItem(rec, k_ip_ttl, ip_ttl) || PyDict_SetItem(rec, k_answers, answers)
        || PyDict_SetItem(rec, k_addresses, addresses) || set_steal(rec, k_size, PyLong_FromSsize_t(n))
        || PyDict_SetItem(rec, k_id_mismatch, id_mismatch ? Py_True : Py_False)
        || PyDict_SetItem(rec, k_question_mismatch, Py_False) || PyDict_SetItem(rec, k_parse_error, Py_None)
        || PyDict_SetItem(rec, k_raw_b64, Py_None))
        goto fail;
    Py_DECREF(answers);
    Py_DECREF(addresses);
    Py_DECREF(flag_list);
    return rec;
fail:
    Py_XDECREF(answers);
    Py_XDECREF(addresses);
    Py_XDECREF(flag_list);
    Py_XDECREF(rec);
    return NULL;
}

/* 1 when ``qid_obj`` (our id, any int) differs from ``msg_id``; -1 with an exception if not an int. */
static int id_differs(PyObject *qid_obj, unsigned msg_id) {
    int overflow;
    long qid = PyLong_AsLongAndOverflow(qid_obj, &overflow);
    if (qid == -1 && PyErr_Occurred())
        return -1;
    return overflow || qid != (long)msg_id;
}

static PyObject *echo_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "echo_record takes 7 arguments");
        return NULL;
    }
    PyObject *data = args[0], *question = args[1];
    if (!PyBytes_Check(data) || !PyBytes_Check(question)) {
        PyErr_SetString(PyExc_TypeError, "data and question must be bytes");
        return NULL;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Shape s;
    if (!usual_shape(d, PyBytes_GET_SIZE(data), PyBytes_AS_STRING(question), PyBytes_GET_SIZE(question), "", 0, &s)) {
        if (!PyLong_Check(args[3])) {
            PyErr_SetString(PyExc_TypeError, "qid must be an int");
            return NULL;
        }
        Py_RETURN_NONE;
    }
    int differs = id_differs(args[3], s.id);
    if (differs < 0)
        return NULL;
    return build_record(d, PyBytes_GET_SIZE(data), &s, args[2], differs, args[4], args[5], args[6]);
}

/* decode_usual(raw, name, wire, types, resolver, hold_window): measure.dns_bulk.decode for a finished
 * name whose every query was sent and answered, every datagram being the usual reply and each query's
 * first reply carrying our id, NOERROR and an answer of the asked type first; None otherwise (nothing
 * was built then: the caller runs the Python decode). ``raw`` is the engine's RawResult. */
static PyObject *decode_usual(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "decode_usual takes 6 arguments");
        return NULL;
    }
    PyObject *raw = args[0], *name = args[1], *wire = args[2], *types = args[3], *resolver = args[4],
             *hold = args[5];
    if (!PyTuple_Check(raw) || PyTuple_GET_SIZE(raw) != 4 || !PyList_Check(PyTuple_GET_ITEM(raw, 3))
        || !PyBytes_Check(wire) || !PyList_Check(types))
        Py_RETURN_NONE;
    PyObject *queries = PyTuple_GET_ITEM(raw, 3);
    Py_ssize_t nq = PyList_GET_SIZE(queries);
    const char *w = PyBytes_AS_STRING(wire);
    Py_ssize_t wl = PyBytes_GET_SIZE(wire);

    /* First pass, reads only: is everything usual? */
    for (Py_ssize_t i = 0; i < nq; i++) {
        PyObject *q = PyList_GET_ITEM(queries, i);
        if (!PyTuple_Check(q) || PyTuple_GET_SIZE(q) != 8 || !PyLong_Check(PyTuple_GET_ITEM(q, 0))
            || PyTuple_GET_ITEM(q, 4) != Py_None || !PyList_Check(PyTuple_GET_ITEM(q, 6))
            || PyList_GET_SIZE(PyTuple_GET_ITEM(q, 6)) == 0)
            Py_RETURN_NONE;  /* not sent, or no reply: the general rules */
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(q, 0));
        if (index < 0 || index >= PyList_GET_SIZE(types)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        PyObject *type = PyList_GET_ITEM(types, index);
        if (!PyTuple_Check(type) || PyTuple_GET_SIZE(type) != 3 || !PyBytes_Check(PyTuple_GET_ITEM(type, 2))
            || !PyUnicode_Check(PyTuple_GET_ITEM(type, 0)))
            Py_RETURN_NONE;
        PyObject *tail = PyTuple_GET_ITEM(type, 2), *datagrams = PyTuple_GET_ITEM(q, 6);
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(datagrams); k++) {
            PyObject *g = PyList_GET_ITEM(datagrams, k);
            Shape s;
            if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 4 || !PyBytes_Check(PyTuple_GET_ITEM(g, 0))
                || !usual_shape((const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(g, 0)),
                                PyBytes_GET_SIZE(PyTuple_GET_ITEM(g, 0)), w, wl, PyBytes_AS_STRING(tail),
                                PyBytes_GET_SIZE(tail), &s))
                Py_RETURN_NONE;
            if (k == 0) {  /* the first reply decides the outcome: ours, NOERROR, the asked type first */
                int differs = id_differs(PyTuple_GET_ITEM(q, 1), s.id);
                if (differs < 0) {
                    PyErr_Clear();
                    Py_RETURN_NONE;
                }
                if (differs || (s.flags & 0x000F) || s.an == 0)
                    Py_RETURN_NONE;
                const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(g, 0));
                unsigned rtype = u16(d + s.answers_at + 2);
                int eq = PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(type, 0), rtype == 1 ? "A" : "AAAA");
                if (eq != 0)
                    Py_RETURN_NONE;
            }
        }
    }

    /* Second pass: the observation dicts, keys in the order of measure.dns_bulk.decode. */
    PyObject *observations = PyList_New(nq);
    if (observations == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nq; i++) {
        PyObject *q = PyList_GET_ITEM(queries, i);
        PyObject *type = PyList_GET_ITEM(types, PyLong_AsSsize_t(PyTuple_GET_ITEM(q, 0)));
        PyObject *tail = PyTuple_GET_ITEM(type, 2), *datagrams = PyTuple_GET_ITEM(q, 6);
        PyObject *qid = PyTuple_GET_ITEM(q, 1);
        Py_ssize_t nd = PyList_GET_SIZE(datagrams);
        PyObject *responses = PyList_New(nd), *obs = NULL, *addresses = NULL;
        if (responses == NULL)
            goto fail;
        for (Py_ssize_t k = 0; k < nd; k++) {
            PyObject *g = PyList_GET_ITEM(datagrams, k), *data = PyTuple_GET_ITEM(g, 0);
            const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
            Shape s;
            usual_shape(d, PyBytes_GET_SIZE(data), w, wl, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail), &s);
            int differs = id_differs(qid, s.id);
            PyObject *rec = differs < 0 ? NULL
                : build_record(d, PyBytes_GET_SIZE(data), &s, name, differs, PyTuple_GET_ITEM(g, 1),
                               PyTuple_GET_ITEM(g, 2), PyTuple_GET_ITEM(g, 3));
            if (rec == NULL) {
                Py_DECREF(responses);
                goto fail;
            }
            PyList_SET_ITEM(responses, k, rec);
        }
        /* the outcome: the first reply's addresses (a copy, as list(first["addresses"])) */
        addresses = PySequence_List(PyDict_GetItem(PyList_GET_ITEM(responses, 0), k_addresses));
        obs = _PyDict_NewPresized(16);
        if (addresses == NULL || obs == NULL || set_steal(obs, k_id, PyLong_FromSsize_t(i + 1))
            || PyDict_SetItem(obs, k_operation, v_dns_query) || PyDict_SetItem(obs, k_parent_id, Py_None)
            || set_steal(obs, k_t0, round6(PyTuple_GET_ITEM(q, 2)))
            || set_steal(obs, k_t, round6(PyTuple_GET_ITEM(q, 3))) || PyDict_SetItem(obs, k_failure, Py_None)
            || PyDict_SetItem(obs, k_query_name, name) || PyDict_SetItem(obs, k_query_type, PyTuple_GET_ITEM(type, 0))
            || PyDict_SetItem(obs, k_transport, v_udp) || PyDict_SetItem(obs, k_resolver, resolver)
            || PyDict_SetItem(obs, k_query_id, qid) || PyDict_SetItem(obs, k_hold_window, hold)
            || PyDict_SetItem(obs, k_responses, responses) || PyDict_SetItem(obs, k_addresses, addresses)
            || PyDict_SetItem(obs, k_icmp_errors, PyTuple_GET_ITEM(q, 7))
            || PyDict_SetItem(obs, k_failed_step, PyTuple_GET_ITEM(q, 5))) {
            Py_DECREF(responses);
            Py_XDECREF(addresses);
            Py_XDECREF(obs);
            goto fail;
        }
        Py_DECREF(responses);
        Py_DECREF(addresses);
        PyList_SET_ITEM(observations, i, obs);
    }
    return Py_BuildValue("(ONOO)", name, observations, PyTuple_GET_ITEM(raw, 1), PyTuple_GET_ITEM(raw, 2));
fail:
    Py_DECREF(observations);  /* unset items are NULL: list_dealloc skips them */
    return NULL;
}

/* wire_name(name) -> bytes | None: probes/wire/dnsbulk.py's wire_name (the same bytes, None in the
 * same cases): an ASCII name's labels, each 1..63 bytes, as length-prefixed labels and the root. */
static PyObject *wire_name(PyObject *self, PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "wire_name takes a str");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(arg)) {  /* the Python version raises UnicodeEncodeError; callers check first */
        PyErr_SetString(PyExc_ValueError, "wire_name takes an ASCII name");
        return NULL;
    }
    const char *p = (const char *)PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    if (n > 253)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n + 2);  /* one length byte per label, dots replaced */
    if (out == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(out);
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '.')
            continue;
        Py_ssize_t len = i - start;  /* the label p[start:i] */
        if (len == 0 || len > 63) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        o[start] = (char)len;
        memcpy(o + start + 1, p + start, (size_t)len);
        start = i + 1;
    }
    o[n + 1] = 0;
    return out;
}

static PyMethodDef methods[] = {
    {"echo_record", (PyCFunction)(void (*)(void))echo_record, METH_FASTCALL,
     "echo_record(data, question, qname, qid, t, source, ip_ttl) -> dict | None\n\n"
     "The C version of censorscope.probes.wire.dnsbulk.echo_record (same results)."},
    {"decode_usual", (PyCFunction)(void (*)(void))decode_usual, METH_FASTCALL,
     "decode_usual(raw, name, wire, types, resolver, hold_window) -> tuple | None\n\n"
     "censorscope.measure.dns_bulk.decode for a name whose replies are all usual; None otherwise."},
    {"round6", round6_py, METH_O, "round6(t) -> round(t, 6) (the same value; a fast path for floats)."},
    {"wire_name", wire_name, METH_O,
     "wire_name(name) -> bytes | None\n\nThe C version of censorscope.probes.wire.dnsbulk.wire_name."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dnsbulk_c",
                                    "C fast path of censorscope.probes.wire.dnsbulk (see the C source).", -1,
                                    methods};

static int intern(PyObject **slot, const char *text) {
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__dnsbulk_c(void) {
    static const char *rcodes[11] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
                                     "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"};
    static const char *flags[7] = {"QR", "AA", "TC", "RD", "RA", "AD", "CD"};
    if (intern(&k_t, "t") || intern(&k_source, "source") || intern(&k_query_id, "query_id")
        || intern(&k_rcode, "rcode") || intern(&k_flags, "flags") || intern(&k_ip_ttl, "ip_ttl")
        || intern(&k_answers, "answers") || intern(&k_addresses, "addresses") || intern(&k_size, "size")
        || intern(&k_id_mismatch, "id_mismatch") || intern(&k_question_mismatch, "question_mismatch")
        || intern(&k_parse_error, "parse_error") || intern(&k_raw_b64, "raw_b64") || intern(&k_name, "name")
        || intern(&k_type, "type") || intern(&k_ttl, "ttl") || intern(&k_data, "data") || intern(&v_A, "A")
        || intern(&v_AAAA, "AAAA") || intern(&k_id, "id") || intern(&k_operation, "operation")
        || intern(&k_parent_id, "parent_id") || intern(&k_t0, "t0") || intern(&k_failure, "failure")
        || intern(&k_query_name, "query_name") || intern(&k_query_type, "query_type")
        || intern(&k_transport, "transport") || intern(&k_resolver, "resolver")
        || intern(&k_hold_window, "hold_window") || intern(&k_responses, "responses")
        || intern(&k_icmp_errors, "icmp_errors") || intern(&k_failed_step, "failed_step")
        || intern(&v_dns_query, "dns_query") || intern(&v_udp, "udp"))
        return NULL;
    for (int i = 0; i < 16; i++) {
        rcode_text[i] = i < 11 ? PyUnicode_InternFromString(rcodes[i]) : PyUnicode_FromFormat("%d", i);
        if (rcode_text[i] == NULL)
            return NULL;
    }
    for (int i = 0; i < 7; i++)
        if (intern(&flag_text[i], flags[i]))
            return NULL;
    PyObject *builtins = PyImport_ImportModule("builtins");
    if (builtins == NULL)
        return NULL;
    py_round = PyObject_GetAttrString(builtins, "round");
    Py_DECREF(builtins);
    six = PyLong_FromLong(6);
    if (py_round == NULL || six == NULL)
        return NULL;
    return PyModule_Create(&module);
}
