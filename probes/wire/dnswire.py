"""DNS messages on the wire, sans-IO: build queries and parse responses by hand.

Why by hand: ``dns.message.make_query().to_wire()`` costs ~76 µs and
``dns.message.from_wire`` ~82 µs for a one-answer reply on this kind of
machine (PERF-NOTES.md), which caps a bulk DNS campaign at a few thousand
queries per second. The common replies (one question; A, AAAA and CNAME
answers; any authority/additional records, which are skipped) are parsed here
in a few microseconds; anything unusual (other answer types, other opcodes or
classes, extended rcodes, odd label bytes) falls back to dnspython, so
correctness never depends on the fast path.

Errors: ``parse`` raises only ``ParseError`` (a ``ValueError``), whatever
bytes it is given; ``build_query`` raises ``ValueError`` for a name that
cannot be encoded.

Names are text without the final dot (the root is ``"."``), case preserved
(case matters when looking for 0x20 randomisation being echoed or not).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = [
    "Message", "ParseError", "build_query", "build_query_fast", "encode_name", "flags_text", "parse", "parse_echo",
    "qtype_code", "qtype_text", "question_bytes", "rcode_code", "rcode_text",
]

QTYPES: dict[str, int] = {
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33,
    "SVCB": 64, "HTTPS": 65, "ANY": 255,
}
_QTYPE_NAMES = {v: k for k, v in QTYPES.items()}

RCODES: dict[int, str] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS",
}
_RCODE_NUMBERS = {v: k for k, v in RCODES.items()}

# Header flag bits in the order dig prints them.
_FLAG_BITS = (("QR", 0x8000), ("AA", 0x0400), ("TC", 0x0200), ("RD", 0x0100), ("RA", 0x0080),
              ("AD", 0x0020), ("CD", 0x0010))

#: EDNS(0) UDP payload size we advertise (the DNS flag day 2020 value, avoids fragmentation).
EDNS_PAYLOAD = 1232

_ntoa = socket.inet_ntoa
_HEADER = struct.Struct("!6H")
_QTAIL = struct.Struct("!HH")
_RRHEAD = struct.Struct("!HHIH")
_PTR_RRHEAD = struct.Struct("!HHHIH")  # compression pointer + RR header
# Bytes allowed in a label on the fast path; anything else needs dnspython's escaping.
_SAFE = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*"
_SAFE_DOT = _SAFE + b"."
_OPT_EDNS = b"\x00\x00\x29" + EDNS_PAYLOAD.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00"


class ParseError(ValueError):
    """The bytes are not a DNS message we can read (the only error ``parse`` raises)."""


class Message:
    """A parsed DNS message: header, first question, answer section.

    ``answers`` is a list of ``{name, type, ttl, data}`` dicts (text; the
    stored form, built once here because the bulk engine stores millions).

    ``qname``/``qtype`` are None when the message carries no question.
    ``parser`` says which path read it (``"fast"`` or ``"dnspython"``).
    """

    __slots__ = ("id", "flags", "rcode", "qname", "qtype", "answers", "size", "parser")

    def __init__(
        self, id: int, flags: int, rcode: int, qname: str | None, qtype: int | None,
        answers: list[dict[str, Any]], size: int, parser: str,
    ) -> None:
        self.id = id
        self.flags = flags
        self.rcode = rcode
        self.qname = qname
        self.qtype = qtype
        self.answers = answers
        self.size = size
        self.parser = parser


# --- small vocabularies ------------------------------------------------------

def qtype_code(qtype: str) -> int:
    """``"AAAA"`` -> 28; any type dnspython knows (or ``TYPE123``) is accepted."""
    code = QTYPES.get(qtype.upper())
    if code is not None:
        return code
    import dns.rdatatype

    try:
        return int(dns.rdatatype.from_text(qtype))
    except Exception:
        raise ValueError(f"unknown DNS type {qtype!r}") from None


def qtype_text(code: int) -> str:
    """28 -> ``"AAAA"``; unknown codes as ``TYPE<n>`` (RFC 3597)."""
    name = _QTYPE_NAMES.get(code)
    if name is not None:
        return name
    import dns.rdatatype

    return dns.rdatatype.to_text(code)


def rcode_text(rcode: int) -> str:
    """3 -> ``"NXDOMAIN"``; unknown codes as their number."""
    return RCODES.get(rcode, str(rcode))


def rcode_code(text: str) -> int:
    """Inverse of ``rcode_text``."""
    if text in _RCODE_NUMBERS:
        return _RCODE_NUMBERS[text]
    return int(text)


_FLAGS_CACHE: dict[int, tuple[str, ...]] = {}


def flags_text(flags: int) -> list[str]:
    """Header flags as text, e.g. ``["QR", "RD", "RA"]`` (a new list each call)."""
    flags &= 0x87B0
    cached = _FLAGS_CACHE.get(flags)
    if cached is None:
        cached = _FLAGS_CACHE[flags] = tuple(name for name, bit in _FLAG_BITS if flags & bit)
    return list(cached)


# --- building -------------------------------------------------------------------

def encode_name(name: str) -> bytes:
    """A hostname (ASCII, punycode already applied) in wire form.

    Raises ``ValueError`` for empty labels, labels over 63 bytes, names over
    255 bytes or non-ASCII text.
    """
    if name in ("", "."):
        return b"\x00"
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"name {name!r} is not ASCII (apply IDNA first)") from None
    if raw.endswith(b"."):
        raw = raw[:-1]
    if len(raw) > 253:  # the wire form adds 2 bytes: the first length byte and the root
        raise ValueError(f"name {name!r} is longer than 255 bytes")
    # Length byte + label, joined once: the bulk engine encodes every name of a campaign.
    parts = []
    for label in raw.split(b"."):
        n = len(label)
        if n == 0 or n > 63:
            raise ValueError(f"bad label length {n} in {name!r}")
        parts.append(_LENGTH_BYTE[n])
        parts.append(label)
    parts.append(b"\x00")
    return b"".join(parts)


_LENGTH_BYTE = [bytes([n]) for n in range(64)]


def build_query(name: str, qtype: str | int, qid: int, *, rd: bool = True, edns: bool = True) -> bytes:
    """One query for ``name``/``qtype`` with id ``qid`` (RD set, EDNS(0) unless told not to)."""
    code = qtype if isinstance(qtype, int) else qtype_code(qtype)
    header = _HEADER.pack(qid & 0xFFFF, 0x0100 if rd else 0, 1, 0, 0, 1 if edns else 0)
    body = encode_name(name) + _QTAIL.pack(code, 1)
    return header + body + _OPT_EDNS if edns else header + body


_HEADER_TAIL = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"  # RD, QD=1, AR=1 (the OPT record)


def question_bytes(name_wire: bytes, qtype: int) -> bytes:
    """The question section for an encoded name (``encode_name``) and a type code."""
    return name_wire + _QTAIL.pack(qtype, 1)


def build_query_fast(qid: int, question: bytes) -> bytes:
    """``build_query(name, qtype, qid)`` for a prepared ``question_bytes`` (bulk sending: ~0.3 µs)."""
    return qid.to_bytes(2, "big") + _HEADER_TAIL + question + _OPT_EDNS


# --- parsing -----------------------------------------------------------------------

class _Unusual(Exception):
    """Internal: the fast path declines; dnspython decides."""


def _read_name(data: bytes, off: int, seen: dict[int, str]) -> tuple[str, int]:
    """Read a (possibly compressed) name at ``off``; return it and the offset after it.

    ``seen`` caches names already read in this message by their offset, so the
    usual answer name (a pointer to the question) costs one dict look-up.
    Pointers must point strictly backwards, which bounds the walk (no loops).
    """
    n = len(data)
    if off + 1 < n and data[off] >= 0xC0:
        ptr = ((data[off] & 0x3F) << 8) | data[off + 1]
        if ptr in seen and ptr < off:
            return seen[ptr], off + 2
    start = off
    labels: list[bytes] = []
    end = -1
    total = 0
    limit = off
    while True:
        if off >= n:
            raise _Unusual
        length = data[off]
        if length == 0:
            off += 1
            break
        if length >= 0xC0:
            if off + 1 >= n:
                raise _Unusual
            ptr = ((length & 0x3F) << 8) | data[off + 1]
            if end < 0:
                end = off + 2
            if ptr >= limit:
                raise _Unusual
            off = limit = ptr
            continue
        if length > 63:
            raise _Unusual
        label = data[off + 1:off + 1 + length]
        if len(label) != length:
            raise _Unusual
        total += length + 1
        if total > 254:
            raise _Unusual
        labels.append(label)
        off += 1 + length
    if end < 0:
        end = off
    if not labels:
        name = "."
    else:
        raw = b".".join(labels)
        if raw.translate(None, _SAFE_DOT):
            raise _Unusual  # needs escaping: let dnspython render it
        name = raw.decode("ascii")
    seen[start] = name
    return name, end


def _skip_name(data: bytes, off: int) -> int:
    n = len(data)
    while True:
        if off >= n:
            raise _Unusual
        length = data[off]
        if length == 0:
            return off + 1
        if length >= 0xC0:
            return off + 2
        if length > 63:
            raise _Unusual
        off += 1 + length


def _fast(data: bytes, expect: tuple[bytes, str, int] | None) -> Message:
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0x7800 or qd != 1:  # opcode != QUERY, or not exactly one question
        raise _Unusual
    if expect is not None and data.startswith(expect[0], 12):
        # The question echoes ours byte for byte: no need to decode it.
        qname, qtype = expect[1], expect[2]
        seen = {12: qname}
        off = 12 + len(expect[0])
    else:
        seen = {}
        qname, off = _read_name(data, 12, seen)
        if off + 4 > len(data):
            raise _Unusual
        qtype, qclass = _QTAIL.unpack_from(data, off)
        if qclass != 1:
            raise _Unusual
        off += 4
    answers = _records(data, off, an, ns + ar, seen)
    return Message(qid, flags, flags & 0x000F, qname, qtype, answers, len(data), "fast")


def _records(data: bytes, off: int, an: int, rest: int, seen: dict[int, str]) -> list[dict[str, Any]]:
    """The ``an`` answers starting at ``off`` (A, AAAA, CNAME only); then check the ``rest`` records are
    well-formed (skipped: authority and additional) and that no OPT carries an extended rcode."""
    n = len(data)
    answers: list[dict[str, Any]] = []
    for _ in range(an):
        if off + 12 <= n and data[off] >= 0xC0:
            # The usual owner: a pointer to a name already read; one unpack for it and the RR header.
            ptr, rtype, rclass, ttl, rdlen = _PTR_RRHEAD.unpack_from(data, off)
            ptr &= 0x3FFF
            rname = seen.get(ptr) if ptr < off else None
            if rname is None:
                rname, _after = _read_name(data, off, seen)  # raises on a forward pointer
            off += 12
        else:
            rname, off = _read_name(data, off, seen)
            if off + 10 > n:
                raise _Unusual
            rtype, rclass, ttl, rdlen = _RRHEAD.unpack_from(data, off)
            off += 10
        end = off + rdlen
        if end > n or rclass != 1:
            raise _Unusual
        if rtype == 1 and rdlen == 4:
            answers.append({"name": rname, "type": "A", "ttl": ttl, "data": _ntoa(data[off:end])})
        elif rtype == 28 and rdlen == 16:
            text = socket.inet_ntop(socket.AF_INET6, data[off:end])
            answers.append({"name": rname, "type": "AAAA", "ttl": ttl, "data": text})
        elif rtype == 5:
            target, after = _read_name(data, off, seen)
            if after != end:
                raise _Unusual
            answers.append({"name": rname, "type": "CNAME", "ttl": ttl, "data": target})
        else:
            raise _Unusual
        off = end
    for _ in range(rest):
        head = usual_rr_head(data, off, n)
        if head is not None:
            rtype, ttl, rdlen, off = head
        else:
            off = _skip_name(data, off)
            if off + 10 > n:
                raise _Unusual
            rtype, _rclass, ttl, rdlen = _RRHEAD.unpack_from(data, off)
            off += 10
        if rtype == 41 and ttl >> 24:  # OPT carrying an extended rcode
            raise _Unusual
        off += rdlen
        if off > n:
            raise _Unusual
    return answers


def usual_rr_head(data: bytes, off: int, n: int) -> tuple[int, int, int, int] | None:
    """``(rtype, ttl, rdlength, offset of the rdata)`` of the record at ``off`` when its owner is one of
    the usual ones of authority/additional records, the root (OPT) or a compression pointer (read with one
    unpack each); None for any other owner or a header that does not fit in ``n`` bytes."""
    if off + 11 <= n and data[off] == 0:
        rtype, _rclass, ttl, rdlen = _RRHEAD.unpack_from(data, off + 1)
        return rtype, ttl, rdlen, off + 11
    if off + 12 <= n and data[off] >= 0xC0:
        _ptr, rtype, _rclass, ttl, rdlen = _PTR_RRHEAD.unpack_from(data, off)
        return rtype, ttl, rdlen, off + 12
    return None


def parse_echo(data: bytes, question: bytes, qname: str) -> tuple[int, int, list[dict[str, Any]]] | None:
    """The usual response to our query, read with the least work: ``(id, flags, answers)`` or None.

    Applies when the response's question section is ``question`` (the
    ``question_bytes`` we sent, name ``qname``) byte for byte; the values are
    exactly what ``parse(data, (question, qname, qtype))`` gives (``rcode`` is
    ``flags & 0xF``; ``qname``/``qtype`` are ours). Returns None whenever
    ``parse`` would do more (another question, opcode, answer type, an
    extended rcode, malformed bytes): the caller then uses ``parse``.

    Why a separate entry point: the bulk engine reads tens of thousands of
    responses per second, and skipping the ``Message`` object, the hint
    tuple and the exception-based fallback saves about a third of the cost.
    """
    if len(data) < 12 or not data.startswith(question, 12):
        return None
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0x7800 or qd != 1:
        return None
    try:
        return qid, flags, _records(data, 12 + len(question), an, ns + ar, {12: qname})
    except _Unusual:
        return None


def _name_text(name: object) -> str:
    return name.to_text(omit_final_dot=True)  # type: ignore[attr-defined]


def _slow(data: bytes) -> Message:
    import dns.message
    import dns.rdatatype

    try:
        msg = dns.message.from_wire(data, ignore_trailing=True, one_rr_per_rrset=True)
        qname = qtype = None
        if msg.question:
            q = msg.question[0]
            qname, qtype = _name_text(q.name), int(q.rdtype)
        answers = []
        for rrset in msg.answer:
            tname = dns.rdatatype.to_text(rrset.rdtype)
            for rd in rrset:
                if rrset.rdtype in (1, 28):
                    text = rd.address
                elif rrset.rdtype == 5:
                    text = _name_text(rd.target)
                else:
                    text = rd.to_text()
                answers.append({"name": _name_text(rrset.name), "type": tname, "ttl": int(rrset.ttl), "data": text})
        return Message(msg.id, int(msg.flags), int(msg.rcode()), qname, qtype, answers, len(data), "dnspython")
    except Exception as e:  # dnspython raises many types on garbage; we promise one
        raise ParseError(f"{type(e).__name__}: {e}") from e


def parse(data: bytes, expect: tuple[bytes, str, int] | None = None) -> Message:
    """Parse one DNS message (fast path, else dnspython). Raises only ``ParseError``.

    ``expect`` = (``question_bytes`` we sent, its name as text, its type code)
    is an optional hint: when the response's question section is exactly
    those bytes, the name is not decoded again.
    """
    if len(data) < 12:
        raise ParseError(f"message too short ({len(data)} bytes)")
    try:
        return _fast(data, expect)
    except _Unusual:
        return _slow(data)
