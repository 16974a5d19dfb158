"""Decrypt a QUIC v1 Initial packet (RFC 9001 s5: keys from the client's Destination Connection ID)
and return the ClientHello's SNI: what the GFW does since 2024 (Zohaib et al., USENIX Security 2025).

Key derivation and header/packet protection come from aioquic
(``CryptoPair.setup_initial``); this module only walks the frames. CRYPTO
frames are collected from offset 0; a ClientHello that does not fit the first
Initial is reported as incomplete (no SNI), as the GFW itself does not
reassemble across Initials (Zohaib et al. s5).
"""

from __future__ import annotations

from censorscope.lab.censor.tls_hello import HelloStatus, parse_client_hello

QUIC_V1 = 0x00000001


def _varint(data: bytes, off: int) -> tuple[int, int]:
    first = data[off]
    n = 1 << (first >> 6)
    if off + n > len(data):
        raise IndexError("truncated varint")
    value = first & 0x3F
    for b in data[off + 1:off + n]:
        value = (value << 8) | b
    return value, off + n


def is_initial(payload: bytes) -> bool:
    """A long-header QUIC v1 Initial (first byte 0b11xx_xxxx with type 0)."""
    return (len(payload) >= 7 and payload[0] & 0xC0 == 0xC0 and (payload[0] >> 4) & 0x3 == 0
            and int.from_bytes(payload[1:5], "big") == QUIC_V1)


def initial_sni(payload: bytes) -> str | None:
    """The SNI of the ClientHello in a client Initial, or None (not an Initial, undecryptable, no SNI)."""
    if not is_initial(payload):
        return None
    try:
        return _sni(payload)
    except (IndexError, ValueError):
        return None


def _sni(payload: bytes) -> str | None:
    from aioquic.quic.crypto import CryptoError, CryptoPair

    off = 5
    dcid_len = payload[off]
    dcid = payload[off + 1:off + 1 + dcid_len]
    off += 1 + dcid_len
    off += 1 + payload[off]  # source connection id
    token_len, off = _varint(payload, off)
    off += token_len
    length, off = _varint(payload, off)
    end = off + length
    if end > len(payload):
        return None
    pair = CryptoPair()
    pair.setup_initial(cid=dcid, is_client=False, version=QUIC_V1)
    try:
        _header, plain, _pn, _ = pair.recv.decrypt_packet(payload[:end], off, 0)
    except CryptoError:
        return None
    hello = _crypto_stream(plain)
    if len(hello) < 4 or hello[0] != 0x01:
        return None
    record = b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello  # as a TLS record for the shared parser
    res = parse_client_hello(record)
    return res.sni if res.status is HelloStatus.SNI else None


def _crypto_stream(plain: bytes) -> bytes:
    """The contiguous CRYPTO data from offset 0 in a decrypted Initial payload."""
    chunks: dict[int, bytes] = {}
    off = 0
    while off < len(plain):
        ftype = plain[off]
        if ftype in (0x00, 0x01):  # PADDING, PING
            off += 1
        elif ftype in (0x02, 0x03):  # ACK (walk it)
            off += 1
            for _ in range(2):
                _, off = _varint(plain, off)  # largest, delay
            count, off = _varint(plain, off)
            _, off = _varint(plain, off)  # first range
            for _ in range(2 * count):
                _, off = _varint(plain, off)
            if ftype == 0x03:
                for _ in range(3):
                    _, off = _varint(plain, off)
        elif ftype == 0x06:
            o, off = _varint(plain, off + 1)
            n, off = _varint(plain, off)
            chunks[o] = plain[off:off + n]
            off += n
        elif ftype == 0x1C:  # CONNECTION_CLOSE: nothing more of interest
            break
        else:
            break
    out = b""
    while len(out) in chunks:
        nxt = chunks.pop(len(out))
        if not nxt:
            break
        out += nxt
    return out
