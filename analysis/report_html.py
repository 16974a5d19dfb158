"""One self-contained HTML report: summary, verdict tables and plots, viewable offline.

Images are embedded as base64 PNG and the style is inline, so the file can
be mailed or archived and opened anywhere without a network. All text from
measurements is HTML-escaped (inputs and evidence come from the network and
from lists: never trust them in markup).
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime

import pandas as pd
from matplotlib.figure import Figure

from censorscope import __version__
from censorscope.analysis.aggregate import method_mix
from censorscope.analysis.episodes import episodes as find_episodes
from censorscope.analysis.plots import VERDICT_COLOURS, heatmap, method_breakdown, timeline

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right}
.v-blocked{color:#fff;background:#d32f2f}.v-ok{background:#c8e6c9}.v-down{background:#e0e0e0}
.v-inconclusive{background:#ffecb3}.note{color:#555;font-size:.9em}img{max-width:100%}
"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _table(df: pd.DataFrame, *, verdict_col: str | None = "verdict", table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for col, val in zip(df.columns, rec, strict=True):
            text = "" if val is None or (isinstance(val, float) and pd.isna(val)) else str(val)
            cls = ""
            if col == verdict_col:
                cls = f' class="v-{html.escape(text)}"'
            elif isinstance(val, int | float) and not isinstance(val, bool):
                cls = ' class="num"'
                text = f"{val:.2f}" if isinstance(val, float) else text
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render(verdicts: pd.DataFrame, *, title: str = "censorscope report", max_rows: int = 2000) -> str:
    """The report as one HTML string."""
    n = len(verdicts)
    counts = verdicts["verdict"].value_counts().reindex(list(VERDICT_COLOURS), fill_value=0)
    summary = pd.DataFrame({"verdict": counts.index, "measurements": counts.to_numpy(),
                            "share": (counts / max(n, 1)).round(3).to_numpy()})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by censorscope {__version__}. "
        f"{n} measurement(s), {verdicts['input'].nunique() if n else 0} target(s). "
        "A <b>blocked</b> verdict names the method and the evidence; <b>inconclusive</b> means the data "
        "cannot support a claim (no control, failed control, or weak evidence); <b>down</b> means the "
        "target failed from the control too. Measuring censorship can carry legal risk: protect the people "
        "who collected these data.</p>",
        "<h2>Summary</h2>", _table(summary, table_id="summary"),
    ]
    if n and "measurement_start_time" in verdicts.columns:
        eps = find_episodes(verdicts)
        parts += ["<h2>Verdicts over time</h2>", f"<img alt='heatmap' src='{_png(heatmap(verdicts))}'>",
                  f"<img alt='timeline' src='{_png(timeline(verdicts, eps))}'>"]
        if len(eps):
            shown_eps = eps.assign(
                start=eps["start"].dt.strftime("%Y-%m-%d %H:%M"),
                end=eps["end"].dt.strftime("%Y-%m-%d %H:%M").fillna("ongoing"),
            )
            parts += ["<h2>Blocking episodes</h2>", _table(shown_eps, verdict_col=None, table_id="episodes")]
    if n:
        parts += ["<h2>Methods</h2>", f"<img alt='methods' src='{_png(method_breakdown(verdicts))}'>"]
        mix = method_mix(verdicts)
        if len(mix):
            parts.append(_table(mix, verdict_col=None, table_id="methods"))
    cols = [c for c in ("input", "probe", "vantage_cc", "vantage_asn", "verdict", "method", "confidence",
                        "evidence") if c in verdicts.columns]
    shown = verdicts.sort_values(["verdict", "input"]).head(max_rows)[cols]
    parts += [f"<h2>Verdicts ({len(shown)} of {n})</h2>", _table(shown, table_id="verdicts"), "</body></html>"]
    return "\n".join(parts)
