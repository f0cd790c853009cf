#!/usr/bin/env python3
"""Why the Rust batch generator reads a step's tokens before dispatching the
next one: Python mlx-vlm 0.7.6's `BatchKVCache` written one decode token at a
time, 16 rows x 8 KV heads x 2000 cached tokens x 128 (bf16, one layer), in
the two orders a pipelined decode loop can take.

- "dispatch first" (Python's `GenerationBatch._step`): build step n+1,
  `mx.async_eval` it, then wait for step n. Step n's graph still holds the
  cache's previous buffer when step n+1 is dispatched, so MLX cannot write
  the `slice_update` in place and copies the whole cache.
- "read first" (`mlx_vlm::batch`'s `step_rows`): build step n+1, wait for
  step n, then `mx.async_eval` step n+1: the previous buffer has no other
  holder and the update is written in place.

Usage: python kv_write_order.py   (Python with mlx and mlx-vlm 0.7.6)
"""

import time

import mlx.core as mx
from mlx_vlm.models.cache import BatchKVCache

ROWS, HEADS, CACHED, DIM, STEPS = 16, 8, 2000, 128, 100


def run(order):
    cache = BatchKVCache([0] * ROWS)
    prompt = mx.ones((ROWS, HEADS, CACHED, DIM), dtype=mx.bfloat16)
    cache.update_and_fetch(prompt, prompt)
    mx.eval(cache.keys, cache.values)
    token = mx.ones((ROWS, HEADS, 1, DIM), dtype=mx.bfloat16)
    pending = None
    tic = time.perf_counter()
    for _ in range(STEPS):
        keys, _ = cache.update_and_fetch(token, token)
        out = keys[..., -1:, :].sum()
        if order == "dispatch first":
            mx.async_eval(out)
            if pending is not None:
                mx.eval(pending)
        else:
            if pending is not None:
                mx.eval(pending)
            mx.async_eval(out)
        pending = out
    mx.eval(pending)
    return (time.perf_counter() - tic) * 1000 / STEPS


for order in ["dispatch first", "read first", "dispatch first", "read first"]:
    print(f"{order}: {run(order):.2f} ms a step")
