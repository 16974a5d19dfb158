"""ikev2 probe against strongSwan's charon (real IKE_SA_INIT responder) in a throwaway namespace.

charon writes a fixed pid file under /run, so it runs under ``unshare -m``
with a private tmpfs on /run (LAB-NOTES.md); its config is loaded with
swanctl over a vici socket in the test's tmp dir. The responder accepts only
MODP-2048, so the probe's first KE (group 19) draws INVALID_KE_PAYLOAD and a
retry; ``cookie_threshold = 1`` makes charon demand a COOKIE once one
half-open IKE SA exists.
"""

from __future__ import annotations

import socket
import threading

import pytest
from vpn_support import daemon, free_port, log_has, need, netns, op, run_probe, run_probe_in, wait_for

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def charon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ike")
    need("swanctl")
    (tmp / "strongswan.conf").write_text(
        "charon {\n  load_modular = no\n  cookie_threshold = 1\n"
        f"  plugins {{ vici {{ socket = unix://{tmp}/charon.vici }} }}\n"
        f"  filelog {{ log {{ path = {tmp}/charon.log\n default = 1\n ike = 2 }} }}\n}}\n"
    )
    (tmp / "swanctl.conf").write_text(
        "connections { test { local_addrs = 127.0.0.1\n proposals = aes128-sha256-modp2048\n"
        " local { auth = psk\n id = server }\n remote { auth = psk }\n"
        " children { c { esp_proposals = aes128-sha256 } } }\n"
        # a responder on 127.0.0.2 that accepts nothing the probe offers (ECP-384 only)
        " nope { local_addrs = 127.0.0.2\n proposals = aes256gcm16-prfsha384-ecp384\n"
        " local { auth = psk\n id = nope }\n remote { auth = psk }\n"
        " children { c { esp_proposals = aes256gcm16 } } } }\n"
        'secrets { ike-1 { secret = "censorscope" } }\n'
    )
    (tmp / "run.sh").write_text(
        "mount -t tmpfs tmpfs /run\n"
        f"STRONGSWAN_CONF={tmp}/strongswan.conf /usr/lib/ipsec/charon &\n"
        f"for i in $(seq 200); do [ -S {tmp}/charon.vici ] && break; sleep 0.1; done\n"
        f"swanctl --load-all --uri unix://{tmp}/charon.vici --file {tmp}/swanctl.conf && echo CONFIG-LOADED\n"
        "wait\n"
    )
    log = tmp / "out.log"
    with netns() as ns:
        with daemon(["unshare", "-m", "--propagation", "private", "sh", str(tmp / "run.sh")], log=log, netns=ns):
            wait_for(lambda: log_has(log, "CONFIG-LOADED"), timeout=60, what="charon + swanctl")
            yield ns


def test_ikev2_sa_init_with_ke_retry_and_cookie(charon):
    obs = run_probe_in(charon, "ikev2", "ikev2://127.0.0.1")
    sa = op(obs, "ikev2_sa_init")
    assert sa["failure"] is None, sa
    assert sa["result"] == "SA" and sa["nat_t"] is False
    assert [a["group"] for a in sa["attempts"]] == [19, 14]
    first = sa["attempts"][0]["responses"][0]
    assert [n["name"] for n in first["notifies"]] == ["INVALID_KE_PAYLOAD"]
    assert first["notifies"][0]["data"] == "000e"
    assert sa["ke_group"] == 14 and sa["nonce_length"] >= 16
    assert sa["chosen_proposal"] == [["ENCR_AES_CBC_128", "INTEG_HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256",
                                      "DH_MODP_2048"]]
    names = {n["name"] for n in sa["notifies"]}
    assert {"NAT_DETECTION_SOURCE_IP", "NAT_DETECTION_DESTINATION_IP"} <= names
    # one half-open SA now exists: charon demands a COOKIE and the probe resends with it
    obs = run_probe_in(charon, "ikev2", "ikev2://127.0.0.1", group="14")
    sa = op(obs, "ikev2_sa_init")
    assert sa["failure"] is None and sa["result"] == "SA", sa
    assert [(a["group"], a["cookie"]) for a in sa["attempts"]] == [(14, False), (14, True)]
    assert sa["attempts"][0]["responses"][0]["notifies"][0]["name"] == "COOKIE"


def test_ikev2_nat_t_port_4500(charon):
    obs = run_probe_in(charon, "ikev2", "ikev2://127.0.0.1:4500", group="14")
    sa = op(obs, "ikev2_sa_init")
    assert sa["failure"] is None, sa
    assert sa["nat_t"] is True and sa["attempts"][0]["bytes_sent"] % 4 == 0
    assert sa["result"] in ("SA",) and sa["spi_r"] != "0" * 16


def test_ikev2_no_proposal_chosen(charon):
    obs = run_probe_in(charon, "ikev2", "ikev2://127.0.0.2")
    sa = op(obs, "ikev2_sa_init")
    assert sa["failure"] is None, sa  # the responder answered: that is what the operation records
    assert sa["result"] == "NO_PROPOSAL_CHOSEN" and sa["chosen_proposal"] is None
    # no KE retry (nothing to retry with); a COOKIE round first if earlier tests left half-open SAs
    assert [a["group"] for a in sa["attempts"]] in ([19], [19, 19])
    assert sa["attempts"][-1]["responses"][0]["notifies"][0]["name"] == "NO_PROPOSAL_CHOSEN"


@pytest.mark.net
def test_ikev2_refused_timeout_garbage():
    obs = run_probe("ikev2", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", timeout=2.0)
    assert op(obs, "ikev2_sa_init")["failure"] == "connection_refused"
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    obs = run_probe("ikev2", f"127.0.0.1:{srv.getsockname()[1]}", timeout=1.0)
    assert op(obs, "ikev2_sa_init")["failure"] == "generic_timeout_error"
    srv.close()
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))

    def answer() -> None:
        _, addr = srv.recvfrom(4096)
        srv.sendto(b"\x00" * 16 + b"\x00\x10\x22\x20" + b"\x00" * 8, addr)

    threading.Thread(target=answer, daemon=True).start()
    obs = run_probe("ikev2", f"127.0.0.1:{srv.getsockname()[1]}", timeout=2.0)
    srv.close()
    assert op(obs, "ikev2_sa_init")["failure"] == "unknown_failure: protocol_error: IKE major version 1, expected 2"


