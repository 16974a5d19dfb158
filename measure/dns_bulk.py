"""Bulk DNS over UDP for campaigns: many names, few sockets, the dns probe's semantics.

``resolve_many`` sends the queries of a ``dns``/``udp`` campaign through a
handful of UDP sockets, with query ids multiplexed, and produces for every
name exactly the observation dicts the ``dns`` probe stores (one
``dns_query`` per type, same fields, same failure rules, shared record
helpers from ``censorscope.probes.dns``).

Same hold-window semantics as the probe: a query stays alive (its id
reserved) until ``hold_window`` seconds after its first response or ICMP
error, and every datagram arriving in that window is recorded in arrival
order, injected or not. Attribution: by query id (a response with the right
id but another question is kept and flagged ``question_mismatch``); a
response with an unknown id is attributed to the live query asking the same
question (flagged ``id_mismatch``), else counted in ``BulkStats.unmatched``.
ICMP errors are read from the socket error queue and attributed through the
query they quote.

Why it is fast (PERF-NOTES.md): ``loop.add_reader`` and draining every ready
datagram per wake-up, in batches (``recvmmsg(2)``/``sendmmsg(2)`` through
ctypes, with ``recvmsg``/``sendto`` fallbacks); datagrams kept raw (payload,
arrival time, sender, IP TTL) while the window is open and decoded once the
name is finished (``decode``), by ``probes.wire.dnsbulk.echo_record`` for the
usual response (our question echoed byte for byte, A/AAAA answers) and
``probes.dns.response_record`` (hand-written parser, dnspython for the
unusual) otherwise; with two CPUs, the network side runs in a forked worker
process and this one decodes and reports (``dns_bulk_worker``, measured
~25 + ~25 µs of CPU per query against ~42 µs in one process); one timer for all deadlines (deadlines are monotonic per queue, so two FIFO
queues replace a heap); ids recycled FIFO from a randomly permuted pool so a
late reply never lands on a just-reused id; fewer cyclic-GC passes while a
run lasts. Deadlines are checked every ``TICK`` seconds, so a window may last
up to ``TICK`` longer, never shorter.

``concurrency`` bounds the queries waiting for their *first* response;
queries in their hold window only keep an id (a new socket is opened when a
socket's 65,536 ids are all in use).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import gc
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from censorscope.probes import failures
from censorscope.probes.dns import (
    _ANC_SIZE,
    _IP_TTL,
    _IPV6_HOPLIMIT,
    _RECV_SIZE,
    _SOL_IP,
    _SOL_IPV6,
    enable_recv_metadata,
    normalize_name,
    outcome,
    parse_resolver,
    read_error_queue,
    response_record,
    ttl_from_ancdata,
)
from censorscope.probes.errors import ConfigError, InvalidTarget
from censorscope.probes.net import format_host_port
from censorscope.probes.wire import dnswire
from censorscope.probes.wire.dnsbulk import decode_usual, echo_record, wire_name

__all__ = ["BulkStats", "resolve_many", "TICK"]

#: What ``_Engine``'s ``more_names`` returns when no name will ever come again.
ENDED: Iterator[Any] = iter(())
#: Granularity of deadline checks (seconds).
TICK = 0.005
MAX_SOCKETS = 256
_SOCKET_BUFFER = 8 * 1024 * 1024

# errnos an ICMP error for an earlier datagram leaves pending on the socket (IP_RECVERR)
_PENDING_ICMP = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                           errno.EPROTO, errno.EMSGSIZE})

OnResult = Callable[[str, list[dict[str, Any]], float, float], None]
#: A received datagram as the engine keeps it: (payload, seconds since the name's first query, source, IP TTL).
RawResponse = tuple[bytes, float, str, "int | None"]
#: One finished query: (index of its type in qtypes, id, t0, t (seconds since the name's first query, not rounded),
#: failure or None, failed step or None,
#: responses, ICMP error dicts); failure/failed step are set only when the query could not be sent.
RawQuery = tuple[int, int, float, float, "str | None", "str | None", list[RawResponse], list[dict[str, Any]]]
#: One finished name: (its key: the name, or its number in a worker; wall-clock start, runtime, its queries
#: in completion order).
RawResult = tuple[Any, float, float, list[RawQuery]]


@dataclass
class BulkStats:
    """What a ``resolve_many`` run did (responses include every late/duplicate datagram)."""

    names: int = 0
    queries: int = 0
    responses: int = 0
    timeouts: int = 0
    send_errors: int = 0
    icmp_errors: int = 0
    unmatched: int = 0
    sockets: int = 0
    runtime: float = 0.0
    invalid_names: list[str] = field(default_factory=list)

    @property
    def qps(self) -> float:
        """Queries per second over the whole run (including the last hold window)."""
        return self.queries / self.runtime if self.runtime > 0 else 0.0


def _prepare(raw: str) -> tuple[str, bytes]:
    """(name as the probe would send it, its wire form); ``InvalidTarget`` if impossible."""
    if raw.isascii():
        name = raw.strip()
        if name.endswith(".") and name != ".":
            name = name[:-1]
        if name:
            wire = wire_name(name)  # the usual name, in one split and one join
            if wire is not None:
                return name, wire
            try:
                return name, dnswire.encode_name(name)
            except ValueError:
                pass
    name = normalize_name(raw)  # IDN, or raises InvalidTarget with the reason
    return name, dnswire.encode_name(name)


def prepared(names: Iterable[str], stats: BulkStats) -> Iterator[tuple[str, bytes]]:
    """``(name, wire form)`` of each name the engine can send; the others are listed in ``stats``."""
    for raw in names:
        try:
            yield _prepare(raw)
        except InvalidTarget:
            if len(stats.invalid_names) < 1000:
                stats.invalid_names.append(raw)


class _Name:
    __slots__ = ("key", "wire", "start", "pending", "observations")

    def __init__(self, key: Any, wire: bytes, start: float, pending: int) -> None:
        self.key = key  # what the result carries back: the name, or its number in a worker
        self.wire = wire
        self.start = start
        self.pending = pending
        self.observations: list[RawQuery] = []


class _Query:
    __slots__ = ("owner", "index", "qcode", "question", "qid", "sock", "t0", "first", "responses", "icmp", "key",
                 "done")

    def __init__(self, owner: _Name, index: int, qcode: int, qtail: bytes) -> None:
        self.owner = owner
        self.index = index  # of the type in the engine's qtypes
        self.qcode = qcode
        self.question = owner.wire + qtail
        self.qid = -1
        self.sock: _Socket | None = None
        self.t0 = 0.0
        self.first: float | None = None
        self.responses: list[RawResponse] = []
        self.icmp: list[dict[str, Any]] = []
        self.key = self.question.lower()  # for responses with an unknown id (case-insensitive, like names)
        self.done = False


class _Socket:
    __slots__ = ("sock", "fd", "free", "live")

    def __init__(self, family: int) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_*BUFFORCE need CAP_NET_ADMIN
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, force, _SOCKET_BUFFER)
            except OSError:
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
                except OSError:
                    pass
        enable_recv_metadata(self.sock)
        self.fd = self.sock.fileno()
        # Unpredictable ids: sorting by 32-bit keys from the OS is a random permutation (ties only keep
        # two ids in order), done in C: ~15x cheaper than random.shuffle, ~1,000x than SystemRandom.
        keys = memoryview(os.urandom(4 * 65536)).cast("I")
        self.free: collections.deque[int] = collections.deque(sorted(range(65536), key=keys.__getitem__))
        self.live: dict[int, _Query] = {}


_BATCH = 256  # datagrams per sendmmsg(2) call


class _SendTo:
    """Portable sender: one ``sendto`` per datagram."""

    def __init__(self, family: int, addr: tuple[str, int]) -> None:
        self.addr = addr

    def send(self, s: _Socket, wires: list[bytes], start: int) -> tuple[int, int]:
        """Send ``wires[start:]`` (at most ``_BATCH``); (number sent, errno of the first failure or 0)."""
        sendto, addr = s.sock.sendto, self.addr
        sent = 0
        for wire in wires[start:start + _BATCH]:
            try:
                sendto(wire, addr)
            except OSError as e:
                return sent, e.errno or errno.EIO
            sent += 1
        return sent, 0


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32), ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t), ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


class _SendMMsg:
    """Linux ``sendmmsg(2)`` through ctypes: one system call for a batch of datagrams.

    Why: on loopback each ``sendto`` also runs the receiver's side and wakes
    the server once per packet; a batch wakes it once and halves the per-query
    kernel cost. Queries are copied into fixed 512-byte slots of one buffer
    whose iovecs and message headers are built once.
    """

    SLOT = 512  # a query is at most 12 + 255 + 4 + 11 bytes

    def __init__(self, family: int, addr: tuple[str, int]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fn = libc.sendmmsg
        self.fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        self.fn.restype = ctypes.c_int
        self.buf = ctypes.create_string_buffer(_BATCH * self.SLOT)
        self.view = memoryview(self.buf).cast("B")
        self.iov = (_IoVec * _BATCH)()
        base = ctypes.addressof(self.buf)
        for i in range(_BATCH):
            self.iov[i].iov_base = base + i * self.SLOT
        self.lengths = memoryview(self.iov).cast("B").cast("Q")  # iov_len of slot i is at 2*i+1
        self.name = ctypes.create_string_buffer(_sockaddr(family, addr))
        self.msgs = (_MMsgHdr * _BATCH)()
        for i in range(_BATCH):
            hdr = self.msgs[i].msg_hdr
            hdr.msg_name = ctypes.addressof(self.name)
            hdr.msg_namelen = len(self.name.raw) - 1
            hdr.msg_iov = ctypes.addressof(self.iov) + i * ctypes.sizeof(_IoVec)
            hdr.msg_iovlen = 1
        self.msgs_address = ctypes.addressof(self.msgs)

    def send(self, s: _Socket, wires: list[bytes], start: int) -> tuple[int, int]:
        """Send ``wires[start:]`` (at most ``_BATCH``); (number sent, errno of the first failure or 0)."""
        view, lengths, slot = self.view, self.lengths, self.SLOT
        count = 0
        for wire in wires[start:start + _BATCH]:
            off = count * slot
            size = len(wire)
            view[off:off + size] = wire
            lengths[2 * count + 1] = size
            count += 1
        sent = self.fn(s.fd, self.msgs_address, count, 0)
        if sent < 0:
            return 0, ctypes.get_errno()
        return sent, 0


def _sockaddr(family: int, addr: tuple[str, int]) -> bytes:
    """``struct sockaddr_in``/``sockaddr_in6`` for ``addr``."""
    host, port = addr
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_pton(family, host) + bytes(8)
    host, _, scope = host.partition("%")
    scope_id = (int(scope) if scope.isdigit() else socket.if_nametoindex(scope)) if scope else 0
    return (struct.pack("=H", family) + struct.pack("!HI", port, 0) + socket.inet_pton(family, host)
            + struct.pack("=I", scope_id))


class _Sources:
    """``"ip:port"`` text of a sender, formatted once per distinct sender (almost always the resolver)."""

    def __init__(self) -> None:
        self.cache: dict[Any, str] = {}

    def text(self, key: Any, host: str, port: int) -> str:
        if len(self.cache) > 4096:  # a spoofing flood must not grow it without bound
            self.cache.clear()
        text = self.cache[key] = format_host_port(host, port)
        return text


Datagram = tuple[bytes, str, "int | None"]  # (payload, source "ip:port", IP TTL / hop limit)


class _RecvMsg:
    """Portable receiver: one ``recvmsg`` per datagram, up to ``_RECV_BATCH`` per call."""

    def __init__(self, family: int) -> None:
        self.sources = _Sources()

    def receive(self, sock: socket.socket) -> list[Datagram]:
        """The datagrams ready on ``sock`` (empty: none); ``OSError`` = a pending ICMP error.

        Datagrams read before the error are returned first; the error then comes on the next call.
        """
        recvmsg, cache, out = sock.recvmsg, self.sources.cache, []
        for _ in range(_RECV_BATCH):
            try:
                data, ancdata, _flags, addr = recvmsg(_RECV_SIZE, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if out:
                    break
                raise
            source = cache.get(addr)
            if source is None:
                source = self.sources.text(addr, addr[0], addr[1])
            out.append((data, source, ttl_from_ancdata(ancdata) if ancdata else None))
        return out


_RECV_BATCH = 32  # datagrams per recvmmsg(2) call


class _RecvMMsg:
    """Linux ``recvmmsg(2)`` through ctypes: one system call reads up to ``_RECV_BATCH`` datagrams.

    Why: ``socket.recvmsg`` costs ~5 µs per datagram here (a system call, a
    64 KiB buffer allocated and shrunk, a list of control-message tuples and
    an address tuple built per datagram); one ``recvmmsg`` for a batch and
    reading the kernel-filled buffers through memoryviews costs ~3 µs.
    Every field the portable path records is read here too: the payload
    (slots of 64 KiB, so nothing is ever truncated), the sender (raw
    ``sockaddr`` bytes are the cache key of its text) and the IP TTL / hop
    limit from the control messages.
    """

    SLOT = 65536  # larger than any UDP payload (65,507 bytes): a datagram is never cut short
    NAME = 32  # room for a sockaddr_in6 (28 bytes)
    CONTROL = 64  # room for one TTL/hop-limit control message (24 bytes) and then some

    def __init__(self, family: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fn = libc.recvmmsg
        self.fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        self.fn.restype = ctypes.c_int
        self.family = family
        self.sources = _Sources()
        n = _RECV_BATCH
        # bytearrays (not ctypes buffers) so Python reads them through plain memoryviews
        self.payload = bytearray(n * self.SLOT)
        self.names = bytearray(n * self.NAME)
        self.control = bytearray(n * self.CONTROL)
        self.payload_view = memoryview(self.payload)
        self.names_view = memoryview(self.names)
        self.control_ints = memoryview(self.control).cast("i")
        buffers = [(ctypes.c_char * len(b)).from_buffer(b) for b in (self.payload, self.names, self.control)]
        self._keep = buffers  # the addresses below point into these
        payload, names, control = (ctypes.addressof(b) for b in buffers)
        self.iov = (_IoVec * n)()
        self.msgs = (_MMsgHdr * n)()
        for i in range(n):
            self.iov[i].iov_base = payload + i * self.SLOT
            self.iov[i].iov_len = self.SLOT
            hdr = self.msgs[i].msg_hdr
            hdr.msg_name = names + i * self.NAME
            hdr.msg_namelen = self.NAME
            hdr.msg_iov = ctypes.addressof(self.iov) + i * ctypes.sizeof(_IoVec)
            hdr.msg_iovlen = 1
            hdr.msg_control = control + i * self.CONTROL
            hdr.msg_controllen = self.CONTROL
        self.msgs_address = ctypes.addressof(self.msgs)
        # The kernel rewrites msg_len, msg_namelen, msg_controllen and msg_flags of each message it
        # fills; Python reads (and resets) them by index in memoryviews over the header array.
        size = ctypes.sizeof(_MMsgHdr)
        offsets = {"len": _MMsgHdr.msg_len.offset, "namelen": _MsgHdr.msg_namelen.offset,
                   "controllen": _MsgHdr.msg_controllen.offset}
        if size % 8 or any(off % 4 for off in offsets.values()) or offsets["controllen"] % 8:
            raise TypeError("unexpected struct mmsghdr layout")
        raw = memoryview(self.msgs).cast("B")
        self.u32, self.u64 = raw.cast("I"), raw.cast("Q")
        self.stride32, self.stride64 = size // 4, size // 8
        self.o_len, self.o_namelen = offsets["len"] // 4, offsets["namelen"] // 4
        self.o_controllen = offsets["controllen"] // 8
        # the control message we ask for (enable_recv_metadata): IP_TTL / IPV6_HOPLIMIT as an int
        self.ttl_cmsg = (_SOL_IPV6, _IPV6_HOPLIMIT) if family == socket.AF_INET6 else (_SOL_IP, _IP_TTL)

    def receive(self, sock: socket.socket) -> list[Datagram]:
        """Same contract as ``_RecvMsg.receive``."""
        got = self.fn(sock.fileno(), self.msgs_address, _RECV_BATCH, 0, None)
        if got <= 0:
            err = ctypes.get_errno() if got < 0 else 0
            if got == 0 or err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return []
            raise OSError(err, os.strerror(err))
        u32, u64, payload, names, ints = self.u32, self.u64, self.payload_view, self.names_view, self.control_ints
        s32, s64, slot, name_size, ctl_ints = self.stride32, self.stride64, self.SLOT, self.NAME, self.CONTROL // 4
        o_len, o_namelen, o_controllen = self.o_len, self.o_namelen, self.o_controllen
        level, kind = self.ttl_cmsg
        cache = self.sources.cache
        out = []
        for i in range(got):
            h32, h64 = i * s32, i * s64
            size = u32[h32 + o_len]
            start = i * slot
            data = payload[start:start + size].tobytes()
            namelen = u32[h32 + o_namelen]
            key = names[i * name_size:i * name_size + namelen].tobytes()
            source = cache.get(key)
            if source is None:
                source = self._source(key)
            ttl = None
            controllen = u64[h64 + o_controllen]
            if controllen:
                base = i * ctl_ints
                if controllen <= 24 and ints[base + 2] == level and ints[base + 3] == kind:
                    ttl = ints[base + 4]  # the usual single control message: read it in place
                else:
                    ttl = self._ttl(base, controllen, level, kind)
                u64[h64 + o_controllen] = self.CONTROL
            u32[h32 + o_namelen] = name_size
            out.append((data, source, ttl))
        return out

    def _ttl(self, base: int, controllen: int, level: int, kind: int) -> int | None:
        """The TTL from the control messages of one datagram (``struct cmsghdr``: len, level, type, data)."""
        ints, raw = self.control_ints, self.control
        off = 0
        while off + 16 <= controllen:  # cmsg_len is a size_t (8 bytes on Linux 64-bit), then two ints
            i = base + off // 4
            cmsg_len = int.from_bytes(raw[(base * 4) + off:(base * 4) + off + 8], sys.byteorder)
            if ints[i + 2] == level and ints[i + 3] == kind and cmsg_len >= 20:
                return ints[i + 4]
            if cmsg_len < 16:
                break
            off += (cmsg_len + 7) & ~7
        return None

    def _source(self, key: bytes) -> str:
        return self.sources.text(key, *sockaddr_host_port(key))


def sockaddr_host_port(key: bytes) -> tuple[str, int]:
    """(host, port) of a raw ``struct sockaddr`` as the kernel filled it in (``?`` for an unknown family)."""
    family = int.from_bytes(key[:2], sys.byteorder)
    port = int.from_bytes(key[2:4], "big")
    if family == socket.AF_INET6 and len(key) >= 28:
        host = socket.inet_ntop(socket.AF_INET6, key[8:24])
        scope = int.from_bytes(key[24:28], sys.byteorder)
        if scope:
            try:
                host += "%" + socket.if_indextoname(scope)
            except OSError:
                host += f"%{scope}"
    elif family == socket.AF_INET and len(key) >= 8:
        host = socket.inet_ntop(socket.AF_INET, key[4:8])
    else:
        host = "?"  # unknown address family: keep the datagram, say we cannot name its sender
    return host, port


def _make_receiver(family: int) -> _RecvMsg | _RecvMMsg:
    try:
        return _RecvMMsg(family)
    except (AttributeError, OSError, TypeError):  # no recvmmsg in this libc (not Linux), or another layout
        return _RecvMsg(family)


def _make_sender(family: int, addr: tuple[str, int]) -> _SendTo | _SendMMsg:
    try:
        return _SendMMsg(family, addr)
    except (AttributeError, OSError, TypeError):  # no sendmmsg in this libc (not Linux)
        return _SendTo(family, addr)


class _Engine:
    """The network side: sockets, ids, sending, receiving, deadlines.

    Each finished name is handed to ``emit`` as a ``RawResult`` (datagrams
    undecoded); ``decode`` turns it into the stored observation dicts, in this
    process or in the parent of a worker process (``dns_bulk_worker``).
    When ``names`` runs dry, ``more_names()`` gives the next iterator of names
    (None: none yet, come back later; ``ENDED``: no more ever).
    """

    def __init__(
        self, names: Iterable[tuple[Any, bytes]], resolver: str, qtypes: tuple[str, ...], hold_window: float,
        timeout: float,
        concurrency: int, emit: Callable[[RawResult], None],
        more_names: Callable[[], Iterator[tuple[Any, bytes]] | None] = lambda: ENDED,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.names: Iterator[tuple[Any, bytes]] = iter(names)
        self.host, self.port = parse_resolver(resolver, "udp")
        self.addr = (self.host, self.port)
        self.family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.shown = format_host_port(self.host, self.port)
        self.sender = _make_sender(self.family, self.addr)
        self.receiver = _make_receiver(self.family)
        self.qtypes = _types(qtypes)
        self.hold = hold_window
        self.timeout = timeout
        self.concurrency = concurrency
        self.emit = emit
        self.more_names = more_names
        self.stats = BulkStats()
        self.sockets: list[_Socket] = []
        self.by_fd: dict[int, _Socket] = {}
        self.by_question: dict[bytes, _Query] = {}
        self.waiting = 0  # sent, no response yet
        self.ready: collections.deque[_Query] = collections.deque()  # built, not yet sent
        self.timeouts: collections.deque[tuple[float, _Query]] = collections.deque()
        self.holds: collections.deque[tuple[float, _Query]] = collections.deque()
        self.live_names = 0
        self.exhausted = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0
        self.retry: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.clock = time.monotonic
        # wall-clock start of a name = this offset + its monotonic start (one clock reading per name)
        self.wall_offset = time.time() - time.monotonic()

    # --- sockets --------------------------------------------------------------------------
    def _socket_with_free_id(self) -> _Socket | None:
        for s in self.sockets:
            if s.free:
                return s
        if len(self.sockets) >= MAX_SOCKETS:
            return None
        s = _Socket(self.family)
        self.sockets.append(s)
        self.by_fd[s.fd] = s
        self.loop.add_reader(s.fd, self._on_readable, s)
        self.stats.sockets = len(self.sockets)
        return s

    def close(self) -> None:
        for s in self.sockets:
            self.loop.remove_reader(s.fd)
            s.sock.close()
        for handle in (self.timer, self.retry):
            if handle is not None:
                handle.cancel()

    # --- sending ---------------------------------------------------------------------------
    def _next_name(self) -> bool:
        while True:
            for key, wire in self.names:
                owner = _Name(key, wire, self.clock(), len(self.qtypes))
                self.stats.names += 1
                self.live_names += 1
                for index, (_qtext, qcode, qtail) in enumerate(self.qtypes):
                    self.ready.append(_Query(owner, index, qcode, qtail))
                return True
            more = self.more_names()
            if more is None:
                return False  # more names later (the engine is filled again when they come)
            if more is ENDED:
                self.exhausted = True
                return False
            self.names = more

    def fill(self) -> None:
        """Send queries until ``concurrency`` are waiting for their first answer."""
        try:
            self._fill()
        except BaseException as e:  # surface any bug to the caller of resolve_many
            self._abort(e)

    def _fill(self) -> None:
        ready = self.ready
        build = dnswire.build_query_fast
        while self.waiting < self.concurrency:
            batch: list[_Query] = []
            wires: list[bytes] = []
            sock: _Socket | None = None
            room = min(self.concurrency - self.waiting, _BATCH)
            while len(batch) < room:
                if not ready and (self.exhausted or not self._next_name()):
                    break
                q = ready[0]
                s = q.sock
                if s is None:  # a new query: an id on this batch's socket while it has free ones
                    s = sock if sock is not None and sock.free else self._socket_with_free_id()
                if s is None or (sock is not None and s is not sock):
                    break  # no free id anywhere (wait for windows to close), or another socket's batch
                sock = s
                if q.sock is None:
                    q.sock = s
                    q.qid = qid = s.free.popleft()
                    s.live[qid] = q
                ready.popleft()
                batch.append(q)
                wires.append(build(q.qid, q.question))
            if sock is None or not self._send(sock, batch, wires):
                break
        self._maybe_done()

    def _send(self, s: _Socket, batch: list[_Query], wires: list[bytes]) -> bool:
        """Send a batch on ``s``; False when the send buffer is full (the rest is queued again)."""
        i, n = 0, len(batch)
        retried_icmp = False
        clock = self.clock
        while i < n:
            sent, err = self.sender.send(s, wires, i)
            now = clock()
            by_question, deadline, timeouts = self.by_question, now + self.timeout, self.timeouts
            for q in batch[i:i + sent]:
                q.t0 = now
                by_question[q.key] = q
                timeouts.append((deadline, q))
            self.waiting += sent
            self.stats.queries += sent
            if sent:
                self._arm(now + self.timeout)
                retried_icmp = False
            i += sent
            if i == n or (sent and not err):
                continue
            if err in (errno.EAGAIN, errno.EINTR):
                self.ready.extendleft(reversed(batch[i:]))
                if self.retry is None:  # the send buffer is full: try again shortly
                    self.retry = self.loop.call_later(0.001, self._retry)
                return False
            if err in _PENDING_ICMP and not retried_icmp:
                # An earlier query's ICMP error is reported on this send (sk_err): attribute it
                # from the error queue, then send again.
                self._icmp(s, OSError(err, os.strerror(err)))
                retried_icmp = True
                continue
            q = batch[i]  # this datagram could not be sent: that is the query's result
            q.t0 = now
            self.stats.queries += 1
            self.stats.send_errors += 1
            self._finish(q, now, failures.classify(OSError(err, os.strerror(err))), "send")
            i += 1
            retried_icmp = False
        return True

    def _retry(self) -> None:
        self.retry = None
        self.fill()

    # --- receiving ------------------------------------------------------------------------------
    def _on_readable(self, s: _Socket) -> None:
        try:
            self._drain(s)
        except BaseException as e:
            self._abort(e)
            return
        self.fill()

    def _drain(self, s: _Socket) -> None:
        receive = self.receiver.receive
        live = s.live
        clock = self.clock
        stats = self.stats
        sock = s.sock
        for _ in range(4096 // _RECV_BATCH):
            try:
                batch = receive(sock)
            except OSError as e:
                self._icmp(s, e)
                continue
            if not batch:
                return
            # One clock reading per batch: the datagrams were all queued already, and a
            # per-datagram reading would only measure our own parsing speed.
            now = clock()
            for data, source, ttl in batch:
                q = live.get(int.from_bytes(data[:2], "big")) if len(data) >= 2 else None
                if q is None:
                    q = self._by_question(data)
                    if q is None:
                        stats.unmatched += 1
                        continue
                stats.responses += 1
                q.responses.append((data, now - q.owner.start, source, ttl))  # decoded by ``decode``
                if q.first is None:
                    self._first_event(q, now)

    def _by_question(self, data: bytes) -> _Query | None:
        key = question_key(data)
        return self.by_question.get(key) if key is not None else None

    def _icmp(self, s: _Socket, error: OSError) -> None:
        now = self.clock()
        for original, info in read_error_queue(s.sock):
            q = s.live.get(int.from_bytes(original[:2], "big")) if len(original) >= 2 else None
            if q is None:
                self.stats.unmatched += 1
                continue
            self.stats.icmp_errors += 1
            q.icmp.append({"t": round(now - q.owner.start, 6), **info})
            if q.first is None:
                self._first_event(q, now)

    def _first_event(self, q: _Query, now: float) -> None:
        q.first = now
        self.waiting -= 1
        self.holds.append((now + self.hold, q))
        if self.timer is None or self.timer_when > now + self.hold + TICK:
            self._arm(now + self.hold)

    # --- deadlines --------------------------------------------------------------------------------
    def _arm(self, when: float) -> None:
        """Make sure the timer fires by ``when`` (but not sooner than ``TICK`` from now)."""
        when = max(when, self.loop.time() + TICK)
        if self.timer is not None:
            if self.timer_when <= when:
                return
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._tick)
        self.timer_when = when

    def _tick(self) -> None:
        self.timer = None
        try:
            now = self.clock()
            timeouts, holds = self.timeouts, self.holds
            while timeouts and (timeouts[0][1].first is not None or timeouts[0][1].done):
                timeouts.popleft()  # answered (now in holds) or finished: stale entry
            while timeouts and timeouts[0][0] <= now:
                _, q = timeouts.popleft()
                if q.first is None and not q.done:
                    self.waiting -= 1
                    self.stats.timeouts += 1
                    self._finish(q, now)
            while holds and holds[0][0] <= now:
                self._finish(holds.popleft()[1], now)
            while timeouts and (timeouts[0][1].first is not None or timeouts[0][1].done):
                timeouts.popleft()
            nxt = min([d for d in (timeouts[0][0] if timeouts else None, holds[0][0] if holds else None)
                       if d is not None], default=None)
            if nxt is not None:
                self._arm(nxt)
        except BaseException as e:
            self._abort(e)
            return
        self.fill()

    # --- results --------------------------------------------------------------------------------------
    def _finish(self, q: _Query, now: float, failure: str | None = None, failed_step: str | None = None) -> None:
        q.done = True
        s = q.sock
        if s is not None and s.live.get(q.qid) is q:
            del s.live[q.qid]
            s.free.append(q.qid)
        if self.by_question.get(q.key) is q:
            del self.by_question[q.key]
        owner = q.owner
        start = owner.start
        owner.observations.append((q.index, q.qid, q.t0 - start, now - start, failure, failed_step, q.responses,
                                   q.icmp))
        owner.pending -= 1
        if owner.pending == 0:
            self.live_names -= 1
            self.emit((owner.key, self.wall_offset + start, now - start, owner.observations))

    def _maybe_done(self) -> None:
        if self.exhausted and not self.ready and self.live_names == 0 and not self.done.done():
            self.done.set_result(None)

    def _abort(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)


def question_key(data: bytes) -> bytes | None:
    """The question a datagram asks, as the engine looks up a reply with an unknown id (our question
    section in lower case), or None when it carries no readable question."""
    try:
        msg = dnswire.parse(data)
    except dnswire.ParseError:
        return None
    if msg.qname is None or msg.qtype is None:
        return None
    try:
        wire = dnswire.encode_name(msg.qname)
    except ValueError:
        return None
    return dnswire.question_bytes(wire, msg.qtype).lower()


#: Cyclic-GC generation-0 threshold while an engine runs (CPython's default is 700).
GC_THRESHOLD0 = 50_000
_gc_saved: list[tuple[int, int, int]] = []  # thresholds to restore; non-empty while any engine runs
_gc_users = 0


@contextlib.contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """Run the cyclic garbage collector less often while engines run, then restore the thresholds.

    Why: every query allocates about ten containers that stay alive for the
    hold window, so with the default threshold the collector runs every ~70
    queries and re-scans thousands of live ones: measured 10-15 % of the
    engine's CPU. Nothing is lost (the engine creates no garbage cycles; any
    other code's cycles are still collected, in larger batches). Process-wide,
    so nested/concurrent engines share one save/restore.
    """
    global _gc_users
    if _gc_users == 0:
        current = gc.get_threshold()
        _gc_saved.append(current)
        gc.set_threshold(max(current[0], GC_THRESHOLD0), *current[1:])
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0:
            gc.set_threshold(*_gc_saved.pop())


def decode(
    result: RawResult, name: str, wire: bytes, types: list[tuple[str, int, bytes]], resolver: str, hold_window: float,
) -> tuple[str, list[dict[str, Any]], float, float]:
    """``(name, observations, start, runtime)`` of a finished name: the dicts the ``dns`` probe stores.

    ``wire`` is the name's wire form, ``types`` the engine's ``(type text, code, question tail)``,
    ``resolver`` the resolver as shown. The C ``decode_usual`` when every reply is usual (the same
    dicts: tests compare it with ``py_decode``), else ``py_decode``.
    """
    if decode_usual is not None:
        done = decode_usual(result, name, wire, types, resolver, hold_window)
        if done is not None:
            return done
    return py_decode(result, name, wire, types, resolver, hold_window)


def py_decode(
    result: RawResult, name: str, wire: bytes, types: list[tuple[str, int, bytes]], resolver: str, hold_window: float,
) -> tuple[str, list[dict[str, Any]], float, float]:
    """``decode`` in Python. Every datagram becomes its response record (``echo_record`` for the
    usual response, else ``response_record``); the outcome follows the probe's rules (``outcome``).
    """
    _key, wall, runtime, queries = result
    observations: list[dict[str, Any]] = []
    for index, qid, t0, t, failure, failed_step, raw, icmp in queries:
        qtext, qcode, qtail = types[index]
        question = wire + qtail
        responses = []
        for data, rt, source, ttl in raw:
            record = echo_record(data, question, name, qid, rt, source, ttl)
            if record is None:  # not the usual response: the general code (dnspython for the unusual)
                record = response_record(data, rt, source, ttl, qid, name, qcode, question)
            responses.append(record)
        if failure is None:
            first = responses[0] if responses else None
            if (first is not None and first["id_mismatch"] is False and first["question_mismatch"] is False
                    and first["rcode"] == "NOERROR" and first["answers"] and first["answers"][0]["type"] == qtext):
                addresses = list(first["addresses"])  # what ``outcome`` says for the usual answer, sooner
            else:
                failure, addresses = outcome(responses, icmp, qtext)
                failed_step = "receive" if failure is not None and not responses else None
        else:
            addresses = []
        observations.append({
            "id": len(observations) + 1, "operation": "dns_query", "parent_id": None, "t0": round(t0, 6),
            "t": round(t, 6),
            "failure": failure, "query_name": name, "query_type": qtext, "transport": "udp", "resolver": resolver,
            "query_id": qid, "hold_window": hold_window, "responses": responses, "addresses": addresses,
            "icmp_errors": icmp, "failed_step": failed_step,
        })
    return name, observations, wall, runtime


def _types(qtypes: tuple[str, ...]) -> list[tuple[str, int, bytes]]:
    """(type text, code, question tail) of each query type; ``ConfigError`` for an unknown one."""
    try:
        codes = [dnswire.qtype_code(q) for q in qtypes]
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return [(dnswire.qtype_text(c), c, dnswire.question_bytes(b"", c)) for c in codes]


def _use_worker() -> bool:
    """A worker process pays off with a second CPU and ``fork`` (Linux and other Unixes); never when this
    process runs other threads: a child forked while another thread holds a lock (logging, stdio, an
    SFTP upload's) can hang on it, so the engine then stays in this process."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) >= 2 and threading.active_count() == 1


async def resolve_many(
    names: Iterable[str],
    resolver: str,
    *,
    qtypes: Iterable[str] = ("A",),
    hold_window: float = 1.0,
    timeout: float = 5.0,
    concurrency: int = 500,
    on_result: OnResult,
    worker: bool | None = None,
) -> BulkStats:
    """Query every name (each type in ``qtypes``) at ``resolver`` (``IP[:PORT]``) over UDP.

    ``on_result(name, observations, start_wall_time, runtime)`` is called once
    per name when all its queries are finished, with the observation dicts the
    ``dns`` probe would store (ids 1.. in completion order, times relative to
    the name's first query). Names are normalised like the probe's targets
    (IDN to punycode); names that cannot be encoded are skipped and listed in
    ``BulkStats.invalid_names``. An exception raised by ``on_result`` stops the
    run and is re-raised here. Raises ``ConfigError`` for unusable arguments.

    ``worker``: run the network side (sockets, sending, receiving, windows) in
    a forked worker process while this one decodes the datagrams and calls
    ``on_result`` (``censorscope.measure.dns_bulk_worker``); None (default)
    does so when ``fork`` exists and there are two CPUs or more. Names are
    still read from ``names`` here, lazily, and ``on_result`` runs here.
    """
    qtypes = tuple(qtypes)
    if not qtypes:
        raise ConfigError("qtypes is empty")
    if hold_window < 0 or timeout <= 0 or concurrency < 1:
        raise ConfigError("need hold_window >= 0, timeout > 0 and concurrency >= 1")
    host, port = parse_resolver(resolver, "udp")
    types = _types(qtypes)
    shown = format_host_port(host, port)
    if worker is None:
        worker = _use_worker()
    started = time.monotonic()
    if worker:
        from censorscope.measure.dns_bulk_worker import run_in_worker

        invalid = BulkStats()

        def report(raw: RawResult, name: str, wire: bytes) -> None:
            on_result(*decode(raw, name, wire, types, shown, hold_window))

        with _fewer_gc_passes():
            stats = await run_in_worker(prepared(names, invalid), resolver, qtypes, hold_window, timeout,
                                        concurrency, report)
        stats.invalid_names = invalid.invalid_names
        stats.runtime = time.monotonic() - started
        return stats

    stats = BulkStats()

    def emit(raw: RawResult) -> None:
        name, wire = raw[0]
        on_result(*decode(raw, name, wire, types, shown, hold_window))

    try:
        engine = _Engine(((item, item[1]) for item in prepared(names, stats)), resolver, qtypes, hold_window,
                         timeout, concurrency, emit)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    engine.stats = stats
    try:
        with _fewer_gc_passes():
            engine.fill()
            await engine.done
    finally:
        engine.close()
        engine.stats.runtime = time.monotonic() - started
    return engine.stats
