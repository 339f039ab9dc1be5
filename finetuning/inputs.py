"""The model's inputs for any task of finetuning/tasks.py, from its texts encoded (text_utils.encoded_dataset): the
input transformations of the paper's section 3.3, batches padded to their longest sequence (the original's padding
with --padded), and the default: sequences packed end to end into rows, the training towers' at a few shapes per
run (each global batch at the cheapest that holds it) and the evaluation batches' at one shape per split, where a
multiple-choice example's context and answers go whole (the context once). A row never splits what it packs, and
the forward's segments keep each sequence to itself (SPEC.md, "Packing"), so the numbers are the padded ones.

Input transformations, with the special tokens of text_utils.Vocab (start, delim, extract = _classify_):
    classification   [start] text [extract]                                      1 sequence per example
    entailment       [start] premise [delim] hypothesis [extract]                1
    similarity       [start] a [delim] b [extract], [start] b [delim] a [extract] 2
    multiple choice  [start] context [delim] answer_k [extract] for each k       k (RACE: context = article question)
Truncation, so that a sequence fits n_ctx (the flag), every cut keeping a text's start:
    classification   the text to n_ctx - 2 tokens.
    entailment, similarity   the longer text loses a token at a time (the second on a tie) until the two fit
                     n_ctx - 3 (the rule of BERT's _truncate_seq_pair); both orders of a similarity pair alike.
    multiple choice, Task.truncate 'roc': ROCStories' rule, unchanged: each text to n_ctx // 2 - 2 tokens.
    multiple choice, Task.truncate 'context' (RACE): each answer to (n_ctx - 3) // 2 tokens; the context fields
                     kept whole from the last (the question) back, the first (the article) cut at its end to what
                     the longest answer leaves, so that all the answers share one context.

How train.py uses it:
    split = ready(task, encoded[name], n_vocab, n_ctx, packed)          # its labels, sequences (and MC units)
    packing, cheaper = packing_plan(split.seqs, epoch_orders(...), ...)  # the shapes of the run's towers
    batch = train_batch(task, split, rows, n_vocab, n_ctx, path, n_parts, packing)   # an update's arrays
    for k, batch in eval_batches(task, split, n_vocab, n_ctx, path, n_batch, n_embd): ...
"""
from typing import NamedTuple

import numpy as np
from sklearn.utils import shuffle

from datasets import Examples
from text_utils import Ragged, Vocab
from utils import batches_of, round_up


# ---------------------------------------------------------------------------------------- input transformations

def pair_lengths(la, lb, budget):
    """Lengths of two texts cut to fit `budget` tokens together: the longer loses a token at a time (the second on
    a tie) until they fit. la, lb int arrays."""
    over = la + lb > budget
    a_short, b_short = la <= budget // 2, lb <= budget // 2
    new_a = np.where(~over | a_short, la, np.where(b_short, budget - lb, (budget + 1) // 2))
    new_b = np.where(~over | b_short & ~a_short, lb, np.where(a_short, budget - la, budget // 2))
    return new_a, new_b


def build(pieces, n):
    """n sequences, each the concatenation of `pieces`: a piece is a special token id, or (Ragged, rows, lengths):
    sequence j takes the first lengths[j] ids of that Ragged's sequence rows[j]."""
    lens = np.stack([np.ones(n, np.int64) if isinstance(p, (int, np.integer)) else np.asarray(p[2], np.int64)
                     for p in pieces], axis=1)  # (n, n_pieces)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens.sum(1), out=offsets[1:])
    starts = offsets[:-1, None] + np.cumsum(lens, axis=1) - lens  # where each piece begins
    ids = np.empty(offsets[-1], dtype=np.int32)
    for k, piece in enumerate(pieces):
        if isinstance(piece, (int, np.integer)):
            ids[starts[:, k]] = piece
        else:
            source, rows, lengths = piece
            part = source.take(rows, lengths)
            ids[np.repeat(starts[:, k] - part.offsets[:-1], lengths) + np.arange(part.offsets[-1])] = part.ids
    return Ragged(ids, offsets)


def sequences(task, texts, n_vocab, n_ctx):
    """The model's input sequences of one split, as a Ragged of n * task.n_seq sequences (example i's at rows
    i * n_seq ...): `texts` the split's Ragged fields, n_ctx the most tokens a sequence may have (the flag)."""
    vocab = Vocab(n_vocab)
    start, delim, clf = vocab.start, vocab.delimiter, vocab.classify
    n = len(texts[0])
    rows = np.arange(n)
    lengths = [field.lengths for field in texts]
    if task.shape == 'classification':
        return build([start, (texts[0], rows, np.minimum(lengths[0], n_ctx - 2)), clf], n)
    if task.shape in ('entailment', 'similarity'):
        la, lb = pair_lengths(lengths[0], lengths[1], n_ctx - 3)
        if task.shape == 'entailment':
            return build([start, (texts[0], rows, la), delim, (texts[1], rows, lb), clf], n)
        ab = Ragged.concat(texts[:2])  # a's rows, then b's: sequence 2i is a;b, 2i + 1 is b;a
        first, second = np.stack([rows, rows + n], 1).ravel(), np.stack([rows + n, rows], 1).ravel()
        cut = np.concatenate([la, lb])
        return build([start, (ab, first, cut[first]), delim, (ab, second, cut[second]), clf], 2 * n)
    # multiple choice: sequence i * k + c is example i's context with answer c
    k, m = task.n_choices, task.n_context
    answers = Ragged.concat(texts[m:m + k])  # answer c of example i at row c * n + i
    example, choice = np.repeat(rows, k), np.tile(np.arange(k), n)
    context_cut, answer_cut = choice_lengths(task, texts, n_ctx)
    context = [(texts[j], example, context_cut[j][example]) for j in range(m)]
    answer_rows = choice * n + example
    return build([start, *context, delim, (answers, answer_rows, answer_cut.ravel()[answer_rows]), clf], n * k)


def choice_lengths(task, texts, n_ctx):
    """Multiple choice's cut (Task.truncate) of one split's Ragged fields: the tokens each context field keeps, a
    list of task.n_context int arrays (n,), and those each answer keeps, int (n_choices, n)."""
    k, m = task.n_choices, task.n_context
    answers = np.stack([field.lengths for field in texts[m:m + k]])  # (k, n)
    if task.truncate == 'roc':
        max_len = n_ctx // 2 - 2
        return [np.minimum(field.lengths, max_len) for field in texts[:m]], np.minimum(answers, max_len)
    answer_cut = np.minimum(answers, (n_ctx - 3) // 2)
    left = n_ctx - 3 - answer_cut.max(0, initial=0)
    context_cut = [None] * m
    for j in reversed(range(m)):  # the question kept whole before the article
        context_cut[j] = np.minimum(texts[j].lengths, left)
        left = left - context_cut[j]
    return context_cut, answer_cut


def pad_batch(seqs, rows, n_seq, n_vocab, multiple=1, n_ctx=None, length=None):
    """The model's inputs for examples `rows` of `seqs` (from `sequences`): X int32 (n, n_seq, T, 2), token ids in
    [..., 0] (0-padded) and the ids of positions t in [..., 1]; M float32 (n, n_seq, T), 1 on real tokens.
    T is the batch's longest sequence, rounded up to a multiple of `multiple`, at most n_ctx (multiple = n_ctx pads
    to n_ctx, as the original); or `length` (at least the longest)."""
    rows = np.asarray(rows, dtype=np.int64)
    batch = seqs.take((rows[:, None] * n_seq + np.arange(n_seq)).ravel())
    lengths = batch.lengths
    T = round_up(int(lengths.max(initial=1)), multiple)
    T = length if length is not None else T if n_ctx is None else min(T, n_ctx)
    M = (np.arange(T) < lengths[:, None]).reshape(len(rows), n_seq, T)
    X = np.zeros((len(rows), n_seq, T, 2), dtype=np.int32)
    X[..., 0][M] = batch.ids
    X[..., 1] = Vocab(n_vocab).position(np.arange(T, dtype=np.int32))
    return X, M.astype(np.float32)


# ------------------------------------------------------------------------------------ a split ready for the model

class Split(NamedTuple):
    """One split ready for the model: its encoded Examples (ids, groups, labels), Y (n) the labels (int32 class
    ids, float32 scores for a regression; zeros where the publisher keeps them), the model's input sequences
    (sequences: a Ragged of n * n_seq) and, to evaluate multiple choice, their exact packing
    (pack_choices; else None)."""
    examples: Examples
    Y: np.ndarray
    seqs: Ragged
    packed: object = None


def ready(task, examples, n_vocab, n_ctx, packed):
    """A Split of encoded `examples`, cut to n_ctx tokens a sequence (the flag); packed: with its packing."""
    dtype = np.int32 if task.labels else np.float32
    Y = np.zeros(len(examples.ids), dtype) if examples.y is None else np.asarray(examples.y, dtype)
    packing = pack_choices(task, examples.texts, n_vocab, n_ctx) if packed else None
    return Split(examples, Y, sequences(task, examples.texts, n_vocab, n_ctx), packing)


def head_of(examples, n):
    """The first n examples of encoded `examples`, in split order."""
    return examples._replace(texts=tuple(field.take(np.arange(n)) for field in examples.texts),
                             y=None if examples.y is None else examples.y[:n], ids=examples.ids[:n],
                             group=None if examples.group is None else examples.group[:n])


def epoch_orders(n_train, n_epochs, rng_state):
    """The example orders of n_epochs successive epochs, as train.py's epochs draw them (sklearn.utils.shuffle of
    the split order, each epoch the next draw of the generator), from a generator in `rng_state` (numpy's
    get_state()): drawn on a copy, so numpy's global generator does not move."""
    rng = np.random.RandomState()
    rng.set_state(rng_state)
    return [shuffle(np.arange(n_train), random_state=rng) for _ in range(n_epochs)]


# ------------------------------------------------------------------------------ packed training rows (the default)

class Packing(NamedTuple):
    """The shapes of a run's packed training parts (a part: a tower, or one of its --accum_steps parts): a global
    batch's parts are each packed end to end into `rows` rows of `length` positions, the shape that holds every
    part of the run; or into one of the `smaller` shapes ((rows, length), ...), cheaper, where every part of the
    batch fits (shape_of_batches). `real`: the share of the run's packed positions that hold a token; `trimmed`:
    that share were the batches cut to their longest instead."""
    rows: int
    length: int
    real: float = 1.
    trimmed: float = 1.
    smaller: tuple = ()

    @property
    def shapes(self):
        """Every (rows, length) a batch may take, cheapest first: the smaller ones, then (rows, length)."""
        return (*self.smaller, (self.rows, self.length))

    def in_words(self):
        """Its shapes: '8 rows of 112, 120 or 128 tokens', '4 rows of 40, 2 rows of 88 or 2 rows of 104 tokens'."""
        same_rows = len({R for R, _ in self.shapes}) == 1
        each = [str(L) if same_rows else f'{R} rows of {L}' for R, L in self.shapes]
        listed = ' or '.join([', '.join(each[:-1]), each[-1]]) if len(each) > 1 else each[0]
        return f'{self.rows} rows of {listed} tokens' if same_rows else f'{listed} tokens'


N_SHAPES = 3  # a run's training shapes at most: each is traced and compiled once


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


def rows_needed(lengths, length, per_batch=1):
    """The rows that each global batch of `per_batch` consecutive parts of sequence `lengths` (P, S) needs in rows
    of `length`: first_fit's rows of its fullest part, int64 (P // per_batch,); a batch with a sequence longer than
    `length` needs more rows than any shape has."""
    rows = first_fit(np.minimum(lengths, length), length)[0].max(1) + 1
    rows[lengths.max(1) > length] = np.iinfo(np.int64).max
    return rows.reshape(-1, per_batch).max(1)


def shape_of_batches(lengths, packing, per_batch=1):
    """The shape that each global batch of `per_batch` consecutive parts of `lengths` (P, S) takes: the first of
    packing.shapes (cheapest first) that all its parts fit, as an index int64 (P // per_batch,) into
    packing.shapes; len(packing.shapes) where none fits."""
    choice = np.full(len(lengths) // per_batch, len(packing.shapes))
    for k, (R, L) in reversed(list(enumerate(packing.shapes))):
        choice[rows_needed(lengths, L, per_batch) <= R] = k
    return choice


def choose_packing(lengths, n_embd, multiple=8, n_candidates=32, n_shapes=1, per_batch=1):
    """The Packing of parts of sequence `lengths` (P, S), `per_batch` consecutive parts a global batch, with the
    least work: for row lengths from the longest sequence up to 4 times it or the fullest part's tokens (multiples
    of `multiple`, about n_candidates of them), the rows that the batch needing most needs (rows_needed); the least
    work(rows * length, length), the shorter row on a tie. Then, up to n_shapes in all, one smaller shape at a
    time: of every length's (rows, length) that some batch needs, the one that saves the most work, each batch
    taking the cheapest shape it fits (the shorter row, then the fewer rows, on a tie); none that saves nothing."""
    longest, fullest = int(lengths.max()), int(lengths.sum(1).max())
    low, high = round_up(longest, multiple), round_up(min(fullest, 4 * longest), multiple)
    step = round_up(max(1, (high - low) // n_candidates), multiple)
    need = {L: rows_needed(lengths, L, per_batch) for L in range(low, high + 1, step)}

    def cost(shape):
        return work(shape[0] * shape[1], shape[1], n_embd)

    largest = min(((int(need[L].max()), L) for L in need), key=lambda s: (cost(s), s[1]))
    smaller, taken = [], np.full(len(need[low]), float(cost(largest)))  # each batch's work at its shape so far
    for _ in range(n_shapes - 1):
        saved = {(int(R), L): float(np.sum(np.maximum(taken - cost((R, L)), 0.) * (need[L] <= R)))
                 for L in need for R in np.unique(need[L])}
        best = max(saved, key=lambda s: (saved[s], -s[1], -s[0]))
        if saved[best] <= 0:
            break
        smaller.append(best)
        taken = np.where(need[best[1]] <= best[0], np.minimum(taken, cost(best)), taken)
    return Packing(*largest, smaller=tuple(sorted(smaller, key=lambda s: (cost(s), s[1]))))


def packing_plan(seqs, orders, n_seq, n_part, n_parts_per_batch, n_embd, multiple, n_ctx):
    """The Packing of a run's training parts (choose_packing, up to N_SHAPES shapes; orders: its epochs' example
    orders, epoch_orders'; parts of n_part examples, n_parts_per_batch a global batch) with its shares of real
    tokens packed (each batch at its shape) and cut to each batch's longest sequence (rounded up to the path's
    `multiple`, at most n_ctx), and whether packing does no more work than that cut: (Packing, bool)."""
    lengths = part_lengths(seqs, orders, n_seq, n_part, n_part * n_parts_per_batch)
    packing = choose_packing(lengths, n_embd, n_shapes=N_SHAPES, per_batch=n_parts_per_batch)
    R, L = np.array(packing.shapes)[shape_of_batches(lengths, packing, n_parts_per_batch)].T  # each batch's shape
    per_batch = lengths.reshape(-1, n_parts_per_batch * lengths.shape[1])               # (batches, sequences)
    T = np.minimum(-(-per_batch.max(1) // multiple) * multiple, n_ctx)
    tokens = float(lengths.sum())
    packing = packing._replace(real=tokens / float(np.sum(n_parts_per_batch * R * L)),
                               trimmed=tokens / float(np.sum(per_batch.shape[1] * T)))
    packed_work = float(np.sum(work(n_parts_per_batch * R * L, L, n_embd)))
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
    seqs' i * n_seq ...), each part's sequences packed by first_fit into its own block of R rows of L, (R, L) the
    cheapest of packing.shapes that every part fits (shape_of_batches): X int32 (n_parts * R, L, 2) the token ids
    (0 where empty) and the ids of positions restarting at 0 at each sequence's start; seg int32 (n_parts * R, L) 1
    + the sequence's index in its part (its example's index in the part * n_seq + its own), 0 where empty; clf_at
    int32 (len(rows), n_seq) where each sequence's first _classify_ token lies in its part's block (row * L + t),
    as model.finetune_losses reads them."""
    rows = np.asarray(rows, dtype=np.int64)
    batch = seqs.take((rows[:, None] * n_seq + np.arange(n_seq)).ravel())
    lengths = batch.lengths.reshape(n_parts, -1)                                       # (P, S)
    k = int(shape_of_batches(lengths, packing, n_parts)[0])
    if k == len(packing.shapes):
        R, L = packing.shapes[-1]
        need = 'a sequence longer than' if lengths.max() > L else f'{first_fit(lengths, L)[0].max() + 1} rows of'
        raise ValueError(f'a part of these examples needs {need} {L} tokens, more than the packing\'s {R} rows: '
                         f'the packing was not computed from this run\'s epochs')
    R, L = packing.shapes[k]
    row, start = first_fit(lengths, L)
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
    clf_at, Y), each array's first axis n_parts equal runs, one per part, as opt.make_update splits it."""
    return (*pack_parts(split.seqs, rows, task.n_seq, n_vocab, n_parts, packing), split.Y[rows])


# ---------------------------------------------------------------- multiple choice whole: a context, then its answers

class Packed(NamedTuple):
    """A split's multiple-choice examples as evaluation units (eval_batch packs them whole), one sequence each:
    [_start_] context [_delimiter_] answer_1 [_classify_] ... answer_k [_classify_]. `seqs` a Ragged of the n
    packed sequences; `prefix` int64 (n,) the shared prefix's length ([_start_] context [_delimiter_]);
    `answers` int64 (n, k) each answer's length with its _classify_; `n_vocab` the first special id."""
    seqs: Ragged
    prefix: np.ndarray
    answers: np.ndarray
    n_vocab: int


def pack_choices(task, texts, n_vocab, n_ctx):
    """The examples of a multiple-choice split (`texts` its Ragged fields) packed, each cut exactly as `sequences`
    cuts it, so that scoring the packed sequence gives the n_choices sequences' logits."""
    vocab = Vocab(n_vocab)
    start, delim, clf = vocab.start, vocab.delimiter, vocab.classify
    n, m = len(texts[0]), task.n_context
    rows = np.arange(n)
    context_cut, answer_cut = choice_lengths(task, texts, n_ctx)
    context = [(texts[j], rows, context_cut[j]) for j in range(m)]
    answers = [piece for c in range(task.n_choices) for piece in ((texts[m + c], rows, answer_cut[c]), clf)]
    seqs = build([start, *context, delim, *answers], n)
    return Packed(seqs, 2 + sum(context_cut), answer_cut.T + 1, n_vocab)


def packed_batch(packed, rows, multiple=1, length=None):
    """The units of examples `rows` of `packed`, one a row (eval_batch packs them into its rows): X int32 (n, T, 2),
    token ids in [..., 0] and the ids of the positions in [..., 1], each answer's positions restarting right after
    the delimiter; seg int32 (n, T), 0 the shared prefix, c + 1 answer c, k + 1 padding (token 0, position 0);
    clf_idx int32 (n, k) the _classify_ positions. T is the batch's longest packed example, rounded up to a multiple
    of `multiple`; or `length` (at least the longest)."""
    rows = np.asarray(rows, dtype=np.int64)
    batch = packed.seqs.take(rows)
    prefix, answers = packed.prefix[rows, None], packed.answers[rows]        # (n, 1), (n, k)
    lengths = batch.lengths
    T = round_up(int(lengths.max(initial=1)), multiple) if length is None else length
    t = np.arange(T)
    ends = prefix + np.cumsum(answers, axis=1)                                # (n, k) where each answer ends
    starts = np.concatenate([np.zeros_like(prefix), prefix, ends[:, :-1]], axis=1)  # (n, k + 1) each segment's start
    seg = (t >= prefix) + (t[None, :, None] >= ends[:, None, :]).sum(-1)      # (n, T)
    real = t < lengths[:, None]
    shift = np.take_along_axis(starts, np.minimum(seg, answers.shape[1]), axis=1) - np.where(seg > 0, prefix, 0)
    X = np.zeros((len(rows), T, 2), dtype=np.int32)
    X[..., 0][real] = batch.ids
    X[..., 1] = Vocab(packed.n_vocab).position(np.where(real, t - shift, 0))
    return X, seg.astype(np.int32), (ends - 1).astype(np.int32)


# --------------------------------------------------------------------------- evaluation rows, one shape per split

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
    n_seq) as model.evaluate_batch reads them. A multiple-choice example is one unit of 1 + n_choices parts
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


# -------------------------------------------------------------------------------------------- a run's batches

def train_batch(task, split, rows, n_vocab, n_ctx, path, n_parts, packing=None):
    """The arrays of a training update of examples `rows`: with a packing (path.packed_train), packed_train_batch's
    (X, seg, clf_at, Y) part by part (n_parts: towers times --accum_steps); else pad_batch's (X, M) and Y, padded to
    the batch's longest sequence rounded up to path's multiple (at most the model's n_ctx)."""
    if packing is not None:
        return packed_train_batch(task, split, rows, n_vocab, n_parts, packing)
    return (*pad_batch(split.seqs, rows, task.n_seq, n_vocab, path.pad_to(n_ctx), n_ctx), split.Y[rows])


def eval_batches(task, split, n_vocab, n_ctx, path, n_batch, packing=None):
    """A split's evaluation batches of n_batch examples (the last one partial), in order: pairs (k, batch) with
    batch's first k examples the split's next ones. With the split's packing (eval_packing's, path.fixed_eval),
    every batch is eval_batch's rows at that one shape (the last batch filled up with copies); else padded as
    train_batch's."""
    for rows in batches_of(np.arange(len(split.Y)), n_batch):
        if packing is None:
            yield len(rows), train_batch(task, split, rows, n_vocab, n_ctx, path, 1)
        else:
            yield len(rows), eval_batch(task, split, rows, n_vocab, n_batch, packing)
