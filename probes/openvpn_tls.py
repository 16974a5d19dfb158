"""OpenVPN control channel: the reliability layer carrying TLS, driven without sockets.

After the hard-reset exchange, OpenVPN runs a TLS handshake inside
P_CONTROL_V1 packets: each packet carries a message packet id, the receiver
acknowledges it (in a P_ACK_V1 or piggy-backed on its own control packets),
the sender retransmits what is not acknowledged, and the receiver feeds the
payloads to TLS in packet-id order. ``ControlChannel`` does exactly that with
``ssl.MemoryBIO``: feed it the server's packets (``receive``), send what
``outgoing()``/``retransmit()`` return, until ``done`` (handshake complete) or
``error`` (TLS failed). The probe (``openvpn``) owns the sockets and the clock.
"""

from __future__ import annotations

import os
import ssl
import time

from censorscope.probes.wire import openvpn as wire

#: payload bytes per P_CONTROL_V1 (OpenVPN's default tls-mtu is 1250 including headers)
FRAGMENT = 1000
MAX_ACKS = 4


class Session:
    """Our side of the control channel: session id and packet counters."""

    def __init__(self, wrap: wire.Wrap) -> None:
        self.wrap = wrap
        self.session_id = os.urandom(8)
        self.replay_pid = 1
        self.msg_pid = 0

    def packet(self, opcode: int, acks: list[int] | None = None, remote: bytes | None = None,
               payload: bytes = b"", msg_pid: int | None = None) -> bytes:
        """Build one packet; a new message packet id is taken unless ``msg_pid`` (a retransmission) is given."""
        if opcode == wire.ACK_V1:
            pid = None
        elif msg_pid is not None:
            pid = msg_pid
        else:
            pid = self.msg_pid
            self.msg_pid += 1
        p = wire.Packet(opcode, 0, self.session_id, acks or [], remote if acks else None, pid, payload,
                        self.replay_pid, int(time.time()))
        self.replay_pid += 1  # tls-auth/tls-crypt replay protection: every packet, retransmissions too
        return wire.build(p, self.wrap)

    @property
    def reset_opcode(self) -> int:
        """V3 (opcode 10) with a tls-crypt-v2 key, else V2 (opcode 7)."""
        if isinstance(self.wrap, wire.TlsCrypt) and self.wrap.wkc:
            return wire.HARD_RESET_CLIENT_V3
        return wire.HARD_RESET_CLIENT_V2

    def is_answer(self, p: wire.Packet) -> bool:
        """A server hard reset addressed to our session."""
        return p.opcode in wire.SERVER_RESETS and p.remote_session_id in (None, self.session_id)


class ControlChannel:
    """TLS over the OpenVPN reliability layer, for one session after the reset exchange."""

    def __init__(self, session: Session, remote_session_id: bytes, context: ssl.SSLContext,
                 server_reset_pid: int = 0) -> None:
        self.session = session
        self.remote = remote_session_id
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._in, self._out, server_side=False)
        self._next = server_reset_pid + 1  # the next server packet id TLS needs
        self._held: dict[int, bytes] = {}
        self._acks: list[int] = []
        self._unacked: dict[int, bytes] = {}  # our msg pid -> payload
        self.done = False
        self.error: ssl.SSLError | None = None
        self.sent = self.received = self.retransmissions = 0

    def _pump(self) -> None:
        if self.done or self.error:
            return
        try:
            self.tls.do_handshake()
            self.done = True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self.error = exc

    def receive(self, p: wire.Packet) -> None:
        """Process one server packet of our session (acks, TLS payload)."""
        for a in p.acks:
            self._unacked.pop(a, None)
        if p.opcode != wire.CONTROL_V1 or p.packet_id is None:
            return
        self.received += 1
        self._acks.append(p.packet_id)  # ack duplicates too: our earlier ack may have been lost
        if p.packet_id >= self._next:
            self._held.setdefault(p.packet_id, p.payload)
        while self._next in self._held:
            self._in.write(self._held.pop(self._next))
            self._next += 1
        self._pump()

    def outgoing(self) -> list[bytes]:
        """Packets to send now: new TLS data in P_CONTROL_V1 (acks piggy-backed), else a bare P_ACK_V1."""
        self._pump()
        data = self._out.read()
        out = []
        for i in range(0, len(data), FRAGMENT):
            acks, self._acks = self._acks[:MAX_ACKS], self._acks[MAX_ACKS:]
            pid = self.session.msg_pid
            out.append(self.session.packet(wire.CONTROL_V1, acks, self.remote, data[i : i + FRAGMENT]))
            self._unacked[pid] = data[i : i + FRAGMENT]
        while self._acks:
            acks, self._acks = self._acks[:MAX_ACKS], self._acks[MAX_ACKS:]
            out.append(self.session.packet(wire.ACK_V1, acks, self.remote))
        self.sent += len(out)
        return out

    def retransmit(self) -> list[bytes]:
        """Every control packet the server has not acknowledged yet (same message packet ids)."""
        out = [self.session.packet(wire.CONTROL_V1, None, None, payload, msg_pid=pid)
               for pid, payload in sorted(self._unacked.items())]
        self.retransmissions += len(out)
        self.sent += len(out)
        return out

    def send_app(self, data: bytes) -> None:
        """Queue application data (after the handshake) for ``outgoing()``."""
        self.tls.write(data)

    def read_app(self) -> bytes:
        """Plaintext the server has sent so far (b"" when none is complete yet)."""
        out = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return out
            except ssl.SSLError as exc:
                self.error = exc
                return out
            if not chunk:
                return out
            out += chunk

    def initial(self) -> list[bytes]:
        """The first flight: ack of the server's hard reset piggy-backed on the ClientHello."""
        self._acks.append(self._next - 1)
        return self.outgoing()
