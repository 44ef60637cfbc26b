"""MemoryCounts.bank_conflicts: shared-memory passes per warp-wide access, from the trace.

The expected numbers follow from the bank rule (32 banks of 4-byte words; a bank serves
one distinct word per pass) applied by hand to each kernel's addresses.
"""

import numpy as np
import pytest

import mlc  # noqa: F401  (chooses the simulator before numba is imported)
from mlc.perf import count_memory
from numba import cuda, float32

pytestmark = pytest.mark.skipif(not mlc._env.cuda_simulated(),
                                reason="bank counting needs Numba's CUDA simulator")

TILE, ROWS = 32, 8  # a 32 x 32 tile moved by 32 x 8 threads, 4 rows each


def make_transpose(pad):
    """A transpose through a shared tile of TILE x (TILE + pad) floats."""
    @cuda.jit
    def transpose(a, out):
        tile = cuda.shared.array((TILE, TILE + pad), float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for j in range(0, TILE, ROWS):
            tile[ty + j, tx] = a[ty + j, tx]
        cuda.syncthreads()
        for j in range(0, TILE, ROWS):
            out[ty + j, tx] = tile[tx, ty + j]
    return transpose


@cuda.jit
def broadcast_read(a, out):
    tile = cuda.shared.array(TILE, float32)
    tx = cuda.threadIdx.x
    tile[tx] = a[tx]
    cuda.syncthreads()
    out[tx] = tile[0]  # every lane reads the same word


def _run(kernel):
    a = np.arange(TILE * TILE, dtype=np.float32).reshape(TILE, TILE)
    out = np.zeros_like(a)
    return a, out, count_memory(kernel, 1, (TILE, ROWS), a, out, trace=True)


def test_column_reads_of_a_square_tile_are_32_way_conflicts():
    a, out, c = _run(make_transpose(0))
    assert np.array_equal(out, a.T)
    # writes: a warp writes one row, 32 consecutive words, 32 banks: 1 pass each
    assert c.bank_conflicts("tile", "w") == {"requests": 32, "wavefronts": 32, "per_request": 1.0}
    # reads: a warp reads one column, words 32 apart, all in one bank: 32 passes each
    assert c.bank_conflicts("tile", "r") == {"requests": 32, "wavefronts": 1024,
                                             "per_request": 32.0}


def test_one_word_of_padding_removes_the_conflicts():
    a, out, c = _run(make_transpose(1))
    assert np.array_equal(out, a.T)
    # a column of a 33-wide tile: words 33 apart fall in 32 different banks
    assert c.bank_conflicts("tile", "r")["per_request"] == 1.0
    assert c.bank_conflicts("tile", "w")["per_request"] == 1.0


def _broadcast():
    a, out = np.arange(TILE, dtype=np.float32), np.ones(TILE, np.float32)
    return out, count_memory(broadcast_read, 1, TILE, a, out, trace=True)


def test_same_word_is_a_broadcast_not_a_conflict():
    out, c = _broadcast()
    assert np.all(out == 0.0)
    assert c.bank_conflicts("tile", "r") == {"requests": 1, "wavefronts": 1, "per_request": 1.0}
    # 8-byte banks: 32 consecutive floats are 16 words, two floats per word, one pass
    assert c.bank_conflicts("tile", "w", bank_bytes=8)["per_request"] == 1.0
    # 16 banks of 4 bytes: lanes i and i + 16 hit one bank with different words: 2 passes
    assert c.bank_conflicts("tile", "w", banks=16)["per_request"] == 2.0


def test_bad_arguments_are_named():
    _, c = _broadcast()
    with pytest.raises(ValueError, match="kind"):
        c.bank_conflicts("tile", "x")
    with pytest.raises(KeyError):
        c.bank_conflicts("nosuch")
    untraced = count_memory(broadcast_read, 1, TILE, np.zeros(TILE, np.float32),
                            np.zeros(TILE, np.float32))
    with pytest.raises(ValueError, match="trace"):
        untraced.bank_conflicts("tile")
