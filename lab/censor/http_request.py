"""Parse the start of an HTTP/1.x request as a keyword-filtering censor does.

Only complete lines count: the request line gives the method and the path, a
complete ``Host:`` header line gives the host. The path is %-decoded before
keyword matching (the GFW decodes it: Rambert et al., WWW 2021), so
``/%66alun`` matches the keyword ``falun``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

METHODS = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What the censor read; ``complete`` is True once the header block ended."""

    method: str
    path: str  # %-decoded, lower case
    host: str | None  # lower case, port stripped
    complete: bool


def looks_like_http(data: bytes) -> bool:
    """The stream starts with (a prefix of) a known method followed by a space."""
    head = data[:8]
    for m in METHODS:
        cand = m + b" "
        if head.startswith(cand) or (len(head) < len(cand) and cand.startswith(head)):
            return True
    return False


def parse_request(data: bytes) -> HttpRequest | None:
    """Parse a request prefix; None when it is not HTTP or the request line is incomplete."""
    if not data or not looks_like_http(data):
        return None
    line_end = data.find(b"\r\n")
    if line_end < 0:
        return None
    parts = data[:line_end].split(b" ")
    if len(parts) < 2:
        return None
    method, target = parts[0], parts[1]
    path = unquote_to_bytes(target).decode("latin-1").lower()
    host = None
    header_end = data.find(b"\r\n\r\n")
    block = data[line_end + 2:header_end if header_end >= 0 else len(data)]
    lines = block.split(b"\r\n")
    if header_end < 0:
        lines = lines[:-1]  # the last line may be cut in the middle
    for line in lines:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            host = _strip_port(value.strip().decode("latin-1").lower())
            break
    return HttpRequest(method.decode("latin-1"), path, host, header_end >= 0)


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")
