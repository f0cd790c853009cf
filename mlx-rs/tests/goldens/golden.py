"""Shared writer of golden files for mlx-rs's tests.

Each gen_<family>.py script builds inputs with fixed random keys, runs the
Python reference (mlx 0.32.2, see requirements.txt) and saves inputs and
outputs into <family>.safetensors beside it:

    python3 -m venv .venv && .venv/bin/pip install -r mlx-rs/tests/goldens/requirements.txt
    .venv/bin/python mlx-rs/tests/goldens/gen_<family>.py

Rust tests load the file with tests/common/mod.rs and compare whole tensors.
safetensors has no complex dtype: a complex64 array `x` is stored as
`x.real` and `x.imag` (float32), which the Rust loader joins again. MLX does
not write float64 to safetensors: such an array is stored as its bits
(`x.float64_bits`, uint64).
"""

import pathlib

import mlx.core as mx

HERE = pathlib.Path(__file__).resolve().parent


class Goldens:
    """Collects named arrays and writes them to <family>.safetensors."""

    def __init__(self, family: str):
        self.family = family
        self.arrays: dict[str, mx.array] = {}

    def add(self, name: str, value) -> mx.array:
        """Records `value` (an array or a Python scalar) under `name`; returns it."""
        if any(k in self.arrays for k in (name, f"{name}.real", f"{name}.float64_bits")):
            raise ValueError(f"duplicate golden {name!r}")
        value = value if isinstance(value, mx.array) else mx.array(value)
        mx.eval(value)
        if value.dtype == mx.complex64:
            self.arrays[f"{name}.real"] = mx.real(value)
            self.arrays[f"{name}.imag"] = mx.imag(value)
        elif value.dtype == mx.float64:
            self.arrays[f"{name}.float64_bits"] = mx.view(value, mx.uint64)
        else:
            self.arrays[name] = value
        return value

    def save(self) -> None:
        path = HERE / f"{self.family}.safetensors"
        mx.save_safetensors(str(path), self.arrays, metadata={"mlx": mx.__version__})
        print(f"wrote {len(self.arrays)} arrays to {path}")
