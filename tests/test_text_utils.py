"""Text encoding (SPEC "Text encoding"): standardisation, BPE, the spaCy split, ids; and the real vocabulary."""
import json
import os

import ftfy
import pytest
import spacy

from tests.fixtures import REAL_FILES_HINT, real_path
from text_utils import TextEncoder, get_pairs, text_standardize

PUNCT = '-~!";?+,)(/*[]}{|_'


# ---------------------------------------------------------------------------------------------- standardisation

@pytest.mark.parametrize('text, expected', [
    ('a—b', 'a - b'),
    ('a–b', 'a - b'),
    ('a―b', 'a - b'),
    ('wait…', 'wait...'),
    ('don´t', "don't"),
    ('Wow!!!', 'Wow !!!'),
    ('a!?b', 'a ! ? b'),
    ('a--b', 'a -- b'),
    ('a-~b', 'a - ~ b'),
    ('a—–b', 'a -- b'),          # both dashes become '-' first, then form one run
    ('(hi)', '( hi )'),
    ('a...b', 'a...b'),          # '.' is not in the list
    ("it's", "it's"),            # nor the apostrophe
    ('a\\b', 'a\\b'),            # nor the backslash (the original's non-raw pattern lost it)
    ('a\\\\b', 'a\\\\b'),
    ('a\n\n  \nb', 'a \n b'),
    ('a\r\nb', 'a \n b'),
    ('a \t b', 'a b'),
    ('a\t\tb', 'a b'),
    ('a\xa0b', 'a b'),
    ('  a  b  ', 'a b'),
    ('\n a \n', 'a'),
    ('', ''),
])
def test_text_standardize_hand_cases(text, expected):
    assert text_standardize(text) == expected


@pytest.mark.parametrize('c', list(PUNCT))
def test_text_standardize_isolates_runs_of_each_listed_character(c):
    assert text_standardize(f'x{c}y') == f'x {c} y'
    assert text_standardize(f'x{c}{c}{c}y') == f'x {c}{c}{c} y'


def test_text_standardize_leaves_unlisted_punctuation_attached():
    for c in ".'\\:@#$%^&=<>`":
        assert text_standardize(f'x{c}y') == f'x{c}y', c


# ------------------------------------------------------------------------------------------ a tiny vocabulary

def reference_bpe(token, ranks):
    """BPE written from SPEC's words, independently of text_utils (`ranks`: pair -> rank): symbols = characters,
    '</w>' on the last; merge the lowest-ranked adjacent pair present, every non-overlapping occurrence left to
    right, until none is known."""
    symbols = list(token[:-1]) + [token[-1] + '</w>']
    while len(symbols) > 1:
        ranked = [(ranks[p], p) for p in zip(symbols, symbols[1:]) if p in ranks]
        if not ranked:
            break
        _, (first, second) = min(ranked)
        out, i = [], 0  # left to right; a merged symbol is never reused for the next pair
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                out.append(first + second)
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    word = ' '.join(symbols)
    return '\n</w>' if word == '\n  </w>' else word


TINY_MERGES = [
    ('l', 'o</w>'),   # 0: wins over ('l', 'l') in 'hello'
    ('h', 'e'),       # 1
    ('he', 'l'),      # 2
    ('hel', 'lo</w>'),  # 3
    ('l', 'l'),       # 4
    ('a', 'a'),       # 5
    ('w', 'o'),       # 6
    ('wo', 'w</w>'),  # 7
    ('-', '-</w>'),   # 8
    ('c', 'a'),       # 9
    ('ca', 't</w>'),  # 10
]

TINY_VOCAB = [
    'hello</w>', 'h', 'e', 'l', 'll', 'o</w>', 'lo</w>', 'he', 'hel',
    'a', 'aa', 'a</w>', 'wow</w>', '!</w>', '--</w>', '-</w>', '\n</w>', 'x</w>', 'cat</w>', 'dog</w>',
]


def write_vocab(tmp_path, merges, vocab, name='tiny'):
    encoder_path = tmp_path / f'{name}_encoder.json'
    bpe_path = tmp_path / f'{name}_vocab.bpe'
    encoder_path.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding='utf-8')
    # a version header, one pair per line, and the file ends with a newline: an empty last line
    bpe_path.write_text('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges), encoding='utf-8')
    return encoder_path, bpe_path


@pytest.fixture
def tiny(tmp_path):
    return TextEncoder(*write_vocab(tmp_path, TINY_MERGES, TINY_VOCAB))


def ids(*pieces):
    return [TINY_VOCAB.index(p) for p in pieces]


def test_get_pairs_gives_adjacent_symbol_pairs():
    assert get_pairs(('a', 'b', 'c</w>')) == {('a', 'b'), ('b', 'c</w>')}
    assert get_pairs(('a', 'a', 'a')) == {('a', 'a')}
    assert get_pairs(('a</w>',)) == set()


def test_encoder_reads_json_and_merges_without_header_or_trailing_line(tiny):
    assert tiny.encoder == {tok: i for i, tok in enumerate(TINY_VOCAB)}
    assert tiny.decoder == {i: tok for i, tok in enumerate(TINY_VOCAB)}
    assert tiny.bpe_ranks == {pair: r for r, pair in enumerate(TINY_MERGES)}
    assert ('#version:', '0.2') not in tiny.bpe_ranks


@pytest.mark.parametrize('token, expected', [
    ('hello', 'hello</w>'),     # ('l','o</w>') first, then h+e, he+l, hel+lo</w>
    ('hell', 'hel l</w>'),      # h+e, he+l; ('l','l</w>') is not a merge
    ('aa', 'a a</w>'),          # 'a a</w>' is not the pair ('a','a')
    ('aaa', 'aa a</w>'),
    ('aaaa', 'aa a a</w>'),     # left to right: a right-to-left scan would give 'a aa a</w>'
    ('aaaaa', 'aa aa a</w>'),   # every occurrence, non-overlapping
    ('wow', 'wow</w>'),
    ('--', '--</w>'),
    ('cat', 'cat</w>'),
    ('x', 'x</w>'),             # one character: '</w>' appended
    ('q', 'q</w>'),
    ('zz', 'z z</w>'),          # no known pair: characters only
    ('\n ', '\n</w>'),          # ('\n', ' </w>') joins to '\n  </w>', rewritten to '\n</w>'
    ('\t ', '\t  </w>'),        # only that exact string is rewritten
])
def test_bpe_on_tiny_merges(tiny, token, expected):
    assert reference_bpe(token, {p: r for r, p in enumerate(TINY_MERGES)}) == expected  # the hand-written value agrees with SPEC's words
    assert tiny.bpe(token) == expected


def test_bpe_merges_lowest_rank_first(tmp_path):
    # 'hello' -> h e l l o</w>: ('l','l') and ('l','o</w>') compete for the second 'l'; the lower rank wins.
    ll_first = TextEncoder(*write_vocab(tmp_path, [('l', 'l'), ('l', 'o</w>')], TINY_VOCAB, 'a'))
    lo_first = TextEncoder(*write_vocab(tmp_path, [('l', 'o</w>'), ('l', 'l')], TINY_VOCAB, 'b'))
    assert ll_first.bpe('hello') == 'h e ll o</w>'
    assert lo_first.bpe('hello') == 'h e l lo</w>'


def test_bpe_caches_results_per_token(tiny):
    assert tiny.bpe('hello') == 'hello</w>'
    assert tiny.cache['hello'] == 'hello</w>'
    tiny.cache['hello'] = 'sentinel'
    assert tiny.bpe('hello') == 'sentinel'  # the second call is answered from the cache


def test_encode_maps_pieces_to_ids_and_unknown_pieces_to_zero(tiny):
    assert tiny.encode(['hello'], verbose=False) == [ids('hello</w>')]
    assert tiny.encode(['hell'], verbose=False) == [ids('hel') + [0]]  # 'hel l</w>': 'l</w>' is unknown
    assert tiny.encode(['zz'], verbose=False) == [[0, 0]]
    assert tiny.encode(['hello cat', 'x'], verbose=False) == [ids('hello</w>', 'cat</w>'), ids('x</w>')]
    # 'dog</w>' is in the vocabulary, but no merges build it: the pieces are d, o, g</w>, all unknown
    assert tiny.encode(['dog'], verbose=False) == [[0, 0, 0]]
    assert tiny.encode([], verbose=False) == []


def test_encode_lower_cases_tokens(tiny):
    assert tiny.encode(['HeLLo CAT'], verbose=False) == [ids('hello</w>', 'cat</w>')]


def test_encode_splits_punctuation_runs_with_spacy(tiny):
    # Step 2: spaCy splits '!!!' into three tokens but keeps '--' whole.
    expected = [ids('wow</w>', '!</w>', '!</w>', '!</w>', '--</w>')]
    assert tiny.encode(['Wow !!! --'], verbose=False) == expected
    assert tiny.encode(['Wow!!!--'], verbose=False) == expected  # standardisation puts the spaces in
    assert tiny.encode(['Wow!!!—–'], verbose=False) == expected  # dashes normalised first


def test_encode_turns_newlines_into_the_newline_piece(tiny):
    # 'hello\n\ncat' -> 'hello \n cat' -> spaCy: 'hello', '\n ', 'cat' -> '\n  </w>' rewritten to '\n</w>'
    assert tiny.encode(['hello\n\ncat'], verbose=False) == [ids('hello</w>', '\n</w>', 'cat</w>')]


def test_encode_applies_ftfy_first(tiny):
    assert ftfy.fix_text('â€”') == '—'  # mojibake of an em dash
    assert tiny.encode(['--â€”'], verbose=False) == tiny.encode(['---'], verbose=False)


# --------------------------------------------------------------------------------------------- the real files

@pytest.fixture(scope='module')
def real():
    if real_path('model') is None:
        pytest.skip(REAL_FILES_HINT)
    return TextEncoder(os.path.join(real_path('model'), 'encoder_bpe_40000.json'),
                       os.path.join(real_path('model'), 'vocab_40000.bpe'))


def test_real_vocabulary_sizes(real):
    assert len(real.encoder) == 40478
    assert sorted(real.encoder.values()) == list(range(40478))
    assert len(real.bpe_ranks) == 40000
    assert real.encoder['\n</w>'] == 40477


def test_real_known_sentence_encodes_to_its_pieces(real):
    pieces = ['rick</w>', 'grew</w>', 'up</w>', 'in</w>', 'a</w>', 'troubled</w>', 'household</w>', '.</w>']
    with open(os.path.join(real_path('model'), 'encoder_bpe_40000.json'), encoding='utf-8') as f:
        vocab = json.load(f)
    assert real.encode(['Rick grew up in a troubled household.'], verbose=False) == [[vocab[p] for p in pieces]]
    assert real.encode(["It wasn't long!!"], verbose=False) == [
        [vocab[p] for p in ['it</w>', 'was</w>', "n't</w>", 'long</w>', '!</w>', '!</w>']]]


def test_real_rocstories_encoding(real):
    data_dir = real_path('data')
    if data_dir is None:
        pytest.skip(REAL_FILES_HINT)
    from datasets import rocstories
    from tests.reference import context_length

    (trX1, trX2, trX3, _), (vaX1, vaX2, vaX3, _), (teX1, teX2, teX3, _) = rocstories(str(data_dir))
    fields = [trX1, trX2, trX3, vaX1, vaX2, vaX3, teX1, teX2, teX3]
    enc = [real.encode(f, verbose=False) for f in fields]
    max_len = 512 // 2 - 2
    n_ctx = min(512, max(context_length(*enc[0:3], max_len), context_length(*enc[3:6], max_len),
                         context_length(*enc[6:9], max_len)))
    assert n_ctx == 77
    # the same number straight from SPEC's formula
    longest = max(len(x1[:max_len]) + max(len(x2[:max_len]), len(x3[:max_len]))
                  for i in range(0, 9, 3) for x1, x2, x3 in zip(*enc[i:i + 3]))
    assert 3 + longest == 77
    for field in enc:
        for x in field:
            assert x, 'a text encoded to nothing'
            assert all(0 <= t < 40478 for t in x)

    # An independent pipeline over every text: ftfy, the standardisation pinned above, spaCy's blank English
    # tokenizer, lower case, the reference BPE on the real merges, and direct lookups in the json.
    with open(os.path.join(real_path('model'), 'vocab_40000.bpe'), encoding='utf-8') as f:
        ranks = {tuple(line.split()): r for r, line in enumerate(f.read().split('\n')[1:-1])}
    with open(os.path.join(real_path('model'), 'encoder_bpe_40000.json'), encoding='utf-8') as f:
        vocab = json.load(f)
    nlp = spacy.blank('en')
    cache = {}

    def ref_encode(text):
        out = []
        for tok in nlp(text_standardize(ftfy.fix_text(text))):
            t = tok.text.lower()
            if t not in cache:
                cache[t] = reference_bpe(t, ranks)
            out.extend(vocab.get(p, 0) for p in cache[t].split(' '))
        return out

    for field, texts in zip(enc, fields):
        for x, text in zip(field, texts):
            assert x == ref_encode(text), text
    # Counted with that independent pipeline (it agreed with TextEncoder on every text): 3,742 stories x 3 fields.
    assert sum(len(x) for field in enc for x in field) == 217171
    assert not any(0 in x for field in enc for x in field)  # every piece of the real data is in the vocabulary


def test_punctuation_runs_split_as_the_originals_alternation():
    """The original's pattern, as its non-raw string reached the regex engine (`\\\\+` became `\\+`), against
    the port's character class on random strings of the listed characters, letters, `.`, `'` and backslashes."""
    import random
    import re

    import text_utils
    original = re.compile(r'''(-+|~+|!+|"+|;+|\?+|\++|,+|\)+|\(+|\+|\/+|\*+|\[+|\]+|}+|{+|\|+|_+)''')
    rng = random.Random(0)
    alphabet = '-~!";?+,)(/*[]}{|_ab.\'\\ '
    for _ in range(2000):
        text = ''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert text_utils._PUNCT_RUN.sub(r' \g<0> ', text) == original.sub(r' \1 ', text), text


def test_encode_piece_by_piece_equals_spacy_on_whole_texts(tiny):
    """encode tokenizes each space-separated piece once; on random texts of tricky parts (spaCy's exceptions,
    affixes, newlines, odd whitespace, mojibake) it gives the ids of spaCy's tokenizer run on the whole
    standardised text, as the original did."""
    import random
    parts = ["don't", "do", "n't", "'s", "U.S.", "gov't", ":)", "(", ")", "e.g.", "Mr.", "$", "5", "%", "&amp;",
             "hello", "cat", "HELLO", "é", "\n", "\n\n", " ", "  ", "\t", "\xa0", "—", "…", "!!!", "--", '"', "'",
             "...", ".", ",", "x", "â€”", "can't", "I'm", "a.m.", "1.5", "-", "a-b", "'hello'", "\\", "\r\n"]
    rng = random.Random(0)
    nlp = spacy.blank('en')
    for _ in range(1500):
        text = ''.join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        expected = [tiny.encoder.get(p, 0) for tok in nlp(text_standardize(ftfy.fix_text(text)))
                    for p in tiny.bpe(tok.text.lower()).split(' ')]
        assert tiny.encode([text], verbose=False) == [expected], repr(text)


def test_fix_text_skips_ftfy_only_where_ftfy_changes_nothing():
    import random

    import text_utils
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(32, 127)] + ['\t', '\n', '\r', '\x1b', '\x00', '\x7f', 'é', 'â€”', '&amp;', '&lt;']
    for _ in range(5000):
        text = ''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert text_utils.fix_text(text) == ftfy.fix_text(text), repr(text)
    assert text_utils.fix_text('a &amp; b') == 'a & b'  # '&' goes to ftfy
    assert text_utils.fix_text('a\r\nb') == 'a\nb'
