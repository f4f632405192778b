"""``edgevit report``: bench results, device results and profiles as one self-contained HTML page + Markdown.

Plots are drawn with matplotlib (Agg, no display), embedded as base64 PNG in the HTML so the page opens offline
from a single file; the Markdown version links the same PNGs from ``<name>_files/``.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from edgevit._io import atomic_file, read_json
from edgevit.errors import ConfigError


def load_inputs(paths: list[str | Path], *, etrecord: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """Read bench JSON (a list or {'results': [...]}), app results JSON and ETDumps -> (results, profiles)."""
    from edgevit.bench.profiles import ingest

    results, profiles = [], []
    for p in map(Path, paths):
        if not p.is_file():
            raise ConfigError(f"results file {p} does not exist")
        if p.suffix == ".json":
            obj = read_json(p)
            if isinstance(obj, dict) and obj.get("kind") == "etdump":
                profiles.append(obj)
            elif isinstance(obj, dict) and obj.get("schema") == "edgevit.device-results":
                results.append(ingest(p)["result"])
            elif isinstance(obj, dict) and "results" in obj:
                results.extend(obj["results"])
                profiles.extend(obj.get("profiles", []))
            elif isinstance(obj, list):
                results.extend(obj)
            else:
                raise ConfigError(f"{p}: not an edgevit bench result list, device results file or profile")
        else:
            profiles.append(ingest(p, etrecord=etrecord))
    for r in results:
        if r.get("skipped"):  # bench could not time it here (e.g. a TensorRT folder without its GPU): said there
            continue
        missing = [k for k in ("artifact", "target", "precision", "p50_ms") if k not in r]
        if missing:
            raise ConfigError(f"a result lacks {missing}; produce results with `edgevit bench --json`")
    return [r for r in results if not r.get("skipped")], profiles


def _label(r: dict) -> str:
    where = r.get("device") if r.get("source") == "device" else "desktop"
    size = "x".join(str(v) for v in r.get("img_size") or [] if v)
    return f"{Path(str(r['artifact'])).name}: {r['target']}/{r['precision']} {size} ({where})"


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plot_latency(results: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = sorted(results, key=lambda r: r["p50_ms"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rs) + 1.5))
    labels = [_label(r) for r in rs]
    p50 = [r["p50_ms"] for r in rs]
    err = [max(r.get("p90_ms", r["p50_ms"]) - r["p50_ms"], 0) for r in rs]
    colors = ["#d95f02" if r.get("source") == "device" else "#1b9e77" for r in rs]
    ax.barh(labels, p50, xerr=[[0] * len(rs), err], color=colors, capsize=3)
    for y, (v, e) in enumerate(zip(p50, err)):
        ax.text(v + e, y, f"  {v:.2f} ms", va="center", fontsize=8)
    ax.set_xlim(0, max(v + e for v, e in zip(p50, err)) * 1.25)
    ax.set_xlabel("latency p50 (ms), whisker to p90")
    ax.set_title("Latency per target and precision (green: desktop, orange: device)")
    ax.invert_yaxis()
    return _fig_png(fig)


def plot_resolution(results: list[dict]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in results:
        size = r.get("img_size") or []
        if len(size) == 2 and all(size):
            key = f"{r['model']} {r['target']}/{r['precision']} ({r.get('device') or 'desktop'})"
            series[key].append((size[0] * size[1], r["p50_ms"], size[0]))
    series = {k: sorted(v) for k, v in series.items() if len({p[0] for p in v}) > 1}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, pts in series.items():
        ax.plot([p[2] for p in pts], [p[1] for p in pts], marker="o", label=key)
    ax.set_xlabel("input size (pixels a side)")
    ax.set_ylabel("latency p50 (ms)")
    ax.set_title("Latency vs resolution")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _fig_png(fig)


def plot_drift(results: list[dict]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["p50_ms"], r["parity"]["max_rel"], _label(r)) for r in results
           if r.get("parity") and r["parity"].get("max_rel") is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for x, y, label in pts:
        ax.scatter([x], [max(y, 1e-9)], s=40)
        ax.annotate(label, (x, max(y, 1e-9)), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("max relative error vs PyTorch (log)")
    ax.set_title("Accuracy drift vs latency")
    ax.grid(alpha=0.3, which="both")
    return _fig_png(fig)


def plot_operators(profile: dict, top: int = 12) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = profile["operators"][:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(ops) + 1.5))
    ax.barh([o["type"][:50] for o in ops], [o["total_ms"] for o in ops],
            color=["#7570b3" if o["delegated"] else "#e7298a" for o in ops])
    ax.set_xlabel("time per run (ms, p50 summed over instances)")
    ax.set_title("Top operators (purple: delegated, pink: portable)")
    return _fig_png(fig)


_COLUMNS = [("artifact", "artifact"), ("target", "target"), ("precision", "precision"), ("source", "where"),
            ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("std_ms", "std ms"),
            ("first_run_ms", "first ms"), ("load_ms", "load ms"), ("peak_rss_mb", "peak RSS MB"),
            ("size_mb", "size MB"), ("roofline_fraction", "roofline")]


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key == "roofline_fraction":
        return f"{v:.0%}"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def _row(r: dict) -> list[str]:
    cells = []
    for key, _ in _COLUMNS:
        v = r.get(key)
        if key == "source" and r.get("source") == "device":
            v = r.get("device")
        cells.append(_fmt(key, v))
    return cells


def build_report(results: list[dict], profiles: list[dict], out: str | Path, *, title: str = "edgevit report",
                 overwrite: bool = False) -> dict[str, Path]:
    """Write ``out`` (.html, self-contained) and the Markdown twin beside it; returns their paths."""
    out = Path(out)
    if out.suffix != ".html":
        raise ConfigError(f"report output {out} must end in .html (the Markdown version is written beside it)")
    if not results and not profiles:
        raise ConfigError("nothing to report: pass bench results, device results or an ETDump")
    figures: list[tuple[str, bytes]] = []
    if results:
        figures.append(("Latency per target and precision", plot_latency(results)))
        for name, fn in (("Latency vs resolution", plot_resolution), ("Accuracy drift vs latency", plot_drift)):
            png = fn(results)
            if png:
                figures.append((name, png))
    for i, prof in enumerate(profiles):
        figures.append((f"Per-operator time: {Path(prof['file']).name}", plot_operators(prof)))

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md_path = out.with_suffix(".md")
    files_dir = out.parent / f"{out.stem}_files"
    # HTML
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child"
             "{text-align:left}th{background:#f2f2f2}img{max-width:100%;margin:0.5em 0 1.5em}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>generated {stamp} by edgevit; {len(results)} results, "
             f"{len(profiles)} profiles</p>"]
    if results:
        parts.append("<h2>Results</h2><table><tr>" + "".join(f"<th>{h}</th>" for _, h in _COLUMNS) + "</tr>")
        for r in results:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _row(r)) + "</tr>")
        parts.append("</table>")
    for name, png in figures:
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    for prof in profiles:
        parts.append(f"<h2>Operators: {html.escape(Path(prof['file']).name)}</h2><p>{prof['runs']} runs, execute "
                     f"p50 {prof['total_ms']:.2f} ms, portable {prof['portable_ms']:.2f} ms</p><table><tr><th>operator"
                     "</th><th>count</th><th>ms</th><th>share</th><th>where</th></tr>")
        for t in prof["operators"]:
            where = t["backend"] if t["delegated"] else "portable"
            parts.append(f"<tr><td>{html.escape(t['type'])}</td><td>{t['count']}</td><td>{t['total_ms']:.3f}</td>"
                         f"<td>{t['share']:.1%}</td><td>{html.escape(where)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    # Markdown
    md = [f"# {title}", "", f"generated {stamp} by edgevit", ""]
    if results:
        md += ["| " + " | ".join(h for _, h in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        md += ["| " + " | ".join(_row(r)) + " |" for r in results]
        md.append("")
    for i, (name, _) in enumerate(figures):
        md += [f"## {name}", "", f"![{name}]({files_dir.name}/figure{i + 1}.png)", ""]
    for prof in profiles:
        md += [f"## Operators: {Path(prof['file']).name}", "", "| operator | count | ms | share | where |",
               "|---|---|---|---|---|"]
        md += [f"| {t['type']} | {t['count']} | {t['total_ms']:.3f} | {t['share']:.1%} | "
               f"{t['backend'] if t['delegated'] else 'portable'} |" for t in prof["operators"]]
        md.append("")
    with atomic_file(out, overwrite=overwrite) as tmp:
        tmp.write_text("\n".join(parts))
    with atomic_file(md_path, overwrite=overwrite) as tmp:
        tmp.write_text("\n".join(md))
    files_dir.mkdir(parents=True, exist_ok=True)
    for i, (_, png) in enumerate(figures):
        (files_dir / f"figure{i + 1}.png").write_bytes(png)
    return {"html": out, "markdown": md_path, "figures": files_dir}
