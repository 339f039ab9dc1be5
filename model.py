"""GPT-1 (Radford et al. 2018) as the original finetune-transformer-lm computes it: a 12-layer post-LayerNorm
decoder with a tied LM head and a linear classifier on the `_classify_` token. The weight files are weights.py's."""
import math
from typing import NamedTuple

import tensorflow as tf

from utils import InputError
from vocab import N_SPECIAL, Vocab
from weights import LAYER_PARAMS, load_openai_params, transfer


def gelu(x):
    return 0.5 * x * (1 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))


def swish(x):
    return x * tf.nn.sigmoid(x)


act_fns = {'relu': tf.nn.relu, 'swish': swish, 'gelu': gelu}
compute_dtypes = {'fp32': tf.float32, 'bf16': tf.bfloat16, 'fp16': tf.float16}


class Seeds:
    """A stream of stateless-dropout seeds: the k-th draw is `seed` folded with k, so the same seed gives the same
    masks in the same order of calls (one per dropout site)."""

    def __init__(self, seed):
        self.seed = seed
        self.k = 0

    def __call__(self):
        self.k += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.k)


def dropout(x, pdrop, train, seeds, noise_shape=None):
    """Inverted dropout with drop probability `pdrop`, in training only: each element (or each slice along the
    axes where noise_shape is 1) kept with probability 1 - pdrop and scaled by 1 / (1 - pdrop)."""
    if train and pdrop > 0:
        # Philox named explicitly: under XLA the automatic choice is a generator 100x slower on the CPU.
        u = tf.random.stateless_uniform(tf.shape(x) if noise_shape is None else noise_shape, seeds(), alg='philox')
        x = x * (tf.cast(u >= pdrop, x.dtype) * (1 / (1 - pdrop)))
    return x


def standardize(x, e):
    """(x - mean) / sqrt(variance + e) over the last axis, mean and variance in two passes as the original; and
    the reciprocal standard deviation (..., 1)."""
    u = tf.reduce_mean(x, axis=-1, keepdims=True)
    r = tf.math.rsqrt(tf.reduce_mean(tf.square(x - u), axis=-1, keepdims=True) + e)
    return (x - u) * r, r


def norm(x, g, b, e=1e-5):
    """LayerNorm over the last axis (in float32 whatever the dtype of x; the result in x's dtype)."""
    return tf.cast(standardize(tf.cast(x, tf.float32), e)[0] * g + b, x.dtype)


def in_float32(f):
    """f computed in float32 on an input of any float dtype, the result cast back to it."""
    return lambda x: tf.cast(f(tf.cast(x, tf.float32)), x.dtype)


# gelu and norm again, each forward and each gradient one XLA kernel: one pass over memory instead of a dozen,
# the same numbers to float rounding. XLA compiles a kernel once per input shape, about 0.1 s each. Both compute
# in float32 whatever the dtype of their input.

@tf.function(jit_compile=True)
def _gelu(x):
    return in_float32(gelu)(x)


@tf.function(jit_compile=True)
def _gelu_grad(x, dy):
    dtype, x, dy = x.dtype, tf.cast(x, tf.float32), tf.cast(dy, tf.float32)
    c = math.sqrt(2 / math.pi)
    t = tf.tanh(c * (x + 0.044715 * x * x * x))
    return tf.cast(dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)), dtype)


@tf.custom_gradient
def fused_gelu(x):
    return _gelu(x), lambda dy: _gelu_grad(x, dy)


@tf.function(jit_compile=True)
def _norm(x, g, b, e):
    return norm(x, g, b, e)


@tf.function(jit_compile=True)
def _norm_grad(x, g, dy, e):
    dtype, x, dy = x.dtype, tf.cast(x, tf.float32), tf.cast(dy, tf.float32)
    xhat, r = standardize(x, e)
    dxhat = dy * g
    dx = r * (dxhat - tf.reduce_mean(dxhat, -1, keepdims=True) - xhat * tf.reduce_mean(dxhat * xhat, -1, keepdims=True))
    axes = tf.range(tf.rank(x) - 1)
    return tf.cast(dx, dtype), tf.reduce_sum(dy * xhat, axes), tf.reduce_sum(dy, axes)


@tf.custom_gradient
def fused_norm(x, g, b, e=1e-5):
    return _norm(x, g, b, e), lambda dy: _norm_grad(x, g, dy, e)


fused_acts = {gelu: fused_gelu}


# The LM's cross-entropy over n_vocab classes, forward and gradient each one XLA kernel (TensorFlow's CPU kernel of
# sparse_softmax_cross_entropy_with_logits is 5x slower on pre-training's (K, 40478) logits). XLA compiles a kernel
# per shape: pre-training's batches have few.

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


def packed_mask(seg):
    """(B, 1, T, T) mask of packed sequences, seg (B, T) the segment of each position: 0 the shared prefix,
    1, 2, ... the continuations. Causal, and a continuation sees only the prefix and itself."""
    T = tf.shape(seg)[1]
    visible = tf.logical_or(tf.equal(seg[:, None, :], 0), tf.equal(seg[:, :, None], seg[:, None, :]))  # (B, T, T)
    return (causal_mask(T) * tf.cast(visible, tf.float32))[:, None]


def segment_mask(seg, n_parts=1):
    """(R, 1, L, L) mask of units packed end to end in rows, seg (R, L) 1 + each position's unit * n_parts + its
    part (0 where the row is empty): causal, and a position sees only the earlier positions of its own unit that
    are in its own part or in part 0. A training row's units are sequences (n_parts 1: a sequence sees only
    itself); an evaluation row's multiple-choice examples have n_parts 1 + n_choices (part 0 the context that
    every answer sees, part c + 1 answer c). Empty places see only empty places."""
    L = tf.shape(seg)[1]
    unit, part = (seg - 1) // n_parts, (seg - 1) % n_parts                                # empty: unit -1
    visible = tf.logical_and(tf.equal(unit[:, :, None], unit[:, None, :]),
                             tf.logical_or(tf.equal(part[:, None, :], 0), tf.equal(part[:, :, None], part[:, None, :])))
    return (causal_mask(L) * tf.cast(visible, tf.float32))[:, None]                       # (R, 1, L, L)


def mask_attn_weights(w, b):
    """The original's masking: w * b - 1e9 * (1 - b), so that softmax gives 0 where b is 0."""
    return w * b + -1e9 * (1 - b)


def attn(x, b, p, n_head, attn_pdrop, resid_pdrop, train, seeds):
    """Masked multi-head self-attention with its output projection: (B, T, C) -> (B, T, C); b the mask."""
    c = conv1d(x, p['attn/c_attn/w'], p['attn/c_attn/b'])           # (B, T, 3C)
    q, k, v = tf.split(c, 3, axis=2)
    q, k, v = split_heads(q, n_head), split_heads(k, n_head), split_heads(v, n_head)  # (B, H, T, D)
    w = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32)         # (B, H, T, T), softmax in float32
    w = w * tf.math.rsqrt(tf.cast(v.shape[-1], w.dtype))
    w = mask_attn_weights(w, b)
    w = tf.nn.softmax(w)
    w = dropout(w, attn_pdrop, train, seeds)
    a = merge_heads(tf.matmul(tf.cast(w, v.dtype), v))                 # (B, T, C)
    a = conv1d(a, p['attn/c_proj/w'], p['attn/c_proj/b'])
    return dropout(a, resid_pdrop, train, seeds)


def mlp(x, p, act, resid_pdrop, train, seeds):
    """Position-wise feed-forward: (B, T, C) -> (B, T, 4C) -> (B, T, C)."""
    h = act(conv1d(x, p['mlp/c_fc/w'], p['mlp/c_fc/b']))
    h2 = conv1d(h, p['mlp/c_proj/w'], p['mlp/c_proj/b'])
    return dropout(h2, resid_pdrop, train, seeds)


def block(x, b, p, n_head, act, attn_pdrop, resid_pdrop, train, seeds, ln=norm):
    """One post-LayerNorm transformer block; `ln` the LayerNorm (norm or fused_norm)."""
    a = attn(x, b, p, n_head, attn_pdrop, resid_pdrop, train, seeds)
    n = ln(x + a, p['ln_1/g'], p['ln_1/b'])
    m = mlp(n, p, act, resid_pdrop, train, seeds)
    return ln(n + m, p['ln_2/g'], p['ln_2/b'])


def embed(X, we):
    """Sum of the token and position embeddings: X (B, T, 2) -> (B, T, C)."""
    return tf.reduce_sum(tf.gather(we, X), axis=2)


class Path(NamedTuple):
    """How a run computes the same numbers (with dropout off): one value that the model, the train and evaluation
    steps, the optimiser and the batches read. `masked_lm`: the LM head only on real tokens; `fused`: gelu and
    LayerNorm as XLA kernels; `fused_adam`: Adam's update of a parameter one XLA kernel (opt.Adam's fused);
    `jit_compile`: the whole train and evaluation steps compiled by XLA; `packed`: multiple choice evaluated with
    each context once (Model.score_packed); `multiple`: batches padded to their longest sequence rounded up to a
    multiple of this, 0 to n_ctx (the original's padding); `packed_train`: each training tower's sequences packed
    end to end into rows of one shape for the whole run (pack.Packing, Model.packed_rows) instead of padded;
    `fixed_eval`: every evaluation batch of a split at one shape, its n_batch examples packed whole end to end into
    rows of one shape per split (pack.eval_batch, Model.score_rows)."""
    name: str
    masked_lm: bool
    fused: bool
    fused_adam: bool
    jit_compile: bool
    packed: bool
    multiple: int
    packed_train: bool = False
    fixed_eval: bool = False

    def pad_to(self, n_ctx):
        """The `multiple` a batch of the model's n_ctx is padded to (n_ctx: every batch padded to n_ctx)."""
        return self.multiple or n_ctx


PADDED = Path('padded', masked_lm=False, fused=False, fused_adam=False, jit_compile=False, packed=False,
              multiple=0)  # the original's computation, op by op
TRIMMED = Path('trimmed', masked_lm=True, fused=True, fused_adam=True, jit_compile=False, packed=True,
               multiple=1)  # each batch cut to its longest sequence (the default before packing)
DEFAULT = TRIMMED._replace(name='default', packed_train=True, fixed_eval=True)
XLA = Path('xla', masked_lm=False, fused=True, fused_adam=True, jit_compile=True, packed=True, multiple=8,
           packed_train=True, fixed_eval=True)  # one shape to compile (multiple: unpacked batches, few shapes)
PATHS = {path.name: path for path in (PADDED, TRIMMED, DEFAULT, XLA)}


def path_of(padded, xla):
    """The Path of train.py's --padded and --xla: --padded the original's computation (compiled by XLA with both)."""
    return PADDED._replace(jit_compile=xla) if padded else XLA if xla else DEFAULT


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


class Model(tf.Module):
    """The fine-tuning network. `params` holds its variables in the original's order and names, in float32.
    precision 'bf16' or 'fp16' computes the matmuls and carries the hidden states in that type (mixed precision,
    mainly for GPUs); LayerNorm, gelu, softmax, the classifier and the losses stay in float32."""

    def __init__(self, n_vocab, n_special, n_ctx, clf_token, n_embd=768, n_head=12, n_layer=12, embd_pdrop=0.1,
                 attn_pdrop=0.1, resid_pdrop=0.1, clf_pdrop=0.1, afn='gelu', precision='fp32', head=Head()):
        super().__init__(name='model')
        if afn not in act_fns:
            raise InputError(f"unknown --afn {afn!r}: choose one of {', '.join(act_fns)}")
        if precision not in compute_dtypes:
            raise InputError(f"unknown --precision {precision!r}: choose one of {', '.join(compute_dtypes)}")
        self.precision, self.compute_dtype = precision, compute_dtypes[precision]
        if n_embd % n_head:
            raise InputError(f"--n_embd {n_embd} is not a multiple of --n_head {n_head}")
        self.n_vocab, self.n_special, self.n_ctx, self.clf_token = n_vocab, n_special, n_ctx, clf_token
        self.n_embd, self.n_head, self.n_layer = n_embd, n_head, n_layer
        self.embd_pdrop, self.attn_pdrop, self.resid_pdrop, self.clf_pdrop = embd_pdrop, attn_pdrop, resid_pdrop, clf_pdrop
        self.act = act_fns[afn]
        self.head = head

        def normal(shape):
            return tf.random.normal(shape, stddev=0.02)

        def var(init, name):
            return tf.Variable(init, name='model/' + name)

        self.we = var(normal([n_vocab + n_special + n_ctx, n_embd]), 'we')
        nx = n_embd
        inits = {'attn/c_attn/w': lambda: normal([1, nx, 3 * nx]), 'attn/c_attn/b': lambda: tf.zeros([3 * nx]),
                 'attn/c_proj/w': lambda: normal([1, nx, nx]), 'attn/c_proj/b': lambda: tf.zeros([nx]),
                 'ln_1/g': lambda: tf.ones([nx]), 'ln_1/b': lambda: tf.zeros([nx]),
                 'mlp/c_fc/w': lambda: normal([1, nx, 4 * nx]), 'mlp/c_fc/b': lambda: tf.zeros([4 * nx]),
                 'mlp/c_proj/w': lambda: normal([1, 4 * nx, nx]), 'mlp/c_proj/b': lambda: tf.zeros([nx]),
                 'ln_2/g': lambda: tf.ones([nx]), 'ln_2/b': lambda: tf.zeros([nx])}
        self.h = [{k: var(inits[k](), f'h{l}/{k}') for k in LAYER_PARAMS} for l in range(n_layer)]
        n_out = 1 if head.pool == 'choices' else head.n_out
        self.clf_w = var(normal([nx, n_out]), 'clf/w')
        self.clf_b = var(tf.zeros([n_out]), 'clf/b')
        self.params = [self.we] + [p[k] for p in self.h for k in LAYER_PARAMS] + [self.clf_w, self.clf_b]

    def __call__(self, X, M, Y, train=False, seed=None, path=PADDED):
        """X int32 (n, n_seq, T, 2), M float32 (n, n_seq, T), Y (n) int32 class ids (float32 scores for a 'squared'
        head) with T <= n_ctx -> clf_logits (n, head.n_logits), clf_losses (n), lm_losses (n * n_seq). `seed`
        (int32 (2,)) seeds the dropout masks. `path` (Path) computes the same losses with less work:
        path.masked_lm the LM head only where M is 1, path.fused the XLA kernels of gelu and LayerNorm."""
        seeds, we = self.dropped_we(train, seed)
        T = tf.shape(X)[2]
        X = tf.reshape(X, [-1, T, 2])                                # (B, T, 2), B = n * n_seq
        M = tf.reshape(M, [-1, T])
        h = self.transformer(X, we, causal_mask(T), train, seeds, path.fused)   # (B, T, C)
        lm_losses = self.lm_losses(h, we, X, M, path.masked_lm)      # (B)
        pool_idx = tf.argmax(tf.cast(tf.equal(X[:, :, 0], self.clf_token), tf.float32), 1, output_type=tf.int32)
        clf_h = tf.gather(h, pool_idx, batch_dims=1)                 # (B, C)
        clf_logits = self.clf(tf.reshape(clf_h, [-1, self.head.n_seq, self.n_embd]), train, seeds)
        return clf_logits, self.clf_losses(clf_logits, Y), lm_losses

    def packed_rows(self, X, seg, clf_at, Y, train=False, seed=None, path=DEFAULT):
        """__call__'s outputs for sequences packed end to end in rows (pack.pack_parts): X int32 (R, L, 2) token
        and position ids (positions restarting at each sequence), seg int32 (R, L) 1 + each position's sequence
        (example i's sequence j is i * n_seq + j; 0 where the row is empty), clf_at int32 (n, n_seq) where each
        sequence's extract token lies (r * L + t), Y (n) -> clf_logits (n, head.n_logits), clf_losses (n),
        lm_losses (n * n_seq). A sequence sees only itself (segment_mask), so with dropout off these are
        __call__'s numbers; with dropout on the same sites draw masks of the rows' shapes, in the same order."""
        seeds, we = self.dropped_we(train, seed)
        h = self.transformer(X, we, segment_mask(seg), train, seeds, path.fused)            # (R, L, C)
        lm_losses = self.packed_lm_losses(h, we, X, seg, tf.shape(clf_at)[0] * self.head.n_seq, path.masked_lm)
        clf_h = tf.gather(tf.reshape(h, [-1, self.n_embd]), clf_at)                         # (n, n_seq, C)
        clf_logits = self.clf(clf_h, train, seeds)
        return clf_logits, self.clf_losses(clf_logits, Y), lm_losses

    def score_rows(self, X, seg, clf_at, Y, n_parts=1, fused=True):
        """Evaluation of examples packed whole end to end in rows (pack.eval_batch): X int32 (R, L, 2), seg int32
        (R, L) (segment_mask's, n_parts per unit: 1 for sequences, 1 + n_choices for packed multiple-choice
        examples), clf_at int32 (n, n_seq) each sequence's extract position r * L + t, Y (n) -> clf_logits,
        clf_losses: without dropout, __call__'s (and score_packed's)."""
        h = self.transformer(X, self.we, segment_mask(seg, n_parts), False, None, fused)          # (R, L, C)
        clf_logits = self.clf(tf.gather(tf.reshape(h, [-1, self.n_embd]), clf_at), False, None)
        return clf_logits, self.clf_losses(clf_logits, Y)

    def dropped_we(self, train, seed):
        """The stream of dropout seeds of one call (seed, or a random one in training) and `we` after its dropout:
        the call's first draw, one mask per call (per tower part and update)."""
        if train and seed is None:
            seed = tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int32)
        seeds = Seeds(seed)
        return seeds, dropout(self.we, self.embd_pdrop, train, seeds)

    def score_packed(self, X, seg, clf_idx, Y, fused=True):
        """Evaluation of packed multiple-choice examples, each [_start_] context [_delimiter_] answer1
        [_classify_] answer2 [_classify_] ... with each answer's positions restarting after the delimiter: X int32
        (n, T, 2), seg int32 (n, T) (packed_mask), clf_idx int32 (n, n_seq) the _classify_ positions. Without
        dropout the choices share the context's hidden states exactly, so this equals __call__'s clf_logits and
        clf_losses at less cost."""
        h = self.transformer(X, self.we, packed_mask(seg), False, None, fused)       # (n, T, C)
        clf_logits = self.clf(tf.gather(h, clf_idx, batch_dims=1), False, None)       # (n, n_seq)
        return clf_logits, self.clf_losses(clf_logits, Y)

    @property
    def lm_params(self):
        """The language model's parameters, those of the published files: we, then 12 per layer (params without
        the classifier)."""
        return self.params[:-2]

    def lm_cost(self, X, W, n_rows, train=False, seed=None, path=PADDED):
        """The pre-training LM loss of the paper's eq. (2), summed: sum over t >= 1 of W[:, t] * -log p(X[:, t, 0] |
        X[:, :t]), p the softmax of h . we^T over the first n_rows rows of `we` (the token rows), h the hidden
        state of the position before. X int32 (B, T, 2), W float32 (B, T) (W[:, 0] is not read). In training,
        dropout as in __call__: one mask of the whole `we` for this call, used by the input and the LM head.
        path.masked_lm: the LM head only where W > 0; path.fused: the XLA kernels of gelu and LayerNorm."""
        if train and seed is None:
            seed = tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int32)
        seeds = Seeds(seed)
        we = dropout(self.we, self.embd_pdrop, train, seeds=seeds)
        h = self.transformer(X, we, causal_mask(tf.shape(X)[1]), train, seeds, path.fused)[:, :-1]  # (B, T-1, C)
        targets, weights = X[:, 1:, 0], W[:, 1:]
        if path.masked_lm:
            idx = tf.where(weights > 0)                                                   # (K, 2)
            h, targets, weights = tf.gather_nd(h, idx), tf.gather_nd(targets, idx), tf.gather_nd(weights, idx)
        h = tf.reshape(h, [-1, self.n_embd])  # a matmul: einsum's gradient over '...' would hold (K, n_rows, C)
        rows = tf.split(we, [n_rows, we.shape[0] - n_rows])[0]  # (a slice's gradient is 7x slower than a split's)
        logits = tf.cast(tf.matmul(h, tf.cast(rows, h.dtype), transpose_b=True), tf.float32)  # (K, n_rows)
        xent = fused_xent if path.fused else lambda logits, labels: tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits)
        return tf.reduce_sum(xent(logits, tf.reshape(targets, [-1])) * tf.reshape(weights, [-1]))

    def lm_logits(self, X, at=None, n_rows=None, seg=None):
        """The LM head without dropout: h . we^T of X int32 (B, T, 2) over the first n_rows rows of `we` (default
        every row: tokens, specials and positions, as the LM loss sees them) -> (B, T, n_rows) float32; or only at
        the positions `at` int (K, 2) of (sequence, t) -> (K, n_rows). Row t predicts token t + 1 (of its own
        sequence). seg int32 (B, T): packed sequences (packed_mask: 0 a shared prefix, 1, 2, ... continuations
        that each see only the prefix and themselves, their positions in X their own); None: causal."""
        b = causal_mask(tf.shape(X)[1]) if seg is None else packed_mask(seg)
        h = self.transformer(X, self.we, b, False, None)                             # (B, T, C)
        h = h if at is None else tf.gather_nd(h, at)
        return tf.cast(tf.einsum('...c,vc->...v', h, tf.cast(self.we[:n_rows], h.dtype)), tf.float32)

    def lm_logprobs(self, X, at=None, n_rows=None, seg=None):
        """log p(token t + 1 | tokens up to t): the log-softmax of lm_logits(X, at, n_rows, seg), the distribution
        over its n_rows rows (generation and zero-shot scoring take n_rows = n_vocab, the text's tokens alone)."""
        return tf.nn.log_softmax(self.lm_logits(X, at, n_rows, seg))

    def transformer(self, X, we, b, train, seeds, fused=False):
        """Hidden states (B, T, C) of X (B, T, 2) under the attention mask b."""
        act, ln = (fused_acts.get(self.act, in_float32(self.act)), fused_norm) if fused else (in_float32(self.act), norm)
        h = tf.cast(embed(X, we), self.compute_dtype)
        for p in self.h:
            h = block(h, b, p, self.n_head, act, self.attn_pdrop, self.resid_pdrop, train, seeds, ln)
        return h

    def lm_losses(self, h, we, X, M, masked):
        """Per-sequence mean LM loss (B) of predicting X[:, 1:, 0] from h[:, :-1] over every row of we (tokens,
        specials and positions), weighted by M[:, 1:]. masked: only the rows where M[:, 1:] is 1."""
        targets, weights = X[:, 1:, 0], M[:, 1:]
        if masked:
            idx = tf.where(weights > 0)                                             # (K, 2)
            logits = tf.matmul(tf.gather_nd(h[:, :-1], idx), tf.cast(we, h.dtype), transpose_b=True)  # (K, V)
            logits = tf.cast(logits, tf.float32)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.gather_nd(targets, idx), logits=logits)
            total = tf.math.unsorted_segment_sum(losses * tf.gather_nd(weights, idx), idx[:, 0], tf.shape(h)[0])
        else:
            logits = tf.matmul(tf.reshape(h[:, :-1], [-1, self.n_embd]), tf.cast(we, h.dtype), transpose_b=True)
            logits = tf.cast(logits, tf.float32)                                                  # (B*(T-1), V)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(targets, [-1]), logits=logits)
            total = tf.reduce_sum(tf.reshape(losses, tf.shape(targets)) * weights, 1)
        return total / tf.reduce_sum(weights, 1)

    def packed_lm_losses(self, h, we, X, seg, n_seqs, masked):
        """Per-sequence mean LM loss (n_seqs) of packed rows h (R, L, C): position t predicts token t + 1 where
        both belong to the same sequence (seg, as packed_rows'), over every row of we. masked: the LM head only
        on those positions, else on all and weighted."""
        targets = X[:, 1:, 0]
        predicts = tf.logical_and(tf.equal(seg[:, 1:], seg[:, :-1]), seg[:, 1:] > 0)        # (R, L - 1)
        seq = tf.maximum(seg[:, 1:] - 1, 0)
        if masked:
            idx = tf.where(predicts)                                                        # (K, 2)
            logits = tf.matmul(tf.gather_nd(h[:, :-1], idx), tf.cast(we, h.dtype), transpose_b=True)  # (K, V)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.gather_nd(targets, idx),
                                                                    logits=tf.cast(logits, tf.float32))
            weights, seq = tf.ones_like(losses), tf.gather_nd(seq, idx)
        else:
            logits = tf.matmul(tf.reshape(h[:, :-1], [-1, self.n_embd]), tf.cast(we, h.dtype), transpose_b=True)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.reshape(targets, [-1]),
                                                                    logits=tf.cast(logits, tf.float32))
            weights, seq = tf.reshape(tf.cast(predicts, tf.float32), [-1]), tf.reshape(seq, [-1])
            losses = losses * weights
        total = tf.math.unsorted_segment_sum(losses, seq, n_seqs)
        return total / tf.math.unsorted_segment_sum(weights, seq, n_seqs)

    def clf(self, clf_h, train, seeds):
        """Logits (n, head.n_logits) of the extract hidden states clf_h (n, n_seq, C); in training, dropout with
        one mask shared by the sequences of an example (so that for 'sum' it is the mask of their sum)."""
        clf_h = tf.cast(clf_h, tf.float32)
        clf_h = dropout(clf_h, self.clf_pdrop, train, seeds,
                        noise_shape=tf.concat([tf.shape(clf_h)[:1], [1, self.n_embd]], 0))
        if self.head.pool == 'sum':
            return tf.matmul(tf.reduce_sum(clf_h, 1), self.clf_w) + self.clf_b                   # (n, n_out)
        clf_logits = tf.matmul(tf.reshape(clf_h, [-1, self.n_embd]), self.clf_w) + self.clf_b
        return tf.reshape(clf_logits, [-1, self.head.n_seq])                                     # (n, n_seq)

    def clf_losses(self, clf_logits, Y):
        """Per-example task loss (n): cross-entropy of the class ids Y, or the squared error of the one output
        against the scores Y ('squared')."""
        if self.head.loss == 'squared':
            return tf.square(clf_logits[:, 0] - tf.cast(Y, tf.float32))
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=Y, logits=clf_logits)

    def assign(self, arrays):
        """Set the first len(arrays) params (original order) from numpy arrays, checking every shape."""
        for p, a in zip(self.params, arrays):
            if tuple(p.shape) != tuple(a.shape):
                raise InputError(
                    f"array {p.name[:-2]} has shape {tuple(a.shape)} in the weights but {tuple(p.shape)} in the model "
                    f"(built with --n_embd {self.n_embd} --n_layer {self.n_layer} and n_ctx {self.n_ctx}; the "
                    f"pretrained GPT-1 has n_embd 768 and 12 layers): make the flags match the weights")
            p.assign(a)


# -------------------------------------------------------------------------- the pretrained language model alone

def language_model(n_vocab, n_ctx, n_embd=768, n_head=12, n_layer=12):
    """The network without dropout, for its LM head (Model.lm_logits): Model(n_vocab, 3 special rows, n_ctx)."""
    return Model(n_vocab, N_SPECIAL, n_ctx, Vocab(n_vocab).classify, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                 embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, clf_pdrop=0)


def load_language_model(model, model_dir):
    """Assign the original's files in model_dir (params_shapes.json, params_*.npy) to `model`'s `we` and every
    block, as fine-tuning loads them (weights.load_openai_params: the special rows drawn from numpy's generator,
    the positions cut to the model's n_ctx); the classifier is left as it is. InputError when the files hold
    another number of layers than the model."""
    arrays = load_openai_params(model_dir, model.n_ctx, model.n_special)
    n_layer = (len(arrays) - 1) // len(LAYER_PARAMS)
    if n_layer != model.n_layer:
        raise InputError(f"the weights in {model_dir!r} have {n_layer} layers but the model {model.n_layer}: pass "
                         f"--n_layer {n_layer} (and the --n_embd, --n_head of the model that wrote them)")
    model.assign(transfer(arrays, n_layer))
    return model


# -------------------------------------------------------------------------- what a run computes with the network

def tower_loss(clf_losses, lm_losses, lm_coef):
    """The fine-tuning objective of one tower (the paper's L3 = L2 + lambda L1): the mean classifier loss plus
    lm_coef times the mean LM loss; the classifier loss alone when lm_coef is 0."""
    if lm_coef > 0:
        return tf.reduce_mean(clf_losses) + lm_coef * tf.reduce_mean(lm_losses)
    return tf.reduce_mean(clf_losses)


def finetune_objective(model, lm_coef, path):
    """Fine-tuning's objective for loop.make_train_step: a part's batch, a dropout seed -> (tower_loss, the mean
    classifier loss that the run reports), computed along `path`: the batch is (X, M, Y), or with
    path.packed_train one part's packed rows (X, seg, clf_at, Y)."""
    def objective(batch, seed):
        if path.packed_train:  # pack.packed_train_batch's (X, seg, clf_at, Y)
            _, clf_losses, lm_losses = model.packed_rows(*batch, train=True, seed=seed, path=path)
        else:
            X, M, Y = batch
            _, clf_losses, lm_losses = model(X, M, Y, train=True, seed=seed, path=path)
        return tower_loss(clf_losses, lm_losses, lm_coef), tf.reduce_mean(clf_losses)
    return objective


def pretrain_objective(model, n_rows, path):
    """Pre-training's objective for loop.make_train_step: (X, W) of windows.lm_batch with W the weights of
    windows.weighted, a dropout seed -> (the mean over the part's rows of each row's weighted LM loss, the same):
    with those weights, the mean per predicted token of the whole global batch, however it is split."""
    def objective(batch, seed):
        X, W = batch
        loss = model.lm_cost(X, W, n_rows, train=True, seed=seed, path=path) / tf.cast(tf.shape(X)[0], tf.float32)
        return loss, loss
    return objective


def make_lm_eval_step(model, strategy, n_rows, path):
    """A tf.function scoring a batch of windows (X, M) already split over the replicas, without dropout -> the sum
    over the batch of M * the LM loss over the first n_rows rows of `we`, and the sum of M (summed over replicas);
    each replica's part compiled by XLA with path.jit_compile."""
    @tf.function(jit_compile=path.jit_compile)
    def replica_sums(X, M):
        return model.lm_cost(X, M, n_rows, path=path), tf.reduce_sum(M[:, 1:])

    @tf.function
    def eval_step(X, M):
        total, count = strategy.run(replica_sums, args=(X, M))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))
    return eval_step


def make_eval_step(model, packed, jit_compile=False, rows=False):
    """A tf.function scoring a batch of any size without dropout -> (clf_logits, clf_losses). rows: the batch is
    pack.eval_batch's (X, seg, clf_at, Y) (Model.score_rows; packed: multiple-choice examples, each its context
    and answers); else packed: inputs.packed_batch's (X, seg, clf_idx, Y) (multiple choice, Model.score_packed),
    else pad_batch's (X, M, Y)."""
    head = model.head
    Y_spec = tf.TensorSpec([None], tf.float32 if head.loss == 'squared' else tf.int32)
    if rows:
        n_parts = 1 + head.n_seq if packed else 1
        return tf.function(lambda X, seg, clf_at, Y: model.score_rows(X, seg, clf_at, Y, n_parts),
                           jit_compile=jit_compile,
                           input_signature=[tf.TensorSpec([None, None, 2], tf.int32),
                                            tf.TensorSpec([None, None], tf.int32),
                                            tf.TensorSpec([None, head.n_seq], tf.int32), Y_spec])
    if packed:
        return tf.function(model.score_packed, jit_compile=jit_compile,
                           input_signature=[tf.TensorSpec([None, None, 2], tf.int32),
                                            tf.TensorSpec([None, None], tf.int32),
                                            tf.TensorSpec([None, head.n_seq], tf.int32), Y_spec])
    return tf.function(lambda X, M, Y: model(X, M, Y, train=False)[:2], jit_compile=jit_compile,
                       input_signature=[tf.TensorSpec([None, head.n_seq, None, 2], tf.int32),
                                        tf.TensorSpec([None, head.n_seq, None], tf.float32), Y_spec])
