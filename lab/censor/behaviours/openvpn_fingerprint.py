"""OpenVPN fingerprinting by the opcode sequence of a flow's first packets (UDP and TCP).

Xue et al., "OpenVPN is Open to VPN Fingerprinting" (USENIX Security 2022):
an ISP-deployed filter identified OpenVPN flows, whatever the port, by the
opcodes of the first packets: the client opens with a hard reset
(``P_CONTROL_HARD_RESET_CLIENT_V1/V2/V3``), the server answers with a server
hard reset, and the rest of the handshake uses only control, ACK and data
opcodes. This behaviour records the opcode (``byte >> 3``; over TCP after the
2-byte length prefix) of each payload-carrying packet of a flow and, once
``packets`` opcodes are known, blocks the flow when the sequence fits that
pattern: the packet that completes the pattern and every later packet of the
flow are dropped (both directions). A flow whose sequence does not fit is
left alone for good. With the default ``packets = 2`` the server's reset is
the first dropped packet, so a client never hears from the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..actions import Action, Drop, Log
from ..first_bytes import Seen
from ..packet import TCP, UDP, Packet
from .base import STAGE_INSPECT, Behaviour, Context, Rule
from .vpn_flows import Flows, FlowState

CLIENT_RESETS = frozenset({1, 7, 10})
SERVER_RESETS = frozenset({2, 8})
LATER = frozenset({4, 5, 6, 9})  # control, ack, data v1/v2
MIN_UDP_RESET = 14  # opcode + session id + ack-array length + packet id (no tls-auth/crypt)


@dataclass(frozen=True)
class Params:
    """``packets``: opcodes to see before deciding (1-6); ``transports``: which of udp/tcp to inspect;
    ``ports``: only these server ports (empty: every port: fingerprinting, not port blocking)."""

    packets: int = 2
    transports: tuple[Literal["udp", "tcp"], ...] = ("udp", "tcp")
    ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.packets <= 6:
            raise ValueError("packets must be 1-6")
        if not self.transports:
            raise ValueError("transports must not be empty")
        for p in self.ports:
            if not 1 <= p <= 65535:
                raise ValueError(f"port {p} outside 1-65535")


def opcode(pkt: Packet) -> int | None:
    """The OpenVPN opcode of a packet's payload (None: no payload or not OpenVPN-shaped)."""
    data = pkt.payload
    if pkt.proto == UDP:
        return data[0] >> 3 if len(data) >= 9 else None
    if pkt.proto == TCP and len(data) >= 3:
        length = int.from_bytes(data[:2], "big")
        if 9 <= length <= len(data) - 2 or (length > len(data) - 2 and length < 1600):
            return data[2] >> 3
    return None


def fits(client_ops: list[int], server_ops: list[int], first_len: int, proto: int) -> bool:
    """Does the opcode sequence look like an OpenVPN handshake (Xue et al. 2022)?"""
    if not client_ops or client_ops[0] not in CLIENT_RESETS:
        return False
    if proto == UDP and first_len < MIN_UDP_RESET:
        return False
    if server_ops and server_ops[0] not in SERVER_RESETS:
        return False
    return all(op in LATER for op in client_ops[1:] + server_ops[1:])


class OpenvpnFingerprint(Behaviour):
    """Drop flows whose first opcodes are OpenVPN's."""

    name = "openvpn_fingerprint"
    Params = Params
    stage = STAGE_INSPECT

    def __init__(self, params: Params, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.flows = Flows()

    def queue_rules(self) -> list[Rule]:
        """The first packets of UDP/TCP flows (both directions; TCP allows for the handshake and retransmits)."""
        out = []
        for t in self.params.transports:
            n = self.params.packets + (16 if t == "tcp" else 12)  # blocked flows' retransmissions stay queued
            base = ("-p", t, "-m", "connbytes", "--connbytes", f"0:{n}", "--connbytes-dir", "both",
                    "--connbytes-mode", "packets")
            if self.params.ports:
                for p in self.params.ports:
                    out += [Rule("filter", (*base, "--dport", str(p))), Rule("filter", (*base, "--sport", str(p)))]
            else:
                out.append(Rule("filter", (*base, *(("!", "--dport", "53") if t == "udp" else ()))))
        return out

    def _inspected(self, pkt: Packet) -> bool:
        t = "udp" if pkt.proto == UDP else "tcp" if pkt.proto == TCP else None
        return t in self.params.transports

    def on_packet(self, seen: Seen, now: float) -> list[Action]:
        """Record opcodes; drop the flow once its sequence fits."""
        pkt = seen.pkt
        if not self._inspected(pkt) or (pkt.proto == UDP and 53 in (pkt.sport, pkt.dport)):
            return []
        create = pkt.proto == UDP or pkt.is_syn or bool(pkt.payload)
        st, from_client = self.flows.lookup(pkt, now, create=create)
        if st is None:
            return []
        if st.blocked:
            return [Drop(), Log("openvpn_flow_drop", {})]
        if st.decided:
            return []
        if self.params.ports and (pkt.dport if from_client else pkt.sport) not in self.params.ports:
            st.decided = True
            return []
        op = opcode(pkt)
        if op is None:
            if pkt.payload:
                st.decided = True  # payload that is not OpenVPN-shaped: not this protocol
            return []
        (st.client_ops if from_client else st.server_ops).append(op)
        if len(st.client_ops) == 1 and from_client:
            st.first_len = len(pkt.payload)
        return self._decide(st, pkt)

    def _decide(self, st: FlowState, pkt: Packet) -> list[Action]:
        if not fits(st.client_ops, st.server_ops, st.first_len, pkt.proto):
            st.decided = True
            return []
        if len(st.client_ops) + len(st.server_ops) < self.params.packets:
            return []
        st.blocked = st.decided = True
        return [Drop(), Log("openvpn_fingerprint", {"client_opcodes": list(st.client_ops),
                                                    "server_opcodes": list(st.server_ops)})]
