"""A pre-training corpus (SPEC.md, "Pre-training"): the documents of --corpus found and read, encoded once by the
original's text pipeline (text_utils) in worker processes, streamed into token shards of uint16 on disk with an
index of the documents' boundaries, the held-out documents into their own shards; cached, keyed by the content of
the corpus, the BPE files and the code. NumPy and the standard library only: no TensorFlow here (the workers
import this file).

    sources = find_sources(['books/'])                     # [Source]: what --corpus names, checked
    corpus = prepare(sources, encoder_path, bpe_path, cache_dir, seed, valid_fraction, procs)
    corpus.train, corpus.valid                             # Streams of token ids (memory-mapped shards)

The windows that training and evaluation read from the streams are pretraining/windows.py's.
"""
import array
import contextlib
import errno
import functools
import gzip
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import zlib
from typing import NamedTuple

import ftfy
import numpy as np
import spacy
from tqdm import tqdm

import text_utils
from utils import InputError, atomic_write

LAYOUT = 1                  # the cache folder's layout; another number is another cache
SHARD_TOKENS = 2 ** 27      # tokens per shard (256 MB of uint16)
CHUNK_CHARS = 2 ** 20       # text sent to a worker at a time (a longer document goes alone)
IN_PROCESS_BYTES = 2 ** 22  # a corpus smaller than this is encoded in this process (workers take seconds to start)
KINDS = {'.txt': 'txt', '.jsonl': 'jsonl'}
FIX = ("give UTF-8 text: a .txt file per document, or a .jsonl file of one JSON object per line with its text "
       "in \"text\" (.gz of either)")


# ------------------------------------------------------------------------------------------- the documents

class Source(NamedTuple):
    """A file of the corpus: `kind` 'txt' (one document) or 'jsonl' (one per line), gzip-compressed or not."""
    path: str
    kind: str
    gz: bool


def kind_of(path):
    """(kind, gz) of a file name that is a corpus file (.txt, .jsonl, .txt.gz, .jsonl.gz), else None."""
    name = path[:-3] if path.endswith('.gz') else path
    kind = KINDS.get(os.path.splitext(name)[1])
    return (kind, path.endswith('.gz')) if kind else None


def binary_reason(path, gz):
    """Why the file is not text (a NUL byte in its first 8 KB, or a .gz that does not decompress), else None."""
    try:
        with (gzip.open(path, 'rb') if gz else open(path, 'rb')) as f:
            head = f.read(8192)
    except (OSError, EOFError, zlib.error) as err:
        return f'not a gzip file ({err})' if gz else f'cannot be read ({err})'
    return 'it holds NUL bytes: a binary file' if b'\0' in head else None


def find_sources(paths):
    """The corpus files that --corpus `paths` name, in order: a file as given, a folder every .txt and .jsonl (and
    .gz of either) under it, recursively, sorted by path. A binary file found in a folder is left out with a
    warning naming it; InputError for a path that does not exist, a file of another kind, a folder without one.
    Looked for once per process (pretrain.py's early check, then its run)."""
    return list(_find_sources(tuple(paths)))


@functools.lru_cache(maxsize=None)
def _find_sources(paths):
    sources = []
    for path in paths:
        if not os.path.exists(path):
            raise InputError(f"--corpus {path!r} does not exist: give files or folders of text ({FIX})")
        if not os.path.isdir(path):
            if kind_of(path) is None:
                raise InputError(f"--corpus {path!r} is not a .txt, .jsonl, .txt.gz or .jsonl.gz file: {FIX}")
            reason = binary_reason(path, path.endswith('.gz'))
            if reason:
                raise InputError(f"--corpus {path!r} is not text: {reason}: {FIX}")
            sources.append(Source(path, *kind_of(path)))
            continue
        found = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                       if kind_of(name))
        if not found:
            raise InputError(f"--corpus {path!r}: no document under it (no .txt, .jsonl, .txt.gz or .jsonl.gz "
                             f"file): {FIX}")
        for file in found:
            reason = binary_reason(file, file.endswith('.gz'))
            if reason:
                print(f"warning: {file!r} left out of the corpus: {reason}", file=sys.stderr)
            else:
                sources.append(Source(file, *kind_of(file)))
    if not sources:
        raise InputError(f"--corpus: every file found in {', '.join(map(repr, paths))} is binary: no document to "
                         f"read: {FIX}")
    return sources


def decoded(data, path, start=0):
    """bytes `data` as UTF-8; InputError naming the file `path` and the byte offset (start + the position in
    data)."""
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as err:
        raise InputError(f"{path!r} is not UTF-8 text: byte {start + err.start} ({data[err.start:err.start + 1]!r})"
                         f" cannot be decoded{' (offsets in the decompressed file)' if path.endswith('.gz') else ''}"
                         f": convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None


def documents(source):
    """(text, raw) for each document of `source` in order: raw the bytes of the file on disk read so far (the
    progress). A .jsonl line that is blank is no document; one that is not a JSON object with a string "text" is
    an InputError naming the file and the line."""
    opener = gzip.open if source.gz else open
    with open(source.path, 'rb') as raw, opener(raw, 'rb') if source.gz else contextlib.nullcontext(raw) as f:
        if source.kind == 'txt':
            yield decoded(f.read(), source.path), raw.tell()
            return
        offset = 0
        for number, line in enumerate(f, 1):
            text = decoded(line, source.path, offset)
            offset += len(line)
            if not text.strip():
                continue
            where = f"{source.path}, line {number}"
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise InputError(f"{where} is not JSON ({err.msg}, column {err.colno}): each line of a .jsonl file "
                                 "is one JSON object holding a document in its \"text\" field") from None
            if not isinstance(record, dict) or not isinstance(record.get('text'), str):
                held = 'no "text" field' if not isinstance(record, dict) or 'text' not in record else \
                    f'a "text" that is a {type(record["text"]).__name__}, not a string'
                raise InputError(f"{where} has {held}: each line of a .jsonl file is one JSON object holding a "
                                 "document in its \"text\" field")
            yield record['text'], raw.tell()


def chunks(sources):
    """Lists of documents [(text, raw progress of the file)] of about CHUNK_CHARS characters, in corpus order."""
    chunk, size, done = [], 0, 0
    for source in sources:
        for text, raw in documents(source):
            chunk.append((text, done + raw))
            size += len(text)
            if size >= CHUNK_CHARS:
                yield chunk
                chunk, size = [], 0
        done += os.path.getsize(source.path)
    if chunk:
        yield chunk


# ------------------------------------------------------------------------------------------- encoding

_ENCODER = []  # a worker process's TextEncoder, made once by start_worker (a pool's initializer needs a global)


def start_worker(encoder_path, bpe_path):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops the pool
    _ENCODER.append(text_utils.TextEncoder(encoder_path, bpe_path))


def encode_texts(texts):
    """The BPE ids (uint16 arrays) of each text, by the worker's TextEncoder."""
    return [np.asarray(ids, np.uint16) for ids in _ENCODER[0].encode(texts, verbose=False)]


def encoded_chunks(sources, encoder_path, bpe_path, procs):
    """(chunk, its encodings) for each chunk of the corpus in order, encoded by `procs` worker processes (0: in
    this process). At most 2 * procs chunks are in flight, so the corpus is never all in memory."""
    if procs == 0:
        encoder = text_utils.TextEncoder(encoder_path, bpe_path)
        for chunk in chunks(sources):
            yield chunk, [np.asarray(ids, np.uint16) for ids in encoder.encode([t for t, _ in chunk], verbose=False)]
        return
    # spawn: a fresh interpreter per worker (forking a process that runs TensorFlow's threads can hang).
    with multiprocessing.get_context('spawn').Pool(procs, start_worker, (encoder_path, bpe_path)) as pool:
        pending = []
        for chunk in chunks(sources):
            pending.append((chunk, pool.apply_async(encode_texts, ([t for t, _ in chunk],))))
            if len(pending) >= 2 * procs:
                chunk, result = pending.pop(0)
                yield chunk, result.get()
        for chunk, result in pending:
            yield chunk, result.get()


def held_out(text, seed, valid_fraction):
    """Whether a document is held out: a hash of the seed and its text below valid_fraction (a document and every
    copy of it fall on the same side)."""
    digest = hashlib.blake2b(text.encode('utf-8', 'surrogatepass'), digest_size=8,
                             key=str(seed).encode()).digest()
    return int.from_bytes(digest, 'little') < valid_fraction * 2 ** 64


class SplitWriter:
    """Writes one split's documents into shards tokens_00000.npy, ... of SHARD_TOKENS uint16 ids in `folder`, each
    document followed by the separator, and records where each document starts."""

    def __init__(self, folder, separator, shard_tokens):
        self.folder, self.separator = folder, separator
        os.makedirs(folder)
        self.buffer, self.filled, self.shards = np.empty(shard_tokens, np.uint16), 0, []
        self.starts, self.n_tokens = array.array('q'), 0

    def add(self, ids):
        self.starts.append(self.n_tokens)
        for part in (ids, np.array([self.separator], np.uint16)):
            while len(part):
                n = min(len(part), len(self.buffer) - self.filled)
                self.buffer[self.filled:self.filled + n] = part[:n]
                self.filled, self.n_tokens, part = self.filled + n, self.n_tokens + n, part[n:]
                if self.filled == len(self.buffer):
                    self.flush()

    def flush(self):
        if self.filled:
            name = f'tokens_{len(self.shards):05d}.npy'
            write_array(os.path.join(self.folder, name), self.buffer[:self.filled])
            self.shards.append([name, self.filled, file_hash(os.path.join(self.folder, name))])
            self.filled = 0

    def close(self):
        """Flush the last shard, write documents.npy (each document's first token, then the split's length), and
        return the split's entry of the index."""
        self.flush()
        write_array(os.path.join(self.folder, 'documents.npy'),
                    np.append(np.frombuffer(self.starts, np.int64), np.int64(self.n_tokens)))
        return dict(n_tokens=self.n_tokens, n_documents=len(self.starts), shards=self.shards,
                    documents=file_hash(os.path.join(self.folder, 'documents.npy')))


def write_array(path, a):
    """np.save to `path`."""
    with open(path, 'wb') as f:
        np.save(f, a, allow_pickle=False)


def file_hash(path):
    """BLAKE2b of the file's bytes (hex)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(2 ** 22), b''):
            digest.update(block)
    return digest.hexdigest()


def encode(sources, encoder_path, bpe_path, folder, seed, valid_fraction, procs, shard_tokens=SHARD_TOKENS):
    """Encode the corpus into `folder` (new): train/ and valid/ shards (SplitWriter) and index.json; returns the
    index. Each document is ftfy + standardisation + spaCy + BPE of its text, as TextEncoder.encode; a document
    with no token is left out. A progress bar shows the bytes read and the tokens per second."""
    encoder = text_utils.read_encoder(encoder_path)
    if len(encoder) > 2 ** 16:
        raise InputError(f"the vocabulary {encoder_path!r} has {len(encoder)} pieces: more than the 65,536 ids "
                         "that the corpus's uint16 shards hold")
    separator = encoder.get('\n</w>', 0)  # a paragraph break, as a blank line inside a document becomes
    writers = {split: SplitWriter(os.path.join(folder, split), separator, shard_tokens) for split in ('train', 'valid')}
    total = sum(os.path.getsize(s.path) for s in sources)
    n_empty, n_tokens, start = 0, 0, time.time()
    with tqdm(total=total, desc=f'encoding the corpus ({procs or "this"} process{"es" * (procs > 1)})', unit='B',
              unit_scale=True, file=sys.stderr, leave=False) as bar:
        for chunk, encoded in encoded_chunks(sources, encoder_path, bpe_path, procs):
            for (text, _), ids in zip(chunk, encoded):
                if len(ids) == 0:
                    n_empty += 1
                    continue
                writers['valid' if held_out(text, seed, valid_fraction) else 'train'].add(ids)
                n_tokens += len(ids) + 1
            bar.update(chunk[-1][1] - bar.n)
            bar.set_postfix_str(f'{n_tokens / max(time.time() - start, 1e-9):,.0f} tokens/s', refresh=False)
    index = dict(layout=LAYOUT, n_vocab=len(encoder), separator=separator, n_empty=n_empty,
                 seconds=round(time.time() - start, 3), procs=procs,
                 splits={split: writer.close() for split, writer in writers.items()})
    with open(os.path.join(folder, 'index.json'), 'w') as f:
        json.dump(index, f)
    return index


# ------------------------------------------------------------------------------------------- the cache

def content_hashes(sources, cache_dir):
    """SHA-256 of each source file, and a function that records them: a file whose path, size and modification
    time are those recorded in cache_dir/corpus-hashes.json when it was last hashed is not read again
    (BooksCorpus-sized corpora take a minute to hash)."""
    memo_path = os.path.join(cache_dir, 'corpus-hashes.json') if cache_dir else None
    memo = {}
    if memo_path and os.path.isfile(memo_path):
        with contextlib.suppress(OSError, ValueError):
            with open(memo_path, encoding='utf-8') as f:
                memo = json.load(f)
            memo = memo if isinstance(memo, dict) else {}
    hashes, changed = [], False
    for source in sources:
        stat = os.stat(source.path)
        key, seen = os.path.realpath(source.path), [stat.st_size, stat.st_mtime_ns]
        if not (isinstance(memo.get(key), list) and memo[key][:2] == seen):
            digest = hashlib.sha256()
            with open(source.path, 'rb') as f:
                for block in iter(lambda: f.read(2 ** 22), b''):
                    digest.update(block)
            memo[key], changed = seen + [digest.hexdigest()], True
        hashes.append(memo[key][2])

    def record():
        if memo_path and changed:
            with contextlib.suppress(OSError, InputError):  # only saves time
                with atomic_write(memo_path) as f:
                    json.dump(memo, f)
    return hashes, record


def cache_key(sources, encoder_path, bpe_path, cache_dir, seed, valid_fraction):
    """The cache's name for this corpus: a hash of its files' contents in order, the BPE files, the code that reads
    and encodes them and its libraries' versions, the seed and valid_fraction (which choose the held-out
    documents); and content_hashes' function recording the files' hashes."""
    digest = hashlib.sha256(f'{LAYOUT} {ftfy.__version__} {spacy.__version__} {seed} {valid_fraction!r}'.encode())
    hashes, record = content_hashes(sources, cache_dir)
    for source, content in zip(sources, hashes):
        digest.update(f'{source.kind} {source.gz} {content}\n'.encode())
    for path in [encoder_path, bpe_path, text_utils.__file__, __file__]:
        with open(path, 'rb') as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:20], record


class Stream:
    """A split's token ids, its shards end to end (memory-mapped), and its documents' first tokens."""

    def __init__(self, shards, documents):
        self.shards = shards
        self.ends = np.cumsum([len(s) for s in shards], dtype=np.int64)
        self.documents = documents  # int64 (n_documents + 1,): document k is tokens [documents[k], documents[k+1])

    def __len__(self):
        return int(self.ends[-1]) if len(self.ends) else 0

    def read(self, start, n):
        """Tokens [start, start + n) as int32 (n,), across shards."""
        out, k = np.empty(n, np.int32), int(np.searchsorted(self.ends, start, side='right'))
        done = 0
        while done < n:
            first = start + done - (self.ends[k - 1] if k else 0)
            piece = self.shards[k][first:first + n - done]
            out[done:done + len(piece)] = piece
            done, k = done + len(piece), k + 1
        return out


class Corpus(NamedTuple):
    """An encoded corpus: its folder, index (index.json) and its two Streams."""
    folder: str
    index: dict
    train: Stream
    valid: Stream


def open_corpus(folder, n_vocab):
    """The Corpus in `folder`, every file checked against its index (size, dtype, BLAKE2b hash); InputError
    naming the damaged file. Nothing in it is unpickled."""
    fix = f"delete {folder!r} and start again: the corpus is encoded again"
    try:
        with open(os.path.join(folder, 'index.json'), encoding='utf-8') as f:
            index = json.load(f)
        splits = {split: index['splits'][split] for split in ('train', 'valid')}
        if index['layout'] != LAYOUT or index['n_vocab'] != n_vocab:
            raise ValueError(f"layout {index['layout']} of a vocabulary of {index['n_vocab']}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"the encoded corpus's index {os.path.join(folder, 'index.json')!r} is damaged ({err}): "
                         f"{fix}") from None
    streams = {}
    for split, entry in splits.items():
        arrays = []
        for name, n, digest in entry['shards'] + [['documents.npy', entry['n_documents'] + 1, entry['documents']]]:
            path = os.path.join(folder, split, name)
            try:
                a = np.load(path, mmap_mode='r', allow_pickle=False)
                dtype = np.int64 if name == 'documents.npy' else np.uint16
                if a.dtype != dtype or a.shape != (n,):
                    raise ValueError(f'a {a.dtype} array of shape {a.shape}, not {n} {np.dtype(dtype)} values')
                if file_hash(path) != digest:
                    raise ValueError('its content is not what was written')
            except (OSError, ValueError, EOFError) as err:
                raise InputError(f"the encoded corpus's file {path!r} is damaged ({err}): {fix}") from None
            arrays.append(a)
        streams[split] = Stream(arrays[:-1], arrays[-1])
        if len(streams[split]) != entry['n_tokens'] or streams[split].documents[-1] != entry['n_tokens']:
            raise InputError(f"the encoded corpus in {folder!r} is damaged (its {split} split's lengths disagree "
                             f"with its index): {fix}")
    return Corpus(folder, index, streams['train'], streams['valid'])


def prepare(sources, encoder_path, bpe_path, cache_dir, seed, valid_fraction, procs=0, check=lambda corpus: None,
            shard_tokens=SHARD_TOKENS, scratch=None):
    """The encoded Corpus of `sources`: read from cache_dir when this corpus (cache_key) was encoded before, else
    encoded (procs worker processes; 0: every CPU for a corpus over IN_PROCESS_BYTES, else this process) into a
    temporary folder that becomes the cache's folder only once check(corpus) accepted it (an InputError there
    leaves nothing behind). cache_dir '': encoded into `scratch` (a folder the caller removes)."""
    n_vocab = len(text_utils.read_encoder(encoder_path))
    key, record_hashes = cache_key(sources, encoder_path, bpe_path, cache_dir, seed, valid_fraction)
    folder = os.path.join(cache_dir, f'corpus-{key}') if cache_dir else os.path.join(scratch, 'corpus')
    if cache_dir and os.path.isdir(folder):
        corpus = open_corpus(folder, n_vocab)
        check(corpus)
        record_hashes()
        return corpus
    if procs == 0:
        procs = len(os.sched_getaffinity(0)) if sum(os.path.getsize(s.path) for s in sources) > IN_PROCESS_BYTES else 0
    parent = cache_dir or scratch
    try:
        os.makedirs(parent, exist_ok=True)
        remove_stale(parent, key)
        tmp = tempfile.mkdtemp(prefix=f'.corpus-{key}.{socket.gethostname()}.{os.getpid()}.', suffix='.tmp',
                               dir=parent)
    except OSError as err:
        raise InputError(f"cannot write the encoded corpus in {parent!r} ({err.strerror}): choose a writable "
                         "--cache_dir") from err
    try:
        encode(sources, encoder_path, bpe_path, tmp, seed, valid_fraction, procs, shard_tokens)
        check(open_corpus(tmp, n_vocab))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process (a worker of the same cluster) has just cached the same corpus
            if not os.path.isdir(folder):
                raise
            shutil.rmtree(tmp)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InputError(f"no space left to write the encoded corpus in {parent!r}: it needs about half the "
                             f"corpus's size ({sum(os.path.getsize(s.path) for s in sources) / 2 ** 21:,.1f} MB "
                             "for plain text): free space there or choose another --cache_dir") from err
        raise
    record_hashes()
    return open_corpus(folder, n_vocab)


def remove_stale(parent, key):
    """Remove the temporary folders that an encoding of this corpus killed on this machine left in `parent`."""
    host = socket.gethostname()
    for name in os.listdir(parent):
        parts = name.split('.')
        if name.startswith(f'.corpus-{key}.{host}.') and len(parts) >= 4 and parts[-3].isdigit():
            try:
                os.kill(int(parts[-3]), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            except PermissionError:
                pass
