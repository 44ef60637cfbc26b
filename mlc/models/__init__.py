"""``mlc.models``: the course's models written once, each builder seeded and returning
``(model, example_input)``.

- :func:`tiny_vit` / :func:`train_tiny_vit`: the digits' 8 rows as 8 tokens, one encoder
  block, mean-pooled head (>= 95% test accuracy in seconds);
- :func:`tiny_gpt` / :func:`train_tiny_gpt`: a 2-block decoder-only transformer trained to
  sort a digit string, with ``generate(prompt_ids, n, kv_cache=True)``.
"""

from .vit import EncoderBlock, TinyViT, tiny_vit, train_tiny_vit
from .gpt import TinyGPT, sort_task, tiny_gpt, train_tiny_gpt

__all__ = ["EncoderBlock", "TinyViT", "tiny_vit", "train_tiny_vit", "TinyGPT", "sort_task",
           "tiny_gpt", "train_tiny_gpt"]
