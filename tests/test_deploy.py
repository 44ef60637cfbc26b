"""mlc.deploy: every stage on the tiny ViT, the artifact's folder (fresh-process bit-exact,
tampering and versions found), quantized variants smaller and as accurate as promised on
the trained ViT, bad input named."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mlc
from mlc import graph
from mlc.models import tiny_vit, train_tiny_vit

# the "python" target runs the generated kernels uncompiled: the same program, no Numba
# compile per batch size (the cpu target's fresh-process equality is bench deploy's check)
T = "python"

LOAD = """
import sys, numpy as np, mlc
art = mlc.deploy.load(sys.argv[1])
np.save(sys.argv[3], art(np.load(sys.argv[2])))
"""


@pytest.fixture(scope="module")
def vit():
    model, x = tiny_vit(batch=1)
    X = mlc.data.load_digits()[2][:6]
    return model, x, X


def _eager(model, X):
    with mlc.no_grad():
        return model(mlc.Tensor(X, requires_grad=False)).numpy()


def test_fp32_equals_eager_and_reloads_bit_for_bit_in_a_fresh_process(vit, tmp_path):
    model, x, X = vit
    art = mlc.deploy(model, x, target=T)
    out = art(X)                                  # batch 6 from a batch-1 example
    np.testing.assert_allclose(out, _eager(model, X), rtol=1e-4, atol=1e-5)
    assert set(art.compile_seconds) == {"trace", "passes", "quantize", "fuse", "lower",
                                        "plan", "compile"}
    art.save(tmp_path / "a")
    np.save(tmp_path / "x.npy", X)
    subprocess.run([sys.executable, "-c", LOAD, str(tmp_path / "a"), str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True, timeout=120)
    assert np.array_equal(np.load(tmp_path / "y.npy"), out)


def test_quantized_artifacts_are_smaller_and_close(vit, tmp_path):
    model, x, X = vit
    fp = mlc.deploy(model, x, target=T)
    q8 = mlc.deploy(model, x, quantize="int8", calibration=[X], target=T)
    q4 = mlc.deploy(model, x, quantize="int4-weight", target=T)
    assert q4.weight_bytes < q8.weight_bytes < fp.weight_bytes
    ref = fp(X)
    for art in (q8, q4):
        assert np.abs(art(X) - ref).max() < 0.25 * np.abs(ref).max()
    q4.save(tmp_path / "q4")
    assert np.array_equal(mlc.deploy.load(tmp_path / "q4")(X), q4(X))


@pytest.fixture(scope="module")
def trained():
    model, x = tiny_vit(batch=1)
    train_tiny_vit(model)
    return model, x


def test_int4_weight_stores_a_fifth_of_fp32_and_the_accuracy_holds(trained):
    """The issue's bar on the digits test set: fp32 >= 95%, int8 within 1 point, int4-weight
    within 3 points at <= 0.2 of fp32's weight bytes (every constant counted). Accuracy is
    read from ``graph.interpret`` of each artifact's graph: the program it runs computes the
    same (bit for bit on integer ops, 1e-5 in float), and interpreting 360 digits costs no
    compile."""
    model, x = trained
    Xtr, _, Xte, yte = mlc.data.load_digits()
    arts = {q: mlc.deploy(model, x, quantize=q, calibration=[Xtr[:128], Xtr[128:256]],
                          target=T) for q in mlc.deploy.QUANTIZE}
    acc = {q: float((graph.interpret(a.graph, Xte).argmax(1) == yte).mean())
           for q, a in arts.items()}
    assert acc[None] >= 0.95, acc
    assert acc["int8"] >= acc[None] - 0.01, acc
    assert acc["int4-weight"] >= acc[None] - 0.03, acc
    fp32, q4 = arts[None], arts["int4-weight"]
    assert q4.weight_bytes / fp32.weight_bytes <= 0.2, q4.weights
    for a in arts.values():
        assert a.weight_bytes == sum(n.nbytes for n in a.graph.params) == sum(a.weights.values())
    assert fp32.weights["pos.reshape"] == 4 * q4.weights["pos.reshape.q"]   # the table: int8
    X = Xte[:40]                                        # the kernels: several row tiles
    np.testing.assert_allclose(q4(X), graph.interpret(q4.graph, X), rtol=1e-4, atol=1e-4)


def test_tampered_and_foreign_folders_are_refused(vit, tmp_path):
    model, x, _ = vit
    path = mlc.deploy(model, x, target=T).save(tmp_path / "a")
    npz = os.path.join(path, "executable", "constants.npz")
    with open(npz, "ab") as f:
        f.write(b"\0")
    with pytest.raises(mlc.deploy.DeployError, match="constants.npz is changed"):
        mlc.deploy.load(path)
    meta = os.path.join(path, "deploy.json")
    with open(meta) as f:
        data = json.load(f)
    data["version"] = 99
    with open(meta, "w") as f:
        json.dump(data, f)
    with pytest.raises(mlc.deploy.DeployError, match="another version"):
        mlc.deploy.load(path)
    with pytest.raises(mlc.deploy.DeployError, match="no deploy.json"):
        mlc.deploy.load(tmp_path)


def test_bad_arguments_and_a_failing_stage_are_named(vit):
    model, x, _ = vit
    with pytest.raises(mlc.deploy.DeployError, match="quantize must be one of"):
        mlc.deploy(model, x, quantize="int3")
    with pytest.raises(mlc.deploy.DeployError, match="calibration"):
        mlc.deploy(model, x, quantize="int8")

    def off_tape(t):                      # numpy work wrapped back into a Tensor
        return mlc.Tensor(np.sort(t.numpy(), axis=1))

    with pytest.raises(mlc.deploy.DeployError, match="the trace stage failed"):
        mlc.deploy(off_tape, x)


def test_report_card(vit):
    model, x, X = vit
    y = _eager(model, X).argmax(1)
    r = mlc.deploy(model, x, target=T).report(data=(X, y), batch=4, repeat=2)
    assert r.accuracy == 1.0 and set(r.latency) == {1, 4}
    assert r.arena_bytes >= r.lower_bound > 0 and r.kernels > 0
    assert r.bottleneck == max(r.groups, key=r.groups.get)
    assert "time per kernel group" in str(r) and "matmul" in r.groups


def test_cli_deploy_report(vit, tmp_path, capsys):
    from mlc.cli import main

    model, x, _ = vit
    path = mlc.deploy(model, x, target=T).save(tmp_path / "a")
    assert main(["deploy", "report", path, "--batch", "2"]) == 0
    assert "time per kernel group" in capsys.readouterr().out
    assert main(["deploy", "report", str(tmp_path)]) == 2
    assert "no deploy.json" in capsys.readouterr().err
