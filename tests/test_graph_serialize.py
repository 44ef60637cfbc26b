"""Saving graphs and executables: JSON + .npz, no pickle, nothing stored is ever run."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from mlc import graph, memory
from mlc.models import digits_cnn, digits_mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cnn(batch=3):
    model, x = digits_cnn(batch=batch)
    return graph.trace(model, x), x


def _no_pickle(folder):
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            head = f.read(2)
        assert head != b"\x80\x04" and head[:1] != b"\x80", f"{name} looks like a pickle"
        if name.endswith(".npz"):
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():     # every array is plain numeric .npy
                    assert member.endswith(".npy")
            with np.load(path, allow_pickle=False) as z:
                assert all(z[k].dtype != object for k in z.files)


def test_graph_round_trip(tmp_path):
    g, x = _cnn()
    graph.save(g, tmp_path / "g")
    assert sorted(os.listdir(tmp_path / "g")) == ["constants.npz", "graph.json"]
    _no_pickle(tmp_path / "g")
    g2 = graph.load(tmp_path / "g")
    assert str(g2) == str(g) and [n.sym for n in g2.nodes] == [n.sym for n in g.nodes]
    np.testing.assert_array_equal(graph.interpret(g2, x), graph.interpret(g, x))
    x7 = np.random.default_rng(1).standard_normal((7, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(graph.interpret(g2, x7), graph.interpret(g, x7))


def test_executable_round_trip_in_a_fresh_process(tmp_path):
    model, x = digits_mlp(batch=3)
    exe = graph.build(graph.trace(model, x), target="cpu", memory_plan="greedy_by_size")
    exe.save(tmp_path / "e")
    assert sorted(os.listdir(tmp_path / "e")) == ["constants.npz", "graph.json",
                                                  "program.json", "source.py"]
    _no_pickle(tmp_path / "e")
    xs = [np.random.default_rng(b).standard_normal((b, 64)).astype("float32") for b in (3, 5)]
    np.savez(tmp_path / "x.npz", *xs)
    code = ("import sys, numpy as np\nfrom mlc import graph\n"
            "e = graph.load_executable(sys.argv[1])\n"
            "xs = np.load(sys.argv[2])\n"
            "np.savez(sys.argv[3], *[e(xs[k]) for k in sorted(xs.files)])\n"
            "print(e.plan.arena_bytes)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "e"),
                          str(tmp_path / "x.npz"), str(tmp_path / "y.npz")],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == exe.plan.arena_bytes
    with np.load(tmp_path / "y.npz") as ys:
        for k, xb in enumerate(xs):
            np.testing.assert_array_equal(ys[f"arr_{k}"], exe(xb))     # bit for bit


def test_loaded_executable_keeps_its_plan_and_steps(tmp_path):
    g, x = _cnn(2)
    exe = graph.build(g, target="python", memory_plan="greedy_by_size", max_batch=8)
    exe.save(tmp_path / "e")
    e2 = graph.load_executable(tmp_path / "e")
    assert e2.plan == exe.plan and e2.max_batch == 8
    assert e2.plan == memory.plan(e2.program, "greedy_by_size")
    assert [s.name for s in e2.program.steps] == [s.name for s in exe.program.steps]
    np.testing.assert_array_equal(e2(x), exe(x))


PLANTED = "\nimport os; open(os.environ['MLC_PLANTED'], 'w').write('ran')\n"


def test_code_planted_in_any_file_is_never_run(tmp_path, monkeypatch):
    g, x = _cnn(2)
    exe = graph.build(g, target="python", memory_plan="greedy_by_size")
    marker = tmp_path / "planted_ran"
    monkeypatch.setenv("MLC_PLANTED", str(marker))
    for name in ("graph.json", "program.json", "constants.npz", "source.py", "__init__.py",
                 "kernels.py"):
        folder = tmp_path / name.replace(".", "_")
        exe.save(folder)
        with open(folder / name, "a") as f:
            f.write(PLANTED)
        try:
            e2 = graph.load_executable(folder)
            np.testing.assert_array_equal(e2(x), exe(x))
        except graph.FormatError as e:        # a damaged file: a clear error, never code
            assert name in str(e)
        # the stored source itself, replaced by code: loading regenerates, never reads it
        (folder / "source.py").write_text(PLANTED)
        if name not in ("graph.json", "program.json", "constants.npz"):
            np.testing.assert_array_equal(graph.load_executable(folder)(x), exe(x))
        assert not marker.exists(), f"code planted in {name} ran"


def _tamper(folder, file, edit):
    path = folder / file
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("file, edit, message", [
    ("graph.json", lambda d: d.update(version=99), "version 99"),
    ("graph.json", lambda d: d.update(format="pickle"), "not a saved mlc graph"),
    ("graph.json", lambda d: d["nodes"][-1].update(op="os.system"), "unknown op 'os.system'"),
    ("graph.json", lambda d: d["nodes"][-1].update(shape=[3, 11]), r"the file says"),
    ("graph.json", lambda d: d["nodes"][-1].update(inputs=["nowhere"]), "earlier nodes"),
    ("graph.json", lambda d: d["nodes"][0].update(dtype="object"), "unknown dtype"),
    ("graph.json", lambda d: d["nodes"][-1]["attrs"].update(mode="__import__('os')"),
     "is not a name"),
    ("graph.json", lambda d: d["nodes"][-1].update(name="add\nimport os"), "unprintable"),
    ("program.json", lambda d: d.update(target="shell"), "unknown target"),
    ("program.json", lambda d: d["steps"].reverse(), "before a step computes it"),
    ("program.json", lambda d: d["steps"].pop(), "do not cover every op"),
    ("program.json", lambda d: d["plan"]["offsets"].update(
        {k: 0 for k in d["plan"]["offsets"]}), "unsafe"),
])
def test_tampered_files_give_a_clear_error(tmp_path, file, edit, message):
    model, x = digits_mlp(batch=3)
    exe = graph.build(graph.trace(model, x), target="python", memory_plan="greedy_by_size")
    exe.save(tmp_path / "e")
    _tamper(tmp_path / "e", file, edit)
    with pytest.raises(graph.FormatError, match=message):
        graph.load_executable(tmp_path / "e")


def test_constants_that_need_pickle_are_refused(tmp_path):
    model, x = digits_mlp(batch=3)
    g = graph.trace(model, x)
    graph.save(g, tmp_path / "g")
    with np.load(tmp_path / "g" / "constants.npz") as z:
        arrays = {k: z[k] for k in z.files}
    key = next(iter(arrays))
    arrays[key] = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "g" / "constants.npz", **arrays)
    with pytest.raises(graph.FormatError, match="constants.npz"):
        graph.load(tmp_path / "g")
    arrays[key] = np.zeros((2, 2), "float32")                  # plain, but the wrong shape
    np.savez(tmp_path / "g" / "constants.npz", **arrays)
    with pytest.raises(graph.FormatError, match="the node says"):
        graph.load(tmp_path / "g")
