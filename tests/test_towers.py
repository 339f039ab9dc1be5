"""The original's towers on any hardware: every update is n_gpu towers of n_batch examples, each with its own
dropout masks (its own mask of `we`), whatever the number of devices; and the padded and default paths drop out
alike in distribution (same sites, keep rate and scaling), not in value."""
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from engine import loop
import model as model_module
from engine.kernels import DEFAULT, PADDED
from model import Config, Model, finetune_losses
from opt import Adam, warmup_linear
from tests import reference
from tests.fixtures import finetune_step, train_batches, trim
from tests.test_train import (CLF, HP, N_CTX, N_EMBD, N_HEAD, N_LAYER, N_SPECIAL, N_VOCAB, assert_params_close,
                              batches, random_arrays)

SEED, EMBD_PDROP = 7, 0.3
N_GPU, N_BATCH = 4, 2


def embd_dropout_model(embd_pdrop):
    return Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER, embd_pdrop=embd_pdrop,
                        attn_pdrop=0, resid_pdrop=0, clf_pdrop=0))


def we_keep(update, tower, part, shape):
    """The kept elements of `we` in a part of a tower (SPEC: one mask per tower per update): its seed is
    (SEED, updates done) folded with the global tower index, then the part; the mask is the first draw of that
    seed's stream (fold_in 1), an element kept where a Philox uniform is >= embd_pdrop."""
    seed = tf.constant([SEED, update], tf.int32)
    for data in [tower, part, 1]:
        seed = tf.random.experimental.stateless_fold_in(seed, data)
    return (tf.random.stateless_uniform(shape, seed, alg='philox') >= EMBD_PDROP).numpy()


def expected_params(arrays, X, M, Y, accum_steps=1, one_mask=False):
    """Each update: for each tower and part, the gradient of its tower loss on a dropout-free model whose `we` is
    the dropped-out we (we * keep / (1 - p)), the `we` gradient then times keep / (1 - p) (the chain rule through
    the mask); the mean over all parts, then the NumPy reference Adam. one_mask: tower 0's mask for every part
    (the wrong rule: one mask per update), to show that the test tells the two apart."""
    ref = embd_dropout_model(0.)
    params, m, v = list(arrays), [np.zeros_like(a) for a in arrays], [np.zeros_like(a) for a in arrays]
    n_global, n_part = N_GPU * N_BATCH, N_BATCH // accum_steps
    for k, i in enumerate(range(0, len(X), n_global)):
        grads = [np.zeros_like(a) for a in arrays]
        for tower in range(N_GPU):
            for part in range(accum_steps):
                keep = we_keep(k, 0, 0, arrays[0].shape) if one_mask else we_keep(k, tower, part, arrays[0].shape)
                scale = keep / (1 - EMBD_PDROP)
                ref.assign([params[0] * scale] + params[1:])
                rows = slice(i + tower * N_BATCH + part * n_part, i + tower * N_BATCH + (part + 1) * n_part)
                with tf.GradientTape() as tape:
                    _, clf_losses, lm_losses = finetune_losses(ref, (X[rows], M[rows], Y[rows]))
                    loss = tf.reduce_mean(clf_losses) + 0.5 * tf.reduce_mean(lm_losses)
                g = [tf.convert_to_tensor(t).numpy() for t in tape.gradient(loss, ref.params)]
                g[0] = g[0] * scale
                grads = [a + b / (N_GPU * accum_steps) for a, b in zip(grads, g)]
        params, m, v, _ = reference.adam_step(params, grads, m, v, k + 1, schedule=reference.warmup_linear, **HP)
    return params


@pytest.mark.parametrize('n_replicas, accum_steps', [(1, 1), (2, 1), (2, 2)])
def test_each_tower_draws_its_own_we_mask_on_any_number_of_devices(n_replicas, accum_steps):
    """Only embd_pdrop on: two updates of n_gpu 4 towers of 2 examples, on one device (4 towers in a row) or two
    (2 each), equal the mean of the towers' gradients, each with its own mask of `we`."""
    X, M, Y = batches(n_steps=2, n=N_GPU * N_BATCH)
    strategy = (tf.distribute.get_strategy() if n_replicas == 1
                else tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))
    with strategy.scope():
        model = embd_dropout_model(EMBD_PDROP)
        opt = Adam(model.params, schedule=warmup_linear, **HP)
    arrays = random_arrays(model)
    model.assign(arrays)
    step = finetune_step(model, opt, strategy, lm_coef=0.5, seed=SEED, accum_steps=accum_steps,
                                 n_towers=N_GPU)
    for batch in train_batches(strategy, X, M, Y, N_GPU * N_BATCH):
        step(*batch)
    assert strategy.num_replicas_in_sync == n_replicas and opt.t.numpy() == 2
    want = expected_params(arrays, X, M, Y, accum_steps)
    assert_params_close(model.params, want)
    # the test can fail: one mask for the whole update moves `we` elsewhere, by far more than the tolerance
    one_mask = expected_params(arrays, X, M, Y, accum_steps, one_mask=True)
    assert np.abs(one_mask[0] - want[0]).max() > 1e-4


def test_one_device_and_two_make_the_same_update_with_dropout_on():
    X, M, Y = batches(n_steps=2, n=N_GPU * N_BATCH)
    results = []
    for strategy in [tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])]:
        with strategy.scope():
            model = Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER, embd_pdrop=0.1,
                                 attn_pdrop=0.2, resid_pdrop=0.3, clf_pdrop=0.4))  # every site on
            opt = Adam(model.params, schedule=warmup_linear, **HP)
        model.assign(random_arrays(model))
        step = finetune_step(model, opt, strategy, lm_coef=0.5, seed=SEED, n_towers=N_GPU)
        costs = [float(step(*batch)[0]) for batch in train_batches(strategy, X, M, Y, N_GPU * N_BATCH)]
        results.append((costs, model.params))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    assert_params_close(results[1][1], [p.numpy() for p in results[0][1]])


def test_devices_used_are_the_largest_count_that_divides_n_gpu():
    assert [loop.tower_devices(4, n) for n in [0, 1, 2, 3, 4, 8]] == [1, 1, 2, 2, 4, 4]
    assert loop.tower_devices(6, 5) == 3 and loop.tower_devices(3, 2) == 1
    loop.check_replicas(8, 4, 2, accum_steps=8)  # every count that divides n_gpu runs


def test_gpus_that_do_not_divide_n_gpu_leave_some_idle_and_say_so(monkeypatch, capsys):
    gpus = [SimpleNamespace(name=f'/device:GPU:{i}') for i in range(3)]
    monkeypatch.setattr(tf.config, 'list_logical_devices', lambda kind=None: gpus if kind == 'GPU' else [])
    monkeypatch.setattr(tf.distribute, 'MirroredStrategy', lambda devices: devices)  # the devices it would mirror
    assert loop.make_strategy(4) == ['/device:GPU:0', '/device:GPU:1']
    assert capsys.readouterr().out.strip().splitlines() == [
        'using 2 of the 3 GPUs: the largest count that divides the n_gpu 4 towers (2 each)']
    assert loop.make_strategy(3) == [gpu.name for gpu in gpus] and capsys.readouterr().out == ''


def recorded_dropout(monkeypatch):
    """Replace model.dropout by a wrapper recording, per call: pdrop, the input's shape, the multiplier out / x
    where x is not 0 (one per mask element: the first choice only where the mask is shared, noise_shape), and
    the output (to check a shared mask)."""
    calls, dropout = [], model_module.dropout

    def recording(x, pdrop, seeds, noise_shape=None):
        out = dropout(x, pdrop, seeds, noise_shape)
        xs, outs = np.asarray(x, np.float64), np.asarray(out, np.float64)
        x1, out1 = (xs, outs) if noise_shape is None else (xs[:, 0], outs[:, 0])
        calls.append(dict(pdrop=pdrop, shape=xs.shape, mult=out1[x1 != 0] / x1[x1 != 0], out=outs))
        return out
    monkeypatch.setattr(model_module, 'dropout', recording)
    return calls


def test_padded_and_default_paths_drop_out_alike_in_distribution_not_in_value(monkeypatch):
    """With dropout on, --padded (padded batches, LM head everywhere, op by op) and the default path (trimmed
    batches, masked LM head, XLA kernels) draw masks at the same sites, in the same order, with the same keep rate
    and the same 1 / (1 - p) scaling; their shapes differ (padded vs trimmed length), so their values do too."""
    pdrops = dict(embd_pdrop=0.1, attn_pdrop=0.2, resid_pdrop=0.3, clf_pdrop=0.4)  # a rate names each kind of site
    model = Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER, **pdrops))
    model.assign(random_arrays(model))
    X, M, Y = batches(n_steps=1, n=48)
    seed = tf.constant([SEED, 0], tf.int32)
    paths = {}
    for name, inputs, kw in [('padded', (X, M, Y), dict(path=PADDED)),
                             ('default', trim(X, M, Y), dict(path=DEFAULT))]:
        calls = recorded_dropout(monkeypatch)
        outputs = finetune_losses(model, inputs, train=True, seed=seed, **kw)
        monkeypatch.undo()
        paths[name] = (calls, outputs, int(inputs[0].shape[2]))
    (padded, padded_out, T_padded), (default, default_out, T_default) = paths['padded'], paths['default']
    assert T_default < T_padded == N_CTX  # the default path's batch really is trimmed

    # same sites, in the same order: we, then per layer attention weights, attention output, mlp output; clf
    kinds = [('embd', 0.1)] + [('attn', 0.2), ('resid', 0.3), ('resid', 0.3)] * N_LAYER + [('clf', 0.4)]
    assert [c['pdrop'] for c in padded] == [c['pdrop'] for c in default] == [p for _, p in kinds]
    for a, b in zip(padded, default):  # same shapes but for the sequence length
        assert tuple(T_default if d == T_padded else d for d in a['shape']) == b['shape']
    assert padded[0]['shape'] == default[0]['shape'] == (N_VOCAB + N_SPECIAL + N_CTX, N_EMBD)  # the whole of we
    np.testing.assert_array_equal(padded[0]['mult'], default[0]['mult'])  # same shape, same seed: same mask

    # same scaling: every kept value is multiplied by 1 / (1 - p); same keep rate: within 5 binomial sigmas
    for kind, p in sorted(set(kinds)):
        for calls in [padded, default]:
            mult = np.concatenate([c['mult'] for c in calls if c['pdrop'] == p])
            kept = mult != 0
            np.testing.assert_allclose(mult[kept], 1 / (1 - p), rtol=1e-5, err_msg=kind)
            assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / len(mult)), (kind, kept.mean(), len(mult))
    # the classifier's mask is one per example, shared by its two choices, in both paths
    for calls in [padded, default]:
        clf = calls[-1]
        np.testing.assert_array_equal(clf['out'][:, 0] == 0, clf['out'][:, 1] == 0)

    # not in value: the attention and residual masks have other shapes, so the losses differ
    assert np.abs(padded_out[1].numpy() - default_out[1].numpy()).max() > 1e-3
