"""Parallelism and distribution on one machine, on a real engine (unit 13).

- communicators (:mod:`.comm`, :mod:`.mpi`): :func:`world` (MPI under ``mpiexec``, via
  mpi4py) and :func:`local` (P ranks on threads of this process), one interface:
  ``send``/``recv`` of numpy buffers, a barrier, byte counters;
- collectives on point-to-point (:mod:`.collectives`): ring :func:`allreduce`,
  :func:`reduce_scatter`, :func:`allgather`, tree :func:`broadcast`; ``algorithm="mpi"``
  runs the engine's own;
- data parallel (:mod:`.data_parallel`): :class:`DistributedSampler`,
  :class:`DistributedDataParallel` (gradients averaged in buckets during backward);
- tensor parallel (:mod:`.tensor_parallel`): :class:`ColumnParallelLinear`,
  :class:`RowParallelLinear`;
- pipeline parallel (:mod:`.pipeline`): :func:`pipeline` with GPipe and 1F1B schedules;
- sharded optimizer state (:mod:`.zero`): :class:`ShardedOptimizer` (ZeRO-1);
- the alpha-beta cost model (:mod:`.cost`): :func:`cost_model`, :func:`fit_alpha_beta`.

mpi4py is optional: without it everything but :class:`MPIComm` works.
"""

from . import launch
from .collectives import allgather, allreduce, broadcast, chunk_bounds, reduce_scatter
from .comm import Communicator, DistError, LocalComm, LocalGroup, local
from .cost import CostModel, cost_model, fit_alpha_beta, measure_allreduce
from .data_parallel import DistributedDataParallel, DistributedSampler
from .mpi import MPIComm, mpi_module, world
from .pipeline import Pipeline, bubble_fraction, measured_bubble, pipeline, schedule_order
from .tensor_parallel import ColumnParallelLinear, CopyToRanks, ReduceFromRanks, \
    RowParallelLinear
from .zero import ShardedOptimizer, partition, state_bytes

__all__ = ["ColumnParallelLinear", "Communicator", "CopyToRanks", "CostModel", "DistError",
           "ShardedOptimizer", "cost_model", "fit_alpha_beta", "launch", "measure_allreduce",
           "partition", "state_bytes",
           "DistributedDataParallel", "DistributedSampler", "LocalComm", "LocalGroup",
           "MPIComm", "Pipeline", "ReduceFromRanks", "RowParallelLinear", "allgather",
           "allreduce", "broadcast", "bubble_fraction", "chunk_bounds", "local", "measured_bubble",
           "mpi_module", "pipeline", "reduce_scatter", "schedule_order", "world"]
