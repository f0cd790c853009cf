"""Goldens for mx.random: every sampler with fixed keys, then keyless calls
after mx.random.seed(3).

Run from this folder: /work/venv-mlx/bin/python gen_random.py

Random bits are exact, so keys and integer samples must match bit for bit
in Rust; floats are compared at the dtype's tolerance.
"""

import mlx.core as mx

from golden import Goldens

g = Goldens("random")
k = mx.random.key(7)
k2 = mx.random.key(2)

# Keys.
g.add("key7", k)
g.add("key_big", mx.random.key(2**40 + 5))
g.add("split.default", mx.random.split(k))
g.add("split.num5", mx.random.split(k, 5))
g.add("split.num1", mx.random.split(k, num=1))

# Inputs shared by several samplers.
bounds_low = g.add("in.low", mx.array([[0.0], [10.0], [-5.0]]))
bounds_high = g.add("in.high", mx.array([1.0, 2.0, 3.0, 20.0]))
int_low = g.add("in.int_low", mx.array([0, 10, 100], dtype=mx.int32))
p = g.add("in.p", mx.array([[0.0, 0.1, 0.5, 0.9], [1.0, 0.25, 0.75, 0.3]]))
logits = g.add("in.logits", mx.log(mx.array([[1.0, 2.0, 3.0, 4.0, 0.5],
                                              [5.0, 0.1, 0.1, 0.1, 0.1],
                                              [1.0, 1.0, 1.0, 1.0, 1.0]])))
mean = g.add("in.mean", mx.array([1.0, -2.0]))
cov = g.add("in.cov", mx.array([[2.0, 0.5], [0.5, 1.0]]))
perm_x = g.add("in.perm_x", mx.arange(12, dtype=mx.int32).reshape(4, 3))
loc = g.add("in.loc", mx.array([0.0, 10.0, -10.0]))
scale = g.add("in.scale", mx.array([[1.0], [0.1]]))

# uniform
g.add("uniform.default", mx.random.uniform(shape=(3, 4), key=k))
g.add("uniform.bounds", mx.random.uniform(-2.0, 5.0, (2, 3), key=k))
g.add("uniform.int_bounds", mx.random.uniform(0, 10, (5,), key=k))
g.add("uniform.arrays", mx.random.uniform(bounds_low, bounds_high, (3, 4), key=k))
g.add("uniform.f16", mx.random.uniform(shape=(6,), dtype=mx.float16, key=k))
g.add("uniform.bf16", mx.random.uniform(shape=(6,), dtype=mx.bfloat16, key=k))
g.add("uniform.scalar", mx.random.uniform(key=k))

# normal
g.add("normal.default", mx.random.normal((3, 4), key=k))
g.add("normal.loc_scale", mx.random.normal((2, 3), loc=1.5, scale=0.5, key=k))
g.add("normal.f16", mx.random.normal((6,), dtype=mx.float16, key=k))
g.add("normal.bf16", mx.random.normal((6,), dtype=mx.bfloat16, key=k))
g.add("normal.complex", mx.random.normal((4,), dtype=mx.complex64, key=k))
g.add("normal.arrays", mx.random.normal((2, 3), loc=loc, scale=scale, key=k))
g.add("normal.loc_array", mx.random.normal((2, 3), loc=loc, key=k))

# laplace
g.add("laplace.default", mx.random.laplace((3, 4), key=k))
g.add("laplace.loc_scale", mx.random.laplace((2, 3), loc=-1.0, scale=2.0, key=k))
g.add("laplace.f16", mx.random.laplace((6,), dtype=mx.float16, key=k))

# multivariate_normal
g.add("mvn.default", mx.random.multivariate_normal(mean, cov, key=k, stream=mx.cpu))
g.add("mvn.shape", mx.random.multivariate_normal(mean, cov, (5,), key=k, stream=mx.cpu))

# randint
g.add("randint.default", mx.random.randint(0, 10, (3, 4), key=k))
g.add("randint.arrays", mx.random.randint(int_low, 1000, (2, 3), key=k))
g.add("randint.uint8", mx.random.randint(5, 250, (8,), dtype=mx.uint8, key=k))
g.add("randint.int64", mx.random.randint(-(2**40), 2**40, (6,), dtype=mx.int64, key=k))
g.add("randint.scalar", mx.random.randint(-3, 3, key=k))

# bernoulli
g.add("bernoulli.default", mx.random.bernoulli(key=k))
g.add("bernoulli.shape", mx.random.bernoulli(0.3, (3, 4), key=k))
g.add("bernoulli.p_array", mx.random.bernoulli(p, key=k))
g.add("bernoulli.p_array_shape", mx.random.bernoulli(p, (3, 2, 4), key=k))

# truncated_normal
g.add("truncated_normal.shape", mx.random.truncated_normal(-1.0, 2.0, (3, 4), key=k))
g.add("truncated_normal.arrays", mx.random.truncated_normal(bounds_low, bounds_high, key=k))
g.add("truncated_normal.f16", mx.random.truncated_normal(0.0, 1.0, (6,), dtype=mx.float16, key=k))
g.add("truncated_normal.scalar", mx.random.truncated_normal(-0.5, 0.5, key=k))

# gumbel
g.add("gumbel.default", mx.random.gumbel((3, 4), key=k))
g.add("gumbel.f16", mx.random.gumbel((6,), dtype=mx.float16, key=k))

# categorical
g.add("categorical.default", mx.random.categorical(logits, key=k))
g.add("categorical.axis0", mx.random.categorical(logits, axis=0, key=k))
g.add("categorical.shape", mx.random.categorical(logits, shape=(4, 3), key=k))
g.add("categorical.num_samples", mx.random.categorical(logits, num_samples=6, key=k))

# permutation
g.add("permutation.int", mx.random.permutation(10, key=k))
g.add("permutation.array", mx.random.permutation(perm_x, key=k))
g.add("permutation.axis1", mx.random.permutation(perm_x, axis=1, key=k2))

# The global state: seed(3), then keyless calls, each taking the next key.
# The Rust test makes the same calls in the same order.
mx.random.seed(3)
g.add("seeded.uniform", mx.random.uniform(shape=(4,)))
g.add("seeded.normal", mx.random.normal((4,)))
g.add("seeded.normal_arrays", mx.random.normal((2, 3), loc=loc, scale=scale))
g.add("seeded.laplace", mx.random.laplace((4,)))
g.add("seeded.randint", mx.random.randint(0, 100, (4,)))
g.add("seeded.bernoulli", mx.random.bernoulli(0.5, (6,)))
g.add("seeded.truncated_normal", mx.random.truncated_normal(-1.0, 1.0, (4,)))
g.add("seeded.gumbel", mx.random.gumbel((4,)))
g.add("seeded.categorical", mx.random.categorical(logits, num_samples=3))
g.add("seeded.permutation", mx.random.permutation(8))
g.add("seeded.permutation_array", mx.random.permutation(perm_x))
g.add("seeded.mvn", mx.random.multivariate_normal(mean, cov, (3,), stream=mx.cpu))
mx.random.seed(3)
g.add("seeded.again", mx.random.uniform(shape=(4,)))

g.save()
