"""What every benchmark module uses: timing, a results table, and ratios to a reference.

A benchmark module in ``bench/`` defines ``async def run(report: Report, quick: bool) -> None``
and calls ``report.add(...)`` for each figure. Figures that have a reference measured in the
same run carry ``ratio`` (figure / reference) and, where an issue sets one, ``target``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    bench: str
    name: str
    value: float
    unit: str
    reference: float | None = None
    target_ratio: float | None = None
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.reference else self.value / self.reference

    @property
    def verdict(self) -> str:
        if self.target_ratio is None or self.ratio is None:
            return ""
        return "meets target" if self.ratio >= self.target_ratio else "BELOW target"


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(
        self,
        bench: str,
        name: str,
        value: float,
        unit: str,
        *,
        reference: float | None = None,
        target_ratio: float | None = None,
        notes: str = "",
    ) -> Figure:
        fig = Figure(bench, name, value, unit, reference, target_ratio, notes)
        self.figures.append(fig)
        ratio = f"  ratio {fig.ratio:.2f}" if fig.ratio is not None else ""
        target = f" (target >= {target_ratio:.2f}: {fig.verdict})" if target_ratio is not None else ""
        ref = f"  reference {reference:,.1f}" if reference is not None else ""
        print(f"[{bench}] {name}: {value:,.1f} {unit}{ref}{ratio}{target}{'  ' + notes if notes else ''}", flush=True)
        return fig

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "started": self.started,
            "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures],
        }
        path.write_text(json.dumps(data, indent=2))


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
