"""The original's text pipeline: ftfy, standardisation, spaCy's rule-based English tokenizer, lower-cased BPE; a
data set's texts encoded once, kept ragged (MNLI's 393k pairs are never held as (n, n_ctx) arrays) and cached; and
the rows GPT-1 adds after the BPE pieces (Vocab: the special tokens, then the positions)."""
import hashlib
import json
import os
import re
import sys
from typing import NamedTuple

import ftfy
import numpy as np
import spacy
from tqdm import tqdm

import datasets
from datasets import Examples
from utils import InputError, atomic_write, download_command


def get_pairs(word):
    """Set of adjacent symbol pairs of `word` (a tuple of symbols)."""
    return set(zip(word[:-1], word[1:]))


# Runs of one repeated character among - ~ ! " ; ? + , ) ( / * [ ] } { | _ get a space on each side. The original
# wrote this as an alternation of runs, (-+|~+|!+|...), in a non-raw string where its `\\+` (meant as "runs of
# backslashes") became `\+`, a single plus that `\++` already covers: the backslash is not in the list, and
# neither are `.` and `'`. One character class and a back-reference match the same runs, four times faster.
_PUNCT_RUN = re.compile(r'([-~!";?+,)(/*\[\]}{|_])\1*')


def text_standardize(text):
    """Normalise dashes, ellipses and accents, isolate punctuation runs and collapse whitespace (SPEC step 1)."""
    text = text.replace('—', '-')
    text = text.replace('–', '-')
    text = text.replace('―', '-')
    text = text.replace('…', '...')
    text = text.replace('´', "'")
    text = _PUNCT_RUN.sub(r' \g<0> ', text)
    text = re.sub(r'\s*\n\s*', ' \n ', text)
    text = re.sub(r'[^\S\n]+', ' ', text)
    return text.strip()


_PLAIN = re.compile(r'[\x20-\x25\x27-\x7e\t\n]*')


def fix_text(text):
    """ftfy.fix_text, skipped for plain text that it leaves unchanged: printable ASCII, tabs and newlines
    without `&` (which could start an HTML entity); everything ftfy repairs needs another character."""
    return text if _PLAIN.fullmatch(text) else ftfy.fix_text(text)


def fetch(path):
    """How to replace the damaged BPE file `path`: the download.py command for its folder."""
    return f"run `{download_command(os.path.dirname(path), 'bpe')}` to fetch the original's BPE files"


def read_encoder(path):
    """encoder_bpe_40000.json: a JSON object mapping each BPE piece to its id; InputError when it is not."""
    try:
        with open(path, encoding='utf-8') as f:
            encoder = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path!r} is not a JSON file ({err}): {fetch(path)}") from err
    if not (isinstance(encoder, dict) and encoder and all(type(i) is int for i in encoder.values())
            and set(encoder.values()) == set(range(len(encoder)))):
        raise InputError(f"{path!r} is not a BPE vocabulary, a JSON object mapping its n pieces to the ids 0 to n - 1: "
                         f"{fetch(path)}")
    return encoder


def read_merges(path):
    """vocab_40000.bpe: a version line, then one merge per line (two pieces and a space), ending with a newline;
    the merges in order of rank. InputError when it is not such a text."""
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().split('\n')[1:-1]
    except UnicodeDecodeError as err:
        raise InputError(f"{path!r} is not a text file ({err}): {fetch(path)}") from err
    merges = [tuple(line.split()) for line in lines]
    for i, merge in enumerate(merges, start=2):
        if len(merge) not in (0, 2):  # an empty line (the tests' files end with one) merges nothing
            raise InputError(f"{path}, line {i}: a merge is two BPE pieces separated by a space, found "
                             f"{lines[i - 2][:80]!r}: {fetch(path)}")
    return merges


class TextEncoder:
    """Maps text to the original's BPE ids; `encoder` is token -> id, `decoder` id -> token."""

    def __init__(self, encoder_path, bpe_path):
        self.encoder_path, self.bpe_path = encoder_path, bpe_path
        self.nlp = spacy.blank('en')
        # Token texts do not depend on lexical attributes (like_num, shape, ...): not computing them for each new
        # word halves the tokenizer's time.
        self.nlp.vocab.lex_attr_getters = {}
        self.encoder = read_encoder(encoder_path)
        self.decoder = {v: k for k, v in self.encoder.items()}
        merges = read_merges(bpe_path)
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {}
        self.piece_cache = {}

    def bpe(self, token):
        """BPE pieces of one token, space-separated, the last ending in `</w>`."""
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + '</w>',)
        pairs = get_pairs(word)
        if not pairs:
            return token + '</w>'
        while True:
            ranked = [(self.bpe_ranks[pair], pair) for pair in pairs if pair in self.bpe_ranks]
            if not ranked:
                break
            first, second = min(ranked)[1]  # the pair of lowest rank (ranks are distinct)
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = ' '.join(word)
        if word == '\n  </w>':
            word = '\n</w>'
        self.cache[token] = word
        return word

    def encode(self, texts, verbose=True, desc=None):
        """List of id lists, one per text; pieces missing from the vocabulary map to 0. verbose: a bar labelled
        `desc`."""
        texts_tokens = []
        for text in tqdm(texts, desc=desc, ncols=80, leave=False, disable=not verbose):
            text_tokens = []
            text = text_standardize(fix_text(text))
            for piece in text.split(' ') if text else []:
                if piece not in self.piece_cache:
                    self.piece_cache[piece] = self.encode_piece(piece)
                text_tokens.extend(self.piece_cache[piece])
            texts_tokens.append(text_tokens)
        return texts_tokens

    def encode_piece(self, piece):
        """Ids of one space-separated piece of a standardised text. spaCy's tokenizer splits a text at single
        spaces and tokenizes each piece on its own (a piece's tokens do not depend on its neighbours), so a piece
        followed by its space is tokenized as in the whole text: `\\n ` stays one token, as in the original."""
        ids = []
        for token in self.nlp.tokenizer(piece + ' '):
            ids.extend(self.encoder.get(t, 0) for t in self.bpe(token.text.lower()).split(' '))
        return ids


# ------------------------------------------------------------------------ encoded data sets, and their cache

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


def encoded_dataset(task, data_dir, cache_dir, text_encoder):
    """The task's splits ({split: Examples}) with every text field encoded (a Ragged of token ids), and a function
    that caches them (call it once every input is checked). They are read from --cache_dir when the data files,
    the BPE files, the code that reads and encodes them and its libraries are those that wrote the cache; a cache
    that cannot be read, or that does not fit the data, is encoded again (with a warning) and replaced. `task` a
    finetuning.tasks entry; cache_dir None: no cache."""
    splits = task.load(data_dir)  # read and checked on every run: the cache holds only the encodings
    n_vocab = len(text_encoder.encoder)
    if not cache_dir:
        return encode_splits(text_encoder, splits, task.name), lambda: None
    digest = hashlib.sha256(f'{ftfy.__version__} {spacy.__version__}'.encode())
    code = [__file__, datasets.__file__, sys.modules[type(task).__module__].__file__]  # the reading and encoding
    for path in task.paths(data_dir) + [text_encoder.encoder_path, text_encoder.bpe_path] + code:
        with open(path, 'rb') as f:
            digest.update(f.read())
    cache_path = os.path.join(cache_dir, f'{task.name}-{digest.hexdigest()[:20]}.npz')
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


# ------------------------------------------------------------------------ the special tokens and positions
# The three special tokens `_start_`, `_delimiter_`, `_classify_` (the paper's extract token) follow the n_vocab
# pieces, then one row per position (SPEC.md, "Text encoding" and "The model"). Every token id and position id of
# the project is made here.

N_SPECIAL = 3


class Vocab(NamedTuple):
    """The ids of a vocabulary of n_vocab BPE pieces (40,478 for GPT-1's): pieces 0 .. n_vocab - 1, then the
    n_special special tokens, then the positions; `we` has rows(n_ctx) rows. Fine-tuning has the 3 special tokens;
    pre-training none (n_special 0: the published files' token rows, then the positions)."""
    n_vocab: int
    n_special: int = N_SPECIAL

    @property
    def start(self):
        return self.n_vocab

    @property
    def delimiter(self):
        return self.n_vocab + 1

    @property
    def classify(self):
        return self.n_vocab + 2

    def position(self, t):
        """The id of position t (an int or an int array), counted from 0."""
        return self.n_vocab + self.n_special + t

    def rows(self, n_ctx):
        """Rows of `we` for a context of n_ctx positions: the pieces, the special tokens, the positions."""
        return self.n_vocab + self.n_special + n_ctx
