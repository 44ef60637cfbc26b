"""Auto-tuning: let measurements choose the schedule.

::

    from mlc import tune
    result = tune.tune(func, target="cpu", trials=64, strategy="evolutionary",
                       log_file="matmul.json")
    print(result.trace)          # the winning recipe, as Python
    result.plot()                # best time vs trial
    mod = result.build()         # the fastest program found

The pieces, one file each: ``space.py`` (a schedule template whose sampling primitives
are the knobs; ``multi_level_tiling`` is the default), ``features.py`` (numbers that
describe a loop nest), ``cost_model.py`` (ridge regression, boosted stumps and their
average, in numpy),
``measure.py`` (build, check against the naive program, time), ``log.py`` (JSON trial log
to resume from), ``search.py`` (random and evolutionary search, ``tune``), ``result.py``
(``TuneResult`` and its plot), ``table.py`` (a whole small space measured once, and
searches replayed over it).
"""

from .cost_model import BoostedStumps, Ensemble, RidgeModel, make_model
from .features import FEATURE_NAMES, extract
from .log import TuningLog, workload_key
from .measure import Measurer
from .result import TuneResult
from .search import STRATEGIES, tune
from .space import SearchSpace, main_block, multi_level_tiling
from .table import (SHIPPED_TABLE, Table, TableMeasurer, load_table, measure_table,
                    parallel_tiles)

__all__ = ["tune", "TuneResult", "SearchSpace", "multi_level_tiling", "main_block",
           "RidgeModel", "BoostedStumps", "Ensemble", "make_model", "extract", "FEATURE_NAMES",
           "Measurer", "TuningLog", "workload_key", "STRATEGIES",
           "parallel_tiles", "measure_table", "load_table", "Table", "TableMeasurer",
           "SHIPPED_TABLE"]
