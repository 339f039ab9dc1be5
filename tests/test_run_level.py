"""The run as a whole (SPEC "The run"), seen through its outputs: a tiny train.py run against a NumPy re-computation
of the same run (the split, the epochs' orders from numpy's global generator, every update from float64
finite-difference gradients and tests/reference.py's Adam, every evaluation), and the flags, dropout sites and
switches that change a run's numbers. Nothing here takes a number from the code under test."""
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

import model as model_module
import train
from datasets import ROC_HEADER, ROC_TEST, ROC_VAL
from model import Model
from tests import reference

WORDS = ['the', 'cat', 'sat', 'on', 'mat', 'dog', 'ran', 'home', 'and', 'was', 'happy', 'sad', 'it', 'rained']
SYMBOLS = sorted(set('abcdefghijklmnopqrstuvwxyz.'))
N_VOCAB = 2 * len(SYMBOLS)                        # each symbol alone and at the end of a word: no BPE merges
START, DELIMITER, CLF = N_VOCAB, N_VOCAB + 1, N_VOCAB + 2
N_TRAIN, N_VALID, N_TEST = 16, 374, 20            # the original's split always keeps 374 stories for validation
N_EMBD, N_HEAD, N_LAYER, N_CTX = 8, 2, 1, 16      # --n_ctx 16: max_len 6, and n_ctx becomes 15
# The run: non-default values of every flag that changes a number, so that a flag ignored (its default used
# instead) changes the run; dropout off, so that the NumPy run can follow it update by update.
HP = dict(seed=7, n_iter=3, n_batch=2, n_gpu=4, lr=2e-3, lr_warmup=0.2, lr_schedule='warmup_cosine', l2=0.05,
          b1=0.8, b2=0.9, e=1e-4, lm_coef=2.0, max_grad_norm=1, afn='swish')
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
    n_rows = N_VOCAB + 3 + 15
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


def gradients(params, X, M, Y, lm_coef, afn, h=1e-5):
    """Central finite differences of the training loss in float64, element by element."""
    params = [np.asarray(p, np.float64) for p in params]
    grads = []
    for p in params:
        g = np.zeros_like(p)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            x = flat[i]
            flat[i] = x + h
            up = loss(params, X, M, Y, lm_coef, afn)[0]
            flat[i] = x - h
            down = loss(params, X, M, Y, lm_coef, afn)[0]
            flat[i] = x
            gflat[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


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
            cost = loss(params, trX[i], trM[i], trY[i], hp['lm_coef'], hp['afn'])[1]
            grads = gradients(params, trX[i], trM[i], trY[i], hp['lm_coef'], hp['afn'])
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
    (before clipping), and the learning rate of SPEC "Optimiser" step 3 with t_total = 16 // 8 * 3."""
    scalars = read_scalars(the_run['out'])
    cost, lrt, norm = (np.array(x) for x in zip(*numpy_reference['updates']))
    np.testing.assert_allclose(scalars['train/clf_cost'], cost, **COST)
    np.testing.assert_allclose(scalars['train/grad_norm'], norm, rtol=2e-5)
    np.testing.assert_allclose(scalars['train/lr'], lrt, rtol=1e-6, atol=1e-12)
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
    assert abs(logged[2] - at_update_3[1]) < 1e-6 < min(abs(logged[2] - at_update_3[0]), abs(logged[2] - at_update_3[2]))


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
    assert 'ROCStories Valid Accuracy: %.2f' % best['va_acc'] in the_run['printed']
    assert 'ROCStories Test Accuracy:  %.2f' % (np.mean(predictions == teY) * 100) in the_run['printed']
    log = read_log(the_run['out'])
    assert log[-1]['va_acc'] < best['va_acc'] or log[0]['va_acc'] < best['va_acc']


def test_the_evaluation_lines_are_printed(the_run):
    for e in read_log(the_run['out']):
        line = '%d %d %.3f %.3f %.2f %.2f' % tuple(e[k] for k in ['n_epochs', 'n_updates', 'tr_cost', 'va_cost',
                                                                  'tr_acc', 'va_acc'])
        assert line in the_run['printed']


def test_deterministic_enables_op_determinism(the_run):
    assert the_run['determinism']
