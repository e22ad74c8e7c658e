"""Sweep comparison report: one self-contained HTML page, its PNGs and a markdown table.

    python -m cifar_sweeps.report multirun/2026-11-22/05-03-06
    python -m cifar_sweeps.report multirun/2026-11-22/05-03-06 --compare-key optimizer --budget 50000 100000
    python -m cifar_sweeps.report multirun/2026-11-22/05-03-06 --wandb --entity me --project cifar_sweeps

DIR is a sweep directory (its trials are the sub-directories holding summary.json or .hydra/) or a
single run directory. Only local files are read: config.yaml, .hydra/{overrides,hydra}.yaml,
metrics.jsonl, summary.json, wandb.json, and an Optuna SQLite study (*.db) when there is one.
Output goes to DIR/report/ unless --out says otherwise.

This package: reading runs and studies, statistics, figures and the HTML/markdown page (`__init__`),
the W&B Report (`wandb`), the command line (`__main__`).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .. import plots
from ..errors import ConfigError
from ..names import is_meaningful, short_override, sweep_group_name
from ..record import read_history, read_summary

METRICS = ("best_val_acc", "final_val_acc", "test_acc")
METRIC_NAMES = {"best_val_acc": "best val acc", "final_val_acc": "final val acc", "test_acc": "test acc"}
STATE_ORDER = {"completed": 0, "pruned": 1, "failed": 2, "rejected": 3, "unfinished": 4}


@dataclass
class Trial:
    path: Path
    num: str  # job number in a sweep (sub-directory name), "-" for a single run
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    wandb: dict[str, Any] | None = None
    label: str = ""  # the overrides that set this trial apart from the others

    @property
    def state(self) -> str:
        # no summary.json yet: still running, or killed before train() could write one
        return self.summary.get("state", "unfinished")

    @property
    def params(self) -> int | None:
        return self.summary.get("params")

    def metric(self, name: str) -> float | None:
        value = self.summary.get(name)
        return value if isinstance(value, (int, float)) and math.isfinite(value) else None

    def key(self, name: str) -> str:
        """The trial's value of a Hydra group (its choice, e.g. norm -> 'gn') or of a dotted config key."""
        if name in self.choices:
            return str(self.choices[name])
        for o in self.overrides:  # what the command line set, also for trials rejected before config.yaml
            k, _, v = o.partition("=")
            if k.lstrip("+~") == name:
                return v
        node: Any = self.config
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                return "?"
            node = node[part]
        return json.dumps(node) if isinstance(node, (dict, list)) else str(node)


# -- reading ----------------------------------------------------------------------------------------

def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, OSError):
        return None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (json.JSONDecodeError, OSError):
        return None


def _is_run_dir(path: Path) -> bool:
    return (path / "summary.json").is_file() or (path / ".hydra").is_dir() or (path / "config.yaml").is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """DIR itself when it is a run, else every run directory below it (not inside wandb/ or report/)."""
    if _is_run_dir(root) and not (root / "multirun.yaml").is_file():
        return [root]
    found = set()
    for marker in ("summary.json", ".hydra", "config.yaml"):
        for hit in root.rglob(marker):
            run = hit.parent
            rel = run.relative_to(root).parts
            if run != root and not {"wandb", "report", ".hydra"} & set(rel):
                found.add(run)

    def order(p: Path):
        rel = p.relative_to(root).parts
        return tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in rel)

    return sorted(found, key=order)


def load_trial(path: Path, root: Path) -> Trial:
    rel = path.relative_to(root).as_posix() if path != root else "-"
    trial = Trial(path=path, num=rel)
    trial.overrides = [str(o) for o in (_load_yaml(path / ".hydra" / "overrides.yaml") or [])]
    # config.yaml is resolved but written only once training starts; Hydra's copy exists for every trial
    trial.config = _load_yaml(path / "config.yaml") or _load_yaml(path / ".hydra" / "config.yaml") or {}
    hydra_cfg = _load_yaml(path / ".hydra" / "hydra.yaml") or {}
    choices = (hydra_cfg.get("hydra", {}).get("runtime", {}) or {}).get("choices", {}) or {}
    trial.choices = {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}
    summary = read_summary(path)  # the run record (cifar_sweeps.record); None while running or after a kill
    trial.summary = summary.as_dict() if summary is not None else {}
    trial.wandb = _load_json(path / "wandb.json")
    trial.history = read_history(path)
    return trial


def _label_trials(trials: list[Trial]) -> list[str]:
    """Give each trial the overrides that differ between trials; return the ones all trials share."""
    sets = [[o for o in t.overrides if is_meaningful(o)] for t in trials]
    shared = set.intersection(*map(set, sets)) if len(sets) > 1 else set()
    for t, own in zip(trials, sets):
        t.label = ", ".join(short_override(o) for o in own if o not in shared) or ("defaults" if len(trials) == 1 else f"trial {t.num}")
    return [o for o in (sets[0] if sets else []) if o in shared]


@dataclass
class Sweep:
    root: Path
    trials: list[Trial]
    shared_overrides: list[str]
    study: list[dict[str, Any]]

    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.state == "completed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: STATE_ORDER.get(kv[0], 9)))

    def wandb_group(self) -> str:
        groups = [t.wandb.get("group") for t in self.trials if t.wandb and t.wandb.get("group")]
        return max(set(groups), key=groups.count) if groups else sweep_group_name(self.root)

    def wandb_project(self) -> str | None:
        projects = [t.wandb.get("project") for t in self.trials if t.wandb and t.wandb.get("project")]
        return max(set(projects), key=projects.count) if projects else None


def optuna_storages(root: Path, trials: list[Trial]) -> tuple[list[Path], str | None]:
    """SQLite files of the sweep: the Optuna sweeper's `storage` (relative to the cwd the sweep ran in)
    and any *.db in the sweep directory; and the sweep's study name when the sweeper config gives one."""
    dbs = list(root.glob("*.db"))
    study_name = None
    for t in trials[:1]:
        hydra_cfg = (_load_yaml(t.path / ".hydra" / "hydra.yaml") or {}).get("hydra", {}) or {}
        sweeper = hydra_cfg.get("sweeper", {}) or {}
        storage, study_name = sweeper.get("storage"), sweeper.get("study_name")
        if isinstance(storage, str) and storage.startswith("sqlite:///"):
            path = Path(storage[len("sqlite:///"):])
            if not path.is_absolute():
                path = Path((hydra_cfg.get("runtime", {}) or {}).get("cwd") or ".") / path
            dbs.append(path)
    unique = {p.resolve(): p for p in dbs if p.is_file()}
    return sorted(unique.values()), study_name if isinstance(study_name, str) else None


def read_optuna_studies(root: Path, trials: list[Trial]) -> list[dict[str, Any]]:
    """The sweep's Optuna studies, read from SQLite (optional: [] when there is none)."""
    studies = []
    dbs, study_name = optuna_storages(root, trials)
    for db in dbs:
        try:
            import optuna

            storage = f"sqlite:///{db.resolve()}"
            for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
                if study_name and s.study_name != study_name:
                    continue  # one storage holds many searches; show this sweep's
                best = s.best_trial
                studies.append({"file": str(db), "study": s.study_name, "n_trials": s.n_trials,
                                "directions": [d.name.lower() for d in s.directions],
                                "best_values": list(best.values) if best is not None and best.values else None,
                                "best_params": dict(best.params) if best is not None else None})
        except Exception as e:  # a locked, foreign or corrupt file must not stop the report
            studies.append({"file": str(db), "error": f"{type(e).__name__}: {e}"})
    return studies


def load_sweep(root: Path) -> Sweep:
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; pass a sweep directory (multirun/<date>/<time>) "
                          "or a run directory (outputs/<date>/<time>)")
    runs = find_run_dirs(root)
    if not runs:
        raise ConfigError(f"{root} holds no runs (no summary.json, config.yaml or .hydra/ below it); "
                          "pass the directory a sweep or run wrote")
    trials = [load_trial(p, root) for p in runs]
    shared = _label_trials(trials)
    return Sweep(root=root, trials=trials, shared_overrides=shared, study=read_optuna_studies(root, trials))


# -- numbers ----------------------------------------------------------------------------------------

def pareto_front(trials: list[Trial], metric: str) -> list[Trial]:
    """Trials no other trial beats with fewer or equal parameters: the accuracy-per-parameter frontier."""
    points = sorted((t for t in trials if t.params and t.metric(metric) is not None),
                    key=lambda t: (t.params, -t.metric(metric)))
    front, best = [], -math.inf
    for t in points:
        if t.metric(metric) > best:
            front.append(t)
            best = t.metric(metric)
    return front


def group_stats(sweep: Sweep, key: str, metric: str) -> list[dict[str, Any]]:
    rows = []
    groups: dict[str, list[Trial]] = {}
    for t in sweep.trials:
        groups.setdefault(t.key(key), []).append(t)
    for value, members in sorted(groups.items(), key=lambda kv: value_order(kv[0])):
        done = [t for t in members if t.state == "completed"]
        vals = [t.metric(metric) for t in done if t.metric(metric) is not None]
        tests = [t.metric("test_acc") for t in done if t.metric("test_acc") is not None]
        params = [t.params for t in done if t.params]
        rows.append({"value": value, "trials": len(members), "completed": len(done),
                     "best": max(vals) if vals else None, "mean": statistics.fmean(vals) if vals else None,
                     "sd": statistics.stdev(vals) if len(vals) > 1 else None,
                     "best_test": max(tests) if tests else None,
                     "mean_test": statistics.fmean(tests) if tests else None,
                     "median_params": int(statistics.median(params)) if params else None})
    return rows


def budgets_of(sweep: Sweep, extra: list[int]) -> list[int]:
    found = {t.config["budget"].get("max_params") for t in sweep.trials if isinstance(t.config.get("budget"), dict)}
    found |= {t.summary.get("max_params") for t in sweep.trials}
    return sorted({int(b) for b in list(found) + list(extra) if b})


# -- formatting -------------------------------------------------------------------------------------

def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def count(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def short_params(n: float, _pos=None) -> str:
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k" if n >= 1e3 else f"{n:g}"


def note_of(t: Trial) -> str:
    if t.state == "rejected":
        return t.summary.get("reason") or ""
    if t.state == "failed":
        return (t.summary.get("error") or "")[:160]
    if t.state == "pruned":
        return f"pruned at epoch {t.summary.get('epochs_done')} of {t.summary.get('epochs')}"
    if t.state == "unfinished":
        return "no summary.json: still running or killed"
    return ""


def trial_rows(sweep: Sweep, key: str, metric: str) -> tuple[list[str], list[list[str]]]:
    best = max(sweep.completed(), key=lambda t: t.metric(metric) or -1, default=None)
    header = ["#", "overrides", key, "state", "params", "RF", "best val", "test", "epochs", "time", "note"]
    rows = []
    for t in sweep.trials:
        rf = t.summary.get("receptive_field")
        epochs = t.summary.get("epochs_done") or t.summary.get("epochs")
        rows.append([t.num + (" ★" if t is best else ""), t.label, t.key(key), t.state, count(t.params),
                     "–" if rf is None else str(rf), pct(t.metric("best_val_acc")), pct(t.metric("test_acc")),
                     "–" if epochs is None else str(epochs), duration(t.summary.get("wall_s")), note_of(t)])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- figures ----------------------------------------------------------------------------------------

def epoch_axis(ax, epochs: int) -> None:
    """Whole epochs only; a one-epoch run gets a sensible range instead of 0.95-1.05."""
    if epochs <= 20:
        ax.set_xticks(range(1, epochs + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5 if epochs < 3 else 0.8, epochs + (0.5 if epochs < 3 else 0.2))


def value_order(v: str):
    """Sort key: numbers numerically (4 < 8 < 16), then text (bn < gn < ln)."""
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def _colors(values: list[str]) -> dict[str, str]:
    return {v: plots.PALETTE[i % len(plots.PALETTE)] for i, v in enumerate(sorted(set(values), key=value_order))}


def accuracy_vs_params_figure(sweep: Sweep, key: str, metric: str, budgets: list[int]) -> Figure:
    done = [t for t in sweep.completed() if t.params and t.metric(metric) is not None]
    colors = _colors([t.key(key) for t in sweep.trials])
    fig = Figure(figsize=(10, 5.2))
    ax = fig.subplots()
    for value, color in colors.items():
        pts = [t for t in done if t.key(key) == value]
        if pts:
            ax.scatter([t.params for t in pts], [100 * t.metric(metric) for t in pts], s=46, color=color,
                       edgecolor="white", linewidth=0.6, label=f"{key}={value}", zorder=3)
    front = pareto_front(done, metric)
    if front:
        xs = [t.params for t in front]
        ys = [100 * t.metric(metric) for t in front]
        ax.step(xs, ys, where="post", color="black", linestyle="--", linewidth=1.2, label="Pareto front", zorder=2)
        ax.scatter(xs, ys, s=120, facecolor="none", edgecolor="black", linewidth=1.2, zorder=4)
        for t in front[-6:]:  # the largest few: labels for every point would overlap
            ax.annotate(t.label if len(t.label) < 40 else f"trial {t.num}", (t.params, 100 * t.metric(metric)),
                        xytext=(6, -12), textcoords="offset points", fontsize=7.5, color="#333333")
    ymin = min([100 * t.metric(metric) for t in done], default=0)
    rejected = [t for t in sweep.trials if t.state == "rejected" and t.params]
    if rejected:
        y = ymin - 2
        ax.scatter([t.params for t in rejected], [y] * len(rejected), marker="x", color="#999999", s=30,
                   label=f"rejected: over budget ({len(rejected)})", zorder=3)
    xs_all = [t.params for t in done + rejected]
    for b in budgets:
        ax.axvline(b, color="#c62828", linestyle=":", linewidth=1.4, zorder=1)
        ax.text(b, 1.01, f"budget {short_params(b)}", transform=ax.get_xaxis_transform(), color="#c62828",
                ha="center", va="bottom", fontsize=8)
    if xs_all:
        lo, hi = min(xs_all + budgets), max(xs_all + budgets)
        if hi / max(lo, 1) > 2.5:
            # log scale, labelled at 1-2-5 steps (a bare log axis over 10k-50k shows no labels at all)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(short_params))
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(f"{METRIC_NAMES[metric]} (%)")
    ax.set_title(f"{METRIC_NAMES[metric]} vs parameters ({len(done)} completed trials)", pad=16)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # outside: never hides points
    return fig


def val_curves_figure(sweep: Sweep, key: str, metric: str, top: int) -> Figure:
    ranked = sorted((t for t in sweep.completed() if t.metric(metric) is not None and t.history),
                    key=lambda t: -t.metric(metric))[:top]
    colors = _colors([t.key(key) for t in sweep.trials])  # the same colour per group as the other figures
    styles, seen = ["-", "--", ":", "-."], {}
    fig = Figure(figsize=(10, 4.4))
    ax = fig.subplots()
    for t in ranked:
        k = seen[t.key(key)] = seen.get(t.key(key), -1) + 1
        rows = [r for r in t.history if r.get("val_acc") is not None]
        ax.plot([r["epoch"] for r in rows], [100 * r["val_acc"] for r in rows], marker="os^D"[k % 4], ms=3.5,
                color=colors[t.key(key)], linestyle=styles[k % 4],
                label=f"#{t.num} {t.label[:50]} ({pct(t.metric(metric))})")
    epoch_axis(ax, max((len(t.history) for t in ranked), default=1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"Validation accuracy per epoch: the {len(ranked)} best trials by {METRIC_NAMES[metric]} "
                 f"(colour = {key})")
    ax.grid(alpha=0.3)
    if ranked:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no completed trial with validation curves", ha="center", transform=ax.transAxes)
    return fig


def compare_figure(sweep: Sweep, key: str, metric: str) -> Figure:
    values = sorted({t.key(key) for t in sweep.trials}, key=value_order)
    colors = _colors(values)
    fig = Figure(figsize=(11, 4.4))
    ax_pts, ax_curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    rng = np.random.default_rng(0)
    for i, v in enumerate(values):
        done = [t for t in sweep.completed() if t.key(key) == v]
        for offset, name, marker in ((-0.15, metric, "o"), (0.15, "test_acc", "D")):
            ys = [100 * t.metric(name) for t in done if t.metric(name) is not None]
            if ys:
                xs = i + offset + rng.uniform(-0.05, 0.05, len(ys))
                ax_pts.scatter(xs, ys, color=colors[v], marker=marker, s=34, alpha=0.85, edgecolor="white",
                               linewidth=0.5, zorder=3)
                ax_pts.hlines(statistics.fmean(ys), i + offset - 0.1, i + offset + 0.1, color="black", linewidth=2,
                              zorder=4)
        rows = [t.history for t in done if t.history]
        if rows:
            n = max(len(h) for h in rows)
            curves = np.full((len(rows), n), np.nan)
            for j, h in enumerate(rows):
                for r in h:
                    if r.get("val_acc") is not None and 1 <= r["epoch"] <= n:
                        curves[j, r["epoch"] - 1] = 100 * r["val_acc"]
            epochs = np.arange(1, n + 1)
            with np.errstate(all="ignore"):
                mean = np.nanmean(curves, 0)
            ax_curve.plot(epochs, mean, color=colors[v], marker="o", ms=3, label=f"{key}={v} (n={len(rows)})")
            if len(rows) > 1:
                ax_curve.fill_between(epochs, np.nanmin(curves, 0), np.nanmax(curves, 0), color=colors[v], alpha=0.15)
    ax_pts.set_xticks(range(len(values)), [f"{key}={v}" for v in values])
    ax_pts.set_xlim(-0.6, len(values) - 0.4)
    ax_pts.set_ylabel("accuracy (%)")
    ax_pts.set_title(f"● {METRIC_NAMES[metric]}   ◆ test acc   (black bar = mean)", fontsize=10)
    ax_pts.grid(alpha=0.3, axis="y")
    ax_curve.set_xlabel("epoch")
    epoch_axis(ax_curve, max((len(t.history) for t in sweep.completed()), default=1))
    ax_curve.set_ylabel("validation accuracy (%)")
    ax_curve.set_title("mean validation curve (band = min–max over trials)", fontsize=10)
    ax_curve.grid(alpha=0.3)
    if ax_curve.lines:
        ax_curve.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{key}: side by side", fontsize=12)
    return fig


# -- output -----------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1240px; padding: 24px 32px 64px; color: #1d2430; line-height: 1.45; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 20px; margin-top: 36px; border-bottom: 1px solid #e3e6ea;
     padding-bottom: 4px; }
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
.state { padding: 1px 7px; border-radius: 10px; font-size: 12px; }
.completed { background: #e6f4ea; color: #1e6b34; } .failed { background: #fde7e9; color: #a4262c; }
.rejected { background: #eceff1; color: #546e7a; } .pruned { background: #e8eaf6; color: #3949ab; } .unfinished { background: #fff4ce; color: #7a5b00; }
img { max-width: 100%; border: 1px solid #eef0f3; border-radius: 6px; margin: 8px 0; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html_table(header: list[str], rows: list[list[str]], numeric: set[int], best_row: int | None = None,
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


def write_report(sweep: Sweep, out: Path, key: str = "norm", metric: str = "best_val_acc",
                 budgets: list[int] = (), top: int = 5) -> dict[str, Path]:
    """Write report.html (self-contained), report.md and the PNGs to `out`; return their paths."""
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r} must be one of {list(METRICS)}")
    out.mkdir(parents=True, exist_ok=True)
    budgets = budgets_of(sweep, list(budgets))
    pngs = {
        "accuracy_vs_params": plots.save(accuracy_vs_params_figure(sweep, key, metric, budgets),
                                         out / "accuracy_vs_params.png"),
        "val_curves": plots.save(val_curves_figure(sweep, key, metric, top), out / "val_curves.png"),
        "compare": plots.save(compare_figure(sweep, key, metric), out / f"compare_{key.replace('/', '_')}.png"),
    }
    header, rows = trial_rows(sweep, key, metric)
    best = max(sweep.completed(), key=lambda t: t.metric(metric) or -1, default=None)
    groups = group_stats(sweep, key, metric)
    name = METRIC_NAMES[metric]
    g_header = [key, "trials", "completed", f"{name}: best", f"{name}: mean ± sd", "test acc: best", "test acc: mean",
                "median params"]
    g_rows = [[g["value"], str(g["trials"]), str(g["completed"]), pct(g["best"]),
               pct(g["mean"]) + ("" if g["sd"] is None else f" ± {100 * g['sd']:.2f}"), pct(g["best_test"]),
               pct(g["mean_test"]), count(g["median_params"])] for g in groups]
    front = pareto_front(sweep.completed(), metric)
    p_header = ["#", "overrides (Pareto-front trials)", "params", name, "test acc"]
    p_rows = [[t.num, t.label, count(t.params), pct(t.metric(metric)), pct(t.metric("test_acc"))] for t in front]
    counts = sweep.counts()
    title = f"Sweep report: {sweep.root.resolve().name}" if len(sweep.trials) > 1 else \
        f"Run report: {sweep.root.resolve().name}"
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    # markdown
    md = [f"# {title}", "", f"`{sweep.root}` · {len(sweep.trials)} trials (" +
          ", ".join(f"{n} {s}" for s, n in counts.items()) + f") · generated {created}", ""]
    if sweep.shared_overrides:
        md += ["Shared overrides: `" + " ".join(sweep.shared_overrides) + "`", ""]
    if best is not None:
        md += [f"**Best trial** #{best.num} ({best.label}): {METRIC_NAMES[metric]} {pct(best.metric(metric))}"
               + ("" if metric == "test_acc" else f", test acc {pct(best.metric('test_acc'))}")
               + f", {count(best.params)} parameters.", ""]
    md += ["## Trials", "", markdown_table(header, rows), "", f"## {key} compared", "",
           markdown_table(g_header, g_rows), "", f"![{key} compared]({pngs['compare'].name})", "",
           "## Accuracy vs parameters", "", markdown_table(p_header, p_rows) if p_rows else "(no completed trial)",
           "", f"![accuracy vs parameters]({pngs['accuracy_vs_params'].name})", "", "## Validation curves", "",
           f"![validation curves]({pngs['val_curves'].name})", ""]
    if sweep.study:
        md += ["## Optuna study", ""]
        md += [f"- `{s['file']}`: " + (s["error"] if "error" in s else
               f"study `{s['study']}`, {s['n_trials']} trials, {'/'.join(s['directions'])}, best values "
               f"{s['best_values']}, best params {s['best_params']}") for s in sweep.study] + [""]
    (out / "report.md").write_text("\n".join(md))

    # html
    cards = [("trials", str(len(sweep.trials))), *[(s, str(n)) for s, n in counts.items()]]
    if best is not None:
        cards += [(f"best {METRIC_NAMES[metric]}", pct(best.metric(metric)))]
        if metric != "test_acc":
            cards.append(("its test accuracy", pct(best.metric("test_acc"))))
        cards.append(("its parameters", count(best.params)))
    if budgets:
        cards.append(("budget", " / ".join(short_params(b) for b in budgets)))
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<div class="meta"><code>{html.escape(str(sweep.root))}</code> · generated {created} · '
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
             _html_table(g_header, g_rows, numeric={1, 2, 3, 4, 5, 6, 7}), _img(pngs["compare"], f"{key} compared"),
             "<h2>Accuracy vs parameters</h2>",
             "<p class=meta>Dashed: the Pareto front (no other trial is more accurate with as few parameters); "
             "dotted red: parameter budgets; grey crosses: trials rejected before training.</p>",
             _img(pngs["accuracy_vs_params"], "accuracy vs parameters")]
    if p_rows:
        body.append(_html_table(p_header, p_rows, numeric={2, 3, 4}))
    body += ["<h2>Validation curves of the best trials</h2>", _img(pngs["val_curves"], "validation curves"),
             "<h2>All trials</h2>",
             "<p class=meta>★ best by " + html.escape(metric) + "; RF = receptive field in pixels; "
             "time = wall time of the trial.</p>",
             _html_table(header, rows, numeric={0, 4, 5, 6, 7, 8, 9},
                         best_row=next((i for i, t in enumerate(sweep.trials) if t is best), None),
                         state_col=3, note_col=10)]
    if sweep.study:
        s_header = ["file", "study", "trials", "directions", "best values", "best params / error"]
        s_rows = [[s["file"], s.get("study", ""), str(s.get("n_trials", "")), ", ".join(s.get("directions", [])),
                   ", ".join(f"{v:.4g}" for v in s.get("best_values") or []),
                   s.get("error") or json.dumps(s.get("best_params"))] for s in sweep.study]
        body += ["<h2>Optuna study</h2>", _html_table(s_header, s_rows, numeric={2})]
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    (out / "report.html").write_text(page)
    return {"html": out / "report.html", "markdown": out / "report.md", **pngs}
