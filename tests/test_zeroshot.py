"""zeroshot.py and heuristics.py: the paper's zero-shot rules (SPEC.md "Zero-shot"), each against a NumPy
computation written here from the rule's words (tests/reference.py's forward pass, float64), on a tiny random model
in the original's layout and small files in each publisher's format; the CoLA threshold, the RACE cut, the DPRD
reader, the --json output and --checkpoints (Figure 2 right) on a folder of tiny saved models."""
import contextlib
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
from sklearn import metrics as sk

from paper import heuristics
import zeroshot
from datasets import dprd_file, pronoun_span
from formats.language_model import language_model, load_language_model
from tests import reference, task_files
from tests.fixtures import REAL_FILES_HINT, openai_shapes, real_path, write_random_weights, write_rocstories
from tests.test_task_runs import varied
from text_utils import TextEncoder
from utils import InputError
from formats.weights import save_openai_params

N_EMBD, N_HEAD, N_LAYER, N_CTX, N_POS = 16, 2, 2, 112, 128
SYMBOLS = sorted(set('abcdefghijklmnopqrstuvwxyz0123456789.,?!"\'-_'))
# A character-level vocabulary, and the merges that make the three words the SST-2 rule needs whole pieces.
WORDS = {'very': ['v e', 've r', 'ver y</w>'],
         'positive': ['p o', 'po s', 'pos i', 'posi t', 'posit i', 'positi v', 'positiv e</w>'],
         'negative': ['n e', 'ne g', 'neg a', 'nega t', 'negat i', 'negati v', 'negativ e</w>']}
DPRD_EXAMPLES = [  # sentence, pronoun, candidates, answer
    ('The bee landed on the flower because it had pollen.', 'it', 'The bee,the flower', 'the flower'),
    ('The bee landed on the flower because it wanted pollen.', 'it', 'The bee,the flower', 'The bee'),
    ('When Debbie splashed Tina, she got in trouble.', 'she', 'Debbie,Tina', 'Debbie'),
    ('When Debbie splashed Tina, she got wet.', 'she', 'Debbie,Tina', 'Tina'),
    ('The bird sat with its chick because it was cold, and it was late.', 'it', 'the bird, the chick', 'the chick'),
    ('Tom gave Ralph a lift. He was kind.', 'he', 'Tom,Ralph', 'Tom'),
    ('The police arrested the protesters because they feared violence.', 'they', 'the police,the protesters',
     'the police'),
    ('The police arrested the protesters because they advocated violence.', 'they', 'the police,the protesters',
     'the protesters'),
]
SETTINGS = ['--n_embd', str(N_EMBD), '--n_head', str(N_HEAD), '--n_layer', str(N_LAYER), '--n_ctx', str(N_CTX)]
ROC_CTX = 80  # Story Cloze's n_ctx here: some stories are cut


def random_arrays(n_vocab, seed):
    """The original's arrays (positions, tokens, 12 per layer) of a tiny random model: LayerNorm gains near 1."""
    rng = np.random.RandomState(seed)
    shapes = openai_shapes(n_vocab, N_EMBD, N_LAYER, N_POS)
    gains = {2 + 12 * l + k for l in range(N_LAYER) for k in (4, 10)}
    return [(rng.randn(*s) * 0.3 + (1 if i in gains else 0)).astype(np.float32) for i, s in enumerate(shapes)]


def reference_params(arrays, n_vocab):
    """reference.hidden's parameters of the model that loads `arrays` with n_ctx N_CTX: we = tokens, 3 special rows
    (zeros here, random in the model: the rules never read them), positions; the blocks; a dummy classifier."""
    we = np.concatenate([arrays[1], np.zeros((3, N_EMBD), np.float32), arrays[0][:N_CTX]])
    return [we] + arrays[2:] + [np.zeros((N_EMBD, 1)), np.zeros(1)]


def write_dprd(folder, examples=DPRD_EXAMPLES, eol='\n'):
    os.makedirs(folder, exist_ok=True)
    text = eol.join(eol.join(example) + eol for example in examples)
    for name in ('train.c.txt', 'test.c.txt'):
        with open(os.path.join(folder, name), 'w', encoding='utf-8', newline='') as f:
            f.write(text)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Tiny BPE files, random weights in the original's layout, every task's files under data/, and each task's
    zeroshot.py --json run: {'paths', 'encoder', 'n_vocab', 'params', 'runs': {task: (printed line, JSON)}}."""
    root = tmp_path_factory.mktemp('zeroshot')
    pieces = SYMBOLS + [s + '</w>' for s in SYMBOLS]
    merges = [m for word in WORDS.values() for m in word]
    pieces += [''.join(m.split()) for m in merges]
    (root / 'enc.json').write_text(json.dumps({p: i for i, p in enumerate(dict.fromkeys(pieces))}))
    (root / 'vocab.bpe').write_text('#version: 0.2\n' + '\n'.join(merges) + '\n')
    encoder = TextEncoder(str(root / 'enc.json'), str(root / 'vocab.bpe'))
    n_vocab = len(encoder.encoder)
    arrays = random_arrays(n_vocab, 0)
    save_openai_params(str(root / 'model'), arrays, n_shards=2)
    data = root / 'data'
    task_files.sst2(str(data / 'SST-2'), n=12, make=varied(task_files.one_sentence, ('0', '1')))
    task_files.cola(str(data / 'CoLA'), n=12, make=varied(task_files.one_sentence, ('0', '1')))
    task_files.race(str(data / 'RACE'), make=varied(task_files.race_passage, tuple('ABCD')))
    write_rocstories(str(data), n_val=380, n_test=12)
    write_dprd(str(data / 'DPRD'))
    paths = dict(root=root, data=data, model=root / 'model', bpe=['--encoder_path', str(root / 'enc.json'),
                                                                     '--bpe_path', str(root / 'vocab.bpe')])
    runs = {}
    for task, split in [('sst2', 'dev'), ('cola', 'dev'), ('race', 'dev'), ('dprd', 'test'), ('rocstories', 'test')]:
        out = root / f'{task}.json'
        n_ctx = ['--n_ctx', ROC_CTX] if task == 'rocstories' else []
        printed = main(paths, '--task', task, '--split', split, '--json', out, *n_ctx)
        runs[task] = (printed, json.loads(out.read_text()))
    return dict(paths=paths, encoder=encoder, n_vocab=n_vocab, params=reference_params(arrays, n_vocab), runs=runs)


def main(paths, *argv):
    """zeroshot.main on the world's BPE files, weights and data (`argv` may override them); its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        zeroshot.main(['--data_root', str(paths['data']), '--model_dir', str(paths['model'])] + paths['bpe'] + SETTINGS
                      + [str(a) for a in argv])
    return out.getvalue()


def encode(world, texts):
    return world['encoder'].encode(list(texts), verbose=False)


def logprobs(world, seq):
    return reference.text_logprobs(world['params'], seq, N_HEAD, world['n_vocab'])


def mean_from(world, seq, start):
    """The mean log-prob of the tokens seq[start:] given all before them (0 for none)."""
    logp = logprobs(world, seq)[max(start, 1) - 1:]
    return float(logp.mean()) if len(logp) else 0.0


def agree(predicted, expected, margins, tol=1e-4):
    """Predictions equal wherever the NumPy scores' margin is clear of float32 rounding; at least half are."""
    clear = np.abs(np.asarray(margins)) > tol
    assert clear.mean() >= 0.5, margins
    np.testing.assert_array_equal(np.asarray(predicted)[clear], np.asarray(expected)[clear])


def tsv_rows(path):
    with open(path, encoding='utf-8-sig') as f:
        return [line.rstrip('\r\n').split('\t') for line in f if line.strip()]


# ------------------------------------------------------------------------------------------ each rule end to end


def test_sst2_compares_the_logits_of_positive_and_negative_after_the_sentence_and_very(world):
    rows = tsv_rows(world['paths']['data'] / 'SST-2' / 'dev.tsv')[1:]
    ids = {w: world['encoder'].encoder[w + '</w>'] for w in WORDS}
    margins = []
    for sentence in encode(world, [row[0] for row in rows]):
        logits = reference.text_logits(world['params'], sentence + [ids['very']], N_HEAD, world['n_vocab'])[-1]
        margins.append(logits[ids['positive']] - logits[ids['negative']])
    line, result = world['runs']['sst2']
    agree(result['predictions'], (np.array(margins) > 0).astype(int), margins)
    labels = [int(row[1]) for row in rows]
    assert result['score'] == pytest.approx(100 * np.mean(np.array(result['predictions']) == labels))
    assert line == f"SST-2 zero-shot Dev Accuracy: {result['score']:.2f}\n"


def cola_score(world, sentence):
    """The mean of log p(x_i | x_<i) over i = 2..n; 0 for a one-token sentence."""
    return mean_from(world, sentence, 1) if len(sentence) > 1 else 0.0


def test_cola_thresholds_the_mean_log_prob_at_the_train_score_of_the_best_matthews_correlation(world):
    folder = world['paths']['data'] / 'CoLA'
    train, dev = (tsv_rows(folder / f'{split}.tsv') for split in ('train', 'dev'))
    train_scores = [cola_score(world, s) for s in encode(world, [row[3] for row in train])]
    train_y = [int(row[1]) for row in train]
    # every train score tried; the best Matthews correlation, the smallest such score (max keeps the first)
    threshold = max(sorted(set(train_scores)),
                    key=lambda t: sk.matthews_corrcoef(train_y, (np.array(train_scores) > t).astype(int)))
    dev_scores = np.array([cola_score(world, s) for s in encode(world, [row[3] for row in dev])])
    line, result = world['runs']['cola']
    assert result['threshold'] == pytest.approx(threshold, abs=1e-5)
    agree(result['predictions'], (dev_scores > threshold).astype(int), dev_scores - threshold)
    mc = 100 * sk.matthews_corrcoef([int(row[1]) for row in dev], result['predictions'])
    assert result['score'] == pytest.approx(mc) and result['scores'] == {'mc': pytest.approx(mc)}
    assert re.fullmatch(r'CoLA zero-shot Dev Matthews Corr\.: -?\d+\.\d\d \(threshold \S+, chosen on train\)\n', line)


def race_files(folder):
    """(level, file) of RACE's dev passages in sorted path order."""
    return sorted((level, name) for level in os.listdir(folder) for name in os.listdir(os.path.join(folder, level)))


def test_race_scores_each_option_after_the_article_cut_to_fit_and_the_question(world):
    folder = world['paths']['data'] / 'RACE' / 'dev'
    expected, margins, labels, levels, ids, cut = [], [], [], [], [], 0
    for level, name in race_files(folder):
        passage = json.loads((folder / level / name).read_text())
        article = encode(world, [passage['article']])[0]
        for q, (question, options, answer) in enumerate(zip(passage['questions'], passage['options'],
                                                            passage['answers'])):
            question, *options = encode(world, [question] + options)
            longest = max(map(len, options))
            context = article[:N_CTX - len(question) - longest] + question   # the article's end cut to fit
            cut += len(context) < len(article) + len(question)
            scores = [mean_from(world, context + option, len(context)) for option in options]
            expected.append(int(np.argmax(scores)))
            margins.append(np.sort(scores)[-1] - np.sort(scores)[-2])
            labels.append('ABCD'.index(answer))
            levels.append(level)
            ids.append(f'{level}/{name}:{q}')
    assert cut >= len(ids) // 2  # the cut is exercised
    line, result = world['runs']['race']
    assert result['ids'] == ids  # files in sorted path order, questions in file order
    agree(result['predictions'], expected, margins)
    right = np.array(result['predictions']) == labels
    levels = np.array(levels)
    assert result['scores'] == pytest.approx({'all': 100 * right.mean(),
                                              'RACE-m': 100 * right[levels == 'middle'].mean(),
                                              'RACE-h': 100 * right[levels == 'high'].mean()})
    assert result['score'] == result['scores']['all']
    assert line.startswith(f"RACE zero-shot Dev Accuracy: {result['score']:.2f} (RACE-m ")


def test_dprd_scores_the_text_after_the_first_pronoun_replaced_by_each_candidate(world):
    expected, margins = [], []
    for sentence, pronoun, candidates, _ in DPRD_EXAMPLES:
        found = (re.search(rf'\b{pronoun}\b', sentence) or re.search(rf'\b{pronoun}\b', sentence, re.I)).span()
        after = encode(world, [sentence[found[1]:]])[0]
        scores = []
        for candidate in candidates.split(','):
            prefix = encode(world, [sentence[:found[0]] + candidate.strip()])[0]
            scores.append(mean_from(world, prefix + after, len(prefix)))
        expected.append(int(scores[1] > scores[0]))
        margins.append(scores[1] - scores[0])
    line, result = world['runs']['dprd']
    agree(result['predictions'], expected, margins)
    labels = [[c.strip() for c in candidates.split(',')].index(answer) for _, _, candidates, answer in DPRD_EXAMPLES]
    assert result['score'] == pytest.approx(100 * np.mean(np.array(result['predictions']) == labels))
    assert (result['task'], result['split'], result['ids']) == ('dprd', 'test', [str(i) for i in range(8)])
    assert line == f"DPRD zero-shot Test Accuracy: {result['score']:.2f}\n"


def test_story_cloze_scores_each_ending_after_the_story_without_a_start_token(world):
    from datasets import ROC_TEST, rocstories_csv
    stories, endings1, endings2, labels = rocstories_csv(str(world['paths']['data'] / ROC_TEST))
    expected, margins = [], []
    cut = 0
    for story, e1, e2 in zip(encode(world, stories), encode(world, endings1), encode(world, endings2)):
        context = story[:ROC_CTX - max(len(e1), len(e2))]   # the story's end cut so that the longer ending fits
        cut += len(context) < len(story)
        scores = [mean_from(world, context + e, len(context)) for e in (e1, e2)]
        expected.append(int(scores[1] > scores[0]))
        margins.append(scores[1] - scores[0])
    assert 0 < cut < len(stories)
    line, result = world['runs']['rocstories']
    agree(result['predictions'], expected, margins)
    assert result['score'] == pytest.approx(100 * np.mean(np.array(result['predictions']) == labels))
    assert line == f"ROCStories zero-shot Test Accuracy: {result['score']:.2f}\n"


def test_json_holds_the_task_split_score_and_one_prediction_per_example(world):
    for task, (_, result) in world['runs'].items():
        assert {'task', 'split', 'score', 'predictions'} <= set(result)
        assert result['task'] == task and len(result['predictions']) == len(result['ids'])
        n_choices = {'sst2': 2, 'cola': 2, 'race': 4, 'dprd': 2, 'rocstories': 2}[task]
        assert set(result['predictions']) <= set(range(n_choices))


# ------------------------------------------------------------------------------------------ the scoring and the rules


def test_packed_continuations_score_as_each_sequence_alone(world):
    model = load_language_model(language_model(world['n_vocab'], N_CTX, N_EMBD, N_HEAD, N_LAYER),
                                str(world['paths']['model']))
    rng = np.random.RandomState(1)

    def ids(n):
        return list(rng.randint(0, world['n_vocab'], n))
    # contexts of 0 to 9 tokens, continuations of 0 to 6 (an empty one scores 0; after an empty context, the first
    # token has nothing to condition on and is not scored)
    examples = [(ids(n), [ids(rng.randint(0, 7)) for _ in range(3)]) for n in [0, 1, 5, 9, 3, 2, 7]]
    scorer = heuristics.Scorer(model, world['n_vocab'])
    got = scorer.continuations(examples, n_batch=3)
    expected = [[mean_from(world, context + cont, max(len(context), 1)) if len(context + cont) > max(len(context), 1)
                 else 0.0 for cont in conts] for context, conts in examples]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    seqs = [ids(n) for n in [1, 4, 9]]
    logits = scorer.next_token_logits(seqs, [3, 7], n_batch=2)
    np.testing.assert_allclose(logits, [reference.text_logits(world['params'], s, N_HEAD, world['n_vocab'])[-1, [3, 7]]
                                        for s in seqs], rtol=1e-5, atol=1e-4)


def test_the_rules_sequences_hold_text_tokens_only():
    assert heuristics.sst2([[1, 2], [3]], 9, n_ctx=8) == [[1, 2, 9], [3, 9]]
    assert heuristics.sst2([list(range(10))], 9, n_ctx=4) == [[0, 1, 2, 9]]   # the sentence's end cut
    assert heuristics.cola([[1, 2, 3], [4], []], n_ctx=8) == [([1], [[2, 3]]), ([4], [[]]), ([], [[]])]
    assert heuristics.dprd([[1, 2], [3]], [4, 5, 6], n_ctx=4) == [([1, 2], [[4, 5]]), ([3], [[4, 5, 6]])]
    texts = heuristics.dprd_texts(['When Debbie splashed Tina, she got wet.'], ['she'], ['Debbie'], ['Tina'])
    assert texts == (['When Debbie splashed Tina, Debbie'], ['When Debbie splashed Tina, Tina'], [' got wet.'])


@pytest.mark.parametrize('article, question, options, n_ctx, kept, cut_options', [
    (10, 3, [2, 5, 4, 1], 12, (4, 3), [2, 5, 4, 1]),     # the article's end cut so that the longest option fits
    (10, 3, [2, 5, 4, 1], 30, (10, 3), [2, 5, 4, 1]),    # everything fits
    (10, 9, [2, 5, 4, 1], 12, (0, 7), [2, 5, 4, 1]),     # no article left: the question's end cut too
    (10, 3, [2, 9, 4, 1], 12, (3, 3), [2, 6, 4, 1]),     # an option longer than n_ctx // 2 cut to it first
])
def test_race_cut_keeps_the_question_and_cuts_the_articles_end(article, question, options, n_ctx, kept, cut_options):
    fields = [list(range(100, 100 + article)), list(range(200, 200 + question))]
    conts = [list(range(300 + 10 * k, 300 + 10 * k + n)) for k, n in enumerate(options)]
    got_context, got_conts = heuristics.fit_context(fields, conts, n_ctx)
    assert got_context == fields[0][:kept[0]] + fields[1][:kept[1]]
    assert got_conts == [c[:n] for c, n in zip(conts, cut_options)]
    assert len(got_context) + max(map(len, got_conts)) <= n_ctx


def brute_force_threshold(scores, labels):
    """The smallest of the scores t with the best Matthews correlation of `score > t`, compared exactly."""
    from fractions import Fraction

    def key(t):
        pred = [s > t for s in scores]
        tp = sum(p and y for p, y in zip(pred, labels))
        fp = sum(p and not y for p, y in zip(pred, labels))
        fn = sum(not p and y for p, y in zip(pred, labels))
        tn = sum(not p and not y for p, y in zip(pred, labels))
        den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        return Fraction((tp * tn - fp * fn) * abs(tp * tn - fp * fn), den) if den else Fraction(0)
    return max(sorted(set(scores)), key=key)


def test_cola_threshold_takes_the_smallest_train_score_of_the_best_correlation():
    # thresholds 1 and 3 both give a Matthews correlation of 2 / sqrt(12), 2 gives 0: the smallest, 1
    assert heuristics.cola_threshold([1., 2., 3., 4.], [0, 1, 0, 1]) == 1.
    assert heuristics.cola_threshold([4., 3., 2., 1.], [1, 0, 1, 0]) == 1.      # in any order
    assert heuristics.cola_threshold([1., 1., 2.], [1, 0, 1]) == 1.             # tied scores are one threshold
    assert heuristics.cola_threshold([1., 2.], [1, 1]) == 1.                    # one class: every correlation 0
    rng = np.random.RandomState(0)
    for n in [5, 20, 60]:
        scores = list(np.round(rng.randn(n), 1))  # rounded: ties among the scores
        labels = list(rng.randint(0, 2, n))
        assert heuristics.cola_threshold(scores, labels) == brute_force_threshold(scores, labels)


def test_story_cloze_picks_the_ending_the_model_finds_likelier():
    from tests.test_generate import N_VOCAB, constant_model
    a = 7
    token_rows = np.zeros(N_VOCAB)
    token_rows[a] = 8.   # every position predicts token a
    model = constant_model(token_rows)
    good, bad = [a, a, a], [9, 10, 11]
    examples = [heuristics.fit_context([story], endings, 20) for story, endings in
                [([1, 2, 3], [good, bad]), ([4, 5, 6, 7, 8], [bad, good]), ([1], [bad, bad])]]
    assert list(heuristics.first_best(heuristics.Scorer(model, N_VOCAB).continuations(examples))) == [0, 1, 0]


# ------------------------------------------------------------------------------------------ the DPRD reader


def test_dprd_reader_reads_rahman_and_ngs_format(tmp_path):
    write_dprd(str(tmp_path), DPRD_EXAMPLES[:3], eol='\r\n')
    path = tmp_path / 'test.c.txt'
    path.write_bytes(b'\xef\xbb\xbf' + path.read_bytes() + b'\r\n\r\n')   # a byte-order mark, blank lines at the end
    examples = dprd_file(str(path))
    assert examples.texts == (['The bee landed on the flower because it had pollen.',
                               'The bee landed on the flower because it wanted pollen.',
                               'When Debbie splashed Tina, she got in trouble.'],
                              ['it', 'it', 'she'], ['The bee', 'The bee', 'Debbie'],
                              ['the flower', 'the flower', 'Tina'])
    assert list(examples.y) == [1, 0, 0] and examples.ids == ['0', '1', '2']


def test_pronoun_span_is_the_first_whole_word_occurrence():
    sentence = 'With its nest, the bird saw it was late and it flew.'
    assert sentence[slice(*pronoun_span(sentence, 'it'))] == 'it' and pronoun_span(sentence, 'it')[0] == 28
    assert pronoun_span('Tom met Ralph. He was kind; he left.', 'he') == (28, 30)   # as written first
    assert pronoun_span('Tom met Ralph. He was kind.', 'he') == (15, 17)            # else another capitalisation
    assert pronoun_span('Tom met them.', 'he') is None


BAD_DPRD = {  # name: (the file's text, the line the error names, what it says)
    'an example cut short': ('The bee sat.\nit\n', 3, 'ends early'),
    'a blank line inside an example': ('The bee sat.\nit\n\nThe bee,the flower\nthe bee\n', 3, 'ends early'),
    'no blank line after an example': ('A b it.\nit\nA,b\nA\nB c it.\n', 5, 'expected the blank line'),
    'three candidates': ('A b it.\nit\nA,b,c\nA\n', 3, 'two different candidates'),
    'the answer no candidate': ('A b it.\nit\nA,b\nC\n', 4, 'neither candidate'),
    'the pronoun not in the sentence': ('A b it.\nshe\nA,b\nA\n', 2, 'not a word of the sentence'),
}


@pytest.mark.parametrize('case', sorted(BAD_DPRD))
def test_a_bad_dprd_file_is_one_error_naming_the_file_and_line(world, tmp_path, capsys, case):
    text, line, message = BAD_DPRD[case]
    folder = tmp_path / 'DPRD'
    write_dprd(str(folder))
    (folder / 'test.c.txt').write_text('\n'.join('\n'.join(e) + '\n' for e in DPRD_EXAMPLES[:2]) + '\n' + text)
    with pytest.raises(InputError, match=rf'test\.c\.txt, line {line + 10}: .*{message}'):
        dprd_file(str(folder / 'test.c.txt'))
    out = tmp_path / 'out.json'
    with pytest.raises(SystemExit) as exit_info:
        main(world['paths'], '--task', 'dprd', '--data_dir', folder, '--json', out)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    errors = [e for e in err if e.startswith('error: ')]
    assert len(errors) == 1 and f'test.c.txt, line {line + 10}' in errors[0] and not out.exists()


# ------------------------------------------------------------------------------------------ bad command lines


@pytest.mark.parametrize('argv, message', [
    (['--task', 'sst2', 'cola'], 'takes one task'),
    (['--task', 'sst2', '--split', 'test'], 'labelled splits dev, train'),
    (['--task', 'race', '--data_dir', 'nowhere'], "data folder 'nowhere' not found"),
    (['--checkpoints', 'nowhere'], 'no saved model'),
    (['--task', 'sst2', '--n_ctx', '1'], 'at least 2'),
])
def test_a_bad_command_line_is_one_error_line(world, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(world['paths'], *argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and message in err[0], err


def test_a_vocabulary_without_very_is_one_error_line(world, tmp_path, capsys):
    encoder = json.loads((world['paths']['root'] / 'enc.json').read_text())
    encoder['vary</w>'] = encoder.pop('very</w>')  # the ids stay 0 .. n - 1
    (tmp_path / 'enc.json').write_text(json.dumps(encoder))
    with pytest.raises(SystemExit):
        zeroshot.main(['--task', 'sst2', '--data_root', str(world['paths']['data']), '--model_dir',
                       str(world['paths']['model']), '--encoder_path', str(tmp_path / 'enc.json'), '--bpe_path',
                       world['paths']['bpe'][3]] + SETTINGS)
    assert "no 'very</w>'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ Figure 2 right


def saved_run(world, folder, updates):
    """A pre-training run's folder: a model folder in the original's layout per number of updates (the world's
    weights at the largest), the BPE files in each and at the top."""
    for k, n in enumerate(updates):
        arrays = random_arrays(world['n_vocab'], 0 if n == max(updates) else 100 + k)
        target = folder / 'updates' / str(n)
        save_openai_params(str(target), arrays, n_shards=1)
        for name in ('enc.json', 'vocab.bpe'):
            for where in (target, folder):
                shutil.copy(world['paths']['root'] / name, where / name)
    return folder


def test_checkpoints_score_every_saved_model_and_resume(world, tmp_path):
    run = saved_run(world, tmp_path / 'save' / 'books', [50, 7])
    flags = ['--checkpoints', run, '--encoder_path', run / 'enc.json', '--bpe_path', run / 'vocab.bpe']
    printed = main({**world['paths'], 'bpe': []}, *flags)
    curve = json.loads((run / 'zeroshot.json').read_text())
    assert curve['tasks'] == ['sst2', 'cola', 'race', 'dprd']
    assert [p['n_updates'] for p in curve['points']] == [7, 50]
    last = curve['points'][1]['scores']
    for task in curve['tasks']:   # the model at 50 updates holds the world's weights: the single task's figures
        assert last[task] == pytest.approx(world['runs'][task][1]['score'], abs=1e-9), task
    assert curve['random'] == {'sst2': 50.0, 'cola': 0.0, 'race': 25.0, 'dprd': 50.0}
    for point in curve['points']:
        for task, value in point['scores'].items():
            expected = (value - curve['random'][task]) / (curve['sota'][task] - curve['random'][task])
            assert point['normalised'][task] == pytest.approx(expected)
    with open(run / 'zeroshot.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert '7 updates: SST-2 ' in printed and '50 updates: ' in printed
    # a second run scores only the models it has not scored
    saved_run(world, tmp_path / 'save' / 'books', [500])
    printed = main({**world['paths'], 'bpe': []}, *flags)
    assert printed.startswith('2 of the 3 saved models already scored') and '500 updates: ' in printed
    assert '7 updates' not in printed
    again = json.loads((run / 'zeroshot.json').read_text())
    assert [p['n_updates'] for p in again['points']] == [7, 50, 500] and again['points'][:2] == curve['points']


# ------------------------------------------------------------------------------------------ with the real files


def test_the_real_vocabulary_has_the_words_of_the_sst2_rule():
    encoder_path = real_path('model', 'encoder_bpe_40000.json')
    if encoder_path is None:
        pytest.skip(REAL_FILES_HINT)
    with open(encoder_path) as f:
        encoder = json.load(f)
    assert all(w + '</w>' in encoder for w in WORDS)


def test_story_cloze_on_the_real_files_predicts_every_valid_story(tmp_path):
    data_dir, model_dir = real_path('data'), real_path('model')
    if data_dir is None or model_dir is None:
        pytest.skip(REAL_FILES_HINT)
    write_random_weights(str(tmp_path / 'model'), openai_shapes(40478, 8, 1), n_shards=1)
    out = tmp_path / 'out.json'
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        zeroshot.main(['--task', 'rocstories', '--data_dir', data_dir, '--model_dir', str(tmp_path / 'model'),
                       '--encoder_path', os.path.join(model_dir, 'encoder_bpe_40000.json'), '--bpe_path',
                       os.path.join(model_dir, 'vocab_40000.bpe'), '--n_embd', '8', '--n_head', '2', '--n_layer', '1',
                       '--n_batch', '32', '--json', str(out)])
    result = json.loads(out.read_text())
    assert (result['split'], len(result['predictions'])) == ('valid', 374)   # train.py's valid split
    assert printed.getvalue() == f"ROCStories zero-shot Valid Accuracy: {result['score']:.2f}\n"


# ------------------------------------------------------------------------------------------ issue 32: each rule's exact inputs

class RecordingScorer:
    """In place of heuristics.Scorer: records what each rule gives the model to score (and scores it all 0)."""
    calls = []

    def __init__(self, model, n_vocab):
        pass

    def continuations(self, examples, n_batch=8, desc=None):
        RecordingScorer.calls.append(('continuations', [(list(c), [list(x) for x in conts]) for c, conts in examples]))
        return np.zeros((len(examples), len(examples[0][1]) if examples else 0))

    def next_token_logits(self, seqs, token_ids, n_batch=8, desc=None):
        RecordingScorer.calls.append(('next_token_logits', ([list(s) for s in seqs], list(token_ids))))
        return np.zeros((len(seqs), len(token_ids)), np.float32)


def expected_inputs(world, task):
    """What the model reads for each task's split as the world's runs score them, built from SPEC.md "Zero-shot"'s
    words: text tokens only, each text encoded alone; [(scorer method, its inputs)]."""
    data, n_vocab = world['paths']['data'], world['n_vocab']
    if task == 'sst2':
        ids = {w: world['encoder'].encoder[w + '</w>'] for w in WORDS}
        sentences = encode(world, [row[0] for row in tsv_rows(data / 'SST-2' / 'dev.tsv')[1:]])
        return [('next_token_logits', ([s[:N_CTX - 1] + [ids['very']] for s in sentences],
                                       [ids['positive'], ids['negative']]))]
    if task == 'cola':   # the score's tokens are x_2 .. x_n: the first token alone before them
        return [('continuations', [(s[:N_CTX][:1], [s[:N_CTX][1:]]) for s in
                                   encode(world, [row[3] for row in tsv_rows(data / 'CoLA' / f'{split}.tsv')])])
                for split in ('train', 'dev')]
    if task == 'race':
        examples = []
        for level, name in race_files(data / 'RACE' / 'dev'):
            passage = json.loads((data / 'RACE' / 'dev' / level / name).read_text())
            article = encode(world, [passage['article']])[0]
            for question, options in zip(passage['questions'], passage['options']):
                question, *options = encode(world, [question] + options)
                options = [o[:N_CTX // 2] for o in options]
                room = N_CTX - max(map(len, options))
                context = article[:max(0, room - len(question))] + question[:room]
                examples.append((context, options))
        return [('continuations', examples)]
    if task == 'dprd':
        examples = []
        for sentence, pronoun, candidates, _ in DPRD_EXAMPLES:
            found = (re.search(rf'\b{pronoun}\b', sentence) or re.search(rf'\b{pronoun}\b', sentence, re.I)).span()
            after = encode(world, [sentence[found[1]:]])[0]
            for candidate in candidates.split(','):
                prefix = encode(world, [sentence[:found[0]] + candidate.strip()])[0]
                examples.append((prefix[:N_CTX], [after[:max(0, N_CTX - len(prefix))]]))
        return [('continuations', examples)]
    from datasets import ROC_TEST, rocstories_csv
    stories, endings1, endings2, _ = rocstories_csv(str(data / ROC_TEST))
    examples = []
    for story, e1, e2 in zip(encode(world, stories), encode(world, endings1), encode(world, endings2)):
        e1, e2 = e1[:ROC_CTX // 2], e2[:ROC_CTX // 2]
        examples.append((story[:ROC_CTX - max(len(e1), len(e2))], [e1, e2]))
    return [('continuations', examples)]


@pytest.mark.parametrize('task, split', [('sst2', 'dev'), ('cola', 'dev'), ('race', 'dev'), ('dprd', 'test'),
                                         ('rocstories', 'test')])
def test_each_rule_feeds_the_model_exactly_the_specs_text_tokens_and_no_special_token(world, monkeypatch, task,
                                                                                      split):
    RecordingScorer.calls = []
    monkeypatch.setattr(heuristics, 'Scorer', RecordingScorer)
    main(world['paths'], '--task', task, '--split', split, *(['--n_ctx', ROC_CTX] if task == 'rocstories' else []))
    calls = RecordingScorer.calls
    everything = [t for method, inputs in calls
                  for seq in (inputs[0] if method == 'next_token_logits' else [c + sum(conts, []) for c, conts in inputs])
                  for t in seq]
    assert everything and max(everything) < world['n_vocab']   # no `_start_`, `_delimiter_` nor `_classify_`
    expected = expected_inputs(world, task)
    if task == 'race':  # the passages' reading order is the loader's: compared as sets of examples
        calls = [(m, sorted(map(repr, inputs))) for m, inputs in calls]
        expected = [(m, sorted(map(repr, inputs))) for m, inputs in expected]
    assert calls == expected
