"""Test configuration: CUDA runs in Numba's simulator unless a GPU is present.

This must run before numba is first imported, so it sits at the top of conftest.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from mlc import _env  # noqa: E402  (sets NUMBA_ENABLE_CUDASIM when no GPU is visible)

_env.choose_cuda_mode()

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np

    np.random.seed(0)
