"""Goldens for the loss functions of mlx.nn.losses.

Names: `in.<name>` for inputs; `<loss>.<case>.<reduction>` for outputs,
with `<reduction>` one of `none`, `mean`, `sum`. Every loss is run with
every reduction for each of its cases; tests/losses.rs rebuilds the same
cases and checks every name.
"""

import mlx.core as mx
import mlx.nn as nn

from golden import Goldens

L = nn.losses
g = Goldens("losses")
key = mx.random.key
REDUCTIONS = ("none", "mean", "sum")


def inp(name, value):
    return g.add(f"in.{name}", value)


# cross_entropy / nll_loss: logits (4, 5), class indices (4,), probabilities.
logits = inp("logits", mx.random.normal((4, 5), key=key(1)) * 2)
classes = inp("classes", mx.random.randint(0, 5, (4,), key=key(2)))
probs = inp("probs", mx.softmax(mx.random.normal((4, 5), key=key(3)), axis=-1))
weights4 = inp("weights4", mx.random.uniform(shape=(4,), key=key(4)))
# axis=1 of (3, 4, 5): class indices of shape (3, 5).
logits3 = inp("logits3", mx.random.normal((3, 4, 5), key=key(5)))
classes3 = inp("classes3", mx.random.randint(0, 4, (3, 5), key=key(6)))
logits_bf16 = inp("logits_bf16", logits.astype(mx.bfloat16))
log_probs = inp("log_probs", mx.log(mx.softmax(mx.random.normal((4, 5), key=key(7)), axis=-1)))
log_probs_target = inp(
    "log_probs_target", mx.log(mx.softmax(mx.random.normal((4, 5), key=key(8)), axis=-1))
)

# binary_cross_entropy: (4, 6).
bce_logits = inp("bce_logits", mx.random.normal((4, 6), key=key(10)) * 3)
bce_targets = inp("bce_targets", mx.random.bernoulli(0.5, (4, 6), key=key(11)).astype(mx.float32))
bce_int_targets = inp("bce_int_targets", bce_targets.astype(mx.int32))
# Probabilities including exact 0 and 1, where the logs are clipped at -100.
bce_probs = mx.sigmoid(bce_logits)
bce_probs = inp("bce_probs", mx.concatenate([mx.array([[0.0, 1.0, 0.0, 1.0, 0.5, 0.25]]), bce_probs[1:]]))
weights46 = inp("weights46", mx.random.uniform(shape=(4, 6), key=key(12)))

# Regression: predictions and targets (4, 6), differences spanning 0..~4.
preds = inp("preds", mx.random.normal((4, 6), key=key(20)) * 2)
targets = inp("targets", mx.random.normal((4, 6), key=key(21)))
preds_bf16 = inp("preds_bf16", preds.astype(mx.bfloat16))
targets_bf16 = inp("targets_bf16", targets.astype(mx.bfloat16))
# Variances with zeros (clamped to eps).
vars_ = mx.random.uniform(shape=(4, 6), key=key(22)) * 2
vars_ = inp("vars", mx.where(mx.random.bernoulli(0.2, (4, 6), key=key(23)), 0.0, vars_))
signs = inp("signs", mx.where(mx.random.bernoulli(0.5, (4, 6), key=key(24)), 1.0, -1.0))
int_signs = inp("int_signs", signs.astype(mx.int32))

# triplet_loss: (4, 8); axis=0 case uses the same arrays.
anchors = inp("anchors", mx.random.normal((4, 8), key=key(30)))
positives = inp("positives", anchors + 0.5 * mx.random.normal((4, 8), key=key(31)))
negatives = inp("negatives", mx.random.normal((4, 8), key=key(32)))

# cosine_similarity_loss: (4, 8) with a zero row (denominator at eps).
x1 = mx.random.normal((4, 8), key=key(40))
x1 = inp("x1", mx.concatenate([mx.zeros((1, 8)), x1[1:]]))
x2 = inp("x2", mx.random.normal((4, 8), key=key(41)))

# margin_ranking_loss: (8,).
scores1 = inp("scores1", mx.random.normal((8,), key=key(50)))
scores2 = inp("scores2", mx.random.normal((8,), key=key(51)))
rank = inp("rank", mx.where(mx.random.bernoulli(0.5, (8,), key=key(52)), 1.0, -1.0))

CASES = {
    "cross_entropy": {
        "indices": lambda r: L.cross_entropy(logits, classes, reduction=r),
        "probs": lambda r: L.cross_entropy(logits, probs, reduction=r),
        "weights": lambda r: L.cross_entropy(logits, classes, weights=weights4, reduction=r),
        "smoothing": lambda r: L.cross_entropy(logits, classes, label_smoothing=0.1, reduction=r),
        "probs_smoothing": lambda r: L.cross_entropy(
            logits, probs, weights=weights4, label_smoothing=0.3, reduction=r
        ),
        "axis1": lambda r: L.cross_entropy(logits3, classes3, axis=1, reduction=r),
        "axis1_smoothing": lambda r: L.cross_entropy(
            logits3, classes3, axis=1, label_smoothing=0.2, reduction=r
        ),
        "bf16": lambda r: L.cross_entropy(logits_bf16, classes, reduction=r),
    },
    "binary_cross_entropy": {
        "logits": lambda r: L.binary_cross_entropy(bce_logits, bce_targets, reduction=r),
        "logits_int": lambda r: L.binary_cross_entropy(bce_logits, bce_int_targets, reduction=r),
        "weights": lambda r: L.binary_cross_entropy(
            bce_logits, bce_targets, weights=weights46, reduction=r
        ),
        "probs": lambda r: L.binary_cross_entropy(
            bce_probs, bce_targets, with_logits=False, reduction=r
        ),
        "probs_int_weights": lambda r: L.binary_cross_entropy(
            bce_probs, bce_int_targets, weights=weights46, with_logits=False, reduction=r
        ),
    },
    "l1_loss": {
        "f32": lambda r: L.l1_loss(preds, targets, reduction=r),
        "bf16": lambda r: L.l1_loss(preds_bf16, targets_bf16, reduction=r),
    },
    "mse_loss": {
        "f32": lambda r: L.mse_loss(preds, targets, reduction=r),
        "bf16": lambda r: L.mse_loss(preds_bf16, targets_bf16, reduction=r),
    },
    "nll_loss": {
        "default": lambda r: L.nll_loss(log_probs, classes, reduction=r),
        "axis1": lambda r: L.nll_loss(logits3, classes3, axis=1, reduction=r),
    },
    "gaussian_nll_loss": {
        "default": lambda r: L.gaussian_nll_loss(preds, targets, vars_, reduction=r),
        "full": lambda r: L.gaussian_nll_loss(preds, targets, vars_, full=True, reduction=r),
        "eps": lambda r: L.gaussian_nll_loss(preds, targets, vars_, eps=0.1, reduction=r),
    },
    "kl_div_loss": {
        "default": lambda r: L.kl_div_loss(log_probs, log_probs_target, reduction=r),
        "axis0": lambda r: L.kl_div_loss(log_probs, log_probs_target, axis=0, reduction=r),
    },
    "smooth_l1_loss": {
        "default": lambda r: L.smooth_l1_loss(preds, targets, reduction=r),
        "beta": lambda r: L.smooth_l1_loss(preds, targets, beta=0.5, reduction=r),
        "bf16": lambda r: L.smooth_l1_loss(preds_bf16, targets_bf16, beta=2.0, reduction=r),
    },
    "triplet_loss": {
        "default": lambda r: L.triplet_loss(anchors, positives, negatives, reduction=r),
        "axis0": lambda r: L.triplet_loss(anchors, positives, negatives, axis=0, reduction=r),
        "p1": lambda r: L.triplet_loss(
            anchors, positives, negatives, p=1, margin=0.5, eps=1e-3, reduction=r
        ),
        "p3": lambda r: L.triplet_loss(anchors, positives, negatives, p=3, margin=2.0, reduction=r),
    },
    "hinge_loss": {
        "f32": lambda r: L.hinge_loss(preds, signs, reduction=r),
        "int_targets": lambda r: L.hinge_loss(preds, int_signs, reduction=r),
    },
    "huber_loss": {
        "default": lambda r: L.huber_loss(preds, targets, reduction=r),
        "delta": lambda r: L.huber_loss(preds, targets, delta=0.5, reduction=r),
        "bf16": lambda r: L.huber_loss(preds_bf16, targets_bf16, delta=2.0, reduction=r),
    },
    "log_cosh_loss": {
        "f32": lambda r: L.log_cosh_loss(preds, targets, reduction=r),
        "bf16": lambda r: L.log_cosh_loss(preds_bf16, targets_bf16, reduction=r),
    },
    "cosine_similarity_loss": {
        "default": lambda r: L.cosine_similarity_loss(x1, x2, reduction=r),
        "axis0": lambda r: L.cosine_similarity_loss(x1, x2, axis=0, reduction=r),
        "eps": lambda r: L.cosine_similarity_loss(x1, x2, eps=0.5, reduction=r),
    },
    "margin_ranking_loss": {
        "default": lambda r: L.margin_ranking_loss(scores1, scores2, rank, reduction=r),
        "margin": lambda r: L.margin_ranking_loss(scores1, scores2, rank, margin=0.5, reduction=r),
    },
}

for loss, cases in CASES.items():
    for case, f in cases.items():
        for r in REDUCTIONS:
            g.add(f"{loss}.{case}.{r}", f(r))

g.save()
