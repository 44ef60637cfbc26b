"""mlc.perf: the timer and stopwatch, GFLOP/s, tables, the roofline measurements and plot.

Speeds are never asserted (the machine is shared and noisy); what is tested is that the
measurements are positive, finite, come from the stated amount of work, and that the
roofline is drawn as min(peak, intensity * bandwidth).
"""

import math
import pickle
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mlc import perf  # noqa: E402


def test_timeit_reports_seconds_per_call():
    calls = []

    def sleepy():
        calls.append(1)
        time.sleep(0.002)

    t = perf.timeit(sleepy, repeat=3, number=2, warmup=1)
    assert 0.0015 < t < 0.05
    assert len(calls) == 1 + 3 * 2
    assert isinstance(t, perf.Timing) and isinstance(t, float)
    assert t.number == 2 and len(t.times) == 3


def test_timing_is_the_median_and_keeps_the_min():
    t = perf.Timing([3.0, 1.0, 2.0, 10.0, 4.0], number=7)
    assert t == 3.0 and t.median == 3.0 and t.min == 1.0
    assert t.times == (3.0, 1.0, 2.0, 10.0, 4.0) and t.number == 7
    assert t * 2 == 6.0 and type(t * 2) is float      # arithmetic gives plain floats
    assert str(t) == "3.0" and "min=1 s" in repr(t)
    assert pickle.loads(pickle.dumps(t)).times == t.times
    with pytest.raises(ValueError, match="at least one round"):
        perf.Timing([], 1)


def test_timeit_autoranges_to_min_time(monkeypatch):
    # A clock that each call of the function advances by one tick (2**-20 s, exact in binary
    # floating point, so sums do not round): the rule is checked, not
    # this machine's load (a busy machine made calibration rounds slower than the timed ones).
    from mlc.perf import timing

    now = [0.0]
    monkeypatch.setattr(timing, "_clock", lambda: now[0])
    calls = []

    def tiny():
        calls.append(1)
        now[0] += tick

    tick = 2.0 ** -20
    t = perf.timeit(tiny, repeat=2, warmup=0, min_time=5000 * tick)
    # the count is the first of 1, 2, 5, 10, ... whose round lasts min_time: 5000 calls
    assert t.number == 5000
    assert t.times == (tick, tick)
    calibration = len(calls) - 2 * t.number
    assert calibration == sum((1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000))


def test_timeit_number_one_calls_exactly_repeat_times():
    calls = []
    t = perf.timeit(lambda: calls.append(1), repeat=4, number=1, warmup=2)
    assert len(calls) == 2 + 4 and t.number == 1 and len(t.times) == 4
    assert perf.timeit(lambda: None, repeat=1, min_time=0).number == 1


def test_timeit_rejects_bad_arguments():
    with pytest.raises(TypeError, match="function to call"):
        perf.timeit(1.0)
    with pytest.raises(ValueError, match="repeat"):
        perf.timeit(lambda: None, repeat=0)
    with pytest.raises(ValueError, match="number"):
        perf.timeit(lambda: None, number=0)


def test_stopwatch_measures_one_block():
    with perf.stopwatch() as sw:
        time.sleep(0.01)
        running = sw.seconds
    assert 0.005 < running <= sw.seconds < 1.0
    assert sw.seconds == sw.seconds            # stopped: the reading no longer moves
    assert "stopped" in repr(sw)
    sw2 = perf.Stopwatch()
    with pytest.raises(RuntimeError, match="never started"):
        _ = sw2.seconds
    sw2.start()
    assert sw2.stop() >= 0.0


def test_gflops_and_matmul_flops():
    assert perf.matmul_flops(2, 3, 4) == 48
    assert perf.gflops(2e9, 0.5) == 4.0
    assert perf.gflops(1.0, 0.0) == math.inf


def test_format_table_aligns_columns():
    text = perf.format_table([("ijk", 1.23456), ("numpy", 123456.0)], ["kernel", "GFLOP/s"])
    lines = text.splitlines()
    assert lines[0].startswith("kernel") and "1.23" in lines[2] and "123,456" in lines[3]
    assert len({line.index(line.split()[1]) for line in (lines[0], lines[2])}) == 1


@pytest.mark.parametrize("kernel,backend", [("triad", "numba"), ("copy", "numba"),
                                            ("copy", "numpy")])
def test_measure_bandwidth_is_a_plausible_rate(kernel, backend):
    gbs = perf.measure_bandwidth(kernel, mbytes=8, repeat=2, backend=backend)
    assert math.isfinite(gbs) and 0.1 < gbs < 10_000


def test_measure_bandwidth_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel must be"):
        perf.measure_bandwidth("scale")
    with pytest.raises(ValueError, match="backend must be"):
        perf.measure_bandwidth(backend="cupy")
    with pytest.raises(ValueError, match="only kernel='copy'"):
        perf.measure_bandwidth("triad", backend="numpy")
    with pytest.raises(ValueError, match="mbytes must be positive"):
        perf.measure_bandwidth(mbytes=0)


def test_measure_peak_gflops_is_a_plausible_rate():
    peak = perf.measure_peak_gflops(n=128, repeat=2)
    assert math.isfinite(peak) and 0.05 < peak < 100_000
    with pytest.raises(ValueError, match="n must be positive"):
        perf.measure_peak_gflops(n=0)


def test_roofline_plot_draws_min_of_peak_and_bandwidth():
    fig, ax = plt.subplots()
    points = [("add", 1 / 12, 0.5), ("matmul", 40.0, 30.0)]
    out = perf.roofline_plot(ax, peak_gflops=100.0, bandwidth_gbs=20.0, points=points)
    assert out is ax
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    roof = ax.lines[0]
    x, y = roof.get_xdata(), roof.get_ydata()
    np.testing.assert_allclose(y, np.minimum(100.0, 20.0 * x))
    assert x.min() < 1 / 12 and x.max() > 40.0  # the range covers every kernel
    placed = {line.get_label(): (float(line.get_xdata()[0]), float(line.get_ydata()[0]))
              for line in ax.lines[2:]}
    assert placed == {"add": (1 / 12, 0.5), "matmul": (40.0, 30.0)}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["add", "matmul"]
    labels = {t.get_text() for t in ax.texts}
    assert {"ridge 5 flop/B", "peak 100 GFLOP/s", "20 GB/s"} <= labels
    plt.close(fig)


def test_roofline_plot_rejects_bad_input():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="must be positive"):
        perf.roofline_plot(ax, 0.0, 10.0)
    with pytest.raises(ValueError, match="each point"):
        perf.roofline_plot(ax, 10.0, 10.0, points=[("bad", -1.0, 2.0)])
    plt.close(fig)
