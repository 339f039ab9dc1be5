"""bench.py's baseline: the original finetune-transformer-lm's training and prediction graphs (its train.py model,
mgpu_train and mgpu_predict towers, and opt.py's adam), rebuilt op for op under tf.compat.v1 graph mode and run
in a tf.compat.v1.Session of their own tf.Graph, so that bench.py times the port against the original's
computation at the original's speed, in the same process, on the same weights and batches. Not used by train.py.

Kept from 2018: reference variables, the 1x1 convolution as a matmul, the -1e9 mask, TensorFlow 1.4's dropout ops
(x / keep * floor(keep + uniform)), the dense gradient of the embedding, one graph per tower on the same
variables, the gradients averaged by adding them, and adam's ops (clipping by the global norm, per-parameter
ops). Not kept: the towers' GPU placement (bench.py runs on one device); the step counter is read after its
increment, as SPEC.md measured the original's graph to do."""
import math

import tensorflow as tf

v1 = tf.compat.v1


def shape_list(x):
    """The static dimensions of x where known, else its dynamic ones."""
    static, dynamic = x.shape.as_list(), tf.shape(x)
    return [dynamic[i] if d is None else d for i, d in enumerate(static)]


def gelu(x):
    return 0.5 * x * (1 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


def dropout(x, pdrop, train, noise_shape=None):
    """tf.nn.dropout(x, 1 - pdrop) as TensorFlow 1.4 computed it."""
    if train and pdrop > 0:
        keep = 1 - pdrop
        mask = tf.floor(keep + v1.random_uniform(tf.shape(x) if noise_shape is None else noise_shape))
        x = x / keep * mask
    return x


def norm(x, scope, e=1e-5):
    with v1.variable_scope(scope):
        n_state = shape_list(x)[-1]
        g = v1.get_variable('g', [n_state], initializer=v1.constant_initializer(1))
        b = v1.get_variable('b', [n_state], initializer=v1.constant_initializer(0))
        u = tf.reduce_mean(x, axis=[-1], keepdims=True)
        s = tf.reduce_mean(tf.square(x - u), axis=[-1], keepdims=True)
        return (x - u) * tf.math.rsqrt(s + e) * g + b


def conv1d(x, scope, nf):
    with v1.variable_scope(scope):
        nx = shape_list(x)[-1]
        w = v1.get_variable('w', [1, nx, nf], initializer=v1.random_normal_initializer(stddev=0.02))
        b = v1.get_variable('b', [nf], initializer=v1.constant_initializer(0))
        return tf.reshape(tf.matmul(tf.reshape(x, [-1, nx]), tf.reshape(w, [-1, nf])) + b, shape_list(x)[:-1] + [nf])


def split_heads(x, n, k=False):
    """(B, T, C) -> (B, n, T, C // n), keys (B, n, C // n, T)."""
    shape = shape_list(x)
    x = tf.reshape(x, shape[:-1] + [n, shape[-1] // n])
    return tf.transpose(x, [0, 2, 3, 1] if k else [0, 2, 1, 3])


def merge_heads(x):
    x = tf.transpose(x, [0, 2, 1, 3])
    shape = shape_list(x)
    return tf.reshape(x, shape[:-2] + [shape[-2] * shape[-1]])


def attn(x, scope, n_head, hp, train):
    with v1.variable_scope(scope):
        c = conv1d(x, 'c_attn', 3 * shape_list(x)[-1])
        q, k, v = tf.split(c, 3, 2)
        q, k, v = split_heads(q, n_head), split_heads(k, n_head, k=True), split_heads(v, n_head)
        w = tf.matmul(q, k) * tf.math.rsqrt(tf.cast(shape_list(v)[-1], tf.float32))
        n = shape_list(w)[-1]
        b = tf.reshape(tf.linalg.band_part(tf.ones([n, n]), -1, 0), [1, 1, n, n])
        w = tf.nn.softmax(w * b + -1e9 * (1 - b))
        w = dropout(w, hp['attn_pdrop'], train)
        a = conv1d(merge_heads(tf.matmul(w, v)), 'c_proj', shape_list(x)[-1])
        return dropout(a, hp['resid_pdrop'], train)


def mlp(x, scope, hp, train):
    with v1.variable_scope(scope):
        nx = shape_list(x)[-1]
        h = gelu(conv1d(x, 'c_fc', 4 * nx))
        return dropout(conv1d(h, 'c_proj', nx), hp['resid_pdrop'], train)


def block(x, scope, hp, train):
    with v1.variable_scope(scope):
        n = norm(x + attn(x, 'attn', hp['n_head'], hp, train), 'ln_1')
        return norm(n + mlp(n, 'mlp', hp, train), 'ln_2')


@tf.custom_gradient
def dense_gradient(x):
    """The identity, whose gradient (the embedding lookup's sparse one) is made dense, as the original's
    convert_gradient_to_tensor."""
    return tf.identity(x), lambda dy: tf.convert_to_tensor(dy)


def model(X, M, Y, hp, train, reuse):
    """The original's model(): clf_logits (n, 2), clf_losses (n), lm_losses (2n) of X (n, 2, n_ctx, 2)."""
    n_ctx, n_embd = hp['n_ctx'], hp['n_embd']
    with v1.variable_scope('model', reuse=reuse, use_resource=False):
        we = v1.get_variable('we', [hp['n_vocab'] + hp['n_special'] + n_ctx, n_embd],
                             initializer=v1.random_normal_initializer(stddev=0.02))
        we = dropout(we, hp['embd_pdrop'], train)
        X = tf.reshape(X, [-1, n_ctx, 2])
        M = tf.reshape(M, [-1, n_ctx])
        h = tf.reduce_sum(tf.gather(dense_gradient(we), X), 2)
        for layer in range(hp['n_layer']):
            h = block(h, 'h%d' % layer, hp, train)

        lm_logits = tf.matmul(tf.reshape(h[:, :-1], [-1, n_embd]), we, transpose_b=True)
        lm_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=lm_logits, labels=tf.reshape(X[:, 1:, 0], [-1]))
        lm_losses = tf.reshape(lm_losses, [shape_list(X)[0], shape_list(X)[1] - 1])
        lm_losses = tf.reduce_sum(lm_losses * M[:, 1:], 1) / tf.reduce_sum(M[:, 1:], 1)

        pool_idx = tf.cast(tf.argmax(tf.cast(tf.equal(X[:, :, 0], hp['clf_token']), tf.float32), 1), tf.int32)
        clf_h = tf.gather(tf.reshape(h, [-1, n_embd]), tf.range(shape_list(X)[0], dtype=tf.int32) * n_ctx + pool_idx)
        clf_h = tf.reshape(clf_h, [-1, 2, n_embd])
        if train and hp['clf_pdrop'] > 0:
            shape = shape_list(clf_h)
            shape[1] = 1
            clf_h = dropout(clf_h, hp['clf_pdrop'], train, noise_shape=shape)
        with v1.variable_scope('clf'):
            w = v1.get_variable('w', [n_embd, 1], initializer=v1.random_normal_initializer(stddev=0.02))
            b = v1.get_variable('b', [1], initializer=v1.constant_initializer(0))
            clf_logits = tf.reshape(tf.matmul(tf.reshape(clf_h, [-1, n_embd]), w) + b, [-1, 2])
        clf_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=clf_logits, labels=Y)
        return clf_logits, clf_losses, lm_losses


def average(grads):
    """The towers' mean gradient as the original's average_grads: added one after the other, then divided."""
    if len(grads) == 1:
        return grads[0]
    grad = grads[0]
    for g in grads[1:]:
        grad += g
    return grad / len(grads)


def warmup_linear(x, warmup=0.002):
    s = tf.cast(x <= warmup, tf.float32)
    return (s * (x / warmup) + (1 - s)) * (1 - x)


def adam(params, grads, hp):
    """opt.py's adam with warmup_linear: one grouped op updating every parameter."""
    lr, b1, b2, e, l2 = hp['lr'], hp['b1'], hp['b2'], hp['e'], hp['l2']
    t = tf.Variable(0, dtype=tf.float32, trainable=False)
    tt = t + 1
    updates = [t.assign(tt)]
    if hp['max_grad_norm'] > 0:
        grads, _ = tf.clip_by_global_norm(grads, hp['max_grad_norm'])
    for p, g in zip(params, grads):
        m = tf.Variable(tf.zeros(p.shape), dtype=tf.float32, trainable=False)
        v = tf.Variable(tf.zeros(p.shape), dtype=tf.float32, trainable=False)
        lrt = lr * tf.sqrt(1 - b2 ** tt) / (1 - b1 ** tt)
        lrt *= warmup_linear(tt / hp['t_total'], hp['lr_warmup'])
        mt = b1 * m + (1 - b1) * g
        vt = b2 * v + (1 - b2) * g * g
        if (len(p.shape) > 1 or hp['vector_l2']) and l2 > 0:
            pt = p - lrt * (mt / (tf.sqrt(vt) + e) + l2 * p)
        else:
            pt = p - lrt * (mt / (tf.sqrt(vt) + e))
        updates.extend([m.assign(mt), v.assign(vt), p.assign(pt)])
    return tf.group(*updates)


DEFAULTS = dict(n_special=3, n_embd=768, n_head=12, n_layer=12, embd_pdrop=0.1, attn_pdrop=0.1, resid_pdrop=0.1,
                clf_pdrop=0.1, lm_coef=0.5, lr=6.25e-5, lr_warmup=0.002, b1=0.9, b2=0.999, e=1e-8, l2=0.01,
                vector_l2=False, max_grad_norm=1, n_gpu=1, seed=42)


class OriginalGraph:
    """The original's graphs for global batches of n_batch * n_gpu padded examples, X (n, 2, n_ctx, 2),
    M (n, 2, n_ctx), Y (n): `train` runs one update (mgpu_train + adam), `predict` the towers without dropout
    (mgpu_predict). hp: DEFAULTS overridden, plus n_vocab, n_ctx, clf_token, n_batch and t_total."""

    def __init__(self, **hp):
        hp = {**DEFAULTS, **hp}
        n, n_ctx = hp['n_batch'] * hp['n_gpu'], hp['n_ctx']
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.set_random_seed(hp['seed'])
            self.X = v1.placeholder(tf.int32, [n, 2, n_ctx, 2])
            self.M = v1.placeholder(tf.float32, [n, 2, n_ctx])
            self.Y = v1.placeholder(tf.int32, [n])
            towers, tower_grads = [], []
            for i, xs in enumerate(zip(*(tf.split(x, hp['n_gpu'], 0) for x in (self.X, self.M, self.Y)))):
                clf_logits, clf_losses, lm_losses = model(*xs, hp, train=True, reuse=True if i else None)
                loss = tf.reduce_mean(clf_losses)
                if hp['lm_coef'] > 0:
                    loss += hp['lm_coef'] * tf.reduce_mean(lm_losses)
                self.params = v1.trainable_variables('model')
                tower_grads.append(tf.gradients(loss, self.params))
                towers.append(clf_losses)
            grads = [average(gs) for gs in zip(*tower_grads)]
            self.train_op = adam(self.params, grads, hp)
            self.clf_loss = tf.reduce_mean(tf.concat(towers, 0))
            outs = [model(*xs, hp, train=False, reuse=True)
                    for xs in zip(*(tf.split(x, hp['n_gpu'], 0) for x in (self.X, self.M, self.Y)))]
            self.logits, self.clf_losses, self.lm_losses = (tf.concat(o, 0) for o in zip(*outs))
            self.values_in = [v1.placeholder(tf.float32, p.shape) for p in self.params]
            self.load_op = tf.group(*[p.assign(x) for p, x in zip(self.params, self.values_in)])
            self.eval_clf_loss = tf.reduce_mean(self.clf_losses)
            init = v1.global_variables_initializer()
        self.sess = v1.Session(graph=self.graph, config=v1.ConfigProto(allow_soft_placement=True))
        self.sess.run(init)

    def load(self, arrays):
        """Set the parameters (the original's order: we, 12 per layer, clf/w, clf/b) from numpy arrays."""
        self.sess.run(self.load_op, dict(zip(self.values_in, arrays)))

    def train(self, X, M, Y):
        """One update on the batch; its mean classifier loss."""
        return self.sess.run([self.train_op, self.clf_loss], {self.X: X, self.M: M, self.Y: Y})[1]

    def evaluate(self, X, M, Y):
        """clf_logits (n, 2) and the mean classifier loss without dropout, as the original's evaluation fetched
        them (the LM head is not computed)."""
        return self.sess.run([self.logits, self.eval_clf_loss], {self.X: X, self.M: M, self.Y: Y})

    def losses(self, X, M, Y):
        """clf_losses (n) and lm_losses (2n) without dropout."""
        return self.sess.run([self.clf_losses, self.lm_losses], {self.X: X, self.M: M, self.Y: Y})

    def values(self):
        return self.sess.run(self.params)

    def close(self):
        self.sess.close()
