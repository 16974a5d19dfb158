"""Target lists: formats, normalisation, invalid lines, IDN, streaming."""

from __future__ import annotations

import itertools
import time
import tracemalloc

import pytest

from censorscope.measure.targets import (
    ListStats,
    iter_targets,
    normalize_url,
    resolve_list_path,
    scan_targets,
)
from censorscope.probes.errors import ConfigError


@pytest.mark.parametrize(
    ("entry", "url"),
    [
        ("bbc.com", "https://bbc.com/"),
        ("HTTPS://WWW.BBC.COM:443", "https://www.bbc.com/"),
        ("http://example.org:80/a?b=1#frag", "http://example.org/a?b=1"),
        ("example.org:8443/x", "https://example.org:8443/x"),
        ("127.0.0.1:8080", "https://127.0.0.1:8080/"),
        ("http://[2001:DB8::1]:8080/", "http://[2001:db8::1]:8080/"),
        ("www.example.com.", "https://www.example.com/"),
    ],
)
def test_normalize(entry, url):
    assert normalize_url(entry) == url


def test_idn_is_punycoded_with_idna2008():
    assert normalize_url("https://münchen.de/") == "https://xn--mnchen-3ya.de/"
    assert normalize_url("пример.рф") == "https://xn--e1afmkfd.xn--p1ai/"
    # IDNA 2008 (not Python's IDNA 2003 codec): "ß" is kept, not mapped to "ss"
    assert normalize_url("faß.de") == "https://xn--fa-hia.de/"
    # non-ASCII path/query are %-encoded
    assert normalize_url("http://example.org/путь?q=д") == "http://example.org/%D0%BF%D1%83%D1%82%D1%8C?q=%D0%B4"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("ftp://example.org/", "unsupported scheme"),
        ("localhostish", "not a fully qualified"),
        ("http://exa mple.org/", "whitespace"),
        ("http://a..b/", "invalid domain label"),
        ("http://-bad-.com/", "invalid domain label"),
        ("http://user:pw@example.org/", "credentials"),
        ("http://999.1.1.1/", "bad IPv4"),
        ("http://example.org:70000/", "out of range"),
        ("http://[::1/", "unparsable URL"),
        ("http://xn--zzzzzzz-.com/", "invalid"),
        ("http://" + "a" * 64 + ".com/", "invalid domain label"),
    ],
)
def test_invalid_entries(entry, reason):
    with pytest.raises(ValueError, match=reason):
        normalize_url(entry)


def test_plain_list_comments_duplicates_and_file_line(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text(
        "# a comment\n"
        "bbc.com\n"
        "\n"
        "https://bbc.com/   # same site, trailing comment\n"
        "ftp://nope.example/\n"
        "https://example.org/page#section\n"
        "not a url\n",
        encoding="utf-8",
    )
    stats = ListStats()
    got = [t.url for t in iter_targets([f], stats=stats)]
    assert got == ["https://bbc.com/", "https://example.org/page"]
    assert stats.valid == 2 and stats.duplicates == 1 and stats.invalid == 2
    assert [str(p).split(": ")[0] for p in stats.problems] == [f"{f}:5", f"{f}:7"]
    assert "unsupported scheme 'ftp'" in stats.problems[0].reason
    assert "whitespace" in stats.problems[1].reason


def test_strict_makes_the_first_bad_line_fatal(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("bbc.com\nftp://x.example/\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"l\.txt:2: unsupported scheme"):
        scan_targets([f], strict=True)


def test_citizenlab_csv(tmp_path):
    f = tmp_path / "global.csv"
    f.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        "https://www.hrw.org/,HUMR,Human Rights Issues,2017-04-12,citizenlab,\n"
        "http://www.torproject.org/,ANON,\"Anonymization, circumvention\",2014-04-15,,\"a, quoted note\"\n"
        "https://www.hrw.org/,HUMR,Human Rights Issues,2017-04-12,dup,\n"
        "mailto:x@example.org,MISC,Misc,2020-01-01,,\n"
        "https://x.example/,GRP,Social\n",
        encoding="utf-8",
    )
    stats = ListStats()
    got = list(iter_targets([f], stats=stats))
    assert [(t.url, t.category_code, t.category_description) for t in got] == [
        ("https://www.hrw.org/", "HUMR", "Human Rights Issues"),
        ("http://www.torproject.org/", "ANON", "Anonymization, circumvention"),
    ]
    assert got[1].origin == f"{f}:3"
    assert stats.duplicates == 1 and stats.invalid == 2
    assert str(stats.problems[0]).startswith(f"{f}:5: ")
    assert str(stats.problems[1]) == f"{f}:6: 3 fields, header has 6"
    assert stats.categories == {"HUMR": 1, "ANON": 1}


def test_csv_without_url_column_is_a_config_error(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("site,category\nhttps://a.example/,X\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.csv:1: CSV list without a 'url' column"):
        scan_targets([f])


def test_non_utf8_list_is_a_config_error(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes(b"example.org\nm\xfcnchen.de\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        scan_targets([f])


def test_default_list_is_valid_and_covers_the_blocked_categories():
    stats = scan_targets(["default"], strict=True)
    assert 90 <= stats.valid <= 130
    assert stats.invalid == 0 and stats.duplicates == 0
    for code in ("NEWS", "HUMR", "GRP", "COMT", "SRCH", "ANON", "LGBT", "REL", "POLR", "FILE"):
        assert stats.categories[code] >= 3, code
    text = resolve_list_path("default").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "url,category_code,category_description,date_added,source,notes"
    assert all(line.split(",")[4] == "censorscope" for line in text.splitlines()[1:])
    urls = {t.url for t in iter_targets(["default"])}
    assert {"https://www.bbc.com/", "https://www.hrw.org/", "https://www.torproject.org/"} <= urls


def test_inline_urls_after_lists_and_deduplicated(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("a.example\n", encoding="utf-8")
    stats = ListStats()
    got = [t.url for t in iter_targets([f], ["https://a.example/", "b.example", "bad url"], stats=stats)]
    assert got == ["https://a.example/", "https://b.example/"]
    assert stats.duplicates == 1 and stats.invalid == 1
    assert str(stats.problems[0]).startswith("<campaign targets.urls>:3:")


def test_missing_list_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        scan_targets([str(tmp_path / "nope.txt")])


def test_100k_lines_stream_lazily_and_fast(tmp_path):
    f = tmp_path / "big.txt"
    with f.open("w", encoding="utf-8") as out:
        for i in range(100_000):
            out.write(f"http://127.0.0.1:8080/{i}\n")
    # lazily: taking the first 10 reads (almost) nothing and holds little memory
    tracemalloc.start()
    first = list(itertools.islice(iter_targets([f]), 10))
    _, peak_first = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [t.url for t in first][:2] == ["http://127.0.0.1:8080/0", "http://127.0.0.1:8080/1"]
    assert peak_first < 2_000_000
    # the whole list: generous bound, the point is "seconds, not minutes"
    t0 = time.monotonic()
    stats = scan_targets([f])
    assert stats.valid == 100_000 and stats.invalid == 0
    assert time.monotonic() - t0 < 30


def test_byte_order_mark_is_ignored(tmp_path):
    plain = tmp_path / "bom.txt"
    plain.write_bytes("\ufeffbbc.com\nexample.org\n".encode())
    assert [t.url for t in iter_targets([plain])] == ["https://bbc.com/", "https://example.org/"]
    csvf = tmp_path / "bom.csv"
    csvf.write_bytes("\ufeffurl,category_code\nhttps://a.example/,NEWS\n".encode())
    assert [(t.url, t.category_code) for t in iter_targets([csvf])] == [("https://a.example/", "NEWS")]
