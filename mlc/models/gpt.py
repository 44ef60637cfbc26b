"""A tiny GPT: a decoder-only transformer that learns to sort a string of digits, and its
decode step with a key/value cache.

Full-sequence forward (prefill)::

    ids (B, T) -> token embedding + position embedding -> 2 causal blocks -> LayerNorm
               -> Linear(d, vocab): logits (B, T, vocab)

Decoding one token at a time recomputes every earlier key and value unless they are kept:
:class:`DecodeStep` is the step with a cache. It takes the new token, its position, each
layer's cached keys and values ``(B, heads, context, d_head)`` and an additive mask
(``-inf`` on the slots not yet written), attends over ``[cache, new]`` and returns the
logits plus the new token's keys and values, which the caller writes into the cache in
place (``cache[:, :, pos] = k``): every cached key is read once per step and never
recomputed. The same module runs eagerly and compiled (``graph.build``), one graph for
every position, because the cache has a fixed size and the mask says which slots count.
"""

from __future__ import annotations

import math

import numpy as np

from .. import nn, ops
from ..autograd import Tensor, no_grad
from .vit import EncoderBlock

SEP = 10          # the separator token after the digits to sort
DIGITS = 10


def sort_task(n: int, length: int = 5, seed: int = 0):
    """``n`` sequences ``d1..dL SEP sorted(d)``: ids ``(n, 2L)`` in, next tokens out.
    The loss counts only the sorted half (positions L..2L-1 predict the sorted digits)."""
    rng = np.random.default_rng(seed)
    d = rng.integers(0, DIGITS, size=(n, length))
    seq = np.concatenate([d, np.full((n, 1), SEP), np.sort(d, axis=1)], axis=1)
    return seq[:, :-1].astype("int64"), seq[:, 1:].astype("int64")


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 11, context: int = 11, d: int = 32, heads: int = 4,
                 blocks: int = 2):
        super().__init__()
        self.vocab, self.context, self.d, self.heads = vocab, context, d, heads
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.Sequential(*[EncoderBlock(d, heads, causal=True, mlp_ratio=4)
                                      for _ in range(blocks)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        b, t = ids.shape
        if t > self.context:
            raise ValueError(f"TinyGPT: {t} tokens do not fit the context of {self.context}")
        pos = ops.slice_(self.pos.weight, (0, 0), (t, self.d))
        h = self.tok(ids) + ops.broadcast_to(ops.reshape(pos, (1, t, self.d)), (b, t, self.d))
        return self.head(self.norm(self.blocks(h)))

    def check_ids(self, ids, n: int = 0) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or ids.shape[1] == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"generate: prompt_ids must be a non-empty (batch, time) array of "
                             f"integer ids, got shape {ids.shape} dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= self.vocab)
        if bad.any():
            raise ValueError(f"generate: id {int(ids[bad][0])} is outside the vocabulary "
                             f"[0, {self.vocab})")
        if ids.shape[1] + n - 1 > self.context:
            raise ValueError(f"generate: a prompt of {ids.shape[1]} tokens plus {n} new ones "
                             f"needs {ids.shape[1] + n - 1} positions; the context is "
                             f"{self.context}")
        return ids.astype("int64")

    def generate(self, prompt_ids, n: int, kv_cache: bool = True, step=None) -> np.ndarray:
        """Greedy decoding: ``n`` new ids after ``prompt_ids`` ((batch, time) or (time,)).
        ``kv_cache=False`` runs the whole sequence again for every token; ``True`` runs the
        prompt once (prefill) and then :class:`DecodeStep` per token (``step``: a compiled
        one, ``mlc.models.compile_decoder``'s, or None for eager)."""
        ids = self.check_ids(prompt_ids, n)
        was = self.training
        self.eval()
        try:
            with no_grad():
                if not kv_cache:
                    for _ in range(n):
                        logits = self(Tensor(ids, dtype="int64", requires_grad=False)).numpy()
                        ids = np.concatenate([ids, logits[:, -1:].argmax(-1)], axis=1)
                    out = ids
                else:
                    out = KVCache(self, ids.shape[0], step).generate(ids, n)
        finally:
            self.train(was)
        return out[:, -n:] if n else out[:, :0]


class DecodeStep(nn.Module):
    """One token through :class:`TinyGPT` with cached keys and values (see the module
    docstring). Inputs: ``ids (B, 1)``, ``pos (B, 1)``, ``mask (B, 1, 1, context)``, then
    ``k_0, v_0, k_1, v_1, ...`` each ``(B, heads, context, d_head)``. Outputs: logits
    ``(B, vocab)`` then the new ``k_l, v_l`` each ``(B, heads, 1, d_head)``."""

    def __init__(self, gpt: TinyGPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, ids, pos, mask, *cache):
        g = self.gpt
        b, dh = ids.shape[0], g.d // g.heads
        h = g.tok(ids) + g.pos(pos)                                   # (B, 1, d)
        new = []
        for layer, blk in enumerate(g.blocks):
            a = blk.attn
            x = blk.ln1(h)
            q, k, v = (ops.permute(ops.reshape(f(x), (b, 1, g.heads, dh)), (0, 2, 1, 3))
                       for f in (a.q, a.k, a.v))                     # (B, H, 1, dh)
            kc, vc = cache[2 * layer], cache[2 * layer + 1]
            scale = 1.0 / math.sqrt(dh)
            s_old = ops.mul_scalar(q @ ops.transpose(kc), scale)
            s_old = s_old + ops.broadcast_to(mask, s_old.shape)        # (B, H, 1, context)
            s_new = ops.mul_scalar(q @ ops.transpose(k), scale)      # (B, H, 1, 1)
            p = ops.softmax(ops.concat([s_old, s_new], axis=3), axis=-1)
            att = p @ ops.concat([vc, v], axis=2)                   # (B, H, 1, dh)
            h = h + a.out(ops.reshape(ops.permute(att, (0, 2, 1, 3)), (b, 1, g.d)))
            h = h + blk.mlp(blk.ln2(h))
            new += [k, v]
        logits = g.head(g.norm(h))
        return (ops.reshape(logits, (b, g.vocab)), *new)


class KVCache:
    """The cache of one generation: ``2 x layers`` arrays ``(B, heads, context, d_head)``
    written in place, one slot per step, and the mask of written slots."""

    def __init__(self, gpt: TinyGPT, batch: int, step=None):
        self.gpt, self.step = gpt, step
        dh = gpt.d // gpt.heads
        self.k = [np.zeros((batch, gpt.heads, gpt.context, dh), "float32")
                  for _ in gpt.blocks]
        self.v = [np.zeros_like(c) for c in self.k]
        self.mask = np.full((batch, 1, 1, gpt.context), -np.inf, "float32")
        self.eager = DecodeStep(gpt)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.k + self.v)

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """Fill the cache from the prompt, one step per token; the last token's logits.
        (A prefill graph that writes all T slots at once is the full forward pass; here
        the cache's slots are written by the same step that decoding uses.)"""
        logits = None
        for t in range(ids.shape[1]):
            logits = self.decode(ids[:, t:t + 1], t)
        return logits

    def decode(self, ids: np.ndarray, t: int) -> np.ndarray:
        """Run the step for the token at position ``t``; write its keys and values."""
        b = ids.shape[0]
        pos = np.full((b, 1), t, "int64")
        args = [ids.astype("int64"), pos, self.mask]
        for k, v in zip(self.k, self.v, strict=True):
            args += [k, v]
        if self.step is not None:
            outs = self.step(*args)
        else:
            outs = [o.numpy() for o in self.eager(*[Tensor(a, dtype=str(a.dtype),
                                                           requires_grad=False)
                                                    for a in args])]
        for layer in range(len(self.k)):
            self.k[layer][:, :, t] = outs[1 + 2 * layer][:, :, 0]
            self.v[layer][:, :, t] = outs[2 + 2 * layer][:, :, 0]
        self.mask[..., t] = 0.0
        return outs[0]

    def generate(self, ids: np.ndarray, n: int) -> np.ndarray:
        if n == 0:
            return ids
        logits = self.prefill(ids)
        for _ in range(n):
            nxt = logits.argmax(-1)[:, None].astype("int64")
            ids = np.concatenate([ids, nxt], axis=1)
            if ids.shape[1] - 1 < self.gpt.context and _ < n - 1:
                logits = self.decode(nxt, ids.shape[1] - 1)
        return ids


def compile_decoder(gpt: TinyGPT, batch: int = 1, target: str = "cpu"):
    """:class:`DecodeStep` traced and built (``graph.build``): one Executable for every
    position."""
    from .. import graph

    step = DecodeStep(gpt)
    step.eval()
    cache = KVCache(gpt, batch)
    ex = [np.zeros((batch, 1), "int64"), np.zeros((batch, 1), "int64"), cache.mask]
    for k, v in zip(cache.k, cache.v, strict=True):
        ex += [k, v]
    return graph.build(graph.trace(step, *ex), target=target)


def tiny_gpt(batch: int = 1, seed: int = 0, length: int = 5, d: int = 32, heads: int = 4):
    """An untrained :class:`TinyGPT` (eval mode) for the sort task with digit strings of
    ``length``, and ``batch`` task inputs as the example."""
    np.random.seed(seed)
    model = TinyGPT(vocab=DIGITS + 1, context=2 * length + 1, d=d, heads=heads)
    model.length = length
    model.eval()
    return model, sort_task(batch, length, seed=seed + 1)[0]


def _loss(logits, targets, weights):
    """Cross-entropy per position weighted by ``weights`` (0 on positions not scored)."""
    b, t, v = logits.shape
    onehot = np.eye(v, dtype="float32")[targets]
    lse = ops.logsumexp(logits, axes=(2,))
    picked = ops.summation(logits * Tensor(onehot, requires_grad=False), axes=(2,))
    w = Tensor(weights, requires_grad=False)
    return ops.summation((lse - picked) * w) / float(weights.sum())


def exact_match(model: TinyGPT, n: int = 200, seed: int = 12345) -> float:
    """Fraction of fresh sort problems whose generated answer is entirely right."""
    L = model.length
    ids, tgt = sort_task(n, L, seed=seed)
    out = model.generate(ids[:, :L + 1], L, kv_cache=True)
    return float((out == tgt[:, L:]).all(axis=1).mean())


def train_tiny_gpt(model: TinyGPT, steps: int = 600, batch: int = 64, lr: float = 3e-3,
                   seed: int = 0) -> float:
    """Train on fresh sort problems (Adam, next-token loss on the sorted half); return the
    exact-match accuracy of greedy generation on 200 unseen problems."""
    from .. import optim

    L = model.length
    weights = np.zeros((batch, 2 * L), "float32")
    weights[:, L:] = 1.0
    opt = optim.Adam(model.parameters(), lr=lr)
    model.train()
    for i in range(steps):
        ids, tgt = sort_task(batch, L, seed=seed * 100003 + i)
        opt.reset_grad()
        loss = _loss(model(Tensor(ids, dtype="int64", requires_grad=False)), tgt, weights)
        loss.backward()
        opt.step()
    opt.reset_grad()
    model.eval()
    return exact_match(model)
