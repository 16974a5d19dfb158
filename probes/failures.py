"""One failure vocabulary and one classifier.

Every network failure a probe meets is recorded as one of the strings below,
never raised. The strings are OONI's (data format df-007-errors) so that our
data reads like the field's largest data set; the few we add are marked
``# censorscope`` and documented in docs/observations.md.

``classify(exc)`` maps an exception to its string: the errno first (walking
``__cause__``/``__context__``, because httpx and asyncio wrap OSErrors), then
the exception type, else ``unknown_failure: <message>``.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

# --- the vocabulary -------------------------------------------------------
CONNECTION_REFUSED = "connection_refused"
CONNECTION_RESET = "connection_reset"
CONNECTION_ABORTED = "connection_aborted"
GENERIC_TIMEOUT = "generic_timeout_error"
EOF_ERROR = "eof_error"
HOST_UNREACHABLE = "host_unreachable"
NETWORK_UNREACHABLE = "network_unreachable"
ADDRESS_IN_USE = "address_in_use"
ADDRESS_NOT_AVAILABLE = "address_not_available"
PERMISSION_DENIED = "permission_denied"
PROTOCOL_NOT_SUPPORTED = "protocol_not_supported"
ADDRESS_FAMILY_NOT_SUPPORTED = "address_family_not_supported"
BROKEN_PIPE = "broken_pipe"  # censorscope: EPIPE, write after the peer reset
DNS_NXDOMAIN = "dns_nxdomain_error"
DNS_SERVFAIL = "dns_servfail_error"
DNS_REFUSED = "dns_refused_error"
DNS_NO_ANSWER = "dns_no_answer"
DNS_SERVER_MISBEHAVING = "dns_server_misbehaving"
DNS_TEMPORARY_FAILURE = "dns_temporary_failure"
DNS_NON_RECOVERABLE = "dns_non_recoverable_failure"
SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
HTTP_TOO_MANY_REDIRECTS = "http_too_many_redirects"  # censorscope
HTTP_PROTOCOL_ERROR = "http_protocol_error"  # censorscope: malformed response
UNKNOWN_PREFIX = "unknown_failure: "

KNOWN = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and k != "UNKNOWN_PREFIX"
)

_ERRNO = {
    errno.ECONNREFUSED: CONNECTION_REFUSED,
    errno.ECONNRESET: CONNECTION_RESET,
    errno.ECONNABORTED: CONNECTION_ABORTED,
    errno.ETIMEDOUT: GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.EHOSTDOWN: HOST_UNREACHABLE,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.ENETDOWN: NETWORK_UNREACHABLE,
    errno.EADDRINUSE: ADDRESS_IN_USE,
    errno.EADDRNOTAVAIL: ADDRESS_NOT_AVAILABLE,
    errno.EACCES: PERMISSION_DENIED,
    errno.EPERM: PERMISSION_DENIED,
    errno.EPROTONOSUPPORT: PROTOCOL_NOT_SUPPORTED,
    errno.EAFNOSUPPORT: ADDRESS_FAMILY_NOT_SUPPORTED,
    errno.EPIPE: BROKEN_PIPE,
}

_GAI = {
    socket.EAI_NONAME: DNS_NXDOMAIN,
    socket.EAI_AGAIN: DNS_TEMPORARY_FAILURE,
    socket.EAI_FAIL: DNS_NON_RECOVERABLE,
}
if hasattr(socket, "EAI_NODATA"):
    _GAI[socket.EAI_NODATA] = DNS_NO_ANSWER

# OpenSSL X509_V_ERR_* codes carried by ssl.SSLCertVerificationError.verify_code
_X509_HOSTNAME_MISMATCH = 62
_X509_UNKNOWN_AUTHORITY = {2, 18, 19, 20, 21}
_RCODE = {2: DNS_SERVFAIL, 3: DNS_NXDOMAIN, 5: DNS_REFUSED}


def classify_rcode(rcode: int) -> str | None:
    """The failure string of a DNS response code, or None for NOERROR."""
    if rcode == 0:
        return None
    return _RCODE.get(rcode, DNS_SERVER_MISBEHAVING)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 16:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _ssl_failure(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        if code == _X509_HOSTNAME_MISMATCH:
            return SSL_INVALID_HOSTNAME
        if code in _X509_UNKNOWN_AUTHORITY:
            return SSL_UNKNOWN_AUTHORITY
        return SSL_INVALID_CERTIFICATE
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError):
        return EOF_ERROR
    return SSL_FAILED_HANDSHAKE


def _no_nameservers(exc: BaseException) -> str:
    """dnspython's "all nameservers failed": what the first one did (an rcode name or an exception)."""
    import dns.rcode

    for error in getattr(exc, "kwargs", {}).get("errors") or []:
        # (server, tcp, port, error, response): error is an rcode name such as "REFUSED" or an exception
        what = error[3] if len(error) > 3 else None
        if isinstance(what, BaseException):
            return classify(what)
        if isinstance(what, str):
            try:
                return classify_rcode(dns.rcode.from_text(what)) or DNS_SERVER_MISBEHAVING
            except dns.rcode.UnknownRcode:
                return DNS_SERVER_MISBEHAVING
    return DNS_SERVFAIL


def _by_type(exc: BaseException) -> str | None:
    # Imported lazily: probes that never touch DNS/HTTP should not pay for them.
    import dns.exception
    import dns.resolver
    import httpx

    if isinstance(exc, socket.gaierror):
        return _GAI.get(exc.errno, DNS_NON_RECOVERABLE)
    if isinstance(exc, ssl.SSLError):
        return _ssl_failure(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | socket.timeout | httpx.TimeoutException):
        return GENERIC_TIMEOUT
    if isinstance(exc, dns.exception.Timeout):
        return GENERIC_TIMEOUT
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return DNS_NXDOMAIN
    if isinstance(exc, dns.resolver.NoAnswer):
        return DNS_NO_ANSWER
    if isinstance(exc, dns.resolver.NoNameservers):
        return _no_nameservers(exc)
    if isinstance(exc, asyncio.IncompleteReadError | EOFError | ConnectionAbortedError):
        return EOF_ERROR if not isinstance(exc, ConnectionAbortedError) else CONNECTION_ABORTED
    if isinstance(exc, ConnectionResetError):
        # The kernel's RST always carries ECONNRESET (matched above); asyncio reports a
        # peer's clean close (FIN) during a TLS handshake as a bare ConnectionResetError().
        return CONNECTION_RESET if exc.errno else EOF_ERROR
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, httpx.TooManyRedirects):
        return HTTP_TOO_MANY_REDIRECTS
    if isinstance(exc, httpx.RemoteProtocolError):
        # h11 says "Server disconnected without sending a response" on a clean close
        return EOF_ERROR if "disconnected" in str(exc).lower() else HTTP_PROTOCOL_ERROR
    if isinstance(exc, httpx.ProtocolError):
        return HTTP_PROTOCOL_ERROR
    if isinstance(exc, dns.exception.FormError | dns.exception.SyntaxError):
        return DNS_SERVER_MISBEHAVING
    return None


def classify(exc: BaseException) -> str:
    """Map an exception raised by a network operation to its failure string.

    The errno of any OSError in the exception chain wins (it is the most
    specific evidence of what the network did); then the exception types, from
    the outermost inwards; else ``unknown_failure: <message>``.
    """
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ssl.SSLError):
            break  # SSLError is an OSError whose errno is OpenSSL's, not the kernel's
        if isinstance(e, OSError) and not isinstance(e, socket.gaierror) and e.errno in _ERRNO:
            return _ERRNO[e.errno]
    for e in chain:
        got = _by_type(e)
        if got is not None:
            return got
    message = str(exc) or type(exc).__name__
    return UNKNOWN_PREFIX + message


def is_known(failure: str) -> bool:
    """True when ``failure`` is a vocabulary string (not ``unknown_failure``)."""
    return failure in KNOWN
