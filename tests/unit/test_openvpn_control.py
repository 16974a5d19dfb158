"""The OpenVPN reliability layer carrying TLS (probes/openvpn_tls.py), without sockets.

A test-side peer plays the server: a TLS server on MemoryBIOs whose records
travel in P_CONTROL_V1 packets, with its own acks and retransmissions. The
first server flight is reordered and one of its packets is lost, so the
client must hold later packets back, deliver in packet-id order, and
acknowledge the retransmission.
"""

from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path

import pytest

from censorscope.probes.openvpn_tls import ControlChannel, Session
from censorscope.probes.wire import openvpn as wire

sys.path.insert(0, str(Path(__file__).parent.parent / "net"))
from vpn_certs import make_pki  # noqa: E402


@pytest.fixture
def contexts(tmp_path):
    pki = make_pki(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki["server_cert"], pki["server_key"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(pki["ca"])
    return client, server


class _Server:
    """The server side of the control channel after its hard reset (packet id 0)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inb, self.outb, server_side=True)
        self.sid = os.urandom(8)
        self.pid = 1
        self.expect = 1  # the client's hard reset was 0, its ClientHello is 1
        self.client_sid = b""
        self.unacked: dict[int, bytes] = {}
        self.to_ack: list[int] = []
        self.done = False

    def feed(self, raw: bytes) -> None:
        p = wire.parse(raw)
        self.client_sid = p.session_id
        for a in p.acks:
            self.unacked.pop(a, None)
        if p.opcode == wire.CONTROL_V1:
            self.to_ack.append(p.packet_id)
            if p.packet_id == self.expect:
                self.inb.write(p.payload)
                self.expect += 1
        try:
            self.tls.do_handshake()
            self.done = True
        except ssl.SSLWantReadError:
            pass

    def flight(self) -> list[bytes]:
        data = self.outb.read()
        out = []
        for i in range(0, len(data), 250):
            acks, self.to_ack = self.to_ack[:4], self.to_ack[4:]
            pkt = wire.build(wire.Packet(wire.CONTROL_V1, 0, self.sid, acks, self.client_sid if acks else None,
                                         self.pid, data[i : i + 250]))
            self.unacked[self.pid] = pkt
            self.pid += 1
            out.append(pkt)
        if not out and self.to_ack:
            out.append(wire.build(wire.Packet(wire.ACK_V1, 0, self.sid, self.to_ack[:4], self.client_sid)))
            self.to_ack = self.to_ack[4:]
        return out


def test_tls_over_reliability_layer_with_loss_and_reordering(contexts):
    client_ctx, server_ctx = contexts
    sess = Session(None)
    sess.packet(wire.HARD_RESET_CLIENT_V2)  # message packet id 0
    server = _Server(server_ctx)
    chan = ControlChannel(sess, server.sid, client_ctx, server_reset_pid=0)
    to_server = chan.initial()
    assert wire.parse(to_server[0]).acks == [0]  # the server's reset is acked on the ClientHello
    lost = None
    for _ in range(30):
        for raw in to_server:
            server.feed(raw)
        flight = server.flight()
        if lost is None and len(flight) >= 3:
            lost = wire.parse(flight[0]).packet_id
            flight = list(reversed(flight[1:]))  # first packet lost, the rest arrive in reverse order
        elif not flight and server.unacked:
            flight = list(server.unacked.values())  # server retransmission timer
        for raw in flight:
            chan.receive(wire.parse(raw))
        to_server = chan.outgoing()
        if chan.done and server.done and not server.unacked:
            break
    assert lost is not None, "the server's first flight should span several packets"
    assert chan.error is None and chan.done and server.done
    assert chan.tls.version() in ("TLSv1.2", "TLSv1.3")
    assert not server.unacked  # every server packet, the retransmitted one too, was acknowledged


def test_retransmit_keeps_message_ids(contexts):
    client_ctx, _ = contexts
    sess = Session(None)
    sess.packet(wire.HARD_RESET_CLIENT_V2)
    chan = ControlChannel(sess, os.urandom(8), client_ctx)
    first = [wire.parse(p) for p in chan.initial() if wire.parse(p).opcode == wire.CONTROL_V1]
    again = [wire.parse(p) for p in chan.retransmit()]
    assert [p.packet_id for p in again] == [p.packet_id for p in first] and again[0].payload == first[0].payload
    assert chan.retransmissions == len(first)
