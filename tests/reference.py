"""An independent NumPy reference of SPEC.md ("The model" and "Optimiser"), written from the SPEC's words only.

It never imports the code under test. The model runs in float64 without dropout; the optimiser step runs in
float32 as SPEC says. Parameters come as a list of arrays in the original order: we, then 12 arrays per layer
(attn/c_attn/w, attn/c_attn/b, attn/c_proj/w, attn/c_proj/b, ln_1/g, ln_1/b, mlp/c_fc/w, mlp/c_fc/b,
mlp/c_proj/w, mlp/c_proj/b, ln_2/g, ln_2/b), then clf/w (n_embd, n_out), clf/b (n_out,).

The task head (the paper's section 3.3) is given by four words, defaulting to the original's ROCStories head: an
example is `n_seq` sequences; `pool` 'choices' gives each sequence one score (n_out 1) and a softmax over the
sequences (multiple choice); 'sum' adds the extract-token hidden states of the example's sequences element-wise
(similarity's two orders; one sequence for classification and entailment) and feeds that sum to the linear layer
of n_out outputs; `loss` 'softmax' is the cross-entropy against class ids, 'squared' (output - score)^2.

Last, the original's ROCStories input arrays (SPEC.md, "ROCStories data"), padded to n_ctx as its code made them,
and their packing for evaluation: the tests check finetuning/inputs.py's ragged sequences and packing against them.
"""
import math

import numpy as np

# ---------------------------------------------------------------------------------------------- the model


def gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def swish(x):
    return x / (1 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0)


ACT = {'gelu': gelu, 'swish': swish, 'relu': relu}


def layer_norm(x, g, b, e=1e-5):
    u = x.mean(-1, keepdims=True)
    s = ((x - u) ** 2).mean(-1, keepdims=True)
    return (x - u) / np.sqrt(s + e) * g + b


def conv1d(x, w, b):
    """x (..., nx) times w (1, nx, nf) used as a matrix, plus b (nf,)."""
    return x @ w[0] + b


def softmax(x, axis=-1):
    x = x - x.max(axis, keepdims=True)
    ex = np.exp(x)
    return ex / ex.sum(axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = x - x.max(axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis, keepdims=True))


def attention(h, w_attn, b_attn, w_proj, b_proj, n_head, causal=True):
    """Multi-head self-attention over h (B, T, C); causal=False exists only to show a test is sensitive."""
    B, T, C = h.shape
    d = C // n_head
    c = conv1d(h, w_attn, b_attn)                                     # (B, T, 3C)
    q, k, v = c[..., :C], c[..., C:2 * C], c[..., 2 * C:]

    def heads(x):                                                     # (B, T, C) -> (B, H, T, d)
        return x.reshape(B, T, n_head, d).transpose(0, 2, 1, 3)

    q, k, v = heads(q), heads(k), heads(v)
    w = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)                    # (B, H, T, T)
    if causal:
        b = np.tril(np.ones((T, T)))
        w = w * b - 1e9 * (1 - b)
    a = softmax(w) @ v                                                # (B, H, T, d)
    a = a.transpose(0, 2, 1, 3).reshape(B, T, C)                      # merge heads
    return conv1d(a, w_proj, b_proj)


def block(h, p, n_head, afn, causal=True):
    (w_attn, b_attn, w_aproj, b_aproj, g1, b1, w_fc, b_fc, w_mproj, b_mproj, g2, b2) = p
    n = layer_norm(h + attention(h, w_attn, b_attn, w_aproj, b_aproj, n_head, causal), g1, b1)
    m = conv1d(ACT[afn](conv1d(n, w_fc, b_fc)), w_mproj, b_mproj)
    return layer_norm(n + m, g2, b2)


def hidden(params, X, n_head, afn='gelu', causal=True):
    """Final hidden states (n * n_seq, T, n_embd) of X (n, n_seq, T, 2)."""
    params = [np.asarray(p, np.float64) for p in params]
    we = params[0]
    n_layer = (len(params) - 3) // 12
    x = np.asarray(X).reshape(-1, X.shape[-2], 2)                     # (n * n_seq, T, 2)
    h = we[x[..., 0]] + we[x[..., 1]]                                 # token + position embeddings
    for l in range(n_layer):
        h = block(h, params[1 + 12 * l:13 + 12 * l], n_head, afn, causal)
    return h


def lm_losses_from_hidden(h, we, X, M):
    """Per-sequence LM loss: softmax over every row of `we` at positions 0..T-2 against the next token,
    averaged over M[:, 1:]."""
    x = np.asarray(X).reshape(-1, X.shape[-2], 2)
    m = np.asarray(M, np.float64).reshape(-1, M.shape[-1])
    logits = h[:, :-1] @ np.asarray(we, np.float64).T                 # (2n, T-1, rows of we)
    logp = log_softmax(logits)
    target = x[:, 1:, 0]
    nll = -np.take_along_axis(logp, target[..., None], -1)[..., 0]    # (2n, T-1)
    return (nll * m[:, 1:]).sum(1) / m[:, 1:].sum(1)


def extract(h, X, clf_token):
    """h (B, T, C) at each sequence's first _classify_ (extract) token: (B, C)."""
    x = np.asarray(X).reshape(-1, X.shape[-2], 2)
    pool = np.argmax(x[..., 0] == clf_token, axis=1)
    return h[np.arange(len(h)), pool]


def head(clf_h, w, b, Y, n_seq=2, n_out=1, pool='choices', loss='softmax'):
    """Logits (n, n_seq for 'choices' else n_out) and per-example losses (n,) of the extract hidden states
    clf_h (n * n_seq, C), example i's sequences at rows i * n_seq ...; and d mean(losses) / d logits."""
    w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
    clf_h = clf_h.reshape(-1, n_seq, clf_h.shape[-1])                   # (n, n_seq, C)
    if pool == 'choices':
        logits = clf_h @ w[:, 0] + b[0]                                   # one score per sequence
    else:
        logits = clf_h.sum(1) @ w + b                                     # the sequences' states added
    n = len(logits)
    if loss == 'softmax':
        Y = np.asarray(Y)
        losses = -log_softmax(logits)[np.arange(n), Y]
        dlogits = softmax(logits)
        dlogits[np.arange(n), Y] -= 1
    else:
        err = logits[:, 0] - np.asarray(Y, np.float64)
        losses = err ** 2
        dlogits = np.zeros_like(logits)
        dlogits[:, 0] = 2 * err
    return logits, losses, dlogits / n


def head_grad(clf_h, w, dlogits, n_seq=2, pool='choices', **_):
    """The gradients (d clf_h (n * n_seq, C), d w, d b) of `head` given its d logits (n_out and loss are in
    dlogits already)."""
    w = np.asarray(w, np.float64)
    clf_h = clf_h.reshape(-1, n_seq, clf_h.shape[-1])
    if pool == 'choices':
        dh = dlogits[..., None] * w[:, 0]                                 # (n, n_seq, C)
        return dh.reshape(-1, dh.shape[-1]), np.einsum('nsc,ns->c', clf_h, dlogits)[:, None], dlogits.sum()[None]
    ds = dlogits @ w.T                                                    # (n, C), the same for each sequence
    return np.repeat(ds, n_seq, axis=0), clf_h.sum(1).T @ dlogits, dlogits.sum(0)


def clf_from_hidden(h, w, b, X, Y, clf_token, **task_head):
    """Classifier logits and their per-example losses from h at the first _classify_ position (the ROCStories head
    unless `task_head` says otherwise)."""
    return head(extract(h, X, clf_token), w, b, Y, **task_head)[:2]


def forward(params, X, M, Y, n_head, clf_token, afn='gelu', **task_head):
    """(clf_logits (n, n_logits), clf_losses (n,), lm_losses (n * n_seq,)) of SPEC "The model", without dropout;
    X (n, n_seq, T, 2), M (n, n_seq, T)."""
    h = hidden(params, X, n_head, afn)
    clf_logits, clf_losses = clf_from_hidden(h, params[-2], params[-1], X, Y, clf_token, **task_head)
    lm_losses = lm_losses_from_hidden(h, params[0], X, M)
    return clf_logits, clf_losses, lm_losses


def text_logits(params, tokens, n_head, n_vocab, afn='gelu'):
    """The LM's logits over the n_vocab token rows alone (SPEC "Zero-shot") after each prefix of one sequence of
    token ids, with no special token, token t at the position row n_vocab + 3 + t: (T, n_vocab), row t predicting
    token t + 1. `params` as `hidden` takes them (the classifier's two arrays last, unused)."""
    tokens = np.asarray(tokens, np.int64)
    X = np.stack([tokens, n_vocab + 3 + np.arange(len(tokens))], -1)[None, None]    # (1, 1, T, 2)
    return hidden(params, X, n_head, afn)[0] @ np.asarray(params[0], np.float64)[:n_vocab].T


def text_logprobs(params, tokens, n_head, n_vocab, afn='gelu'):
    """log p(tokens[t] | tokens[:t]) for t = 1 .. T - 1 (T - 1,): the log-softmax of text_logits."""
    logp = log_softmax(text_logits(params, tokens, n_head, n_vocab, afn)[:-1])
    return logp[np.arange(len(tokens) - 1), np.asarray(tokens[1:], np.int64)]


# ------------------------------------------------------------------------------------------ the optimiser

def _f32(x):
    return np.float32(x)


def warmup_cosine(x, warmup=0.002):
    x = _f32(x)
    s = _f32(x <= _f32(warmup))
    return s * (x / _f32(warmup)) + (_f32(1) - s) * (_f32(0.5) * (_f32(1) + np.cos(_f32(math.pi) * x)))


def warmup_constant(x, warmup=0.002):
    x = _f32(x)
    s = _f32(x <= _f32(warmup))
    return s * (x / _f32(warmup)) + (_f32(1) - s)


def warmup_linear(x, warmup=0.002):
    x = _f32(x)
    s = _f32(x <= _f32(warmup))
    return (s * (x / _f32(warmup)) + (_f32(1) - s)) * (_f32(1) - x)


schedules = {'warmup_cosine': warmup_cosine, 'warmup_constant': warmup_constant, 'warmup_linear': warmup_linear}


def learning_rate(k, lr, schedule, t_total, b1=0.9, b2=0.999):
    """lrt of update number k (counted from 1), in float32: lr * sqrt(1 - b2^k) / (1 - b1^k) * schedule(k/t_total)."""
    if isinstance(schedule, str):
        schedule = schedules[schedule]
    k = _f32(k)
    lrt = _f32(lr) * np.sqrt(_f32(1) - _f32(b2) ** k) / (_f32(1) - _f32(b1) ** k)
    return _f32(lrt * schedule(k / _f32(t_total)))


def adam_step(params, grads, m, v, k, lr, schedule, t_total, b1=0.9, b2=0.999, e=1e-8, l2=0., vector_l2=False,
              max_grad_norm=-1):
    """One update of SPEC "Optimiser" steps 2-5, in float32, for update number k (from 1).
    `schedule` is a function or its name. Returns new (params, m, v, lrt); the inputs are left untouched."""
    params = [np.asarray(p, np.float32) for p in params]
    grads = [np.asarray(g, np.float32) for g in grads]
    if max_grad_norm > 0:                                             # 2. clip by the global norm
        c = _f32(max_grad_norm)
        norm = np.sqrt(sum(np.sum(g * g, dtype=np.float32) for g in grads), dtype=np.float32)
        grads = [g * c / max(norm, c) for g in grads]
    lrt = learning_rate(k, lr, schedule, t_total, b1, b2)             # 3.
    new_p, new_m, new_v = [], [], []
    for p, g, mi, vi in zip(params, grads, m, v):
        mi = _f32(b1) * np.asarray(mi, np.float32) + _f32(1 - b1) * g  # 4.
        vi = _f32(b2) * np.asarray(vi, np.float32) + _f32(1 - b2) * g * g
        step = mi / (np.sqrt(vi) + _f32(e))                           # 5.
        if p.ndim > 1 or vector_l2:
            step = step + _f32(l2) * p
        new_p.append((p - lrt * step).astype(np.float32))
        new_m.append(mi.astype(np.float32))
        new_v.append(vi.astype(np.float32))
    return new_p, new_m, new_v, lrt


# ------------------------------------------------------------------------------------------ the gradient

def _act_grad(afn, x):
    if afn == 'gelu':
        c = math.sqrt(2 / math.pi)
        t = np.tanh(c * (x + 0.044715 * x ** 3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
    if afn == 'swish':
        s = 1 / (1 + np.exp(-x))
        return s + x * s * (1 - s)
    return (x > 0).astype(x.dtype)


def _layer_norm_cache(x, g, b, e=1e-5):
    u = x.mean(-1, keepdims=True)
    r = 1 / np.sqrt(((x - u) ** 2).mean(-1, keepdims=True) + e)
    xhat = (x - u) * r
    return xhat * g + b, (xhat, r, g)


def _layer_norm_grad(dy, cache):
    """(dx, dg, db) of LN's output gradient dy."""
    xhat, r, g = cache
    dxhat = dy * g
    dx = r * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return dx, (dy * xhat).reshape(-1, xhat.shape[-1]).sum(0), dy.reshape(-1, dy.shape[-1]).sum(0)


def _forward_cached(params, x, n_layer, n_head, afn):
    """Final hidden states (B, T, C) of x (B, T, 2) as `hidden`, and what the backward pass needs of each block."""
    we = params[0]
    B, T = x.shape[:2]
    C = we.shape[1]
    H, d = n_head, C // n_head
    tril = np.tril(np.ones((T, T)))

    def heads(a):
        return a.reshape(B, T, H, d).transpose(0, 2, 1, 3)

    def merge(a):
        return a.transpose(0, 2, 1, 3).reshape(B, T, C)

    h = we[x[..., 0]] + we[x[..., 1]]
    caches = []
    for l in range(n_layer):
        (w_attn, b_attn, w_aproj, b_aproj, g1, b1, w_fc, b_fc, w_mproj, b_mproj, g2, b2) = params[1 + 12 * l:13 + 12 * l]
        c = h @ w_attn[0] + b_attn
        q, k, v = heads(c[..., :C]), heads(c[..., C:2 * C]), heads(c[..., 2 * C:])
        w = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
        p = softmax(w * tril - 1e9 * (1 - tril))
        o = merge(p @ v)
        n, ln1 = _layer_norm_cache(h + o @ w_aproj[0] + b_aproj, g1, b1)
        z = n @ w_fc[0] + b_fc
        f = ACT[afn](z)
        h_out, ln2 = _layer_norm_cache(n + f @ w_mproj[0] + b_mproj, g2, b2)
        caches.append((h, q, k, v, p, o, n, ln1, z, f, ln2))
        h = h_out
    return h, caches


def _backward(params, x, caches, dh, grads, n_head, afn):
    """Add to grads (float64, the params' shapes) the gradient of the blocks and of the embeddings' rows, given dh
    (B, T, C) the gradient of the loss at the final hidden states."""
    B, T, C = dh.shape
    H, d = n_head, C // n_head
    tril = np.tril(np.ones((T, T)))

    def heads(a):
        return a.reshape(B, T, H, d).transpose(0, 2, 1, 3)

    def merge(a):
        return a.transpose(0, 2, 1, 3).reshape(B, T, C)

    for l in reversed(range(len(caches))):
        (w_attn, b_attn, w_aproj, b_aproj, g1, b1, w_fc, b_fc, w_mproj, b_mproj, g2, b2) = params[1 + 12 * l:13 + 12 * l]
        h_in, q, k, v, p, o, n, ln1, z, f, ln2 = caches[l]
        i = 1 + 12 * l
        du2, grads[i + 10], grads[i + 11] = _layer_norm_grad(dh, ln2)
        grads[i + 8] = (f.reshape(-1, f.shape[-1]).T @ du2.reshape(-1, C))[None]
        grads[i + 9] = du2.reshape(-1, C).sum(0)
        dz = (du2 @ w_mproj[0].T) * _act_grad(afn, z)
        grads[i + 6] = (n.reshape(-1, C).T @ dz.reshape(-1, dz.shape[-1]))[None]
        grads[i + 7] = dz.reshape(-1, dz.shape[-1]).sum(0)
        dn = du2 + dz @ w_fc[0].T
        du1, grads[i + 4], grads[i + 5] = _layer_norm_grad(dn, ln1)
        grads[i + 2] = (o.reshape(-1, C).T @ du1.reshape(-1, C))[None]
        grads[i + 3] = du1.reshape(-1, C).sum(0)
        do = heads(du1 @ w_aproj[0].T)                                                 # (B, H, T, d)
        dp = do @ v.transpose(0, 1, 3, 2)
        dv = p.transpose(0, 1, 3, 2) @ do
        dw = p * (dp - (dp * p).sum(-1, keepdims=True)) * tril / math.sqrt(d)
        dq, dk = dw @ k, dw.transpose(0, 1, 3, 2) @ q
        dc = np.concatenate([merge(dq), merge(dk), merge(dv)], -1)                     # (B, T, 3C)
        grads[i] = (h_in.reshape(-1, C).T @ dc.reshape(-1, 3 * C))[None]
        grads[i + 1] = dc.reshape(-1, 3 * C).sum(0)
        dh = du1 + dc @ w_attn[0].T
    np.add.at(grads[0], x[..., 0].ravel(), dh.reshape(-1, C))
    np.add.at(grads[0], x[..., 1].ravel(), dh.reshape(-1, C))


def loss_and_gradients(params, X, M, Y, n_head, clf_token, lm_coef, afn='gelu', **task_head):
    """The training loss mean(clf_losses) + lm_coef * mean(lm_losses) (the clf term alone if lm_coef <= 0) of
    SPEC "The model" without dropout, its mean classifier loss, and its gradient with respect to every parameter:
    backpropagation by hand in float64, the forward as `forward` above (tests check it against finite
    differences); `task_head` as in `forward`. Returns (loss, clf_loss, grads)."""
    params = [np.asarray(p, np.float64) for p in params]
    we = params[0]
    n_layer = (len(params) - 3) // 12
    x = np.asarray(X).reshape(-1, X.shape[-2], 2)
    m = np.asarray(M, np.float64).reshape(-1, M.shape[-1])
    B = x.shape[0]
    h, caches = _forward_cached(params, x, n_layer, n_head, afn)

    grads = [np.zeros_like(a) for a in params]
    # classifier
    pool = np.argmax(x[..., 0] == clf_token, axis=1)
    clf_h = h[np.arange(B), pool]
    _, clf_losses, dlogits = head(clf_h, params[-2], params[-1], Y, **task_head)
    dclf_h, grads[-2], grads[-1] = head_grad(clf_h, params[-2], dlogits, **task_head)
    dh = np.zeros_like(h)
    dh[np.arange(B), pool] += dclf_h
    # language model
    lm_logits = h[:, :-1] @ we.T                                                       # (B, T-1, V)
    logp = log_softmax(lm_logits)
    target = x[:, 1:, 0]
    nll = -np.take_along_axis(logp, target[..., None], -1)[..., 0]
    lm_losses = (nll * m[:, 1:]).sum(1) / m[:, 1:].sum(1)
    loss = clf_losses.mean()
    if lm_coef > 0:
        loss = loss + lm_coef * lm_losses.mean()
        dnll = lm_coef / B * m[:, 1:] / m[:, 1:].sum(1, keepdims=True)                # (B, T-1)
        dlm = np.exp(logp)
        np.put_along_axis(dlm, target[..., None], np.take_along_axis(dlm, target[..., None], -1) - 1, -1)
        dlm *= dnll[..., None]
        dh[:, :-1] += dlm @ we
        grads[0] += np.einsum('btv,btc->vc', dlm, h[:, :-1])
    _backward(params, x, caches, dh, grads, n_head, afn)
    return loss, clf_losses.mean(), grads


# ------------------------------------------------------------------------------------------ pre-training

def lm_loss_and_gradients(params, X, M, n_head, n_rows, afn='gelu'):
    """Pre-training's loss (SPEC.md, "Pre-training"), without dropout, and its gradient: params [we, 12 per layer]
    (no classifier), X (B, T, 2) windows of tokens and position ids, M (B, T) 1 where token t (t >= 1) is
    predicted from the tokens before it. loss = sum(M[:, 1:] * nll) / sum(M[:, 1:]): the mean over the batch's
    predicted tokens of -log softmax(h[:, t - 1] . we[:n_rows]^T)[X[:, t, 0]], the softmax over the first n_rows
    rows of we (the token rows) only. Float64. Returns (loss, grads)."""
    params = [np.asarray(p, np.float64) for p in params]
    we = params[0]
    x = np.asarray(X)
    m = np.asarray(M, np.float64)[:, 1:]
    h, caches = _forward_cached(params, x, (len(params) - 1) // 12, n_head, afn)
    logp = log_softmax(h[:, :-1] @ we[:n_rows].T)                                      # (B, T-1, n_rows)
    target = x[:, 1:, 0]
    nll = -np.take_along_axis(logp, target[..., None], -1)[..., 0]
    loss = (nll * m).sum() / m.sum()
    dlm = np.exp(logp)
    np.put_along_axis(dlm, target[..., None], np.take_along_axis(dlm, target[..., None], -1) - 1, -1)
    dlm *= (m / m.sum())[..., None]
    grads = [np.zeros_like(a) for a in params]
    dh = np.zeros_like(h)
    dh[:, :-1] = dlm @ we[:n_rows]
    grads[0][:n_rows] += np.einsum('btv,btc->vc', dlm, h[:, :-1])
    _backward(params, x, caches, dh, grads, n_head, afn)
    return loss, grads


# ------------------------------------------------------------------------- the original's ROCStories input arrays

def context_length(X1, X2, X3, max_len):
    """3 + the longest story[:max_len] + longer ending[:max_len] over the examples (the start, delimiter and
    classify tokens make the 3)."""
    return 3 + max(len(x1[:max_len]) + max(len(x2[:max_len]), len(x3[:max_len])) for x1, x2, x3 in zip(X1, X2, X3))


def transform_roc(X1, X2, X3, n_vocab, n_ctx, max_len):
    """The model's inputs: X int32 (n, 2, n_ctx, 2), token ids in [..., 0] (0-padded) and position ids
    n_vocab + 3 + t in [..., 1]; M float32 (n, 2, n_ctx), 1 on real tokens. Special ids: _start_ = n_vocab,
    _delimiter_ = n_vocab + 1, _classify_ = n_vocab + 2."""
    start, delimiter, clf_token = n_vocab, n_vocab + 1, n_vocab + 2
    xmb = np.zeros((len(X1), 2, n_ctx, 2), dtype=np.int32)
    mmb = np.zeros((len(X1), 2, n_ctx), dtype=np.float32)
    for i, (x1, x2, x3) in enumerate(zip(X1, X2, X3)):
        x12 = [start] + x1[:max_len] + [delimiter] + x2[:max_len] + [clf_token]
        x13 = [start] + x1[:max_len] + [delimiter] + x3[:max_len] + [clf_token]
        xmb[i, 0, :len(x12), 0] = x12
        xmb[i, 1, :len(x13), 0] = x13
        mmb[i, 0, :len(x12)] = 1
        mmb[i, 1, :len(x13)] = 1
    xmb[:, :, :, 1] = np.arange(n_vocab + 3, n_vocab + 3 + n_ctx)
    return xmb, mmb


def pack_roc(X1, X2, X3, n_vocab, max_len):
    """Both choices of each example in one sequence for evaluation (inputs.packed_batch, one example whole a row):
    [_start_] story [_delimiter_] ending1 [_classify_] ending2 [_classify_], ending2's positions restarting
    where ending1's began. Returns X int32 (n, T, 2), seg int32 (n, T) (0 story, 1 and 2 the endings, 3 padding)
    and clf_idx int32 (n, 2), T the longest packed example."""
    start, delimiter, clf_token = n_vocab, n_vocab + 1, n_vocab + 2
    rows = []
    for x1, x2, x3 in zip(X1, X2, X3):
        prefix = [start] + x1[:max_len] + [delimiter]
        e1, e2 = x2[:max_len] + [clf_token], x3[:max_len] + [clf_token]
        positions = list(range(len(prefix) + len(e1))) + list(range(len(prefix), len(prefix) + len(e2)))
        rows.append((prefix + e1 + e2, positions, [0] * len(prefix) + [1] * len(e1) + [2] * len(e2)))
    T = max(len(tokens) for tokens, _, _ in rows)
    X = np.zeros((len(rows), T, 2), dtype=np.int32)
    seg = np.full((len(rows), T), 3, dtype=np.int32)
    clf_idx = np.zeros((len(rows), 2), dtype=np.int32)
    for i, (tokens, positions, segments) in enumerate(rows):
        X[i, :len(tokens), 0] = tokens
        X[i, :len(tokens), 1] = n_vocab + 3 + np.array(positions)
        seg[i, :len(tokens)] = segments
        clf_idx[i] = [segments.index(2) - 1, len(tokens) - 1]
    X[:, :, 1] = np.where(seg == 3, n_vocab + 3, X[:, :, 1])
    return X, seg, clf_idx
