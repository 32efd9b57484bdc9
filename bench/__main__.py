"""`make bench`: run every benchmark module (or those named) and save bench/results/latest.json.

python -m bench                 all benchmarks
python -m bench storage mqtt    only these
python -m bench --quick         smaller loads (a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import pkgutil
import sys
import time
from pathlib import Path

from bench.harness import Report

HERE = Path(__file__).parent
SKIP = {"harness", "__main__", "__init__"}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="small loads, for a smoke run")
    args = ap.parse_args()
    available = sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name not in SKIP)
    names = args.names or available
    unknown = set(names) - set(available)
    if unknown:
        print(f"unknown benchmarks: {', '.join(sorted(unknown))}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    report = Report()
    failed = []
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        print(f"== {name} ==", flush=True)
        t0 = time.perf_counter()
        try:
            asyncio.run(mod.run(report, args.quick))
        except Exception as exc:  # one broken benchmark must not hide the others
            failed.append(name)
            print(f"[{name}] FAILED: {exc!r}", flush=True)
        print(f"== {name} done in {time.perf_counter() - t0:.1f} s ==", flush=True)
    out = HERE / "results" / "latest.json"
    report.save(out)
    print(f"results saved to {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
