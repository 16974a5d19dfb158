"""The HTML report renders in headless Chromium (offline, in a network namespace with no network)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from censorscope.analysis.report_html import render

DAY0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _verdicts() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    targets = {"https://news.example/": [0.0] * 5 + [0.9] * 6 + [0.0] * 4,
               "https://chat.example/": [0.0] * 15,
               "https://<script>alert(1)</script>.example/": [1.0] * 15}
    for t, days in targets.items():
        for d, p in enumerate(days):
            for k in range(6):
                blocked = rng.random() < p
                rows.append({"measurement_id": f"{t}{d}{k}", "input": t, "probe": "web", "vantage_cc": "ZZ",
                             "vantage_asn": "AS64496", "verdict": "blocked" if blocked else "ok",
                             "method": "tls.sni_reset" if blocked else None, "confidence": 0.9,
                             "evidence": "#4 tls_handshake connection_reset; control ok" if blocked else "",
                             "rules_version": "t",
                             "measurement_start_time": (DAY0 + pd.Timedelta(days=d, hours=k)).isoformat()})
    return pd.DataFrame(rows)


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(exe).exists(), "chromium is installed by ci/apt-packages.txt"
    # unshare -n: a fresh network namespace with no interfaces up, so Chromium can reach nothing.
    cmd = ["unshare", "-n", exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.net
def test_report_renders_in_chromium(tmp_path: Path):
    page = tmp_path / "report.html"
    page.write_text(render(_verdicts(), title="Lab report"))
    text = page.read_text()
    assert "<script>alert(1)</script>" not in text  # inputs are escaped
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", text)  # nothing fetched from elsewhere
    dom = _chromium("--dump-dom", page.as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="summary">' in dom.stdout and '<table id="verdicts">' in dom.stdout
    assert "tls.sni_reset" in dom.stdout and "Blocking episodes" in dom.stdout
    assert dom.stdout.count("<img") == 3
    shot = tmp_path / "shot.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri(), tmp=tmp_path)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[0] == 1600 and img.shape[1] == 1200
    red = (img[..., 0] > 0.7) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)  # blocked cells are drawn red
    assert red.mean() > 0.001
    assert img.std() > 0.05  # not a blank page
