"""`inspect --html`: an InspectReport as ONE self-contained HTML page.

Styles and charts are inline (SVG drawn here, no plotting library, no script, no font or link to
fetch), so the file can be mailed, archived and opened offline. Key names are arbitrary bytes:
they arrive as inspect's text (utf-8, backslashreplace) and are escaped before they reach markup.
"""

from __future__ import annotations

import html
import os
import re
from typing import Callable, Sequence

from ..cli.output import human_bytes
from ..storage.atomic import atomic_output
from ..rdb.slots import SLOTS
from .inspect import InspectReport, imbalance

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; word-break: break-all; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: 2px 10px; text-align: left; }
th { background: #eee; } tr:nth-child(even) td { background: #f7f7f7; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } td.key { word-break: break-all; }
.charts { display: flex; flex-wrap: wrap; gap: 1em 3em; }
svg text { font: 12px system-ui, sans-serif; fill: #222; } svg rect { fill: #4a7dbf; }
svg line { stroke: #c33; stroke-dasharray: 4 3; }
"""
_ROW, _WIDTH, _LABEL, _VALUE = 20, 520, 150, 80
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _esc(text: str) -> str:
    """html.escape, and control characters shown as \\xNN: HTML drops or mangles them (NUL, ESC)."""
    return html.escape(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def bar_chart(title: str, rows: Sequence[tuple[str, float]], fmt: Callable[[float], str],
              mark: float | None = None) -> str:
    """Horizontal bars, one per (label, value), as inline SVG; ``mark`` draws a dashed line (the mean)."""
    top = max([v for _, v in rows] + [mark or 0, 1])
    scale = (_WIDTH - _LABEL - _VALUE) / top
    height = _ROW * len(rows) + 8
    out = [f"<figure><figcaption>{_esc(title)}</figcaption>"
           f'<svg width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" role="img">']
    for i, (label, value) in enumerate(rows):
        y, w = 4 + i * _ROW, value * scale
        text = _esc(fmt(value))
        out.append(f'<text x="{_LABEL - 6}" y="{y + 14}" text-anchor="end">{_esc(label)}</text>'
                   f'<rect x="{_LABEL}" y="{y + 3}" width="{w:.1f}" height="{_ROW - 6}">'
                   f"<title>{_esc(label)}: {text}</title></rect>"
                   f'<text x="{_LABEL + w + 4:.1f}" y="{y + 14}">{text}</text>')
    if mark:
        x = _LABEL + mark * scale
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}"><title>mean {_esc(fmt(mark))}</title></line>')
    return "".join(out) + "</svg></figure>"


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = (),
           key_col: int = -1) -> str:
    """A plain table; cells are escaped here, columns in ``numeric`` right-aligned."""
    out = ["<table>"]
    if head:
        out += ["<tr>", *(f"<th>{_esc(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="n"' if i in numeric else ' class="key"' if i == key_col else ""
            out.append(f"<td{cls}>{_esc(str(cell))}</td>")
        out.append("</tr>")
    return "".join(out) + "</table>"


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _pow2(n: int) -> str:
    """1024 → "1 KiB": bucket bounds are exact powers of two, so no decimals."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024:
            return f"{n} {unit}"
        n //= 1024
    return f"{n} ZiB"


def _size_section(buckets: list[int]) -> str:
    used = [i for i, n in enumerate(buckets) if n]
    if not used:
        return ""
    rows = [(f"{_pow2(1 << (i - 1))} – {_pow2(1 << i)}", buckets[i]) for i in range(used[0], used[-1] + 1)]
    return ("<h2>Record sizes</h2><p>Serialized type+key+value per record, in power-of-two buckets "
            "(lower bound included, upper excluded).</p>" + bar_chart("records", rows, _count))


def _slot_section(report: InspectReport) -> str:
    spread = report.slots
    if spread is None:
        return ""
    rows = spread.shard_rows()
    keys, size = [r["keys"] for r in rows], [r["bytes"] for r in rows]
    ranges = [", ".join(f"{s}-{e}" for s, e in r["slots"]) for r in rows]
    table = _table(["shard", "slots", "keys", "% keys", "bytes", "% bytes"],
                   [(r["name"], where, f"{r['keys']:,}", f"{r['keys_pct']:.2f}", human_bytes(r["bytes"]),
                     f"{r['bytes_pct']:.2f}") for r, where in zip(rows, ranges)], numeric=(2, 3, 4, 5))
    busiest = _table(["slot", "keys", "bytes"],
                     [(b["slot"], f"{b['keys']:,}", human_bytes(b["bytes"])) for b in spread.busiest()],
                     numeric=(0, 1, 2))
    names = [r["name"] for r in rows]
    return (f"<h2>Balance over {len(rows)} shards (even split)</h2>"
            f"<p>{sum(keys):,} keys in {SLOTS - spread.keys.count(0):,} of {SLOTS} slots. Imbalance (fullest "
            f"shard / mean): keys {imbalance(keys):.3f}, bytes {imbalance(size):.3f}. The dashed line is "
            "the mean.</p>" + table + '<div class="charts">'
            + bar_chart("keys per shard", list(zip(names, keys)), _count, mark=sum(keys) / len(rows))
            + bar_chart("bytes per shard", list(zip(names, size)), human_bytes, mark=sum(size) / len(rows))
            + "</div><h3>Busiest slots</h3>" + busiest)


def render_html(report: InspectReport) -> str:
    """The whole page; every piece of file-derived text goes through _esc."""
    summary = _table((), [
        ("file", f"{report.path} ({human_bytes(report.size)})"),
        ("format", f"{report.magic} (RDB {report.version}, {report.flavour}) by {report.writer}"),
        ("checksum", report.checksum),
        ("keys", f"{report.keys:,} ({report.expires:,} with expiry)"),
        ("eviction hints", f"{report.lru_keys:,} LRU idle, {report.lfu_keys:,} LFU counters"),
        ("functions", ", ".join(report.functions) or "none"),
        ("modules", ", ".join(f"{m} ({n} keys)" for m, n in report.modules.items()) or "none"),
    ])
    aux = _table(["AUX field", "value"], sorted(report.aux.items()))
    dbs = _table(["db", "keys", "expiring", "bytes"],
                 [(db, f"{s.keys:,}", f"{s.expires:,}", human_bytes(s.bytes))
                  for db, s in sorted(report.databases.items())], numeric=(0, 1, 2, 3))
    types = sorted(report.by_type.items(), key=lambda kv: -kv[1]["bytes"])
    charts = ('<div class="charts">'
              + bar_chart("keys by type", [(name, row["keys"]) for name, row in types], _count)
              + bar_chart("bytes by type", [(name, row["bytes"]) for name, row in types], human_bytes)
              + "</div>")
    encodings = _table(["encoding", "keys", "bytes"],
                       [(name, f"{row['keys']:,}", human_bytes(row["bytes"]))
                        for name, row in sorted(report.by_encoding.items(), key=lambda kv: -kv[1]["bytes"])],
                       numeric=(1, 2))
    biggest = _table(["bytes", "type", "db", "key"],
                     [(human_bytes(r["bytes"]), r["type"], r["db"], r["key"]) for r in report.biggest],
                     numeric=(0, 2), key_col=3)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>snaptool inspect: {_esc(os.path.basename(report.path))}</title><style>{_CSS}</style></head>"
            f"<body><h1>{_esc(report.path)}</h1>{summary}<h2>AUX fields</h2>{aux}<h2>Databases</h2>{dbs}"
            f"<h2>Types</h2>{charts}{encodings}{_size_section(report.size_buckets or [])}{_slot_section(report)}"
            f"<h2>Biggest keys</h2>{biggest}</body></html>\n")


def write_html(report: InspectReport, path: str | os.PathLike) -> None:
    """Write the page atomically: a reader never sees half a report."""
    with atomic_output(path) as out:
        out.write(render_html(report).encode("utf-8"))
