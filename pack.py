"""Sequences packed end to end in rows of one shape instead of padded (model.Path.packed_train, fixed_eval): the
training parts of a run (a tower, or one of its --accum_steps parts) at one shape chosen once from the run's epochs,
and the evaluation batches of a split at one shape per split. A row never splits a sequence (in evaluation, a
multiple-choice example: its context and its answers); Model.packed_rows and Model.score_rows mask each off from
the others, so the numbers are the padded ones (SPEC.md, "Packing").

How train.py uses it:
    packing, cheaper = pack.packing_plan(seqs, inputs.epoch_orders(...), n_seq, n_part, n_parts, n_embd, ...)
    X, seg, clf_at, Y = pack.packed_train_batch(task, split, rows, n_vocab, n_parts, packing)   # a global batch
    X, seg, clf_at, Y = pack.eval_batch(task, split, rows, n_vocab, n_batch, pack.eval_packing(task, split, ...))
"""
from typing import NamedTuple

import numpy as np

from inputs import packed_batch
from utils import round_up
from vocab import Vocab


# -------------------------------------------------------------------------------------------------- training

class Packing(NamedTuple):
    """The one shape of a run's packed training parts (a part: a tower, or one of its --accum_steps parts): each
    part's sequences are packed end to end into `rows` rows of `length` positions. `real`: the share of the run's
    packed positions that hold a token; `trimmed`: that share were the batches cut to their longest instead."""
    rows: int
    length: int
    real: float = 1.
    trimmed: float = 1.


def part_lengths(seqs, orders, n_seq, n_part, n_batch_train):
    """The sequence lengths of every part of every full global batch of the epochs' `orders`: int64 (n_parts,
    n_part * n_seq), part after part (a global batch's parts are its consecutive runs of n_part examples)."""
    rows = np.concatenate([order[:len(order) // n_batch_train * n_batch_train] for order in orders])
    lengths = seqs.lengths.reshape(-1, n_seq)[rows]                                   # (examples, n_seq)
    return lengths.reshape(-1, n_part * n_seq)


def first_fit(lengths, length):
    """First-fit decreasing of each part's sequences into rows of `length` positions, every part at once: lengths
    int (P, S), each at most `length` -> row int64 (P, S) the row of each sequence, start int64 (P, S) where it
    begins in its row. The sequences go longest first (equal ones in their order), each into the first row with
    room for it."""
    P, S = lengths.shape
    parts = np.arange(P)
    space = np.full((P, S), length, dtype=np.int64)  # a row per sequence at most
    row, start = np.zeros((P, S), np.int64), np.zeros((P, S), np.int64)
    for j in np.argsort(-lengths, axis=1, kind='stable').T:                           # the j-th longest of each part
        n = lengths[parts, j]
        r = np.argmax(space >= n[:, None], axis=1)
        row[parts, j], start[parts, j] = r, length - space[parts, r]
        space[parts, r] -= n
    return row, start


def work(positions, length, n_embd):
    """The work of a training update over `positions` positions in rows of `length`, up to a constant factor: per
    position and layer the blocks' matmuls, 24 C^2 multiply-adds, and the attention's 4 L C, whose element-wise
    ops (mask, softmax, dropout and their gradients) cost about three times as much again on the CPU (a layer at
    1024 positions took 5% longer in rows of 128 than in rows of 64, n_embd 768): 24 C^2 + 16 L C."""
    return positions * (6 * n_embd + 4 * length)


def choose_packing(lengths, n_embd, multiple=8, n_candidates=32):
    """The Packing of parts of sequence `lengths` (P, S) with the least work: for row lengths from the longest
    sequence up to 4 times it or the fullest part's tokens (multiples of `multiple`, about n_candidates of them),
    the rows that the part needing most needs (first_fit); the least work(rows * length, length), the shorter row
    on a tie."""
    longest, fullest = int(lengths.max()), int(lengths.sum(1).max())
    low, high = round_up(longest, multiple), round_up(min(fullest, 4 * longest), multiple)
    best = None
    for L in range(low, high + 1, round_up(max(1, (high - low) // n_candidates), multiple)):
        R = int(first_fit(lengths, L)[0].max()) + 1
        if best is None or work(R * L, L, n_embd) < work(best.rows * best.length, best.length, n_embd):
            best = Packing(R, L)
    return best


def packing_plan(seqs, orders, n_seq, n_part, n_parts_per_batch, n_embd, multiple, n_ctx):
    """The Packing of a run's training parts (choose_packing; orders: its epochs' example orders, epoch_orders';
    parts of n_part examples, n_parts_per_batch a global batch) with its shares of real tokens packed and cut to
    each batch's longest sequence (rounded up to the path's `multiple`, at most n_ctx), and whether packing does
    no more work than that cut: (Packing, bool)."""
    lengths = part_lengths(seqs, orders, n_seq, n_part, n_part * n_parts_per_batch)
    packing = choose_packing(lengths, n_embd)
    per_batch = lengths.reshape(-1, n_parts_per_batch * lengths.shape[1])               # (batches, sequences)
    T = np.minimum(-(-per_batch.max(1) // multiple) * multiple, n_ctx)
    tokens, n_rows = float(lengths.sum()), len(lengths) * packing.rows
    packing = packing._replace(real=tokens / (n_rows * packing.length), trimmed=tokens / float(np.sum(
        per_batch.shape[1] * T)))
    packed_work = work(n_rows * packing.length, packing.length, n_embd)
    return packing, packed_work <= float(np.sum(work(per_batch.shape[1] * T, T, n_embd)))


def extract_positions(seqs, clf):
    """Where each sequence of the Ragged `seqs` has its first `clf` token (0 where it has none), int64 (n,)."""
    lengths = seqs.lengths
    local = np.arange(len(seqs.ids)) - np.repeat(seqs.offsets[:-1], lengths)
    key = np.where(seqs.ids == clf, local, np.iinfo(np.int64).max)
    first = np.full(len(seqs), np.iinfo(np.int64).max)
    nonempty = lengths > 0
    first[nonempty] = np.minimum.reduceat(key, seqs.offsets[:-1][nonempty])
    return np.where(first == np.iinfo(np.int64).max, 0, first)


def pack_parts(seqs, rows, n_seq, n_vocab, n_parts, packing):
    """The packed rows of examples `rows` (n_parts consecutive equal parts; the sequences of example i are
    seqs' i * n_seq ...), each part's sequences packed by first_fit into its own block of packing.rows rows of
    packing.length: X int32 (n_parts * R, L, 2) the token ids (0 where empty) and the ids of positions restarting
    at 0 at each sequence's start; seg int32 (n_parts * R, L) 1 + the sequence's index in its part (its example's
    index in the part * n_seq + its own), 0 where empty; clf_at int32 (len(rows), n_seq) where each sequence's
    first _classify_ token lies in its part's block (row * L + t), as Model.packed_rows reads them."""
    R, L = packing.rows, packing.length
    rows = np.asarray(rows, dtype=np.int64)
    batch = seqs.take((rows[:, None] * n_seq + np.arange(n_seq)).ravel())
    lengths = batch.lengths.reshape(n_parts, -1)                                       # (P, S)
    row, start = first_fit(lengths, L)
    if row.max(initial=0) >= R or lengths.max(initial=0) > L:
        raise ValueError(f'a part of these examples needs {row.max() + 1} rows of {L} tokens, more than the '
                         f'packing\'s {R}: the packing was not computed from this run\'s epochs')
    part = np.repeat(np.arange(n_parts), lengths.shape[1])
    begin = ((part * R + row.ravel()) * L + start.ravel())                              # flat index of each start
    at = np.repeat(begin - batch.offsets[:-1], batch.lengths) + np.arange(len(batch.ids))  # of each token
    t = np.arange(len(batch.ids)) - np.repeat(batch.offsets[:-1], batch.lengths)
    X = np.zeros((n_parts * R * L, 2), np.int32)
    seg = np.zeros(n_parts * R * L, np.int32)
    X[:, 1] = Vocab(n_vocab).position(0)
    X[at, 0], X[at, 1] = batch.ids, Vocab(n_vocab).position(t)
    seg[at] = np.repeat(np.tile(np.arange(lengths.shape[1]), n_parts) + 1, batch.lengths)
    clf_at = begin + extract_positions(batch, Vocab(n_vocab).classify) - part * R * L
    return X.reshape(-1, L, 2), seg.reshape(-1, L), clf_at.reshape(len(rows), n_seq).astype(np.int32)


def packed_train_batch(task, split, rows, n_vocab, n_parts, packing):
    """A global training batch of examples `rows` packed part by part (pack_parts) with its labels: (X, seg,
    clf_at, Y), each array's first axis n_parts equal runs, one per part, as loop.make_train_step splits it."""
    return (*pack_parts(split.seqs, rows, task.n_seq, n_vocab, n_parts, packing), split.Y[rows])


# ------------------------------------------------------------------------------------------------ evaluation

def eval_rows(n, n_batch):
    """The examples of each evaluation batch of n examples, int64 (n_batches, n_batch): consecutive runs of
    n_batch, the last one filled up with copies of its first example (whose outputs are to be dropped)."""
    starts = np.arange(0, n, n_batch)
    rows = starts[:, None] + np.arange(n_batch)
    return np.where(rows < n, rows, starts[:, None])


def unit_lengths(task, split):
    """The lengths of what an evaluation row holds whole, per example, int64 (n, units): its packed example (its
    context and answers, multiple choice) or its sequences."""
    if split.packed is not None:
        return split.packed.seqs.lengths[:, None]
    return split.seqs.lengths.reshape(-1, task.n_seq)


def eval_packing(task, split, n_batch, n_embd):
    """The one shape of a split's evaluation batches (eval_rows'): choose_packing of their units."""
    lengths = unit_lengths(task, split)
    return choose_packing(lengths[eval_rows(len(split.Y), n_batch)].reshape(-1, n_batch * lengths.shape[1]), n_embd)


def eval_batch(task, split, rows, n_vocab, n_batch, packing):
    """An evaluation batch of examples `rows` at the split's one shape (eval_packing), filled up to n_batch with
    copies of its first example (iter_apply drops their outputs), each example's units packed whole by first_fit
    into packing.rows rows of packing.length: X int32 (R, L, 2), seg int32 (R, L) and clf_at int32 (n_batch,
    n_seq) as Model.score_rows reads them. A multiple-choice example is one unit of 1 + n_choices parts
    (packed_batch's: the context, then each answer with its positions restarting after the context); otherwise
    each sequence is a unit (pack_parts')."""
    rows = np.asarray(rows, dtype=np.int64)
    rows = np.concatenate([rows, np.repeat(rows[:1], n_batch - len(rows))])
    if split.packed is None:
        return (*pack_parts(split.seqs, rows, task.n_seq, n_vocab, 1, packing), split.Y[rows])
    R, L = packing.rows, packing.length
    Xe, seg_e, clf_idx = packed_batch(split.packed, rows)            # (n, T, 2), (n, T), (n, k): one row each
    lengths = split.packed.seqs.lengths[rows]
    row, start = first_fit(lengths[None], L)
    if row.max() >= R or lengths.max() > L:
        raise ValueError(f'these examples need {row.max() + 1} rows of {L} tokens, more than the split\'s {R}')
    begin = row[0] * L + start[0]                                     # (n,) each example's first place
    i, t = np.nonzero(np.arange(Xe.shape[1]) < lengths[:, None])      # its tokens
    X, seg = np.zeros((R * L, 2), np.int32), np.zeros(R * L, np.int32)
    X[:, 1] = Vocab(n_vocab).position(0)
    X[begin[i] + t], seg[begin[i] + t] = Xe[i, t], 1 + i * (clf_idx.shape[1] + 1) + seg_e[i, t]
    clf_at = (begin[:, None] + clf_idx).astype(np.int32)
    return X.reshape(R, L, 2), seg.reshape(R, L), clf_at, split.Y[rows]
