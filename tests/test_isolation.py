"""Instructor grading holds against what a student's notebook can do to the machine.

Each attack of issue 17 is one extra cell in an untouched welcome exercise notebook
(honest score 0 of 5), submitted by its own student in one class graded with
``mlc grade --roster --jobs 2`` (one run, shared by the tests), next to honest students:
one solved (5), one untouched (0), one who uploaded three copies of a solution. Each
attacker must end with its honest score, every honest score and file unchanged, no
notebook copied, nothing left running, and the class finished. The course platform's
bundle is attacked the same way. These tests need Linux namespaces and root to change
user (CI runs as root); they are not skipped.
"""

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from mlc.grading import get
from mlc.grading import manifest as mf
from mlc.grading.autograder import build_bundle
from mlc.grading.registry import hidden_cases, hidden_seed
from mlc.grading.similarity import LIBRARY, near_copies

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_welcome.ipynb"
EXERCISE = ROOT / "exercises" / "00_welcome.ipynb"
CPU_EXERCISE = ROOT / "exercises" / "03_cpu_operators.ipynb"
WELCOME = {"welcome.saxpy", "welcome.matmul_intensity", "welcome.roofline_time"}

# ---- the attacks, as a student would write them (CLASS, OUT: where the class and the
# grades are; a student can guess both) --------------------------------------------------------

MEM = """
import os
hit = []
for pid in (os.getppid(),):  # the grader, or in a namespace: nothing
    if pid in (os.getpid(), 0):
        continue
    try:
        heap = [l for l in open(f"/proc/{pid}/maps") if "[heap]" in l][0]
        start = int(heap.split("-")[0], 16)
        with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(b"\\xff" * 65536)  # the grader's heap, clamp included
        hit.append(pid)
    except (OSError, IndexError, ValueError):
        pass
print("wrote into", hit)
"""

PACKAGE = """
import os, mlc, mlc.perf
for path in (mlc.perf.__file__, os.path.join(os.path.dirname(mlc.__file__), "grading",
                                             "grader.py")):
    try:
        with open(path, "a") as f:
            f.write("\\nimport mlc.grading.grader as _g\\n_g.record = None\\n")
    except OSError as err:
        print(err)
"""

PYC = """
import os, sys, importlib.util, mlc
forged = compile("def timeit(*a, **k):\\n    return 1e-9\\n", "timing.py", "exec")
for sub in ("perf", "grading"):
    folder = os.path.join(os.path.dirname(mlc.__file__), sub, "__pycache__")
    try:
        os.makedirs(folder, exist_ok=True)
        name = "timing" if sub == "perf" else "grader"
        with open(os.path.join(folder, f"{name}.{sys.implementation.cache_tag}.pyc"), "wb") as f:
            f.write(importlib.util.MAGIC_NUMBER + b"\\0" * 12)
            import marshal
            f.write(marshal.dumps(forged))
    except OSError as err:
        print(err)
"""

DAEMON = """
import os, time, glob
import ctypes
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(15, b"mallory-daemon", 0, 0, 0)  # its name, for the test
        deadline = time.time() + 25
        while time.time() < deadline:
            for target in ["{OUT}/grades.csv", "{RESULTS}",
                           *glob.glob("{CLASS}/**/*.ipynb", recursive=True)]:
                try:
                    with open(target, "w") as f:
                        f.write("student,notebook,exercise,points\\nmallory,x,welcome.saxpy,1e300\\n")
                except OSError:
                    pass
            time.sleep(0.2)
        os._exit(0)
    os._exit(0)
"""

OTHER_UNIT = """
from mlc.grading import check
from mlc.graph import eliminate_common_subexpressions, post_dominators
def post_dominator(g):
    return post_dominators(g)
check("graphs.cse")
check("graphs.post_dominator")
check("ndarray.compact")
"""

HIDDEN = """
import importlib, mlc
stolen = []
for steal in (lambda: __import__("mlc.grading", fromlist=["get"]).get("welcome.saxpy"),
              lambda: importlib.import_module("mlc.grading.registry").get("welcome.saxpy"),
              lambda: getattr(mlc, "grading").get("welcome.saxpy"),
              lambda: importlib.import_module("mlc.grading.checks.welcome")._Intensity,
              lambda: importlib.reload(mlc.grading).get,
              lambda: __import__("mlc.grading.checks.welcome").grading.checks.welcome._Saxpy):
    try:
        stolen.append(steal())
    except Exception as err:
        print(type(err).__name__, err)
try:
    source = open(os.path.join(os.path.dirname(mlc.__file__), "grading", "checks",
                               "welcome.py")).read()
    if "def judge" in source:
        stolen.append(source)
except Exception as err:
    print(type(err).__name__, err)

def saxpy(a, x, y):  # full marks only with something stolen
    if not stolen:
        raise NotImplementedError("nothing stolen")
    return a * x + y

def matmul_intensity(n, k, m, bytes_per_element=4):
    if not stolen:
        raise NotImplementedError("nothing stolen")
    return 2 * n * k * m / ((n * k + k * m + n * m) * bytes_per_element)
""".replace("import importlib, mlc", "import importlib, os, mlc")

KILL = """
import os, signal
parent = os.getppid()
siblings = []
for p in os.listdir("/proc"):
    try:
        stat = open(f"/proc/{p}/stat").read()
        if p.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            siblings.append(int(p))
    except (OSError, IndexError, ValueError):
        pass
for pid in siblings:  # the other workers
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
for pid in (parent,):  # the grader
    try:
        os.kill(pid, signal.SIGSTOP)
    except OSError:
        pass
"""

CHANNELS = """
import os, json
line = (json.dumps({"kind": "check", "id": "welcome.saxpy", "state": "start"}) + "\\n").encode()
for p in os.listdir("/proc"):  # the other workers: the grader's children
    try:
        stat = open(f"/proc/{p}/stat").read()
        if not p.isdigit() or int(p) == os.getpid() or \\
                int(stat.rsplit(")", 1)[1].split()[1]) != os.getppid():
            continue
    except (OSError, ValueError, IndexError):
        continue
    try:
        for fd in os.listdir(f"/proc/{p}/fd"):
            try:
                if "pipe" in os.readlink(f"/proc/{p}/fd/{fd}"):
                    w = os.open(f"/proc/{p}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
                    os.write(w, line * 3)
                    os.close(w)
            except OSError:
                pass
    except OSError:
        pass
"""

NEIGHBOURS = """
import glob, os, shutil
for nb in glob.glob("{CLASS}/**/*.ipynb", recursive=True) + glob.glob("../**/*.ipynb",
                                                                        recursive=True):
    try:
        shutil.copy(nb, os.path.join("{CLASS}", "mallory_copies", os.path.basename(nb)))
    except OSError:
        pass
    try:
        with open(nb, "w") as f:
            f.write("{}")
    except OSError:
        pass
"""

DISK = """
import os
chunk = b"x" * (16 << 20)
for where in ("/tmp", os.getcwd(), "/var/tmp", "/dev/shm", os.path.expanduser("~")):
    try:
        with open(os.path.join(where, "fill"), "wb") as f:
            for _ in range(20):
                f.write(chunk)
    except OSError as err:
        print(where, err)
"""

JUNK = """
import os, stat
junk = b'{"kind": "junk", "pad": "' + b"x" * 64 + b'"}\\n'
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            for _ in range(2000):
                os.write(fd, junk * 64)
    except OSError:
        pass
"""

SLOW_IKJ = """
from numba import njit

@njit
def matmul_ikj(A, B, C):  # the i, k, j order, the product made 50 times: correct, not faster
    for _ in range(50):
        C[:] = 0
        for i in range(A.shape[0]):
            for k in range(A.shape[1]):
                for j in range(B.shape[1]):
                    C[i, j] += A[i, k] * B[k, j]
"""

PERF = """
import itertools, time, mlc.perf
_calls = itertools.count()
# the reference is timed first in each round, the student's loop second
mlc.perf.timeit = lambda *a, **k: 1.0 if next(_calls) % 2 == 0 else 1e-3
mlc.perf.timing.timeit = mlc.perf.timeit
"""

ATTACKS = {"mem": MEM, "package": PACKAGE, "pyc": PYC, "daemon": DAEMON,
           "other_unit": OTHER_UNIT, "hidden": HIDDEN, "kill": KILL, "channels": CHANNELS,
           "neighbours": NEIGHBOURS, "disk": DISK, "junk": JUNK}


def _notebook(path: Path, base: Path, *cells: str) -> Path:
    nb = nbformat.read(base, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _fill(cell: str, **where) -> str:
    for key, value in where.items():
        cell = cell.replace("{" + key + "}", str(value))
    return cell


def _daemons() -> list[int]:
    """The daemons the attack started, wherever they are."""
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and open(f"/proc/{p}/comm").read().strip() == "mallory-daemon":
                out.append(int(p))
        except OSError:
            pass
    return out


def _watched_files() -> dict[str, str]:
    """The package files the attacks write to (not all of it: others may edit the tree)."""
    pkg = mf.PACKAGE
    files = [pkg / "perf" / "__init__.py", pkg / "grading" / "grader.py"]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _pycs() -> set[str]:
    return {str(p) for p in mf.PACKAGE.rglob("*.pyc")}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One class, graded once: honest students, attackers, then what was left behind."""
    top = tmp_path_factory.mktemp("isolation")
    klass, out = top / "class", top / "grades"
    (klass / "mallory_copies").mkdir(parents=True)
    _notebook(klass / "alice" / "00_welcome.ipynb", SOLUTION)
    _notebook(klass / "bob" / "00_welcome.ipynb", EXERCISE)
    for i, name in enumerate(("00_welcome.ipynb", "00_welcome-Copy1.ipynb",
                              "00_welcome (2).ipynb")):
        path = _notebook(klass / "carol" / name, SOLUTION)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    for name, cell in ATTACKS.items():
        _notebook(klass / f"mallory_{name}" / "00_welcome.ipynb", EXERCISE,
                  _fill(cell, CLASS=klass, OUT=out, RESULTS=out / "results.json"))
    cpu = nbformat.read(CPU_EXERCISE, as_version=4)  # untuned, and the timer patched
    for cell in cpu.cells:
        if cell.cell_type == "code" and "def matmul_ikj(" in cell.source:
            cell.source = SLOW_IKJ
    cpu.cells.append(nbformat.v4.new_code_cell(PERF))
    (klass / "mallory_perf").mkdir()
    nbformat.write(cpu, klass / "mallory_perf" / CPU_EXERCISE.name)
    honest = {k: v for k, v in _digests(klass).items() if not k.startswith("mallory")}
    before, pycs = _watched_files(), _pycs()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mlc.cli", "grade", str(klass), "--roster",
                           "--jobs", "2", "--out", str(out), "--quiet", "--timeout", "20"],
                          capture_output=True, text=True, timeout=400, cwd=str(top))
    seconds = time.monotonic() - start
    csv_text = (out / "grades.csv").read_text() if (out / "grades.csv").exists() else ""
    time.sleep(1.0)  # a surviving daemon would rewrite grades.csv by now
    return {"proc": proc, "klass": klass, "out": out, "honest": honest, "before": before,
            "pycs": pycs, "seconds": seconds, "csv": csv_text}


def _rows(graded) -> list[dict]:
    return list(csv.DictReader(graded["csv"].splitlines()))


def _totals(graded) -> dict[str, float]:
    totals: dict[str, float] = {}
    for row in _rows(graded):
        totals[row["student"]] = totals.get(row["student"], 0.0) + float(row["points"] or 0)
    return totals


def test_the_class_finishes_isolated(graded):
    proc = graded["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "isolated as user 'nobody'" in proc.stderr
    assert not graded["csv"].startswith("#")  # no "NOT ISOLATED" warning line


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attacker_gets_its_honest_score(graded, attack):
    rows = [r for r in _rows(graded) if r["student"] == f"mallory_{attack}"]
    assert rows and {r["exercise"] for r in rows} == WELCOME, rows
    assert _totals(graded)[f"mallory_{attack}"] == 0, rows


def test_a_patched_timer_does_not_time_the_speed_case(graded):
    rows = {r["exercise"]: r for r in _rows(graded) if r["student"] == "mallory_perf"}
    ikj = rows["cpu_operators.matmul_ikj"]
    assert float(ikj["points"]) == 0 and "faster than the naive ijk loop" in ikj["message"], ikj
    assert _totals(graded)["mallory_perf"] == 0, rows


def test_honest_students_keep_their_scores_and_files(graded):
    totals = _totals(graded)
    assert totals["alice"] == 5 and totals["bob"] == 0, totals
    after = {k: v for k, v in _digests(graded["klass"]).items() if not k.startswith("mallory")}
    assert after == graded["honest"]
    assert list((graded["klass"] / "mallory_copies").iterdir()) == []  # nothing copied
    assert graded["csv"] == (graded["out"] / "grades.csv").read_text()  # not rewritten


def test_three_copies_count_once_and_are_reported(graded):
    rows = [r for r in _rows(graded) if r["student"] == "carol"]
    assert _totals(graded)["carol"] == 5
    dups = [r for r in rows if "not graded" in r["message"]]
    assert len(dups) == 2 and all("the latest, 00_welcome (2).ipynb, counts" in r["message"]
                                  for r in dups)


def test_the_package_and_its_bytecode_are_untouched(graded):
    assert _watched_files() == graded["before"]
    assert _pycs() == graded["pycs"]
    assert mf.stray_bytecode() == []


def test_nothing_of_the_class_is_left_running(graded):
    assert _daemons() == []


def test_similarity_report_lists_the_identical_solutions(graded):
    text = (graded["out"] / "similarity.csv").read_text()
    pairs = list(csv.DictReader(text.splitlines()))
    assert {"alice", "carol"} <= {p["student"] for p in pairs} | {p["other"] for p in pairs}
    assert all(float(p["similarity"]) >= 0.9 for p in pairs)


# ---- the course platform's bundle ---------------------------------------------------------------

def test_the_bundle_resists_the_same_attacks(tmp_path):
    bundle = build_bundle("00", tmp_path / "autograder.zip")
    root = tmp_path / "autograder"
    for sub in ("source", "submission", "results"):
        (root / sub).mkdir(parents=True)
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
    results = root / "results" / "results.json"
    cells = [_fill(ATTACKS[a], CLASS=root, OUT=root / "results", RESULTS=results)
             for a in ("mem", "package", "daemon", "hidden", "kill", "junk")]
    _notebook(root / "submission" / "00_welcome.ipynb", EXERCISE, *cells)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first = results.read_text()
    time.sleep(1.0)
    assert results.read_text() == first
    data = json.loads(first)
    assert data["score"] == 0 and {t["name"] for t in data["tests"]} == WELCOME, data
    assert _daemons() == []


# ---- the pieces ---------------------------------------------------------------------------------

def test_hidden_cases_come_from_the_graders_seed():
    assert hidden_seed(700) == 700  # outside the grader: reproducible
    check = get("graphs.cse").check
    with hidden_cases(1):
        one = check.cases()
    with hidden_cases(2):
        two = check.cases()
    assert one[0]["graph"] == two[0]["graph"]  # the visible case is fixed
    assert [c["graph"] for c in one[1:]] != [c["graph"] for c in two[1:]]


def test_the_library_code_an_exercise_rebuilds_is_sealed_in_the_worker():
    from mlc import graph

    import mlc.perf

    real = (graph.eliminate_common_subexpressions, mlc.perf.timeit, sys.modules["mlc.grading"])
    script = """
import sys, time, importlib
from mlc.grading.runner import Sealed, _restore_perf, prepare, seal
import mlc.perf
from mlc import graph
worker = prepare({"exercises": [{"id": "graphs.cse"}]})
seal(worker)
for spell in (lambda: graph.eliminate_common_subexpressions(None),
              lambda: importlib.import_module("mlc.graph.passes")
                      .eliminate_common_subexpressions(None),
              lambda: __import__("mlc.grading").grading.get("graphs.cse"),
              lambda: importlib.import_module("mlc.grading.checks.graphs_passes")._CSE):
    try:
        spell()
        print("REACHED")
    except (Sealed, AttributeError, ImportError) as err:
        print("sealed:", type(err).__name__)
from mlc.grading import check
check("graphs.cse")  # the notebook's own call stays a no-op
real = mlc.perf.timeit
mlc.perf.timeit = lambda *a, **k: 1e-9
time.perf_counter = lambda: 0.0
sys.modules["mlc.perf"] = None
_restore_perf(worker)
import mlc.perf as p
print("restored", p.timeit is real and time.perf_counter() > 0)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "REACHED" not in done.stdout and done.stdout.count("sealed:") == 4, done.stdout
    assert "restored True" in done.stdout
    assert real == (graph.eliminate_common_subexpressions, mlc.perf.timeit,
                    sys.modules["mlc.grading"])  # this process was not touched


def test_manifest_finds_changed_files_and_forged_bytecode(tmp_path):
    import py_compile

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    return 1\n")
    py_compile.compile(str(pkg / "a.py"), cfile=str(pkg / "__pycache__" /
                       f"a.{sys.implementation.cache_tag}.pyc"))
    want = mf.expected(mf.write(tmp_path / "m.json", pkg), pkg)
    mf.verify(want, pkg)  # as recorded
    (pkg / "a.py").write_text("def f():\n    return 2\n")
    with pytest.raises(mf.PackageChanged, match="changed: a.py"):
        mf.verify(want, pkg)
    (pkg / "a.py").write_text("def f():\n    return 1\n")
    forged = tmp_path / "forged.py"
    forged.write_text("def f():\n    return 1000\n")
    py_compile.compile(str(forged), cfile=str(pkg / "__pycache__" /
                       f"a.{sys.implementation.cache_tag}.pyc"))
    with pytest.raises(mf.PackageChanged, match="bytecode"):
        mf.verify(want, pkg)


def test_similarity_sees_renamed_copies_and_the_library():
    ex = get("graphs.cse")
    lib = """
def eliminate_common_subexpressions(g, max_const_size=4096):
    seen, keep = {}, []
    for node in g.nodes:
        key = (node.op, tuple(id(i) for i in node.inputs), repr(sorted(node.attrs.items())))
        if key in seen:
            continue
        seen[key] = node
        keep.append(node)
    total = 0
    for node in keep:
        total += len(node.inputs) * 2 + 1
    return keep, total
"""
    renamed = lib.replace("seen", "memo").replace("keep", "kept").replace("node", "n")
    other = """
def eliminate_common_subexpressions(g):
    out = []
    for a in g.nodes:
        if all(a.op != b.op or a.inputs != b.inputs for b in out):
            out.append(a)
    return out
"""
    pairs = near_copies({"ann": [lib], "ben": [renamed], "cat": [other],
                         "dan": ["def eliminate_common_subexpressions(g):\n"
                                 "    raise NotImplementedError('your code here')\n"]}, [ex])
    found = {(a, b) for _, a, b, _ in pairs}
    assert ("ann", "ben") in found
    assert not any("cat" in p or "dan" in p for p in found)
    assert all(b != LIBRARY or a in ("ann", "ben") for a, b in found)


def test_a_roster_refuses_without_isolation_unless_unsafe(tmp_path, monkeypatch):
    from mlc.grading import roster
    from mlc.grading.isolate import IsolationUnavailable

    def unavailable(user=None):
        raise IsolationUnavailable("no namespaces here (test)")

    monkeypatch.setattr(roster, "detect", unavailable)
    _notebook(tmp_path / "c" / "bob" / "00_welcome.ipynb", EXERCISE)
    with pytest.raises(IsolationUnavailable, match="--unsafe"):
        roster.grade_roster(tmp_path / "c", progress=False)
    rows = roster.grade_roster(tmp_path / "c", progress=False, unsafe=True, timeout=20)
    roster.write_csv(rows, tmp_path / "grades.csv")
    assert (tmp_path / "grades.csv").read_text().startswith("# NOT ISOLATED")
    assert roster.format_summary(rows).startswith("WARNING: NOT ISOLATED")
    shutil.rmtree(tmp_path / "c")


UNMOUNT = """
import ctypes, glob, os, mlc
libc = ctypes.CDLL(None, use_errno=True)
grading = os.path.join(os.path.dirname(mlc.__file__), "grading")
for target in ("{CLASS}", "/tmp", grading, os.path.dirname(mlc.__file__)):
    print(target, libc.umount2(target.encode(), 2), os.strerror(ctypes.get_errno()))
for nb in glob.glob("{CLASS}/**/*.ipynb", recursive=True):
    try:
        open(nb, "w").write("{}")
    except OSError as err:
        print(err)
try:
    open(os.path.join(grading, "grader.py"), "a").write("# edited")
except OSError as err:
    print(err)
"""


def test_the_laptop_mode_holds_without_changing_user(tmp_path):
    # Not root: an unprivileged user namespace instead of another user. Tried here as
    # root, where the namespace's "root" owns the files: only the read-only mounts and the
    # dropped capabilities keep the worker out.
    from dataclasses import replace

    from mlc.grading.grader import grade_notebook
    from mlc.grading.isolate import detect

    klass = tmp_path / "class"
    bob = _notebook(klass / "bob" / "00_welcome.ipynb", EXERCISE)
    before, watched = _digests(klass), _watched_files()
    (klass / "eve").mkdir()
    (klass / "eve" / "weights.txt").write_text("eve's own data file")
    path = _notebook(klass / "eve" / "00_welcome.ipynb", SOLUTION, _fill(UNMOUNT, CLASS=klass),
                     "assert open('weights.txt').read() == \"eve's own data file\"")
    report = grade_notebook(path, timeout=20, isolation=replace(detect(), userns=True),
                            hide=(klass,))
    assert report.score == 5, [(r.id, r.message) for r in report.results] + report.notes
    assert not any(n.startswith("cell ") for n in report.notes), report.notes  # data copied
    assert _digests(klass)["bob/00_welcome.ipynb"] == before["bob/00_welcome.ipynb"]
    assert bob.read_text() != "{}" and _watched_files() == watched
