"""The training loop and scoring the course's models share (Adam on mini-batches, eval-mode
accuracy); they live with the compression unit, which measured everything with them first."""

from ..compress.models import accuracy, fit, predict

__all__ = ["accuracy", "fit", "predict"]
