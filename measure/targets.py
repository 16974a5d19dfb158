"""Target lists: what a campaign measures.

Two formats, told apart by the first non-comment line:

* **Citizen Lab CSV** (header ``url,category_code,category_description,
  date_added,source,notes``; only ``url`` is required), as in
  citizenlab/test-lists. Fields are carried into each ``Target``.
* **Plain list**: one URL or domain per line; ``#`` starts a comment (a whole
  line, or after whitespace on a line, so a URL's own ``#fragment`` survives).

Normalisation (so duplicates are recognised and probes get one form):

* A bare domain, ``domain:port`` or IP literal becomes ``https://HOST/``: most
  of the web is served over HTTPS and the TLS handshake (SNI) is where much
  censorship happens today; write ``http://`` explicitly to measure plaintext.
* Scheme and host are lower-cased, the default port is dropped, an empty path
  becomes ``/``, the fragment is dropped (it never leaves the client).
* Internationalised domain names are converted to their ASCII (punycode) form
  with the ``idna`` package (IDNA 2008 + UTS #46, as browsers do; Python's own
  codec is IDNA 2003). Non-ASCII path and query characters are %-encoded.
* Website entries are ``http`` and ``https`` URLs. Entries in a VPN/circumvention probe's own
  scheme (``openvpn://host:1194?proto=udp``, ``wireguard://``, ``ikev2://``, ``quic://``, ...;
  ``VPN_SCHEMES``) are kept as written (scheme lower-cased, a host required): those probes
  take them through ``target_from_url`` and every other probe skips them.

Invalid lines are reported as ``FILE:LINE: reason`` and skipped (counted);
with ``strict`` the first one raises ``ConfigError``. Lists are read as a
stream (``iter_targets`` is a generator): a million-line list never sits in
memory, only the set of URLs already seen (for de-duplication).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote, urlsplit

import idna

from censorscope.measure.problems import LineProblem
from censorscope.probes.errors import ConfigError

#: ``--list default``: the list shipped with censorscope (data/default_targets.csv).
DEFAULT_LIST = "default"

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_COMMENT = re.compile(r"\s#")
_SPACE = re.compile(r"\s")
# an entry that is already plain ASCII with nothing to %-encode (the common case): no urlsplit
_SIMPLE = re.compile(
    r"^(?:(?P<scheme>[A-Za-z]+)://)?(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9/%:@!$&'()*+,;=._~-]*)?(?:\?(?P<query>[A-Za-z0-9/%:@!$&'()*+,;=._~?-]*))?"
    r"(?:#.*)?$"
)
# characters kept as they are when %-encoding a path or query
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


@dataclass(frozen=True, slots=True)
class Target:
    """One list entry: a normalised URL and what the list says about it."""

    url: str
    category_code: str | None = None
    category_description: str | None = None
    origin: str = ""  # "FILE:LINE" the entry came from


ListProblem = LineProblem  # an invalid line of a target list


@dataclass
class ListStats:
    """What reading one or more lists found."""

    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    #: the first ``MAX_KEPT_PROBLEMS`` problems (all are counted in ``invalid``)
    problems: list[ListProblem] = field(default_factory=list)

    MAX_KEPT_PROBLEMS = 1000

    def add_problem(self, problem: ListProblem) -> None:
        """Count an invalid line, keeping the first ones for display."""
        self.invalid += 1
        if len(self.problems) < self.MAX_KEPT_PROBLEMS:
            self.problems.append(problem)


@functools.lru_cache(maxsize=65536)
def _encode_host(host: str) -> str:
    """Validate a host and return its ASCII form; ValueError with a reason."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"unclosed '[' in host {host!r}")
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValueError(f"bad IPv6 address {host[1:-1]!r}") from None
    host = host.rstrip(".").lower()
    if not host:
        raise ValueError("no host")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"bad IPv4 address {host!r}") from None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise ValueError(f"invalid internationalised domain {host!r}: {e}") from None
    if len(host) > 253:
        raise ValueError(f"domain longer than 253 characters ({len(host)})")
    for label in host.split("."):
        if not _LABEL.match(label):
            raise ValueError(f"invalid domain label {label!r} in {host!r}")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError) as e:
                raise ValueError(f"invalid punycode label {label!r}: {e}") from None
    if "." not in host and host != "localhost":
        raise ValueError(f"{host!r} is not a fully qualified domain name")
    return host


#: schemes of the VPN/circumvention probes (censorscope.probes.<name>.target_from_url)
VPN_SCHEMES = ("openvpn", "wireguard", "ikev2", "pptp", "l2tp", "sstp", "ssh", "tor", "fet", "quic", "socks",
               "httpconnect")


def _vpn_entry(entry: str, scheme: str) -> str:
    """A VPN probe's list entry: scheme lower-cased, host checked, the rest as written."""
    try:
        host = urlsplit(entry).hostname
    except ValueError as e:
        raise ValueError(f"unparsable {scheme} target: {e}") from None
    if not host:
        raise ValueError(f"{scheme} target without a host")
    return scheme + entry[len(scheme):]


def normalize_url(entry: str) -> str:
    """The canonical form of a list entry (URL or bare domain); ValueError with a reason."""
    entry = entry.strip()
    if not entry:
        raise ValueError("empty entry")
    if _SPACE.search(entry):
        raise ValueError("whitespace inside the entry")
    simple = _SIMPLE.match(entry)
    if simple is not None and (simple["scheme"] or "https").lower() in ("http", "https"):
        return _assemble(
            (simple["scheme"] or "https").lower(), simple["host"],
            int(simple["port"]) if simple["port"] else None, simple["path"] or "/", simple["query"] or "",
        )
    m = _SCHEME.match(entry)
    if m is None:  # bare domain, "domain/path" or "host:port": like a browser would
        entry = "https://" + entry
    else:
        scheme = m.group(1).lower()
        if scheme in VPN_SCHEMES:
            return _vpn_entry(entry, scheme)
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r} (only http, https and the VPN probes' "
                             f"{', '.join(VPN_SCHEMES)})")
    try:
        parts = urlsplit(entry)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"unparsable URL: {e}") from None
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError("credentials in URL (user@host) are not allowed")
    hostpart = netloc
    if netloc.startswith("["):
        hostpart = netloc[: netloc.find("]") + 1] if "]" in netloc else netloc
    elif ":" in netloc:
        hostpart = netloc.rsplit(":", 1)[0]
    path = quote(parts.path, safe=_SAFE_PATH) or "/"
    return _assemble(scheme, hostpart, port, path, quote(parts.query, safe=_SAFE_QUERY))


def _assemble(scheme: str, host: str, port: int | None, path: str, query: str) -> str:
    host = _encode_host(host)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    if port == {"http": 80, "https": 443}[scheme]:
        port = None
    url = f"{scheme}://{host}" + (f":{port}" if port is not None else "") + path
    return url + (f"?{query}" if query else "")


def resolve_list_path(spec: str) -> Path:
    """The file a ``--list`` value names (``default`` is the shipped list)."""
    if spec == DEFAULT_LIST:
        return Path(str(resources.files("censorscope.data").joinpath("default_targets.csv")))
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"target list {spec}: no such file")
    return path


def list_sha256(path: Path) -> str:
    """Hex SHA-256 of a list file (a resumed run checks the list is unchanged)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    m = _COMMENT.search(line)
    return (line[: m.start()] if m else line).strip()


def _plain_entries(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    for lineno, raw in enumerate(lines, 1):
        text = _strip_comment(raw)
        if text:
            yield lineno, {"url": text}


def _csv_entries(lines: Iterator[str], name: str) -> Iterator[tuple[int, dict[str, str]] | ListProblem]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    for row in reader:
        lineno = reader.line_num
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            if "url" not in header:
                raise ConfigError(f"{name}:{lineno}: CSV list without a 'url' column in its header")
            continue
        if len(row) != len(header):
            yield ListProblem(name, lineno, f"{len(row)} fields, header has {len(header)}")
            continue
        yield lineno, {k: v.strip() for k, v in zip(header, row, strict=True)}


def _is_csv(first: str, path: Path) -> bool:
    head = first.strip().lower()
    return head.startswith("url,") or head == "url" or path.suffix.lower() == ".csv"


def _first_content_line(path: Path) -> str:
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                return line
    return ""


def iter_list(
    path: Path,
    *,
    display_name: str | None = None,
    on_problem: Callable[[ListProblem], None],
) -> Iterator[Target]:
    """Stream the valid entries of one list file; invalid ones go to ``on_problem``.

    No de-duplication here (see ``iter_targets``).
    """
    name = display_name or str(path)
    csv_format = _is_csv(_first_content_line(path), path)
    with path.open(encoding="utf-8-sig", errors="strict", newline="") as f:
        source = _csv_entries(f, name) if csv_format else _plain_entries(f)
        try:
            for item in source:
                if isinstance(item, ListProblem):
                    on_problem(item)
                    continue
                lineno, fields = item
                try:
                    url = normalize_url(fields.get("url", ""))
                except ValueError as e:
                    on_problem(ListProblem(name, lineno, f"{e} in {fields.get('url', '')!r}"))
                    continue
                yield Target(
                    url=url,
                    category_code=fields.get("category_code") or None,
                    category_description=fields.get("category_description") or None,
                    origin=f"{name}:{lineno}",
                )
        except UnicodeDecodeError as e:
            raise ConfigError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except csv.Error as e:
            raise ConfigError(f"{name}: CSV error: {e}") from None


def iter_targets(
    lists: Iterable[str | Path] = (),
    urls: Iterable[str] = (),
    *,
    strict: bool = False,
    stats: ListStats | None = None,
) -> Iterator[Target]:
    """Stream every valid, de-duplicated target of ``lists`` then ``urls``.

    ``lists`` are file paths or ``"default"``; ``urls`` are inline entries (a
    campaign's ``targets.urls``). Problems and counts go into ``stats``; with
    ``strict`` the first problem raises ``ConfigError``.
    """
    stats = stats if stats is not None else ListStats()
    seen: set[str] = set()

    def problem(p: ListProblem) -> None:
        if strict:
            raise ConfigError(f"{p} (--strict)")
        stats.add_problem(p)

    def admit(t: Target) -> bool:
        if t.url in seen:
            stats.duplicates += 1
            return False
        seen.add(t.url)
        stats.valid += 1
        stats.categories[t.category_code or "-"] += 1
        return True

    for spec in lists:
        path = resolve_list_path(str(spec)) if not isinstance(spec, Path) else spec
        name = DEFAULT_LIST if spec == DEFAULT_LIST else str(spec)
        for t in iter_list(path, display_name=name, on_problem=problem):
            if admit(t):
                yield t
    for i, entry in enumerate(urls, 1):
        try:
            t = Target(url=normalize_url(entry), origin=f"<campaign>:{i}")
        except ValueError as e:
            problem(ListProblem("<campaign targets.urls>", i, f"{e} in {entry!r}"))
            continue
        if admit(t):
            yield t


def scan_targets(
    lists: Iterable[str | Path] = (), urls: Iterable[str] = (), *, strict: bool = False
) -> ListStats:
    """Read the lists once, only counting (used before a run, and by ``lists show``)."""
    stats = ListStats()
    for _ in iter_targets(lists, urls, strict=strict, stats=stats):
        pass
    return stats
