"""Decide, before Numba is first imported, whether CUDA runs on a GPU or in the simulator.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when ``numba`` is first imported. The course
must run everywhere, so when the student has not chosen and no NVIDIA driver is visible
we turn the simulator on. If numba was imported before ``mlc`` it is too late to
choose; ``mlc doctor`` then reports whichever mode Numba picked.
"""

from __future__ import annotations

import ctypes.util
import os
import sys


def gpu_driver_present() -> bool:
    """True when an NVIDIA driver is visible: a kernel module or a loadable libcuda."""
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    return ctypes.util.find_library("cuda") is not None


def choose_cuda_mode() -> None:
    if "NUMBA_ENABLE_CUDASIM" in os.environ or "numba" in sys.modules:
        return
    if not gpu_driver_present():
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"


def cuda_simulated() -> bool:
    """Whether Numba's CUDA target is the simulator (imports numba)."""
    import numba

    return bool(numba.config.ENABLE_CUDASIM)
