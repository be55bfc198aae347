"""What the installed plugin costs a pytest run that uses no ``--bg-*`` option.

The goal: nothing heavy at plugin load, so that with no ``--bg-*`` option the plugin costs less
than 5% of a one-test pytest run's wall time and memory. In a temporary project with one
passing test and an empty ``pytest.ini`` (so none of this repository's settings apply), each
variant runs ``python -m pytest -q`` as a user would, ``--runs`` times, the variants interleaved
in a rotating order after one discarded warm-up run each:

- ``all plugins``: this environment as installed, ours and our dependencies' plugins;
- ``no bluegreen``: the same with ``-p no:bluegreen``;
- ``deps off``: our dependencies' pytest plugins (Locust, testinfra, pytest-html with
  pytest-metadata, xdist) disabled with ``-p no:...``, ours on;
- ``deps off, no bluegreen``: those and ours disabled, pytest alone;
- ``no locust``, ``no testinfra``, ``no html``, ``no xdist``: one dependency's plugins disabled.

The plugin's modules are byte-compiled as an installed package's are (pip compiles a wheel's
modules when it installs them, and the dependencies here have their bytecode): the runs may
write bytecode (``PYTHONDONTWRITEBYTECODE`` is dropped), so the warm-up run writes it for an
editable checkout, which would otherwise be compiled from source by every run.

Per run: wall time from spawn to exit, and the pytest process's peak RSS as GNU time
(``/usr/bin/time -f %M``) reports it: a child's own rusage would count the size of this bench
process, which it is forked from, since Linux keeps the high-water mark across ``exec``.
Medians per variant (CPU: user + sys time, from ``os.wait4``), and ratios of medians: ours
against the installed environment and against pytest alone (the goal: < 1.05 for time and
memory), and each dependency's plugins for scale; with the median and the quartiles of each
rep's paired ratio, which show how much of a difference is the machine's noise.
Also the median time ``import pytest_bluegreen.plugin, pytest_bluegreen.fixtures`` takes after
``import pytest``. With ``--instructions``, each goal's two variants also run once under
Valgrind's cachegrind, which counts the instructions a run executes: the same count from one run
to the next whatever the machine's load (``PYTHONHASHSEED=0``), so their ratio is the plugin's
own work, which wall times on a busy machine blur by several percent. A table on the terminal
and ``bench/results/plugin_cost.json``.

    .venv/bin/python bench/plugin_cost.py [--runs 15] [--instructions]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import host_info, publish, render_table  # noqa: E402

GOAL: Final = 1.05
GNU_TIME: Final = "/usr/bin/time"
# Our dependencies' pytest plugins, by their pytest11 entry-point names (pytest --trace-config).
DEPENDENCY_PLUGINS: Final = {
    "locust": ("locust",),
    "testinfra": ("pytest11.testinfra",),
    "html": ("html", "html_fixtures", "metadata"),
    "xdist": ("xdist", "xdist.looponfail"),
}
ALL_DEPENDENCIES: Final = tuple(n for names in DEPENDENCY_PLUGINS.values() for n in names)
VARIANTS: Final = {
    "all plugins": (),
    "no bluegreen": ("bluegreen",),
    "deps off": ALL_DEPENDENCIES,
    "deps off, no bluegreen": (*ALL_DEPENDENCIES, "bluegreen"),
    **{f"no {dep}": names for dep, names in DEPENDENCY_PLUGINS.items()},
}
# (what costs, variant with it, variant without it, is it the goal)
COMPARISONS: Final = (
    ("bluegreen, beside the deps' plugins", "all plugins", "no bluegreen", True),
    ("bluegreen, beside pytest alone", "deps off", "deps off, no bluegreen", True),
    ("all the deps' plugins", "all plugins", "deps off", False),
    *((f"{dep}'s plugins", "all plugins", f"no {dep}", False) for dep in DEPENDENCY_PLUGINS),
)
VARIANT_COLUMNS: Final = (
    ("wall_ms", "wall ms"),
    ("wall_iqr_ms", "IQR ms"),
    ("cpu_ms", "CPU ms"),
    ("rss_mb", "max RSS MB"),
)
RATIO_COLUMNS: Final = (
    ("wall_ratio", "wall ratio"),
    ("paired_wall_ratio", "paired"),
    ("paired_iqr", "paired IQR"),
    ("cpu_ratio", "CPU ratio"),
    ("rss_ratio", "RSS ratio"),
    ("instructions_ratio", "instructions"),
    ("goal", "goal"),
)
TEST_FILE: Final = "def test_one():\n    assert True\n"
IMPORT_PROBE: Final = (
    "import time, pytest; start = time.perf_counter(); "
    "import pytest_bluegreen.plugin, pytest_bluegreen.fixtures; "
    "print(time.perf_counter() - start)"
)


def clean_env() -> dict[str, str]:
    """The environment, without what would change a pytest run's plugins or options.

    Nor ``PYTHONDONTWRITEBYTECODE``: an installed plugin has its bytecode, as its dependencies do.
    """
    skip = (
        "PYTEST_ADDOPTS",
        "PYTEST_PLUGINS",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
        "PYTHONDONTWRITEBYTECODE",
    )
    return {k: v for k, v in os.environ.items() if k not in skip}


def pytest_args(disabled: Sequence[str]) -> list[str]:
    """``python -m pytest -q`` with the ``disabled`` plugins blocked."""
    args = [sys.executable, "-m", "pytest", "-q"]
    for name in disabled:
        args += ["-p", f"no:{name}"]
    return args


def run_once(project: Path, disabled: Sequence[str], env: dict[str, str]) -> dict[str, float]:
    """One ``python -m pytest -q``: its wall time and its peak RSS."""
    args = pytest_args(disabled)
    rss_file = project / "maxrss.txt"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [GNU_TIME, "-f", "%M", "-o", str(rss_file), *args],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)  # CPU: GNU time's and its reaped child's
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode} in {project}")
    rss_kib = int(rss_file.read_text().split()[-1])
    return {
        "wall_ms": wall * 1000,
        "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000,
        "rss_mb": rss_kib / 1024,
    }


def instructions(project: Path, disabled: Sequence[str], env: dict[str, str]) -> int:
    """The instructions one ``python -m pytest -q`` executes, as cachegrind counts them."""
    cachegrind = ["--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    out = subprocess.run(
        ["valgrind", *cachegrind, *pytest_args(disabled)],
        cwd=project,
        env={**env, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in cachegrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def import_ms(runs: int, env: dict[str, str]) -> float:
    """Median milliseconds the plugin and its fixtures take to import, pytest already loaded."""
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        times.append(float(out.stdout) * 1000)
    return statistics.median(times)


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for variant, disabled in VARIANTS.items():
        mine = [r for r in runs if r["variant"] == variant]
        walls = [r["wall_ms"] for r in mine]
        quartiles = statistics.quantiles(walls, n=4)
        rows.append(
            {
                "variant": variant,
                "wall_ms": round(statistics.median(walls), 1),
                "wall_iqr_ms": round(quartiles[2] - quartiles[0], 1),
                "cpu_ms": round(statistics.median(r["cpu_ms"] for r in mine), 1),
                "rss_mb": round(statistics.median(r["rss_mb"] for r in mine), 1),
                "disabled": ",".join(disabled) or "-",
            }
        )
    return rows


def ratios(
    medians: Sequence[dict[str, Any]],
    runs: Sequence[dict[str, Any]],
    counted: dict[str, int],
) -> list[dict[str, Any]]:
    """Ratios of medians, with and without a plugin; and the median of the runs' paired ratios.

    Paired: a rep's run with the plugin over the same rep's run without it, seconds apart, so
    a change of the machine's load between reps cancels out.
    """
    by_variant = {m["variant"]: m for m in medians}
    wall = {(r["variant"], r["rep"]): r["wall_ms"] for r in runs}
    reps = sorted({r["rep"] for r in runs})
    rows = []
    for cost, with_it, without_it, is_goal in COMPARISONS:
        on, off = by_variant[with_it], by_variant[without_it]
        wall_ratio = on["wall_ms"] / off["wall_ms"]
        rss_ratio = on["rss_mb"] / off["rss_mb"]
        met = wall_ratio < GOAL and rss_ratio < GOAL
        pairs = [wall[with_it, rep] / wall[without_it, rep] for rep in reps]
        quartiles = statistics.quantiles(pairs, n=4)
        rows.append(
            {
                "cost": cost,
                "with": with_it,
                "without": without_it,
                "wall_ratio": round(wall_ratio, 3),
                "paired_wall_ratio": round(statistics.median(pairs), 3),
                "paired_iqr": f"{quartiles[0]:.3f}-{quartiles[2]:.3f}",
                "cpu_ratio": round(on["cpu_ms"] / off["cpu_ms"], 3),
                "rss_ratio": round(rss_ratio, 3),
                "instructions_ratio": (
                    f"{counted[with_it] / counted[without_it]:.3f}"
                    if with_it in counted and without_it in counted
                    else None
                ),
                "goal": (f"< {GOAL:g}: " + ("met" if met else "MISSED")) if is_goal else "-",
                "is_goal": is_goal,
                "met": met if is_goal else None,
            }
        )
    return rows


def machine_info() -> dict[str, Any]:
    """The host, and the versions of pytest and of the plugins our dependencies bring."""
    versions = {}
    for dist in ("pytest", "locust", "pytest-testinfra", "pytest-html", "pytest-xdist"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {**host_info(("pytest_bluegreen", "bench")), "versions": versions}


def _round(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per variant")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "plugin_cost.json")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each goal variant's instructions under cachegrind (about 6 s a run)",
    )
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    if not Path(GNU_TIME).is_file():
        parser.error(f"{GNU_TIME} (GNU time) is needed for each run's peak RSS")
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind")
    env = clean_env()
    started = time.monotonic()
    info = machine_info()
    names = list(VARIANTS)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="plugin-cost-") as name:
        project = Path(name)
        (project / "test_one.py").write_text(TEST_FILE)
        (project / "pytest.ini").write_text("[pytest]\n")
        for variant in names:  # warm-up: bytecode caches, page cache
            run_once(project, VARIANTS[variant], env)
        for rep in range(args.runs):
            for variant in names[rep % len(names) :] + names[: rep % len(names)]:
                row = run_once(project, VARIANTS[variant], env)
                runs.append({"variant": variant, "rep": rep + 1, **row})
        counted: dict[str, int] = {}
        if args.instructions:  # the goals' variants: with and without bluegreen
            for variant in {v for _, *pair, is_goal in COMPARISONS if is_goal for v in pair}:
                counted[variant] = instructions(project, VARIANTS[variant], env)
    plugin_import_ms = round(import_ms(args.runs, env), 1)
    medians = summarise(runs)
    compared = ratios(medians, runs, counted)
    goals = [
        {
            "goal": f"{r['cost']}: < {GOAL:g}x wall time and max RSS of a one-test run",
            "measured": f"wall {r['wall_ratio']:.3f}, RSS {r['rss_ratio']:.3f}",
            "met": r["met"],
        }
        for r in compared
        if r["is_goal"]
    ]
    notes = [
        f"import of pytest_bluegreen.plugin and .fixtures after pytest: median "
        f"{plugin_import_ms} ms",
        "the goal is judged on the ratios of medians of wall time and max RSS; 'paired' is the "
        "median of each rep's with/without ratio ('paired IQR' its quartiles), and CPU is "
        "user+sys time: both less moved by the machine's load, which on a shared machine moves "
        "a run's wall time by more than the plugin's share (see the IQR column)",
        "bytecode: the runs may write it (PYTHONDONTWRITEBYTECODE dropped), so the plugin's "
        "modules are not compiled from source by every run, as an installed package's are not",
        "instructions: one run of each goal variant under cachegrind, PYTHONHASHSEED=0 (the same "
        "count run after run); their ratio is the plugin's own work, not judged as the goal"
        if counted
        else "instructions: not counted (--instructions)",
        "max RSS is the pytest process's peak as GNU time reports it (its child's ru_maxrss)",
    ]
    doc = {
        "benchmark": "plugin_cost",
        "command": f".venv/bin/python bench/plugin_cost.py --runs {args.runs}",
        "machine": info,
        "params": {"runs": args.runs, "variants": {k: list(v) for k, v in VARIANTS.items()}},
        "columns": {**dict(VARIANT_COLUMNS), **dict(RATIO_COLUMNS)},
        "medians": medians,
        "ratios": compared,
        "plugin_import_ms": plugin_import_ms,
        "instructions": counted,
        "goals": goals,
        "notes": notes,
        "runs": [
            {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in runs
        ],
        "run_s": round(time.monotonic() - started, 1),
    }
    print(render_table(medians, VARIANT_COLUMNS, "variant"))
    print()
    print(render_table(compared, RATIO_COLUMNS, "cost"))
    print(f"\nmedians of {args.runs} runs per variant of 'python -m pytest -q', one test")
    publish(args.out, doc, goals, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
