"""Goldens for mlx.optimizers: every optimizer, the schedules, clip_grad_norm.

Names: `params.<key>` and `grads.<k>.<key>` (k = 0, 1, 2) for inputs; for
each case `<case>` of CASES, after 1 and 3 `update` calls (gradients
grads.0, then grads.1, grads.2): `<case>.<n>.param.<key>`,
`<case>.<n>.state.<key>.<name>`, `<case>.<n>.step` and, where set,
`<case>.<n>.learning_rate`. Schedules: `schedule.<name>` at the uint64 steps
`schedule.steps`. clip_grad_norm: `clip.<max_norm>.<key>` and
`clip.<max_norm>.norm`. tests/optimizers.rs builds the same cases.
"""

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from golden import Goldens

g = Goldens("optimizers")
key = mx.random.key

SHAPES = {
    "layers.0.weight": ((4, 3), mx.float32),
    "layers.0.bias": ((3,), mx.float32),
    "layers.1.weight": ((2, 2, 3), mx.float32),
    "embed.weight": ((5, 2), mx.bfloat16),
}
params = {}
grads = [{}, {}, {}]
for i, (k, (shape, dtype)) in enumerate(SHAPES.items()):
    params[k] = g.add(f"params.{k}", mx.random.normal(shape, key=key(i)).astype(dtype))
    for s in range(3):
        grads[s][k] = g.add(
            f"grads.{s}.{k}",
            (0.5 * mx.random.normal(shape, key=key(100 + 10 * s + i))).astype(dtype),
        )

cosine = optim.cosine_decay(0.1, 10, 0.01)
CASES = {
    "sgd": lambda: optim.SGD(0.1),
    "sgd_momentum": lambda: optim.SGD(0.1, momentum=0.9, weight_decay=0.01, dampening=0.1),
    "sgd_nesterov": lambda: optim.SGD(0.05, momentum=0.8, nesterov=True),
    "sgd_schedule": lambda: optim.SGD(cosine, momentum=0.5),
    "rmsprop": lambda: optim.RMSprop(0.01),
    "rmsprop_opts": lambda: optim.RMSprop(0.02, alpha=0.9, eps=1e-4),
    "adagrad": lambda: optim.Adagrad(0.1),
    "adagrad_opts": lambda: optim.Adagrad(0.05, eps=1e-3),
    "adadelta": lambda: optim.AdaDelta(1.0),
    "adadelta_opts": lambda: optim.AdaDelta(0.5, rho=0.8, eps=1e-4),
    "adam": lambda: optim.Adam(0.01),
    "adam_opts": lambda: optim.Adam(0.02, betas=[0.8, 0.9], eps=1e-6, bias_correction=True),
    "adamw": lambda: optim.AdamW(0.01),
    "adamw_opts": lambda: optim.AdamW(0.02, betas=[0.8, 0.95], eps=1e-6, weight_decay=0.1, bias_correction=True),
    "adamax": lambda: optim.Adamax(0.01),
    "adamax_opts": lambda: optim.Adamax(0.02, betas=[0.7, 0.9], eps=1e-5),
    "lion": lambda: optim.Lion(0.01),
    "lion_opts": lambda: optim.Lion(0.02, betas=[0.8, 0.9], weight_decay=0.1),
    "adafactor": lambda: optim.Adafactor(),
    "adafactor_opts": lambda: optim.Adafactor(
        0.01, eps=(1e-20, 1e-2), clip_threshold=0.5, decay_rate=-0.6, beta_1=0.9,
        weight_decay=0.1, scale_parameter=False, relative_step=False,
    ),
    "adafactor_warmup": lambda: optim.Adafactor(beta_1=0.5, warmup_init=True),
    "muon": lambda: optim.Muon(0.02),
    "muon_opts": lambda: optim.Muon(0.01, momentum=0.9, weight_decay=0.0, nesterov=False, ns_steps=3),
    "multi": lambda: optim.MultiOptimizer(
        [optim.Adam(0.01), optim.SGD(0.1, momentum=0.9)],
        [lambda path, _: path.startswith("layers.0")],
    ),
}


def record(case, n, opt, model):
    # Copies: the next update may change these arrays in place.
    for k, v in tree_flatten(model):
        g.add(f"{case}.{n}.param.{k}", mx.array(v))
    states = opt.state["states"] if isinstance(opt, optim.MultiOptimizer) else [opt.state]
    for i, state in enumerate(states):
        sub = f".{i}" if len(states) > 1 else ""
        for k, v in tree_flatten(state):
            if k in ("step", "learning_rate"):
                g.add(f"{case}.{n}.{k}{sub}", mx.array(v))
            else:
                g.add(f"{case}.{n}.state.{k}", mx.array(v))


for case, make in CASES.items():
    opt = make()
    # Nested as a Module's parameters are (MultiOptimizer needs that), and
    # copied: Python's SGD (weight_decay) and Adafactor update arrays in place
    # with `+=`, which would change the inputs of later cases.
    model = tree_unflatten([(k, mx.array(v)) for k, v in params.items()])
    for s in range(3):
        opt.update(model, tree_unflatten([(k, mx.array(v)) for k, v in grads[s].items()]))
        mx.eval(model, opt.state)
        if s in (0, 2):
            record(case, s + 1, opt, model)

steps = g.add("schedule.steps", mx.array([0, 1, 2, 3, 5, 7, 10, 11, 20, 25], mx.uint64))
lin = optim.linear_schedule(0.0, 0.1, 5)
SCHEDULES = {
    "exponential_decay": optim.exponential_decay(0.1, 0.9),
    "step_decay": optim.step_decay(0.1, 0.5, 3),
    "cosine_decay": optim.cosine_decay(0.1, 10),
    "cosine_decay_end": cosine,
    "linear_schedule": lin,
    "linear_schedule_down": optim.linear_schedule(1.0, 0.25, 7),
    "join_schedules": optim.join_schedules([lin, cosine], [5]),
    "join_schedules3": optim.join_schedules(
        [lin, optim.exponential_decay(0.1, 0.8), optim.step_decay(0.05, 0.5, 2)], [5, 10]
    ),
}
for name, sched in SCHEDULES.items():
    g.add(f"schedule.{name}", sched(steps))

for max_norm in [0.5, 100.0, 0.0]:
    clipped, norm = optim.clip_grad_norm(grads[0], max_norm)
    g.add(f"clip.{max_norm}.norm", norm)
    for k, v in clipped.items():
        g.add(f"clip.{max_norm}.{k}", v)

for k, v in params.items():  # the inputs were not changed in place
    assert mx.array_equal(v, g.arrays[f"params.{k}"])
g.save()
