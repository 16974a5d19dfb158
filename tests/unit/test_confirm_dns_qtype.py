"""measure.confirm: a DNS failure the control's query of the same type shares is not a symptom.

A v4-only site answers AAAA with no address for everyone. Comparing that with the
control's A answer made every web measurement of such a site "look blocked" and
cost its re-tests (the slow-server lab scenario: 6 extra measurements, ~15 s).
"""

from __future__ import annotations

from censorscope.measure.confirm import Confirmer, ConfirmPolicy, symptoms

POLICY = ConfirmPolicy(attempts=2, spacing=0.5, innocuous_sni="innocuous.example.test")


def q(qtype, addresses=(), failure=None, id=1):
    return {"id": id, "operation": "dns_query", "query_name": "v4only.example.test", "query_type": qtype,
            "failure": failure, "addresses": list(addresses),
            "responses": [{"t": 0.01, "addresses": list(addresses)}]}


def web(observations, control):
    return {"measurement_id": "x1", "probe": "web", "input": "http://v4only.example.test/", "attempt": 0,
            "observations": observations, "annotations": {},
            "control": {"failure": None, "observations": control}}


def rt(id=4):
    return {"id": id, "operation": "http_round_trip", "url": "http://v4only.example.test/",
            "address": "203.0.113.5:80", "failure": None, "status": 200}


def test_empty_aaaa_on_both_sides_is_not_a_symptom():
    mine = [q("A", ["203.0.113.5"], id=1), q("AAAA", failure="dns_no_answer", id=2), rt()]
    theirs = [q("A", ["203.0.113.5"], id=1), q("AAAA", failure="dns_no_answer", id=2), rt()]
    assert symptoms(web(mine, theirs)) == []
    assert Confirmer(POLICY).retests(web(mine, theirs)) == []


def test_empty_aaaa_where_the_control_got_one_still_is():
    mine = [q("A", ["203.0.113.5"], id=1), q("AAAA", failure="dns_no_answer", id=2), rt()]
    theirs = [q("A", ["203.0.113.5"], id=1), q("AAAA", ["2001:db8::5"], id=2), rt()]
    assert symptoms(web(mine, theirs)) == ["dns: dns_no_answer while the control resolved the name"]
    assert Confirmer(POLICY).retests(web(mine, theirs))


def test_a_different_failure_of_the_same_type_still_is():
    # NXDOMAIN for AAAA where the control's AAAA was merely empty: the name exists, someone lied
    mine = [q("A", ["203.0.113.5"], id=1), q("AAAA", failure="dns_nxdomain_error", id=2), rt()]
    theirs = [q("A", ["203.0.113.5"], id=1), q("AAAA", failure="dns_no_answer", id=2), rt()]
    assert symptoms(web(mine, theirs)) == ["dns: dns_nxdomain_error while the control resolved the name"]
    # and an empty A where the control's A resolved, whatever AAAA did
    mine = [q("A", failure="dns_no_answer", id=1), q("AAAA", failure="dns_no_answer", id=2)]
    assert symptoms(web(mine, theirs)) == ["dns: dns_no_answer while the control resolved the name"]
