"""The flags of the paper's ablations (Table 5) and of Figure 2 (left) do what the rows mean: --lm_coef 0 trains on
the classifier's loss alone (its gradient against tests/reference.py's float64 backpropagation of that loss),
--n_transfer -1 reads no weight file (a --model_dir holding only the BPE files runs), --n_transfer k loads the
embeddings and the first k blocks, no more (0: the embeddings alone, as the original)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from engine import flags
import train
from engine.kernels import DEFAULT, PADDED, TRIMMED
from model import finetune_objective
from finetuning.tasks import TASKS
from tests import reference
from tests import test_task_runs as task_runs
from tests.fixtures import openai_shapes, write_random_weights
from tests.test_train import CLF, N_HEAD, batches, new_model, random_arrays
from formats.weights import load_openai_params


@pytest.mark.parametrize('path', [PADDED, TRIMMED], ids=['padded', 'trimmed'])  # batches (X, M, Y)
def test_lm_coef_0_gives_the_gradient_of_the_classifier_loss_alone(path):
    model = new_model()
    arrays = random_arrays(model)
    model.assign(arrays)
    X, M, Y = batches(n_steps=1, n=4)
    grads = {}
    for lm_coef in (0.0, 0.5):
        with tf.GradientTape() as tape:
            loss, clf_cost = finetune_objective(model, lm_coef, path)((X, M, Y), tf.constant([1, 2]))
        grads[lm_coef] = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.params)]
        ref_loss, ref_clf, ref_grads = reference.loss_and_gradients(arrays, X, M, Y, N_HEAD, CLF, lm_coef)
        assert float(loss) == pytest.approx(ref_loss, rel=1e-5) and float(clf_cost) == pytest.approx(ref_clf, rel=1e-5)
        for got, expected in zip(grads[lm_coef], ref_grads):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert ref_loss > ref_clf  # with lm_coef 0.5 the LM term counts: the two gradients differ, in `we` above all
    assert not np.allclose(grads[0.0][0], grads[0.5][0], atol=1e-6)


def run_files(tmp_path):
    """A tiny RTE folder, and a model folder holding only the character-level BPE files (tests/test_task_runs.py's)."""
    folder = tmp_path / 'data' / 'RTE'
    n_train = task_runs.write_task('rte', folder)
    encoder = {s: i for i, s in enumerate(task_runs.SYMBOLS + [s + '</w>' for s in task_runs.SYMBOLS])}
    bpe_only = tmp_path / 'bpe_only'
    bpe_only.mkdir()
    (bpe_only / 'encoder_bpe_40000.json').write_text(json.dumps(encoder))
    (bpe_only / 'vocab_40000.bpe').write_text('#version: 0.2\n\n')
    return folder, n_train, bpe_only


def rte_run(tmp_path, folder, n_train, model_dir, n_transfer):
    train.main(['--dataset', 'rte', '--desc', f'rte{n_transfer}', '--data_dir', folder, '--model_dir', model_dir,
                '--n_transfer', n_transfer, '--n_iter', '1', '--n_batch', n_train, '--n_gpu', '1', '--n_embd',
                task_runs.N_EMBD, '--n_head', '2', '--n_layer', '1', '--n_ctx', task_runs.N_CTX, '--log_dir',
                tmp_path / 'log', '--save_dir', tmp_path / 'save', '--cache_dir', ''])


def test_n_transfer_minus_1_reads_no_weights(tmp_path, capsys):
    folder, n_train, bpe_only = run_files(tmp_path)
    assert sorted(os.listdir(bpe_only)) == ['encoder_bpe_40000.json', 'vocab_40000.bpe']
    rte_run(tmp_path, folder, n_train, bpe_only, -1)   # the BPE files alone are enough
    with open(tmp_path / 'log' / 'rte-1.jsonl') as f:
        first, *evaluations = [json.loads(line) for line in f]
    assert first['n_transfer'] == -1 and len(evaluations) == 1
    with pytest.raises(SystemExit) as exit_info:   # any other --n_transfer reads the weight files: there are none
        rte_run(tmp_path, folder, n_train, bpe_only, 0)
    assert exit_info.value.code == 2 and 'params_shapes.json' in capsys.readouterr().err


@pytest.mark.parametrize('n_transfer', [0, 1, 2])
def test_n_transfer_loads_the_embeddings_and_the_first_blocks_only(tmp_path, n_transfer):
    folder = tmp_path / 'weights'
    n_vocab, n_embd, n_ctx = 20, 8, 10
    write_random_weights(str(folder), openai_shapes(n_vocab, n_embd, 2, n_pos=16), n_shards=2, std=0.3)
    args = flags.parse_args(['--dataset', 'rte', '--model_dir', str(folder), '--n_embd', str(n_embd), '--n_head',
                             '2', '--n_layer', '2', '--n_transfer', str(n_transfer)])
    np.random.seed(3)
    model, _, _ = train.build_model(args, TASKS['rte'], tf.distribute.get_strategy(), DEFAULT, n_vocab, n_ctx, 10)
    np.random.seed(3)  # the same special rows
    files = load_openai_params(str(folder), n_ctx, 3)
    np.testing.assert_array_equal(model.params[0].numpy(), files[0])   # we: tokens, special rows, positions
    for k, (param, array) in enumerate(zip(model.params[1:25], files[1:]), start=1):
        layer, name = divmod(k - 1, 12)
        if layer < n_transfer:
            np.testing.assert_array_equal(param.numpy(), array)
        else:  # the block's initial values: N(0, 0.02) weights, zero biases, LayerNorm 1 and 0
            assert not np.allclose(param.numpy(), array)
            if 'ln_' in param.name:
                assert np.all(param.numpy() == (1 if param.name.endswith('g:0') else 0)), param.name
