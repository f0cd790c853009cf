#!/usr/bin/env python3
"""Serving benchmark: `mlx-vlm serve` (Rust) against `python -m
mlx_vlm.server` (Python mlx-vlm 0.7.6) on the same checkpoint.

For each side, in turn: start the server on a free port of 127.0.0.1, wait
for `/health`, send one untimed warm-up request, then for each concurrency C
send `--requests-per-client` x C streaming chat completions from C client
threads at once (greedy, `max_tokens` fixed, each request its own prompt), and
stop the server. Per level it reports the aggregate generated tokens per
second (all completion tokens over the wall time of the level), the median
and 99th-percentile time to first token (request sent to the first content
chunk), and errors; per side the server's peak resident memory (`VmHWM`,
Linux only). The Rust/Python ratios come last. With `--image-size N` every
request also carries its own N x N PNG as a data URL (a different picture per
request, so no vision cache hits), which measures serving with images:
decoding, resizing and the vision tower beside the running decodes.

Only the standard library: the client threads spend their time blocked on
sockets, so one Python process drives 16 clients without becoming the
bottleneck (it uses a few percent of a core at these token rates).

Usage:
    serve_bench.py --model DIR --rust-exe target/release/mlx-vlm \
        --python /path/to/venv/bin/python [--concurrency 1,4,16] \
        [--requests-per-client 4] [--max-tokens 32] [--max-num-seqs 16] \
        [--image-size 0] [--json OUT.json]
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import base64
import struct
import zlib

PROMPTS = [
    "Describe a quiet harbour at dawn.",
    "List three uses of copper.",
    "What is a prime number?",
    "Write a line about autumn rain.",
    "Explain what a compiler does.",
    "Name a famous bridge and its city.",
    "How do bees make honey?",
    "Give two tips for learning to swim.",
]


def png_data_url(size, seed):
    """A `size` x `size` RGB gradient PNG, different for each `seed`, as a
    data URL (standard library only: zlib and struct)."""
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter: none
        for x in range(size):
            rows += bytes(((x * 7 + seed * 31) % 256, (y * 5 + seed * 17) % 256, (x + y + seed) % 256))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(bytes(rows)))
           + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before /health")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no healthy server on port {port} after {timeout} s")


def stop_server(proc, timeout=60):
    """SIGTERM (the server finishes what is in flight), then SIGKILL after
    `timeout` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def stream_chat(port, model, messages, max_tokens):
    """One greedy streaming chat completion of `messages`: (ttft_s, text,
    usage or None). Raises on an HTTP error or a broken stream."""
    body = json.dumps(
        {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    sent = time.perf_counter()
    ttft, text, usage = None, [], None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    if resp.status != 200:
        raise OSError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        event = json.loads(data)
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                text.append(content)
                if ttft is None:
                    ttft = time.perf_counter() - sent
        if event.get("usage"):
            usage = event["usage"]
    conn.close()
    if ttft is None:
        ttft = time.perf_counter() - sent
    return ttft, text, usage


def one_request(port, model, prompt, max_tokens):
    """One streaming chat completion: (ttft_s, completion_tokens, error).
    `prompt` is the user message's content (text or a list of parts)."""
    try:
        ttft, chunks, usage = stream_chat(
            port, model, [{"role": "user", "content": prompt}], max_tokens
        )
    except (OSError, ValueError) as e:
        return None, 0, repr(e)
    tokens = (usage or {}).get("completion_tokens")
    return ttft, tokens if tokens is not None else len(chunks), None


def run_level(port, model, clients, per_client, max_tokens, image_size=0):
    results = []
    lock = threading.Lock()

    def prompt_of(c, r):
        prompt = PROMPTS[(c * per_client + r) % len(PROMPTS)] + f" (request {c}.{r})"
        if not image_size:
            return prompt
        # Made before the clock starts: encoding a large PNG in Python
        # would otherwise be what the clients wait on.
        url = png_data_url(image_size, clients * 1000 + c * per_client + r)
        return [{"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": prompt}]

    prompts = {(c, r): prompt_of(c, r) for c in range(clients) for r in range(per_client)}

    def client(c):
        for r in range(per_client):
            out = one_request(port, model, prompts[(c, r)], max_tokens)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    tic = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - tic
    ok = [r for r in results if r[2] is None]
    ttfts = sorted(r[0] for r in ok)
    tokens = sum(r[1] for r in ok)

    def pct(p):
        if not ttfts:
            return None
        k = min(len(ttfts) - 1, max(0, int(round(p / 100 * (len(ttfts) - 1)))))
        return ttfts[k]

    return {
        "clients": clients,
        "requests": len(results),
        "errors": [r[2] for r in results if r[2] is not None],
        "wall_s": wall,
        "completion_tokens": tokens,
        "tokens_per_s": tokens / wall if wall > 0 else None,
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p99_s": pct(99),
    }


def bench_side(name, command, model_id, args):
    port = free_port()
    command = command + ["--port", str(port)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if args.max_num_seqs:
        # Python reads its batch bound from the environment only.
        env["MLX_VLM_MAX_NUM_SEQS"] = str(args.max_num_seqs)
    print(f"[{name}] {' '.join(command)}", file=sys.stderr)
    log = open(f"{args.log_prefix}{name}.log", "w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(port, proc, args.startup_timeout)
        warm = one_request(port, model_id, "Hello.", args.max_tokens)
        if warm[2] is not None:
            raise RuntimeError(f"[{name}] warm-up request failed: {warm[2]}")
        levels = []
        for clients in args.concurrency:
            level = run_level(port, model_id, clients, args.requests_per_client,
                              args.max_tokens, args.image_size)
            print(f"[{name}] {json.dumps(level)}", file=sys.stderr)
            levels.append(level)
        return {"levels": levels, "peak_rss_mb": peak_rss_mb(proc.pid)}
    finally:
        stop_server(proc)
        log.close()


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--rust-exe", required=True, help="the mlx-vlm binary (release)")
    p.add_argument("--python", required=True, help="Python with mlx-vlm 0.7.6")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--requests-per-client", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--startup-timeout", type=float, default=300)
    p.add_argument("--log-prefix", default="/tmp/serve_bench_")
    p.add_argument("--image-size", type=int, default=0,
                   help="give every request its own N x N image (0: text only)")
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]

    rust_cmd = [args.rust_exe, "serve", "--model", args.model, "--host", "127.0.0.1",
                "--max-num-seqs", str(args.max_num_seqs)]
    py_cmd = [args.python, "-m", "mlx_vlm.server", "--model", args.model, "--host", "127.0.0.1"]
    out = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "requests_per_client": args.requests_per_client,
        "max_num_seqs": args.max_num_seqs,
        "image_size": args.image_size,
        "rust": bench_side("rust", rust_cmd, args.model, args),
        "python": bench_side("python", py_cmd, args.model, args),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)

    print(f"model `{args.model}`, {args.max_tokens} tokens a request, "
          f"{args.requests_per_client} requests a client, max-num-seqs {args.max_num_seqs}, "
          f"image size {args.image_size or 'none'}\n")
    print("| clients | tokens/s Rust / Python | ratio | TTFT p50 Rust / Python (s) | ratio "
          "| TTFT p99 Rust / Python (s) | ratio | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r, py in zip(out["rust"]["levels"], out["python"]["levels"]):
        errors = len(r["errors"]) + len(py["errors"])
        print(
            f"| {r['clients']} | {fmt(r['tokens_per_s'], 1)} / {fmt(py['tokens_per_s'], 1)} "
            f"| **{fmt(ratio(r['tokens_per_s'], py['tokens_per_s']), 2)}** "
            f"| {fmt(r['ttft_p50_s'])} / {fmt(py['ttft_p50_s'])} "
            f"| {fmt(ratio(r['ttft_p50_s'], py['ttft_p50_s']), 2)} "
            f"| {fmt(r['ttft_p99_s'])} / {fmt(py['ttft_p99_s'])} "
            f"| {fmt(ratio(r['ttft_p99_s'], py['ttft_p99_s']), 2)} | {errors} |"
        )
    rr, pr = out["rust"]["peak_rss_mb"], out["python"]["peak_rss_mb"]
    print(f"\npeak RSS: Rust {fmt(rr, 0)} MB, Python {fmt(pr, 0)} MB, ratio {fmt(ratio(rr, pr), 2)}")


if __name__ == "__main__":
    main()
