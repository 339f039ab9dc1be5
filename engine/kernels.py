"""The speed kernels and the one switch that chooses them: the same numbers as model.py's ops to float rounding,
with less work. A computation path (Path) is one value that the model, the update and the batches read; its
`fused` is the switch: off, model.py's own ops (the original's, op by op); on, GELU, LayerNorm and the LM's
cross-entropy as XLA kernels (one pass over memory each way instead of a dozen) and Adam's update of a parameter
as one XLA kernel (opt.Adam). XLA compiles a kernel once per input shape, about 0.1 s each. Where XLA cannot
compile (a GPU it has no target for), a run turns the switch off and computes the same numbers without them."""
import functools
import math
from typing import NamedTuple

import tensorflow as tf


class Path(NamedTuple):
    """How a run computes the same numbers (with dropout off). `fused`: the kernels of this module (and opt.Adam's
    fused update); `masked_lm`: the LM head only on real tokens; `jit_compile`: the whole train and evaluation steps
    compiled by XLA; `multiple`: unpacked batches padded to their longest sequence rounded up to a multiple of this,
    0 to n_ctx (the original's padding); `packed_train`: each training tower's sequences packed end to end into rows
    of a few shapes fixed for the whole run (inputs.Packing) instead of padded; `fixed_eval`: every evaluation batch
    of a split at one shape, its examples packed whole end to end into rows of one shape per split
    (inputs.eval_batch)."""
    name: str
    fused: bool
    masked_lm: bool
    jit_compile: bool
    multiple: int
    packed_train: bool = False
    fixed_eval: bool = False

    def pad_to(self, n_ctx):
        """The `multiple` a batch of the model's n_ctx is padded to (n_ctx: every batch padded to n_ctx)."""
        return self.multiple or n_ctx


PADDED = Path('padded', fused=False, masked_lm=False, jit_compile=False, multiple=0)  # the original's, op by op
TRIMMED = Path('trimmed', fused=True, masked_lm=True, jit_compile=False, multiple=1)   # each batch cut to its longest
DEFAULT = TRIMMED._replace(name='default', packed_train=True, fixed_eval=True)       # packed rows, few shapes
XLA = Path('xla', fused=True, masked_lm=False, jit_compile=True, multiple=8, packed_train=True, fixed_eval=True)
PATHS = {path.name: path for path in (PADDED, TRIMMED, DEFAULT, XLA)}


def path_of(padded, xla):
    """The Path of train.py's --padded and --xla: --padded the original's computation (compiled by XLA with both)."""
    return PADDED._replace(jit_compile=xla) if padded else XLA if xla else DEFAULT


def without_xla(path):
    """`path` with every XLA kernel off (the switch, and the whole-step compilation): the same numbers, computed by
    TensorFlow's own kernels, for a device where XLA cannot compile."""
    return path._replace(fused=False, jit_compile=False)


def in_float32(f):
    """f computed in float32 on an input of any float dtype, the result cast back to it."""
    return lambda x: tf.cast(f(tf.cast(x, tf.float32)), x.dtype)


# ------------------------------------------------------------------------------------------ GELU, LayerNorm
# Each forward is model.py's own function compiled by XLA; each gradient is written out here, one kernel too.

def _gelu_grad(x, dy):
    dtype, x, dy = x.dtype, tf.cast(x, tf.float32), tf.cast(dy, tf.float32)
    c = math.sqrt(2 / math.pi)
    t = tf.tanh(c * (x + 0.044715 * x * x * x))
    return tf.cast(dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)), dtype)


def standardize(x, e):
    """(x - mean) / sqrt(variance + e) over the last axis, in two passes as the original, and the reciprocal
    standard deviation (..., 1): LayerNorm's gradient needs both."""
    u = tf.reduce_mean(x, axis=-1, keepdims=True)
    r = tf.math.rsqrt(tf.reduce_mean(tf.square(x - u), axis=-1, keepdims=True) + e)
    return (x - u) * r, r


def _norm_grad(x, g, dy, e):
    dtype, x, dy = x.dtype, tf.cast(x, tf.float32), tf.cast(dy, tf.float32)
    xhat, r = standardize(x, e)
    dxhat = dy * g
    dx = r * (dxhat - tf.reduce_mean(dxhat, -1, keepdims=True) - xhat * tf.reduce_mean(dxhat * xhat, -1, keepdims=True))
    axes = tf.range(tf.rank(x) - 1)
    return tf.cast(dx, dtype), tf.reduce_sum(dy * xhat, axes), tf.reduce_sum(dy, axes)


@functools.lru_cache(maxsize=None)
def fused(gelu, norm):
    """(fused_gelu, fused_norm): model.py's gelu (in float32 whatever the input's dtype) and LayerNorm norm(x, g, b,
    e), forward and gradient each one XLA kernel."""
    gelu_fwd, gelu_bwd = tf.function(in_float32(gelu), jit_compile=True), tf.function(_gelu_grad, jit_compile=True)
    norm_fwd, norm_bwd = tf.function(norm, jit_compile=True), tf.function(_norm_grad, jit_compile=True)

    @tf.custom_gradient
    def fused_gelu(x):
        return gelu_fwd(x), lambda dy: gelu_bwd(x, dy)

    @tf.custom_gradient
    def fused_norm(x, g, b, e=1e-5):
        return norm_fwd(x, g, b, e), lambda dy: norm_bwd(x, g, dy, e)

    return fused_gelu, fused_norm


# ------------------------------------------------------------------------------------ the LM's cross-entropy
# TensorFlow's CPU kernel of sparse_softmax_cross_entropy_with_logits is 5x slower on pre-training's (K, 40478)
# logits. XLA compiles a kernel per shape: pre-training's batches have few.

@tf.function(jit_compile=True)
def _xent(logits, labels):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


@tf.function(jit_compile=True)
def _xent_grad(logits, labels, dy):
    return (tf.nn.softmax(logits) - tf.one_hot(labels, tf.shape(logits)[-1])) * dy[:, None]


@tf.custom_gradient
def fused_xent(logits, labels):
    """sparse_softmax_cross_entropy_with_logits of logits (K, V) float32 and labels (K,) -> (K,)."""
    return _xent(logits, labels), lambda dy: (_xent_grad(logits, labels, dy), None)


def ops(use_kernels, act, gelu, norm):
    """The activation and LayerNorm the blocks use: model.py's own `act` (in float32) and `norm`, or with
    use_kernels (a Path's `fused`) their kernels here (relu and swish have none: they stay model.py's)."""
    if not use_kernels:
        return in_float32(act), norm
    fused_gelu, fused_norm = fused(gelu, norm)
    return (fused_gelu if act is gelu else in_float32(act)), fused_norm
