"""Neural-network modules (needle's ``nn``): a model is a tree of ``Module``s.

``module``: Module, Parameter and the containers; ``layers``: Linear, activations,
Dropout; ``norm``: LayerNorm1d, BatchNorm1d; ``conv``: Conv (NHWC); ``loss``:
SoftmaxLoss; ``transformer``: Embedding, GELU, LayerNorm, MultiHeadAttention.
"""

from .module import Flatten, Identity, Module, Parameter, Residual, Sequential  # noqa: F401
from .layers import Dropout, Linear, ReLU, Sigmoid, Tanh  # noqa: F401
from .norm import BatchNorm1d, LayerNorm1d  # noqa: F401
from .conv import Conv  # noqa: F401
from .loss import SoftmaxLoss  # noqa: F401
from .transformer import GELU, Embedding, LayerNorm, MultiHeadAttention  # noqa: F401
