"""The default computation (trimmed batches, LM head on real tokens only, XLA kernels of gelu and LayerNorm, both
choices packed in one sequence for evaluation, fused Adam) gives the original's numbers: against the NumPy reference
and against the padded path."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import train
from engine import kernels
from engine.kernels import PADDED
from model import evaluate_batch, finetune_losses, gelu, norm, segment_mask
from opt import Adam, warmup_linear
from tests import reference
from tests.reference import pack_roc, transform_roc
from text_utils import encoded_dataset
from tests.test_model import (CLF_TOKEN, N_HEAD, N_VOCAB, TOL, Y0, M0, X0, make_model, random_examples,
                              random_params, run)
from tests.test_train import tiny_run_files
from tests.fixtures import finetune_step, train_batches, trim


def test_masked_lm_head_gives_the_original_losses():
    model = make_model()
    full = finetune_losses(model, (X0, M0, Y0))
    masked = finetune_losses(model, (X0, M0, Y0), path=PADDED._replace(masked_lm=True))
    np.testing.assert_allclose(masked[2], full[2], rtol=1e-5)
    np.testing.assert_allclose(masked[2], reference.forward(random_params(), X0, M0, Y0, N_HEAD, CLF_TOKEN)[2],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(masked[0], full[0])


fused_gelu, fused_norm = kernels.fused(gelu, norm)


def test_fused_kernels_forward_match_the_reference():
    rng = np.random.RandomState(0)
    x, g, b = rng.randn(3, 5, 16) * 2, rng.randn(16), rng.randn(16)
    np.testing.assert_allclose(fused_gelu(tf.constant(x, tf.float32)), reference.gelu(x), rtol=1e-5, atol=1e-6)
    got = fused_norm(*(tf.constant(a, tf.float32) for a in (x, g, b)))
    np.testing.assert_allclose(got, reference.layer_norm(x, g, b), rtol=1e-5, atol=1e-5)


def numeric_grad(f, args, i, dy, h=1e-6):
    """d sum(dy * f(*args)) / d args[i] by central differences, in float64."""
    x = args[i]
    out = np.zeros_like(x)
    for j in np.ndindex(x.shape):
        hi, lo = [a.copy() for a in args], [a.copy() for a in args]
        hi[i][j] += h
        lo[i][j] -= h
        out[j] = np.sum(dy * (f(*hi) - f(*lo))) / (2 * h)
    return out


def test_fused_kernels_gradients_match_finite_differences_and_autodiff():
    """The hand-written gradients of fused_gelu and fused_norm against central differences of the NumPy
    reference, and against TensorFlow's autodiff of the original's formulas."""
    rng = np.random.RandomState(1)
    x, g, b = rng.randn(2, 3, 8) * 2, rng.randn(8), rng.randn(8)
    dy = rng.randn(2, 3, 8)
    for fused, plain, ref, args in [(fused_gelu, gelu, reference.gelu, [x]),
                                    (fused_norm, norm, reference.layer_norm, [x, g, b])]:
        ts = [tf.constant(a, tf.float32) for a in args]
        grads = {}
        for name, f in [('fused', fused), ('autodiff', plain)]:
            with tf.GradientTape() as tape:
                tape.watch(ts)
                y = tf.reduce_sum(tf.constant(dy, tf.float32) * f(*ts))
            grads[name] = tape.gradient(y, ts)
        for i in range(len(args)):
            want = numeric_grad(ref, args, i, dy)
            np.testing.assert_allclose(grads['fused'][i], want, rtol=1e-4, atol=1e-4, err_msg=f'{ref.__name__} {i}')
            np.testing.assert_allclose(grads['fused'][i], grads['autodiff'][i], rtol=1e-5, atol=1e-5)


def test_fused_forward_matches_the_reference():
    params = random_params()
    want = reference.forward(params, X0, M0, Y0, N_HEAD, CLF_TOKEN)
    for name, g, w in zip(['clf_logits', 'clf_losses', 'lm_losses'], run(make_model(params), X0, M0, Y0, path=PADDED._replace(fused=True)), want):
        np.testing.assert_allclose(g, w, **TOL, err_msg=name)


def test_packed_evaluation_scores_both_choices_as_two_sequences():
    examples = random_examples(seed=3, n=5)
    X1, X2, X3 = zip(*examples)
    Y = np.array([0, 1, 1, 0, 1], np.int32)
    X, M = transform_roc(X1, X2, X3, N_VOCAB, n_ctx=16, max_len=6)
    Xp, seg, clf_idx = pack_roc(X1, X2, X3, N_VOCAB, max_len=6)
    # the packed row: story, ending 1, ending 2 (positions restart after the delimiter), two _classify_ tokens
    story, e1, e2 = X1[1][:6], X2[1][:6], X3[1][:6]
    n = len(story) + 2
    assert list(Xp[1, :n + len(e1) + len(e2) + 2, 0]) == [N_VOCAB] + story + [N_VOCAB + 1] + e1 + [CLF_TOKEN] + e2 + [CLF_TOKEN]
    assert list(Xp[1, n + len(e1) + 1:n + len(e1) + len(e2) + 2, 1] - N_VOCAB - 3) == list(range(n, n + len(e2) + 1))
    assert list(clf_idx[1]) == [n + len(e1), n + len(e1) + len(e2) + 1]

    model = make_model()
    logits, losses, _ = finetune_losses(model, (X, M, Y))
    clf_at = (np.arange(len(Xp))[:, None] * Xp.shape[1] + clf_idx).astype(np.int32)  # one example a row, one unit:
    packed_logits, packed_losses = evaluate_batch(model, (Xp, seg + 1, clf_at, Y), n_parts=4)  # parts 0, 1, 2, pad
    np.testing.assert_allclose(packed_logits, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(packed_losses, losses, rtol=1e-5, atol=1e-6)
    ref_logits = reference.forward(random_params(), X, M, Y, N_HEAD, CLF_TOKEN)[0]
    np.testing.assert_allclose(packed_logits, ref_logits, rtol=1e-5, atol=1e-5)


def test_packed_mask_keeps_the_endings_apart():
    seg = tf.constant([[0, 0, 1, 1, 2, 2, 3]]) + 1  # one unit: the story (part 0), ending 1, ending 2, padding
    b = tf.squeeze(segment_mask(seg, n_parts=4)).numpy()
    assert b[4, 2] == 0 and b[4, 3] == 0       # ending 2 does not see ending 1
    assert b[4, 0] == 1 and b[4, 1] == 1 and b[5, 4] == 1 and b[4, 5] == 0  # it sees the story and its own past
    assert b[3, 2] == 1 and b[3, 4] == 0       # ending 1 is causal


def test_trim_cuts_a_batch_to_its_longest_sequence():
    X = np.zeros((2, 2, 10, 2), np.int32)
    M = np.zeros((2, 2, 10), np.float32)
    M[0, 1, :6] = 1
    M[1, 0, :3] = 1
    Xt, Mt, _ = trim(X, M, np.zeros(2, np.int32))
    assert Xt.shape == (2, 2, 6, 2) and Mt.shape == (2, 2, 6)
    assert trim(X, M, None, multiple=4)[1].shape[-1] == 8
    M[1, 1, :9] = 1
    assert trim(X, M, None, multiple=8)[1].shape[-1] == 10  # 9 rounds up to 16, but never past n_ctx


@pytest.mark.parametrize('fused', [False, True])
def test_trimmed_masked_steps_match_padded_steps(fused):
    """Three updates on trimmed batches with the masked LM head (XLA kernels and fused Adam, or op by op) leave
    the parameters the original's padded steps leave."""
    from tests.test_train import HP, assert_params_close, batches, new_model
    X, M, Y = batches()
    results = []
    strategy = tf.distribute.get_strategy()
    for trimmed, kw in [(False, dict(fused=False)), (True, dict(fused=fused))]:
        model = new_model()
        model.assign(random_params_for(model))
        opt = Adam(model.params, schedule=warmup_linear, **HP, **kw)
        step = finetune_step(model, opt, strategy, lm_coef=0.5, seed=0, masked_lm=trimmed,
                                     fused=kw['fused'])
        shapes = []
        for xmb, mmb, ymb in train_batches(strategy, X, M, Y, 4, trimmed=trimmed):
            shapes.append(xmb.shape[2])
            step(xmb, mmb, ymb)
        results.append((model.params, shapes))
    assert max(results[1][1]) < X.shape[2]  # the batches really were cut
    assert_params_close(results[1][0], [p.numpy() for p in results[0][0]])


def random_params_for(model, seed=0):
    rng = np.random.RandomState(seed)
    return [(rng.randn(*p.shape) * 0.3).astype(np.float32) for p in model.params]


def test_fused_adam_is_the_same_update():
    rng = np.random.RandomState(0)
    values = [rng.randn(4, 3).astype(np.float32), rng.randn(5).astype(np.float32)]
    grads = [rng.randn(4, 3).astype(np.float32), rng.randn(5).astype(np.float32)]
    out = []
    for fused in [False, True]:
        params = [tf.Variable(v) for v in values]
        opt = Adam(params, 1e-3, warmup_linear, 10, l2=0.1, max_grad_norm=1, fused=fused)
        for _ in range(3):
            opt.apply(grads)
        out.append([p.numpy() for p in params + opt.m + opt.v])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_default_run_logs_the_numbers_of_the_padded_run(tmp_path, monkeypatch):
    """train.py by default and with --padded (the original's computation) log the same costs and accuracies."""
    monkeypatch.setattr('tests.test_train.real_path', lambda *parts: None)  # small generated data: fast
    data_dir, encoder_path, bpe_path, _, n_batch, _, _ = tiny_run_files(tmp_path)
    logs = []
    for flags in [[], ['--padded']]:
        log_dir = str(tmp_path / ('log' + ''.join(flags)))
        train.main(['--desc', 'tiny', '--n_iter', '2', '--n_batch', str(n_batch), '--n_embd', '32', '--n_head', '4',
                    '--n_layer', '2', '--n_transfer', '2', '--embd_pdrop', '0', '--attn_pdrop', '0',
                    '--resid_pdrop', '0', '--clf_pdrop', '0', '--data_dir', data_dir,
                    '--model_dir', str(tmp_path / 'model'), '--encoder_path', encoder_path, '--bpe_path', bpe_path,
                    '--log_dir', log_dir, '--save_dir', str(tmp_path / 'save'),
                    '--cache_dir', str(tmp_path / 'cache')] + flags)
        with open(os.path.join(log_dir, 'tiny.jsonl')) as f:
            logs.append([json.loads(line) for line in f][1:])
    assert len(logs[0]) == 2
    for fast, padded in zip(*logs):
        assert (fast['n_epochs'], fast['n_updates']) == (padded['n_epochs'], padded['n_updates'])
        for k in ['tr_cost', 'va_cost', 'tr_acc', 'va_acc']:
            assert fast[k] == pytest.approx(padded[k], rel=1e-4, abs=1e-4), k


def test_encoded_data_set_is_cached_by_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr('tests.test_train.real_path', lambda *parts: None)
    data_dir, encoder_path, bpe_path, _, _, _, _ = tiny_run_files(tmp_path)
    cache_dir = str(tmp_path / 'cache')
    encoder = train.TextEncoder(encoder_path, bpe_path)
    task = train.TASKS['rocstories']
    first, write_cache = encoded_dataset(task, data_dir, cache_dir, encoder)
    write_cache()
    assert len(os.listdir(tmp_path / 'cache')) == 1
    monkeypatch.setattr(encoder, 'encode', lambda *a, **k: pytest.fail('encoded again despite the cache'))
    second, _ = encoded_dataset(task, data_dir, cache_dir, encoder)
    assert [f.tolist() for f in second['train'].texts] == [f.tolist() for f in first['train'].texts]
    assert (second['valid'].y == first['valid'].y).all()
    with open(task.paths(data_dir)[1], 'a') as f:
        f.write('id999,A b.,C d.,E f.,G h.,I j.,K l.,1\n')  # another test file: another key, encoded anew
    monkeypatch.undo()
    third, write_cache = encoded_dataset(task, data_dir, cache_dir, train.TextEncoder(encoder_path, bpe_path))
    write_cache()
    assert len(third['test'].ids) == len(first['test'].ids) + 1 and len(os.listdir(tmp_path / 'cache')) == 2
