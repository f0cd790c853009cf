#!/usr/bin/env python3
"""Vision feature cache benchmark: `mlx-vlm serve` time to first token of a
request whose image an earlier request sent (a cache hit) against one whose
image is new (a miss).

For each `--vision-cache-size` given (default 0 and 20), start the server,
send one untimed text request, then for each of `--images` generated
pictures send two streaming chat completions one after the other: the
picture with one question, then the same picture with another question (a
different text prefix too, so a prompt-prefix cache could not help). The
first request of a pair always encodes its image; the second takes the
features from the cache when there is one. Reports the median time to the
first content chunk of first and second requests per cache size.

Only the standard library; the images are PNGs of deterministic noise.

Usage:
    vision_cache_bench.py --model DIR --rust-exe target/release/mlx-vlm \
        [--size 448] [--images 3] [--cache-sizes 0,20] [--max-tokens 4]
"""

import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import zlib

from serve_bench import free_port, one_request, stop_server, wait_healthy


def noise_png(path, size, seed):
    """A `size`x`size` RGB PNG of a 32-bit LCG's bytes from `seed`."""
    state = seed * 2654435761 % (1 << 32)
    rows = []
    for _ in range(size):
        row = bytearray(b"\x00")
        for _ in range(size * 3):
            state = (1103515245 * state + 12345) % (1 << 32)
            row.append(state >> 24)
        rows.append(bytes(row))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def ttft(port, model, content, max_tokens):
    """Seconds from sending one streaming chat completion to its first
    content chunk (serve_bench's request; `content` may list parts)."""
    seconds, _, error = one_request(port, model, content, max_tokens)
    if error is not None:
        raise RuntimeError(error)
    return seconds


def bench(args, cache_size, images):
    port = free_port()
    command = [args.rust_exe, "serve", "--model", args.model, "--port", str(port),
               "--vision-cache-size", str(cache_size)] + args.rust_args
    print(f"[cache {cache_size}] {' '.join(command)}", file=sys.stderr)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        wait_healthy(port, proc, 600)
        ttft(port, args.model, "Hello.", args.max_tokens)
        first, second = [], []
        for i, image in enumerate(images):
            part = {"type": "image_url", "image_url": {"url": image}}
            a = ttft(port, args.model, [part, {"type": "text", "text": f"Describe image {i}."}],
                     args.max_tokens)
            b = ttft(port, args.model,
                     [{"type": "text", "text": f"Look again, picture {i}: what stands out?"},
                      part], args.max_tokens)
            print(f"[cache {cache_size}] image {i}: first {a:.3f} s, second {b:.3f} s",
                  file=sys.stderr)
            first.append(a)
            second.append(b)
        return statistics.median(first), statistics.median(second)
    finally:
        stop_server(proc, timeout=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--rust-exe", required=True)
    parser.add_argument("--size", type=int, default=448, help="image side in pixels")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--cache-sizes", default="0,20")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--rust-args", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for i in range(args.images):
            path = os.path.join(tmp, f"noise-{i}.png")
            noise_png(path, args.size, i + 1)
            images.append(path)
        print("| --vision-cache-size | TTFT new image | TTFT same image again | ratio |")
        print("|---:|---:|---:|---:|")
        for size in [int(s) for s in args.cache_sizes.split(",")]:
            a, b = bench(args, size, images)
            print(f"| {size} | {a:.3f} s | {b:.3f} s | {b / a:.2f} |")


if __name__ == "__main__":
    main()
