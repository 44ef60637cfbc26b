"""A tiny GPT: a decoder-only transformer that learns to sort a string of digits, and its
decode step with a key/value cache.

The full forward::

    ids (B, T) -> token embedding + position embedding -> 2 causal blocks -> LayerNorm
               -> Linear(d, vocab): logits (B, T, vocab)

Generating token by token with it runs the whole prefix again for every new token, and
recomputes every earlier key and value. A KV cache keeps them: :class:`DecodeStep` runs
``T`` new tokens from position ``start``, writes their keys and values into each layer's
cache (``cache_write``, :mod:`mlc.graph.ops.state`) and attends over the cache's slots up
to each token's position. Over the whole prompt (``start = 0``) it is the **prefill**:
the full forward, every prompt slot of the cache written at once. Over one token it is the
**decode step**: one query, one key, one value computed, every cached key read once.

Compiled (:class:`Decoder`, ``compile_decoder``), the two are two graphs sharing one
cache, which the decode executable owns as *state*: buffers allocated once, written in
place by ``cache_write``, neither passed in nor copied out per token. One graph serves every
position, because the cache has a fixed size and the position says which slots count.
"""

from __future__ import annotations

import math

import numpy as np

from .. import nn, ops
from ..autograd import Tensor, no_grad
from ..graph.ops.state import cache_write
from .vit import EncoderBlock

SEP = 10          # the separator token after the digits to sort
DIGITS = 10


def sort_task(n: int, length: int = 8, seed: int = 0):
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
        prompt once (prefill: every prompt slot of the cache written at once) and then
        :class:`DecodeStep` per token (``step``: a compiled :class:`Decoder`,
        ``compile_decoder``'s, or None for the eager :class:`KVCache`)."""
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
                    cache = KVCache(self, ids.shape[0]) if step is None else step
                    if cache.batch != ids.shape[0]:
                        raise ValueError(f"generate: the compiled decoder is built for "
                                         f"batch {cache.batch}, the prompt has "
                                         f"{ids.shape[0]} rows")
                    out = cache.generate(ids, n)
        finally:
            self.train(was)
        return out[:, -n:] if n else out[:, :0]


class DecodeStep(nn.Module):
    """``T`` new tokens at positions ``start .. start + T - 1`` through :class:`TinyGPT`,
    attending over the key/value cache (see the module docstring).

    Inputs: ``ids (B, T)``, ``start (B, 1)`` (int64), then each layer's caches ``k_l (B,
    heads, d_head, context)`` (stored transposed, so that ``q @ k`` reads it as it lies)
    and ``v_l (B, heads, context, d_head)``. Each layer writes its new keys and values
    into the cache (``cache_write``), then attends over all ``context`` slots with slots
    after each query's position masked out. Returns the last token's logits ``(B,
    vocab)``, and with ``return_cache`` the updated caches after them (eager use)."""

    def __init__(self, gpt: TinyGPT, return_cache: bool = False):
        super().__init__()
        self.gpt, self.return_cache = gpt, return_cache

    def forward(self, ids, start, *cache):
        g = self.gpt
        (b, t), hd, dh = ids.shape, (g.heads, g.d // g.heads), g.d // g.heads
        pos = start if t == 1 else ops.broadcast_to(start, (b, t)) + ops.broadcast_to(
            _const(np.arange(t)[None]), (b, t))
        h = g.tok(ids) + g.pos(pos)                                   # (B, T, d)
        # slot s is visible to the query at position p when s <= p: relu(s - p) is 0 there
        # and at least 1 elsewhere, so the mask adds 0 or at most -1e9 (exp gives 0)
        slots = ops.broadcast_to(_const(np.arange(g.context, dtype="float32")[None, None,
                                                                                None]),
                                 (b, 1, t, g.context))
        here = ops.broadcast_to(ops.reshape(ops.cast(pos, "float32"), (b, 1, t, 1)),
                                (b, 1, t, g.context))
        mask = ops.mul_scalar(ops.relu(slots + ops.negate(here)), -1e9)
        mask = ops.broadcast_to(mask, (b, g.heads, t, g.context))
        new = []
        for layer, blk in enumerate(g.blocks):
            a = blk.attn
            x = blk.ln1(h)
            q = _split(a.q(x), (b, t) + hd, (0, 2, 1, 3))                 # (B, H, T, dh)
            k = cache_write(cache[2 * layer], _split(a.k(x), (b, t) + hd, (0, 2, 3, 1)),
                            start, axis=3)                                  # (B, H, dh, C)
            v = cache_write(cache[2 * layer + 1], _split(a.v(x), (b, t) + hd, (0, 2, 1, 3)),
                            start, axis=2)                                  # (B, H, C, dh)
            scores = ops.mul_scalar(q @ k, 1.0 / math.sqrt(dh)) + mask
            att = ops.softmax(scores, axis=-1) @ v                          # (B, H, T, dh)
            h = h + a.out(_split(att, (b, t, g.d), (0, 2, 1, 3), merge=True))
            h = h + blk.mlp(blk.ln2(h))
            new += [k, v]
        if t > 1:
            h = ops.slice_(h, (0, t - 1, 0), (b, t, g.d))
        logits = ops.reshape(g.head(g.norm(h)), (b, g.vocab))
        return (logits, *new) if self.return_cache else logits


def _const(a):
    """A constant made in ``forward``, on the tape (``requires_grad``) so that what is
    computed from it is traced as ops: a detached broadcast would become a constant the
    size of one batch."""
    return Tensor(a, dtype=str(a.dtype), requires_grad=True)


def _value(a):
    return Tensor(a, dtype=str(a.dtype), requires_grad=False)


def _split(x, shape, axes, merge: bool = False):
    """``x`` reshaped to ``shape`` and permuted by ``axes`` (heads split off), or with
    ``merge`` permuted back first and then reshaped. With one token the permutation moves
    only axes of length 1, so it is a reshape: no kernel, no copy."""
    if merge:
        if x.shape[2] == 1:
            return ops.reshape(x, shape)
        return ops.reshape(ops.permute(x, axes), shape)
    if shape[1] == 1:
        return ops.reshape(x, tuple(shape[i] for i in axes))
    return ops.permute(ops.reshape(x, shape), axes)


class _Cache:
    """Greedy generation over a cache: ``prefill`` the prompt, then ``decode`` one token at
    a time (what :class:`KVCache` and :class:`Decoder` share)."""

    def __init__(self, gpt: TinyGPT, batch: int):
        self.gpt, self.batch = gpt, batch
        dh = gpt.d // gpt.heads
        self.shapes = [(batch, gpt.heads, dh, gpt.context), (batch, gpt.heads, gpt.context, dh)]
        self.names = [f"{kv}_{layer}" for layer in range(len(gpt.blocks)) for kv in "kv"]

    def _start(self, t: int) -> np.ndarray:
        return np.full((self.batch, 1), t, "int64")

    @property
    def nbytes(self) -> int:
        """The cache's bytes: ``2 x layers x batch x context x d x 4``."""
        return sum(c.nbytes for c in self.arrays())

    def generate(self, ids: np.ndarray, n: int) -> np.ndarray:
        """``ids`` followed by ``n`` greedy tokens (positions checked by the caller)."""
        if n == 0:
            return ids
        logits, out = self.prefill(ids), [ids]
        for i in range(n):
            out.append(logits.argmax(-1)[:, None].astype("int64"))
            if i < n - 1:
                logits = self.decode(out[-1], ids.shape[1] + i)
        return np.concatenate(out, axis=1)


class KVCache(_Cache):
    """The eager cache: ``2 x layers`` numpy arrays (``k`` transposed, see
    :class:`DecodeStep`), replaced by the step's updated caches after each call. The
    reference for :class:`Decoder`, whose compiled executables keep them as state."""

    def __init__(self, gpt: TinyGPT, batch: int):
        super().__init__(gpt, batch)
        self.k = [np.zeros(self.shapes[0], "float32") for _ in gpt.blocks]
        self.v = [np.zeros(self.shapes[1], "float32") for _ in gpt.blocks]
        self.eager = DecodeStep(gpt, return_cache=True)

    def arrays(self) -> list:
        return [c for kv in zip(self.k, self.v, strict=True) for c in kv]

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        """The whole prompt in one step: every slot ``0..T-1`` written at once; the last
        token's logits."""
        return self.decode(ids, 0)

    def decode(self, ids: np.ndarray, t: int) -> np.ndarray:
        """Run the step for the tokens from position ``t``; keep the caches it returns."""
        args = [ids.astype("int64"), self._start(t)] + self.arrays()
        outs = [o.numpy() for o in self.eager(*[_value(a) for a in args])]
        self.k, self.v = outs[1::2], outs[2::2]
        return outs[0]


class Decoder(_Cache):
    """The compiled cache: :class:`DecodeStep` built twice with ``graph.build``, once at one
    token (``step``, the decode executable) and once per prompt length (the prefill
    executables, made on first use). The decode executable owns the cache (``cache``: its
    ``state``, zeros at build, ``cache_write`` updating it in place); each prefill
    executable is built on the same buffers, so the prompt's keys and values land where
    the decode step reads them."""

    def __init__(self, gpt: TinyGPT, batch: int = 1, target: str = "cpu"):
        super().__init__(gpt, batch)
        self.target = target
        self.step = self._build(1, None)
        self.cache = self.step.state
        self._prefills: dict = {}
        self._pos = self._start(0)

    def _build(self, t: int, state):
        from .. import graph

        ex = [np.zeros((self.batch, t), "int64"), self._start(0)]
        ex += [np.zeros(s, "float32") for _ in self.gpt.blocks for s in self.shapes]
        g = graph.trace(DecodeStep(self.gpt), *ex, input_names=["ids", "start"] + self.names)
        return graph.build(g, target=self.target, state=state)

    def arrays(self) -> list:
        return [self.cache[n] for n in self.names]

    def prefill_executable(self, t: int):
        """The executable that prefills a prompt of ``t`` tokens (built once per ``t``)."""
        if t not in self._prefills:
            self._prefills[t] = self.step if t == 1 else self._build(t, self.cache)
        return self._prefills[t]

    def prefill(self, ids: np.ndarray) -> np.ndarray:
        return self.prefill_executable(ids.shape[1])(ids, self._start(0))

    def decode(self, ids: np.ndarray, t: int) -> np.ndarray:
        self._pos[...] = t
        return self.step(ids, self._pos)


def compile_decoder(gpt: TinyGPT, batch: int = 1, target: str = "cpu") -> Decoder:
    """The compiled :class:`Decoder` of ``gpt`` at ``batch``: ``gpt.generate(ids, n,
    step=compile_decoder(gpt))`` decodes with it."""
    return Decoder(gpt, batch, target)


def tiny_gpt(batch: int = 1, seed: int = 0, length: int = 8, d: int = 32, heads: int = 4):
    """An untrained :class:`TinyGPT` (eval mode) for the sort task with digit strings of
    ``length`` (context ``2 * length + 1``: 17 for the default 8 digits), and ``batch`` task
    inputs as the example."""
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
