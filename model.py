"""GPT-1 (Radford et al. 2018) as the original finetune-transformer-lm computes it: a 12-layer post-LayerNorm
decoder with a tied LM head and a linear classifier on the `_classify_` token; and its pretrained weights."""
import glob
import json
import math
import os
import pickle
import re
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

from utils import InputError, download_command

LAYER_PARAMS = ['attn/c_attn/w', 'attn/c_attn/b', 'attn/c_proj/w', 'attn/c_proj/b', 'ln_1/g', 'ln_1/b',
                'mlp/c_fc/w', 'mlp/c_fc/b', 'mlp/c_proj/w', 'mlp/c_proj/b', 'ln_2/g', 'ln_2/b']


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

    def __call__(self, X, M, Y, train=False, seed=None, masked_lm=False, fused=False):
        """X int32 (n, n_seq, T, 2), M float32 (n, n_seq, T), Y (n) int32 class ids (float32 scores for a 'squared'
        head) with T <= n_ctx -> clf_logits (n, head.n_logits), clf_losses (n), lm_losses (n * n_seq). `seed`
        (int32 (2,)) seeds the dropout masks.
        The same losses with less work: masked_lm computes the LM head only where M is 1, fused uses the XLA
        kernels of gelu and LayerNorm."""
        if train and seed is None:
            seed = tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int32)
        seeds = Seeds(seed)
        we = dropout(self.we, self.embd_pdrop, train, seeds)       # one mask per call: per tower (part) and update
        T = tf.shape(X)[2]
        X = tf.reshape(X, [-1, T, 2])                                # (B, T, 2), B = n * n_seq
        M = tf.reshape(M, [-1, T])
        h = self.transformer(X, we, causal_mask(T), train, seeds, fused)   # (B, T, C)
        lm_losses = self.lm_losses(h, we, X, M, masked_lm)           # (B)
        pool_idx = tf.argmax(tf.cast(tf.equal(X[:, :, 0], self.clf_token), tf.float32), 1, output_type=tf.int32)
        clf_h = tf.gather(h, pool_idx, batch_dims=1)                 # (B, C)
        clf_logits = self.clf(tf.reshape(clf_h, [-1, self.head.n_seq, self.n_embd]), train, seeds)
        return clf_logits, self.clf_losses(clf_logits, Y), lm_losses

    def score_packed(self, X, seg, clf_idx, Y, fused=True):
        """Evaluation of packed multiple-choice examples, each [_start_] context [_delimiter_] answer1
        [_classify_] answer2 [_classify_] ... with each answer's positions restarting after the delimiter: X int32
        (n, T, 2), seg int32 (n, T) (packed_mask), clf_idx int32 (n, n_seq) the _classify_ positions. Without
        dropout the choices share the context's hidden states exactly, so this equals __call__'s clf_logits and
        clf_losses at less cost."""
        h = self.transformer(X, self.we, packed_mask(seg), False, None, fused)       # (n, T, C)
        clf_logits = self.clf(tf.gather(h, clf_idx, batch_dims=1), False, None)       # (n, n_seq)
        return clf_logits, self.clf_losses(clf_logits, Y)

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


def special_embeddings(n_special, n_embd):
    """The rows of the special tokens, drawn from numpy's global generator exactly as the original (float64
    normal times 0.02, then cast): a run seeded with --seed gets the original's rows."""
    return (np.random.randn(n_special, n_embd) * 0.02).astype(np.float32)


def shard_paths(model_dir):
    """params_0.npy, params_1.npy, ... in `model_dir`: however many there are, numbered without a gap."""
    found = {int(m.group(1)): path for path in glob.glob(os.path.join(model_dir, 'params_*.npy'))
             if (m := re.fullmatch(r'params_(\d+)\.npy', os.path.basename(path)))}
    if not found:
        raise InputError(f"no weight shards params_0.npy, params_1.npy, ... in {model_dir!r}: "
                         f"run `{download_command(model_dir)}`")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise InputError(f"weight shard {os.path.join(model_dir, f'params_{missing[0]}.npy')!r} is missing "
                         f"(shards are numbered from 0 without a gap): run `{download_command(model_dir)}`")
    return [found[i] for i in range(len(found))]


def load_shard(path):
    """One shard: a flat float32 array; InputError when the file is truncated or of another kind."""
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise InputError(f"weight shard {path!r} is truncated or not a .npy file ({err}): "
                         f"run `{download_command(os.path.dirname(path))}` (it replaces a damaged file)") from err
    if a.dtype != np.float32 or a.ndim != 1:
        raise InputError(f"weight shard {path!r} holds a {a.dtype} array of shape {a.shape}, expected a flat "
                         f"float32 array: run `{download_command(os.path.dirname(path))}` (it replaces a damaged file)")
    return a


def load_openai_params(model_dir, n_ctx, n_special):
    """The pretrained arrays in the original's order, ready to assign: [we, then 12 per layer], where
    we = (token rows, n_special fresh rows, the first n_ctx position rows), shape (n_vocab + n_special + n_ctx, n_embd)."""
    if not os.path.isdir(model_dir):
        raise InputError(f"weights folder {model_dir!r} not found: run `{download_command(model_dir)}` "
                         "to fetch the pretrained GPT-1 (or pass --n_transfer -1 to train from scratch)")
    shapes_path = os.path.join(model_dir, 'params_shapes.json')
    if not os.path.isfile(shapes_path):
        raise InputError(f"{shapes_path!r} not found: run `{download_command(model_dir)}`")
    try:
        with open(shapes_path, encoding='utf-8') as f:
            shapes = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{shapes_path!r} is not a JSON file ({err}): "
                         f"run `{download_command(model_dir)}`") from err
    if not (isinstance(shapes, list) and len(shapes) > 2 and (len(shapes) - 2) % len(LAYER_PARAMS) == 0 and all(
            isinstance(shape, list) and all(type(n) is int and n > 0 for n in shape) for shape in shapes)
            and len(shapes[0]) == len(shapes[1]) == 2 and shapes[0][1] == shapes[1][1]):
        raise InputError(f"{shapes_path!r} is not the list of the pretrained arrays' shapes (positions, tokens, then "
                         f"{len(LAYER_PARAMS)} per layer): run `{download_command(model_dir)}`")
    flat = np.concatenate([load_shard(path) for path in shard_paths(model_dir)], 0)
    offsets = np.cumsum([np.prod(shape) for shape in shapes])
    if len(flat) != offsets[-1]:
        raise InputError(f"the shards in {model_dir!r} hold {len(flat)} values but params_shapes.json describes "
                         f"{offsets[-1]}: a shard is missing or from another model; "
                         f"run `{download_command(model_dir)}`")
    params = [p.reshape(shape) for p, shape in zip(np.split(flat, offsets)[:-1], shapes)]
    positions, tokens = params[0], params[1]
    if n_ctx > len(positions):
        raise InputError(f"n_ctx {n_ctx} is larger than the {len(positions)} positions of the pretrained weights: "
                         f"pass --n_ctx {len(positions)} or less")
    we = np.concatenate([tokens, special_embeddings(n_special, tokens.shape[1]), positions[:n_ctx]], 0)
    return [we] + params[2:]


def transfer(init_params, n_transfer):
    """The arrays that --n_transfer loads: none for -1, else we and the first n_transfer layers."""
    if n_transfer == -1:
        return []
    n_layers = (len(init_params) - 1) // len(LAYER_PARAMS)
    if not 0 <= n_transfer <= n_layers:
        raise InputError(f"--n_transfer {n_transfer} asks for more layers than the {n_layers} of the pretrained "
                         f"weights: pass --n_transfer {n_layers} or less (-1 loads nothing)")
    return init_params[:1 + len(LAYER_PARAMS) * n_transfer]


class _Float32ArrayWrapper(NumpyArrayWrapper):
    """joblib's placeholder of an array in its pickle, read only when it describes a float32 array that the rest
    of the file can hold (an object array would be read with pickle)."""

    def read(self, unpickler, *args, **kwargs):
        shape = getattr(self, 'shape', None)
        if not (isinstance(getattr(self, 'dtype', None), np.dtype) and self.dtype.newbyteorder('=') == np.float32
                and isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
                and getattr(self, 'subclass', None) is np.ndarray and getattr(self, 'order', None) in ('C', 'F')):
            raise pickle.UnpicklingError('an array that is not a plain float32 array')
        f = unpickler.file_handle
        if np.prod(shape, dtype=np.float64) * 4 > os.fstat(f.fileno()).st_size - f.tell():
            raise pickle.UnpicklingError(f'an array of shape {shape} larger than the file')
        return super().read(unpickler, *args, **kwargs)


class _ParamsUnpickler(NumpyUnpickler):
    """joblib's unpickler that builds nothing but what `joblib.dump` of a list of float32 arrays holds: lists,
    joblib's array placeholders, numpy's dtype and ndarray (the placeholders' class). numpy 1 and 2 both write
    them as `numpy.dtype` and `numpy.ndarray` (GLOBALS); their homes in numpy 1 (`numpy.core`) and 2
    (`numpy._core`) are accepted too. Any other global, the path by which a pickle runs code, is refused before
    its module is imported."""
    GLOBALS = {('joblib.numpy_pickle', 'NumpyArrayWrapper'): NumpyArrayWrapper,
               ('numpy', 'dtype'): np.dtype, ('numpy', 'ndarray'): np.ndarray}
    ALIASES = {(core, name): obj for core in ('numpy.core.multiarray', 'numpy._core.multiarray')
               for name, obj in [('dtype', np.dtype), ('ndarray', np.ndarray)]}

    def find_class(self, module, name):
        allowed = {**self.GLOBALS, **self.ALIASES}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f'it refers to {module}.{name}')
        found = super().find_class(module, name)
        if found is not allowed[module, name]:
            raise pickle.UnpicklingError(f'{module}.{name} is not what it should be')
        return _Float32ArrayWrapper if found is NumpyArrayWrapper else found


def load_params(path, shapes=None):
    """The list of float32 arrays in the best_params.jl `path` (a joblib dump, as the original saved it), read
    without running any code the file could hold; InputError when it is anything else, or, given `shapes`
    (the model's parameter shapes, in order), holds other arrays."""
    what = ("a best_params.jl that train.py wrote: a list of float32 arrays saved with joblib (no compression), "
            "the model's parameters in order")
    if not os.path.isfile(path):
        raise InputError(f"{path!r} not found: give the path of {what}")
    try:
        with open(path, 'rb') as f:
            if f.read(1) != b'\x80':
                raise pickle.UnpicklingError('it is not a pickle of protocol 2 or more')
            f.seek(0)
            params = _ParamsUnpickler(path, f, ensure_native_byte_order=True).load()
    except Exception as err:  # whatever a damaged or hostile file makes the unpickler raise
        raise InputError(f"{path!r} is not {what} ({type(err).__name__}: {err}); nothing in it was run") from err
    if not (isinstance(params, list) and params and all(isinstance(p, np.ndarray) for p in params)):
        held = type(params).__name__
        if isinstance(params, list):
            held = f"list of {', '.join(sorted({type(p).__name__ for p in params})) or 'nothing'}"
        raise InputError(f"{path!r} holds a {held}, not {what}")
    if shapes is not None:
        check_shapes(path, params, shapes)
    return params


def check_shapes(path, params, shapes):
    """InputError unless the arrays `params` read from `path` have the model's parameter shapes `shapes`."""
    shapes = [tuple(s) for s in shapes]
    if len(params) != len(shapes):
        raise InputError(f"{path!r} holds {len(params)} arrays but the model has {len(shapes)} parameters: "
                         "give a best_params.jl of a model built with the same --n_layer")
    for k, (p, shape) in enumerate(zip(params, shapes)):
        if p.shape != shape:
            raise InputError(f"{path!r}: array {k} has shape {p.shape} but the model's parameter {k} has {shape}: "
                             "build the model with the flags (--n_embd, --n_layer, --n_ctx, the vocabulary) of the "
                             "run that saved it")
