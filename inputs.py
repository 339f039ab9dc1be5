"""The model's inputs for any task of tasks.py: its texts encoded once and kept ragged (MNLI's 393k pairs are never
held as (n, n_ctx) arrays), the input transformations of the paper's section 3.3, batches padded to their own
longest sequence, and the exact packing of multiple choice for evaluation.

Input transformations, with the special tokens of vocab.Vocab (start, delim, extract = _classify_):
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
    encoded = encode_splits(text_encoder, splits, task.name)             # {split: Examples of Ragged ids}
    split = ready(task, encoded[name], n_vocab, n_ctx, packed)           # its labels, sequences (and packing)
    n_ctx_model = max(int(s.seqs.lengths.max()) for s in ...)            # <= n_ctx
    X, M, Y = batch_inputs(task, split, rows, n_vocab, n_ctx_model, multiple)   # one batch of examples `rows`
    (with split.packed: X, seg, clf_idx, Y for Model.score_packed)
The default path packs them instead, end to end in rows of one shape: pack.py.
"""
import hashlib
import os
import sys
from typing import NamedTuple

import ftfy
import numpy as np
import spacy
from sklearn.utils import shuffle
from tqdm import tqdm

import datasets
import tasks
import text_utils
from datasets import Examples
from utils import InputError, atomic_write, batches_of, round_up
from vocab import Vocab


# ----------------------------------------------------------------------------------------------- ragged token ids

class Ragged(NamedTuple):
    """n sequences of token ids in one array: sequence i is ids[offsets[i]:offsets[i + 1]]. ids int32 (total,),
    offsets int64 (n + 1,)."""
    ids: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_lists(cls, seqs):
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, offsets)

    @classmethod
    def concat(cls, parts):
        """The sequences of `parts` (Raggeds) one after the other."""
        offsets = [np.zeros(1, dtype=np.int64)]
        for part in parts:
            offsets.append(part.offsets[1:] + offsets[-1][-1])
        return cls(np.concatenate([p.ids for p in parts]).astype(np.int32), np.concatenate(offsets))

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self):
        return np.diff(self.offsets)

    def tolist(self):
        return [self[i].tolist() for i in range(len(self))]

    def take(self, rows, lengths=None):
        """The sequences `rows` (int array), each cut to its first `lengths` tokens (default: whole)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows] if lengths is None else np.asarray(lengths, dtype=np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        src = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Ragged(self.ids[src], offsets)


def encode_examples(encoder, examples, desc, chunk=2048):
    """`examples` with each text field replaced by a Ragged of its BPE ids. Each distinct text is encoded once (an
    MNLI premise serves three hypotheses, a RACE article all its questions), in chunks, under a progress bar
    labelled `desc`."""
    texts = [t for field in examples.texts for t in field]
    unique = list(dict.fromkeys(texts))
    parts = []
    with tqdm(total=len(unique), desc=desc, unit=' texts', ncols=100, leave=False) as bar:
        for i in range(0, len(unique), chunk):
            parts.append(Ragged.from_lists(encoder.encode(unique[i:i + chunk], verbose=False)))
            bar.update(len(unique[i:i + chunk]))
    encoded = Ragged.concat(parts) if parts else Ragged(np.zeros(0, np.int32), np.zeros(1, np.int64))
    position = {t: k for k, t in enumerate(unique)}
    rows = np.fromiter((position[t] for t in texts), dtype=np.int64, count=len(texts))
    n = len(examples.ids)
    return examples._replace(texts=tuple(encoded.take(rows[k * n:(k + 1) * n]) for k in range(len(examples.texts))))


def encode_splits(encoder, splits, name):
    """{split: Examples with Ragged fields} of a task's {split: Examples}."""
    return {split: encode_examples(encoder, examples, f'encoding {name} {split}') for split, examples in splits.items()}


def encoded_dataset(args, task, text_encoder):
    """The task's splits ({split: Examples}) with every text field encoded (a Ragged of token ids), and a function
    that caches them (call it once every input is checked). They are read from --cache_dir when the data files,
    the BPE files, the code that reads and encodes them and its libraries are those that wrote the cache; a cache
    that cannot be read, or that does not fit the data, is encoded again (with a warning) and replaced."""
    splits = task.load(args.data_dir)  # read and checked on every run: the cache holds only the encodings
    n_vocab = len(text_encoder.encoder)
    if not args.cache_dir:
        return encode_splits(text_encoder, splits, task.name), lambda: None
    digest = hashlib.sha256(f'{ftfy.__version__} {spacy.__version__}'.encode())
    for path in task.paths(args.data_dir) + [args.encoder_path, args.bpe_path, text_utils.__file__,
                                             datasets.__file__, tasks.__file__, __file__]:
        with open(path, 'rb') as f:
            digest.update(f.read())
    cache_path = os.path.join(args.cache_dir, f'{task.name}-{digest.hexdigest()[:20]}.npz')
    if os.path.isfile(cache_path):
        try:
            return load_encoded(cache_path, splits, n_vocab), lambda: None
        except Exception as err:  # whatever a damaged file makes numpy raise: the cache is only a shortcut
            print(f"warning: the cache {cache_path!r} is damaged ({type(err).__name__}: {err}): encoding the data "
                  "set again", file=sys.stderr)
    encoded = encode_splits(text_encoder, splits, task.name)
    return encoded, lambda: save_cache(cache_path, encoded)


def save_cache(path, splits):
    """save_encoded, atomically; a failure (full disk, read-only folder) a warning: the cache only saves
    time."""
    try:
        with atomic_write(path, 'wb') as f:
            save_encoded(f, splits)
    except (OSError, InputError) as err:
        print(f"warning: could not cache the encoded data set in {path!r} ({err}): the next run encodes it again",
              file=sys.stderr)


def save_encoded(f, splits):
    """Write encoded splits to `f` (a path or a binary file) as one .npz of plain arrays (no pickle)."""
    arrays = {}
    for split, ex in splits.items():
        for k, field in enumerate(ex.texts):
            arrays[f'{split}/texts/{k}/ids'], arrays[f'{split}/texts/{k}/offsets'] = field.ids, field.offsets
        arrays[f'{split}/ids'] = np.asarray(ex.ids, dtype=str)
        arrays[f'{split}/n_skipped'] = np.asarray(ex.n_skipped)
        if ex.y is not None:
            arrays[f'{split}/y'] = ex.y
        if ex.group is not None:
            arrays[f'{split}/group'] = np.asarray(ex.group, dtype=str)
    np.savez(f, **arrays)


def load_encoded(path, like=None, n_vocab=None):
    """The encoded splits that save_encoded wrote to `path` (nothing in it is unpickled). Given `like` (the splits
    as read from the data files, before encoding) and n_vocab, ValueError unless the file holds exactly their
    splits, fields, example ids and labels, each field a well-formed Ragged of token ids in [0, n_vocab)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {key: z[key] for key in z.files}
    splits = {}
    for split in dict.fromkeys(key.split('/')[0] for key in arrays):
        n_fields = len({key for key in arrays if key.startswith(f'{split}/texts/')}) // 2
        texts = tuple(Ragged(arrays[f'{split}/texts/{k}/ids'], arrays[f'{split}/texts/{k}/offsets'])
                      for k in range(n_fields))
        splits[split] = Examples(texts, arrays.get(f'{split}/y'), arrays[f'{split}/ids'].tolist(),
                                 arrays.get(f'{split}/group'), int(arrays[f'{split}/n_skipped']))
    if like is not None:
        check_encoded(splits, like, n_vocab)
    return splits


def check_encoded(encoded, like, n_vocab):
    """ValueError unless `encoded` (load_encoded's splits) encodes the splits `like` (see load_encoded)."""
    if list(encoded) != list(like):
        raise ValueError(f'splits {list(encoded)} instead of {list(like)}')
    for split, ex in like.items():
        got = encoded[split]
        if got.ids != [str(i) for i in ex.ids] or len(got.texts) != len(ex.texts):
            raise ValueError(f'{split}: other examples or fields than the data set')
        same_y = (got.y is None and ex.y is None) or (
            got.y is not None and ex.y is not None and got.y.dtype == np.asarray(ex.y).dtype
            and np.array_equal(got.y, ex.y))
        same_group = (got.group is None) == (ex.group is None) and (
            ex.group is None or got.group.tolist() == [str(g) for g in ex.group])
        if not (same_y and same_group and got.n_skipped == ex.n_skipped):
            raise ValueError(f'{split}: labels or groups differ from the data set')
        for k, field in enumerate(got.texts):
            ids, offsets = field.ids, field.offsets
            if not (ids.dtype == np.int32 and ids.ndim == 1 and offsets.dtype == np.int64
                    and offsets.shape == (len(ex.ids) + 1,) and offsets[0] == 0 and offsets[-1] == len(ids)
                    and np.all(np.diff(offsets) >= 0) and (len(ids) == 0 or 0 <= ids.min() <= ids.max() < n_vocab)):
                raise ValueError(f'{split}: field {k} is not {len(ex.ids)} texts of token ids below {n_vocab}')


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


# ------------------------------------------------------------------------------- packed multiple-choice evaluation

class Packed(NamedTuple):
    """A split's multiple-choice examples packed for evaluation (Model.score_packed), one sequence each:
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
    """The inputs of Model.score_packed for examples `rows` of `packed`: X int32 (n, T, 2), token ids in [..., 0]
    and the ids of the positions in [..., 1], each answer's positions restarting right after the
    delimiter; seg int32 (n, T), 0 the shared prefix, c + 1 answer c, k + 1 padding (token 0, position 0);
    clf_idx int32 (n, k) the _classify_ positions. T is the batch's longest packed example, rounded up to a
    multiple of `multiple`; or `length` (at least the longest)."""
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


def batch_inputs(task, split, rows, n_vocab, n_ctx, multiple):
    """The model's inputs and labels for examples `rows` of `split`, padded to the batch's longest sequence rounded
    up to `multiple` (at most n_ctx, the model's: multiple = n_ctx pads as the original): (X, M, Y); or, when the
    split is packed, packed_batch's (X, seg, clf_idx) and Y."""
    if split.packed is not None:
        return (*packed_batch(split.packed, rows, multiple), split.Y[rows])
    X, M = pad_batch(split.seqs, rows, task.n_seq, n_vocab, multiple, n_ctx)
    return X, M, split.Y[rows]


def epoch_batches(batch, order, n_batch_train):
    """The full batches of one epoch: batch(rows) for consecutive runs of n_batch_train of `order`."""
    return (batch(rows) for rows in batches_of(order, n_batch_train, full_only=True))


def epoch_orders(n_train, n_epochs, rng_state):
    """The example orders of n_epochs successive epochs, as train.py's epochs draw them (sklearn.utils.shuffle of
    the split order, each epoch the next draw of the generator), from a generator in `rng_state` (numpy's
    get_state()): drawn on a copy, so numpy's global generator does not move."""
    rng = np.random.RandomState()
    rng.set_state(rng_state)
    return [shuffle(np.arange(n_train), random_state=rng) for _ in range(n_epochs)]

