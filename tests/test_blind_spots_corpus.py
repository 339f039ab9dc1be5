"""The pre-training corpus's blind spots (issue 32): each input of the cache's key pinned by its effect (README:
the cache is keyed by the content of the corpus's files, the BPE files, the code, --seed and --valid_fraction),
the shards' uint16 bound at its exact boundary, and the SPEC's rules for the held-out documents and for an
epoch's windows written out here (hashlib, numpy's Generator), not taken from corpus.py or windows.py."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest

import text_utils
from pretraining import corpus, windows
from tests.pretrain_files import PIECES, token, write_corpus, write_vocab
from utils import InputError


def prepare(paths, vocab, cache, seed=1, valid_fraction=0.25):
    return corpus.prepare(corpus.find_sources([str(p) for p in paths]), *vocab, str(cache), seed, valid_fraction)


def same_size_edit(path, ns):
    """Replace the document's first word by another one-letter word (the same size), its time set to ns."""
    text = open(path).read()
    with open(path, 'w') as f:
        f.write(('b' if text[0] != 'b' else 'c') + text[1:])
    os.utime(path, ns=(ns, ns))
    return text


def test_the_cache_is_encoded_again_when_one_input_of_its_key_changes_and_only_then(tmp_path, monkeypatch):
    vocab = write_vocab(str(tmp_path / 'vocab'))
    write_corpus(str(tmp_path / 'books'), n_docs=6)
    encodes = []
    encode = corpus.encode
    monkeypatch.setattr(corpus, 'encode', lambda *a, **k: encodes.append(1) or encode(*a, **k))

    def run(paths=(tmp_path / 'books',), **kwargs):
        """(the cache folder's name, whether the corpus was encoded, its training tokens)."""
        before = len(encodes)
        c = prepare(paths, vocab, tmp_path / 'cache', **kwargs)
        return os.path.basename(c.folder), len(encodes) > before, c.train.read(0, len(c.train)).tolist()

    first, encoded, tokens = run()
    assert encoded
    unchanged = (first, False, tokens)
    assert run() == unchanged                                       # nothing changed: read back

    doc = tmp_path / 'books' / 'doc000.txt'
    os.utime(doc, ns=(10 ** 18, 10 ** 18))                          # another time, the same content: read back
    assert run() == unchanged
    text = same_size_edit(doc, 10 ** 18 + 10 ** 9)                  # the same size, other content
    assert os.path.getsize(doc) == len(text)
    name, encoded, edited = run()
    assert name != first and encoded
    doc.write_text(text)
    os.utime(doc, ns=(10 ** 18 + 2 * 10 ** 9,) * 2)
    assert run() == unchanged                                       # back as it was: the first cache

    for kwargs in [dict(seed=2), dict(valid_fraction=0.5)]:         # they draw the held-out documents
        name, encoded, _ = run(**kwargs)
        assert name != first and encoded, kwargs
    assert run() == unchanged

    encoder_path, bpe_path = vocab
    for path, change in [(bpe_path, lambda s: s + 'a b\n'),         # one more merge
                         (encoder_path, lambda s: json.dumps({**json.loads(s), 'a</w>': token('b'),
                                                              'b</w>': token('a')}))]:   # two ids swapped
        original = open(path).read()
        with open(path, 'w') as f:
            f.write(change(original))
        name, encoded, changed = run()
        assert name != first and encoded, path
        with open(path, 'w') as f:
            f.write(original)
        assert run() == unchanged, path
        if path == encoder_path:
            assert changed != tokens                                # the ids that the stale cache would hold

    for module in (corpus, text_utils):                             # the code that reads and encodes the text
        copy = tmp_path / os.path.basename(module.__file__)
        copy.write_text(open(module.__file__).read() + '\n# edited\n')
        with monkeypatch.context() as m:
            m.setattr(module, '__file__', str(copy))
            name, encoded, _ = run()
        assert name != first and encoded, module.__name__
    assert run() == unchanged


def test_a_copy_of_the_corpus_elsewhere_is_hashed_for_itself_even_with_the_same_names_sizes_and_times(tmp_path):
    vocab = write_vocab(str(tmp_path / 'vocab'))
    write_corpus(str(tmp_path / 'books'), n_docs=4)
    shutil.copytree(tmp_path / 'books', tmp_path / 'copy')
    for folder in ('books', 'copy'):
        for root, _, names in os.walk(tmp_path / folder):
            for name in names:
                os.utime(os.path.join(root, name), ns=(10 ** 18, 10 ** 18))
    first = prepare([tmp_path / 'books'], vocab, tmp_path / 'cache')
    same_size_edit(tmp_path / 'copy' / 'doc000.txt', 10 ** 18)     # the copy differs in content alone
    copy = prepare([tmp_path / 'copy'], vocab, tmp_path / 'cache')
    assert copy.folder != first.folder
    assert copy.train.read(0, len(copy.train)).tolist() + copy.valid.read(0, len(copy.valid)).tolist() != \
        first.train.read(0, len(first.train)).tolist() + first.valid.read(0, len(first.valid)).tolist()


# --- the uint16 bound ---------------------------------------------------------------------------------------------

def big_vocab(folder, n_pieces):
    """A vocabulary of n_pieces pieces: fillers, then the character pieces of pretrain_files at the top ids (the
    paragraph break the last, n_pieces - 1)."""
    os.makedirs(folder, exist_ok=True)
    fillers = [f'fill{i}' for i in range(n_pieces - len(PIECES))]
    with open(os.path.join(folder, 'encoder.json'), 'w') as f:
        json.dump({piece: i for i, piece in enumerate(fillers + PIECES)}, f)
    with open(os.path.join(folder, 'vocab.bpe'), 'w') as f:
        f.write('#version: 0.2\n\n')
    return os.path.join(folder, 'encoder.json'), os.path.join(folder, 'vocab.bpe')


def test_a_vocabulary_of_65536_pieces_is_stored_exactly_and_one_of_65537_is_refused(tmp_path):
    (tmp_path / 'books').mkdir()
    (tmp_path / 'books' / 'a.txt').write_text('a b j')
    vocab = big_vocab(str(tmp_path / 'v16'), 2 ** 16)
    c = prepare([tmp_path / 'books'], vocab, tmp_path / 'cache', valid_fraction=0)
    base = 2 ** 16 - len(PIECES)
    expected = [base + token(w) for w in 'abj'] + [2 ** 16 - 1]    # the paragraph break: the largest uint16
    assert c.index['separator'] == 2 ** 16 - 1 and c.index['n_vocab'] == 2 ** 16
    assert c.train.read(0, len(c.train)).tolist() == expected and len(c.valid) == 0

    vocab = big_vocab(str(tmp_path / 'v17'), 2 ** 16 + 1)
    with pytest.raises(InputError) as err:
        prepare([tmp_path / 'books'], vocab, tmp_path / 'cache17', valid_fraction=0)
    assert 'has 65537 pieces' in str(err.value) and 'uint16' in str(err.value)
    assert not [n for n in os.listdir(tmp_path / 'cache17') if n.startswith(('corpus-', '.corpus-'))]


# --- the SPEC's rules, written out --------------------------------------------------------------------------------

def test_a_document_is_held_out_when_its_seed_keyed_blake2b_64_read_little_endian_is_below_the_share():
    texts = ['the cat sat.', 'caf\u00e9 au lait', 'x', '\u201cquoted\u201d text', 'a b c d e f'] + \
        [f'document {k}' for k in range(200)]
    for seed in (0, 1, 42, 2 ** 31 + 5):
        for fraction in (0., 0.1, 0.5, 1.):
            expected = [int.from_bytes(hashlib.blake2b(t.encode('utf-8'), digest_size=8, key=str(seed).encode())
                                       .digest(), 'little') < fraction * 2 ** 64 for t in texts]
            assert [corpus.held_out(t, seed, fraction) for t in texts] == expected, (seed, fraction)
    # the little-endian reading matters: the big-endian one differs on these texts
    big = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8, key=b'1').digest(), 'big') < 2 ** 63
           for t in texts]
    assert big != [corpus.held_out(t, 1, 0.5) for t in texts]


@pytest.mark.parametrize('n_tokens, n_ctx, n_batch', [(100, 12, 3), (37, 5, 2), (12, 12, 1), (7, 4, 4)])
def test_an_epochs_windows_are_the_specs_cuts_at_its_offset_in_its_permutations_order(n_tokens, n_ctx, n_batch):
    """SPEC: epoch e draws from default_rng([seed, e]) an offset o = integers(n_ctx), then a permutation of its
    windows; the stream is cut at 0, o, o + n_ctx, ... and at N; update k takes windows k n_batch .. (k + 1) n_batch
    - 1 of the permutation."""
    seed = 9
    plan = windows.EpochPlan(n_tokens, n_ctx, n_batch, seed)
    for epoch in range(5):
        rng = np.random.default_rng([seed, epoch])
        o = int(rng.integers(n_ctx))
        cuts = sorted({0, n_tokens} | set(range(o, n_tokens, n_ctx)))
        starts, ends = np.array(cuts[:-1]), np.array(cuts[1:])
        order = rng.permutation(len(starts))
        got_starts, got_lengths = plan.windows(epoch)
        assert got_starts.tolist() == starts[order].tolist() and got_lengths.tolist() == (ends - starts)[order].tolist()
        batches = list(plan.batches(epoch))
        assert plan.n_updates(epoch) == len(batches) == -(-len(starts) // n_batch)
        for k, (b_starts, _) in enumerate(batches):
            assert b_starts.tolist() == starts[order][k * n_batch:(k + 1) * n_batch].tolist()
