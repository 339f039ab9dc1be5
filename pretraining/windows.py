"""The windows of contiguous tokens that pre-training reads from a corpus's streams (SPEC.md, "Pre-training"):
each training epoch cuts the training stream at an offset and visits the windows in an order, both drawn from
(seed, epoch) alone, so that a resumed run needs nothing but its update count; the held-out stream is read in
windows that predict each of its tokens once. NumPy only.

    plan = EpochPlan(n_tokens, n_ctx, n_batch, seed)        # plan.n_updates(epoch), plan.windows(epoch)
    X, W = lm_batch(stream, starts, lengths, n_batch, n_ctx, n_vocab)    # the model's inputs of some windows
"""
import math

import numpy as np

from text_utils import Vocab


class EpochPlan:
    """How the training stream of n_tokens tokens is read in windows of at most n_ctx tokens, n_batch windows an
    update. Epoch e draws an offset o in [0, n_ctx) and a permutation from numpy's Generator seeded with (seed, e):
    the stream is cut at 0, o, o + n_ctx, o + 2 n_ctx, ... and at its end, so that every token lies in exactly one
    window and no window crosses the end (the first window is shorter when o > 0, the last when the stream does not
    end on a cut); the windows come in the permuted order, n_batch an update; the last update of an epoch takes
    the windows left (fewer than n_batch)."""

    def __init__(self, n_tokens, n_ctx, n_batch, seed):
        self.n_tokens, self.n_ctx, self.n_batch, self.seed = n_tokens, n_ctx, n_batch, seed

    def rng(self, epoch):
        return np.random.default_rng([self.seed, epoch])

    def offset(self, epoch):
        """Where epoch `epoch`'s second window starts (0: the windows start at 0, n_ctx, ...)."""
        return int(self.rng(epoch).integers(self.n_ctx))

    def n_windows(self, epoch):
        o, n = self.offset(epoch), self.n_tokens
        return math.ceil(n / self.n_ctx) if o == 0 else 1 + math.ceil(max(n - o, 0) / self.n_ctx)

    def n_updates(self, epoch):
        return math.ceil(self.n_windows(epoch) / self.n_batch)

    def windows(self, epoch):
        """(starts, lengths) int64 (n_windows,) of epoch `epoch`'s windows, in the order the epoch reads them."""
        rng = self.rng(epoch)
        o = int(rng.integers(self.n_ctx))  # offset() draws the same number first
        n_windows = self.n_windows(epoch)
        k = np.arange(n_windows, dtype=np.int64)
        starts = k * self.n_ctx if o == 0 else np.where(k == 0, 0, o + (k - 1) * self.n_ctx)
        ends = np.minimum(np.append(starts[1:], self.n_tokens), self.n_tokens)
        order = rng.permutation(n_windows)
        return starts[order], (ends - starts)[order]

    def batches(self, epoch, done=0):
        """(starts, lengths) of each update of the epoch after the first `done`."""
        starts, lengths = self.windows(epoch)
        for i in range(done * self.n_batch, len(starts), self.n_batch):
            yield starts[i:i + self.n_batch], lengths[i:i + self.n_batch]


def heldout_windows(n_tokens, n_ctx):
    """(starts, lengths) of the windows that score a held-out stream of n_tokens tokens: window k holds tokens
    [k (n_ctx - 1), k (n_ctx - 1) + n_ctx), the last one cut at the end, so that each window's first token is the
    last one predicted by the window before: every token but the stream's first is predicted exactly once."""
    n_windows = math.ceil(max(n_tokens - 1, 0) / (n_ctx - 1))
    starts = np.arange(n_windows, dtype=np.int64) * (n_ctx - 1)
    return starts, np.minimum(starts + n_ctx, n_tokens) - starts


def lm_batch(stream, starts, lengths, n_rows, n_ctx, n_vocab):
    """The model's inputs of the windows (starts, lengths) of `stream`, as n_rows rows (rows beyond the windows
    are empty): X int32 (n_rows, n_ctx, 2), the tokens (0 after a window's end) and the position ids n_vocab + t
    (the model's `we` holds the token rows, then the position rows); M float32 (n_rows, n_ctx), 1 where token t
    (t >= 1) is predicted from the tokens before it in its window."""
    X = np.zeros((n_rows, n_ctx, 2), np.int32)
    X[:, :, 1] = Vocab(n_vocab, n_special=0).position(np.arange(n_ctx))
    M = np.zeros((n_rows, n_ctx), np.float32)
    for i, (start, n) in enumerate(zip(starts, lengths)):
        X[i, :n, 0] = stream.read(int(start), int(n))
        M[i, 1:n] = 1
    return X, M


def weighted(M):
    """The weights W of a training batch's mask M (n_rows, n_ctx): M * n_rows / M.sum(), so that the mean over
    rows of each row's sum of W * loss is the mean loss per predicted token of the whole batch, however its rows
    are shared among replicas and accumulation steps."""
    return (M * (len(M) / max(M.sum(), 1))).astype(np.float32)
