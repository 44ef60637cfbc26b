"""``mlc autograder build UNIT``: the bundle a course platform runs for each submission.

Platforms in the style of Gradescope run an autograder zip on a machine of their own
for every submission: ``setup.sh`` once when the image is built, then
``run_autograder`` per submission, which reads ``/autograder/submission/`` and must write
``/autograder/results/results.json``. The bundle holds:

- ``setup.sh``: installs Python's tools and this course's package (its source ships in
  the bundle as ``mlc_src/``; its dependencies come from the package registry), creates
  the unprivileged user ``mlc-student`` that the student's code runs as, and records the
  installed package's fingerprint (``mlc grading manifest``);
- ``run_autograder``: finds the submitted notebook (the unit's file name first, else the
  only notebook), runs ``mlc grade NOTEBOOK --isolate --json results.json`` (the worker
  isolated as ``mlc-student``, the whole ``/autograder`` folder out of its sight, the
  package checked against the fingerprint), and writes a valid results file even when no
  notebook was submitted or the grader refused;
- ``unit.txt``: which unit the bundle grades.

Paths come from ``AUTOGRADER_ROOT`` (default ``/autograder``) so the bundle can be
tested in a temporary folder laid out as the platform lays it out.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .registry import all_exercises

SETUP_SH = """#!/usr/bin/env bash
# Runs once on the platform's machine: install Python and the course package.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
if ! command -v python3 >/dev/null; then
  apt-get update && apt-get install -y python3 python3-pip python3-venv
fi
python3 -m pip install --upgrade pip
python3 -m pip install "$ROOT/source/mlc_src"
# The student's code runs as this user, never as root (mlc grade --isolate --user).
if ! id -u mlc-student >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin mlc-student
fi
(cd / && python3 -m mlc.cli grading manifest --out "$ROOT/source/manifest.json")
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Runs once per submission: grade the notebook, write results/results.json.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-python3}"
UNIT="$(cat "$ROOT/source/unit.txt")"
mkdir -p "$ROOT/results"
exec "$PYTHON" - "$ROOT" "$UNIT" <<'PY'
import json, subprocess, sys
from pathlib import Path

root, unit = Path(sys.argv[1]), sys.argv[2]
results = root / "results" / "results.json"
found = sorted(p for p in (root / "submission").rglob("*.ipynb")
               if ".ipynb_checkpoints" not in p.parts)
named = [p for p in found if p.stem == unit or p.stem.startswith(unit.split("_")[0] + "_")]
pick = named or found
if len(pick) != 1:
    why = (f"no notebook was submitted; upload {unit}.ipynb" if not found else
           f"several notebooks were submitted ({', '.join(p.name for p in found)}); "
           f"upload only {unit}.ipynb")
    results.write_text(json.dumps({"score": 0, "output": why, "tests": []}))
    sys.exit(0)
import pwd
cmd = [sys.executable, "-m", "mlc.cli", "grade", str(pick[0]), "--json", str(results),
       "--isolate", "--hide", str(root)]
try:
    pwd.getpwnam("mlc-student")
    cmd += ["--user", "mlc-student"]
except KeyError:
    pass  # setup.sh did not run as root: the default unprivileged user
if (root / "source" / "manifest.json").exists():
    cmd += ["--manifest", str(root / "source" / "manifest.json")]
proc = subprocess.run(cmd, capture_output=True, text=True)
print(proc.stdout)
print(proc.stderr, file=sys.stderr)
if not results.exists():
    results.write_text(json.dumps({"score": 0, "tests": [], "output":
        "the grader could not grade this notebook: " + (proc.stderr.strip()[-2000:] or
                                                        "no output")}))
PY
"""


def units() -> list[str]:
    """The notebook stems that have graded exercises (e.g. ``"00_welcome"``)."""
    return sorted({ex.notebook for ex in all_exercises().values()})


def resolve_unit(unit: str) -> str:
    """``"00"``, ``"0"``, ``"welcome"`` or ``"00_welcome"`` -> ``"00_welcome"``."""
    known = units()
    for stem in known:
        number, _, name = stem.partition("_")
        if unit in (stem, number, name) or (unit.isdigit() and int(unit) == int(number)):
            return stem
    raise ValueError(f"no graded unit {unit!r}; known units: {', '.join(known)}")


def _package_files(root: Path):
    yield root / "pyproject.toml", "pyproject.toml"
    yield root / "README.md", "README.md"
    for path in sorted((root / "mlc").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path, str(path.relative_to(root))


def build_bundle(unit: str, out: Path | str, repo_root: Path | None = None) -> Path:
    """Write the autograder zip for ``unit`` to ``out``; return its path."""
    stem = resolve_unit(unit)
    root = repo_root or Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        raise FileNotFoundError(f"the mlc source tree is not at {root} (pyproject.toml "
                                "missing): build the bundle from a checkout of the course")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable, as the platform runs them
            z.writestr(info, text)
        z.writestr("unit.txt", stem + "\n")
        for path, rel in _package_files(root):
            z.write(path, f"mlc_src/{rel}")
    return out
