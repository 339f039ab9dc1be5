"""Adam with the decoupled weight-decay fix of Loshchilov & Hutter, as the original's `adam`, and its
learning-rate schedules. Everything in float32."""
import math

import tensorflow as tf


def warmup_cosine(x, warmup=0.002):
    x = tf.convert_to_tensor(x, tf.float32)
    s = tf.cast(x <= warmup, tf.float32)
    return s * (x / warmup) + (1 - s) * (0.5 * (1 + tf.cos(math.pi * x)))


def warmup_constant(x, warmup=0.002):
    x = tf.convert_to_tensor(x, tf.float32)
    s = tf.cast(x <= warmup, tf.float32)
    return s * (x / warmup) + (1 - s) * 1


def warmup_linear(x, warmup=0.002):
    x = tf.convert_to_tensor(x, tf.float32)
    s = tf.cast(x <= warmup, tf.float32)
    return (s * (x / warmup) + (1 - s)) * (1 - x)


schedules = {
    'warmup_cosine': warmup_cosine,
    'warmup_constant': warmup_constant,
    'warmup_linear': warmup_linear,
}


class Adam(tf.Module):
    """Adam whose weight decay l2 * p is added to the update of matrices (and vectors with vector_l2), not to
    the gradient. `t` counts the updates done; `m` and `v` are the moments, one per parameter."""

    def __init__(self, params, lr, schedule, t_total, b1=0.9, b2=0.999, e=1e-8, l2=0., vector_l2=False,
                 max_grad_norm=-1, fused=True):
        super().__init__(name='adam')
        self.params = list(params)
        self.lr, self.schedule, self.t_total = lr, schedule, t_total
        self.b1, self.b2, self.e, self.l2, self.vector_l2, self.max_grad_norm = b1, b2, e, l2, vector_l2, max_grad_norm
        self.t = tf.Variable(0., dtype=tf.float32, trainable=False, name='adam/t')
        self.m = [tf.Variable(tf.zeros(p.shape), trainable=False, name='adam/m/' + p.name[:-2]) for p in self.params]
        self.v = [tf.Variable(tf.zeros(p.shape), trainable=False, name='adam/v/' + p.name[:-2]) for p in self.params]
        self.fused = fused

    def learning_rate(self, t):
        """lrt of update number t (counted from 1): bias corrections times the schedule at t / t_total."""
        t = tf.convert_to_tensor(t, tf.float32)
        lrt = self.lr * tf.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)
        return lrt * self.schedule(t / self.t_total)

    def apply(self, grads, norm=None):
        """One update of every parameter from its (replica-averaged) gradient; returns the lrt used. norm: the
        gradient's global norm, tf.linalg.global_norm(grads), when the caller has it (computed here otherwise).
        Called in cross-replica context, it updates every replica's copy."""
        t = self.t.assign_add(1.)  # the schedule sees the counter after the increment, as the original's graph
        grads = [tf.convert_to_tensor(g) for g in grads]  # the embedding's gradient is dense, as the original's
        if self.max_grad_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.max_grad_norm, use_norm=norm)
        lrt = self.learning_rate(t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            l2 = self.l2 if len(p.shape) > 1 or self.vector_l2 else 0.  # decay matrices, vectors on request
            mirrored = isinstance(p, tf.distribute.DistributedValues)
            update = fused_update if self.fused and not mirrored else update_step
            update(p, g, m, v, lrt, self.b1, self.b2, self.e, l2)
        return lrt

    def skip(self):
        """A skipped update (its gradient was not finite): the counter advances, so that the schedule and the
        dropout seeds stay in step with the run, and nothing else changes. Returns the lrt it would have used."""
        return self.learning_rate(self.t.assign_add(1.))


class LossScale(tf.Module):
    """Dynamic loss scaling for float16 training: the loss is multiplied by `scale` before the gradient is taken
    and the gradient divided by it, so that small gradients do not underflow in float16. A step whose gradient
    is not finite is skipped and halves the scale; `period` finite steps in a row double it."""

    def __init__(self, initial=2. ** 15, period=2000):
        super().__init__(name='loss_scale')
        self.scale = tf.Variable(initial, trainable=False, name='loss_scale/scale')
        self.n_finite = tf.Variable(0, trainable=False, name='loss_scale/n_finite')
        self.period = period

    def update(self, finite):
        """The scale after a step whose gradient was finite or not."""
        n = tf.where(finite, self.n_finite + 1, 0)
        grow = n >= self.period
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2., self.scale), self.scale / 2.))
        self.n_finite.assign(tf.where(grow, 0, n))


def update_step(p, g, m, v, lrt, b1, b2, e, l2):
    """One parameter's update: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lrt (m / (sqrt(v) + e) + l2 p)."""
    mt = b1 * m + (1 - b1) * g
    vt = b2 * v + (1 - b2) * g * g
    if l2 > 0:
        pt = p - lrt * (mt / (tf.sqrt(vt) + e) + l2 * p)
    else:
        pt = p - lrt * (mt / (tf.sqrt(vt) + e))
    m.assign(mt)
    v.assign(vt)
    p.assign(pt)


# The same update compiled by XLA into one pass over p, g, m and v instead of a dozen passes over memory (116M
# parameters make this matter). XLA cannot reach the copies of a variable mirrored on other devices: mirrored
# variables are updated op by op.
fused_update = tf.function(update_step, jit_compile=True)
