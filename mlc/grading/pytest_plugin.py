"""A pytest plugin (entry point ``mlc_notebooks``) for the course's notebook CI.

Lecture notebooks in ``notebooks/`` are checked by nbval cell by cell against their stored
outputs. Solution notebooks in ``solutions/`` are stored without outputs, so they only
have to run clean: the plugin gives them nbval's *lax* mode (compare nothing, fail on an
error), as ``--nbval-lax`` would, while the lectures keep strict comparison.
Notebooks in ``exercises/`` are never collected: they raise NotImplementedError by design.
"""

from __future__ import annotations

import pytest


def pytest_ignore_collect(collection_path, config):
    if collection_path.suffix == ".ipynb" and "exercises" in collection_path.parts:
        return True
    if ".ipynb_checkpoints" in collection_path.parts:
        return True
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_collect_file(file_path, parent):
    outcome = yield
    if file_path.suffix != ".ipynb" or "solutions" not in file_path.parts:
        return
    result = outcome.get_result()
    nodes = result if isinstance(result, list) else [result]
    for node in nodes:
        if node is not None and hasattr(node, "compare_outputs"):
            node.compare_outputs = False
