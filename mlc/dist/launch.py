"""Starting P MPI ranks: ``mlc dist run -n P script.py`` and ``mlc doctor``'s MPI line.

The ``mpich`` wheel puts MPICH's ``mpiexec`` (Hydra) next to the Python interpreter, so
no system MPI is needed; it runs ranks as root too (Open MPI refuses without extra
variables). We look for it there first, then on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .mpi import mpi_module

INSTALL_HINT = "install it with: pip install -e '.[dist]' (mpi4py and the MPICH wheel)"


def mpiexec_path() -> str | None:
    """The ``mpiexec`` beside this Python (the MPICH wheel's), else on PATH, else None."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    return shutil.which("mpiexec")


def command(n: int, script: str, args=()) -> list[str]:
    """The command line that runs ``script`` on ``n`` ranks, or a RuntimeError saying what
    is missing."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of ranks must be a positive integer, got {n!r}")
    if mpi_module() is None:
        raise RuntimeError(f"mpi4py is not installed: {INSTALL_HINT}")
    exe = mpiexec_path()
    if exe is None:
        raise RuntimeError(f"no mpiexec found beside {sys.executable} or on PATH: "
                           f"{INSTALL_HINT}")
    return [exe, "-n", str(n), sys.executable, str(script), *args]


def run(n: int, script: str, args=(), timeout: float | None = None,
        capture: bool = False) -> subprocess.CompletedProcess:
    """Run ``script`` on ``n`` MPI ranks and wait (``timeout`` seconds at most: then the
    whole job is killed and ``subprocess.TimeoutExpired`` raised)."""
    if not Path(script).is_file():
        raise FileNotFoundError(f"no such script: {script}")
    env = dict(os.environ)
    # Each rank gets one core's worth of threads: P ranks share the machine.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("NUMBA_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return subprocess.run(command(n, script, args), env=env, timeout=timeout,
                          capture_output=capture, text=True, check=False)


def check(n: int = 2, timeout: float = 60.0) -> tuple[bool, str]:
    """Whether ``n`` MPI ranks start and exchange a message here: (ok, what happened)."""
    try:
        cmd = command(n, "-c")
    except (RuntimeError, ValueError) as err:
        return False, str(err)
    code = ("from mpi4py import MPI; c = MPI.COMM_WORLD; "
            "v = c.allreduce(c.Get_rank()); assert v == c.Get_size() * (c.Get_size() - 1) // 2")
    try:
        done = subprocess.run([*cmd, code], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return False, f"mpiexec -n {n} did not finish within {timeout:g} s"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return False, f"mpiexec -n {n} failed: {tail[0]}"
    return True, f"mpiexec -n {n} ran an allreduce ({cmd[0]})"
