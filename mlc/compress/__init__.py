"""``mlc.compress``: making a trained model smaller and cheaper, and measuring the trade.

::

    from mlc import compress
    data = mlc.data.load_digits()
    model, _ = mlc.models.digits_mlp(hidden=(256,)); compress.fit(model, *data[:2], epochs=10)
    compress.prune_magnitude(model, 0.9)            # masks: 90% zeros, kept through training
    small = compress.prune_channels(model, 0.5)     # a smaller model: half the hidden units
    lr = compress.low_rank(model[0], energy=0.9)    # SVD: one Linear -> two thin ones
    compress.distill(teacher, student, loader, T=4.0, alpha=0.9, epochs=10)
    compress.summary(model, data)                   # params, bytes, FLOPs, latency, accuracy

One idea per module, in reading order:

- the digits MLP and CNN, ``fit``, ``accuracy``, ``clone`` come from ``mlc.models``;
- ``masks.py``        magnitude pruning (global / per layer), 2:4 pruning, masks in forward;
- ``iterative.py``    iterative pruning with fine-tuning; the lottery-ticket experiment;
- ``structured.py``   channel pruning that returns a smaller model;
- ``sparse_kernels.py``, ``sparse.py``  CSR and 2:4 formats, their bytes, Numba kernels;
- ``sparse_layers.py`` ``SparseLinear``: a pruned Linear that stores only nonzeros;
- ``sparse_bench.py`` time against sparsity and the break-even point;
- ``lowrank.py``      SVD factorisation of a Linear, rank from an energy threshold;
- ``distill.py``      the soft-target loss of Hinton et al. and a distillation loop;
- ``light.py``        the depthwise-separable convolution (MobileNet);
- ``early_exit.py``   a classifier after the first block, taken when confident;
- ``flops.py``, ``report.py``  counting, ``summary`` and the Pareto chart.
"""

from .distill import (distill, distillation_experiment, distillation_loss,  # noqa: F401
                      soft_targets, temperature_sweep)
from .early_exit import EarlyExitNet, early_exit_curve, early_exit_mlp  # noqa: F401
from .flops import (count_flops, count_nonzeros, count_parameters, model_bytes,  # noqa: F401
                    stored_model_bytes)
from .iterative import copy_masks, iterative_prune, lottery_ticket  # noqa: F401
from .light import DepthwiseSeparableConv, conv_cost  # noqa: F401
from .lowrank import (LowRankLinear, low_rank, low_rank_model, rank_for_energy,  # noqa: F401
                      rank_sweep)
from .masks import (apply_mask, effective_weight, get_mask, layer_sparsity,  # noqa: F401
                    nm_mask, prunable, prune_2_4, prune_magnitude, prune_semi_structured,
                    remove_masks, sparsity)
from ..models.train import accuracy, clone, fit, predict  # noqa: F401
from .report import (compare_latency, pareto_chart, pareto_front, summary,  # noqa: F401
                     summary_table)
from .sparse import (FORMATS, CSRMatrix, Sparse24Matrix, csr_matmul, is_2_4,  # noqa: F401
                     sparse24_matmul, stored_bytes, to_2_4, to_csr)
from .sparse_bench import (SPARSITIES, break_even_sparsity, break_even_table,  # noqa: F401
                           limit_threads, plot_time_vs_sparsity, time_vs_sparsity)
from .sparse_layers import SparseLinear, to_sparse  # noqa: F401
from .structured import channel_plan, prune_channels, unit_importance  # noqa: F401
