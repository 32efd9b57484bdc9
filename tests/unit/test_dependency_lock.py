"""The lock is what is installed, it agrees with pyproject.toml, and the ranges admit the generated code.

``make test`` runs ``uv lock --check`` first (a clear error when pyproject.toml and uv.lock
disagree); these tests check the same agreement without uv or the network, and what the lock is
for: that the environment the suite runs in holds exactly the locked versions.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.interop import venvs

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "src" / "gatehub" / "transports" / "grpc" / "_generated"


def _pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _lock() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "uv.lock").read_text())


def _project_requirements() -> set[str]:
    """pyproject's requirements as uv records them: one string per requirement and extra."""
    project = _pyproject()["project"]
    out = {str(Requirement(r)) for r in project["dependencies"]}
    for extra, reqs in project["optional-dependencies"].items():
        for r in reqs:
            req = Requirement(r)
            marker = f"extra == '{extra}'" if req.marker is None else f"({req.marker}) and extra == '{extra}'"
            out.add(
                f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}{req.specifier}; {marker}"
            )
    return out


def _locked_requirements() -> set[str]:
    gatehub = next(p for p in _lock()["package"] if p["name"] == "gatehub")
    out = set()
    for r in gatehub["metadata"]["requires-dist"]:
        extras = f"[{','.join(sorted(r['extras']))}]" if r.get("extras") else ""
        spec = r.get("specifier", "")
        marker = r.get("marker")
        out.add(f"{r['name']}{extras}{spec}" + (f"; {marker}" if marker else ""))
    return out


def _normalise(reqs: set[str]) -> set[str]:
    # the two sides spell markers slightly differently (quotes, spaces, the order of and-ed parts)
    def norm(s: str) -> str:
        name, _, marker = s.partition(";")
        req = Requirement(name)
        parts = sorted(p.strip().strip("()").replace('"', "'") for p in marker.split(" and ")) if marker else []
        return f"{canonicalize_name(req.name)}{sorted(req.extras)}{sorted(str(x) for x in req.specifier)}{parts}"

    return {norm(s) for s in reqs}


def test_lock_records_exactly_the_requirements_of_pyproject() -> None:
    want, locked = _normalise(_project_requirements()), _normalise(_locked_requirements())
    assert want == locked, (
        f"uv.lock does not match pyproject.toml: only in pyproject {sorted(want - locked)}, "
        f"only in uv.lock {sorted(locked - want)}; run 'make lock'"
    )


def test_the_environment_holds_exactly_the_locked_versions() -> None:
    """Every locked package that is installed here is at its locked version (uv sync --frozen)."""
    locked = {p["name"]: p["version"] for p in _lock()["package"] if p["name"] != "gatehub" and "version" in p}
    checked, wrong = 0, []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in locked:
            checked += 1
            if Version(dist.version) != Version(locked[name]):
                wrong.append(f"{name} {dist.version} (locked {locked[name]})")
    assert not wrong, f"installed versions differ from uv.lock: {wrong}; run 'make install'"
    for tool in ("ruff", "mypy", "grpcio-tools", "pytest"):  # the tools whose output the suite pins
        assert tool in locked
    assert checked >= 50


def _minimum(requirement: str) -> Version:
    for r in _pyproject()["project"]["dependencies"]:
        req = Requirement(r)
        if req.name == requirement:
            mins = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
            assert mins, f"{requirement} has no lower bound in pyproject.toml"
            return max(mins)
    raise AssertionError(f"{requirement} is not a dependency")


def test_ranges_admit_the_generated_grpc_code() -> None:
    """The generated files refuse a grpcio/protobuf older than the generator that made them:
    pyproject's lower bounds must be at least those, or a pip user's install fails at import."""
    grpc_stamps = {
        Version(m.group(1))
        for p in GENERATED.glob("*_pb2_grpc.py")
        for m in [re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", p.read_text(), re.MULTILINE)]
        if m
    }
    pb_stamps = {
        Version(".".join(m.groups()))
        for p in GENERATED.glob("*_pb2.py")
        for m in [re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", p.read_text())]
        if m
    }
    assert len(grpc_stamps) == 1 and len(pb_stamps) == 1, (grpc_stamps, pb_stamps)
    assert _minimum("grpcio") >= grpc_stamps.pop()
    assert _minimum("protobuf") >= pb_stamps.pop()


def test_interop_locks_hold_their_pins() -> None:
    assert venvs.CLIENTS == ["aliyun-iot-linkkit", "pymodbus", "tb-mqtt-client", "thingsboard-gateway"]
    for name in venvs.CLIENTS:
        text = venvs.locked_requirements(name)
        lines = [ln for ln in text.splitlines() if re.match(r"^[A-Za-z0-9]", ln)]
        assert lines and all("==" in ln for ln in lines), name  # every package of the tree exact
        assert text.count("--hash=sha256:") >= len(lines), name


def test_a_drifted_interop_lock_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x.in").write_text("pymodbus==3.9.2\n")
    (tmp_path / "x.txt").write_text("pymodbus==3.9.1 \\\n    --hash=sha256:00\n")
    monkeypatch.setattr(venvs, "LOCKS", tmp_path)
    try:
        venvs.locked_requirements("x")
    except RuntimeError as exc:
        assert "pymodbus==3.9.2" in str(exc) and "make lock-interop" in str(exc)
    else:
        raise AssertionError("a lock that lost a pin of its .in was accepted")
