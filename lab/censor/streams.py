"""Per-flow state: the reassembled start of each client stream.

The censor only sees the first packets of a TCP flow (the kernel queues them
with ``connbytes``), so it keeps, for each direction of a flow, the contiguous
prefix of the payload bytes (up to ``MAX_PREFIX``) plus the set of behaviours
that already decided about the flow. Out-of-order segments wait in a small
buffer until the gap is filled. Entries idle for ``IDLE_TIMEOUT`` seconds are
forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .packet import FIN, RST, SYN, Packet

MAX_PREFIX = 16384
IDLE_TIMEOUT = 120.0
MAX_FLOWS = 65536


@dataclass(slots=True)
class StreamState:
    """State of one direction of one flow."""

    next_seq: int | None = None  # sequence number of the byte after the prefix
    prefix: bytes = b""
    pending: dict[int, bytes] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)
    last_seen: float = 0.0


class StreamTable:
    """Directional flow states keyed by (src, sport, dst, dport)."""

    def __init__(self) -> None:
        self.flows: dict[tuple[str, int, str, int], StreamState] = {}
        self._last_sweep = 0.0

    def get(self, key: tuple[str, int, str, int]) -> StreamState | None:
        """The state for ``key`` if known."""
        return self.flows.get(key)

    def update(self, pkt: Packet, now: float) -> tuple[StreamState, bool]:
        """Record ``pkt``; returns its flow state and whether the prefix grew."""
        self._sweep(now)
        key = pkt.key()
        st = self.flows.get(key)
        if st is None or pkt.is_syn:
            st = StreamState()
            self.flows[key] = st
        st.last_seen = now
        if pkt.flags & SYN:
            st.next_seq = (pkt.seq + 1) & 0xFFFFFFFF
            return st, False
        if pkt.flags & RST or not pkt.payload:
            if pkt.flags & FIN and st.next_seq is None:
                st.next_seq = pkt.seq
            return st, False
        if st.next_seq is None:  # joined mid-flow (no SYN seen): start here
            st.next_seq = pkt.seq
        grew = self._add(st, pkt.seq, pkt.payload)
        return st, grew

    def _add(self, st: StreamState, seq: int, data: bytes) -> bool:
        assert st.next_seq is not None
        offset = (seq - st.next_seq) & 0xFFFFFFFF
        if offset >= 0x80000000:  # (partly) old data: keep only the new tail
            back = 0x100000000 - offset
            if back >= len(data):
                return False
            data, offset = data[back:], 0
        if offset > 0:
            if len(st.prefix) + offset < MAX_PREFIX:
                st.pending[seq] = data
            return False
        room = MAX_PREFIX - len(st.prefix)
        if room <= 0:
            return False
        st.prefix += data[:room]
        st.next_seq = (st.next_seq + len(data)) & 0xFFFFFFFF
        while st.pending:  # fill from segments that arrived early
            nxt = st.pending.pop(st.next_seq, None)
            if nxt is None:
                break
            st.prefix += nxt[:MAX_PREFIX - len(st.prefix)]
            st.next_seq = (st.next_seq + len(nxt)) & 0xFFFFFFFF
        return True

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < 10 and len(self.flows) < MAX_FLOWS:
            return
        self._last_sweep = now
        stale = [k for k, st in self.flows.items() if now - st.last_seen > IDLE_TIMEOUT]
        for k in stale:
            del self.flows[k]
        if len(self.flows) >= MAX_FLOWS:  # still full: drop the oldest half
            for k, _ in sorted(self.flows.items(), key=lambda kv: kv[1].last_seen)[: MAX_FLOWS // 2]:
                del self.flows[k]
