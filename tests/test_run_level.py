"""The run as a whole (SPEC "The run"), seen through its outputs: a tiny train.py run against a NumPy re-computation
of the same run (the split, the epochs' orders from numpy's global generator, every update from tests/reference.py's
float64 gradient, checked here against finite differences, and its Adam, every evaluation), and the flags, dropout
sites and switches that change a run's numbers. Nothing here takes a number from the code under test."""
import contextlib
import csv
import glob
import io
import json
import os

import joblib
import numpy as np
import pytest
import tensorflow as tf
from sklearn.model_selection import train_test_split
from sklearn.utils import shuffle

import datasets
import model as model_module
import train
from datasets import ROC_HEADER, ROC_TEST, ROC_VAL
from engine.kernels import PADDED
from model import Config, Model, finetune_losses
from tests import reference
from tests.fixtures import finetune_step, train_batches

WORDS = ['the', 'cat', 'sat', 'on', 'mat', 'dog', 'ran', 'home', 'and', 'was', 'happy', 'sad', 'it', 'rained']
SYMBOLS = sorted(set('abcdefghijklmnopqrstuvwxyz.'))
N_VOCAB = 2 * len(SYMBOLS)                        # each symbol alone and at the end of a word: no BPE merges
START, DELIMITER, CLF = N_VOCAB, N_VOCAB + 1, N_VOCAB + 2
N_TRAIN, N_VALID, N_TEST = 16, 374, 20            # the original's split always keeps 374 stories for validation
N_EMBD, N_HEAD, N_LAYER, N_CTX = 8, 2, 1, 16      # --n_ctx 16: max_len 6, and n_ctx becomes 15
# The run: non-default values of every flag that changes a number, so that a flag ignored (its default used
# instead) changes the run; dropout off, so that the NumPy run can follow it update by update.
HP = dict(seed=7, n_iter=3, n_batch=4, n_gpu=2, lr=2e-3, lr_warmup=0.2, lr_schedule='warmup_cosine', l2=0.05,
          b1=0.8, b2=0.9, e=1e-4, lm_coef=2.0, max_grad_norm=2, afn='swish')
DATA_SEED = 18  # data and initial parameters whose run has a later evaluation tying the first best (see the tests)
NO_DROPOUT = ['--embd_pdrop', '0', '--attn_pdrop', '0', '--resid_pdrop', '0', '--clf_pdrop', '0']


# ------------------------------------------------------------------------------------------ files of a tiny run

def write_files(root, seed=0, same_story=False):
    """Story Cloze CSVs (N_TRAIN + N_VALID val rows, N_TEST test rows) made of WORDS, a character vocabulary,
    and the initial parameters (random, LayerNorm gains near 1) as a best_params.jl for --restore. same_story:
    every val row the same story and endings. Returns the common flags and the initial parameters."""
    rng = np.random.RandomState(seed)
    data_dir = os.path.join(root, 'data')
    os.makedirs(data_dir, exist_ok=True)

    def sentence():
        return ' '.join(rng.choice(WORDS, rng.randint(2, 6))).capitalize() + '.'

    def row(i):
        endings = [sentence(), sentence()]
        while endings[0].split()[0] == endings[1].split()[0]:  # endings that differ in their first 6 symbols:
            endings[1] = sentence()                            # no tied logits for float rounding to break
        return [f'id{i}'] + [sentence() for _ in range(4)] + endings + [str(rng.randint(1, 3))]

    for name, n in [(ROC_VAL, N_TRAIN + N_VALID), (ROC_TEST, N_TEST)]:
        first = row(0)
        with open(os.path.join(data_dir, name), 'w', newline='', encoding='utf-8') as f:
            csv.writer(f).writerows([ROC_HEADER] + [first if same_story else row(i) for i in range(n)])
    encoder_path, bpe_path = os.path.join(root, 'encoder.json'), os.path.join(root, 'vocab.bpe')
    with open(encoder_path, 'w') as f:
        json.dump({s: i for i, s in enumerate(SYMBOLS + [s + '</w>' for s in SYMBOLS])}, f)
    with open(bpe_path, 'w') as f:
        f.write('#version: 0.2\n\n')
    n_rows = N_VOCAB + 3 + 15  # n_ctx is 15 on this data (read_split computes it; --restore checks the shapes)
    shapes = [(n_rows, N_EMBD)] + [(1, N_EMBD, 3 * N_EMBD), (3 * N_EMBD,), (1, N_EMBD, N_EMBD), (N_EMBD,),
                                   (N_EMBD,), (N_EMBD,), (1, N_EMBD, 4 * N_EMBD), (4 * N_EMBD,),
                                   (1, 4 * N_EMBD, N_EMBD), (N_EMBD,), (N_EMBD,), (N_EMBD,)] * N_LAYER
    shapes += [(N_EMBD, 1), (1,)]
    gains = {4, 10}  # ln_1/g, ln_2/g within a layer
    params = [(rng.randn(*s) * (1. if i == 0 else 0.3) + (1 if i and (i - 1) % 12 in gains else 0)).astype(np.float32)
              for i, s in enumerate(shapes)]
    init_path = os.path.join(root, 'init.jl')
    joblib.dump(params, init_path)
    flags = ['--dataset', 'rocstories', '--data_dir', data_dir, '--encoder_path', encoder_path, '--bpe_path', bpe_path,
             '--n_ctx', str(N_CTX), '--n_embd', str(N_EMBD), '--n_head', str(N_HEAD), '--n_layer', str(N_LAYER),
             '--n_transfer', '-1', '--restore', init_path, '--cache_dir', '']
    return flags, params


def run(root, name, flags, *extra):
    """train.main with its outputs under root/name; returns that folder."""
    out = os.path.join(root, name)
    train.main(flags + ['--desc', 'run', '--log_dir', os.path.join(out, 'log'), '--save_dir', os.path.join(out, 'save'),
                        '--submission_dir', os.path.join(out, 'submission')] + list(extra))
    return out


def hp_flags(**changes):
    hp = {**HP, **changes}
    return [f for k, v in hp.items() for f in (f'--{k}', str(v))]


def read_log(out):
    with open(os.path.join(out, 'log', 'run.jsonl')) as f:
        return [json.loads(line) for line in f][1:]


def read_scalars(out):
    """{tag: [values in step order]} of the run's TensorBoard event files."""
    found = {}
    for path in sorted(glob.glob(os.path.join(out, 'log', 'run', 'events.out.tfevents.*'))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return {tag: [v for _, v in sorted(values)] for tag, values in found.items()}


# ------------------------------------------------------------------------------------------ the NumPy run

def encode(text):
    """Ids of a text of WORDS and full stops under the character vocabulary (SPEC "Text encoding" without merges:
    lower-cased words, the full stop a token of its own, each token's last symbol with `</w>`)."""
    pieces = []
    for word in text.lower().split():
        for token in ([word[:-1], '.'] if word.endswith('.') else [word]):
            pieces += list(token[:-1]) + [token[-1] + '</w>']
    index = {s: i for i, s in enumerate(SYMBOLS + [s + '</w>' for s in SYMBOLS])}
    return [index[p] for p in pieces]


def read_split(data_dir):
    """SPEC "ROCStories data": train, valid and test examples as (X (n, 2, n_ctx, 2), M, Y) with n_ctx as the run
    computes it."""
    def read(name):
        with open(os.path.join(data_dir, name), encoding='utf-8') as f:
            rows = list(csv.reader(f))[1:]
        return ([encode(' '.join(r[1:5])) for r in rows], [encode(r[5]) for r in rows], [encode(r[6]) for r in rows],
                [int(r[-1]) - 1 for r in rows])

    st, e1, e2, y = read(ROC_VAL)
    tr1, va1, tr2, va2, tr3, va3, trY, vaY = train_test_split(st, e1, e2, y, test_size=374, random_state=3535999445)
    te1, te2, te3, teY = read(ROC_TEST)
    max_len = N_CTX // 2 - 2
    splits = [(tr1, tr2, tr3, trY), (va1, va2, va3, vaY), (te1, te2, te3, teY)]
    n_ctx = min(N_CTX, 3 + max(len(a[:max_len]) + max(len(b[:max_len]), len(c[:max_len]))
                               for s in splits for a, b, c in zip(*s[:3])))
    arrays = []
    for x1, x2, x3, ys in splits:
        X = np.zeros((len(ys), 2, n_ctx, 2), np.int32)
        M = np.zeros((len(ys), 2, n_ctx), np.float32)
        X[..., 1] = N_VOCAB + 3 + np.arange(n_ctx)
        for i, (a, b, c) in enumerate(zip(x1, x2, x3)):
            for j, ending in enumerate([b, c]):
                x = [START] + a[:max_len] + [DELIMITER] + ending[:max_len] + [CLF]
                X[i, j, :len(x), 0] = x
                M[i, j, :len(x)] = 1
        arrays.append((X, M, np.array(ys, np.int32)))
    return arrays, n_ctx


def loss(params, X, M, Y, lm_coef, afn):
    _, clf_losses, lm_losses = reference.forward(params, X, M, Y, N_HEAD, CLF, afn=afn)
    return clf_losses.mean() + lm_coef * lm_losses.mean(), clf_losses.mean()


def finite_differences(params, X, M, Y, lm_coef, afn, elements, h=1e-5):
    """Central finite differences of the training loss in float64 at `elements`, (param index, flat index) pairs."""
    params = [np.array(p, np.float64) for p in params]
    out = []
    for j, i in elements:
        flat = params[j].reshape(-1)
        x = flat[i]
        flat[i] = x + h
        up = loss(params, X, M, Y, lm_coef, afn)[0]
        flat[i] = x - h
        down = loss(params, X, M, Y, lm_coef, afn)[0]
        flat[i] = x
        out.append((up - down) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize('afn, lm_coef', [('swish', 2.0), ('gelu', 0.5), ('relu', 0.)])
def test_the_numpy_gradient_is_the_finite_difference_gradient(tmp_path, afn, lm_coef):
    _, params = write_files(str(tmp_path))
    (X, M, Y), _, _ = read_split(str(tmp_path / 'data'))[0]
    X, M, Y = X[:4], M[:4], Y[:4]
    _, _, grads = reference.loss_and_gradients(params, X, M, Y, N_HEAD, CLF, lm_coef, afn)
    rng = np.random.RandomState(0)
    elements = [(j, i) for j, p in enumerate(params) for i in rng.choice(p.size, min(p.size, 6), replace=False)]
    want = finite_differences(params, X, M, Y, lm_coef, afn, elements)
    got = np.array([grads[j].reshape(-1)[i] for j, i in elements])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    assert np.abs(want).max() > 1e-2


def evaluate(params, X, M, Y, afn):
    logits, losses, _ = reference.forward(params, X, M, Y, N_HEAD, CLF, afn=afn)
    return float(losses.mean()), float(np.mean(np.argmax(logits, 1) == Y) * 100.), logits


def numpy_run(params, data, hp):
    """The run of SPEC "The run" with the flags hp, dropout off: per update (clf cost, lrt, gradient norm), per
    evaluation (tr_cost, va_cost, tr_acc, va_acc, params, min |logit difference|)."""
    (trX, trM, trY), (vaX, vaM, vaY), _ = data
    np.random.seed(hp['seed'])
    np.random.randn(3, N_EMBD)                       # the special rows, drawn before anything else
    n_batch = hp['n_batch'] * hp['n_gpu']
    t_total = len(trY) // n_batch * hp['n_iter']
    schedule = lambda x: reference.schedules[hp['lr_schedule']](x, hp['lr_warmup'])  # noqa: E731
    m, v = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    updates, evaluations, k = [], [], 0
    for _ in range(hp['n_iter']):
        order = shuffle(np.arange(len(trY)), random_state=np.random.mtrand._rand)
        for b in range(len(trY) // n_batch):
            i = order[b * n_batch:(b + 1) * n_batch]
            _, cost, grads = reference.loss_and_gradients(params, trX[i], trM[i], trY[i], N_HEAD, CLF, hp['lm_coef'],
                                                          hp['afn'])
            k += 1
            params, m, v, lrt = reference.adam_step(
                params, grads, m, v, k, hp['lr'], schedule, t_total, hp['b1'], hp['b2'], hp['e'], hp['l2'],
                vector_l2=hp.get('vector_l2', False), max_grad_norm=hp['max_grad_norm'])
            updates.append((cost, float(lrt), float(np.sqrt(sum(np.sum(g * g) for g in grads)))))
        tr_cost, tr_acc, tr_logits = evaluate(params, trX[:N_VALID], trM[:N_VALID], trY[:N_VALID], hp['afn'])
        va_cost, va_acc, va_logits = evaluate(params, vaX, vaM, vaY, hp['afn'])
        margin = np.abs(np.concatenate([tr_logits, va_logits]) @ [1, -1]).min()
        evaluations.append(dict(tr_cost=tr_cost, va_cost=va_cost, tr_acc=tr_acc, va_acc=va_acc, params=params,
                                margin=margin))
    return updates, evaluations


# ------------------------------------------------------------------------------------------ the run against it

RUN = hp_flags() + ['--vector_l2', '--submit', '--analysis', '--deterministic'] + NO_DROPOUT


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('run_level'))
    flags, params = write_files(root, seed=DATA_SEED)
    return dict(root=root, flags=flags, params=params)


@pytest.fixture(scope='module')
def the_run(files):
    """The run, its printed lines, and whether op determinism was on after it (off before it)."""
    from tensorflow.python.framework import config  # TensorFlow has no public switch to turn determinism off
    was_on = config.is_op_determinism_enabled()
    config.disable_op_determinism()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            out = run(files['root'], 'run', files['flags'], *RUN)
        determinism = config.is_op_determinism_enabled()
    finally:
        (config.enable_op_determinism if was_on else config.disable_op_determinism)()
    return dict(out=out, printed=printed.getvalue().splitlines(), determinism=determinism)


@pytest.fixture(scope='module')
def numpy_reference(files):
    data, n_ctx = read_split(os.path.join(files['root'], 'data'))
    updates, evaluations = numpy_run(files['params'], data, dict(HP, vector_l2=True))
    return dict(data=data, n_ctx=n_ctx, updates=updates, evaluations=evaluations)


COST = dict(rtol=0, atol=1e-6)  # float32 against float64: 1e-7 measured; a flag ignored moves a cost by 8e-6 or more


def test_each_evaluation_logs_the_numpy_runs_costs_and_accuracies(the_run, numpy_reference):
    log, expected = read_log(the_run['out']), numpy_reference['evaluations']
    assert numpy_reference['n_ctx'] == 15  # 3 + 6 + 6: --n_ctx 16's max_len cuts stories and endings
    assert [(e['n_epochs'], e['n_updates']) for e in log] == [(1, 2), (2, 4), (3, 6)]
    for got, want in zip(log, expected):
        for k in ['tr_cost', 'va_cost']:
            np.testing.assert_allclose(got[k], want[k], **COST, err_msg=k)
        assert (got['tr_acc'], got['va_acc']) == pytest.approx((want['tr_acc'], want['va_acc']), abs=1e-9)
        # Meaningful: no logit difference near a tie, and accuracies that an argmin (100 - acc) would change.
        assert want['margin'] > 1e-4 and 50. not in (want['tr_acc'], want['va_acc'])
    assert len({e['tr_cost'] for e in log}) == 3  # training moved the numbers


def test_each_update_is_the_numpy_runs_update(the_run, numpy_reference):
    """Per update, in the order of numpy's epochs: the batch's classifier cost before it, its gradient's norm
    (before clipping), and the learning rate of SPEC "Optimiser" step 3 with t_total = 16 // (4 * 2) * 3."""
    scalars = read_scalars(the_run['out'])
    cost, lrt, norm = (np.array(x) for x in zip(*numpy_reference['updates']))
    np.testing.assert_allclose(scalars['train/clf_cost'], cost, **COST)
    np.testing.assert_allclose(scalars['train/grad_norm'], norm, rtol=2e-5)
    np.testing.assert_allclose(scalars['train/step_size'], lrt, rtol=1e-6, atol=1e-12)  # Adam's lrt: issue 31's name
    assert len(lrt) == 6 and lrt[-1] < 1e-9 < lrt[0]  # warmup_cosine: the last update has x = 1
    assert norm.min() > HP['max_grad_norm']          # every gradient is clipped


def test_the_epochs_are_successive_draws_of_numpys_generator(numpy_reference, the_run):
    """The orders the NumPy run used are those of SPEC (each epoch a new draw, from the split order); the
    per-update costs above follow them. Here: the three epochs' orders differ, so a run without reshuffling
    cannot match."""
    np.random.seed(HP['seed'])
    np.random.randn(3, N_EMBD)
    orders = [shuffle(np.arange(N_TRAIN), random_state=np.random.mtrand._rand) for _ in range(3)]
    assert all((a[:8] != b[:8]).any() for a, b in zip(orders, orders[1:]))
    (trX, trM, trY), _, _ = numpy_reference['data']
    logged = read_scalars(the_run['out'])['train/clf_cost']
    params = numpy_reference['evaluations'][0]['params']  # after epoch 1: epoch 2's first batch
    at_update_3 = [loss(params, trX[o[:8]], trM[o[:8]], trY[o[:8]], HP['lm_coef'], HP['afn'])[1] for o in orders]
    others = [abs(logged[2] - at_update_3[0]), abs(logged[2] - at_update_3[2])]
    assert abs(logged[2] - at_update_3[1]) < 1e-6 < min(others)


def test_best_params_holds_the_first_best_evaluation(files, the_run, numpy_reference):
    va_acc = [e['va_acc'] for e in read_log(the_run['out'])]
    best = int(np.argmax(va_acc))
    assert best > 0 and va_acc[best] in va_acc[best + 1:]  # a later evaluation ties it: only the first is kept
    saved = joblib.load(os.path.join(the_run['out'], 'save', 'run', 'best_params.jl'))
    distances = [max(np.abs(a - b).max() for a, b in zip(saved, e['params'])) for e in numpy_reference['evaluations']]
    others = [d for i, d in enumerate(distances) if i != best]
    assert distances[best] < 1e-4 < min(others), distances
    assert max(np.abs(a - b).max() for a, b in zip(saved, files['params'])) > 1e-3


def test_the_submission_and_the_analysis_use_the_best_evaluation(the_run, numpy_reference):
    _, _, (teX, teM, teY) = numpy_reference['data']
    evaluations = numpy_reference['evaluations']
    best = evaluations[int(np.argmax([e['va_acc'] for e in evaluations]))]
    logits = reference.forward(best['params'], teX, teM, teY, N_HEAD, CLF, afn=HP['afn'])[0]
    assert np.abs(logits @ [1, -1]).min() > 1e-4
    with open(os.path.join(the_run['out'], 'submission', 'ROCStories.tsv')) as f:
        rows = [line.rstrip('\n').split('\t') for line in f]
    assert rows[0] == ['index', 'prediction'] and [int(r[0]) for r in rows[1:]] == list(range(N_TEST))
    predictions = np.array([int(r[1]) for r in rows[1:]])
    np.testing.assert_array_equal(predictions, np.argmax(logits, 1))
    # the probabilities beside it, to their 6 printed decimals: the last evaluation's parameters give 6e-4 away
    with open(os.path.join(the_run['out'], 'submission', 'ROCStories_probs.tsv')) as f:
        probs = np.array([[float(p) for p in line.split('\t')[1:]] for line in list(f)[1:]])
    np.testing.assert_allclose(probs, reference.softmax(logits), rtol=0, atol=2e-6)
    assert 'ROCStories Valid Accuracy: %.2f' % best['va_acc'] in the_run['printed']
    assert 'ROCStories Test Accuracy:  %.2f' % (np.mean(predictions == teY) * 100) in the_run['printed']


def test_the_evaluation_lines_are_printed(the_run):
    for e in read_log(the_run['out']):
        line = '%d %d %.3f %.3f %.2f %.2f' % tuple(e[k] for k in ['n_epochs', 'n_updates', 'tr_cost', 'va_cost',
                                                                  'tr_acc', 'va_acc'])
        assert line in the_run['printed']


def test_accuracy_takes_the_larger_logit_and_a_tie_goes_to_choice_0():
    logits = np.array([[1., 1.], [0., 2.], [3., 1.], [-1., -1.]], np.float32)
    task = train.TASKS['rocstories']
    for labels, accuracy in [([0, 1, 0, 0], 100.), ([1, 1, 1, 1], 25.)]:
        examples = datasets.Examples((), np.array(labels, np.int32), list('abcd'))
        assert train.tasks.score(task, train.tasks.predictions(task, logits), examples) == {'acc': accuracy}


def test_deterministic_enables_op_determinism(the_run):
    assert the_run['determinism']


def test_xla_run_logs_the_numpy_runs_numbers(files, numpy_reference):
    """--xla compiles the steps: the same run to float rounding (XLA fuses and reorders float32 sums)."""
    out = run(files['root'], 'xla', files['flags'], *hp_flags(), '--vector_l2', *NO_DROPOUT, '--xla')
    for got, want in zip(read_log(out), numpy_reference['evaluations']):
        for k in ['tr_cost', 'va_cost']:
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2e-6, err_msg=k)
        assert (got['tr_acc'], got['va_acc']) == pytest.approx((want['tr_acc'], want['va_acc']), abs=1e-9)
    scalars = read_scalars(out)
    cost, lrt, norm = (np.array(x) for x in zip(*numpy_reference['updates']))
    np.testing.assert_allclose(scalars['train/clf_cost'], cost, rtol=0, atol=2e-6)
    np.testing.assert_allclose(scalars['train/step_size'], lrt, rtol=1e-6, atol=1e-12)  # Adam's lrt: issue 31's name


# ------------------------------------------------------------------------------------------ flags

ORIGINAL_DEFAULTS = dict(
    desc='rocstories', dataset='rocstories', log_dir='log/', save_dir='save/', data_dir='data/',
    submission_dir='submission/', submit=False, analysis=False, seed=42, n_iter=3, n_batch=8, max_grad_norm=1,
    lr=6.25e-5, lr_warmup=0.002, n_ctx=512, n_embd=768, n_head=12, n_layer=12, embd_pdrop=0.1, attn_pdrop=0.1,
    resid_pdrop=0.1, clf_pdrop=0.1, l2=0.01, vector_l2=False, n_gpu=4, opt='adam', afn='gelu',
    lr_schedule='warmup_linear', encoder_path='model/encoder_bpe_40000.json', bpe_path='model/vocab_40000.bpe',
    n_transfer=12, lm_coef=0.5, b1=0.9, b2=0.999, e=1e-8)


def test_every_flag_of_the_original_defaults_to_the_originals_value():
    args = vars(train.parse_args([]))
    for name, value in ORIGINAL_DEFAULTS.items():
        assert args[name] == value and type(args[name]) is type(value), name


def test_the_run_above_sets_every_number_changing_flag_away_from_its_default():
    """The NumPy run follows the flags' values: a flag that did not reach the computation would leave its default
    in place and change the numbers (measured: each moves a logged cost by 8e-6 or more, 80 times COST)."""
    for name, value in {**HP, 'vector_l2': True, 'n_ctx': N_CTX, 'n_embd': N_EMBD, 'n_head': N_HEAD,
                        'n_layer': N_LAYER}.items():
        if name != 'n_iter':  # the default 3 here; test_the_dropout_masks_change_from_update_to_update runs 2
            assert value != ORIGINAL_DEFAULTS[name], name


# ------------------------------------------------------------------------------------------ dropout

def dropout_calls(monkeypatch, **pdrops):
    """(site, input, output) of every dropout of one training call of a 2-layer model (n_embd 32, 8 examples of
    12 tokens) with these drop rates (the others 0)."""
    n, T, C = 8, 12, 32
    rng = np.random.RandomState(0)
    X = np.zeros((n, 2, T, 2), np.int32)
    X[..., 0] = rng.randint(0, N_VOCAB, (n, 2, T))
    X[:, :, -1, 0] = CLF
    X[..., 1] = N_VOCAB + 3 + np.arange(T)
    M = np.ones((n, 2, T), np.float32)
    m = Model(Config(N_VOCAB, T, n_embd=C, n_head=4, n_layer=2, **{**dict(embd_pdrop=0, attn_pdrop=0, resid_pdrop=0,
                     clf_pdrop=0), **pdrops}))
    m.assign([(rng.randn(*p.shape) * 0.3 + ('ln_' in p.name and p.name.endswith('g:0'))).astype(np.float32)
              for p in m.params])
    calls, original = [], model_module.dropout

    def recording(x, *args, **kwargs):
        y = original(x, *args, **kwargs)
        x, y = np.asarray(x), np.asarray(y)
        site = ('embd' if x.shape == tuple(m.we.shape) else 'attn' if x.ndim == 4 else
                'clf' if x.shape == (n, 2, C) else 'resid')
        calls.append((site, x, y))
        return y

    monkeypatch.setattr(model_module, 'dropout', recording)
    finetune_losses(m, (X, M, np.zeros(n, np.int32)), train=True, seed=tf.constant([5, 6], tf.int32))
    return calls


@pytest.mark.parametrize('site', ['embd', 'attn', 'resid', 'clf'])
def test_one_dropout_site_drops_its_rate_and_scales_the_rest(monkeypatch, site):
    """Rate 0.25 at one site, 0 elsewhere: there, 75% of the elements kept (a keep probability in place of the
    rate would keep 25%), scaled by 1 / 0.75, the others zero; every other site the identity."""
    p = 0.25
    calls = dropout_calls(monkeypatch, **{site + '_pdrop': p})
    assert {s for s, _, _ in calls} == {'embd', 'attn', 'resid', 'clf'}
    for s, x, y in calls:
        if s != site:
            np.testing.assert_array_equal(y, x, err_msg=s)
            continue
        live = x != 0                                         # attention's masked (future) weights are 0
        kept = y[live] != 0
        assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / live.sum()), (s, kept.mean())
        np.testing.assert_allclose(y[live][kept], x[live][kept] / (1 - p), rtol=1e-6)
        if s == 'embd':                                       # element-wise: rows hold kept and dropped values
            mask = y != 0
            assert np.mean(mask.any(1) & ~mask.all(1)) > 0.9
        if s == 'clf':                                        # one mask per example, shared by its two choices
            mask = y != 0
            np.testing.assert_array_equal(mask[:, 0], mask[:, 1])
            assert np.mean(mask[:, 0].any(1) & ~mask[:, 0].all(1)) > 0.5
            assert len({m.tobytes() for m in mask[:, 0]}) == len(mask)


def test_the_dropout_masks_change_from_update_to_update(tmp_path):
    """Every example the same story and endings, lr 1e-30 (the parameters never move in float32), dropout at the
    original's rates: the batches are identical, so only new masks can change an update's cost."""
    flags, _ = write_files(str(tmp_path), seed=1, same_story=True)
    out = run(str(tmp_path), 'same', flags, '--lr', '1e-30', '--n_iter', '2', '--n_batch', '2')
    costs = read_scalars(out)['train/clf_cost']
    assert len(costs) == 4 and len(set(costs)) == 4, costs
    log = read_log(out)
    assert log[0]['va_cost'] == log[1]['va_cost']  # nothing moved


# ------------------------------------------------------------------------------------------ precision, optimiser

@pytest.mark.parametrize('precision, dtype', [('bf16', tf.bfloat16), ('fp16', tf.float16)])
def test_mixed_precision_takes_the_attention_softmax_in_float32(precision, dtype):
    m = Model(Config(N_VOCAB, 12, n_embd=16, n_head=2, n_layer=2, precision=precision))
    X = np.zeros((2, 2, 12, 2), np.int32)
    X[..., 0], X[..., 1] = CLF, N_VOCAB + 3 + np.arange(12)
    spec = [tf.TensorSpec(X.shape, tf.int32), tf.TensorSpec((2, 2, 12), tf.float32), tf.TensorSpec((2,), tf.int32)]
    for fused in [False, True]:
        graph = tf.function(lambda X, M, Y: finetune_losses(m, (X, M, Y), train=True, seed=tf.constant([1, 2]),
                                                            path=PADDED._replace(fused=fused))
                            ).get_concrete_function(*spec).graph
        ops = graph.get_operations()
        assert [op.get_attr('T') for op in ops if op.type == 'Softmax'] == [tf.float32] * 2
        assert dtype in [op.get_attr('T') for op in ops if op.type == 'MatMul']   # the 16-bit type is used


@pytest.mark.parametrize('fused', [True, False])
def test_adam_fused_and_op_by_op_match_the_numpy_adam(fused):
    """Both updates of opt.Adam (one XLA kernel per parameter, the default; op by op, for mirrored variables)
    against tests/reference.py, with weight decay and clipping active."""
    from opt import Adam, warmup_linear
    rng = np.random.RandomState(0)
    values = [rng.randn(4, 3).astype(np.float32), rng.randn(5).astype(np.float32)]
    grads = [[rng.randn(*v.shape).astype(np.float32) for v in values] for _ in range(3)]
    params = [tf.Variable(v) for v in values]
    adam = Adam(params, 1e-2, warmup_linear, 10, l2=0.1, max_grad_norm=1, fused=fused)
    p, m, v = values, [np.zeros_like(x) for x in values], [np.zeros_like(x) for x in values]
    for k, g in enumerate(grads, start=1):
        adam.apply([tf.constant(x) for x in g])
        p, m, v, _ = reference.adam_step(p, g, m, v, k, 1e-2, 'warmup_linear', 10, l2=0.1, max_grad_norm=1)
    for got, want in zip(params + adam.m + adam.v, p + m + v):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)


def test_each_replica_part_and_update_draws_its_own_dropout_masks(monkeypatch):
    """Two replicas, two accumulated parts each, two updates, every example the same (dropout at the original's
    rates): each model call drops `we` with a mask of its own, so no two parts, replicas or updates share masks.
    (Which masks they are depends on how seeds are derived; that they all differ does not.)"""
    from opt import Adam, warmup_linear
    T = 10
    X = np.zeros((16, 2, T, 2), np.int32)
    X[..., 0] = [START, 3, 4, 5, DELIMITER, 6, 7, CLF, 0, 0]
    X[..., 1] = N_VOCAB + 3 + np.arange(T)
    M = (X[..., 0] > 0).astype(np.float32)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    with strategy.scope():
        m = Model(Config(N_VOCAB, T, n_embd=16, n_head=2, n_layer=1))
        adam = Adam(m.params, 1e-30, warmup_linear, 10)
    masks, original = [], model_module.dropout

    def recording(x, *args, **kwargs):
        y = original(x, *args, **kwargs)
        if tuple(x.shape) == tuple(m.we.shape):
            masks.append(np.asarray(y) != 0)
        return y

    monkeypatch.setattr(model_module, 'dropout', recording)
    tf.config.run_functions_eagerly(True)  # the masks as values
    try:
        step = finetune_step(m, adam, strategy, lm_coef=0.5, seed=0, accum_steps=2)
        for batch in train_batches(strategy, X, M, np.zeros(16, np.int32), 8):
            step(*batch)
    finally:
        tf.config.run_functions_eagerly(False)
    assert len(masks) >= 8 and all(0.8 < mk.mean() < 0.97 for mk in masks)
    assert len({mk.tobytes() for mk in masks}) == len(masks)
