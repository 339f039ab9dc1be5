"""Mixed precision (--precision bf16 | fp16): float32 weights and losses, 16-bit matmuls, near the float32
numbers; float16's loss scaling skips the updates whose gradient overflowed."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import train
from engine.kernels import PADDED
from model import Config, Model, finetune_losses
from opt import Adam, LossScale, warmup_linear
from tests.test_model import CLF_TOKEN, N_CTX, N_EMBD, N_HEAD, N_LAYER, N_VOCAB, Y0, M0, X0, random_params
from tests.test_train import tiny_run_files
from tests.fixtures import finetune_step


def model_in(precision):
    model = Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER, embd_pdrop=0, attn_pdrop=0,
                         resid_pdrop=0, clf_pdrop=0, precision=precision))
    model.assign(random_params())
    return model


def losses_and_grads(model, fused):
    with tf.GradientTape() as tape:
        logits, clf_losses, lm_losses = finetune_losses(model, (X0, M0, Y0),
                                                        path=PADDED._replace(masked_lm=fused, fused=fused))
        loss = tf.reduce_mean(clf_losses) + 0.5 * tf.reduce_mean(lm_losses)
    return [logits, clf_losses, lm_losses], [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.params)]


@pytest.mark.parametrize('precision, tol', [('bf16', 3e-2), ('fp16', 5e-3)])
@pytest.mark.parametrize('fused', [False, True])
def test_mixed_precision_stays_near_float32(precision, tol, fused):
    outs32, grads32 = losses_and_grads(model_in('fp32'), fused)
    model = model_in(precision)
    outs, grads = losses_and_grads(model, fused)
    assert all(p.dtype == tf.float32 for p in model.params)
    for name, a, b in zip(['clf_logits', 'clf_losses', 'lm_losses'], outs, outs32):
        assert a.dtype == tf.float32, name
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)
    assert np.abs(outs[2] - outs32[2]).max() > 0  # the 16-bit type was really used
    for g, g32, p in zip(grads, grads32, model.params):
        assert g.dtype == tf.float32
        cos = np.sum(g * g32) / (np.linalg.norm(g) * np.linalg.norm(g32) + 1e-30)
        assert np.linalg.norm(g32) < 1e-6 or cos > 0.99, p.name


def fp16_step(loss_scale):
    model = model_in('fp16')
    opt = Adam(model.params, 1e-3, warmup_linear, 10)
    step = finetune_step(model, opt, tf.distribute.get_strategy(), 0.5, seed=0, loss_scale=loss_scale)
    return model, opt, step


def test_fp16_update_with_an_overflowing_gradient_is_skipped():
    loss_scale = LossScale(initial=2. ** 100)  # float16's largest value is 65504: the gradient overflows
    model, opt, step = fp16_step(loss_scale)
    before = [p.numpy() for p in model.params]
    _, lrt, grad_norm = step(X0, M0, Y0)
    assert not np.isfinite(grad_norm)
    for p, b in zip(model.params, before):
        np.testing.assert_array_equal(p.numpy(), b, err_msg=p.name)
    assert all(not m.numpy().any() for m in opt.m)
    assert float(opt.t) == 1 and float(lrt) > 0      # the schedule moved on
    assert float(loss_scale.scale) == 2. ** 99        # halved

    loss_scale.scale.assign(2. ** 10)
    _, _, grad_norm = step(X0, M0, Y0)
    assert np.isfinite(grad_norm) and float(opt.t) == 2
    assert any(np.abs(p.numpy() - b).max() > 1e-5 for p, b in zip(model.params, before))
    assert int(loss_scale.n_finite) == 1 and float(loss_scale.scale) == 2. ** 10


def test_loss_scale_grows_after_a_period_of_finite_steps():
    loss_scale = LossScale(initial=4., period=2)
    for finite, scale, n in [(True, 4., 1), (True, 8., 0), (True, 8., 1), (False, 4., 0), (True, 4., 1)]:
        loss_scale.update(tf.constant(finite))
        assert (float(loss_scale.scale), int(loss_scale.n_finite)) == (scale, n)


def test_fp16_scaled_step_reports_the_float32_cost_and_gradient_norm():
    """The scale is divided out again: cost and gradient norm of a float16 step with a loss scale of 256 are the
    float32 step's, to float16 rounding."""
    model = model_in('fp32')
    opt = Adam(model.params, 1e-3, warmup_linear, 10)
    cost32, _, norm32 = finetune_step(model, opt, tf.distribute.get_strategy(), 0.5, seed=0)(X0, M0, Y0)
    cost16, _, norm16 = fp16_step(LossScale(initial=2. ** 8))[2](X0, M0, Y0)
    assert float(cost16) == pytest.approx(float(cost32), rel=1e-2)
    assert float(norm16) == pytest.approx(float(norm32), rel=1e-2)


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_run_in_mixed_precision_logs_near_the_float32_run(tmp_path, monkeypatch, precision):
    monkeypatch.setattr('tests.test_train.real_path', lambda *parts: None)  # small generated data: fast
    data_dir, encoder_path, bpe_path, _, n_batch, _, _ = tiny_run_files(tmp_path)
    logs = []
    for flags in [[], ['--precision', precision, '--save_every', '2']]:
        log_dir = str(tmp_path / ('log' + ''.join(flags)))
        train.main(['--desc', 'tiny', '--n_iter', '2', '--n_batch', str(n_batch), '--n_embd', '32', '--n_head', '4',
                    '--n_layer', '2', '--n_transfer', '2', '--data_dir', data_dir,
                    '--model_dir', str(tmp_path / 'model'), '--encoder_path', encoder_path, '--bpe_path', bpe_path,
                    '--log_dir', log_dir, '--save_dir', str(tmp_path / 'save'),
                    '--cache_dir', str(tmp_path / 'cache')] + flags)
        with open(os.path.join(log_dir, 'tiny.jsonl')) as f:
            logs.append([json.loads(line) for line in f][1:])
    assert len(logs[1]) == 2
    for mixed, full in zip(*logs):
        assert mixed['n_updates'] == full['n_updates']
        for k in ['tr_cost', 'va_cost']:
            assert mixed[k] == pytest.approx(full[k], rel=3e-2), k
    names = [name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(tmp_path / 'save' / 'tiny' / 'checkpoints'))]
    assert any('loss_scale' in n for n in names) == (precision == 'fp16')  # resumable with its loss scale
