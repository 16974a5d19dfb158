"""The TLS proxy's building blocks on socket pairs: peeking a (split) ClientHello, relaying bytes."""

from __future__ import annotations

import socket
import threading
import time

from test_censor_packets import client_hello

from censorscope.lab.censor.tls_hello import HelloStatus
from censorscope.lab.censor.tls_proxy import peek_hello, relay


def test_peek_waits_for_a_split_hello_without_consuming_it():
    a, b = socket.socketpair()
    hello = client_hello("www.blocked.example")

    def send() -> None:
        a.sendall(hello[:20])
        time.sleep(0.2)
        a.sendall(hello[20:])

    t = threading.Thread(target=send)
    t.start()
    assert peek_hello(b, timeout=10) == (HelloStatus.SNI, "www.blocked.example")
    t.join()
    assert b.recv(65536) == hello  # nothing was consumed: the real server still gets the whole hello
    a.close()
    b.close()


def test_peek_reports_non_tls_and_silence():
    a, b = socket.socketpair()
    a.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    assert peek_hello(b, timeout=5)[0] is HelloStatus.NOT_TLS
    c, d = socket.socketpair()
    assert peek_hello(d, timeout=0.2) == (HelloStatus.INCOMPLETE, None)
    for s in (a, b, c, d):
        s.close()


def test_relay_copies_both_ways_and_passes_half_close():
    client, proxy_in = socket.socketpair()
    proxy_out, server = socket.socketpair()
    t = threading.Thread(target=relay, args=(proxy_in, proxy_out), daemon=True)
    t.start()
    client.sendall(b"request")
    client.shutdown(socket.SHUT_WR)
    got = b""
    while chunk := server.recv(100):
        got += chunk
    assert got == b"request"  # EOF reached the server: the half-close was passed on
    server.sendall(b"response" * 10000)
    server.close()
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    assert data == b"response" * 10000
    t.join(10)
    assert not t.is_alive()
    client.close()
