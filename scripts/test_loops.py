"""Run the test suite once per event loop (`make test`): uvloop, which `gatehub serve` runs on,
and the stock asyncio loop, so that a defect of either loop cannot hide.

    python scripts/test_loops.py [--loops uvloop,asyncio] [--sequential] [-- pytest args...]

By default the runs go side by side, one pytest process per loop (the suite waits on sockets
and subprocesses far more than it computes, so two processes on two cores take little longer
than one). Each run writes its own log and temporary directory under `--log-dir`; when all
have ended, each log is printed under a header naming its loop, then one summary line per loop.
The exit status is 0 only when every run passed; a run that collected no tests (pytest's 5)
counts as a failure and says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LOOPS = ("uvloop", "asyncio")
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    loop: str
    log: Path
    proc: subprocess.Popen[bytes]
    started: float
    rc: int | None = None
    seconds: float = 0.0


def _start(loop: str, log_dir: Path, pytest_args: list[str]) -> Run:
    tmp = log_dir / f"tmp-{loop}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = dict(os.environ)
    # each run its own scratch space: the embedded PostgreSQL root and pytest's basetemp
    env["GATEHUB_TEST_TMP"] = str(tmp)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--event-loop={loop}",
        f"--basetemp={tmp / 'pytest'}",
        *pytest_args,
    ]
    log = log_dir / f"pytest-{loop}.log"
    with log.open("wb") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    print(f"test: event loop {loop}: started (pid {proc.pid}), log {log}", flush=True)
    return Run(loop, log, proc, time.monotonic())


def _wait(run: Run) -> None:
    run.rc = run.proc.wait()
    run.seconds = time.monotonic() - run.started
    print(f"test: event loop {run.loop}: ended with exit status {run.rc} after {run.seconds:.0f} s", flush=True)


def _verdict(run: Run) -> str:
    if run.rc == 0:
        return "passed"
    if run.rc == 5:
        return "FAILED (pytest collected no tests)"
    return f"FAILED (pytest exit status {run.rc})"


def main(argv: list[str]) -> int:
    if "--" in argv:
        cut = argv.index("--")
        own, pytest_args = argv[:cut], argv[cut + 1 :]
    else:
        own, pytest_args = argv, []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated, of: " + ", ".join(LOOPS))
    parser.add_argument("--sequential", action="store_true", help="one loop after the other instead of side by side")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".test-logs")
    args = parser.parse_args(own)
    loops = [name.strip() for name in args.loops.split(",") if name.strip()]
    unknown = [name for name in loops if name not in LOOPS]
    if not loops or unknown:
        parser.error(f"--loops must name some of {', '.join(LOOPS)} (got {args.loops!r})")
    log_dir: Path = args.log_dir.resolve()
    log_dir.mkdir(parents=True, exist_ok=True)

    runs: list[Run] = []
    try:
        if args.sequential:
            for loop in loops:
                runs.append(_start(loop, log_dir, pytest_args))
                _wait(runs[-1])
        else:
            runs = [_start(loop, log_dir, pytest_args) for loop in loops]
            for run in runs:
                _wait(run)
    except KeyboardInterrupt:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.terminate()
        for run in runs:
            run.proc.wait()
        print("test: interrupted", file=sys.stderr)
        return 130

    for run in runs:
        print(f"\n{'=' * 30} event loop: {run.loop} ({_verdict(run)}, {run.seconds:.0f} s) {'=' * 30}")
        sys.stdout.write(run.log.read_text(errors="replace"))
    print("\n" + "=" * 30 + " summary " + "=" * 30)
    for run in runs:
        print(f"event loop {run.loop:8} {_verdict(run)} in {run.seconds:.0f} s (log: {run.log})")
    return 0 if all(run.rc == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
