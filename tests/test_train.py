"""The run: one update against GradientTape + a NumPy Adam, 1 vs 2 replicas, and train.py end to end."""
import json
import os

import joblib
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from engine import loop
import train
from model import Config, Model, finetune_losses, tower_loss
from opt import Adam, warmup_linear
from tests import reference
from tests.fixtures import finetune_step, openai_shapes, real_path, train_batches, write_random_weights, write_rocstories

N_VOCAB, N_SPECIAL, N_CTX, N_EMBD, N_HEAD, N_LAYER = 50, 3, 12, 16, 2, 2
CLF = N_VOCAB + 2
HP = dict(lr=1e-3, t_total=10, l2=0.5, max_grad_norm=1)  # l2 large enough for its decay to show


def random_arrays(model, seed=0):
    rng = np.random.RandomState(seed)
    return [(rng.randn(*p.shape) * 0.3 + (1 if 'ln_' in p.name and p.name.endswith('g:0') else 0)).astype(np.float32)
            for p in model.params]


def batches(n_steps=3, n=4, seed=1):
    """n_steps global batches of n examples: random story + ending per choice, zero-padded."""
    rng = np.random.RandomState(seed)
    X = np.zeros((n_steps * n, 2, N_CTX, 2), np.int32)
    M = np.zeros((n_steps * n, 2, N_CTX), np.float32)
    X[..., 1] = N_VOCAB + N_SPECIAL + np.arange(N_CTX)
    for i in range(n_steps * n):
        story = list(rng.randint(1, N_VOCAB, rng.randint(2, 5)))
        for j in range(2):
            x = [N_VOCAB] + story + [N_VOCAB + 1] + list(rng.randint(1, N_VOCAB, rng.randint(1, 4))) + [CLF]
            X[i, j, :len(x), 0] = x
            M[i, j, :len(x)] = 1
    return X, M, rng.randint(0, 2, n_steps * n).astype(np.int32)


def new_model():
    return Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER, embd_pdrop=0, attn_pdrop=0,
                        resid_pdrop=0, clf_pdrop=0))


def expected_params(arrays, X, M, Y, n_batch, lm_coef=0.5):
    """Each step: the gradient of mean(clf) + lm_coef * mean(lm) over the whole global batch (GradientTape on a
    fresh model holding the NumPy parameters), then the NumPy reference Adam."""
    ref = new_model()
    params, m, v = list(arrays), [np.zeros_like(a) for a in arrays], [np.zeros_like(a) for a in arrays]
    for k, i in enumerate(range(0, len(X), n_batch), start=1):
        ref.assign(params)
        with tf.GradientTape() as tape:
            _, clf_losses, lm_losses = finetune_losses(ref, (X[i:i + n_batch], M[i:i + n_batch], Y[i:i + n_batch]))
            loss = tf.reduce_mean(clf_losses) + lm_coef * tf.reduce_mean(lm_losses)
        grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, ref.params)]
        params, m, v, _ = reference.adam_step(params, grads, m, v, k, schedule=reference.warmup_linear, **HP)
    return params


def assert_params_close(params, expected):
    """Parameters equal to 1% of lr per element. Adam's m / sqrt(v) amplifies the rounding of near-zero gradients
    (graph vs eager, one device vs two); a wrong lm_coef, averaging or decay moves parameters by the order of lr.
    The key bias (middle third of c_attn/b) and clf/b have exactly zero gradients (each adds the same amount to
    every score a softmax compares), so Adam turns pure rounding noise into +-lr steps there: they are left out."""
    for p, e in zip(params, expected):
        got = p.numpy()
        if p.name == 'model/clf/b:0':
            continue
        if p.name.endswith('c_attn/b:0'):
            keep = np.r_[0:N_EMBD, 2 * N_EMBD:3 * N_EMBD]
            got, e = got[keep], e[keep]
        np.testing.assert_allclose(got, e, rtol=0, atol=1e-5, err_msg=p.name)


@pytest.mark.parametrize('n_replicas', [1, 2])
def test_train_steps_match_gradient_tape_and_numpy_adam(n_replicas):
    strategy = (tf.distribute.get_strategy() if n_replicas == 1
                else tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))
    with strategy.scope():
        model = new_model()
        opt = Adam(model.params, schedule=warmup_linear, **HP)
    arrays = random_arrays(model)
    model.assign(arrays)
    X, M, Y = batches()
    step = finetune_step(model, opt, strategy, lm_coef=0.5, seed=0)
    for xmb, mmb, ymb in train_batches(strategy, X, M, Y, 4):
        step(xmb, mmb, ymb)
    assert strategy.num_replicas_in_sync == n_replicas
    assert opt.t.numpy() == 3
    assert_params_close(model.params, expected_params(arrays, X, M, Y, 4))
    assert max(np.abs(p.numpy() - a).max() for p, a in zip(model.params, arrays)) > 1e-4  # it did move


def test_two_replicas_give_the_numbers_of_one():
    results = []
    for strategy in [tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])]:
        with strategy.scope():
            model = new_model()
            opt = Adam(model.params, schedule=warmup_linear, **HP)
        model.assign(random_arrays(model))
        step = finetune_step(model, opt, strategy, lm_coef=0.5, seed=0)
        costs = [float(step(*b)[0]) for b in train_batches(strategy, *batches(), 4)]
        results.append((costs, model.params))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    assert_params_close(results[1][1], [p.numpy() for p in results[0][1]])


def test_towers_that_replicas_cannot_share_are_refused():
    with pytest.raises(train.InputError, match='3 replicas .* --n_gpu 4'):
        loop.check_replicas(8, 4, 3)


def test_lm_coef_zero_trains_the_classifier_alone():
    clf, lm = tf.constant([1., 3.]), tf.constant([10., 20., 30., 40.])
    assert float(tower_loss(clf, lm, 0.5)) == pytest.approx(2 + 0.5 * 25)
    assert float(tower_loss(clf, lm, 0.)) == pytest.approx(2)


def tiny_run_files(tmp_path):
    """Data, BPE files and random tiny weights (2 layers, n_embd 32) in the original layout: the real Story Cloze
    files and vocabulary where fixtures.real_path finds them, else generated ones. Returns the paths, n_vocab, the
    --n_batch to use, the number of train and test examples."""
    data_dir, model_dir = real_path('data'), real_path('model')
    n_batch, n_train, n_test = 8, 1497, 1871
    if data_dir and model_dir:
        encoder_path = os.path.join(model_dir, 'encoder_bpe_40000.json')
        bpe_path = os.path.join(model_dir, 'vocab_40000.bpe')
    else:
        data_dir, encoder_path, bpe_path = str(tmp_path / 'data'), str(tmp_path / 'enc.json'), str(tmp_path / 'vocab.bpe')
        n_batch, n_train, n_test = 2, 26, 50
        write_rocstories(data_dir, n_val=n_train + 374, n_test=n_test)
        symbols = sorted(set('abcdefghijklmnopqrstuvwxyz.'))
        with open(encoder_path, 'w') as f:
            json.dump({s: i for i, s in enumerate(symbols + [s + '</w>' for s in symbols])}, f)
        with open(bpe_path, 'w') as f:
            f.write('#version: 0.2\n\n')
    with open(encoder_path) as f:
        n_vocab = len(json.load(f))
    write_random_weights(str(tmp_path / 'model'), openai_shapes(n_vocab, 32, 2), n_shards=3)
    return data_dir, encoder_path, bpe_path, n_vocab, n_batch, n_train, n_test


def test_end_to_end_tiny_run_writes_the_original_outputs(tmp_path, capsys):
    data_dir, encoder_path, bpe_path, n_vocab, n_batch, n_train, n_test = tiny_run_files(tmp_path)
    out = {k: str(tmp_path / k) for k in ['log', 'save', 'submission']}
    train.main(['--dataset', 'rocstories', '--desc', 'tiny', '--submit', '--analysis', '--n_iter', '1',
                '--n_batch', str(n_batch), '--n_embd', '32', '--n_head', '4', '--n_layer', '2', '--n_transfer', '2',
                '--data_dir', data_dir, '--model_dir', str(tmp_path / 'model'), '--encoder_path', encoder_path,
                '--bpe_path', bpe_path, '--log_dir', out['log'], '--save_dir', out['save'],
                '--cache_dir', str(tmp_path / 'cache'),
                '--submission_dir', out['submission']])
    printed = capsys.readouterr().out

    with open(os.path.join(out['log'], 'tiny.jsonl')) as f:
        flags, *evaluations = [json.loads(line) for line in f]
    assert list(flags)[:4] == ['desc', 'dataset', 'log_dir', 'save_dir']
    assert flags['n_ctx'] == 512 and flags['n_transfer'] == 2 and flags['n_batch'] == n_batch and 'time' in flags
    assert [(r['n_epochs'], r['n_updates']) for r in evaluations] == [(1, n_train // (n_batch * 4))]
    (evaluation,) = evaluations
    assert set(evaluation) == {'n_epochs', 'n_updates', 'tr_cost', 'va_cost', 'tr_acc', 'va_acc', 'time'}
    line = '%d %d %.3f %.3f %.2f %.2f' % tuple(
        evaluation[k] for k in ['n_epochs', 'n_updates', 'tr_cost', 'va_cost', 'tr_acc', 'va_acc'])
    assert line in printed.splitlines()

    saved = joblib.load(os.path.join(out['save'], 'tiny', 'best_params.jl'))
    assert len(saved) == 1 + 12 * 2 + 2 and all(a.dtype == np.float32 for a in saved)
    assert saved[0].shape[1] == 32 and saved[0].shape[0] > n_vocab + 3
    assert [a.shape for a in saved[1:13]] == [tuple(s) for s in openai_shapes(n_vocab, 32, 1)[2:]]
    assert [a.shape for a in saved[-2:]] == [(32, 1), (1,)]
    if n_train == 1497:
        assert saved[0].shape[0] == 40478 + 3 + 77  # n_ctx 77 on the real data

    tsv = pd.read_csv(os.path.join(out['submission'], 'ROCStories.tsv'), delimiter='\t')
    assert list(tsv.columns) == ['index', 'prediction']
    assert list(tsv['index']) == list(range(n_test)) and set(tsv['prediction']) <= {0, 1}
    assert 'ROCStories Valid Accuracy: %.2f' % evaluation['va_acc'] in printed.splitlines()
    assert any(l.startswith('ROCStories Test Accuracy:  ') for l in printed.splitlines())
