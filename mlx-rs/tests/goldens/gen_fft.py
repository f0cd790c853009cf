"""Goldens for mlx.core.fft (tests/fft.rs).

Each transform runs over the cases below (names shared with the Rust test):
default sizes and axes, truncating and padding `n` / `s`, explicit axes and
the three norms.
"""

import mlx.core as mx

from golden import Goldens

g = Goldens("fft")


def normal(shape, seed):
    return mx.random.normal(shape, key=mx.random.key(seed))


x2 = g.add("x2", normal((4, 6), 1))
x3 = g.add("x3", normal((2, 4, 6), 2))
c2 = g.add("c2", normal((4, 6), 3) + 1j * normal((4, 6), 4))
c3 = g.add("c3", normal((2, 4, 6), 5) + 1j * normal((2, 4, 6), 6))
r2 = g.add("r2", mx.fft.rfft(x2))  # (4, 4) half spectrum
r3 = g.add("r3", mx.fft.rfftn(x3))  # (2, 4, 4) half spectrum

one_d = {
    "default": {},
    "n5": dict(n=5),
    "n9": dict(n=9),
    "axis0": dict(axis=0),
    "n3.axis0": dict(n=3, axis=0),
    "ortho": dict(norm="ortho"),
    "forward": dict(norm="forward"),
}
two_d = {
    "default": {},
    "s": dict(s=[3, 8]),
    "axes02": dict(axes=[0, 2]),
    "s.axes02": dict(s=[3, 5], axes=[0, 2]),
    "ortho": dict(norm="ortho"),
    "forward": dict(norm="forward"),
}
n_d = {
    "default": {},
    "axes01": dict(axes=[0, 1]),
    "s.axes": dict(s=[3, 3, 8], axes=[0, 1, 2]),
    "s.axes21": dict(s=[5, 3], axes=[2, 1]),
    "ortho": dict(norm="ortho"),
    "forward": dict(norm="forward"),
}

for fn, inputs, cases in [
    ("fft", ["c2", "x2"], one_d),
    ("ifft", ["c2", "x2"], one_d),
    ("rfft", ["x2"], one_d),
    ("irfft", ["r2"], one_d),
    ("fft2", ["c3"], two_d),
    ("ifft2", ["c3"], two_d),
    ("rfft2", ["x3"], two_d),
    ("irfft2", ["r3"], two_d),
    ("fftn", ["c3"], n_d),
    ("ifftn", ["c3"], n_d),
    ("rfftn", ["x3"], n_d),
    ("irfftn", ["r3"], n_d),
]:
    for input in inputs:
        for case, kwargs in cases.items():
            a = {"x2": x2, "x3": x3, "c2": c2, "c3": c3, "r2": r2, "r3": r3}[input]
            g.add(f"{fn}.{input}.{case}", getattr(mx.fft, fn)(a, **kwargs))

g.add("fftfreq.8", mx.fft.fftfreq(8))
g.add("fftfreq.7.d0.5", mx.fft.fftfreq(7, 0.5))
g.add("rfftfreq.8", mx.fft.rfftfreq(8))
g.add("rfftfreq.7.d0.1", mx.fft.rfftfreq(7, 0.1))

for fn in ["fftshift", "ifftshift"]:
    f = getattr(mx.fft, fn)
    g.add(f"{fn}.all", f(x3))
    g.add(f"{fn}.axis1", f(x3, axes=1))
    g.add(f"{fn}.axes02", f(x3, axes=[0, 2]))

g.save()
