"""Name and keyword matching shared by the behaviours.

A domain pattern ``example.com`` matches ``example.com`` and every subdomain
(``www.example.com``) but not ``notexample.com``; a pattern containing ``*``
is a shell-style glob over the whole name (``*twitter*``). Matching is
case-insensitive and ignores a trailing dot. Keywords are case-insensitive
substrings.
"""

from __future__ import annotations

from fnmatch import fnmatchcase


class DomainMatcher:
    """Match names against a list of domain patterns; returns the pattern that hit."""

    def __init__(self, patterns: tuple[str, ...] | list[str]) -> None:
        self.suffixes: dict[str, str] = {}
        self.globs: list[str] = []
        for p in patterns:
            norm = p.strip().lower().rstrip(".")
            if "*" in norm:
                self.globs.append(norm)
            else:
                self.suffixes[norm] = p

    def __bool__(self) -> bool:
        return bool(self.suffixes or self.globs)

    def match(self, name: str | None) -> str | None:
        """The pattern matching ``name`` (itself or a parent domain), else None."""
        if not name:
            return None
        name = name.lower().rstrip(".")
        labels = name.split(".")
        for i in range(len(labels)):
            hit = self.suffixes.get(".".join(labels[i:]))
            if hit is not None:
                return hit
        for g in self.globs:
            if fnmatchcase(name, g):
                return g
        return None


def match_keyword(keywords: tuple[str, ...], *texts: str | None) -> str | None:
    """The first keyword found (case-insensitive substring) in any of ``texts``."""
    for kw in keywords:
        low = kw.lower()
        for t in texts:
            if t and low in t.lower():
                return kw
    return None
