"""Adam with the decoupled weight-decay fix of Loshchilov & Hutter, as the original's `adam`, its learning-rate
schedules, and the update (SPEC.md, "Optimiser"): the gradients of the original's towers averaged, clipped, then
Adam. Everything in float32; Adam's update of a parameter is one XLA kernel with `fused` (engine/kernels.py's
switch, a Path's `fused`)."""
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

    def scheduled_lr(self):
        """The learning rate that the schedule gave the last update: lr * schedule(t / t_total) (lrt without Adam's
        bias corrections)."""
        return self.lr * self.schedule(self.t / self.t_total)

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


optimizers = {'adam': Adam}  # --opt


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


# ---------------------------------------------------------------------------------------------------- the update

def make_update(objective, params, opt, strategy, seed, jit_compile=False, accum_steps=1, loss_scale=None,
                n_towers=None):
    """The update, a tf.function: one update of `params` by `opt` from a global batch already split over the
    replicas (loop.distribute), as the original's n_towers towers (its n_gpu; default one per replica): each array
    of the global batch is n_towers equal runs of its first axis, tower after tower; each replica holds an equal run
    of towers and computes them one after the other, each tower split further into accum_steps equal parts; the
    gradients of the parts' losses, averaged over every part of every tower (the gradient of the mean over the
    global batch), make one update of `opt`. objective(part, part_seed) -> (loss, cost): `part` the batch's arrays
    each cut to one part's run, the loss to differentiate and the figure to report (averaged over the parts and
    replicas). Each part draws its own dropout masks, seeded by fold_in(fold_in((seed, updates done), global tower
    index), part): the same masks on any number of replicas; accum_steps > 1 draws more masks than the original's
    towers. jit_compile: each part's gradient compiled by XLA. With a LossScale, the loss is scaled before the
    gradient, and an update whose gradient is not finite is skipped. The step returns the cost, lrt and the
    gradient's global norm: (cost, lrt, norm)."""
    if n_towers and n_towers % strategy.num_replicas_in_sync:
        raise ValueError(f'{n_towers} towers cannot be shared evenly by {strategy.num_replicas_in_sync} replicas')

    def part_grads(part, part_seed):
        with tf.GradientTape() as tape:
            loss, cost = objective(part, part_seed)
            if loss_scale is not None:
                loss = loss * loss_scale.scale
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, params)], cost

    part_grads = tf.function(part_grads, jit_compile=True) if jit_compile else part_grads

    def replica_step(*batch):
        ctx = tf.distribute.get_replica_context()
        towers = (n_towers or ctx.num_replicas_in_sync) // ctx.num_replicas_in_sync  # this replica's towers
        first_tower = ctx.replica_id_in_sync_group * towers
        update_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(opt.t, tf.int32)])

        def part_seed(k):  # this replica's part k: part k % accum_steps of its tower k // accum_steps
            tower_seed = tf.random.experimental.stateless_fold_in(update_seed, first_tower + k // accum_steps)
            return tf.random.experimental.stateless_fold_in(tower_seed, k % accum_steps)

        n_parts = towers * accum_steps
        if n_parts == 1:
            return part_grads(batch, part_seed(0))
        sizes = [tf.shape(x)[0] // n_parts for x in batch]
        grads, cost = [tf.zeros_like(p) for p in params], 0.
        for k in tf.range(n_parts):  # a loop in the graph: one part's activations alive at a time
            g, c = part_grads(tuple(x[k * n:(k + 1) * n] for x, n in zip(batch, sizes)), part_seed(k))
            grads, cost = [a + b / n_parts for a, b in zip(grads, g)], cost + c / n_parts
        return grads, cost

    @tf.function(reduce_retracing=True)  # trimmed batches vary in length: one trace for all of them
    def train_step(*batch):
        grads, cost = strategy.run(replica_step, args=batch)
        grads = [strategy.reduce(tf.distribute.ReduceOp.MEAN, g, axis=None) for g in grads]
        cost = strategy.reduce(tf.distribute.ReduceOp.MEAN, cost, axis=None)
        if loss_scale is None:
            norm = tf.linalg.global_norm(grads)  # once: logged, and the clipping's
            return cost, opt.apply(grads, norm), norm
        grads = [g / loss_scale.scale for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        norm = tf.linalg.global_norm(grads)
        lrt = tf.cond(finite, lambda: opt.apply(grads, norm), opt.skip)
        loss_scale.update(finite)
        return cost, lrt, norm

    return train_step
