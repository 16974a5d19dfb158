"""The bulk DNS engine's network side in a forked worker process.

Why: one Python thread tops out at ~20k queries/s when it also decodes every
datagram, builds the stored dicts and serialises them (measured ~45 µs of
CPU per query, about half of it decoding and recording). With two CPUs the
work splits in a pipeline: the worker sends, receives and keeps every
datagram of the hold window (``dns_bulk._Engine``), the parent decodes them
(``dns_bulk.decode``) and calls ``on_result``; each side does about half.

Protocol over one ``AF_UNIX`` stream socketpair, frames of a 4-byte length
and a ``marshal``-ed tuple (both ends are this code, forked from one process;
marshal is the cheapest serialiser for plain tuples, lists, bytes and str):

- worker -> parent: ``("want",)`` (send another chunk of names),
  ``("results", [RawResult, ...])``, ``("done", BulkStats fields)``,
  ``("error", text)``;
- parent -> worker: ``("names", [wire form, ...])``, ``("end",)``.

Names are read from the caller's iterable and prepared (IDNA, wire form) in
the parent, lazily (at most two chunks ahead), so a generator with side
effects (the runner's) behaves as in one process. The worker numbers them in
the order received and results carry that number, so only wire forms travel
to the worker and the name text never does. The parent never blocks on the worker: it answers each
``want`` with one chunk, which the socket buffer always holds. The worker
blocks while the parent is behind on results (back-pressure). If anything
fails in the parent (``on_result`` raising, cancellation), the worker is
killed; if the worker dies, the parent raises ``RuntimeError``.

The worker's loop is the C engine (``_dns_bulk_engine.c``: the same
semantics, frames and results as ``dns_bulk._Engine``, about a third of its
CPU per query) when it is built and ``CENSORSCOPE_NO_CEXT`` is not ``1``;
otherwise ``dns_bulk._Engine`` on asyncio. ``engine_kind()`` says which.

The worker ignores SIGINT (the parent decides when to stop), closes every
inherited file descriptor but its socket, freezes the objects it inherited
(no finaliser of the parent's objects, such as a buffered file, ever runs in
it) and leaves with ``os._exit``. It stops when the parent goes away (end of
file on its socket).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import dataclasses
import gc
import itertools
import marshal
import os
import signal
import socket
import struct
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from censorscope.measure.dns_bulk import (
    ENDED,
    BulkStats,
    RawResult,
    _Engine,
    _sockaddr,
    _Socket,
    _types,
    question_key,
    sockaddr_host_port,
)
from censorscope.probes import failures
from censorscope.probes.cext import optional
from censorscope.probes.dns import parse_resolver, read_error_queue
from censorscope.probes.net import format_host_port
from censorscope.probes.wire import dnswire

__all__ = ["engine_kind", "run_in_worker"]

_FRAME = struct.Struct("!I")
CHUNK = 2048  # names per message to the worker
RESULTS_BATCH = 256  # finished names per message to the parent
FLUSH_EVERY = 0.02  # seconds: results never wait longer than this in the worker


def _frame(message: tuple[Any, ...]) -> bytes:
    data = marshal.dumps(message)
    return _FRAME.pack(len(data)) + data


async def run_in_worker(
    names: Iterable[tuple[str, bytes]], resolver: str, qtypes: tuple[str, ...], hold_window: float, timeout: float,
    concurrency: int, emit: Callable[[RawResult, str, bytes], None],
) -> BulkStats:
    """Run the engine in a forked worker on prepared ``(name, wire form)`` pairs.

    ``emit(result, name, wire)`` is called here for each finished name. Returns the worker's stats.
    """
    source = iter(names)
    sent: dict[int, tuple[str, bytes]] = {}  # number -> (name, wire) of the names the worker has
    numbers = itertools.count()
    parent_end, worker_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        status = 1
        try:
            parent_end.close()
            _worker(worker_end, resolver, qtypes, hold_window, timeout, concurrency)
            status = 0
        finally:
            os._exit(status)
    worker_end.close()
    finished = False
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_unix_connection(sock=parent_end)
        while True:
            try:
                size = _FRAME.unpack(await reader.readexactly(4))[0]
                message = marshal.loads(await reader.readexactly(size))
            except asyncio.IncompleteReadError:
                raise RuntimeError("the bulk DNS worker process exited unexpectedly") from None
            kind = message[0]
            if kind == "results":
                pop = sent.pop
                for raw in message[1]:
                    emit(raw, *pop(raw[0]))
            elif kind == "want":
                chunk = list(itertools.islice(source, CHUNK))
                for item in chunk:
                    sent[next(numbers)] = item
                writer.write(_frame(("names", [wire for _name, wire in chunk]) if chunk else ("end",)))
            elif kind == "done":
                finished = True
                return BulkStats(**message[1])
            else:
                raise RuntimeError(f"the bulk DNS worker failed: {message[1]}")
    finally:
        if not finished:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if writer is not None:
            writer.close()
        else:
            parent_end.close()
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class _Feed:
    """The names the parent sent, numbered; ``more`` is the engine's ``more_names``."""

    def __init__(self, request: Callable[[], None]) -> None:
        self.chunks: collections.deque[list[bytes]] = collections.deque()
        self.request = request
        self.ended = False
        self.received = 0

    def more(self) -> Iterator[tuple[int, bytes]] | None:
        if not self.chunks:
            return ENDED if self.ended else None
        chunk = self.chunks.popleft()
        if not self.ended:
            self.request()  # one chunk ahead: the next is on its way while this one is used
        first = self.received
        self.received += len(chunk)
        return enumerate(chunk, first)


def _worker(sock: socket.socket, resolver: str, qtypes: tuple[str, ...], hold_window: float, timeout: float,
            concurrency: int) -> None:
    gc.freeze()  # inherited objects are never collected here, so none of their finalisers runs twice
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)  # the parent's event loop owns the inherited wake-up socket
    # Only the socket to the parent stays open: no inherited file (the run's JSONL file and its lock,
    # the parent's event loop) outlives the parent because of this process.
    fd = sock.fileno()
    os.closerange(3, fd)
    os.closerange(fd + 1, _max_fd())
    sock.setblocking(True)
    try:
        engine = _c_engine()
        if engine is not None:
            _c_worker_main(engine, sock, resolver, qtypes, hold_window, timeout, concurrency)
        else:
            asyncio.run(_worker_main(sock, resolver, qtypes, hold_window, timeout, concurrency))
    except BaseException:
        with contextlib.suppress(OSError):
            sock.sendall(_frame(("error", traceback.format_exc(limit=8))))
        raise


def _max_fd() -> int:
    try:
        return min(os.sysconf("SC_OPEN_MAX"), 1 << 20)
    except (OSError, ValueError):
        return 65536


async def _worker_main(sock: socket.socket, resolver: str, qtypes: tuple[str, ...], hold_window: float,
                       timeout: float, concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    send = sock.sendall  # blocking: waits while the parent is behind (back-pressure)
    batch: list[RawResult] = []

    def flush() -> None:
        if batch:
            send(_frame(("results", batch[:])))
            batch.clear()

    def emit(raw: RawResult) -> None:
        batch.append(raw)
        if len(batch) >= RESULTS_BATCH:
            flush()

    feed = _Feed(lambda: send(_frame(("want",))))
    engine = _Engine((), resolver, qtypes, hold_window, timeout, concurrency, emit, feed.more)
    buffer = bytearray()

    def on_message() -> None:
        try:
            data = sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        if not data:  # the parent went away: stop
            engine._abort(RuntimeError("the parent closed the connection"))
            return
        buffer.extend(data)
        while len(buffer) >= 4:
            size = _FRAME.unpack_from(buffer)[0]
            if len(buffer) < 4 + size:
                break
            message = marshal.loads(bytes(buffer[4:4 + size]))
            del buffer[:4 + size]
            if message[0] == "names":
                feed.chunks.append(message[1])
            else:
                feed.ended = True
        engine.fill()

    def tick() -> None:
        nonlocal ticker
        try:
            flush()
        except BaseException as e:
            engine._abort(e)
            return
        ticker = loop.call_later(FLUSH_EVERY, tick)

    loop.add_reader(sock.fileno(), on_message)
    ticker = loop.call_later(FLUSH_EVERY, tick)
    try:
        send(_frame(("want",)))
        send(_frame(("want",)))
        engine.fill()
        await engine.done
        flush()
        send(_frame(("done", dataclasses.asdict(engine.stats))))
    finally:
        ticker.cancel()
        loop.remove_reader(sock.fileno())
        engine.close()


def _c_engine() -> ModuleType | None:
    """The C engine module, or None when it is not built or ``CENSORSCOPE_NO_CEXT=1`` asks for Python."""
    return optional("censorscope.measure._dns_bulk_engine")


def engine_kind() -> str:
    """``"C"`` or ``"Python"``: the loop a worker started now would run."""
    return "C" if _c_engine() is not None else "Python"


class _Host:
    """What the C engine asks Python for (rare events: each is the Python engine's own code)."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.sockets: list[_Socket] = []

    def new_socket(self) -> tuple[socket.socket, int, bytes]:
        """A socket set up as ``dns_bulk._Socket`` does (buffers, TTL and ICMP error reporting), its
        descriptor and its 65,536 ids in their random order (native 16-bit integers)."""
        s = _Socket(self.family)
        self.sockets.append(s)
        return s.sock, s.fd, array.array("H", s.free).tobytes()

    def read_errors(self, sock: socket.socket) -> list[tuple[bytes, dict[str, Any]]]:
        return read_error_queue(sock)

    def question_key(self, data: bytes) -> bytes | None:
        return question_key(data)

    def classify(self, err: int) -> str:
        return failures.classify(OSError(err, os.strerror(err)))

    def source_text(self, key: bytes) -> str:
        return format_host_port(*sockaddr_host_port(key))

    def close(self) -> None:
        for s in self.sockets:
            s.sock.close()


def _c_worker_main(engine: ModuleType, sock: socket.socket, resolver: str, qtypes: tuple[str, ...],
                   hold_window: float, timeout: float, concurrency: int) -> None:
    """The worker's loop in C: same messages to and from the parent as ``_worker_main``."""
    host, port = parse_resolver(resolver, "udp")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    tails = tuple(tail for _text, _code, tail in _types(qtypes))
    helper = _Host(family)
    try:
        stats = engine.run(helper, sock.fileno(), _sockaddr(family, (host, port)), tails, dnswire._HEADER_TAIL,
                           dnswire._OPT_EDNS, hold_window, timeout, concurrency, time.time() - time.monotonic())
    finally:
        helper.close()
    sock.sendall(_frame(("done", {**dataclasses.asdict(BulkStats()), **stats})))
