"""Goldens for mlx.core.linalg (tests/linalg.rs).

Every function of mx.linalg runs here on the CPU (MLX has no GPU linalg).
Decompositions whose factors are unique are stored whole (cholesky, lu,
lu_factor, eigenvalues of eigh). Where a factor is not unique, only what is
unique is stored and the Rust test checks the rest by reconstruction:

- qr: Q's columns and R's rows may flip sign together (Q D, D R with
  D = diag(+-1)), so |Q| and |R| are stored; the Rust test rebuilds Q @ R.
- svd: singular vectors may flip sign in pairs (and U's columns beyond
  min(m, n) are any basis of the complement), so S is stored; the Rust test
  rebuilds U[:, :k] @ diag(S) @ Vt and checks U and Vt are orthogonal.
- eig / eigvals: eigenvalues come in no defined order and each eigenvector
  has an arbitrary complex phase, so the eigenvalues are stored sorted by
  (real, imag); the Rust test sorts its own the same way and checks
  A @ V == V @ diag(w).
- eigh: eigenvalues are ascending (unique); eigenvector signs are not, so
  the Rust test rebuilds V @ diag(w) @ V.T.
"""

import mlx.core as mx

from golden import Goldens

mx.set_default_device(mx.cpu)
g = Goldens("linalg")


def normal(shape, seed):
    return mx.random.normal(shape, key=mx.random.key(seed))


a = g.add("a", normal((4, 4), 1))
batch = g.add("batch", normal((2, 3, 3), 2))
m = normal((4, 4), 3)
spd = g.add("spd", m @ m.T + 4 * mx.eye(4))
rect = g.add("rect", normal((5, 3), 4))
b = g.add("b", normal((4, 2), 5))
b1 = g.add("b1", normal((4,), 6))
x = g.add("x", normal((3, 4), 7))
v = g.add("v", normal((5,), 8))
t3 = g.add("t3", normal((2, 3, 4), 9))
u3 = g.add("u3", normal((4, 3), 10))
w3 = g.add("w3", normal((4, 3), 11))
u2 = g.add("u2", normal((4, 2), 12))
w2 = g.add("w2", normal((4, 2), 13))

# norm: one golden per (input, ord, axis, keepdims); names match the Rust table.
inf = float("inf")
vector_ords = {"none": None, "0": 0, "1": 1, "2": 2, "3": 3, "0.5": 0.5,
               "inf": inf, "-inf": -inf, "-1": -1}
for name, ord in vector_ords.items():
    g.add(f"norm.v.{name}", mx.linalg.norm(v, ord=ord))
    g.add(f"norm.x.{name}.axis1", mx.linalg.norm(x, ord=ord, axis=1))
    g.add(f"norm.x.{name}.axis0.keepdims", mx.linalg.norm(x, ord=ord, axis=0, keepdims=True))
matrix_ords = {"none": None, "fro": "fro", "nuc": "nuc", "1": 1, "-1": -1, "2": 2,
               "-2": -2, "inf": inf, "-inf": -inf}
for name, ord in matrix_ords.items():
    g.add(f"norm.x.{name}", mx.linalg.norm(x, ord=ord))
    g.add(f"norm.t3.{name}.axes12", mx.linalg.norm(t3, ord=ord, axis=[1, 2]))
    g.add(f"norm.t3.{name}.axes20.keepdims",
          mx.linalg.norm(t3, ord=ord, axis=[2, 0], keepdims=True))
# ord=None over every axis of a 3-D array: the 2-norm of the flattened array.
g.add("norm.t3.none", mx.linalg.norm(t3))

lower = mx.linalg.cholesky(spd)
g.add("cholesky.lower", lower)
upper = mx.linalg.cholesky(spd, upper=True)
g.add("cholesky.upper", upper)
g.add("cholesky_inv.lower", mx.linalg.cholesky_inv(lower))
g.add("cholesky_inv.upper", mx.linalg.cholesky_inv(upper, upper=True))

g.add("cross.3", mx.linalg.cross(u3, w3))
g.add("cross.2", mx.linalg.cross(u2, w2))
g.add("cross.axis0", mx.linalg.cross(u3.T, w3.T, axis=0))

g.add("det.a", mx.linalg.det(a))
g.add("det.batch", mx.linalg.det(batch))
sign, logabs = mx.linalg.slogdet(a)
g.add("slogdet.a.sign", sign)
g.add("slogdet.a.logabsdet", logabs)
sign, logabs = mx.linalg.slogdet(batch)
g.add("slogdet.batch.sign", sign)
g.add("slogdet.batch.logabsdet", logabs)

g.add("inv.a", mx.linalg.inv(a))
g.add("inv.batch", mx.linalg.inv(batch))
g.add("inv.a64", mx.linalg.inv(a.astype(mx.float64)))
tril, triu = mx.tril(a) + 3 * mx.eye(4), mx.triu(a) + 3 * mx.eye(4)
g.add("tril", tril)
g.add("triu", triu)
g.add("tri_inv.lower", mx.linalg.tri_inv(tril))
g.add("tri_inv.upper", mx.linalg.tri_inv(triu, upper=True))
g.add("pinv.rect", mx.linalg.pinv(rect))

g.add("solve.b", mx.linalg.solve(a, b))
g.add("solve.b1", mx.linalg.solve(a, b1))
g.add("solve_triangular.lower", mx.linalg.solve_triangular(tril, b))
g.add("solve_triangular.upper", mx.linalg.solve_triangular(triu, b, upper=True))

# Partial pivoting picks the largest pivot: P, L and U are unique here.
p, l, u = mx.linalg.lu(a)
g.add("lu.p", p)
g.add("lu.l", l)
g.add("lu.u", u)
lu, pivots = mx.linalg.lu_factor(a)
g.add("lu_factor.lu", lu)
g.add("lu_factor.pivots", pivots)

q, r = mx.linalg.qr(a)
g.add("qr.a.abs_q", mx.abs(q))
g.add("qr.a.abs_r", mx.abs(r))
q, r = mx.linalg.qr(rect)
g.add("qr.rect.abs_q", mx.abs(q))
g.add("qr.rect.abs_r", mx.abs(r))

g.add("svd.rect.s", mx.linalg.svd(rect, compute_uv=False))
g.add("svd.a.s", mx.linalg.svd(a, compute_uv=False))
g.add("eye3", mx.eye(3))
g.add("eye4", mx.eye(4))
g.add("eye5", mx.eye(5))


def sorted_complex(values):
    """Sorted by (real, imag), as the Rust test sorts."""
    host = sorted(values.tolist(), key=lambda c: (c.real, c.imag))
    return mx.array(host, dtype=mx.complex64)


g.add("eigvals.a.sorted", sorted_complex(mx.linalg.eigvals(a)))
w, _ = mx.linalg.eig(a)
g.add("eig.a.sorted", sorted_complex(w))

g.add("eigvalsh.spd", mx.linalg.eigvalsh(spd))
# On a non-symmetric input the two triangles give different matrices.
g.add("eigvalsh.a.lower", mx.linalg.eigvalsh(a))
g.add("eigvalsh.a.upper", mx.linalg.eigvalsh(a, UPLO="U"))
w, _ = mx.linalg.eigh(spd)
g.add("eigh.spd.values", w)
w, _ = mx.linalg.eigh(a, UPLO="U")
g.add("eigh.a.upper.values", w)
g.add("sym_upper", mx.triu(a) + mx.triu(a, 1).T)

# Complex Hermitian input (eigh, eigvalsh and svd take complex64).
z = normal((3, 3), 20) + 1j * normal((3, 3), 21)
herm = g.add("herm", z + mx.conj(z).T)
g.add("eigvalsh.herm", mx.linalg.eigvalsh(herm))
g.add("svd.herm.s", mx.linalg.svd(herm, compute_uv=False))

g.save()
