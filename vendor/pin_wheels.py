#!/usr/bin/env python3
"""Rewrite the hash-pinned pip requirement files under vendor/wheels/.

mlx-sys's build script installs MLX (and, where missing, cmake and libclang)
from PyPI with `pip install --require-hashes -r vendor/wheels/<file>`, so pip
refuses any wheel whose sha256 is not listed here. Run this script after
changing a version below; it asks the PyPI simple index (JSON form) for the
hashes of every wheel the project can use and writes one file per pin.

    python3 vendor/pin_wheels.py
"""

import json
import pathlib
import re
import urllib.request

INDEX = "https://pypi.org/simple/{}/"

# file name -> the requirements it pins; MLX pins must move together with
# mlx-c (vendor/mlx-c/Cargo.toml) and the Python reference.
PINS = {
    "mlx-cpu.txt": [("mlx-cpu", "0.32.2")],
    "mlx-metal.txt": [("mlx-metal", "0.32.2")],
    "mlx-cuda-13.txt": [
        ("mlx-cuda-13", "0.32.2"),
        ("nvidia-cublas", "13.10.0.20"),
        ("nvidia-cuda-nvrtc", "13.5.37"),
        ("nvidia-cuda-runtime", "13.5.37"),
        ("nvidia-cudnn-cu13", "9.28.1.4"),
        ("nvidia-cufft", "12.5.0.14"),
        ("nvidia-nccl-cu13", "2.32.3"),
        ("nvidia-nvjitlink", "13.5.37"),
    ],
    "cmake.txt": [("cmake", "3.31.6")],
    "libclang.txt": [("libclang", "18.1.1")],
}

# Platforms mlx-sys supports: Linux glibc on x86-64 and aarch64, macOS arm64
# (and universal2 for the cmake wheel).
PLATFORM = re.compile(r"(manylinux\w*_(x86_64|aarch64)|macosx_\d+_\d+_(arm64|universal2))\.whl$")


def wheel_hashes(name: str, version: str) -> list[tuple[str, str]]:
    request = urllib.request.Request(
        INDEX.format(name), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    stem = f"{name.replace('-', '_')}-{version}-"
    picked = [
        (f["filename"], f["hashes"]["sha256"])
        for f in files
        if f["filename"].lower().startswith(stem.lower()) and PLATFORM.search(f["filename"])
    ]
    if not picked:
        raise SystemExit(f"no usable wheel of {name}=={version} on PyPI")
    return sorted(picked)


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "wheels"
    out.mkdir(exist_ok=True)
    for file_name, requirements in PINS.items():
        lines = ["# Written by vendor/pin_wheels.py; do not edit by hand."]
        for name, version in requirements:
            hashes = wheel_hashes(name, version)
            lines.append(f"{name}=={version} \\")
            for i, (_wheel, sha) in enumerate(hashes):
                tail = " \\" if i + 1 < len(hashes) else ""
                # pip forbids a comment after a line continuation, so the
                # wheel name is not written next to its hash.
                lines.append(f"    --hash=sha256:{sha}{tail}")
        (out / file_name).write_text("\n".join(lines) + "\n")
        print(f"wrote {out / file_name}")


if __name__ == "__main__":
    main()
