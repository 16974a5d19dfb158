"""Low-level network-namespace helpers: run a command or Python code inside one.

Two ways in:

- ``ns_argv(ns, argv)`` prefixes a command with ``ip netns exec NS``; that gives the
  process a private mount namespace in which every file under ``/etc/netns/NS/``
  (the lab's ``resolv.conf``) is bind-mounted over ``/etc``. Use it for daemons
  and for anything that may resolve names.
- ``call_in(ns, fn)`` runs a Python callable in a fresh thread that has joined the
  namespace with ``setns(2)`` (namespace membership is per thread; sockets keep the
  namespace they were created in). It does *not* change ``/etc/resolv.conf``: pass
  resolvers explicitly.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

NETNS_DIR = "/run/netns"
ETC_NETNS_DIR = "/etc/netns"
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def ns_path(ns: str) -> str:
    """The bind-mounted namespace file of system namespace ``ns``."""
    return os.path.join(NETNS_DIR, ns)


def exists(ns: str) -> bool:
    """True when the system namespace ``ns`` exists."""
    return os.path.exists(ns_path(ns))


def ns_argv(ns: str, argv: list[str]) -> list[str]:
    """``argv`` run inside namespace ``ns`` (via ``ip netns exec``)."""
    return ["ip", "netns", "exec", ns, *argv]


def enter(ns: str) -> None:
    """Move the *calling thread* into network namespace ``ns`` (never call on the main thread)."""
    fd = os.open(ns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in(ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a new thread inside ``ns`` and return its result.

    Exceptions propagate to the caller. The thread ends afterwards, so no other
    code ever runs in the namespace by accident.
    """
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            enter(ns)
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=runner, name=f"netns:{ns}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_async_in(ns: str, coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine (made by ``coro_factory``) on its own event loop inside ``ns``."""
    return call_in(ns, lambda: asyncio.run(_wrap(coro_factory)))


async def _wrap(coro_factory: Callable[[], Awaitable[T]]) -> T:
    return await coro_factory()


def pids_in(ns: str) -> list[int]:
    """Pids of the processes whose network namespace is ``ns`` (like ``ip netns pids``)."""
    try:
        st = os.stat(ns_path(ns))
    except FileNotFoundError:
        return []
    key = (st.st_dev, st.st_ino)
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            s = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (s.st_dev, s.st_ino) == key and int(entry) != me:
            out.append(int(entry))
    return out


def is_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # the state letter follows the ")" that closes the command name
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")
