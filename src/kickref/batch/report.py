"""The report of a batch: ``summary.csv``, ``summary.json`` and ``index.html`` (a static page:
the summary table, sortable by a click on a column head, two plots, links to each entry's
outputs) with ``delta_rfree.png`` (ΔR-free against resolution) and ``time_atoms.png`` (time
against atoms)."""
from __future__ import annotations

import csv
import html
import io
import os
from pathlib import Path

from ..io.files import atomic_path, json_ready, write_json_atomic, write_text_atomic

COLUMNS = ["entry", "status", "chosen", "start_r_work", "start_r_free", "r_work", "r_free", "delta_r_free",
           "start_rmsd_bond", "rmsd_bond", "rmsd_angle", "d_min", "n_atoms", "time", "wall", "skipped", "reason", "error",
           "final_model"]
PLOTS = ("delta_rfree.png", "time_atoms.png")


def write_report(rows: list[dict], outdir, rule) -> None:
    """summary.csv, summary.json, the plots and index.html for ``rows`` (one per entry)."""
    outdir = Path(outdir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in COLUMNS})
    write_text_atomic(outdir / "summary.csv", buf.getvalue())
    write_json_atomic(outdir / "summary.json", {"rule": rule.as_dict(), "entries": json_ready(rows)})
    plots = _plots(rows, outdir)
    write_text_atomic(outdir / "index.html", page(rows, outdir, plots, rule))


def _csv_value(v):
    if isinstance(v, float):
        return f"{v:.5g}"
    return "" if v is None else v


def _plots(rows, outdir) -> list[str]:
    """The PNGs written (none without matplotlib or without finished entries)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return []
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    specs = [(PLOTS[0], "d_min", "delta_r_free", "resolution (Å)", "ΔR-free (chosen − start)"),
             (PLOTS[1], "n_atoms", "time", "atoms", "time, all candidates (s)")]
    made = []
    for name, xk, yk, xl, yl in specs:
        pts = [(r[xk], r[yk], r["entry"]) for r in ok if r.get(xk) is not None and r.get(yk) is not None]
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        ax.scatter([p[0] for p in pts], [p[1] for p in pts])
        for x, y, label in pts:
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if yk == "delta_r_free":
            ax.axhline(0, color="grey", lw=0.8)
        if xk == "n_atoms" and pts:
            ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(outdir / name) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        made.append(name)
    return made


def _cell(v) -> str:
    if v is None:
        return "<td></td>"
    if isinstance(v, bool):
        return f"<td>{'yes' if v else ''}</td>"
    if isinstance(v, float):
        return f'<td data-v="{v!r}">{v:.4f}</td>' if abs(v) < 10 else f'<td data-v="{v!r}">{v:.1f}</td>'
    if isinstance(v, int):
        return f'<td data-v="{v}">{v}</td>'
    return f"<td>{html.escape(str(v))}</td>"


def _links(r, outdir) -> str:
    def a(path, text):
        rel = os.path.relpath(path, outdir)
        return f'<a href="{html.escape(rel)}">{html.escape(text)}</a>'
    out = []
    if r.get("final_model"):
        out.append(a(r["final_model"], "model"))
    out.append(a(outdir / r["entry"] / "entry.json", "manifest"))
    for name, c in (r.get("candidates") or {}).items():
        if c.get("files", {}).get("log"):
            out.append(a(c["files"]["log"], f"{name} log"))
    return "<td>" + " ".join(out) + "</td>"


def page(rows, outdir, plots, rule) -> str:
    """The HTML page (self-contained but for the plot PNGs beside it)."""
    cols = [c for c in COLUMNS if c not in ("final_model", "error")]
    head = "".join(f'<th onclick="sortBy({i})">{html.escape(c)}</th>' for i, c in enumerate(cols))
    body = []
    for r in rows:
        cls = "err" if r.get("status") != "ok" else ("kept" if r.get("chosen") == "start" else "")
        cells = [_cell(r.get(c)) if c != "reason" else _cell(r.get("reason") or r.get("error")) for c in cols]
        body.append(f'<tr class="{cls}">' + "".join(cells) + _links(r, Path(outdir)) + "</tr>")
    n_ok = sum(r.get("status") == "ok" for r in rows)
    n_kept = sum(r.get("chosen") == "start" for r in rows)
    imgs = "".join(f'<img src="{p}" alt="{p}">' for p in plots)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>kickref batch</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #bbb; padding: 3px 6px; }}
th {{ background: #e8eef5; cursor: pointer; }}
tr.err {{ background: #fbe3e3; }} tr.kept {{ background: #f4f4dc; }}
img {{ margin: 1em 1em 0 0; border: 1px solid #ddd; }}
</style></head><body>
<h1>kickref batch</h1>
<p>{len(rows)} entries: {n_ok} refined ({n_kept} kept their start model), {len(rows) - n_ok} failed.
Chosen per entry: the lowest R-free among candidates with non-H bond RMSD &le; {rule.max_bond_rmsd} &Aring;
and R-free &minus; R-work &le; the start's + {rule.max_gap_increase}; the start model is kept unless
that R-free is below the start's (rows shaded yellow). Click a column head to sort.</p>
<table id="summary"><thead><tr>{head}<th>outputs</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
<div>{imgs}</div>
<script>
function sortBy(col) {{
  const tb = document.querySelector('#summary tbody');
  const rows = Array.from(tb.rows);
  const th = document.querySelectorAll('#summary th')[col];
  const dir = th.dataset.dir === 'asc' ? -1 : 1;
  th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  const key = r => {{ const c = r.cells[col]; return c.dataset.v !== undefined ? parseFloat(c.dataset.v) : c.textContent; }};
  rows.sort((a, b) => {{ const x = key(a), y = key(b);
    return (typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y))) * dir; }});
  rows.forEach(r => tb.appendChild(r));
}}
</script>
</body></html>
"""
