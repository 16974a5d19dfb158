"""udp_exchange retransmits on silence (as the VPN protocols' own clients do), and only on silence."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from censorscope.probes.failures import GENERIC_TIMEOUT
from censorscope.probes.observation import Recorder
from censorscope.probes.vpn_common import udp_exchange

pytestmark = pytest.mark.net


def _server(drop_first: int) -> tuple[socket.socket, list[bytes]]:
    """UDP echo on 127.0.0.1 that ignores the first ``drop_first`` datagrams (a lossy path)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    seen: list[bytes] = []

    def run() -> None:
        while True:
            try:
                data, peer = srv.recvfrom(2048)
            except OSError:
                return
            seen.append(data)
            if len(seen) > drop_first:
                srv.sendto(b"answer:" + data, peer)

    threading.Thread(target=run, daemon=True).start()
    return srv, seen


async def _exchange(port: int, **kw: float) -> object:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", port))
    try:
        return await udp_exchange(Recorder(), sock, [b"hello"], stop=lambda d: True, **kw)
    finally:
        sock.close()


def _exchange_via(drop_first: int, **kw: float) -> tuple[object, list[bytes]]:
    """One exchange with a server that drops the first ``drop_first`` datagrams: (result, datagrams seen)."""
    srv, seen = _server(drop_first)
    try:
        return asyncio.run(_exchange(srv.getsockname()[1], **kw)), seen
    finally:
        srv.close()


def test_lost_first_datagram_is_sent_again():
    res, seen = _exchange_via(1, timeout=3.0, resend_every=0.3)
    assert res.failure is None and [d for _, d in res.datagrams] == [b"answer:hello"]
    assert res.transmissions == 2 and res.bytes_sent == 10 and seen == [b"hello", b"hello"]


def test_without_resend_one_loss_is_a_timeout():
    res, seen = _exchange_via(1, timeout=0.8)
    assert res.failure == GENERIC_TIMEOUT and res.transmissions == 1 and seen == [b"hello"]


def test_no_resend_once_anything_came_and_silence_until_the_timeout():
    res, seen = _exchange_via(0, timeout=1.0, resend_every=0.2)
    assert res.failure is None and res.transmissions == 1 and seen == [b"hello"]
    res, seen = _exchange_via(100, timeout=1.0, resend_every=0.3)  # drops everything: resends, then the timeout
    assert res.failure == GENERIC_TIMEOUT and 2 <= res.transmissions <= 4 and len(seen) == res.transmissions
