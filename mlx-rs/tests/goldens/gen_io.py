"""Fixtures for mlx-rs's io tests: small files written by Python MLX 0.32.2.

    .venv/bin/python mlx-rs/tests/goldens/gen_io.py

writes into tests/goldens/io/:

- py.safetensors: one 2x3 array per dtype safetensors holds (every MLX dtype
  but float64), a 0-d scalar, an empty array, and string metadata;
- py_<dtype>.npy for every dtype, py_fortran.npy (a transposed array, which
  MLX stores in Fortran order) and py_scalar.npy (0-d);
- py.gguf: one 2x3 array per dtype GGUF holds, and metadata of every kind
  MLX writes (strings, string lists, 0-d and 1-d arrays).

The values are spelled out here and again in tests/io.rs (`values`), so the
Rust tests can check what they load without another golden file, and can
compare the bytes Rust writes for the same input with these files. Every
dict is built in sorted key order, which tests/io.rs relies on: MLX lays out
safetensors data and GGUF entries in the iteration order of a C++
unordered_map filled in that order.
"""

import pathlib

import mlx.core as mx

OUT = pathlib.Path(__file__).resolve().parent / "io"


def values(name: str) -> mx.array:
    """The 2x3 test array of dtype `name` (the same as `values` in tests/io.rs)."""
    if name == "uint64":
        # Python ints above 2**63 do not convert; reinterpret int64 bits.
        bits = mx.array([0, 1, 2**32, 2**53 + 1, -(2**63), -1], dtype=mx.int64)
        flat = bits.view(mx.uint64)
    else:
        flat = {
            "bool": mx.array([True, False, True, True, False, False]),
            "uint8": mx.array([0, 1, 127, 128, 254, 255], dtype=mx.uint8),
            "uint16": mx.array([0, 1, 255, 256, 65534, 65535], dtype=mx.uint16),
            "uint32": mx.array([0, 1, 65535, 65536, 2**32 - 2, 2**32 - 1], dtype=mx.uint32),
            "int8": mx.array([-128, -1, 0, 1, 126, 127], dtype=mx.int8),
            "int16": mx.array([-32768, -1, 0, 1, 32766, 32767], dtype=mx.int16),
            "int32": mx.array([-(2**31), -1, 0, 1, 2**31 - 2, 2**31 - 1], dtype=mx.int32),
            "int64": mx.array([-(2**63), -1, 0, 1, 2**53 + 1, 2**63 - 1], dtype=mx.int64),
            "float16": mx.array([-65504.0, -1.5, 0.0, 2.0**-14, 1.0, 65504.0], dtype=mx.float16),
            "bfloat16": mx.array([-(2.0**100), -1.5, 0.0, 2.0**-100, 1.0, 2.0**100], dtype=mx.bfloat16),
            "float32": mx.array([-(2.0**127), -1.5, 0.0, 2.0**-149, 1.0, 2.0**127], dtype=mx.float32),
            "float64": mx.array([-1e300, -1.5, 0.0, 5e-324, 1.0, 1e300], dtype=mx.float64),
            "complex64": mx.array([1 + 2j, -1.5 + 0.25j, 0j, 1j, -1 + 0j, 3.5 - 4j], dtype=mx.complex64),
        }[name]
    out = flat.reshape(2, 3)
    mx.eval(out)
    return out


DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32",
          "int64", "float16", "float32", "float64", "bfloat16", "complex64"]
GGUF_DTYPES = ["float16", "float32", "int8", "int16", "int32"]


def main() -> None:
    OUT.mkdir(exist_ok=True)

    arrays = {name: values(name) for name in DTYPES if name != "float64"}
    arrays["empty"] = mx.zeros((0, 3), dtype=mx.float32)
    arrays["scalar"] = mx.array(7, dtype=mx.int32)
    metadata = {"empty": "", "format": "mlx", "note": "h\u00e9llo \u2713"}
    mx.save_safetensors(str(OUT / "py.safetensors"), dict(sorted(arrays.items())),
                        metadata=dict(sorted(metadata.items())))

    for name in DTYPES:
        mx.save(str(OUT / f"py_{name}.npy"), values(name))
    mx.save(str(OUT / "py_fortran.npy"), values("float32").T)
    mx.save(str(OUT / "py_scalar.npy"), mx.array(2.5, dtype=mx.float32))

    gguf_arrays = {name: values(name) for name in GGUF_DTYPES}
    gguf_metadata = {
        "general.name": "mlx-rs test",
        "tokens": ["a", "bc", "\u00e7"],
        "scalar.bool": mx.array(True),
        "scalar.float32": mx.array(0.5, dtype=mx.float32),
        "scalar.int8": mx.array(-3, dtype=mx.int8),
        "scalar.int16": mx.array(-300, dtype=mx.int16),
        "scalar.int32": mx.array(-70000, dtype=mx.int32),
        "scalar.int64": mx.array(-(2**40), dtype=mx.int64),
        "scalar.uint8": mx.array(200, dtype=mx.uint8),
        "scalar.uint16": mx.array(60000, dtype=mx.uint16),
        "scalar.uint32": mx.array(4000000000, dtype=mx.uint32),
        "scalar.uint64": mx.array(2**40, dtype=mx.uint64),
        "list.bool": mx.array([True, False]),
        "list.float32": mx.array([1.5, -2.0], dtype=mx.float32),
        "list.int32": mx.array([1, -2, 3], dtype=mx.int32),
        "list.uint64": mx.array([2**40, 1], dtype=mx.uint64),
    }
    mx.save_gguf(str(OUT / "py.gguf"), dict(sorted(gguf_arrays.items())),
                 dict(sorted(gguf_metadata.items())))

    for path in sorted(OUT.iterdir()):
        print(f"wrote {path.name} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
