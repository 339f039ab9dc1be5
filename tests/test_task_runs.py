"""Every task of the paper but ROCStories (tests/test_train.py runs that one) through train.main end to end, on
small files in its publisher's exact format (tests/task_files.py) with a tiny model: the log, best_params, the
submissions and their probabilities, and the --analysis lines, whose values are recomputed here from the written
files and the labels read from the data files (sklearn / scipy, not metrics.py). Then bad input through the whole
run: one `error:` line naming the file, exit status 2, nothing written.

What each task's files, labels, submissions and analysis lines are is written out below from the publishers' and
the paper's descriptions, not taken from tasks.py. Each test file holds the rows of a dev file (task_files'
texts_of), so that a submission, scored against the dev labels, must give the dev figures of the log; but where
the test labels are public (SNLI, SciTail, RACE), the test file keeps its own rows, which the test figures score."""
import inspect
import json
import os
import re
import zlib

import joblib
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from sklearn import metrics as sk

import train
from tests import task_files
from tests.fixtures import openai_shapes, write_random_weights

SYMBOLS = sorted(set('abcdefghijklmnopqrstuvwxyz0123456789.,?"-_'))
N_VOCAB = 2 * len(SYMBOLS)  # a character-level BPE: every symbol, alone and ending a word
N_EMBD, N_CTX = 16, 64

TITLES = {'sst2': 'SST-2', 'cola': 'CoLA', 'mnli': 'MNLI', 'qnli': 'QNLI', 'rte': 'RTE', 'snli': 'SNLI',
          'scitail': 'SciTail', 'mrpc': 'MRPC', 'qqp': 'QQP', 'stsb': 'STS-B', 'race': 'RACE'}
BINARY, NLI3, NLI2 = ('0', '1'), ('entailment', 'neutral', 'contradiction'), ('entailment', 'not_entailment')
LABELS = {'sst2': BINARY, 'cola': BINARY, 'mnli': NLI3, 'qnli': NLI2, 'rte': NLI2, 'snli': NLI3,
          'scitail': ('entails', 'neutral'), 'mrpc': BINARY, 'qqp': BINARY, 'stsb': None, 'race': tuple('ABCD')}
# The labelled column of each GLUE file (CoLA's files have no header: the label is its second field).
GLUE_LABEL = {'sst2': 'label', 'cola': 1, 'mnli': 'gold_label', 'qnli': 'label', 'rte': 'label', 'mrpc': 'Quality',
              'qqp': 'is_duplicate', 'stsb': 'score'}
PUBLIC_TEST_LABELS = {'snli', 'scitail', 'race'}
# {test split: (its submission file, the dev split whose rows it holds here; None: its own rows, with the public
# labels that the test figures are scored on)}
TESTS = {name: {'test': (f'{title}.tsv', None if name in PUBLIC_TEST_LABELS else 'dev')}
         for name, title in TITLES.items()}
TESTS['mnli'] = {'test_matched': ('MNLI-m.tsv', 'dev_matched'), 'test_mismatched': ('MNLI-mm.tsv', 'dev_mismatched')}
VALID = {'mnli': 'dev_matched'}  # the split that selects the best parameters; 'dev' for the others
SPLIT_WORDS = {'dev': 'Dev', 'test': 'Test', 'dev_matched': 'Dev Matched', 'dev_mismatched': 'Dev Mismatched'}


def percent(fn):
    return lambda pred, gold: 100.0 * fn(pred, gold)


def accuracy(pred, gold):
    return np.mean(np.asarray(pred) == np.asarray(gold))


def correlation(fn):
    """Pearson or Spearman of the float strings; 0 when the predictions are constant (no correlation to see)."""
    def score(pred, gold):
        pred, gold = np.asarray(pred, dtype=float), np.asarray(gold, dtype=float)
        return 0.0 if np.ptp(pred) == 0 else fn(pred, gold)[0]
    return score


ACC = ('acc', 'Accuracy', None, percent(accuracy))
F1 = ('F1', 'F1', None, percent(lambda p, g: sk.f1_score(g, p, pos_label='1', zero_division=0)))
# Each task's metrics, the paper's first: (log name, analysis title, RACE level or None, fn(pred, gold) in %).
METRICS = {name: [ACC] for name in TITLES}
METRICS.update({
    'cola': [('mc', 'Matthews Corr.', None, percent(lambda p, g: sk.matthews_corrcoef(g, p)))],
    'mrpc': [F1, ACC], 'qqp': [F1, ACC],
    'stsb': [('pearson', 'Pearson', None, percent(correlation(stats.pearsonr))),
             ('spearman', 'Spearman', None, percent(correlation(stats.spearmanr)))],
    'race': [('all', 'Accuracy', None, ACC[3]), ('RACE-m', 'RACE-m Accuracy', 'middle', ACC[3]),
             ('RACE-h', 'RACE-h Accuracy', 'high', ACC[3])],
})


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """A character-level vocabulary (an empty merges file) and random tiny weights (1 layer), shared by the
    module's runs. The weights are large (std 1) and the layer norms' biases 0, their gains 1, the last one 10:
    so that a random model's outputs differ from example to example, by more than the rounding of the written
    files (probabilities to 6 decimals, STS-B's scores to 3)."""
    root = tmp_path_factory.mktemp('inputs')
    encoder_path, bpe_path = root / 'enc.json', root / 'vocab.bpe'
    encoder_path.write_text(json.dumps({s: i for i, s in enumerate(SYMBOLS + [s + '</w>' for s in SYMBOLS])}))
    bpe_path.write_text('#version: 0.2\n\n')
    arrays = write_random_weights(str(root / 'model'), openai_shapes(N_VOCAB, N_EMBD, 1), n_shards=1, std=1.0)
    # positions, tokens, then the block's 12 arrays: ln_1's gain and bias are its 5th and 6th, ln_2's its last two
    arrays[2 + 4][:], arrays[2 + 5][:], arrays[2 + 10][:], arrays[2 + 11][:] = 1, 0, 10, 0
    np.save(root / 'model' / 'params_0.npy', np.concatenate([a.ravel() for a in arrays]))
    return dict(encoder_path=encoder_path, bpe_path=bpe_path, model_dir=root / 'model')


def flags(inputs, root, name, data_dir, **more):
    """train.main's arguments for a tiny run of task `name` on `data_dir`, every output under `root`."""
    args = dict(dataset=name, desc=name, n_iter=1, n_batch=2, n_gpu=1, n_embd=N_EMBD, n_head=2, n_layer=1,
                n_transfer=1, n_ctx=N_CTX, data_dir=data_dir, model_dir=inputs['model_dir'],
                encoder_path=inputs['encoder_path'], bpe_path=inputs['bpe_path'], log_dir=root / 'log',
                save_dir=root / 'save', cache_dir=root / 'cache', submission_dir=root / 'submission')
    args.update(more)
    argv = []
    for flag, value in args.items():
        if value is not False:
            argv += [f'--{flag}'] if value is True else [f'--{flag}', str(value)]
    return argv


# ---------------------------------------------------------------------- the data files, read here independently

def tsv_rows(path):
    """The fields of each non-empty line of a tab-separated file: no quoting, no byte-order mark, CRLF or LF."""
    with open(path, encoding='utf-8-sig', newline='') as f:
        lines = [line.removesuffix('\r') for line in f.read().split('\n')]
    return [line.split('\t') for line in lines if line]


def race_files(folder, split):
    """(level, file name) of a RACE split's passages: middle then high, files in numeric order."""
    return [(level, name) for level in ('middle', 'high')
            for name in sorted(os.listdir(os.path.join(folder, split, level)), key=lambda n: int(n[:-4]))]


def gold(name, folder, split):
    """The label strings of a labelled split, one per example, as its file holds them."""
    if name == 'snli':
        with open(os.path.join(folder, f'snli_1.0_{split}.jsonl')) as f:
            labels = [json.loads(line)['gold_label'] for line in f if line.strip()]
        return [label for label in labels if label != '-']  # pairs without a majority are not examples
    if name == 'scitail':
        return [row[2] for row in tsv_rows(os.path.join(folder, 'tsv_format', f'scitail_1.0_{split}.tsv'))]
    if name == 'race':
        answers = []
        for level, file in race_files(folder, split):
            with open(os.path.join(folder, split, level, file)) as f:
                answers += json.load(f)['answers']
        return answers
    rows = tsv_rows(os.path.join(folder, f'{split}.tsv'))
    if name == 'cola':
        return [row[1] for row in rows]
    column = rows[0].index(GLUE_LABEL[name])
    return [row[column] for row in rows[1:]]


def ids_of(name, folder, split):
    """The ids of a test file's examples: GLUE's index (QQP's id) column, SNLI's pairID (of the labelled pairs),
    SciTail's row number (it has no ids), RACE's level/file:question."""
    if name == 'snli':
        with open(os.path.join(folder, f'snli_1.0_{split}.jsonl')) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [row['pairID'] for row in rows if row['gold_label'] != '-']
    if name == 'scitail':
        return [str(i) for i in range(len(gold(name, folder, split)))]
    if name == 'race':
        ids = []
        for level, file in race_files(folder, split):
            with open(os.path.join(folder, split, level, file)) as f:
                ids += [f'{level}/{file}:{q}' for q in range(len(json.load(f)['questions']))]
        return ids
    rows = tsv_rows(os.path.join(folder, f'{split}.tsv'))
    column = rows[0].index('id' if name == 'qqp' else 'index')
    return [row[column] for row in rows[1:]]


def scores(name, pred, gold_labels, ids):
    """{metric name: value in %} of predictions (strings) against gold labels (strings); RACE's levels from the
    ids."""
    levels = np.array([i.split('/')[0] for i in ids])
    values = {}
    for key, _, level, fn in METRICS[name]:
        keep = np.ones(len(ids), bool) if level is None else levels == level
        values[key] = fn(list(np.asarray(pred)[keep]), list(np.asarray(gold_labels)[keep]))
    return values


def read_submission(path):
    rows = tsv_rows(path)
    return rows[0], [row[0] for row in rows[1:]], [row[1] for row in rows[1:]]


def analysis_lines(printed):
    """{label: value} of the printed lines `<label>: <value with 2 decimals>`."""
    found = [re.fullmatch(r'(\S.*?):\s+(-?\d+\.\d\d)', line) for line in printed.splitlines()]
    return {m.group(1): float(m.group(2)) for m in found if m}


# ---------------------------------------------------------------------------------------------- runs end to end

VARIETY = ['alpha', 'bravo', 'kilo', 'lima', 'oscar', 'quebec', 'sierra', 'tango', 'victor', 'whiskey', 'zulu']


def varied(make, labels):
    """A writer's rows (its `make`) with a few random words before each text and a random label (of `labels`; a
    score for None), others in each row: so that a random model's predictions differ from example to example, a
    submission's order and labels matter, and two dev sets (MNLI's) give different figures."""
    def make_varied(split, *key):
        rng = np.random.RandomState(zlib.crc32(repr((split, *key)).encode()))

        def vary(text):
            return ' '.join(rng.choice(VARIETY, rng.randint(2, 7))) + ' ' + text

        def label():
            return f'{rng.uniform(0, 5):.3f}' if labels is None else labels[rng.randint(len(labels))]

        row = make(split, *key)
        if len(key) == 2:  # RACE's passage (split, level, k): (article, questions, options, answers)
            article, questions, options, answers = row
            return (vary(article), questions, [[vary(option) for option in four] for four in options],
                    [label() for _ in answers])
        *texts, _ = row
        return (*map(vary, texts), label())
    return make_varied


def write_task(name, folder):
    """The task's small files, each text with varied words in front and random labels, a test file holding the rows
    of a dev file (TESTS); returns the number of training examples."""
    writer = task_files.WRITERS[name]
    make = varied(inspect.signature(writer).parameters['make'].default, LABELS[name])
    size = {} if name == 'race' else {'n': 12}  # RACE's default files hold 25 questions
    writer(str(folder), make=make, texts_of={test: dev for test, (_, dev) in TESTS[name].items() if dev}, **size)
    return len(gold(name, str(folder), 'train'))


@pytest.mark.parametrize('name', sorted(TITLES))
def test_task_runs_end_to_end_and_its_figures_follow_from_the_written_files(inputs, tmp_path, capsys, name):
    folder = tmp_path / 'data' / TITLES[name]
    n_train = write_task(name, folder)
    # One update of the whole training split: its learning rate is 0 (warmup_linear at the end), so the evaluated
    # parameters, the best ones and those that predict are the same.
    train.main(flags(inputs, tmp_path, name, folder, n_batch=n_train, submit=True, analysis=True))
    printed = capsys.readouterr().out
    metric_names = [key for key, *_ in METRICS[name]]

    with open(tmp_path / 'log' / f'{name}.jsonl') as f:
        first, *evaluations = [json.loads(line) for line in f]
    assert first['dataset'] == name and first['n_ctx'] == N_CTX and 'time' in first
    assert [(e['n_epochs'], e['n_updates']) for e in evaluations] == [(1, 1)]
    assert set(evaluations[0]) == {'n_epochs', 'n_updates', 'tr_cost', 'va_cost', 'time'} | {
        f'{prefix}_{key}' for key in metric_names for prefix in ('tr', 'va')}

    n_labels = 1 if LABELS[name] is None or name == 'race' else len(LABELS[name])
    params = joblib.load(tmp_path / 'save' / name / 'best_params.jl')
    assert len(params) == 1 + 12 + 2 and params[0].shape[1] == N_EMBD
    assert N_VOCAB + 3 < params[0].shape[0] <= N_VOCAB + 3 + N_CTX  # positions cut to the longest sequence
    assert [p.shape for p in params[-2:]] == [(N_EMBD, n_labels), (n_labels,)]
    assert len(os.listdir(tmp_path / 'cache')) == 1

    # The analysis prints the valid split's figures of the best evaluation in the log (by the first metric, the
    # first of equals), and the others (MNLI's mismatched dev set, the public test sets) of a submission.
    best = evaluations[int(np.argmax([e['va_' + metric_names[0]] for e in evaluations]))]
    valid = VALID.get(name, 'dev')
    from_log = {f'{TITLES[name]} {SPLIT_WORDS[valid]} {title}': best['va_' + key] for key, title, _, _ in METRICS[name]}
    from_submissions = submitted_figures(name, str(folder), tmp_path / 'submission')
    expected = {**from_submissions, **from_log}
    printed_figures = {k: v for k, v in analysis_lines(printed).items() if k.startswith(TITLES[name] + ' ')}
    assert set(printed_figures) == set(expected)
    for label, value in expected.items():
        assert printed_figures[label] == pytest.approx(round(value, 2), abs=0.006), label
    # A test file that holds the valid rows: its submission scores as the evaluation did (STS-B's predictions are
    # rounded to 3 decimals). Not where the test file keeps its own rows.
    assert (set(from_log) <= set(from_submissions)) == (name not in PUBLIC_TEST_LABELS)
    for label in set(from_log) & set(from_submissions):
        assert from_submissions[label] == pytest.approx(from_log[label], abs=0.2 if name == 'stsb' else 1e-6), label


def submitted_figures(name, folder, submission_dir):
    """Check each submission of task `name` (and its probabilities) and return the figures it gives ({analysis
    label: value}): against the labels of the dev file whose rows its test file holds, or, where the test labels
    are public, against the test file's own."""
    figures = {}
    for test, (file, dev) in TESTS[name].items():
        path = os.path.join(submission_dir, file)
        header, ids, pred = read_submission(path)
        assert header == ['index', 'prediction']
        assert ids == ids_of(name, folder, test)  # the publisher's ids, in the test file's order
        if LABELS[name] is None:
            assert all(re.fullmatch(r'-?\d+\.\d{3}', p) for p in pred), pred
            assert not os.path.exists(path.replace('.tsv', '_probs.tsv'))
        else:
            assert set(pred) <= set(LABELS[name]), pred
            check_probabilities(path.replace('.tsv', '_probs.tsv'), ids, pred, LABELS[name])
        for split in [dev or test]:
            values = scores(name, pred, gold(name, folder, split), ids)
            figures.update({f'{TITLES[name]} {SPLIT_WORDS[split]} {title}': values[key]
                            for key, title, _, _ in METRICS[name]})
    return figures


@pytest.mark.parametrize('name', ['mnli', 'race', 'stsb'])
def test_a_second_run_reads_the_cache_and_gives_the_same_figures(inputs, tmp_path, capsys, name):
    """MNLI: five splits, two without labels; RACE: groups and string ids; STS-B: float scores."""
    folder = tmp_path / 'data' / TITLES[name]
    n_train = write_task(name, folder)
    runs, errs = [], []
    for desc in ('first', 'second'):  # each its own submission folder: a run never replaces another's files
        train.main(flags(inputs, tmp_path, name, folder, desc=desc, n_batch=n_train, submit=True,
                         submission_dir=tmp_path / 'submission' / desc))
        errs.append(capsys.readouterr().err)
        with open(tmp_path / 'log' / f'{desc}.jsonl') as f:
            evaluation = {k: v for k, v in json.loads(f.readlines()[-1]).items() if k != 'time'}
        submissions = {file: (tmp_path / 'submission' / desc / file).read_text() for file, _ in TESTS[name].values()}
        (cache,) = os.listdir(tmp_path / 'cache')
        runs.append((evaluation, submissions, cache, os.stat(tmp_path / 'cache' / cache).st_mtime_ns))
    assert f'encoding {name}' in errs[0] and f'encoding {name}' not in errs[1], errs  # the second encodes nothing
    assert 'warning' not in errs[1] and runs[0] == runs[1], errs[1]


@pytest.mark.parametrize('name', ['mnli', 'mrpc', 'race'])
def test_the_padded_path_and_a_restored_evaluation_give_the_run_figures(inputs, tmp_path, capsys, name):
    """The original's computation (--padded: padded to n_ctx, each choice scored alone) and --eval_only from the
    saved best parameters score the dev set and predict the test set as the default run does: one entailment, one
    similarity (its two orders summed) and multiple choice (packed by default, each choice alone padded)."""
    folder = tmp_path / 'data' / TITLES[name]
    n_train = write_task(name, folder)
    params = tmp_path / 'save' / 'run' / 'best_params.jl'
    results = []
    for desc, more in [('run', {}), ('padded', {'padded': True}), ('restored', {'eval_only': True, 'restore': params})]:
        train.main(flags(inputs, tmp_path, name, folder, desc=desc, n_batch=n_train, submit=desc != 'restored',
                         submission_dir=tmp_path / 'submission' / desc, **more))
        with open(tmp_path / 'log' / f'{desc}.jsonl') as f:
            evaluation = json.loads(f.readlines()[-1])
        predictions = [read_submission(tmp_path / 'submission' / desc / file)[2] for file, _ in TESTS[name].values()]
        results.append(({k: v for k, v in evaluation.items() if k.startswith('va_')}, predictions))
    capsys.readouterr()
    (figures, predictions), *others = results
    for other_figures, other_predictions in others:
        assert other_figures == pytest.approx(figures, abs=1e-4)
        if name == 'stsb':
            for a, b in zip(predictions, other_predictions):
                np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=0.0015)
        else:
            assert other_predictions == predictions


def check_probabilities(path, ids, pred, labels):
    """The _probs.tsv beside a submission: a probability per class (or choice) for each test example, summing
    to 1, the largest at the predicted label."""
    rows = tsv_rows(path)
    assert rows[0] == ['index'] + [f'p{k}' for k in range(len(labels))]
    assert [row[0] for row in rows[1:]] == ids
    probs = np.array([[float(x) for x in row[1:]] for row in rows[1:]])
    assert np.all(probs >= 0) and np.allclose(probs.sum(1), 1, atol=1e-5)
    top = np.sort(probs, 1)
    clear = top[:, -1] - top[:, -2] > 2e-6  # a tie at 6 decimals says nothing about the argmax
    assert [labels[k] for k in np.argmax(probs[clear], 1)] == list(np.asarray(pred)[clear])


# ------------------------------------------------------------------------------------------- the best parameters

def all_ones_on_dev(split, k):
    """CoLA's default rows, but every dev sentence acceptable: a Matthews correlation of 0 whatever is predicted."""
    text, label = task_files.one_sentence(split, k)
    return text, '1' if split == 'dev' else label


def test_best_params_are_the_evaluated_ones_when_the_metric_is_never_above_zero(inputs, tmp_path):
    folder = tmp_path / 'data' / 'CoLA'
    task_files.cola(str(folder), make=all_ones_on_dev)
    # 3 updates at a learning rate that moves every parameter; one evaluation, at the end, then a checkpoint
    train.main(flags(inputs, tmp_path, 'cola', folder, n_batch=2, lr=0.01, save_every=100, submit=True))
    with open(tmp_path / 'log' / 'cola.jsonl') as f:
        evaluations = [json.loads(line) for line in f][1:]
    assert [e['va_mc'] for e in evaluations] == [0.0]
    reader = tf.train.load_checkpoint(str(tmp_path / 'save' / 'cola' / 'checkpoints'))
    names = ['we'] + [f'params/{i}' for i in range(1, 13)] + ['clf_w', 'clf_b']  # Model.params' order
    evaluated = [reader.get_tensor(f'model/{name}/.ATTRIBUTES/VARIABLE_VALUE') for name in names]
    best = joblib.load(tmp_path / 'save' / 'cola' / 'best_params.jl')
    initial = np.load(inputs['model_dir'] / 'params_0.npy')[(512 + N_VOCAB) * N_EMBD:][:evaluated[1].size]
    assert not np.array_equal(evaluated[1].ravel(), initial)  # the block's first array was loaded, then trained
    assert len(best) == len(evaluated)
    for name, array, expected in zip(names, best, evaluated):
        np.testing.assert_array_equal(array, expected, err_msg=name)


# ---------------------------------------------------------------------------------------------------- bad input

def other_tasks_folder(data, other):
    """--data_dir: the folder of another task."""
    task_files.WRITERS[other](str(data / TITLES[other]))
    return data / TITLES[other]


def damaged(data, name, file, line, change):
    """--data_dir: the task's folder with line `line` of `file` changed."""
    task_files.WRITERS[name](str(data / TITLES[name]))
    task_files.replace_line(data / TITLES[name] / file, line, change)
    return data / TITLES[name]


def removed(data, name, file):
    """--data_dir: the task's folder without `file`."""
    task_files.WRITERS[name](str(data / TITLES[name]))
    os.remove(data / TITLES[name] / file)
    return data / TITLES[name]


def race_answers(data, answer):
    """--data_dir: RACE with the answers of one dev passage (it has 2 questions) all `answer`."""
    task_files.race(str(data / 'RACE'))
    path = data / 'RACE' / 'dev' / 'high' / '3.txt'
    path.write_text(json.dumps({**json.loads(path.read_text()), 'answers': [answer] * 2}))
    return data / 'RACE'


def broken_qqp(data):
    """QQP whose train file has one row broken by a newline in 6: far more than the real file's few."""
    task_files.qqp(str(data / 'QQP'), broken=(2,))
    return data / 'QQP'


def drop_last_field(line):
    return line.rsplit('\t', 1)[0]


def last_field(value):
    return lambda line: drop_last_field(line) + '\t' + value


BAD = {  # case: (task, its data folder, what the error names: the file, the line (or None), what was expected)
    'SST-2 folder for mnli': ('mnli', lambda d: other_tasks_folder(d, 'sst2'), 'SST-2/dev_matched.tsv', None,
                              'not found'),  # found missing before the start-up, before train.tsv is read
    'RTE folder for qnli': ('qnli', lambda d: other_tasks_folder(d, 'rte'), 'RTE/train.tsv', 1, 'question'),
    'SciTail folder for snli': ('snli', lambda d: other_tasks_folder(d, 'scitail'),
                                'SciTail/snli_1.0_train.jsonl', None, 'nlp.stanford.edu'),
    'a missing column': ('mnli', lambda d: damaged(d, 'mnli', 'dev_matched.tsv', 3, drop_last_field),
                         'MNLI/dev_matched.tsv', 3, 'expected 16'),
    'a field too many': ('rte', lambda d: damaged(d, 'rte', 'train.tsv', 3, lambda l: l + '\textra'),
                         'RTE/train.tsv', 3, 'expected 4'),
    'a test row with a field too few': ('qqp', lambda d: damaged(d, 'qqp', 'test.tsv', 4,
                                                                 lambda l: l.replace('\t', ' ', 1)),
                                        'QQP/test.tsv', 4, 'expected 3'),
    'an unknown label': ('qnli', lambda d: damaged(d, 'qnli', 'dev.tsv', 3, last_field('1')), 'QNLI/dev.tsv', 3,
                         'entailment, not_entailment'),
    'an unknown SNLI label': ('snli', lambda d: damaged(d, 'snli', 'snli_1.0_train.jsonl', 2,
                                                        lambda l: l.replace('"neutral"', '"neutrall"')),
                              'SNLI/snli_1.0_train.jsonl', 2, 'neutral'),
    'a score above 5': ('stsb', lambda d: damaged(d, 'stsb', 'train.tsv', 3, last_field('5.2')), 'STS-B/train.tsv',
                        3, '0 to 5'),
    'a missing test file': ('cola', lambda d: removed(d, 'cola', 'test.tsv'), 'CoLA/test.tsv', None,
                            'gluebenchmark.com'),
    'QQP train broken beyond its few malformed rows': ('qqp', broken_qqp, 'QQP/train.tsv', None,
                                                       '2 of 7 rows'),
    'a RACE answer E': ('race', lambda d: race_answers(d, 'E'), 'RACE/dev/high/3.txt', None, 'A, B, C or D'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_stops_the_run_with_one_error_naming_the_file_and_writes_nothing(inputs, tmp_path, capsys, case):
    name, make_folder, file, line, expected = BAD[case]
    folder = make_folder(tmp_path / 'data')
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        train.main(flags(inputs, tmp_path / 'out', name, folder, submit=True, analysis=True))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    errors = [row for row in err.splitlines() if row.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in err, err
    message = errors[0]
    assert file in message and expected in message, message
    if line is not None:
        assert re.search(rf'line\D{{0,3}}{line}\b', message), message
    written = [str(p) for p in (tmp_path / 'out').rglob('*') if p.is_file()] if (tmp_path / 'out').exists() else []
    assert written == [] and list(tmp_path.rglob('.*.tmp')) == []
