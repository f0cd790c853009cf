"""Servers of several builds and Python's, started side by side on one
checkpoint and measured in alternating rounds at one concurrency level, so
that machine drift hits every side alike; prints each round and the
medians, with each side's ratio to Python's median.

    python3 tools/bench/serve_ab.py --model CK --python PY \
        --rust before=/path/mlx-vlm-a --rust after=/path/mlx-vlm-b \
        [--clients 16] [--requests-per-client 4] [--rounds 5] [--max-tokens 32]

The servers and the requests are those of serve_bench.py (greedy streamed
chat completions with their own prompts, `--max-num-seqs 16`).
"""

import argparse
import os
import statistics
import subprocess

import serve_bench as sb


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--python", help="Python with mlx-vlm 0.7.6 (omit: Rust builds only)")
    p.add_argument("--rust", action="append", required=True, metavar="NAME=EXE",
                   help="a build's name and mlx-vlm binary; repeat for each build")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests-per-client", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--startup-timeout", type=float, default=300)
    args = p.parse_args()

    sides = [tuple(r.split("=", 1)) for r in args.rust]
    if args.python:
        sides.append(("python", args.python))
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLX_VLM_MAX_NUM_SEQS="16")
    servers = {}
    try:
        for name, exe in sides:
            port = sb.free_port()
            if name == "python":
                cmd = [exe, "-m", "mlx_vlm.server"]
            else:
                cmd = [exe, "serve", "--max-num-seqs", "16"]
            cmd += ["--model", args.model, "--host", "127.0.0.1", "--port", str(port)]
            log = open(f"/tmp/serve_ab_{name}.log", "w")
            servers[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), port)
        for name, (proc, port) in servers.items():
            sb.wait_healthy(port, proc, args.startup_timeout)
            warm = sb.one_request(port, args.model, "Hello.", args.max_tokens)
            if warm[2] is not None:
                raise RuntimeError(f"[{name}] warm-up request failed: {warm[2]}")
        tps = {name: [] for name in servers}
        ttft = {name: [] for name in servers}
        for r in range(args.rounds):
            for name, (proc, port) in servers.items():
                level = sb.run_level(port, args.model, args.clients,
                                     args.requests_per_client, args.max_tokens)
                if level["errors"]:
                    raise RuntimeError(f"[{name}] errors: {level['errors'][:3]}")
                tps[name].append(level["tokens_per_s"])
                ttft[name].append(level["ttft_p50_s"])
            print(f"round {r}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in tps.items()), flush=True)
    finally:
        for proc, _ in servers.values():
            sb.stop_server(proc)
    python = statistics.median(tps["python"]) if "python" in tps else None
    for name, values in tps.items():
        median = statistics.median(values)
        ratio = f", ratio {median / python:.2f}" if python else ""
        print(f"{name}: median {median:.1f} tokens/s{ratio}, "
              f"TTFT p50 median {statistics.median(ttft[name]):.3f} s")


if __name__ == "__main__":
    main()
