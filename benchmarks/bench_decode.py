"""The tiny GPT's decoding with and without the KV cache, compiled against compiled.

    mlc bench decode                # the sort task's model (8 digits: context 17), untrained
    mlc bench decode --length 5     # sorting 5 digits: context 11
    mlc bench decode --train        # train first and report the task's exact-match accuracy

Timings do not depend on the weights, so the model is untrained unless ``--train``.
Every row runs in the same process with the same pinned threads (``limit_threads``):

1. One new token at the model's full context, one thing changed at a time: without a
   cache (the full forward over every position again, ``graph.build`` of ``TinyGPT``) and
   with it (the decode step over the cache, ``compile_decoder``: its cache is state in
   the executable, written in place), each compiled for the cpu target; the eager forms
   (mlc autograd, no graph) as a second pair. The cache's speed-up per token is the ratio
   of the two compiled rows.
2. Prefill (the whole prompt in one call, every slot of the cache written at once) and
   greedy generation of the sorted half: tokens per second with the compiled decoder
   against the eager model without a cache.
3. The cache's bytes (``2 x layers x context x d x 4``) against the weights' as the
   context grows.
"""

from __future__ import annotations

import argparse

import numpy as np

import mlc
from mlc import graph
from mlc.models import gpt as G
from mlc.models import tiny_gpt, train_tiny_gpt
from mlc.perf import print_table, stopwatch, timeit
from mlc.perf.threads import limit_threads


def _eager(model):
    def run(ids):
        with mlc.no_grad():
            return model(mlc.Tensor(ids, dtype="int64", requires_grad=False)).numpy()
    return run


def per_token(model, dec, repeat: int) -> list:
    """Rows ``[kind, us per token]`` at the full context, and the compiled ratio."""
    c = model.context
    ids = np.zeros((1, c), "int64")
    full = graph.build(graph.trace(model, ids))
    ref = G.KVCache(model, 1)
    tok = ids[:, :1]
    full(ids)                                    # compile outside the clock
    dec.decode(tok, c - 1)
    rows = [[kind, timeit(f, repeat=repeat) * 1e6] for kind, f in (
        ("eager, no cache (full forward)", lambda: _eager(model)(ids)),
        ("eager, KV cache (one step)", lambda: ref.decode(tok, c - 1)),
        ("compiled, no cache (full forward)", lambda: full(ids)),
        ("compiled, KV cache (decode step)", lambda: dec.decode(tok, c - 1)))]
    print(f"\none new token at the full context ({c} positions), batch 1: "
          f"{full.kernels} kernels without the cache, {dec.step.kernels} with it")
    print_table(rows, ["decode", "us per token"])
    print(f"the cache's speed-up per token: compiled {rows[2][1] / rows[3][1]:.1f}x, "
          f"eager {rows[0][1] / rows[1][1]:.1f}x")
    return rows


def generation(model, dec, repeat: int) -> None:
    L = model.length
    prompt = G.sort_task(1, L, seed=7)[0][:, :L + 1]
    model.generate(prompt, L, step=dec)          # compile the prefill outside the clock
    same = np.array_equal(model.generate(prompt, L, step=dec),
                          model.generate(prompt, L, kv_cache=False))
    t_pre = timeit(lambda: dec.prefill(prompt), repeat=repeat)
    t_dec = timeit(lambda: dec.decode(prompt[:, :1], L + 1), repeat=repeat)
    gen = [[kind, timeit(f, repeat=repeat, number=1)] for kind, f in (
        ("eager, no cache", lambda: model.generate(prompt, L, kv_cache=False)),
        ("compiled, KV cache", lambda: model.generate(prompt, L, step=dec)))]
    print(f"\nprefill of {L + 1} tokens {t_pre * 1e6:.0f} us (one call), decode "
          f"{t_dec * 1e6:.0f} us per token; greedy generation of {L} tokens "
          f"(same tokens with and without the cache: {same})")
    print_table([[k, t * 1e3, L / t] for k, t in gen], ["generate", "ms", "tokens/s"])


def cache_bytes(model) -> None:
    wbytes = sum(p.numpy().nbytes for p in model.parameters())
    per_slot = 2 * len(model.blocks) * model.d * 4
    rows = [[t, per_slot * t, wbytes, per_slot * t / wbytes]
            for t in (model.context, 64, 256, 1024, 4096)]
    print(f"\nthe KV cache ({per_slot} B per position) against the weights ({wbytes} B): "
          f"the cache is the larger past {wbytes // per_slot + 1} positions")
    print_table(rows, ["context", "cache B", "weight B", "cache / weights"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench decode",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=None, help="digits to sort (context "
                        "2 * length + 1; default: tiny_gpt's)")
    parser.add_argument("--train", action="store_true", help="train first (report accuracy)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per case")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    with stopwatch() as sw:
        model, _ = tiny_gpt() if args.length is None else tiny_gpt(length=args.length)
        if args.train:
            acc = train_tiny_gpt(model)
            print(f"sorting {model.length} digits: exact-match accuracy {acc:.1%} on 200 "
                  f"unseen problems")
        dec = G.compile_decoder(model, batch=1)
        with limit_threads(args.threads):
            per_token(model, dec, args.repeat)
            generation(model, dec, args.repeat)
        cache_bytes(model)
    print(f"\n({args.threads} threads; {sw.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
