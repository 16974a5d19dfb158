"""Probe ``dns``: send one DNS query and record everything that comes back.

Transports: ``udp`` (our own receive loop, see below), ``tcp``, ``dot`` (TLS
to port 853 with ALPN ``dot``, trusting ``Net.tls_context``'s anchors) and ``doh`` (RFC 8484
over httpx, a fresh client per query, so no connection is reused across
measurements; a DoH URL that names a host is resolved by httpx through the
system resolver: use a URL with an IP literal to avoid that).

Why UDP has its own receive loop: an on-path injector (the GFW) answers
first and the real resolver's answer arrives later; a stub resolver keeps the
first and drops the rest, hiding the evidence. Here each query gets its own
unconnected socket, and *every* datagram that arrives until ``hold_window``
seconds after the first one is recorded (arrival time, source address and
port, IP TTL, id, rcode, flags, answers with TTLs), including responses with
the wrong id or question (flagged, never dropped) and ICMP errors (read from
the socket's error queue with their sender). ICMP port unreachable becomes
``connection_refused`` only if no DNS response came at all.

Outcome of one ``dns_query`` observation (docs/observations.md): the first
*valid* response (parseable, id and question matching) decides ``failure``
(``failures.classify_rcode``; NOERROR without an answer of the asked type is
``dns_no_answer``) and the top-level ``addresses``; if responses came but
none was valid the failure is ``dns_server_misbehaving``; if nothing came,
``generic_timeout_error`` (or the ICMP error's failure).

``query()`` is the reusable coroutine: the ``web`` probe calls it, and
``censorscope.measure.dns_bulk`` produces the same observation dicts at
campaign scale with the record helpers below.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
import struct
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from censorscope.probes import failures
from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.net import Net, format_host_port, split_host_port
from censorscope.probes.observation import Observation, Recorder
from censorscope.probes.wire import dnswire

NAME = "dns"
VERSION = "0.1.0"
SUMMARY = "Query a resolver (UDP/TCP/DoT/DoH) and record every response, including injected ones."
TARGET_HELP = "NAME"

TRANSPORTS = ("udp", "tcp", "dot", "doh")
QTYPE_CHOICES = ("A", "AAAA", "both")
DEFAULT_PORTS = {"udp": 53, "tcp": 53, "dot": 853}
DOH_CONTENT_TYPE = "application/dns-message"

# Linux socket options and control messages Python's socket module does not name.
_IP_RECVERR = 11
_IP_RECVTTL = 12
_IP_TTL = 2
_IPV6_RECVERR = 25
_IPV6_RECVHOPLIMIT = 49 if not hasattr(socket, "IPV6_RECVHOPLIMIT") else socket.IPV6_RECVHOPLIMIT
_IPV6_HOPLIMIT = 52 if not hasattr(socket, "IPV6_HOPLIMIT") else socket.IPV6_HOPLIMIT
_MSG_ERRQUEUE = 0x2000
_SOL_IP, _SOL_IPV6, _BYTEORDER = socket.IPPROTO_IP, socket.IPPROTO_IPV6, sys.byteorder
_EE = struct.Struct("=IBBBBII")  # struct sock_extended_err
_EE_ORIGIN_ICMP, _EE_ORIGIN_ICMP6 = 2, 3
_RECV_SIZE = 65535
_ADDRESS_TYPES = frozenset(("A", "AAAA"))
_ANC_SIZE = 256


@dataclass
class Options:
    """Command-line options of ``censorscope probe dns``."""

    resolver: str | None = field(default=None, metadata={
        "help": "IP[:PORT] (udp/tcp/dot) or an https:// URL (doh); default: the first nameserver of "
                "/etc/resolv.conf (the vantage's configured resolver), queried with our own UDP loop."})
    transport: str = field(default="udp", metadata={"choices": list(TRANSPORTS), "help": "How to send the query."})
    qtype: str = field(default="A", metadata={
        "choices": list(QTYPE_CHOICES), "help": "Record type to ask for; 'both' sends an A and an AAAA query."})
    hold_window: float = field(default=1.0, metadata={
        "help": "UDP: seconds to keep listening after the first response (injected answers come first)."})
    timeout: float = field(default=5.0, metadata={"help": "Seconds to wait for the first response."})
    doh_method: str = field(default="POST", metadata={
        "choices": ["POST", "GET"], "help": "DoH: RFC 8484 POST (body) or GET (?dns=base64url)."})


# --- targets and resolvers -------------------------------------------------------

def normalize_name(name: str) -> str:
    """A hostname as sent on the wire: IDN to punycode, no final dot; ``InvalidTarget`` if impossible."""
    name = name.strip()
    if name.endswith(".") and name != ".":
        name = name[:-1]
    if not name:
        raise InvalidTarget("empty DNS name")
    if not name.isascii():
        import idna

        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise InvalidTarget(f"cannot encode {name!r} as IDNA: {e}") from None
    try:
        dnswire.encode_name(name)
    except ValueError as e:
        raise InvalidTarget(str(e)) from None
    return name


def target_from_url(url: str) -> str | None:
    """The hostname of a campaign URL (punycode), or None when it has none or is an IP literal."""
    host = urlsplit(url if "//" in url else "//" + url).hostname
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        return normalize_name(host)
    except InvalidTarget:
        return None


def resolver_from_resolv_conf(path: str = "/etc/resolv.conf") -> str | None:
    """The first ``nameserver`` of a resolv.conf (an IP literal), or None when there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            value = parts[1]
            try:
                ipaddress.ip_address(value.split("%")[0])
            except ValueError:
                continue
            return value
    return None


def parse_resolver(resolver: str, transport: str) -> tuple[str, int]:
    """``IP[:PORT]`` -> (ip, port) for udp/tcp/dot; ``ConfigError`` unless the host is an IP literal."""
    if transport not in DEFAULT_PORTS:
        raise ConfigError(f"transport {transport!r} takes a URL, not an address")
    try:
        host, port = split_host_port(resolver, DEFAULT_PORTS[transport])
        ipaddress.ip_address(host.split("%")[0])
    except ValueError as e:
        raise ConfigError(f"resolver must be IP[:PORT], got {resolver!r} ({e})") from None
    return host, port


# --- the stored record of one response (shared with measure.dns_bulk) -------------------

def response_record(
    data: bytes, t: float, source: str, ip_ttl: int | None, qid: int, qname: str, qtype: int,
    question: bytes | None = None,
) -> dict[str, Any]:
    """The stored form of one received datagram/message, flagged if it does not match the query.

    ``question`` (optional) is the question section we sent (``dnswire.question_bytes``):
    a response echoing it byte for byte is parsed without decoding the name again.
    """
    # The usual case first (our question echoed byte for byte): same values, a third of the work.
    echo = dnswire.parse_echo(data, question, qname) if question is not None else None
    if echo is not None:
        msg_id, flags, answers = echo
        rcode, question_mismatch = flags & 0x000F, False
    else:
        try:
            msg = dnswire.parse(data, (question, qname, qtype) if question is not None else None)
        except dnswire.ParseError as e:
            return {
                "t": round(t, 6), "source": source, "query_id": None, "rcode": None, "flags": [], "ip_ttl": ip_ttl,
                "answers": [], "addresses": [], "size": len(data), "id_mismatch": None, "question_mismatch": None,
                "parse_error": str(e), "raw_b64": base64.b64encode(data[:4096]).decode("ascii"),
            }
        msg_id, flags, answers, rcode, rname = msg.id, msg.flags, msg.answers, msg.rcode, msg.qname
        question_mismatch = msg.qtype != qtype or (
            rname is not qname and (rname is None or rname.lower() != qname.lower()))
    if len(answers) == 1 and answers[0]["type"] in _ADDRESS_TYPES:
        addresses = [answers[0]["data"]]
    else:
        addresses = [a["data"] for a in answers if a["type"] in _ADDRESS_TYPES]
    return {
        "t": round(t, 6), "source": source, "query_id": msg_id, "rcode": dnswire.rcode_text(rcode),
        "flags": dnswire.flags_text(flags), "ip_ttl": ip_ttl, "answers": answers,
        "addresses": addresses, "size": len(data), "id_mismatch": msg_id != qid,
        "question_mismatch": question_mismatch, "parse_error": None, "raw_b64": None,
    }


def outcome(responses: list[dict[str, Any]], icmp_errors: list[dict[str, Any]], qtype: str) -> tuple[str | None, list[str]]:
    """(failure, addresses) of a query from what came back (rules in the module docstring)."""
    for r in responses:
        if r["parse_error"] is None and r["id_mismatch"] is False and r["question_mismatch"] is False:
            rcode = r["rcode"]
            if rcode != "NOERROR":
                return failures.classify_rcode(dnswire.rcode_code(rcode)), list(r["addresses"])
            for a in r["answers"]:
                if a["type"] == qtype:
                    return None, list(r["addresses"])
            return failures.DNS_NO_ANSWER, list(r["addresses"])
    if responses:
        return failures.DNS_SERVER_MISBEHAVING, []
    if icmp_errors:
        return icmp_errors[0]["failure"], []
    return failures.GENERIC_TIMEOUT, []


# --- UDP: our own receive loop --------------------------------------------------------

def enable_recv_metadata(sock: socket.socket) -> None:
    """Ask the kernel for each datagram's IP TTL and for ICMP errors on this unconnected socket."""
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVHOPLIMIT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
    except OSError:
        pass  # not Linux: no TTLs, and ICMP errors surface only as a timeout


def ttl_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The IP TTL / hop limit from ``recvmsg`` control messages, if present."""
    for level, kind, value in ancdata:
        if (kind == _IP_TTL and level == _SOL_IP) or (kind == _IPV6_HOPLIMIT and level == _SOL_IPV6):
            return int.from_bytes(value[:4], _BYTEORDER)
    return None


def read_error_queue(sock: socket.socket) -> list[tuple[bytes, dict[str, Any]]]:
    """Drain the socket's error queue (``IP_RECVERR``).

    Returns one ``(original datagram, {source, failure, icmp_type, icmp_code})``
    per queued error; the original datagram is the query the error is about, so
    a multiplexing caller can attribute it by query id.
    """
    out: list[tuple[bytes, dict[str, Any]]] = []
    for _ in range(256):
        try:
            data, ancdata, _flags, _addr = sock.recvmsg(_RECV_SIZE, 512, _MSG_ERRQUEUE)
        except OSError:
            break
        for _level, _kind, value in ancdata:
            if len(value) < _EE.size:
                continue
            err, origin, itype, icode, _pad, _info, _d = _EE.unpack_from(value)
            is_icmp = origin in (_EE_ORIGIN_ICMP, _EE_ORIGIN_ICMP6)
            source = None
            offender = value[_EE.size:]
            if origin == _EE_ORIGIN_ICMP and len(offender) >= 8:
                source = socket.inet_ntop(socket.AF_INET, offender[4:8])
            elif origin == _EE_ORIGIN_ICMP6 and len(offender) >= 24:
                source = socket.inet_ntop(socket.AF_INET6, offender[8:24])
            out.append((data, {
                "source": source, "failure": failures.classify(OSError(err, os.strerror(err))),
                "icmp_type": itype if is_icmp else None, "icmp_code": icode if is_icmp else None,
            }))
    return out


async def _udp(
    wire: bytes, host: str, port: int, rec: Recorder, net: Net, qid: int, qname: str, qtype: int,
    hold_window: float, timeout: float, state: dict[str, Any],
) -> None:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = net.udp_socket(family)
    responses: list[dict[str, Any]] = state["responses"]
    icmp_errors: list[dict[str, Any]] = state["icmp_errors"]
    first: asyncio.Future[float] = loop.create_future()
    question = dnswire.question_bytes(dnswire.encode_name(qname), qtype)

    def on_readable() -> None:
        # Drain everything that is ready; a wake-up can carry the forged and the real answer.
        for _ in range(1024):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(_RECV_SIZE, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # an ICMP error was queued (IP_RECVERR)
                now = rec.now()
                queued = [info for _data, info in read_error_queue(sock)] or [
                    {"source": None, "failure": failures.classify(e), "icmp_type": None, "icmp_code": None}]
                icmp_errors.extend({"t": round(now, 6), **info} for info in queued)
                if not first.done():
                    first.set_result(now)
                continue
            now = rec.now()
            responses.append(response_record(
                data, now, format_host_port(addr[0], addr[1]), ttl_from_ancdata(ancdata), qid, qname, qtype,
                question))
            if not first.done():
                first.set_result(now)

    try:
        enable_recv_metadata(sock)
        loop.add_reader(sock.fileno(), on_readable)
        state["step"] = "send"
        sock.sendto(wire, (host, port))
        state["step"] = "receive"
        try:
            t_first = await asyncio.wait_for(asyncio.shield(first), timeout)
        except TimeoutError:
            return
        # Keep listening: the injected answer came first, the real one may still be on its way.
        await asyncio.sleep(max(0.0, t_first + hold_window - rec.now()))
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()


# --- TCP and DoT -------------------------------------------------------------------------

async def _stream(
    wire: bytes, host: str, port: int, rec: Recorder, net: Net, qid: int, qname: str, qtype: int,
    timeout: float, tls: bool, state: dict[str, Any],
) -> None:
    writer = None
    try:
        async with asyncio.timeout(timeout):
            state["step"] = "connect"
            reader, writer = await net.open_tcp(host, port, timeout=timeout)
            if tls:
                state["step"] = "tls_handshake"
                await net.start_tls(writer, net.tls_context(alpn=["dot"]), host, timeout=timeout)
                ssl_obj = writer.get_extra_info("ssl_object")
                state["extra"]["tls_version"] = ssl_obj.version() if ssl_obj is not None else None
            state["step"] = "send"
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            state["step"] = "receive"
            size = int.from_bytes(await reader.readexactly(2), "big")
            data = await reader.readexactly(size)
            peer = writer.get_extra_info("peername")
            source = format_host_port(peer[0], peer[1]) if peer else format_host_port(host, port)
            state["responses"].append(response_record(data, rec.now(), source, None, qid, qname, qtype))
    finally:
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(_STREAM_CLOSE_WAIT):
                    await writer.wait_closed()
            except Exception:  # closing errors (ssl shutdown, reset) change nothing we recorded
                pass


# --- DoH ---------------------------------------------------------------------------------

async def _doh(
    wire: bytes, url: str, rec: Recorder, net: Net, qname: str, qtype: int, timeout: float, method: str,
    state: dict[str, Any],
) -> None:
    import httpx

    headers = {"accept": DOH_CONTENT_TYPE}
    state["step"] = "http_round_trip"
    # httpx sets the same ALPN on the context it is given
    async with httpx.AsyncClient(verify=net.tls_context(alpn=["http/1.1"]), timeout=timeout, trust_env=False) as client:
        if method == "GET":
            dns_param = base64.urlsafe_b64encode(wire).rstrip(b"=").decode("ascii")
            request = client.build_request("GET", url, params={"dns": dns_param}, headers=headers)
        else:
            headers["content-type"] = DOH_CONTENT_TYPE
            request = client.build_request("POST", url, content=wire, headers=headers)
        response = await client.send(request, stream=True)
        try:
            state["extra"]["http_status"] = response.status_code
            # The peer address is only known while the connection is open.
            stream = response.extensions.get("network_stream")
            peer = stream.get_extra_info("server_addr") if stream is not None else None
            source = format_host_port(peer[0], peer[1]) if peer else url
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _RECV_SIZE:  # no DNS message is larger; do not let a server fill memory
                    state["failure"] = failures.DNS_SERVER_MISBEHAVING
                    return
        finally:
            await response.aclose()
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code == 200 and ctype == DOH_CONTENT_TYPE:
            state["responses"].append(response_record(bytes(body), rec.now(), source, None, 0, qname, qtype))
        else:
            state["failure"] = failures.DNS_SERVER_MISBEHAVING


# --- the reusable coroutine ------------------------------------------------------------------

async def query(
    name: str, qtype: str, resolver: str, *, transport: str, net: Net, rec: Recorder,
    hold_window: float = 1.0, timeout: float = 5.0, parent_id: int | None = None, doh_method: str = "POST",
) -> Observation:
    """Send one query and return its ``dns_query`` observation (also added to ``rec``).

    ``resolver`` is ``IP[:PORT]`` (udp, tcp, dot) or a DoH URL. Network
    failures are recorded, never raised; ``InvalidTarget``/``ConfigError``
    are raised for a name or resolver that cannot be used at all.
    """
    if transport not in TRANSPORTS:
        raise ConfigError(f"unknown transport {transport!r}; choose one of {', '.join(TRANSPORTS)}")
    if hold_window < 0 or timeout <= 0:
        raise ConfigError("hold_window must be >= 0 and timeout > 0")
    qname = normalize_name(name)
    try:
        qcode = dnswire.qtype_code(qtype)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    qtext = dnswire.qtype_text(qcode)
    host, port = "", 0
    if transport == "doh":
        parts = urlsplit(resolver)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"a DoH resolver is an https:// URL, got {resolver!r}")
        qid = 0  # RFC 8484 section 4.1: use id 0 so responses stay cacheable
        shown = resolver
    else:
        host, port = parse_resolver(resolver, transport)
        qid = int.from_bytes(os.urandom(2), "big")
        shown = format_host_port(host, port)
    wire = dnswire.build_query(qname, qcode, qid)
    step = rec.begin(
        "dns_query", parent_id, query_name=qname, query_type=qtext, transport=transport, resolver=shown,
        query_id=qid, hold_window=hold_window if transport == "udp" else None,
    )
    state: dict[str, Any] = {"responses": [], "icmp_errors": [], "step": None, "failure": None, "extra": {}}
    error: BaseException | None = None
    try:
        if transport == "udp":
            await _udp(wire, host, port, rec, net, qid, qname, qcode, hold_window, timeout, state)
        elif transport == "doh":
            await _doh(wire, resolver, rec, net, qname, qcode, timeout, doh_method, state)
        else:
            await _stream(wire, host, port, rec, net, qid, qname, qcode, timeout, transport == "dot", state)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # network failures are data
        error = e
    responses, icmp_errors = state["responses"], state["icmp_errors"]
    if error is not None and not responses:
        failure: str | None = failures.classify(error)
        addresses: list[str] = []
    elif state["failure"] is not None:
        failure, addresses = state["failure"], []
    else:
        failure, addresses = outcome(responses, icmp_errors, qtext)
    fields: dict[str, Any] = {
        "responses": responses, "addresses": addresses, "icmp_errors": icmp_errors,
        "failed_step": state["step"] if failure is not None and (error is not None or not responses) else None,
    }
    fields.update(state["extra"])
    return step.fail(failure, **fields) if failure is not None else step.ok(**fields)


def describe(observation: dict[str, Any]) -> list[str]:
    """Human-readable lines for ``censorscope probe dns``: every response and ICMP error, in order."""
    if observation.get("operation") != "dns_query":
        return []
    lines = []
    for r in observation.get("responses", []):
        head = f"{r['t'] * 1000:8.1f} ms  from {r['source']}"
        if r.get("ip_ttl") is not None:
            head += f" (ip ttl {r['ip_ttl']})"
        if r["parse_error"] is not None:
            lines.append(f"{head}  unparseable ({r['size']} bytes): {r['parse_error']}")
            continue
        flags = [name for name, bad in (("ID MISMATCH", r["id_mismatch"]), ("QUESTION MISMATCH", r["question_mismatch"]))
                 if bad]
        answers = ", ".join(f"{a['type']} {a['data']} (ttl {a['ttl']})" for a in r["answers"]) or "no answers"
        lines.append(f"{head}  id {r['query_id']} {r['rcode']} [{' '.join(r['flags'])}] {answers}"
                     + (f"  {', '.join(flags)}" if flags else ""))
    for e in observation.get("icmp_errors", []):
        lines.append(f"{e['t'] * 1000:8.1f} ms  ICMP type {e['icmp_type']} code {e['icmp_code']} from {e['source']}: "
                     f"{e['failure']}")
    return lines


#: seconds ``_stream`` waits for a TCP/DoT connection to close
_STREAM_CLOSE_WAIT = 1.0
#: DoH phases httpx times out one by one (it has no deadline for the whole exchange): connect,
#: TLS, request, response head, and one body read
_DOH_PHASES = 5


def worst_case(target: str, options: Options) -> float:
    """Upper bound (s) of one measurement, for the campaign runner's watchdog.

    The A and AAAA queries run at once, so one query's bound: UDP waits
    ``timeout`` for the first response, then the hold window; TCP and DoT
    run under one ``timeout``, then the close; DoH under httpx's per-phase
    ``timeout`` (a server trickling a body in reads just under ``timeout``
    each can hold it longer: that is what the watchdog is for).
    """
    if options.transport == "udp":
        return options.timeout + options.hold_window
    if options.transport == "doh":
        return _DOH_PHASES * options.timeout
    return options.timeout + _STREAM_CLOSE_WAIT


async def measure(target: str, net: Net, options: Options) -> list[Observation]:
    """Query ``target`` (A, AAAA or both) once through the chosen resolver and transport."""
    name = normalize_name(target)
    if options.transport not in TRANSPORTS:
        raise ConfigError(f"unknown transport {options.transport!r}")
    if options.qtype not in QTYPE_CHOICES:
        raise ConfigError(f"qtype must be one of {', '.join(QTYPE_CHOICES)}")
    resolver = options.resolver or net.resolver
    if resolver is None and options.transport != "doh":
        resolver = resolver_from_resolv_conf()
    if resolver is None:
        raise ConfigError("no resolver given and none found in /etc/resolv.conf" if options.transport != "doh"
                          else "DoH needs --resolver https://...")
    rec = Recorder(net.clock)
    qtypes = ["A", "AAAA"] if options.qtype == "both" else [options.qtype]
    await asyncio.gather(*(
        query(name, qt, resolver, transport=options.transport, net=net, rec=rec, hold_window=options.hold_window,
              timeout=options.timeout, doh_method=options.doh_method)
        for qt in qtypes
    ))
    return rec.observations
