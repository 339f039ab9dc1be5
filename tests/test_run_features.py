"""Beyond the original: resumable, deterministic, accumulating, inspectable runs, and reuse of a trained model."""
import glob
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import opt
from engine import loop
import train
from opt import Adam, warmup_linear
from tests import test_train
from tests.test_train import HP, assert_params_close, batches, new_model
from tests.fixtures import finetune_step, train_batches


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Small generated data, a character vocabulary and random 2-layer weights (fast runs)."""
    tmp_path = tmp_path_factory.mktemp('run')
    original = test_train.real_path
    test_train.real_path = lambda *parts: None
    try:
        data_dir, encoder_path, bpe_path, _, n_batch, _, _ = test_train.tiny_run_files(tmp_path)
    finally:
        test_train.real_path = original
    return dict(tmp=tmp_path, flags=['--desc', 'tiny', '--n_batch', str(n_batch), '--n_embd', '32', '--n_head', '4',
                                     '--n_layer', '2', '--n_transfer', '2', '--data_dir', data_dir,
                                     '--model_dir', str(tmp_path / 'model'), '--encoder_path', encoder_path,
                                     '--bpe_path', bpe_path])


def run(files, name, *flags):
    """train.py with the tiny files, outputs under tmp/name; returns that folder."""
    out = files['tmp'] / name
    train.main(files['flags'] + ['--log_dir', str(out / 'log'), '--save_dir', str(out / 'save'),
                                 '--cache_dir', str(files['tmp'] / 'cache'),
                                 '--submission_dir', str(out / 'submission')] + list(flags))
    return out


def results(out):
    """The evaluations of a run's log without their times, and its last checkpoint's variables."""
    with open(out / 'log' / 'tiny.jsonl') as f:
        lines = [json.loads(line) for line in f]
    evaluations = [{k: v for k, v in line.items() if k != 'time'} for line in lines[1:]]
    reader = tf.train.load_checkpoint(str(out / 'save' / 'tiny' / 'checkpoints'))
    variables = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
                 if 'VARIABLE_VALUE' in name}
    return evaluations, variables


RUN = ['--n_iter', '2', '--deterministic', '--save_every', '2', '--submit']  # 3 updates an epoch, dropout on


@pytest.fixture(scope='module')
def reference_run(files):
    return run(files, 'a', *RUN)


def test_deterministic_runs_are_bit_identical(files, reference_run):
    evaluations, variables = results(reference_run)
    again, again_variables = results(run(files, 'b', *RUN))
    assert len(evaluations) == 2 and evaluations == again
    assert variables.keys() == again_variables.keys() and len(variables) > 2 * 27
    for name in variables:
        np.testing.assert_array_equal(variables[name], again_variables[name], err_msg=name)


def test_a_resumed_run_ends_as_the_uninterrupted_one(files, reference_run, monkeypatch):
    make_update = opt.make_update

    def interrupted(*args, **kwargs):  # the 5th update dies, after the checkpoint of update 4
        step = make_update(*args, **kwargs)
        calls = []

        def dying_step(*batch):
            calls.append(1)
            if len(calls) == 5:
                raise KeyboardInterrupt
            return step(*batch)
        return dying_step

    monkeypatch.setattr(opt, 'make_update', interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(files, 'c', *RUN)
    monkeypatch.setattr(opt, 'make_update', make_update)
    out = run(files, 'c', *RUN, '--resume')
    evaluations, variables = results(reference_run)
    resumed, resumed_variables = results(out)
    assert resumed == evaluations
    for name in variables:
        np.testing.assert_array_equal(variables[name], resumed_variables[name], err_msg=name)


def test_resume_without_a_checkpoint_is_a_clear_error(files, capsys):
    with pytest.raises(SystemExit) as exit:
        run(files, 'd', '--resume')
    assert exit.value.code == 2 and 'no checkpoint' in capsys.readouterr().err


def test_tensorboard_scalars_are_written_beside_the_log(reference_run):
    tags = set()
    for path in glob.glob(str(reference_run / 'log' / 'tiny' / 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {'train/clf_cost', 'train/lr', 'train/grad_norm', 'eval/va_acc', 'eval/tr_cost'} <= tags


def test_eval_only_reproduces_the_submission(files, reference_run):
    out = run(files, 'e', '--eval_only', '--restore', str(reference_run / 'save' / 'tiny' / 'best_params.jl'))
    original = pd.read_csv(reference_run / 'submission' / 'ROCStories.tsv', delimiter='\t')
    again = pd.read_csv(out / 'submission' / 'ROCStories.tsv', delimiter='\t')
    assert original.equals(again)
    probs = pd.read_csv(out / 'submission' / 'ROCStories_probs.tsv', delimiter='\t')
    assert list(probs.columns) == ['index', 'p0', 'p1'] and len(probs) == len(again)
    np.testing.assert_allclose(probs['p0'] + probs['p1'], 1, atol=2e-6)
    clear = (probs['p1'] - probs['p0']).abs() > 1e-5  # printed to 6 decimals: near-ties can print equal
    assert clear.sum() > 10
    assert ((probs['p1'] > probs['p0']).astype(int) == again['prediction'])[clear].all()


@pytest.mark.parametrize('n_replicas', [1, 2])
def test_accumulated_gradients_make_the_same_update(n_replicas):
    X, M, Y = batches(n=8)
    params = []
    for accum_steps in [1, 2]:
        strategy = (tf.distribute.get_strategy() if n_replicas == 1
                    else tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))
        with strategy.scope():
            model = new_model()
            opt = Adam(model.params, schedule=warmup_linear, **HP)
        model.assign(test_train.random_arrays(model))
        step = finetune_step(model, opt, strategy, lm_coef=0.5, seed=0, accum_steps=accum_steps)
        for batch in train_batches(strategy, X, M, Y, 8):
            step(*batch)
        params.append(model.params)
    assert_params_close(params[1], [p.numpy() for p in params[0]])


def test_accumulation_that_cannot_split_a_tower_is_refused():
    with pytest.raises(train.InputError, match='--accum_steps 3 .* --n_batch 8'):
        loop.check_replicas(8, 4, 2, accum_steps=3)
