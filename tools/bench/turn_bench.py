#!/usr/bin/env python3
"""Second-turn benchmark: time to first token of a conversation's follow-up
turn against its first, on `mlx-vlm serve` (Rust, with its kept
conversations and with `--prompt-cache-size 0`) and on `python -m
mlx_vlm.server` (Python mlx-vlm 0.7.6, as it starts by default, and with
`APC_ENABLED=1`, its automatic prefix cache).

For each side: start the server, send one untimed warm-up request, then run
`--conversations` conversations one after another. Each has a first turn (a
system prompt of its own, an image as a data URL and a question) and a
second turn (the first, its answer, and a new question); both stream, and
each turn's TTFT is the time from sending it to its first content chunk.
Reports the medians of both turns, their ratio, and the `cached_tokens` the
second turns reported (`usage.prompt_tokens_details`).

Only the standard library (and serve_bench.py beside it).

Usage:
    turn_bench.py --model DIR --image PNG --rust-exe target/release/mlx-vlm \
        --python /path/to/venv/bin/python [--conversations 5] [--max-tokens 16]
"""

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_bench import (  # noqa: E402
    fmt,
    free_port,
    ratio,
    stop_server,
    stream_chat,
    wait_healthy,
)


def turn(port, model, messages, max_tokens):
    """One streamed turn: (ttft_s, answer text, usage or None)."""
    ttft, text, usage = stream_chat(port, model, messages, max_tokens)
    return ttft, "".join(text), usage


def bench_side(name, command, env_extra, args, image_url):
    port = free_port()
    command = command + ["--port", str(port)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", **env_extra)
    print(f"[{name}] {' '.join(command)} {env_extra or ''}", file=sys.stderr)
    log = open(f"{args.log_prefix}{name}.log", "w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(port, proc, args.startup_timeout)
        turn(port, args.model, [{"role": "user", "content": "Hello."}], 4)
        firsts, seconds, cached = [], [], []
        for c in range(args.conversations):
            messages = [
                {"role": "system", "content": f"Conversation {c}. Answer briefly."},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": "What is in this picture? Describe it."},
                ]},
            ]
            t1, answer, _ = turn(port, args.model, messages, args.max_tokens)
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "Which colours does it have?"},
            ]
            t2, _, usage = turn(port, args.model, messages, args.max_tokens)
            details = (usage or {}).get("prompt_tokens_details") or {}
            firsts.append(t1)
            seconds.append(t2)
            cached.append(details.get("cached_tokens"))
            print(f"[{name}] conversation {c}: first {t1:.3f} s, second {t2:.3f} s, "
                  f"cached {cached[-1]}", file=sys.stderr)
        return {
            "first_ttft_s": statistics.median(firsts),
            "second_ttft_s": statistics.median(seconds),
            "cached_tokens": cached,
        }
    finally:
        stop_server(proc)
        log.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True, help="a PNG sent as a data URL")
    p.add_argument("--rust-exe", required=True, help="the mlx-vlm binary (release)")
    p.add_argument("--python", required=True, help="Python with mlx-vlm 0.7.6")
    p.add_argument("--conversations", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--startup-timeout", type=float, default=300)
    p.add_argument("--log-prefix", default="/tmp/turn_bench_")
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args()
    with open(args.image, "rb") as f:
        image_url = "data:image/png;base64," + base64.b64encode(f.read()).decode()

    rust = [args.rust_exe, "serve", "--model", args.model, "--host", "127.0.0.1"]
    python = [args.python, "-m", "mlx_vlm.server", "--model", args.model, "--host", "127.0.0.1"]
    sides = [
        ("rust", rust, {}),
        ("rust-no-cache", rust + ["--prompt-cache-size", "0"], {}),
        ("python", python, {}),
        ("python-apc", python, {"APC_ENABLED": "1"}),
    ]
    out = {name: bench_side(name, cmd, env, args, image_url) for name, cmd, env in sides}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print(f"model `{args.model}`, image `{os.path.basename(args.image)}`, "
          f"{args.conversations} conversations, {args.max_tokens} tokens a turn\n")
    print("| server | first turn TTFT (s) | second turn TTFT (s) | second / first "
          "| second turn cached_tokens |")
    print("|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {fmt(r['first_ttft_s'])} | {fmt(r['second_ttft_s'])} "
              f"| {fmt(ratio(r['second_ttft_s'], r['first_ttft_s']), 2)} "
              f"| {r['cached_tokens']} |")


if __name__ == "__main__":
    main()
