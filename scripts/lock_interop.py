#!/usr/bin/env python3
"""Lock the virtualenvs of the third-party clients that the interop tests drive.

    python scripts/lock_interop.py --uv .uv/bin/uv [name ...]    (make lock-interop)

Each client's direct pins are in ``tests/interop/locks/<name>.in`` (exact versions: upgrading a
client is a deliberate edit there); this writes ``<name>.txt``, the whole tree with hashes,
which ``tests/interop/venvs.py`` installs with ``pip --require-hashes --no-deps``. The lock is
for CPython 3.11 and newer on any platform (``--universal``), like the project's own uv.lock.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

LOCKS = Path(__file__).resolve().parent.parent / "tests" / "interop" / "locks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uv", default="uv", help="the uv executable (make passes the pinned one)")
    parser.add_argument("names", nargs="*", help="clients to lock (default: every tests/interop/locks/*.in)")
    ns = parser.parse_args(argv)
    names = ns.names or sorted(p.stem for p in LOCKS.glob("*.in"))
    for name in names:
        source = LOCKS / f"{name}.in"
        if not source.exists():
            print(f"error: no {source}", file=sys.stderr)
            return 2
        out = LOCKS / f"{name}.txt"
        cmd = [
            ns.uv,
            "pip",
            "compile",
            "--quiet",
            "--universal",
            "--python-version",
            "3.11",
            "--generate-hashes",
            "--upgrade",
            "--no-header",
            "--output-file",
            str(out),
            str(source),
        ]
        print(f"locking {name} -> {out.relative_to(LOCKS.parent.parent.parent)}", flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            print(f"error: could not lock {name}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
