"""Writing the report: report.html (self-contained: figures inlined), report.md and the PNGs."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from .. import plots
from ..errors import ConfigError
from .figures import accuracy_vs_params_figure, compare_figure, val_curves_figure
from .load import METRIC_NAMES, METRICS, Sweep, Trial
from .stats import best_trial, budgets_of, group_stats, pareto_front
from .study import StudyReport, StudyTrial
from .text import count, duration, markdown_table, pct, short_params

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1240px; padding: 24px 32px 64px; color: #1d2430; line-height: 1.45; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 20px; margin-top: 36px; border-bottom: 1px solid #e3e6ea;
     padding-bottom: 4px; } h3 { font-size: 16px; margin-top: 22px; }
.meta { color: #5b6573; font-size: 14px; } code { background: #f2f4f7; padding: 1px 5px; border-radius: 4px;
     font-size: 13px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin: 18px 0 6px; }
.card { border: 1px solid #e3e6ea; border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card .v { font-size: 22px; font-weight: 600; } .card .k { color: #5b6573; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; margin: 10px 0; }
th, td { border-bottom: 1px solid #e8eaee; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f6f7f9; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff8e1; } td.note { color: #8a6d00; max-width: 320px; font-size: 12px; }
.state { padding: 1px 7px; border-radius: 10px; font-size: 12px; white-space: nowrap; }
.completed, .COMPLETE { background: #e6f4ea; color: #1e6b34; } .failed, .FAIL { background: #fde7e9; color: #a4262c; }
.rejected { background: #eceff1; color: #546e7a; } .pruned, .PRUNED { background: #e8eaf6; color: #3949ab; }
.unfinished, .RUNNING, .WAITING { background: #fff4ce; color: #7a5b00; }
img { max-width: 100%; border: 1px solid #eef0f3; border-radius: 6px; margin: 8px 0; }
"""


# -- table rows -------------------------------------------------------------------------------------

def retry_story(t: Trial) -> str:
    """'trial 2 failed (worker died), retried as trial 5' for each dead Optuna trial of this folder."""
    return "; ".join(f"trial {a.number} {a.story()}" for a in t.attempts if a.retried_as is not None)


def note_of(t: Trial) -> str:
    s = t.summary
    if t.state == "rejected":
        note = s.reason or ""
    elif t.state == "failed":
        note = (s.error or "")[:160]
    elif t.state == "pruned":
        note = f"pruned at epoch {s.epochs_done or t.last_epoch()}" + (f" of {s.epochs}" if s.epochs else "")
    elif t.state == "unfinished":
        note = "no summary.json: still running or killed"
    else:
        note = ""
    return "; ".join(n for n in (retry_story(t), note) if n)


def epochs_of(t: Trial) -> str:
    """Epochs finished; 'done/asked' for a run that stopped early (pruned, failed, rejected)."""
    s = t.summary
    done = (s.epochs_done if s is not None else 0) or t.last_epoch()  # older records lack epochs_done
    if s is None:
        return str(done) if t.history else "–"
    if t.state == "completed" or not s.epochs:
        return str(done or s.epochs or 0)
    return f"{done}/{s.epochs}"


def optuna_of(t: Trial) -> str:
    """The folder's Optuna trials and their states, e.g. '2 FAIL → 5 COMPLETE' (a dead trial, then its retry)."""
    return " → ".join(f"{a.number} {a.state}" for a in t.attempts)


def trial_rows(sweep: Sweep, key: str, metric: str) -> tuple[list[str], list[list[str]]]:
    best = best_trial(sweep, metric)
    header = ["#", "overrides", key, "state", "params", "RF", "best val", "test", "epochs", "time", "note"]
    with_optuna = any(t.attempts for t in sweep.trials)
    if with_optuna:
        header.append("optuna trial")
    rows = []
    for t in sweep.trials:
        rf = t.summary.receptive_field if t.summary is not None else None
        row = [t.num + (" ★" if t is best else ""), t.label, t.key(key), t.state, count(t.params),
               "–" if rf is None else str(rf), pct(t.metric("best_val_acc")), pct(t.metric("test_acc")),
               epochs_of(t), duration(t.summary.wall_s if t.summary is not None else None), note_of(t)]
        rows.append(row + [optuna_of(t)] if with_optuna else row)
    return header, rows


def shown_run_dir(sweep: Sweep, st: StudyTrial) -> str:
    """A study trial's run folder as the trials table names it (its '#'), else the path as recorded."""
    for t in sweep.trials:
        if any(a is st for a in t.attempts):
            return t.num
    return st.run_dir or "–"


def study_line(s: StudyReport) -> str:
    if s.error:
        return s.error
    by_state = ", ".join(f"{n} {state}" for state, n in s.counts.items())
    line = f"study `{s.name}`, {s.n_trials} trials, {'/'.join(s.directions)} ({by_state or 'none yet'})"
    if s.best_values is not None:
        line += f", best values {s.best_values}, best params {s.best_params}"
    if s.pareto:
        line += f", Pareto-optimal trials {s.pareto}"
    return line


def study_trial_rows(sweep: Sweep, s: StudyReport) -> tuple[list[str], list[list[str]]]:
    header = ["trial", "state", "value", "run dir", "retries"]
    rows = [[str(st.number), st.state, ", ".join(f"{v:.4g}" for v in st.values or []) or "–",
             shown_run_dir(sweep, st), st.story()] for st in s.trials]
    return header, rows


# -- html -------------------------------------------------------------------------------------------

def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_table(header: list[str], rows: list[list[str]], numeric: set[int], best_row: int | None = None,
               state_col: int | None = None, note_col: int | None = None) -> str:
    out = ["<table><thead><tr>" + "".join(f'<th class="num">{html.escape(h)}</th>' if j in numeric else
                                           f"<th>{html.escape(h)}</th>" for j, h in enumerate(header))
           + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cells = []
        for j, c in enumerate(row):
            text = html.escape(str(c))
            if j == state_col:
                cells.append(f'<td><span class="state {text}">{text}</span></td>')
            elif j == note_col:
                cells.append(f'<td class="note">{text}</td>')
            else:
                cells.append(f'<td class="num">{text}</td>' if j in numeric else f"<td>{text}</td>")
        out.append(f'<tr{" class=best" if i == best_row else ""}>' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def study_html(sweep: Sweep) -> list[str]:
    s_header = ["storage", "study", "trials", "by state", "directions", "best values", "best params / error"]
    s_rows = [[s.storage, s.name or "", str(s.n_trials) if not s.error else "",
               ", ".join(f"{n} {state}" for state, n in s.counts.items()), ", ".join(s.directions),
               ", ".join(f"{v:.4g}" for v in s.best_values or []),
               s.error or (json.dumps(s.best_params) if s.best_params is not None else
                           f"Pareto-optimal trials {s.pareto}" if s.pareto else "–")] for s in sweep.studies]
    body = ["<h2>Optuna study</h2>", html_table(s_header, s_rows, numeric={2})]
    for s in sweep.studies:
        if s.trials:
            header, rows = study_trial_rows(sweep, s)
            body += [f"<h3>Trials of study {html.escape(s.name or '')}</h3>",
                     html_table(header, rows, numeric={0, 2}, state_col=1, note_col=4)]
    return body


# -- the report -------------------------------------------------------------------------------------

def write_report(sweep: Sweep, out: Path, key: str = "norm", metric: str = "best_val_acc",
                 budgets: list[int] = (), top: int = 5) -> dict[str, Path]:
    """Write report.html (self-contained), report.md and the PNGs to `out`; return their paths."""
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r} must be one of {list(METRICS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = budgets_of(sweep, list(budgets))
    pngs = {
        "accuracy_vs_params": plots.save(accuracy_vs_params_figure(sweep, key, metric, budgets),
                                         out / "accuracy_vs_params.png"),
        "val_curves": plots.save(val_curves_figure(sweep, key, metric, top), out / "val_curves.png"),
        "compare": plots.save(compare_figure(sweep, key, metric), out / f"compare_{key.replace('/', '_')}.png"),
    }
    header, rows = trial_rows(sweep, key, metric)
    best = best_trial(sweep, metric)
    name = METRIC_NAMES[metric]
    g_header = [key, "trials", "completed", f"{name}: best", f"{name}: mean ± sd", "test acc: best", "test acc: mean",
                "median params"]
    g_rows = [[g["value"], str(g["trials"]), str(g["completed"]), pct(g["best"]),
               pct(g["mean"]) + ("" if g["sd"] is None else f" ± {100 * g['sd']:.2f}"), pct(g["best_test"]),
               pct(g["mean_test"]), count(g["median_params"])] for g in group_stats(sweep, key, metric)]
    front = pareto_front(sweep.completed(), metric)
    p_header = ["#", "overrides (Pareto-front trials)", "params", name, "test acc"]
    p_rows = [[t.num, t.label, count(t.params), pct(t.metric(metric)), pct(t.metric("test_acc"))] for t in front]
    counts = sweep.counts()
    root_names = ", ".join(r.resolve().name for r in sweep.roots)
    title = f"Sweep report: {root_names}" if len(sweep.trials) > 1 else f"Run report: {root_names}"
    where = " + ".join(str(r) for r in sweep.roots)
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    # markdown
    md = [f"# {title}", "", f"`{where}` · {len(sweep.trials)} trials (" +
          ", ".join(f"{n} {s}" for s, n in counts.items()) + f") · generated {created}", ""]
    if sweep.shared_overrides:
        md += ["Shared overrides: `" + " ".join(sweep.shared_overrides) + "`", ""]
    if best is not None:
        md += [f"**Best trial** #{best.num} ({best.label}): {name} {pct(best.metric(metric))}"
               + ("" if metric == "test_acc" else f", test acc {pct(best.metric('test_acc'))}")
               + f", {count(best.params)} parameters.", ""]
    md += ["## Trials", "", markdown_table(header, rows), "", f"## {key} compared", "",
           markdown_table(g_header, g_rows), "", f"![{key} compared]({pngs['compare'].name})", "",
           "## Accuracy vs parameters", "", markdown_table(p_header, p_rows) if p_rows else "(no completed trial)",
           "", f"![accuracy vs parameters]({pngs['accuracy_vs_params'].name})", "", "## Validation curves", "",
           f"![validation curves]({pngs['val_curves'].name})", ""]
    if sweep.studies:
        md += ["## Optuna study", ""] + [f"- `{s.storage}`: {study_line(s)}" for s in sweep.studies] + [""]
        for s in sweep.studies:
            if s.trials:
                md += [f"### Trials of study `{s.name}`", "", markdown_table(*study_trial_rows(sweep, s)), ""]
    (out / "report.md").write_text("\n".join(md))

    # html
    cards = [("trials", str(len(sweep.trials))), *[(s, str(n)) for s, n in counts.items()]]
    if best is not None:
        cards += [(f"best {name}", pct(best.metric(metric)))]
        if metric != "test_acc":
            cards.append(("its test accuracy", pct(best.metric("test_acc"))))
        cards.append(("its parameters", count(best.params)))
    if budgets:
        cards.append(("budget", " / ".join(short_params(b) for b in budgets)))
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<div class="meta"><code>{html.escape(where)}</code> · generated {created} · '
            f"compared by <code>{html.escape(key)}</code> · ranked by <code>{metric}</code></div>",
            '<div class="cards">' + "".join(f'<div class="card"><div class="v">{html.escape(v)}</div>'
                                           f'<div class="k">{html.escape(k)}</div></div>' for k, v in cards) + "</div>"]
    if best is not None:
        body.append(f"<p><b>Best trial</b> #{html.escape(best.num)}: <code>{html.escape(best.label)}</code> "
                    f"({html.escape(str(best.path))})</p>")
    if sweep.shared_overrides:
        body.append("<p class=meta>Overrides shared by all trials: <code>" +
                    html.escape(" ".join(sweep.shared_overrides)) + "</code></p>")
    body += [f"<h2>{html.escape(key)} compared side by side</h2>",
             html_table(g_header, g_rows, numeric={1, 2, 3, 4, 5, 6, 7}), _img(pngs["compare"], f"{key} compared"),
             "<h2>Accuracy vs parameters</h2>",
             "<p class=meta>Dashed: the Pareto front (no other trial is more accurate with as few parameters); "
             "dotted red: parameter budgets; grey crosses: trials rejected before training.</p>",
             _img(pngs["accuracy_vs_params"], "accuracy vs parameters")]
    if p_rows:
        body.append(html_table(p_header, p_rows, numeric={2, 3, 4}))
    body += ["<h2>Validation curves of the best trials</h2>", _img(pngs["val_curves"], "validation curves"),
             "<h2>All trials</h2>",
             "<p class=meta>★ best by " + html.escape(metric) + "; RF = receptive field in pixels; "
             "epochs = finished (of asked, for a run that stopped early); time = wall time of the trial.</p>",
             html_table(header, rows, numeric={0, 4, 5, 6, 7, 8, 9},
                        best_row=next((i for i, t in enumerate(sweep.trials) if t is best), None),
                        state_col=3, note_col=10)]
    if sweep.studies:
        body += study_html(sweep)
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    (out / "report.html").write_text(page)
    return {"html": out / "report.html", "markdown": out / "report.md", **pngs}
