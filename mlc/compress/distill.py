"""Knowledge distillation (Hinton, Vinyals and Dean 2015): a small student learns from a
big teacher's *soft* predictions as well as from the labels.

A trained teacher's probabilities carry more than its argmax: that a 7 looks a bit like
a 1 and not at all like a 6. Softened with a temperature ``T``,

    p_i(T) = softmax(z / T)_i,

these *soft targets* spread that information over all classes (``T = 1`` is the usual
softmax, larger ``T`` flatter). The student minimises

    loss = alpha * T^2 * KL(p_teacher(T) || p_student(T))  +  (1 - alpha) * CE(z_student, y)

with ``KL(p || q) = sum_i p_i (log p_i - log q_i)`` averaged over the batch. The
``T^2``: the gradient of the soft term with respect to the student's logits is
``(q_i(T) - p_i(T)) / T``, which shrinks like ``1 / T^2`` for large ``T`` (Hinton et al.,
section 2); multiplying by ``T^2`` keeps the two terms' gradients on the same scale
whatever the temperature.

:func:`distillation_loss` is written with ``mlc.ops`` (``log_softmax``, products, sums),
so its gradient is autodiff's, not a formula typed in; the teacher's logits are
constants (no gradient flows into the teacher).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import init, nn, ops
from ..autograd import Tensor, no_grad
from ..models.train import accuracy, fit

__all__ = ["distillation_loss", "soft_targets", "distill", "distillation_experiment",
           "temperature_sweep"]


def soft_targets(logits, T: float) -> np.ndarray:
    """``softmax(logits / T)`` as a numpy array (rows sum to 1)."""
    z = np.asarray(logits.numpy() if isinstance(logits, Tensor) else logits, np.float64) / T
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def distillation_loss(student_logits: Tensor, teacher_logits, labels, T: float = 4.0,
                      alpha: float = 0.9) -> Tensor:
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)``.

    ``student_logits``: a Tensor ``(batch, classes)`` (the gradient flows into it);
    ``teacher_logits``: a Tensor or array of the same shape, treated as a constant;
    ``labels``: integer classes ``(batch,)``. ``alpha=0`` is plain cross-entropy,
    ``alpha=1`` pure distillation. Returns a scalar Tensor.
    """
    if T <= 0:
        raise ValueError(f"distillation_loss: temperature T must be > 0, got {T}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation_loss: alpha must lie in [0, 1], got {alpha}")
    s = student_logits
    if s.ndim != 2:
        raise ValueError(f"distillation_loss: student logits (batch, classes), got {s.shape}")
    t = teacher_logits.numpy() if isinstance(teacher_logits, Tensor) else np.asarray(
        teacher_logits)
    if t.shape != s.shape:
        raise ValueError(f"distillation_loss: teacher logits {t.shape} vs student {s.shape}")
    n, k = s.shape
    dev, dt = s.device, s.dtype
    p = soft_targets(t, T)  # constants: the teacher is not trained
    p_t = Tensor(p, device=dev, dtype=dt, requires_grad=False)
    log_p_t = Tensor(np.log(np.maximum(p, 1e-30)), device=dev, dtype=dt, requires_grad=False)
    log_q = ops.log_softmax(s / T, axis=1)
    kl = ops.summation(p_t * (log_p_t - log_q)) / n
    soft = kl * (alpha * T * T)
    if alpha == 1.0:
        return soft
    y = np.asarray(labels.numpy() if isinstance(labels, Tensor) else labels)
    one_hot = init.one_hot(k, y, device=dev, dtype=dt)
    hard = ops.summation(ops.logsumexp(s, axes=(1,)) - ops.summation(s * one_hot, axes=(1,))) / n
    return soft + hard * (1.0 - alpha)


def distill(teacher: nn.Module, student: nn.Module, loader, T: float = 4.0,
            alpha: float = 0.9, epochs: int = 10, lr: float = 0.01,
            optimizer=None) -> list[float]:
    """Train ``student`` in place on ``loader``'s batches with :func:`distillation_loss`
    against ``teacher`` (kept in eval mode, run without a graph). Returns the mean loss
    of each epoch.

    ``loader`` yields ``(x, y)`` Tensor batches (a ``mlc.data.DataLoader``);
    ``optimizer`` defaults to Adam at ``lr`` over the student's parameters.
    """
    from .. import optim

    opt = optimizer or optim.Adam(student.parameters(), lr=lr)
    teacher.eval()
    history = []
    for _ in range(epochs):
        student.train()
        total, count = 0.0, 0
        for xb, yb in loader:
            with no_grad():
                t_logits = teacher(xb).numpy()
            opt.reset_grad()
            loss = distillation_loss(student(xb), t_logits, yb, T, alpha)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
            count += xb.shape[0]
        history.append(total / max(count, 1))
    opt.reset_grad()
    student.eval()
    return history


def _mean_std(xs) -> tuple[float, float]:
    xs = np.asarray(xs, dtype=np.float64)
    return float(xs.mean()), float(xs.std(ddof=1)) if xs.size > 1 else 0.0


def distillation_experiment(teacher: nn.Module, make_student: Callable[[int], nn.Module],
                            data, seeds=(0, 1, 2), T: float = 4.0, alpha: float = 0.9,
                            epochs: int = 10, lr: float = 0.01,
                            batch_size: int = 64) -> dict:
    """The same student architecture trained alone and distilled, over ``seeds``.

    ``make_student(seed)`` builds a fresh student; both runs of a seed start from the same
    initial weights and see the same batch order. ``data = (X_train, y_train, X_test,
    y_test)``. Returns ``alone``/``distilled`` (test accuracies per seed), their
    ``*_mean``/``*_std`` and ``gain`` (mean distilled - mean alone).
    """
    from ..data import DataLoader, NDArrayDataset
    from ..models.train import clone, set_seed

    X_train, y_train, X_test, y_test = data
    alone, distilled = [], []
    for seed in seeds:
        s0 = make_student(seed)
        s1 = clone(s0)
        fit(s0, X_train, y_train, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        alone.append(accuracy(s0, X_test, y_test))
        set_seed(seed)
        loader = DataLoader(NDArrayDataset(X_train, y_train), batch_size=batch_size,
                            shuffle=True, device=s1.parameters()[0].device)
        distill(teacher, s1, loader, T=T, alpha=alpha, epochs=epochs, lr=lr)
        distilled.append(accuracy(s1, X_test, y_test))
    am, asd = _mean_std(alone)
    dm, dsd = _mean_std(distilled)
    return dict(seeds=list(seeds), alone=alone, distilled=distilled, alone_mean=am,
                alone_std=asd, distilled_mean=dm, distilled_std=dsd, gain=dm - am, T=T,
                alpha=alpha)


def temperature_sweep(teacher: nn.Module, make_student, data, temperatures=(1, 2, 4, 8),
                      **kwargs) -> list[dict]:
    """:func:`distillation_experiment` at each temperature (same seeds and students)."""
    return [distillation_experiment(teacher, make_student, data, T=float(T), **kwargs)
            for T in temperatures]
