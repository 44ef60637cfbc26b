"""A graph that holds ops of a layer above the compiler (the quantizer's integer ops, the
sparse layer's kernel) loads in a fresh process that never imported that layer: the
registry's providers table imports it on first use of the name."""

import subprocess
import sys

import numpy as np

from mlc import graph, nn, quant
from mlc.autograd import Tensor


def test_quantized_graph_loads_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = rng.standard_normal((3, 8)).astype(np.float32)
    g = graph.trace(model, Tensor(x, requires_grad=False))
    qg = quant.quantize_graph(g, [x])
    assert any(n.op == "qlinear" for n in qg.nodes)
    graph.save(qg, tmp_path / "q")
    np.save(tmp_path / "x.npy", x)
    expected = graph.interpret(qg, x)
    expected = expected[0] if isinstance(expected, (list, tuple)) else expected
    np.save(tmp_path / "expected.npy", np.asarray(expected))
    script = (
        "import sys, numpy as np\n"
        "from mlc import graph\n"
        "assert 'mlc.quant' not in sys.modules\n"
        f"g = graph.load({str(tmp_path / 'q')!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "y = graph.interpret(g, x)\n"
        "y = y[0] if isinstance(y, (list, tuple)) else y\n"
        f"assert np.array_equal(np.asarray(y), np.load({str(tmp_path / 'expected.npy')!r}))\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ok" in done.stdout


def test_an_unknown_op_is_still_refused():
    from mlc.graph.ops.registry import known, opdef

    assert not known("no_such_op")
    try:
        opdef("no_such_op")
    except ValueError as e:
        assert "no_such_op" in str(e)
    else:
        raise AssertionError("an unknown op was accepted")
