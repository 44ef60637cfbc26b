"""What a newcomer typed, and the error that should say what was wrong.

Each case was met in practice: an AttributeError from deep inside, a ZeroDivisionError, a
value wrapped or turned into NaN without a word, a traceback from the command line. Each
now raises (or prints) an error that names the problem and what to do instead."""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import graph, memory
from mlc.cli import main
from mlc.memory.chunked import chunked_attention
from mlc.quant import quantize_model


def _mlp():
    np.random.seed(0)
    return mlc.nn.Sequential(mlc.nn.Linear(4, 3), mlc.nn.ReLU(), mlc.nn.Linear(3, 2))


def _graph():
    return graph.trace(_mlp(), mlc.Tensor(np.ones((2, 4), np.float32), requires_grad=False))


def test_build_of_a_model_says_trace_it_first():
    with pytest.raises(TypeError, match=r"not a Sequential.*graph\.trace"):
        graph.build(_mlp())


def test_explain_fusion_of_an_unfused_graph_says_fuse_it_first():
    with pytest.raises(TypeError, match=r"not a Graph.*graph\.fuse"):
        graph.explain_fusion(_graph())


def test_array_on_a_device_named_by_a_string():
    with pytest.raises(TypeError, match=r"nd\.cpu\(\).*'gpu'"):
        nd.array(np.ones(3), device="gpu")


def test_array_out_of_an_integer_range_is_refused_not_wrapped():
    with pytest.raises(ValueError, match=r"-200 does not fit in int8 \(range -128 to 127\)"):
        nd.array([300, -200], dtype="int8")
    with pytest.raises(ValueError, match="does not fit in uint8"):
        nd.array(np.array([-1.0, 2.0]), dtype="uint8")
    assert nd.array([127, -128], dtype="int8").numpy().tolist() == [127, -128]


def test_array_of_none_is_refused_not_nan():
    with pytest.raises(TypeError, match="from None"):
        nd.array(None)
    with pytest.raises(TypeError, match="numbers"):
        nd.array(["a", "b"])


def test_plan_alignment_must_be_a_power_of_two():
    g = _graph()
    for bad in (0, 3, -64):
        with pytest.raises(ValueError, match="power of two"):
            memory.plan(g, alignment=bad)
    assert memory.plan(g, alignment=16).arena_bytes % 16 == 0


def test_chunked_attention_chunk_must_be_positive():
    q = np.ones((4, 2), np.float32)
    for kw in ({"chunk": 0}, {"chunk": -2}, {"q_chunk": 0}):
        with pytest.raises(ValueError, match="positive number of rows"):
            chunked_attention(q, q, q, **kw)


def test_quantize_model_with_a_bare_array_says_pass_a_list():
    X = np.ones((8, 4), np.float32)
    with pytest.raises(TypeError, match=r"not one array.*pass \[X\]"):
        quantize_model(_mlp(), X)


def test_grade_of_a_missing_notebook_says_it_does_not_exist(capsys):
    assert main(["grade", "nosuch.ipynb"]) == 2
    assert "nosuch.ipynb does not exist" in capsys.readouterr().err


def test_grade_json_into_a_missing_folder_is_refused_before_grading(capsys, tmp_path):
    out = tmp_path / "missing" / "results.json"
    assert main(["grade", "solutions/00_welcome.ipynb", "--json", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["0", "-5", "soon"])
def test_grade_timeout_must_be_positive_seconds(capsys, limit):
    with pytest.raises(SystemExit):
        main(["grade", "solutions/00_welcome.ipynb", "--timeout", limit])
    assert "--timeout" in capsys.readouterr().err


def test_grade_report_shows_whole_messages_and_hints():
    from mlc.grading.grader import NotebookReport, Result, format_report

    long = "case 7 of the hidden chains: expected 12 bytes, got 13 " * 4
    rep = NotebookReport("x.ipynb", [
        Result("unit.a", 0, 2, long, [], "count each value once per group"),
        Result("unit.b", 2, 2, "all cases passed")], [], 0.5)
    text = format_report(rep)
    assert " ".join(text.split()).count(" ".join(long.split())) == 1  # whole, wrapped
    assert "hint: count each value once per group" in text
    assert max(len(line) for line in text.splitlines()[4:]) <= 100



def test_grade_notes_name_cells_as_jupyterlab_numbers_them(tmp_path):
    """Code cells counted from 1, the [n] JupyterLab shows after Run All, not from 0."""
    import nbformat

    from mlc.grading.grader import grade_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("1 / 0")]
    path = tmp_path / "00_welcome.ipynb"
    nbformat.write(nb, path)
    notes = grade_notebook(path, timeout=60).notes
    assert any(n.startswith("cell [2]: ZeroDivisionError") for n in notes), notes
