"""Chunked computation: never materialise the big intermediate, walk it in pieces.

Two places where one intermediate dwarfs everything else:

**Softmax cross-entropy over a large vocabulary.** From hidden states ``h`` (N x d) and a
classifier ``W`` (d x V) the loss needs the logits ``h @ W``: N x V numbers, most of the
memory of a language model's last layer. Row chunks need only ``chunk x V`` at a time::

    full:     logits = h @ W                     N x V     -> logsumexp - picked -> mean
    chunked:  for rows r of size c:  z = h[r] @ W   c x V  -> add its rows' losses

**Attention.** ``softmax(Q K^T / sqrt(d)) V`` makes an L x L score matrix. The *online
softmax* (Milakov and Gimelshein 2018; FlashAttention, Dao et al. 2022) visits the keys
in blocks and keeps, per query row, the running max ``m``, the running sum ``l`` of
``exp(s - m)`` and the running output ``acc``; when a new block raises the max, what was
accumulated is rescaled by ``exp(m_old - m_new)``::

    for each key block j:
        s     = Q_i K_j^T / sqrt(d)                      (c x c scores, the only big temp)
        m_new = max(m, rowmax(s))
        p     = exp(s - m_new)
        l     = l * exp(m - m_new) + rowsum(p)
        acc   = acc * exp(m - m_new) + p V_j
        m     = m_new
    out_i = acc / l

Queries are chunked too, so the working memory is ``O(chunk^2 + chunk * d)`` whatever
the sequence length; only the output itself (L x d) grows with L. Both functions work on
NDArrays on any device and agree with the unchunked forms to float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ndarray as nd


def _nd(a, device=None):
    if isinstance(a, nd.NDArray):
        return a if device is None else a.to(device)
    if hasattr(a, "realize_cached_data"):
        return a.realize_cached_data()
    return nd.array(np.asarray(a, dtype="float32"), device=device)


def _one_hot(labels, classes, device):
    return nd.array(np.eye(classes, dtype="float32")[np.asarray(labels, dtype=np.int64)],
                    device=device)


def _row_losses_sum(z, labels, device) -> float:
    m = z.max(axis=1, keepdims=True)
    lse = (z - m.broadcast_to(z.shape)).exp().sum(axis=1, keepdims=True).log() + m
    picked = (z * _one_hot(labels, z.shape[1], device)).sum(axis=1, keepdims=True)
    return float((lse - picked).sum().numpy())


def softmax_cross_entropy(h, w, labels, device=None) -> float:
    """The mean softmax cross-entropy of logits ``h @ w`` (the unchunked reference)."""
    h, w = _nd(h, device), _nd(w, device)
    return _row_losses_sum(h @ w, labels, h.device) / h.shape[0]


def chunked_softmax_cross_entropy(h, w, labels, chunk: int = 256, device=None) -> float:
    """The same loss, ``chunk`` rows of logits at a time (``chunk x V`` live, not N x V)."""
    h, w = _nd(h, device), _nd(w, device)
    labels = np.asarray(labels)
    n, total = h.shape[0], 0.0
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        total += _row_losses_sum(h[a:b].compact() @ w, labels[a:b], h.device)
    return total / n


def attention(q, k, v, device=None):
    """``softmax(q k^T / sqrt(d)) v`` with the whole L x L score matrix (the reference)."""
    q, k, v = _nd(q, device), _nd(k, device), _nd(v, device)
    s = (q @ k.permute((1, 0)).compact()) * (1.0 / math.sqrt(q.shape[1]))
    m = s.max(axis=1, keepdims=True).broadcast_to(s.shape)
    p = (s - m).exp()
    return (p @ v) / p.sum(axis=1, keepdims=True).broadcast_to((q.shape[0], v.shape[1]))


def chunked_attention(q, k, v, chunk: int = 64, q_chunk: int | None = None, device=None):
    """Attention by the online softmax over key blocks of ``chunk`` (queries in blocks of
    ``q_chunk``, default ``chunk``): the same result without the L x L scores."""
    for name, n in (("chunk", chunk), ("q_chunk", q_chunk)):
        if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"chunked_attention: {name} must be a positive number of rows, "
                             f"got {n!r}")
    q, k, v = _nd(q, device), _nd(k, device), _nd(v, device)
    (lq, d), (lk, dv) = q.shape, v.shape
    qc = q_chunk or chunk
    scale = 1.0 / math.sqrt(d)
    out = nd.empty((lq, dv), dtype=v.dtype, device=q.device)
    for qa in range(0, lq, qc):
        qb = min(lq, qa + qc)
        qi = q[qa:qb].compact()
        rows = qb - qa
        m = nd.full((rows, 1), -np.inf, dtype=q.dtype, device=q.device)
        ssum = nd.full((rows, 1), 0.0, dtype=q.dtype, device=q.device)
        acc = nd.full((rows, dv), 0.0, dtype=v.dtype, device=q.device)
        for ka in range(0, lk, chunk):
            kb = min(lk, ka + chunk)
            s = (qi @ k[ka:kb].permute((1, 0)).compact()) * scale
            m_new = m.maximum(s.max(axis=1, keepdims=True))
            p = (s - m_new.broadcast_to(s.shape)).exp()
            corr = (m - m_new).exp()
            ssum = ssum * corr + p.sum(axis=1, keepdims=True)
            acc = acc * corr.broadcast_to(acc.shape) + p @ v[ka:kb].compact()
            m = m_new
            del s, p, corr, m_new
        out[qa:qb] = acc / ssum.broadcast_to(acc.shape)
    return out


def attention_memory(seq_lens=(64, 128, 256, 512), chunk: int = 64, dim: int = 32,
                     device=None, seed: int = 0) -> list[dict]:
    """Measured peak bytes of :func:`attention` and :func:`chunked_attention` per sequence
    length, and ``out_bytes`` (the output itself, which both must hold), for a plot."""
    from .accounting import peak_bytes

    device = device or nd.cpu_numpy()
    rng = np.random.default_rng(seed)
    rows = []
    for n in seq_lens:
        q, k, v = (nd.array(rng.standard_normal((n, dim)).astype("float32"), device=device)
                   for _ in range(3))
        rows.append({"seq": n, "full": peak_bytes(attention, q, k, v),
                     "chunked": peak_bytes(chunked_attention, q, k, v, chunk),
                     "out_bytes": n * dim * 4})
    return rows


def cross_entropy_memory(rows_list=(256, 512, 1024, 2048), chunk: int = 128, dim: int = 32,
                         vocab: int = 512, device=None, seed: int = 0) -> list[dict]:
    """Measured peak bytes of the full and the chunked cross-entropy per number of rows."""
    from .accounting import peak_bytes

    device = device or nd.cpu_numpy()
    rng = np.random.default_rng(seed)
    w = nd.array(rng.standard_normal((dim, vocab)).astype("float32") * 0.1, device=device)
    out = []
    for n in rows_list:
        h = nd.array(rng.standard_normal((n, dim)).astype("float32"), device=device)
        y = rng.integers(0, vocab, n)
        out.append({"rows": n, "full": peak_bytes(softmax_cross_entropy, h, w, y),
                    "chunked": peak_bytes(chunked_softmax_cross_entropy, h, w, y, chunk)})
    return out
