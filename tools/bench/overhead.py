"""Binding overhead per small op in Python MLX, the twin of
`mlx-vlm-bench overhead`: `n` scalar adds built in batches of `batch` and
evaluated once per batch, then `n` adds each evaluated on its own.
Prints one JSON line with microseconds per op.

    python tools/bench/overhead.py --n 10000 --batch 100
"""

import argparse
import json
import time

import mlx.core as mx


def check_sum(x, expected):
    got = x.item()
    if got != float(expected):
        raise SystemExit(f"overhead loop computed {got}, expected {expected}")


def batched_adds(n, batch):
    batch = max(batch, 1)
    rounds = n // batch
    x = mx.array(0.0)
    mx.eval(x)
    tic = time.perf_counter()
    for _ in range(rounds):
        for _ in range(batch):
            x = mx.add(x, 1.0)
        mx.eval(x)
    us = (time.perf_counter() - tic) * 1e6 / max(rounds * batch, 1)
    check_sum(x, rounds * batch)
    return us


def eval_each_adds(n):
    x = mx.array(0.0)
    mx.eval(x)
    tic = time.perf_counter()
    for _ in range(n):
        x = mx.add(x, 1.0)
        mx.eval(x)
    us = (time.perf_counter() - tic) * 1e6 / max(n, 1)
    check_sum(x, n)
    return us


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    # One untimed warm-up batch each, as the Rust side does.
    batched_adds(args.batch, args.batch)
    eval_each_adds(args.batch)
    print(
        json.dumps(
            {
                "n": args.n,
                "batch": args.batch,
                "batched_us": batched_adds(args.n, args.batch),
                "eval_each_us": eval_each_adds(args.n),
            }
        )
    )


if __name__ == "__main__":
    main()
