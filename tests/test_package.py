"""The package as users get it: a wheel that holds every config and works from any directory, and a
module graph without import cycles."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "cifar_sweeps"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """The project built as a wheel and installed (without dependencies: they are here already) into a
    fresh folder outside the repository."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(tmp / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("cifar_sweeps-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n[len("cifar_sweeps/conf/"):] for n in names if n.startswith("cifar_sweeps/conf/") and n.endswith(".yaml"))
    assert shipped == sorted(p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet", "--target",
                    str(tmp / "site"), str(wheel)], check=True, capture_output=True, timeout=300)
    return tmp / "site"


def run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # the wheel's folder first on sys.path: Python's path finder then finds cifar_sweeps there before the
    # editable install's finder (appended to sys.meta_path) is asked
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_wheel_composes_every_group_and_trains_from_another_directory(installed_wheel, tmp_path, cifar_npz):
    where = run_installed(installed_wheel, tmp_path, "-c", "import cifar_sweeps; print(cifar_sweeps.__file__)")
    assert where.stdout.strip().startswith(str(installed_wheel)), where.stdout + where.stderr

    proc = run_installed(installed_wheel, tmp_path, "-m", "cifar_sweeps.inspect", "model=skip_s8")
    assert proc.returncode == 0 and "47,304 parameters" in proc.stdout, proc.stderr[-2000:]
    for overrides in (["+experiment=best_50k"], ["hparams_search=budget_50k", "model=airnet"], ["pruner=hyperband"]):
        proc = run_installed(installed_wheel, tmp_path, "-m", "cifar_sweeps.inspect", *overrides)
        assert proc.returncode == 0, (overrides, proc.stderr[-2000:])

    proc = run_installed(installed_wheel, tmp_path, "-m", "cifar_sweeps.train", f"data.npz={cifar_npz}",
                         "data.train_subset=256", "data.val_size=100", "data.test_subset=100", "epochs=1",
                         "batch_size=64", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["state"] == "completed"


def test_a_user_config_folder_adds_a_model_without_forking(installed_wheel, tmp_path):
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "tiny_skip.yaml").write_text("defaults: [skip_s8, _self_]\nwidth: 4\n")
    for how in (["--config-dir", str(tmp_path / "my_conf")], [f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]"]):
        proc = run_installed(installed_wheel, tmp_path, "-m", "cifar_sweeps.train", *how, "model=tiny_skip",
                             "--cfg", "job")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "width: 4" in proc.stdout and "SkipS8" in proc.stdout


def imports_of(path: Path, module: str) -> set[str]:
    """cifar_sweeps modules that `module` imports, at module level or inside functions."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found |= {n for n in [target, *names] if n.startswith("cifar_sweeps")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cifar_sweeps")}
    return found


def test_no_import_cycles():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if path.name == "__init__.py" else rel.parts)
        modules[name] = path
    graph = {m: {t for t in imports_of(p, m) if t in modules and t != m} for m, p in modules.items()}

    def find_cycle(node, stack, done):
        stack.append(node)
        for nxt in graph[node]:
            if nxt in stack:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in done:
                cycle = find_cycle(nxt, stack, done)
                if cycle:
                    return cycle
        stack.pop()
        done.add(node)
        return None

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            cycle = find_cycle(module, [], done)
            assert cycle is None, " -> ".join(cycle)


def test_the_sweeper_loads_without_torch():
    # Hydra imports the sweeper and the launcher during its plugin scan: torch there would slow every command
    proc = subprocess.run([sys.executable, "-c", "import sys, cifar_sweeps.sweeper, cifar_sweeps.record, "
                           "cifar_sweeps.launchers; "
                           "assert 'torch' not in sys.modules"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
