"""mlc.dist on real MPI ranks: ``mpiexec -n 2/3`` subprocesses (MPICH's wheel), each with
a timeout, so a hang fails the test instead of the suite. Skipped where mpi4py is not
installed (the library works without it; `pip install -e ".[dev]"` brings it)."""

import subprocess
import sys
from pathlib import Path

import pytest

from mlc.dist import launch, mpi_module

needs_mpi = pytest.mark.skipif(mpi_module() is None or launch.mpiexec_path() is None,
                               reason="needs mpi4py and mpiexec: pip install -e '.[dist]'")
PROGRAM = Path(__file__).with_name("dist_mpi_program.py")


def test_without_mpi4py_the_launcher_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(launch, "mpi_module", lambda: None)
    with pytest.raises(RuntimeError, match=r"mpi4py is not installed: .*\[dist\]"):
        launch.command(2, "script.py")
    assert launch.check(2) == (False, "mpi4py is not installed: " + launch.INSTALL_HINT)


def mpirun(n, *cases, timeout=60):
    return launch.run(n, str(PROGRAM), cases, timeout=timeout, capture=True)


@needs_mpi
def test_three_ranks_ring_and_mpi_allreduce_of_length_10():
    done = mpirun(3, "allreduce")
    assert done.returncode == 0, done.stderr[-2000:]
    # The ranks share one stdout, so lines may interleave: count each rank's word.
    assert all(f"rank {r} allreduce ok" in done.stdout for r in range(3)), done.stdout


@needs_mpi
def test_two_ranks_ddp_on_halves_equals_one_process_on_the_batch_and_a_pipeline_runs():
    done = mpirun(2, "ddp", "pipeline")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("ddp ok") == 2, done.stdout
    assert done.stdout.count("pipeline ok") == 2, done.stdout


@needs_mpi
def test_mismatched_shapes_fail_fast_naming_the_ranks():
    done = mpirun(2, "mismatch", timeout=30)
    assert done.returncode != 0
    assert "rank 0 received 6 elements of chunk 0 from rank 1" in done.stderr


@needs_mpi
def test_collective_called_by_some_ranks_times_out_naming_the_rank():
    done = mpirun(2, "partial", timeout=30)
    assert done.returncode != 0
    assert "rank 1: waited for a message from rank 0 (tag 1001) that never came within 2 s" \
        in done.stderr


@needs_mpi
def test_cli_runs_a_script_and_says_when_it_is_missing(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("from mlc import dist\nc = dist.world()\n"
                      "open(f'rank{c.rank}', 'w').write(str(c.size))\n")
    done = subprocess.run([sys.executable, "-m", "mlc.cli", "dist", "run", "-n", "2",
                           str(script)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [(tmp_path / f"rank{r}").read_text() for r in range(2)] == ["2", "2"]
    done = subprocess.run([sys.executable, "-m", "mlc.cli", "dist", "run", "-n", "2",
                           str(tmp_path / "nope.py")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "no such script" in done.stderr
