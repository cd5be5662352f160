"""The backfill as operators run it, measured as a process tree: the Dagster CLI, and the daemon.

    python -m bench.paths --accounts 460 --days 90 --realistic          # both paths, once each
    python -m bench.paths --path cli --json                              # one JSON object per run
    python -m bench.paths --path daemon --floor     # a code location that does nothing: Dagster's floor
    python -m bench.paths --table --runs 3 --write BENCHMARKS.md   # all three paths and the floor

``cli``: ``dagster asset materialize --select * --partition-range …`` (what ``make run`` and an
operator type), the tree rooted at that command. ``daemon``: ``dagster-daemon run`` and
``dagster-webserver`` in their own processes; the backfill is launched through the webserver's
GraphQL API as the UI's "Materialize all…" does, and the daemon's tree (daemon, its code server,
the run worker and whatever the executor starts) is measured; the webserver is reported apart.

Each run gets a fresh DAGSTER_HOME, lake and sandbox (in a process of its own, not measured). CPU is
the tree's, from ``RUSAGE_CHILDREN`` once all of it is reaped (this process adopts the orphans: a
run worker outlives the code server that started it); memory is sampled (``process_tree``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from bench.pipeline_bench import LATENCY, sandbox_args
from bench.process_tree import TreeSampler, adopt_orphans, reap
from pipelines.process_group import group
from pipelines.run import backfill_command, prepare_dagster_home
from pipelines.sandbox.process import sandbox_process
from pipelines.settings import REPO_ROOT

ONE_DAY = dt.timedelta(days=1)
BIN = Path(sys.executable).parent
DEADLINE_SECONDS = 3600
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
  }
}"""
ASSETS = ["external_accounts", "transactions", "balances", "report"]


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(base_url: str, key: str, home: Path, data: Path, start: dt.date) -> dict[str, str]:
    return {
        **os.environ,
        "SYNCTERA_BASE_URL": base_url,
        "SYNCTERA_API_KEY": key,
        "SYNCTERA_DATA_DIR": str(data),
        "SYNCTERA_START_DATE": start.isoformat(),
        "DAGSTER_HOME": str(home),
        "PYTHONWARNINGS": "ignore",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_cli(env: Mapping[str, str], start: dt.date, end: dt.date, log: Path) -> dict[str, Any]:
    with open(log, "wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - our own fixed argv
            backfill_command(start, end), cwd=REPO_ROOT, env=dict(env), stdout=sink, stderr=subprocess.STDOUT
        )
    with TreeSampler(process.pid) as sampler:
        code = process.wait()
    reap(sampler.seen)
    if code:
        raise RuntimeError(f"the CLI backfill failed ({code}):\n{log.read_text()[-3000:]}")
    return {"footprint": sampler.footprint}


def _launch(url: str, partitions: list[str], assets: list[str]) -> str:
    deadline = time.monotonic() + 180
    while True:  # the webserver answers once its code server has loaded the definitions
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the webserver did not serve {url}")
        time.sleep(0.5)  # a poll interval, bounded by the deadline
    params = {"assetSelection": [{"path": [a]} for a in assets], "partitionNames": partitions}
    answer = httpx.post(
        f"{url}/graphql", json={"query": LAUNCH_BACKFILL, "variables": {"params": params}}, timeout=120
    ).json()
    launched = answer["data"]["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"the backfill was not launched: {launched}")
    return str(launched["backfillId"])


def _run_daemon(
    env: Mapping[str, str], start: dt.date, end: dt.date, scratch: Path, *, floor: bool = False
) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    home = Path(env["DAGSTER_HOME"])
    workspace, assets = "workspace.yaml", ASSETS
    if floor:
        workspace, assets = str(scratch / "workspace.yaml"), ["noop"]
        Path(workspace).write_text("load_from:\n  - python_module: bench.noop_location\n")
    webserver = [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)]
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", workspace]
    partitions = [d.isoformat() for d in _days(start, end)]
    with (
        group(webserver, env=env, cwd=REPO_ROOT, log=scratch / "webserver.log") as web,
        TreeSampler(web.pid) as web_sampler,
    ):
        backfill_id = _launch(url, partitions, assets)
        cpu_before = _cpu_of_children()
        with (
            group(daemon, env=env, cwd=REPO_ROOT, log=scratch / "daemon.log") as process,
            TreeSampler(process.pid) as sampler,
        ):
            status = _wait_for_backfill(home, backfill_id, scratch / "daemon.log")
        reap(sampler.seen)  # a run worker outlives the code server that started it: its CPU too
        daemon_cpu = _cpu_of_children() - cpu_before  # the webserver's group is not reaped yet
    reap(web_sampler.seen)
    if status != "COMPLETED_SUCCESS":
        raise RuntimeError(
            f"backfill {backfill_id} ended {status}:\n{(scratch / 'daemon.log').read_text()[-3000:]}"
        )
    return {
        "footprint": sampler.footprint,
        "webserver_pss_mib": web_sampler.footprint.peak_pss_mib,
        "tree_cpu_seconds": daemon_cpu,
    }


def _wait_for_backfill(home: Path, backfill_id: str, log: Path) -> str:
    deadline = time.monotonic() + DEADLINE_SECONDS
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            backfill = instance.get_backfill(backfill_id)
            status = backfill.status.value if backfill else "MISSING"
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            finished = [r for r in runs if r.is_finished]
            if status not in ("REQUESTED", "CANCELING") and runs and len(finished) == len(runs):
                return status
            time.sleep(1.0)  # a poll interval, bounded by the deadline
    raise TimeoutError(
        f"backfill {backfill_id} did not finish in {DEADLINE_SECONDS} s:\n{log.read_text()[-3000:]}"
    )


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + n * ONE_DAY for n in range((end - start).days + 1)]


def _run_totals(home: Path) -> dict[str, Any]:
    """The transactions run's totals (its tags) and the latency floor's calls, from the instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        tags: dict[str, str] = {}
        for run in instance.get_runs():
            if "synctera/transactions_rows" in run.tags:
                tags = {
                    k.removeprefix("synctera/"): v for k, v in run.tags.items() if k.startswith("synctera/")
                }
        return {
            "rows": int(tags["transactions_rows"]),
            "transaction_calls": int(tags["transaction_calls"]),
            "transactions_api_seconds": float(tags["api_seconds"]),
            "transactions_cpu_seconds": float(tags["transactions_cpu_seconds"]),
        }


def run_once(
    path: str, *, accounts: int, days: int, seed: int, realistic: bool, floor: bool = False
) -> dict[str, Any]:
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - days * ONE_DAY, today - ONE_DAY
    key = "bench-key"
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        home, data = scratch / "dagster_home", scratch / "data"
        prepare_dagster_home(home)
        with sandbox_process(sandbox_args(accounts, days, seed, realistic), api_key=key) as base_url:
            env = _env(base_url, key, home, data, start - 30 * ONE_DAY)
            cpu_before, began = _cpu_of_children(), time.perf_counter()
            if path == "cli":
                measured = _run_cli(env, start, end, scratch / "cli.log")
            else:
                measured = _run_daemon(env, start, end, scratch, floor=floor)
            wall, cpu = time.perf_counter() - began, _cpu_of_children() - cpu_before
        footprint = measured.pop("footprint")
        figures: dict[str, Any] = {
            "path": path,
            "accounts": accounts,
            "days": days,
            "realistic": realistic,
            "wall_seconds": wall,
            "tree_cpu_seconds": measured.pop("tree_cpu_seconds", cpu),  # the daemon's: its own
            "tree_peak_pss_mib": footprint.peak_pss_mib,
            "tree_peak_rss_mib": footprint.peak_rss_mib,
            "largest_pss_mib": footprint.largest_pss_mib,
            "largest_rss_mib": footprint.largest_rss_mib,
            "largest_process": footprint.largest_command,
            "max_processes": footprint.max_processes,
            "pss_at_peak": footprint.at_peak,
            **measured,
        }
        if not floor:
            figures.update(_run_totals(home))
            figures["tree_cpu_us_per_row"] = figures["tree_cpu_seconds"] / max(1, figures["rows"]) * 1e6
        return figures


def _in_process(accounts: int, days: int, seed: int, realistic: bool) -> dict[str, Any]:
    """The same backfill through ``dg.materialize`` in one process (``bench.pipeline_bench``)."""
    command = [sys.executable, "-m", "bench.pipeline_bench", "--json", "--accounts", str(accounts)]
    command += ["--days", str(days), "--seed", str(seed), *(["--realistic"] if realistic else [])]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout  # noqa: S603
    return {**json.loads(output.strip().splitlines()[-1]), "startup_cpu_seconds": _startup_cpu()}


def _startup_cpu() -> float:
    """The CPU of a process that starts, loads Dagster and the code location, and exits: part of
    what an in-process run pays besides the run itself, which is all ``bench.pipeline_bench`` times,
    while the CLI's and the daemon's trees are counted from their first instruction to their last.
    Only part: the run's own imports before its timer (Arrow, DuckDB) stay uncounted, which makes
    the CLI's ratio to it an upper bound."""
    probe = [sys.executable, "-c", "import dagster, pipelines.definitions"]
    env = {**os.environ, "SYNCTERA_BASE_URL": "http://127.0.0.1:1/v0", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(probe, cwd=REPO_ROOT, env=env)  # noqa: S603 - our own fixed argv
    _, status, usage = os.wait4(process.pid, 0)  # this child's CPU alone, not other children's
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"loading the code location failed ({process.returncode})")
    return usage.ru_utime + usage.ru_stime


ROLES = {
    "asset materialize": "CLI run",
    "spawn_main": "run worker",
    "dagster-daemon": "daemon",
    "api grpc": "code server",
    "resource_tracker": "resource tracker",
    "watch_orphans": "log watcher",
    "-F -c": "log tail",
}


def role(command: str) -> str:
    """What a process of the tree is, from its command line."""
    return next((name for part, name in ROLES.items() if part in command), command[:24])


def table(runs: int, *, accounts: int, days: int, seed: int, realistic: bool) -> list[str]:
    """Medians of ``runs`` (min–max) of each path; the floor once (it does no work)."""
    from bench.perf import _commit, _spread  # the same medians and commit stamp as the other tables

    def log(message: str) -> None:
        print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)

    measured: dict[str, list[dict[str, Any]]] = {"in-process": [], "cli": [], "daemon": []}
    for n in range(runs):
        for path in measured:
            log(f"{path} run {n + 1}/{runs}")
            if path == "in-process":
                measured[path].append(_in_process(accounts, days, seed, realistic))
            else:
                measured[path].append(
                    run_once(path, accounts=accounts, days=days, seed=seed, realistic=realistic)
                )
    log("the floor: a code location that does nothing, through the daemon")
    floor = run_once("daemon", accounts=10, days=days, seed=seed, realistic=False, floor=True)
    inproc, cli, daemon = measured["in-process"], measured["cli"], measured["daemon"]
    run_alone = [r["pipeline_cpu_seconds"] for r in inproc]
    cpu_inproc = [r["pipeline_cpu_seconds"] + r["startup_cpu_seconds"] for r in inproc]

    def line(name: str, values: tuple[list[float], list[float]], fmt: str, target: str) -> str:
        """A table row: the CLI's and the daemon's spread of ``values`` over the runs."""
        return f"| {name} | {_spread(values[0], fmt)} | {_spread(values[1], fmt)} | {target} |"

    def row(name: str, key: str, fmt: str = "{:.0f}", target: str = "") -> str:
        return line(name, ([r[key] for r in cli], [r[key] for r in daemon]), fmt, target)

    def ratio_row(name: str, denominators: list[float], target: str) -> str:
        ratios = [
            [r["tree_cpu_seconds"] / d for r, d in zip(runs, denominators, strict=True)]
            for runs in (cli, daemon)
        ]
        return line(name, (ratios[0], ratios[1]), "{:.2f}", target)

    def peak(run: dict[str, Any]) -> str:
        return ", ".join(f"{role(command)} {pss:.0f}" for command, pss in run["pss_at_peak"][:4])

    profile = "60/80/400 ms per list/transactions/balance call" if realistic else "no latency"
    return [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; {dt.date.today()}, commit {_commit()}. "
        f"Medians of {runs} runs (min–max). Command: `python -m bench.paths --table --runs {runs}"
        f"{' --realistic' if realistic else ''} --accounts {accounts} --days {days}`.",
        "",
        f"### Paths: {accounts} accounts × {days} days ({statistics.median(r['rows'] for r in cli):,.0f} "
        f"transactions), {profile}",
        "",
        "| figure | CLI (`dagster asset materialize`) | daemon (backfill launched as the UI does) | target |",
        "|---|---|---|---|",
        row("wall (s), start-up and the daemon's ticks included", "wall_seconds", "{:.1f}"),
        row("process tree's CPU (s)", "tree_cpu_seconds", "{:.1f}"),
        ratio_row(
            "… ÷ the in-process run's process (its run "
            f"{_spread(run_alone, '{:.1f}')} s + start-up and exit "
            f"{_spread([r['startup_cpu_seconds'] for r in inproc], '{:.1f}')} s)",
            cpu_inproc,
            "≤ 1.15",
        ),
        ratio_row("… ÷ the in-process run alone, its start-up and exit left out", run_alone, ""),
        row("tree's peak PSS (MiB)", "tree_peak_pss_mib", target="≤ 400"),
        row("tree's peak RSS, summed (MiB)", "tree_peak_rss_mib"),
        row("largest process, PSS (MiB)", "largest_pss_mib", target="≤ 300"),
        row("largest process, RSS (MiB)", "largest_rss_mib"),
        row("processes at once", "max_processes"),
        row("transaction calls", "transaction_calls"),
        f"| PSS at the tree's peak (MiB, largest four) | {peak(cli[0])} | {peak(daemon[0])} | |",
        "",
        "In one process (`dg.materialize`): peak RSS "
        f"{_spread([r['peak_rss_mib'] for r in inproc], '{:.0f}')} MiB. "
        "The daemon path's floor, a code location whose one asset does nothing "
        f"(`python -m bench.paths --floor`): tree PSS {floor['tree_peak_pss_mib']:.0f} MiB in "
        f"{floor['max_processes']} processes ({peak(floor)}), and {floor['tree_cpu_seconds']:.1f} s of "
        f"CPU in {floor['wall_seconds']:.0f} s, before any work; the daemon also replaces "
        "its code server every 60 s, and the old one lives until its run ends (a second ~100 MiB).",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.paths", description=__doc__.split("\n")[0])
    parser.add_argument("--path", choices=["cli", "daemon", "both"], default="both")
    parser.add_argument("--accounts", type=int, default=460)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--realistic", action="store_true", help=f"latency per call: {LATENCY}")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument("--floor", action="store_true", help="daemon path, a code location doing nothing")
    parser.add_argument("--table", action="store_true", help="in-process, CLI, daemon and floor, as Markdown")
    parser.add_argument("--runs", type=int, default=3, help="runs per path for --table")
    parser.add_argument("--write", type=Path, default=None, help="with --table: record it in this file")
    args = parser.parse_args(argv)
    adopt_orphans()
    if args.table:
        text = "\n".join(
            table(args.runs, accounts=args.accounts, days=args.days, seed=args.seed, realistic=args.realistic)
        )
        print(text)
        if args.write:
            from bench.perf import _record

            _record(args.write, "paths", text)
        return
    paths = ["daemon"] if args.floor else ["cli", "daemon"] if args.path == "both" else [args.path]
    for path in paths:
        figures = run_once(
            path,
            accounts=args.accounts,
            days=args.days,
            seed=args.seed,
            realistic=args.realistic,
            floor=args.floor,
        )
        if args.json:
            print(json.dumps(figures), flush=True)
            continue
        for name, value in figures.items():
            print(
                f"{name:<26} {value:.1f}" if isinstance(value, float) else f"{name:<26} {value}", flush=True
            )
        print(flush=True)


if __name__ == "__main__":
    main()
