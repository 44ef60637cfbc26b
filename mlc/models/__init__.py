"""``mlc.models``: the course's models written once, each builder seeded and returning
``(model, example_input)``.

- :func:`digits_mlp` / :func:`digits_cnn`: the digits baselines of units 08 to 11 (graphs,
  memory planning, compression), widths as arguments;
- :func:`tiny_vit` / :func:`train_tiny_vit`: the digits' 8 rows as 8 tokens, one encoder
  block, mean-pooled head (>= 95% test accuracy in seconds);
- :func:`tiny_gpt` / :func:`train_tiny_gpt`: a 2-block decoder-only transformer trained to
  sort a digit string, with ``generate(prompt_ids, n, kv_cache=True)``.
"""

from .digits import digits_cnn, digits_mlp
from .train import accuracy, clone, fit, predict
from .vit import EncoderBlock, TinyViT, tiny_vit, train_tiny_vit
from .gpt import TinyGPT, sort_task, tiny_gpt, train_tiny_gpt

__all__ = ["digits_mlp", "digits_cnn", "fit", "predict", "accuracy", "clone", "EncoderBlock",
           "TinyViT", "tiny_vit", "train_tiny_vit", "TinyGPT", "sort_task", "tiny_gpt",
           "train_tiny_gpt"]
