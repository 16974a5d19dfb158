"""Shortcuts for the bulk DNS engine: the same bytes and records as the general code, with less work.

``measure.dns_bulk`` handles tens of thousands of queries per second in one
Python thread, so every microsecond per query counts (PERF-NOTES.md). Two
steps dominate and have a common case worth a dedicated path:

- ``wire_name``: a plain ASCII hostname in wire form, exactly
  ``dnswire.encode_name``'s bytes (one ``split`` and one ``join``); None
  when ``encode_name`` would reject the name, so the caller takes the
  general path and reports the reason.
- ``echo_record``: the stored record of the usual response (our question
  echoed byte for byte, answers that are A/AAAA records owned by the
  question name through the usual compression pointer, authority and
  additional records well formed, no extended rcode), exactly the dict
  ``probes.dns.response_record`` returns for it; None for anything else,
  so the caller uses ``response_record`` (which falls back to dnspython
  for the unusual). Tests check both agree on real server responses and
  on mutated ones.

``echo_record`` and ``wire_name`` are the C versions (``_dnsbulk_c.c``, same
results, ~5x faster) when the extension is built and ``CENSORSCOPE_NO_CEXT``
is not set to ``1``; ``py_echo_record`` and ``py_wire_name`` are the
pure-Python references they are tested against, and the fallbacks.
``decode_usual`` (C only, else None) decodes a whole finished name of the
bulk engine when all its replies are usual. ``HAVE_CEXT`` says which is in use.

Sans-IO: bytes in, values out.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from censorscope.probes.cext import optional
from censorscope.probes.wire.dnswire import RCODES, flags_text, usual_rr_head

__all__ = ["HAVE_CEXT", "decode_usual", "echo_record", "py_echo_record", "py_wire_name", "wire_name"]

_LENGTH = [None] + [bytes([n]) for n in range(1, 64)]  # index 0 (an empty label) is invalid
_HEADER = struct.Struct("!6H")
_PTR_RRHEAD = struct.Struct("!HHHIH")  # compression pointer + RR header
_QUESTION_POINTER = 0xC00C  # a pointer to offset 12: the question name
_ntoa = socket.inet_ntoa
_ntop = socket.inet_ntop
_AF_INET6 = socket.AF_INET6
_RCODE_TEXT = [RCODES.get(i, str(i)) for i in range(16)]


def wire_name(name: str) -> bytes | None:
    """``dnswire.encode_name(name)`` for an ASCII name without a final dot; None where it would raise.

    (The root ``"."`` and names with a final dot also give None: the general path handles them.)
    """
    raw = name.encode("ascii")
    if len(raw) > 253:
        return None
    try:
        return b"".join([_LENGTH[len(label)] + label for label in raw.split(b".")]) + b"\x00"
    except (IndexError, TypeError):  # a label over 63 bytes, or an empty one
        return None


def py_echo_record(
    data: bytes, question: bytes, qname: str, qid: int, t: float, source: str, ip_ttl: int | None
) -> dict[str, Any] | None:
    """``response_record(data, t, source, ip_ttl, qid, qname, <type>, question)`` for the usual response.

    ``question`` is the question section we sent (``dnswire.question_bytes``),
    ``qname`` its name as text. None when the response is not the usual kind.
    """
    if not data.startswith(question, 12):
        return None
    msg_id, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0x7800 or qd != 1:  # opcode other than QUERY, or not exactly one question
        return None
    n = len(data)
    off = 12 + len(question)
    if an == 1 and off + 16 <= n:  # the most common answer: one A record, read with one unpack
        ptr, rtype, rclass, ttl, rdlen = _PTR_RRHEAD.unpack_from(data, off)
        if ptr != _QUESTION_POINTER or rtype != 1 or rclass != 1 or rdlen != 4:
            return _general(data, question, qname, qid, t, source, ip_ttl)
        text = _ntoa(data[off + 12:off + 16])
        answers = [{"name": qname, "type": "A", "ttl": ttl, "data": text}]
        addresses = [text]
        off += 16
    elif an:
        return _general(data, question, qname, qid, t, source, ip_ttl)
    else:
        answers, addresses = [], []
    if ns + ar and not _rest_ok_memo(data, off, ns + ar, n):
        return None
    flag_names = _FLAGS.get(flags)
    return {
        "t": round(t, 6), "source": source, "query_id": msg_id, "rcode": _RCODE_TEXT[flags & 0x000F],
        "flags": list(flag_names) if flag_names is not None else flags_text(flags), "ip_ttl": ip_ttl,
        "answers": answers, "addresses": addresses, "size": n, "id_mismatch": msg_id != qid,
        "question_mismatch": False, "parse_error": None, "raw_b64": None,
    }


_FLAGS: dict[int, tuple[str, ...]] = {f: tuple(flags_text(f)) for f in range(0x10000) if not f & 0x7800 and
                                      f == f & 0x87BF}


def _rest_ok(data: bytes, off: int, count: int, n: int) -> bool:
    """Authority and additional records well formed (as ``dnswire`` checks them), no extended rcode."""
    for _ in range(count):
        head = usual_rr_head(data, off, n)  # any other owner takes the general path
        if head is None:
            return False
        rtype, ttl, rdlen, off = head
        if rtype == 41 and ttl >> 24:  # an OPT record carrying an extended rcode
            return False
        off += rdlen
        if off > n:
            return False
    return True


#: Short tails of one record (almost always the server's OPT record, the same bytes in every response) that
#: ``_rest_ok`` accepted: its verdict depends only on those bytes, so a repeat skips the check.
_GOOD_TAILS: set[bytes] = set()


def _rest_ok_memo(data: bytes, off: int, count: int, n: int) -> bool:
    """``_rest_ok(data, off, count, n)``, remembered for one-record tails of up to 64 bytes."""
    if count != 1 or n - off > 64:
        return _rest_ok(data, off, count, n)
    tail = data[off:]
    if tail in _GOOD_TAILS:
        return True
    if not _rest_ok(tail, 0, 1, len(tail)):
        return False
    if len(_GOOD_TAILS) >= 256:  # varied tails (EDNS options, cookies) must not grow it without bound
        _GOOD_TAILS.clear()
    _GOOD_TAILS.add(tail)
    return True


def _general(
    data: bytes, question: bytes, qname: str, qid: int, t: float, source: str, ip_ttl: int | None
) -> dict[str, Any] | None:
    """``echo_record`` for any number of A/AAAA answers owned by the question name."""
    msg_id, flags, _qd, an, ns, ar = _HEADER.unpack_from(data)
    n = len(data)
    off = 12 + len(question)
    answers: list[dict[str, Any]] = []
    addresses: list[str] = []
    for _ in range(an):
        if off + 12 > n:
            return None
        ptr, rtype, rclass, ttl, rdlen = _PTR_RRHEAD.unpack_from(data, off)
        off += 12
        end = off + rdlen
        if ptr != _QUESTION_POINTER or rclass != 1 or end > n:
            return None
        if rtype == 1 and rdlen == 4:
            text = _ntoa(data[off:end])
            answers.append({"name": qname, "type": "A", "ttl": ttl, "data": text})
        elif rtype == 28 and rdlen == 16:
            text = _ntop(_AF_INET6, data[off:end])
            answers.append({"name": qname, "type": "AAAA", "ttl": ttl, "data": text})
        else:
            return None
        addresses.append(text)
        off = end
    if ns + ar and not _rest_ok_memo(data, off, ns + ar, n):
        return None
    return {
        "t": round(t, 6), "source": source, "query_id": msg_id, "rcode": _RCODE_TEXT[flags & 0x000F],
        "flags": flags_text(flags), "ip_ttl": ip_ttl, "answers": answers, "addresses": addresses,
        "size": n, "id_mismatch": msg_id != qid, "question_mismatch": False, "parse_error": None,
        "raw_b64": None,
    }


def _c_module() -> Any:
    """The C module, or None when it is not built or ``CENSORSCOPE_NO_CEXT=1`` asks for Python."""
    return optional("censorscope.probes.wire._dnsbulk_c")


_C = _c_module()
HAVE_CEXT = _C is not None
py_wire_name = wire_name
echo_record = _C.echo_record if _C is not None else py_echo_record
wire_name = _C.wire_name if _C is not None else py_wire_name  # noqa: F811 (the C version of the above)
#: ``measure.dns_bulk.decode`` for a finished name whose replies are all usual (None: not usual), in C;
#: None without the C module (see ``measure.dns_bulk.decode``).
decode_usual = _C.decode_usual if _C is not None else None
