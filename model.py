"""GPT-1 (Radford et al. 2018) as the original finetune-transformer-lm computes it, in the original's order: gelu,
norm, dropout, conv1d, attn, mlp, block, embed, then the model: one forward over rows of token and position ids
(each position with a segment id: the padded, packed and language-model masks all follow from the segments), and
the heads on its hidden states, the LM head and the classifier, with their losses. The speed kernels are in
engine/kernels.py, chosen by a Path's one switch `fused`; the weight files are formats/weights.py's, the pretrained
language model alone formats/language_model.py's."""
import math
from typing import NamedTuple

import tensorflow as tf

from engine import kernels
from engine.kernels import PADDED
from formats.weights import LAYER_PARAMS
from text_utils import N_SPECIAL, Vocab
from utils import InputError


def gelu(x):
    return 0.5 * x * (1 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


def swish(x):
    return x * tf.nn.sigmoid(x)


act_fns = {'relu': tf.nn.relu, 'swish': swish, 'gelu': gelu}
compute_dtypes = {'fp32': tf.float32, 'tf32': tf.float32, 'bf16': tf.bfloat16, 'fp16': tf.float16}  # tf32: float32
# tensors; only TensorFlow's TF32 setting differs (engine.devices.set_tf32, at a run's start)


def norm(x, g, b, e=1e-5):
    """LayerNorm over the last axis, mean and variance in two passes as the original; computed in float32 whatever
    the dtype of x, the result in x's dtype."""
    dtype, x = x.dtype, tf.cast(x, tf.float32)
    u = tf.reduce_mean(x, axis=-1, keepdims=True)
    s = tf.reduce_mean(tf.square(x - u), axis=-1, keepdims=True)
    return tf.cast((x - u) * tf.math.rsqrt(s + e) * g + b, dtype)


class Seeds:
    """The dropout seeds of one forward (default seed: random): the k-th draw is `seed` folded with k, the same
    masks in the same order for the same seed. A forward without Seeds has no dropout."""

    def __init__(self, seed=None):
        self.seed = tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int32) if seed is None else seed
        self.k = 0

    def __call__(self):
        self.k += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.k)


def dropout(x, pdrop, seeds, noise_shape=None):
    """Inverted dropout with drop probability `pdrop` when there are seeds (training): each element (or each slice
    along the axes where noise_shape is 1) kept with probability 1 - pdrop and scaled by 1 / (1 - pdrop)."""
    if seeds is not None and pdrop > 0:
        # Philox named explicitly: under XLA the automatic choice is a generator 100x slower on the CPU.
        u = tf.random.stateless_uniform(tf.shape(x) if noise_shape is None else noise_shape, seeds(), alg='philox')
        x = x * (tf.cast(u >= pdrop, x.dtype) * (1 / (1 - pdrop)))
    return x


def conv1d(x, w, b):
    """The original's 1x1 convolution: x (..., nx) times w (1, nx, nf) plus b (nf) -> (..., nf), in x's dtype."""
    nx, nf = w.shape[1], w.shape[2]
    c = tf.matmul(tf.reshape(x, [-1, nx]), tf.cast(tf.reshape(w, [nx, nf]), x.dtype)) + tf.cast(b, x.dtype)
    return tf.reshape(c, tf.concat([tf.shape(x)[:-1], [nf]], 0))


def split_heads(x, n_head):
    """(B, T, C) -> (B, n_head, T, C // n_head)."""
    B, T = tf.shape(x)[0], tf.shape(x)[1]
    return tf.transpose(tf.reshape(x, [B, T, n_head, x.shape[-1] // n_head]), [0, 2, 1, 3])


def merge_heads(x):
    """(B, n_head, T, D) -> (B, T, n_head * D)."""
    x = tf.transpose(x, [0, 2, 1, 3])
    B, T = tf.shape(x)[0], tf.shape(x)[1]
    return tf.reshape(x, [B, T, x.shape[-2] * x.shape[-1]])


def causal_mask(T):
    """(T, T): 1 where query t may attend to key s (s <= t), the lower triangle with the diagonal."""
    return tf.linalg.band_part(tf.ones([T, T]), -1, 0)


def segment_mask(seg, n_parts=1):
    """(B, 1, T, T) mask of units packed end to end in rows, seg (B, T) 1 + each position's unit * n_parts + its
    part (0 where the row is empty): causal, and a position sees the earlier positions of its own unit in its own
    part or in part 0. Training rows: units are sequences (n_parts 1). Evaluation rows: a multiple-choice example
    is a unit of 1 + n_choices parts (its context, then its answers); zero-shot scoring: a context, then its
    continuations. Empty places see only empty places."""
    T = tf.shape(seg)[1]
    unit, part = (seg - 1) // n_parts, (seg - 1) % n_parts                                # empty: unit -1
    visible = tf.logical_and(tf.equal(unit[:, :, None], unit[:, None, :]),
                             tf.logical_or(tf.equal(part[:, None, :], 0), tf.equal(part[:, :, None], part[:, None, :])))
    return (causal_mask(T) * tf.cast(visible, tf.float32))[:, None]                       # (B, 1, T, T)


def mask_attn_weights(w, b):
    """The original's masking: w * b - 1e9 * (1 - b), so that softmax gives 0 where b is 0."""
    return w * b + -1e9 * (1 - b)


def attn(x, b, p, cfg, seeds):
    """Masked multi-head self-attention with its output projection: (B, T, C) -> (B, T, C); b the mask."""
    c = conv1d(x, p['attn/c_attn/w'], p['attn/c_attn/b'])                               # (B, T, 3C)
    q, k, v = (split_heads(t, cfg.n_head) for t in tf.split(c, 3, axis=2))              # (B, H, T, D)
    w = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32)                          # (B, H, T, T), in float32
    w = w * tf.math.rsqrt(tf.cast(v.shape[-1], w.dtype))
    w = mask_attn_weights(w, b)
    w = tf.nn.softmax(w)
    w = dropout(w, cfg.attn_pdrop, seeds)
    a = merge_heads(tf.matmul(tf.cast(w, v.dtype), v))                                  # (B, T, C)
    a = conv1d(a, p['attn/c_proj/w'], p['attn/c_proj/b'])
    return dropout(a, cfg.resid_pdrop, seeds)


def mlp(x, p, cfg, act, seeds):
    """Position-wise feed-forward: (B, T, C) -> (B, T, 4C) -> (B, T, C)."""
    h = act(conv1d(x, p['mlp/c_fc/w'], p['mlp/c_fc/b']))
    h2 = conv1d(h, p['mlp/c_proj/w'], p['mlp/c_proj/b'])
    return dropout(h2, cfg.resid_pdrop, seeds)


def block(x, b, p, cfg, act, ln, seeds):
    """One post-LayerNorm transformer block; `act` and `ln` the activation and LayerNorm (kernels.ops)."""
    a = attn(x, b, p, cfg, seeds)
    n = ln(x + a, p['ln_1/g'], p['ln_1/b'])
    m = mlp(n, p, cfg, act, seeds)
    return ln(n + m, p['ln_2/g'], p['ln_2/b'])


def embed(X, we):
    """Sum of the token and position embeddings: X (B, T, 2) -> (B, T, C)."""
    return tf.reduce_sum(tf.gather(we, X), axis=2)


class Head(NamedTuple):
    """The task's head on the `_classify_` (extract) token's hidden states, the paper's section 3.3: an example is
    n_seq sequences; `pool` 'choices' scores each sequence with one output (clf/w (C, 1)) and takes the softmax over
    them (multiple choice; the original's ROCStories, the default); 'sum' adds the n_seq hidden states (similarity's
    two orders; a single sequence is unchanged) and gives n_out outputs (clf/w (C, n_out)). `loss` 'softmax' is the
    cross-entropy on class ids, 'squared' the squared error of the single output on a float score (STS-B)."""
    n_seq: int = 2
    n_out: int = 1
    pool: str = 'choices'
    loss: str = 'softmax'

    @property
    def n_logits(self):
        """Logits per example: one per choice, else n_out."""
        return self.n_seq if self.pool == 'choices' else self.n_out


class Config(NamedTuple):
    """The network's shape and dropouts. `we` has n_vocab + n_special + n_ctx rows (pieces, special tokens,
    positions: text_utils.Vocab); n_special 3 to fine-tune, 0 to pre-train; head None: no classifier. precision
    'bf16' or 'fp16': the matmuls and hidden states in that type; LayerNorm, gelu, softmax, the classifier and the
    losses stay in float32."""
    n_vocab: int
    n_ctx: int
    n_special: int = N_SPECIAL
    n_embd: int = 768
    n_head: int = 12
    n_layer: int = 12
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    clf_pdrop: float = 0.1
    afn: str = 'gelu'
    precision: str = 'fp32'
    head: Head = Head()

    def without_dropout(self):
        return self._replace(embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, clf_pdrop=0)


class Model(tf.Module):
    """GPT-1: `params` holds its variables in the original's order and names (we, 12 per block, clf/w, clf/b), in
    float32. Fine-tuning, pre-training, zero-shot scoring and generation all run its one forward."""

    def __init__(self, cfg):
        super().__init__(name='model')
        if cfg.afn not in act_fns:
            raise InputError(f"unknown --afn {cfg.afn!r}: choose one of {', '.join(act_fns)}")
        if cfg.precision not in compute_dtypes:
            raise InputError(f"unknown --precision {cfg.precision!r}: choose one of {', '.join(compute_dtypes)}")
        if cfg.n_embd % cfg.n_head:
            raise InputError(f"--n_embd {cfg.n_embd} is not a multiple of --n_head {cfg.n_head}")
        self.cfg, self.compute_dtype, self.act = cfg, compute_dtypes[cfg.precision], act_fns[cfg.afn]
        self.clf_token = Vocab(cfg.n_vocab).classify if cfg.n_special else None
        nx = cfg.n_embd

        def normal(shape):
            return tf.random.normal(shape, stddev=0.02)

        def var(init, name):
            return tf.Variable(init, name='model/' + name)

        self.we = var(normal([Vocab(cfg.n_vocab, cfg.n_special).rows(cfg.n_ctx), nx]), 'we')
        inits = {'attn/c_attn/w': lambda: normal([1, nx, 3 * nx]), 'attn/c_attn/b': lambda: tf.zeros([3 * nx]),
                 'attn/c_proj/w': lambda: normal([1, nx, nx]), 'attn/c_proj/b': lambda: tf.zeros([nx]),
                 'ln_1/g': lambda: tf.ones([nx]), 'ln_1/b': lambda: tf.zeros([nx]),
                 'mlp/c_fc/w': lambda: normal([1, nx, 4 * nx]), 'mlp/c_fc/b': lambda: tf.zeros([4 * nx]),
                 'mlp/c_proj/w': lambda: normal([1, 4 * nx, nx]), 'mlp/c_proj/b': lambda: tf.zeros([nx]),
                 'ln_2/g': lambda: tf.ones([nx]), 'ln_2/b': lambda: tf.zeros([nx])}
        self.h = [{k: var(inits[k](), f'h{l}/{k}') for k in LAYER_PARAMS} for l in range(cfg.n_layer)]
        self.params = [self.we] + [p[k] for p in self.h for k in LAYER_PARAMS]
        if cfg.head is not None:
            n_out = 1 if cfg.head.pool == 'choices' else cfg.head.n_out
            self.clf_w, self.clf_b = var(normal([nx, n_out]), 'clf/w'), var(tf.zeros([n_out]), 'clf/b')
            self.params += [self.clf_w, self.clf_b]

    def __call__(self, X, seg=None, n_parts=1, seeds=None, fused=False):
        """The forward: X int32 (B, T, 2) token ids and position ids, T <= n_ctx -> the hidden states h (B, T, C) and
        `we` as this forward used it (after its dropout: one mask for the call, shared by the LM head). seg int32
        (B, T): the segment of each position (segment_mask, n_parts per unit); None: each row one sequence (the
        causal mask; a padded row's padding attends like a token, as the original). seeds: dropout on (training),
        its masks drawn in order: `we`, then per block attn, its projection, the MLP. fused: the kernels."""
        we = dropout(self.we, self.cfg.embd_pdrop, seeds)
        b = causal_mask(tf.shape(X)[1]) if seg is None else segment_mask(seg, n_parts)
        act, ln = kernels.ops(fused, self.act, gelu, norm)
        h = tf.cast(embed(X, we), self.compute_dtype)
        for p in self.h:
            h = block(h, b, p, self.cfg, act, ln, seeds)
        return h, we

    def lm_head(self, h, we, n_rows=None):
        """The LM head: h (..., C) . we^T over the first n_rows rows of `we` (default every row: tokens, specials and
        positions, as the original's loss) -> (..., n_rows) float32. Row t predicts token t + 1."""
        rows = we if n_rows is None else tf.split(we, [n_rows, we.shape[0] - n_rows])[0]  # a slice's gradient: 7x
        flat = tf.reshape(h, [-1, self.cfg.n_embd])  # a matmul: einsum's gradient over '...' would hold (K, V, C)
        logits = tf.cast(tf.matmul(flat, tf.cast(rows, h.dtype), transpose_b=True), tf.float32)
        return tf.reshape(logits, tf.concat([tf.shape(h)[:-1], [-1]], 0))

    def lm_losses(self, h, we, X, M, seg=None, n_seqs=None, n_rows=None, masked=False, xent=None):
        """The LM loss of each sequence, summed over the tokens it predicts, and their weight: (total, count), each
        (n_seqs,). Position t predicts X[:, t + 1, 0] with weight M[:, t + 1] (M (B, T) float32; its column 0 is
        not read) where t and t + 1 hold the same sequence: with seg None each row is one sequence (n_seqs = B),
        else seg's sequences (1 + the sequence's index, 0 where the row is empty). masked: the LM head only where
        the weight is not 0. xent: the cross-entropy (default TensorFlow's; kernels.fused_xent)."""
        xent = xent or (lambda logits, labels: tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        targets, weights = X[:, 1:, 0], M[:, 1:]
        seq = tf.broadcast_to(tf.range(tf.shape(X)[0])[:, None], tf.shape(targets))
        if seg is not None:
            weights *= tf.cast(tf.logical_and(tf.equal(seg[:, 1:], seg[:, :-1]), seg[:, 1:] > 0), weights.dtype)
            seq = tf.maximum(seg[:, 1:] - 1, 0)
        n_seqs = tf.shape(X)[0] if n_seqs is None else n_seqs
        if masked:
            idx = tf.where(weights > 0)                                                    # (K, 2)
            losses = xent(self.lm_head(tf.gather_nd(h[:, :-1], idx), we, n_rows), tf.gather_nd(targets, idx))
            total = tf.math.unsorted_segment_sum(losses * tf.gather_nd(weights, idx), tf.gather_nd(seq, idx), n_seqs)
        else:
            logits = self.lm_head(h[:, :-1], we, n_rows)                                # (B, T - 1, V)
            losses = xent(tf.reshape(logits, [-1, tf.shape(logits)[-1]]), tf.reshape(targets, [-1]))
            losses = tf.reshape(losses, tf.shape(targets)) * weights
            total = tf.reduce_sum(losses, 1) if seg is None else tf.math.unsorted_segment_sum(losses, seq, n_seqs)
        count = tf.reduce_sum(weights, 1) if seg is None else tf.math.unsorted_segment_sum(weights, seq, n_seqs)
        return total, count

    def clf_head(self, h, clf_at, seeds=None):
        """The classifier head: logits (n, head.n_logits) of the hidden states (B, T, C) at the extract positions
        clf_at int32 (n, n_seq) (row * T + t); with seeds, dropout with one mask shared by an example's sequences (so
        that for 'sum' it is the mask of their sum)."""
        head, C = self.cfg.head, self.cfg.n_embd
        clf_h = tf.cast(tf.gather(tf.reshape(h, [-1, C]), clf_at), tf.float32)             # (n, n_seq, C)
        clf_h = dropout(clf_h, self.cfg.clf_pdrop, seeds, noise_shape=tf.concat([tf.shape(clf_h)[:1], [1, C]], 0))
        if head.pool == 'sum':
            return tf.matmul(tf.reduce_sum(clf_h, 1), self.clf_w) + self.clf_b                 # (n, n_out)
        clf_logits = tf.matmul(tf.reshape(clf_h, [-1, C]), self.clf_w) + self.clf_b
        return tf.reshape(clf_logits, [-1, head.n_seq])                                        # (n, n_seq)

    def clf_losses(self, clf_logits, Y):
        """Per-example task loss (n): cross-entropy of the class ids Y, or the squared error of the one output
        against the scores Y ('squared')."""
        if self.cfg.head.loss == 'squared':
            return tf.square(clf_logits[:, 0] - tf.cast(Y, tf.float32))
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=Y, logits=clf_logits)

    def assign(self, arrays):
        """Set the first len(arrays) params (original order) from numpy arrays, checking every shape."""
        for p, a in zip(self.params, arrays):
            if tuple(p.shape) != tuple(a.shape):
                raise InputError(
                    f"array {p.name[:-2]} has shape {tuple(a.shape)} in the weights but {tuple(p.shape)} in the model "
                    f"(built with --n_embd {self.cfg.n_embd} --n_layer {self.cfg.n_layer} and n_ctx {self.cfg.n_ctx}; "
                    f"the pretrained GPT-1 has n_embd 768 and 12 layers): make the flags match the weights")
            p.assign(a)


# ----------------------------------------------------------------------------- what a run computes with it

def rows_of(batch, clf_token):
    """A fine-tuning batch as the forward's rows: (X (B, T, 2), seg (B, T) or None, M (B, T), clf_at (n, n_seq), Y).
    The batch is padded, (X int32 (n, n_seq, T, 2), M float32 (n, n_seq, T), Y): a row per sequence, its extract
    token the first `_classify_`; or packed rows, (X (R, L, 2), seg (R, L), clf_at, Y) (inputs.packed_train_batch,
    inputs.eval_batch)."""
    if len(batch) == 4:
        X, seg, clf_at, Y = batch
        return X, seg, tf.cast(seg > 0, tf.float32), clf_at, Y
    X, M, Y = batch
    n_seq, T = tf.shape(X)[1], tf.shape(X)[2]
    X, M = tf.reshape(X, [-1, T, 2]), tf.reshape(M, [-1, T])                               # (B, T, 2), B = n * n_seq
    first = tf.argmax(tf.cast(tf.equal(X[:, :, 0], clf_token), tf.float32), 1, output_type=tf.int32)
    clf_at = tf.reshape(tf.range(tf.shape(X)[0]) * T + first, [-1, n_seq])
    return X, None, M, clf_at, Y


def finetune_losses(model, batch, train=False, seed=None, path=PADDED):
    """clf_logits (n, head.n_logits), clf_losses (n) and the mean LM loss of each sequence lm_losses (n * n_seq) of
    a fine-tuning batch (rows_of's, padded or packed). train: dropout, its masks from `seed` (int32 (2,); default
    random). path: fused the kernels, masked_lm the LM head only on real tokens. A packed sequence sees only itself:
    without dropout, the padded batch's numbers."""
    X, seg, M, clf_at, Y = rows_of(batch, model.clf_token)
    seeds = Seeds(seed) if train else None
    h, we = model(X, seg, seeds=seeds, fused=path.fused)
    total, count = model.lm_losses(h, we, X, M, seg, tf.size(clf_at), masked=path.masked_lm)
    clf_logits = model.clf_head(h, clf_at, seeds)
    return clf_logits, model.clf_losses(clf_logits, Y), total / count


def evaluate_batch(model, batch, n_parts=1, fused=False):
    """(clf_logits, clf_losses) of a batch without dropout and without the LM head: rows_of's, or evaluation rows
    (inputs.eval_batch: n_parts 1 + n_choices where a multiple-choice example is packed whole)."""
    X, seg, _, clf_at, Y = rows_of(batch, model.clf_token)
    h, _ = model(X, seg, n_parts, fused=fused)
    clf_logits = model.clf_head(h, clf_at)
    return clf_logits, model.clf_losses(clf_logits, Y)


def tower_loss(clf_losses, lm_losses, lm_coef):
    """The fine-tuning objective of one tower (the paper's L3 = L2 + lambda L1): the mean classifier loss plus
    lm_coef times the mean LM loss; the classifier loss alone when lm_coef is 0."""
    if lm_coef > 0:
        return tf.reduce_mean(clf_losses) + lm_coef * tf.reduce_mean(lm_losses)
    return tf.reduce_mean(clf_losses)


def finetune_objective(model, lm_coef, path):
    """Fine-tuning's objective for opt.make_update: a tower part's batch, a dropout seed -> (tower_loss, the mean
    classifier loss that the run reports), computed along `path`."""
    def objective(batch, seed):
        _, clf_losses, lm_losses = finetune_losses(model, batch, train=True, seed=seed, path=path)
        return tower_loss(clf_losses, lm_losses, lm_coef), tf.reduce_mean(clf_losses)
    return objective


def lm_cost(model, X, W, n_rows, train=False, seed=None, path=PADDED):
    """Pre-training's LM loss, the paper's eq. (2), summed: sum over t >= 1 of W[:, t] * -log p(X[:, t, 0] |
    X[:, :t]), p the softmax over the first n_rows rows of `we` (the token rows). X int32 (B, T, 2), W float32 (B,
    T). train: dropout as in fine-tuning. path: fused the kernels (the cross-entropy too), masked_lm the LM head
    only where W > 0."""
    h, we = model(X, seeds=Seeds(seed) if train else None, fused=path.fused)
    total, _ = model.lm_losses(h, we, X, W, n_rows=n_rows, masked=path.masked_lm,
                               xent=kernels.fused_xent if path.fused else None)
    return tf.reduce_sum(total)


def pretrain_objective(model, n_rows, path):
    """Pre-training's objective for opt.make_update: (X, W) of windows.lm_batch with W the weights of
    windows.weighted, a dropout seed -> (the mean over the part's rows of each row's weighted LM loss, the same):
    with those weights, the mean per predicted token of the whole global batch, however it is split."""
    def objective(batch, seed):
        X, W = batch
        loss = lm_cost(model, X, W, n_rows, train=True, seed=seed, path=path) / tf.cast(tf.shape(X)[0], tf.float32)
        return loss, loss
    return objective


def lm_logits(model, X, at=None, n_rows=None, seg=None, n_parts=1):
    """The LM head without dropout over the first n_rows rows of `we` (default every row) for X int32 (B, T, 2) ->
    (B, T, n_rows) float32; or only at the positions `at` int (K, 2) of (row, t) -> (K, n_rows). Row t predicts
    token t + 1 of its sequence. seg, n_parts: the forward's (zero-shot scoring packs an example's continuations
    after its context)."""
    h, we = model(X, seg, n_parts)
    return model.lm_head(h if at is None else tf.gather_nd(h, at), we, n_rows)


def lm_logprobs(model, X, at=None, n_rows=None, seg=None, n_parts=1):
    """log p(token t + 1 | its sequence up to t): the log-softmax of lm_logits, the distribution over its n_rows
    rows (generation and zero-shot scoring take n_rows = n_vocab, the text's tokens alone)."""
    return tf.nn.log_softmax(lm_logits(model, X, at, n_rows, seg, n_parts))
