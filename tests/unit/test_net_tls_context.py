"""Net.tls_context verifies when asked to, with and without ALPN (regression: it once did not)."""

from __future__ import annotations

import ssl

import pytest

from censorscope.probes.net import Net


@pytest.mark.parametrize("alpn", [None, ["http/1.1"], ["h2", "http/1.1"]])
def test_verifying_context_verifies(alpn):
    ctx = Net(ca_file=None).tls_context(verify=True, alpn=alpn)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is True


@pytest.mark.parametrize("alpn", [None, ["http/1.1"]])
def test_non_verifying_context_accepts_anything(alpn):
    ctx = Net(ca_file=None).tls_context(verify=False, alpn=alpn)
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.check_hostname is False
