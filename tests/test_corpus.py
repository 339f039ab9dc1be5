"""The pre-training corpus (corpus.py) and its windows (windows.py): the documents --corpus names, each encoded
as the original's text pipeline encodes it and followed by a paragraph break, the held-out documents drawn from
the seed and kept out of training, worker processes encoding what one process encodes, the cache keyed by the
corpus's content and checked when read, bad files named; each epoch's windows reading every training token once,
the held-out windows predicting every held-out token once."""
import gzip
import json
import os

import numpy as np
import pytest

from pretraining import corpus
from pretraining import windows
from text_utils import TextEncoder
from utils import InputError
from tests.pretrain_files import N_VOCAB, PIECES, write_corpus, write_vocab


@pytest.fixture(scope='module')
def vocab(tmp_path_factory):
    return write_vocab(str(tmp_path_factory.mktemp('vocab')))


def prepare(paths, vocab, cache, seed=1, valid_fraction=0.25, **kwargs):
    return corpus.prepare(corpus.find_sources([str(p) for p in paths]), *vocab, str(cache), seed, valid_fraction,
                          **kwargs)


def split_documents(stream):
    """The documents of a Stream, as lists of ids (each ends with its separator)."""
    ids = stream.read(0, len(stream)).tolist()
    return [ids[a:b] for a, b in zip(stream.documents[:-1], stream.documents[1:])]


def mixed_corpus(folder):
    """A folder with every kind of corpus file; returns the documents' texts in the corpus's order."""
    texts = {'b.txt': ['the cat sat.\n\n\nthe dog ran...  home'],
             'a/z.jsonl': ['first line doc.', '', 'third; a \u201cquoted\u201d one', 'x' * 5],
             'a/y.txt.gz': ['a gzipped book.\nwith two lines'],
             'c.jsonl.gz': ['compressed json lines.', 'and more']}
    for name, docs in texts.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith('.txt') or name.endswith('.txt.gz'):
            data = docs[0].encode()
        else:
            data = ''.join(json.dumps({'text': t, 'id': k}) + '\n' + ('\n' if k == 1 else '')
                           for k, t in enumerate(docs)).encode()  # a blank line after the second: no document
        path.write_bytes(gzip.compress(data) if name.endswith('.gz') else data)
    (folder / 'notes.md').write_text('not a corpus file')
    (folder / 'a' / 'image.txt').write_bytes(b'\x89PNG\r\n\x1a\n\0\0\0\rIHDR')
    (folder / 'broken.jsonl.gz').write_bytes(b'not gzip at all')
    return [t for name in sorted(texts, key=lambda n: str(folder / n)) for t in texts[name]]


def test_a_folder_is_its_txt_and_jsonl_files_sorted_and_a_binary_file_is_skipped_with_a_warning(tmp_path, capsys):
    mixed_corpus(tmp_path / 'books')
    sources = corpus.find_sources([str(tmp_path / 'books'), str(tmp_path / 'books' / 'b.txt')])
    names = [os.path.relpath(s.path, tmp_path / 'books') for s in sources]
    assert names == ['a/y.txt.gz', 'a/z.jsonl', 'b.txt', 'c.jsonl.gz', 'b.txt']  # the folder sorted, then the file
    assert [(s.kind, s.gz) for s in sources] == [('txt', True), ('jsonl', False), ('txt', False), ('jsonl', True),
                                                 ('txt', False)]
    err = capsys.readouterr().err
    for name in ('image.txt', 'broken.jsonl.gz'):
        (line,) = [line for line in err.splitlines() if name in line]
        assert line.startswith('warning: ') and 'left out of the corpus' in line
    assert 'notes.md' not in err


def test_each_document_is_its_encoding_then_a_paragraph_break_in_its_split(tmp_path, vocab):
    texts = mixed_corpus(tmp_path / 'books')
    encoder = TextEncoder(*vocab)
    ids = [encoder.encode([t], verbose=False)[0] for t in texts]
    separator = PIECES.index('\n</w>')
    seed, fraction = 3, 0.4
    held = [corpus.held_out(t, seed, fraction) for t in texts]
    assert 0 < sum(held) < len(texts) - 1  # both splits hold documents (the empty one is in neither)
    c = prepare([tmp_path / 'books'], vocab, tmp_path / 'cache', seed, fraction)
    assert c.index['separator'] == separator and c.index['n_vocab'] == N_VOCAB and c.index['n_empty'] == 1
    for stream, in_split in [(c.train, [not h for h in held]), (c.valid, held)]:
        expected = [i + [separator] for i, keep in zip(ids, in_split) if keep and i]
        assert split_documents(stream) == expected
        assert len(stream) == sum(map(len, expected))


def test_held_out_documents_come_from_the_seed_and_the_text_and_never_reach_training(tmp_path, vocab):
    rng = np.random.RandomState(0)
    letters = np.array(list('abcdefghijklmnopqrstuvwxyz'))
    texts = [' '.join(''.join(rng.choice(letters, 4)) for _ in range(3)) for _ in range(400)]
    draws = {seed: [corpus.held_out(t, seed, 0.25) for t in texts] for seed in (1, 2)}
    assert 60 < sum(draws[1]) < 140 and draws[1] != draws[2]
    assert draws[1] == [corpus.held_out(t, 1, 0.25) for t in texts]
    assert [corpus.held_out(t, 1, 0.) for t in texts] == [False] * 400
    (tmp_path / 'c.jsonl').write_text(''.join(json.dumps({'text': t}) + '\n' for t in texts + texts[:50]))
    c = prepare([tmp_path / 'c.jsonl'], vocab, tmp_path / 'cache', 1, 0.25)
    encoder = TextEncoder(*vocab)
    train = {tuple(d[:-1]) for d in split_documents(c.train)}
    valid = {tuple(d[:-1]) for d in split_documents(c.valid)}
    assert not train & valid  # a document and its copies on the same side
    assert valid == {tuple(encoder.encode([t], verbose=False)[0]) for t, h in zip(texts, draws[1]) if h}
    assert c.index['splits']['valid']['n_documents'] == sum(draws[1]) + sum(draws[1][:50])


def test_worker_processes_encode_what_one_process_encodes_across_shards(tmp_path, vocab, monkeypatch):
    write_corpus(str(tmp_path / 'books'), n_docs=30)
    monkeypatch.setattr(corpus, 'CHUNK_CHARS', 300)  # several chunks in flight
    one = prepare([tmp_path / 'books'], vocab, tmp_path / 'one', procs=0)
    two = prepare([tmp_path / 'books'], vocab, tmp_path / 'two', procs=2, shard_tokens=97)
    assert two.index['procs'] == 2 and len(two.index['splits']['train']['shards']) > 5
    for a, b in [(one.train, two.train), (one.valid, two.valid)]:
        whole = a.read(0, len(a))
        assert len(b.shards) > 1 and np.array_equal(b.read(0, len(b)), whole)
        assert np.array_equal(a.documents, b.documents)
        for start, n in [(90, 20), (0, 97), (96, 1), (len(a) - 150, 150)]:  # reads across the shards' ends
            assert np.array_equal(b.read(start, n), whole[start:start + n])


def test_the_cache_is_read_back_and_follows_the_corpus_content(tmp_path, vocab, monkeypatch):
    write_corpus(str(tmp_path / 'books'), n_docs=8)
    first = prepare([tmp_path / 'books'], vocab, tmp_path / 'cache')
    encode = corpus.encode

    def no_encoding(*args, **kwargs):
        raise AssertionError('encoded again')

    monkeypatch.setattr(corpus, 'encode', no_encoding)
    again = prepare([tmp_path / 'books'], vocab, tmp_path / 'cache')
    assert again.folder == first.folder and np.array_equal(again.train.read(0, len(again.train)),
                                                           first.train.read(0, len(first.train)))
    doc = tmp_path / 'books' / 'doc000.txt'
    os.utime(doc, ns=(1, 1))  # another time, the same content: its hash is taken again, the same cache
    assert prepare([tmp_path / 'books'], vocab, tmp_path / 'cache').folder == first.folder
    assert corpus.cache_key(corpus.find_sources([str(tmp_path / 'books')]), *vocab, str(tmp_path / 'cache'), 2,
                            0.25)[0] != os.path.basename(first.folder)[len('corpus-'):]  # the seed draws the split
    doc.write_text(doc.read_text() + ' a')
    monkeypatch.setattr(corpus, 'encode', encode)
    changed = prepare([tmp_path / 'books'], vocab, tmp_path / 'cache')
    assert changed.folder != first.folder and len(changed.train) + len(changed.valid) == \
        len(first.train) + len(first.valid) + 1
    assert sorted(os.listdir(tmp_path / 'cache')) == sorted(
        ['corpus-hashes.json', os.path.basename(first.folder), os.path.basename(changed.folder)])


@pytest.mark.parametrize('damage', ['a flipped byte', 'cut', 'documents', 'index'])
def test_a_damaged_cache_file_is_one_error_naming_it(tmp_path, vocab, damage):
    write_corpus(str(tmp_path / 'books'), n_docs=8)
    folder = prepare([tmp_path / 'books'], vocab, tmp_path / 'cache').folder
    path = {'index': 'index.json', 'documents': 'train/documents.npy'}.get(damage, 'train/tokens_00000.npy')
    path = os.path.join(folder, path)
    data = bytearray(open(path, 'rb').read())
    if damage == 'cut':
        data = data[:-3]
    else:
        data[-1] ^= 1
    with open(path, 'wb') as f:
        f.write(data)
    with pytest.raises(InputError) as err:
        prepare([tmp_path / 'books'], vocab, tmp_path / 'cache')
    assert repr(path) in str(err.value) and 'damaged' in str(err.value) and f'delete {folder!r}' in str(err.value)


@pytest.mark.parametrize('name, content, message', [
    ('latin.txt', 'caf\xe9 au lait'.encode('latin-1'), r"latin.txt' is not UTF-8 text: byte 3 (b'\xe9')"),
    ('lines.jsonl', b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"lines.jsonl' is not UTF-8 text: byte 28 (b'\xe9')"),
    ('lines.jsonl', b'{"text": "ok"}\n\n{"text": oops}\n', "lines.jsonl, line 3 is not JSON (Expecting value"),
    ('lines.jsonl', b'{"text": "ok"}\n{"body": "no text"}\n', 'lines.jsonl, line 2 has no "text" field'),
    ('lines.jsonl', b'{"text": 3}\n', 'lines.jsonl, line 1 has a "text" that is a int, not a string'),
    ('lines.jsonl', b'["text"]\n', 'lines.jsonl, line 1 has no "text" field'),
])
def test_a_file_that_is_not_a_corpus_file_is_one_error_naming_the_place(tmp_path, vocab, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError) as err:
        prepare([tmp_path / name], vocab, tmp_path / 'cache')
    assert message in str(err.value)
    assert list((tmp_path / 'cache').iterdir()) == []  # nothing left behind


@pytest.mark.parametrize('name, make, message', [
    ('books', lambda p: None, "does not exist"),
    ('books', lambda p: (p.mkdir(), (p / 'notes.md').write_text('x')), 'no document under it'),
    ('books', lambda p: (p.mkdir(), (p / 'x.txt').write_bytes(b'\0\1')), 'is binary: no document to read'),
    ('book.txt', lambda p: p.write_bytes(b'\0\1\2'), 'is not text: it holds NUL bytes'),
    ('book.pdf', lambda p: p.write_bytes(b'%PDF'), 'is not a .txt, .jsonl, .txt.gz or .jsonl.gz file'),
])
def test_a_path_without_documents_is_one_error(tmp_path, name, make, message):
    make(tmp_path / name)
    with pytest.raises(InputError) as err:
        corpus.find_sources([str(tmp_path / name)])
    assert message in str(err.value) and repr(str(tmp_path / name)) in str(err.value)


# --- windows --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('n_tokens, n_ctx', [(12, 4), (13, 4), (25, 4), (12, 12), (100, 12), (11, 12)])
def test_each_epoch_reads_every_training_token_once_and_no_window_crosses_the_end(n_tokens, n_ctx):
    plan = windows.EpochPlan(n_tokens, n_ctx, n_batch=3, seed=5)
    offsets, orders = set(), set()
    for epoch in range(8):
        starts, lengths = plan.windows(epoch)
        seen = np.zeros(n_tokens, int)
        for s, n in zip(starts, lengths):
            seen[s:s + n] += 1
        assert np.all(seen == 1) and np.all(starts + lengths <= n_tokens) and np.all(lengths >= 1)
        ordered = np.argsort(starts)
        assert np.all(lengths[ordered][1:-1] == n_ctx) and np.all(lengths <= n_ctx)  # only the ends are shorter
        assert starts[ordered][1] % n_ctx == plan.offset(epoch) if len(starts) > 1 else True
        batches = list(plan.batches(epoch))
        assert len(batches) == plan.n_updates(epoch) == -(-len(starts) // 3)
        assert np.array_equal(np.concatenate([b[0] for b in batches]), starts)
        assert [b[0].tolist() for b in plan.batches(epoch, done=1)] == [b[0].tolist() for b in batches[1:]]
        again = windows.EpochPlan(n_tokens, n_ctx, n_batch=3, seed=5).windows(epoch)  # from (seed, epoch) alone
        assert np.array_equal(again[0], starts) and np.array_equal(again[1], lengths)
        offsets.add(plan.offset(epoch))
        orders.add(tuple(starts))
    if n_tokens > 2 * n_ctx:
        assert len(offsets) > 1 and len(orders) == 8
        other = windows.EpochPlan(n_tokens, n_ctx, n_batch=3, seed=6)
        assert any(tuple(other.windows(e)[0]) not in orders for e in range(8))


@pytest.mark.parametrize('n_tokens, n_ctx', [(2, 4), (12, 4), (13, 4), (100, 12)])
def test_the_held_out_windows_predict_every_token_but_the_first_once(n_tokens, n_ctx):
    starts, lengths = windows.heldout_windows(n_tokens, n_ctx)
    predicted = np.zeros(n_tokens, int)
    for s, n in zip(starts, lengths):
        assert 2 <= n <= n_ctx and s + n <= n_tokens
        predicted[s + 1:s + n] += 1
    assert predicted[0] == 0 and np.all(predicted[1:] == 1)


def test_a_batch_holds_the_windows_tokens_positions_and_weights():
    stream = corpus.Stream([np.arange(10, 30, dtype=np.uint16), np.arange(30, 40, dtype=np.uint16)],
                           np.array([0, 30], np.int64))
    X, M = windows.lm_batch(stream, np.array([18, 0]), np.array([6, 3]), 3, 6, n_vocab=50)
    assert X.shape == (3, 6, 2) and X.dtype == np.int32 and M.dtype == np.float32
    assert X[0, :, 0].tolist() == [28, 29, 30, 31, 32, 33] and X[1, :, 0].tolist() == [10, 11, 12, 0, 0, 0]
    assert np.all(X[:, :, 1] == 50 + np.arange(6)) and np.all(X[2, :, 0] == 0)
    assert M.tolist() == [[0, 1, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0], [0] * 6]
    loss = np.random.RandomState(0).rand(3, 6)
    W = windows.weighted(M)
    np.testing.assert_allclose((W * loss).sum(1).mean(), (M * loss).sum() / M.sum(), rtol=1e-6)
    halves = [(W[:1] * loss[:1]).sum(1).mean(), (W[1:2] * loss[1:2]).sum(1).mean(), (W[2:] * loss[2:]).sum(1).mean()]
    np.testing.assert_allclose(np.mean(halves), (M * loss).sum() / M.sum(), rtol=1e-6)  # 3 replicas of one row
