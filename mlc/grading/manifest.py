"""The package's fingerprint: the grader checks that no file of ``mlc`` changed under it.

An instructor's grading imports everything it needs before the first worker starts
(:mod:`.runner` and :mod:`.grader` import at the top), so a file changed *during* a run
could not run inside the grader anyway; still, a changed file means a worker reached the
package, and a later run would import it. So:

- :func:`write` records a SHA-256 per file of the package (``mlc grading manifest``, run
  at install or release time); :func:`expected` reads that record, or, when there is none,
  fingerprints the package now, before any worker runs;
- :func:`verify` compares the package with it (before grading and again before any grade
  is written) and raises :class:`PackageChanged` naming every changed, added or removed
  file;
- :func:`stray_bytecode` finds cached bytecode (``__pycache__/*.pyc``) that is not what
  its source compiles to: a forged ``.pyc`` runs instead of an unchanged source.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import sys
from pathlib import Path

import mlc

PACKAGE = Path(mlc.__file__).resolve().parent
_SKIP = ("__pycache__",)


class PackageChanged(RuntimeError):
    """The installed package is not what it was: grades from this machine are not trusted."""


def fingerprint(root: Path = PACKAGE) -> dict[str, str]:
    """SHA-256 of every file of the package (cached bytecode aside), by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(p in _SKIP for p in path.relative_to(root).parts):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def write(path: Path | str, root: Path = PACKAGE) -> Path:
    """Record the package's fingerprint in ``path`` (JSON)."""
    path = Path(path)
    path.write_text(json.dumps(fingerprint(root), indent=1, sort_keys=True), encoding="utf-8")
    return path


def expected(path: Path | str | None = None, root: Path = PACKAGE) -> dict[str, str]:
    """The recorded fingerprint in ``path``, or the package's as it is now."""
    if path is None:
        return fingerprint(root)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PackageChanged(f"cannot read the package manifest {path}: {err}") from None


def stray_bytecode(root: Path = PACKAGE) -> list[str]:
    """The ``.pyc`` files of this interpreter that do not hold their source's code
    (unoptimised ones: what ``import`` runs unless Python is started with ``-O``)."""
    bad = []
    for pyc in sorted(root.rglob(f"__pycache__/*.{sys.implementation.cache_tag}.pyc")):
        source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
        try:
            cached = marshal.loads(pyc.read_bytes()[16:])
            ok = source.exists() and cached == compile(source.read_bytes(), str(source),
                                                       "exec", dont_inherit=True)
        except (OSError, ValueError, EOFError, TypeError, SyntaxError):
            ok = False
        if not ok:
            bad.append(str(pyc.relative_to(root)))
    return bad


def verify(want: dict[str, str], root: Path = PACKAGE) -> None:
    """Raise :class:`PackageChanged` when the package differs from ``want`` or holds
    forged bytecode."""
    have = fingerprint(root)
    changed = sorted(k for k in want.keys() & have.keys() if want[k] != have[k])
    added, removed = sorted(have.keys() - want.keys()), sorted(want.keys() - have.keys())
    forged = stray_bytecode(root)
    problems = [f"{what}: {', '.join(names[:10])}" for what, names in (
        ("changed", changed), ("added", added), ("removed", removed),
        ("bytecode that is not its source's (delete these __pycache__ files)", forged))
        if names]
    if problems:
        raise PackageChanged(f"the installed package {root} is not as recorded; "
                             + "; ".join(problems))
