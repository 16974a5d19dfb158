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
#include <stdint.h>
#include <string.h>

/* Interned strings, created once at import. */
static PyObject *k_t, *k_source, *k_query_id, *k_rcode, *k_flags, *k_ip_ttl, *k_answers, *k_addresses,
    *k_size, *k_id_mismatch, *k_question_mismatch, *k_parse_error, *k_raw_b64, *k_name, *k_type, *k_ttl,
    *k_data, *v_A, *v_AAAA;
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

/* round(t, 6) through builtins.round, so the value is Python's to the last bit (and an int stays an int). */
static PyObject *round6(PyObject *t) {
    PyObject *args[2] = {t, six};
    return PyObject_Vectorcall(py_round, args, 2, NULL);
}

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

static PyObject *echo_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "echo_record takes 7 arguments");
        return NULL;
    }
    PyObject *data = args[0], *question = args[1], *qname = args[2], *qid_obj = args[3], *t = args[4],
             *source = args[5], *ip_ttl = args[6];
    if (!PyBytes_Check(data) || !PyBytes_Check(question)) {
        PyErr_SetString(PyExc_TypeError, "data and question must be bytes");
        return NULL;
    }
    int overflow;
    long qid = PyLong_AsLongAndOverflow(qid_obj, &overflow); /* our id: any int compares (overflow: unequal) */
    if (qid == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    const Py_ssize_t n = PyBytes_GET_SIZE(data);
    const Py_ssize_t qlen = PyBytes_GET_SIZE(question);

    /* Our question echoed byte for byte at offset 12 (this also proves n >= 12 + qlen >= 12). */
    if (n < 12 + qlen || memcmp(d + 12, PyBytes_AS_STRING(question), (size_t)qlen) != 0)
        Py_RETURN_NONE;
    unsigned msg_id = u16(d), flags = u16(d + 2), qd = u16(d + 4), an = u16(d + 6), ns = u16(d + 8),
             ar = u16(d + 10);
    if ((flags & 0x7800) || qd != 1) /* opcode other than QUERY, or not exactly one question */
        Py_RETURN_NONE;

    /* First pass, no allocation: is every answer usual? (So "not usual" costs no Python objects.) */
    Py_ssize_t off = 12 + qlen;
    for (unsigned i = 0; i < an; i++) {
        if (off + 12 > n)
            Py_RETURN_NONE;
        unsigned ptr = u16(d + off), rtype = u16(d + off + 2), rclass = u16(d + off + 4),
                 rdlen = u16(d + off + 10);
        if (ptr != 0xC00C || rclass != 1 || off + 12 + rdlen > n)
            Py_RETURN_NONE;
        if (!((rtype == 1 && rdlen == 4) || (rtype == 28 && rdlen == 16)))
            Py_RETURN_NONE;
        off += 12 + rdlen;
    }
    if (ns + ar && !rest_ok(d, n, off, ns + ar))
        Py_RETURN_NONE;

    /* Second pass: build the values (every bound was checked above). */
    PyObject *answers = PyList_New(an), *addresses = PyList_New(an), *rec = NULL;
    if (answers == NULL || addresses == NULL)
        goto fail;
    off = 12 + qlen;
    for (unsigned i = 0; i < an; i++) {
        unsigned rtype = u16(d + off + 2), rdlen = u16(d + off + 10);
        uint32_t ttl = u32(d + off + 6);
        char text[INET6_ADDRSTRLEN];
        if (rtype == 1)
            ipv4_text(d + off + 12, text);
        else if (inet_ntop(AF_INET6, d + off + 12, text, sizeof text) == NULL) { /* as socket.inet_ntop */
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        PyObject *s = PyUnicode_FromString(text);
        if (s == NULL)
            goto fail;
        PyList_SET_ITEM(addresses, i, s); /* steals s */
        PyObject *a = answer(qname, rtype == 1 ? v_A : v_AAAA, ttl, s);
        if (a == NULL)
            goto fail;
        PyList_SET_ITEM(answers, i, a);
        off += 12 + rdlen;
    }

    PyObject *flag_list = PyList_New(0);
    if (flag_list == NULL)
        goto fail;
    for (int i = 0; i < 7; i++)
        if ((flags & flag_bit[i]) && PyList_Append(flag_list, flag_text[i])) {
            Py_DECREF(flag_list);
            goto fail;
        }

    rec = _PyDict_NewPresized(13);
    if (rec == NULL) {
        Py_DECREF(flag_list);
        goto fail;
    }
    /* Keys in the order of probes.dns.response_record. */
    if (set_steal(rec, k_t, round6(t)) || PyDict_SetItem(rec, k_source, source)
        || set_steal(rec, k_query_id, PyLong_FromUnsignedLong(msg_id))
        || PyDict_SetItem(rec, k_rcode, rcode_text[flags & 0x000F]) || set_steal(rec, k_flags, flag_list)
        || PyDict_SetItem(rec, k_ip_ttl, ip_ttl) || PyDict_SetItem(rec, k_answers, answers)
        || PyDict_SetItem(rec, k_addresses, addresses) || set_steal(rec, k_size, PyLong_FromSsize_t(n))
        || PyDict_SetItem(rec, k_id_mismatch, (overflow || (long)msg_id != qid) ? Py_True : Py_False)
        || PyDict_SetItem(rec, k_question_mismatch, Py_False) || PyDict_SetItem(rec, k_parse_error, Py_None)
        || PyDict_SetItem(rec, k_raw_b64, Py_None))
        goto fail;
    Py_DECREF(answers);
    Py_DECREF(addresses);
    return rec;

fail:
    Py_XDECREF(answers);
    Py_XDECREF(addresses);
    Py_XDECREF(rec);
    return NULL;
}

static PyMethodDef methods[] = {
    {"echo_record", (PyCFunction)(void (*)(void))echo_record, METH_FASTCALL,
     "echo_record(data, question, qname, qid, t, source, ip_ttl) -> dict | None\n\n"
     "The C version of censorscope.probes.wire.dnsbulk.echo_record (same results)."},
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
        || intern(&v_AAAA, "AAAA"))
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
