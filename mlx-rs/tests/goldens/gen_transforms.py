"""Goldens for transforms: grad, value_and_grad, vjp, jvp, vmap, checkpoint,
custom_function, compile."""

import mlx.core as mx

from golden import Goldens

g = Goldens("transforms")
x = g.add("x", mx.random.normal((3, 4), key=mx.random.key(10)))
y = g.add("y", mx.random.normal((3, 4), key=mx.random.key(11)))
v = g.add("v", mx.random.normal((4,), key=mx.random.key(12)))


def f(x, y):
    # Only ops from binary.rs, so the Rust side can write the same function.
    return x * x * x + 2.0 * x * y - y / (x * x + 1.0)



# grad and value_and_grad with respect to both arguments
gx, gy = mx.grad(lambda x, y: (f(x, y) * f(x, y)).sum(), argnums=(0, 1))(x, y)
g.add("grad.dx", gx)
g.add("grad.dy", gy)

# vjp and jvp
(out,), (vjp_x, vjp_y) = mx.vjp(lambda x, y: [f(x, y)], [x, y], [mx.ones_like(x)])
g.add("vjp.out", out)
g.add("vjp.dx", vjp_x)
g.add("vjp.dy", vjp_y)
(out,), (jvp_out,) = mx.jvp(lambda x, y: [f(x, y)], [x, y], [y, x])
g.add("jvp.out", out)
g.add("jvp.tangent", jvp_out)

# vmap over rows of x with v broadcast (not mapped), output mapped to axis 1
g.add("vmap.out", mx.vmap(lambda x, v: x * v + v, in_axes=(0, None), out_axes=1)(x, v))

# custom vjp: the gradient of x * y is replaced by (cotangent * 3, cotangent * 5)
@mx.custom_function
def prod(x, y):
    return x * y


@prod.vjp
def prod_vjp(primals, cotangent, output):
    return cotangent * 3.0, cotangent * 5.0


cx, cy = mx.grad(lambda x, y: (prod(x, y) * 1.0).sum(), argnums=(0, 1))(x, y)
g.add("custom_vjp.dx", cx)
g.add("custom_vjp.dy", cy)

g.add("compile.out", mx.compile(f)(x, y))
g.save()
