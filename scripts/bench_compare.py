"""Compare two checkouts of gatehub on the same benchmarks in one run, interleaved.

    python scripts/bench_compare.py ../before . thingsboard mqtt [--rounds 2] [--quick]

Each checkout needs its own installed venv (``make install`` there). The benchmarks run from each
checkout in turn (before, after, before, after, ...) so that both see the same machine state;
the median of each figure over the rounds is printed with the ratio after/before.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def _run(tree: Path, names: list[str], quick: bool, out: Path) -> dict[str, float]:
    cmd = [str(tree / ".venv" / "bin" / "python"), "-m", "bench", *names, *(["--quick"] if quick else [])]
    print(f"$ (cd {tree} && {' '.join(cmd[1:])})", flush=True)
    res = subprocess.run(cmd, cwd=tree, check=False)
    if res.returncode != 0:
        print(f"  (exit {res.returncode}: some benchmark failed)", flush=True)
    data = json.loads((tree / "bench" / "results" / "latest.json").read_text())
    out.write_text(json.dumps(data, indent=2))
    return {f"{f['bench']}: {f['name']} [{f['unit']}]": float(f["value"]) for f in data["figures"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("names", nargs="+")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    outdir = args.after / "bench" / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    for r in range(args.rounds):
        for label, tree in (("before", args.before), ("after", args.after)):
            runs[label].append(_run(tree.resolve(), args.names, args.quick, outdir / f"compare-{label}-{r}.json"))
    keys = [k for k in runs["after"][0] if all(k in x for x in runs["before"] + runs["after"])]
    print(f"\n{'figure':<78} {'before':>12} {'after':>12} {'after/before':>12}")
    for k in keys:
        b = statistics.median(x[k] for x in runs["before"])
        a = statistics.median(x[k] for x in runs["after"])
        ratio = f"{a / b:.3f}" if b else "-"
        print(f"{k[:78]:<78} {b:>12.4g} {a:>12.4g} {ratio:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
