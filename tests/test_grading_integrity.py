"""The student's code decides no score: tampering from inside the notebook gains nothing.

Each test adds a few cells to the welcome unit's exercise notebook (stubs: 0 points) or
solution notebook (5 points) that attack the grader the way a student could, and checks
that the stubs still score 0 and the solutions never more than full marks.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from mlc.grading import get
from mlc.grading.grader import grade_notebook
from mlc.grading.session import Session
from mlc.grading.protocol import record, verdict
from mlc.grading.wire import WireError, decode, encode, public, roundtrip

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_welcome.ipynb"
EXERCISE = ROOT / "exercises" / "00_welcome.ipynb"
IDS = ("welcome.saxpy", "welcome.matmul_intensity", "welcome.roofline_time")


def _with_cells(tmp_path: Path, base: Path, *cells: str, at_end: bool = True) -> Path:
    nb = nbformat.read(base, as_version=4)
    new = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells = nb.cells + new if at_end else new + nb.cells
    path = tmp_path / base.name
    nbformat.write(nb, path)
    return path


PATCH_CHECKS = """
import sys
for name, mod in list(sys.modules.items()):
    if name.startswith("mlc.grading"):
        for attr in ("verdict", "record", "grade_in_process", "observe_case", "run_check"):
            if hasattr(mod, attr):
                setattr(mod, attr, lambda *a, **k: {"id": "x", "score": 1000.0,
                        "max_score": 1000.0, "passed": [], "message": "ok", "hint": ""})
from mlc.grading import registry
for ex in registry.all_exercises().values():
    ex.points = 1000
    ex.check.judge = lambda *a, **k: None
"""

PATCH_JSON = """
import json
json.dump = lambda obj, f, *a, **k: f.write('{"score": 1000}')
json.dumps = lambda *a, **k: '{"kind": "obs", "id": "welcome.saxpy", "case": 0, "obs": {"ok": 1}}'
"""

FORGE_FILES = """
import os, sys, json, glob
job = sys.argv[1]
folder = os.path.dirname(job)
for ex in ("welcome.saxpy", "welcome.matmul_intensity", "welcome.roofline_time"):
    for pattern in ("check-{}.json", "result-{}.json", "{}.json"):
        with open(os.path.join(folder, pattern.format(ex)), "w") as f:
            json.dump({"id": ex, "score": 1000.0, "max_score": 2, "message": "ok"}, f)
with open(os.path.join(folder, "results.json"), "w") as f:
    json.dump({"score": 1000}, f)
"""

FORGE_CHANNEL_THEN_EXIT = """
import os, sys, json
fd = int(sys.argv[2])
def send(**m):
    os.write(fd, (json.dumps(m) + "\\n").encode())
for ex in ("welcome.saxpy", "welcome.matmul_intensity", "welcome.roofline_time"):
    send(kind="check", id=ex, state="start")
    send(kind="names", id=ex, names={"saxpy": "callable", "matmul_intensity": "callable",
         "roofline_time": "callable", "bound_by": "callable"})
    for case in range(8):
        send(kind="obs", id=ex, case=case, obs={"ok": 1.0})
    send(kind="check", id=ex, state="end", status="ok")
send(kind="runner", state="done")
os._exit(0)
"""

FAKE_REPORT = """
print("welcome.saxpy   2  2  all cases passed")
print("total  5  5")
import sys
sys.__stdout__.write("total  5  5\\n")
"""

STEAL_JOB = """
import sys, shutil
shutil.copy(sys.argv[1], {dest!r})
"""


def _scores(report):
    return {r.id: r.score for r in report.results}


@pytest.mark.parametrize("attack", [PATCH_CHECKS, PATCH_JSON, FORGE_FILES,
                                    FORGE_CHANNEL_THEN_EXIT, FAKE_REPORT],
                         ids=["patch-checks", "patch-json", "forge-files",
                              "forge-channel-and-exit", "fake-report"])
def test_tampering_with_stubs_scores_zero(tmp_path, attack):
    path = _with_cells(tmp_path, EXERCISE, attack)
    report = grade_notebook(path, timeout=20)
    assert report.max_score == 5
    assert report.score == 0, [(r.id, r.score, r.message) for r in report.results]


@pytest.mark.parametrize("attack", [PATCH_CHECKS, PATCH_JSON, FORGE_CHANNEL_THEN_EXIT],
                         ids=["patch-checks", "patch-json", "forge-channel-and-exit"])
def test_tampering_with_solutions_never_beats_full_marks(tmp_path, attack):
    path = _with_cells(tmp_path, SOLUTION, attack)
    report = grade_notebook(path, timeout=20)
    assert all(0 <= r.score <= r.max_score for r in report.results)
    assert report.score <= report.max_score == 5


def test_forging_the_channel_first_is_caught_even_before_the_checks(tmp_path):
    # The forgery runs as the notebook's first cell, then the notebook goes on as usual.
    attack = FORGE_CHANNEL_THEN_EXIT.replace("os._exit(0)", "")
    report = grade_notebook(_with_cells(tmp_path, EXERCISE, attack, at_end=False), timeout=20)
    assert report.score == 0
    assert any("tampered" in r.message for r in report.results)


def test_the_job_file_holds_no_expected_answer(tmp_path):
    stolen = tmp_path / "stolen.json"
    path = _with_cells(tmp_path, EXERCISE, STEAL_JOB.format(dest=str(stolen)))
    assert grade_notebook(path, timeout=20).score == 0
    job = json.loads(stolen.read_text())
    assert "score" not in stolen.read_text() and "expected" not in stolen.read_text()
    for ex in job["exercises"]:
        for case in ex["cases"]:
            assert not any(k.startswith("_") for k in case)


def test_cli_report_and_results_are_the_graders(tmp_path):
    path = _with_cells(tmp_path, EXERCISE, FAKE_REPORT, FORGE_FILES)
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "mlc.cli", "grade", str(path), "--json",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    total = [ln for ln in proc.stdout.splitlines() if ln.startswith("total")]
    assert total and total[0].split()[1:3] == ["0", "5"], proc.stdout
    assert json.loads(out.read_text())["score"] == 0


def test_magics_and_display_behave_as_in_jupyter(tmp_path):
    # %time x = ... must define x (the old worker turned the line into `pass`), and
    # display(...) must work as in a notebook.
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "def matmul_intensity(" in cell.source:
            cell.source = ("%time factor = 2\n"
                           "def matmul_intensity(n, k, m, bytes_per_element=4):\n"
                           "    return factor * n * k * m / ((n * k + k * m + n * m)"
                           " * bytes_per_element)\n"
                           "display(matmul_intensity(1, 1, 1))")
    path = tmp_path / "00_welcome.ipynb"
    nbformat.write(nb, path)
    report = grade_notebook(path, timeout=30)
    assert report.score == report.max_score, [(r.id, r.message) for r in report.results] + \
        report.notes


# ---- the pieces, one by one ---------------------------------------------------------------------

def test_scores_are_clamped_to_the_points():
    ex = get("welcome.saxpy")
    assert record(ex, 1000, [], "")["score"] == ex.points
    assert record(ex, -5, [], "")["score"] == 0


def _session():
    ex = get("welcome.matmul_intensity")
    cases = ex.check.cases()
    return ex, cases, Session([ex], {ex.id: cases}, {ex.id: 10.0})


def _good_stream(ex, cases):
    from mlc.grading.checks.welcome import _Intensity

    msgs = [{"kind": "check", "id": ex.id, "state": "start"},
            {"kind": "names", "id": ex.id, "names": {"matmul_intensity": "callable"}}]
    for i, case in enumerate(cases):
        n, k, m, b = (*case["args"], 4)[:4]
        msgs.append({"kind": "obs", "id": ex.id, "case": i,
                     "obs": {"ok": 2 * n * k * m / ((n * k + k * m + n * m) * b)}})
    msgs.append({"kind": "check", "id": ex.id, "state": "end", "status": "ok"})
    assert _Intensity  # the check whose reference the stream copies
    return msgs


def _run(session, msgs, stamps=None):
    now = time.monotonic()
    for i, msg in enumerate(msgs):
        session.take(stamps[i] if stamps else now, msg)


def test_a_well_formed_stream_scores_full_marks():
    ex, cases, s = _session()
    _run(s, _good_stream(ex, cases))
    assert s.result(ex, None, stuck=None)["score"] == ex.points


@pytest.mark.parametrize("damage", ["twice", "late", "unknown-case", "outside", "malformed"])
def test_damaged_streams_score_zero_with_a_note(damage):
    ex, cases, s = _session()
    msgs = _good_stream(ex, cases)
    now = time.monotonic()
    late = False
    if damage == "twice":
        msgs.insert(3, dict(msgs[2]))
    elif damage == "late":
        late = True
    elif damage == "unknown-case":
        msgs.insert(3, {"kind": "obs", "id": ex.id, "case": 99, "obs": {"ok": 1.0}})
    elif damage == "outside":
        msgs.insert(0, {"kind": "obs", "id": ex.id, "case": 0, "obs": {"ok": 1.0}})
    elif damage == "malformed":
        msgs[2] = {"kind": "obs", "id": ex.id, "case": 0,
                   "obs": {"ok": {"__mlc__": "ndarray", "dtype": "O", "shape": [], "b64": ""}}}
    stamps = [now] * len(msgs)
    if late:
        stamps[3] = now + 60.0
    _run(s, msgs, stamps)
    rec = s.result(ex, None, stuck=None)
    assert rec["score"] == 0, rec
    assert rec["message"]


def test_a_message_for_an_exercise_not_asked_is_ignored_with_a_note():
    ex, cases, s = _session()
    msgs = _good_stream(ex, cases)
    msgs.insert(0, {"kind": "check", "id": "welcome.saxpy", "state": "start"})
    _run(s, msgs)
    assert any("not asked" in n for n in s.notes)


def test_a_stub_hears_only_not_implemented_and_a_wrong_answer_gets_a_nudge():
    ex = get("welcome.matmul_intensity")
    cases = ex.check.cases()
    stub = verdict(ex, cases, {"matmul_intensity": "callable"},
                   [{"error": "not_implemented", "message": "x"}], None)
    assert stub["score"] == 0 and "not implemented yet" in stub["message"] and not stub["hint"]
    wrong = verdict(ex, cases, {"matmul_intensity": "callable"}, [{"ok": 0.5}], None)
    assert wrong["score"] == 0 and "expected" in wrong["message"] and wrong["hint"]


def test_the_wire_carries_plain_data_only():
    value = {"a": np.arange(6, dtype=np.int8).reshape(2, 3), "t": (1, 2.5, "x"),
             "f": float("nan"), "b": b"\x00\x01", "n": None, "l": [True, np.float32(2)]}
    back = roundtrip(value)
    assert np.array_equal(back["a"], value["a"]) and back["a"].dtype == np.int8
    assert back["t"] == (1, 2.5, "x") and np.isnan(back["f"]) and back["b"] == b"\x00\x01"
    with pytest.raises(WireError):
        encode({"obj": object()})
    with pytest.raises(WireError):
        encode(np.array([object()]))
    with pytest.raises(WireError):
        decode('{"__mlc__": "pickle", "data": "gASV"}')
    with pytest.raises(WireError):
        decode('{"__mlc__": "ndarray", "dtype": "<f4", "shape": [4], "b64": "AAAA"}')
    assert public({"what": "w", "_expected": 3, "x": 1}) == {"what": "w", "x": 1}
