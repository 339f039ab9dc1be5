"""What the redesign (issue 28) built, pinned where no other test pins it: the one forward's segment mask, rows_of's
extract positions, the packed LM loss per sequence, the kernels' switch, a run's learning rate on the bar and in
TensorBoard, the checkpoint of a stop, the batches of inputs.train_batch and eval_batches, Adam's scheduled lr,
train.py's evaluations inside the first epoch, and the encoded data set's cache key. Tiny models; each expectation
is written out here, not taken from the code under test."""
import glob
import json
import os
import shutil
import types

import numpy as np
import pytest
import tensorflow as tf

import model as model_module
import opt
import text_utils
import train
from engine import kernels, loop
from engine.run_state import RunControl, RunState
from finetuning import inputs
from finetuning.tasks import TASKS
from model import Config, Head, Model, lm_logits, rows_of, segment_mask
from tests import reference, test_towers, test_train
from tests.test_run_level import files, numpy_reference, the_run  # noqa: F401 (the run-level run, as fixtures)
from tests.test_run_level import HP, read_scalars
from text_utils import Vocab

N_VOCAB = 20


def tiny_model(n_ctx=12, head=Head(), n_special=3):
    tf.random.set_seed(3)
    return Model(Config(N_VOCAB, n_ctx, n_special=n_special, n_embd=8, n_head=2, n_layer=1, head=head)
                 .without_dropout())


# ------------------------------------------------------------------------------------------- the segment mask

def test_segment_mask_lets_a_part_see_its_unit_s_context_and_itself_only():
    """Units of n_parts 3 (a context, then two answers) packed in a row: seg = 1 + unit * 3 + part, 0 empty. A
    place sees the earlier places of its own unit that hold the context (part 0) or its own part; an empty place
    only the earlier empty ones."""
    n_parts = 3
    places = [(0, 0), (0, 0), (0, 1), (0, 1), (0, 2), (1, 0), (1, 2), (1, 1), None, None]  # (unit, part), None empty
    seg = np.array([[0 if p is None else 1 + p[0] * n_parts + p[1] for p in places]], np.int32)
    want = np.zeros((len(places), len(places)), np.float32)
    for i, a in enumerate(places):
        for j, b in enumerate(places[:i + 1]):
            if a is None or b is None:
                want[i, j] = a is None and b is None
            else:
                want[i, j] = a[0] == b[0] and (b[1] == 0 or b[1] == a[1])
    got = segment_mask(tf.constant(seg), n_parts).numpy()
    assert got.shape == (1, 1, len(places), len(places))
    np.testing.assert_array_equal(got[0, 0], want)


def test_segment_mask_of_sequences_keeps_each_to_itself():
    seg = np.array([[1, 1, 1, 2, 2, 3, 0, 0]], np.int32)
    want = np.array([[float(j <= i and seg[0, i] == seg[0, j]) for j in range(8)] for i in range(8)], np.float32)
    np.testing.assert_array_equal(segment_mask(tf.constant(seg)).numpy()[0, 0], want)


# ----------------------------------------------------------------------------------------------------- rows_of

def test_rows_of_a_padded_batch_extracts_each_sequences_first_classify_token():
    clf = Vocab(N_VOCAB).classify
    n, n_seq, T = 2, 2, 6
    X = np.zeros((n, n_seq, T, 2), np.int32)
    where = [[3, 5], [2, 4]]
    for i in range(n):
        for j in range(n_seq):
            X[i, j, :where[i][j], 0] = 1 + j
            X[i, j, where[i][j], 0] = clf
            if where[i][j] + 1 < T:
                X[i, j, where[i][j] + 1, 0] = clf  # a later _classify_ is not the extract token
    M = (X[..., 0] > 0).astype(np.float32)
    Xr, seg, Mr, clf_at, Y = rows_of((X, M, np.zeros(n, np.int32)), clf)
    assert seg is None and Xr.shape == (n * n_seq, T, 2) and Mr.shape == (n * n_seq, T)
    want = [[(i * n_seq + j) * T + where[i][j] for j in range(n_seq)] for i in range(n)]
    np.testing.assert_array_equal(clf_at.numpy(), want)


# --------------------------------------------------------------------------------- the packed LM loss per sequence

def test_packed_lm_losses_are_each_sequence_s_own():
    """Two sequences packed in one row (and an empty tail): each one's LM total and count are those of the sequence
    alone in its own row; no position predicts the next sequence's first token."""
    model = tiny_model(n_ctx=12, head=None, n_special=0)
    a, b = [3, 7, 1, 9], [4, 4, 2]
    pos = lambda t: Vocab(N_VOCAB, 0).position(t)  # noqa: E731

    def row(ids, length):
        X = np.zeros((1, length, 2), np.int32)
        X[0, :len(ids), 0], X[0, :, 1] = ids, pos(np.arange(length))
        return X

    want = []
    for ids in (a, b):
        X = row(ids, len(ids))
        h, we = model(tf.constant(X))
        total, count = model.lm_losses(h, we, tf.constant(X), tf.ones([1, len(ids)]))
        want.append((float(total[0]), float(count[0])))
    L = 9
    X = np.zeros((1, L, 2), np.int32)
    X[0, :7, 0] = a + b
    X[0, :, 1] = pos(np.concatenate([np.arange(4), np.arange(3), [0, 0]]))
    seg = np.array([[1, 1, 1, 1, 2, 2, 2, 0, 0]], np.int32)
    h, we = model(tf.constant(X), tf.constant(seg))
    for masked in (False, True):
        total, count = model.lm_losses(h, we, tf.constant(X), tf.constant((seg > 0).astype(np.float32)),
                                       tf.constant(seg), 2, masked=masked)
        np.testing.assert_allclose(total.numpy(), [w[0] for w in want], rtol=1e-5)
        np.testing.assert_array_equal(count.numpy(), [w[1] for w in want])
        assert list(count.numpy()) == [3, 2]


# ------------------------------------------------------------------------------------------------ the switch

def test_the_switch_chooses_the_kernels_and_off_model_pys_own_ops(monkeypatch):
    act, ln = kernels.ops(False, model_module.gelu, model_module.gelu, model_module.norm)
    assert ln is model_module.norm
    fused_gelu, fused_norm = kernels.fused(model_module.gelu, model_module.norm)
    assert kernels.ops(True, model_module.gelu, model_module.gelu, model_module.norm) == (fused_gelu, fused_norm)
    called = []
    real = kernels.fused
    monkeypatch.setattr(kernels, 'fused', lambda *a: called.append(a) or real(*a))
    model = tiny_model()
    X = tf.constant(np.stack([np.arange(5) % N_VOCAB, Vocab(N_VOCAB).position(np.arange(5))], -1)[None], tf.int32)
    model(X, fused=False)
    assert called == []
    model(X, fused=True)
    assert called == [(model_module.gelu, model_module.norm)]


def test_without_xla_turns_off_the_kernels_and_the_compiled_steps_and_nothing_else():
    for path in kernels.PATHS.values():
        plain = kernels.without_xla(path)
        assert not plain.fused and not plain.jit_compile
        assert plain._replace(fused=path.fused, jit_compile=path.jit_compile) == path


# ----------------------------------------------------------------------------------- a run's learning rate

def test_adam_scheduled_lr_is_lr_times_the_schedule_at_the_updates_done():
    v = tf.Variable(np.ones((2, 2), np.float32))
    adam = opt.Adam([v], lr=0.1, schedule=lambda x: opt.warmup_linear(x, 0.25), t_total=8)
    for k in range(1, 5):
        adam.apply([tf.ones((2, 2))])
        want = 0.1 * reference.schedules['warmup_linear'](np.float32(k / 8), 0.25)
        assert float(adam.scheduled_lr()) == pytest.approx(float(want), rel=1e-6)


def events(folder):
    found = {}
    for path in glob.glob(os.path.join(folder, 'events.out.tfevents.*')):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return found


def test_the_bar_and_tensorboard_show_the_scheduled_lr_and_the_step_size(tmp_path):
    v = tf.Variable(np.ones(3, np.float32))
    adam = opt.Adam([v], lr=0.5, schedule=lambda x: opt.warmup_cosine(x, 0.5), t_total=4)
    summaries = tf.summary.create_file_writer(str(tmp_path))
    run = loop.Run(RunControl('resume'), RunState(), None, None, summaries, [v], adam, 4, 'clf_cost')
    lrts = []
    with run:
        for k in range(1, 4):
            lrt = adam.apply([tf.ones(3)])
            lrts.append(float(lrt))
            run.updated(0.25 * k, lrt, 2.0)
            scheduled = 0.5 * float(reference.schedules['warmup_cosine'](np.float32(k / 4), 0.5))
            assert run.bar.postfix.endswith(f' lr {scheduled:.3g}')
    summaries.flush()
    got = events(str(tmp_path))
    want = [0.5 * float(reference.schedules['warmup_cosine'](np.float32(k / 4), 0.5)) for k in range(1, 4)]
    np.testing.assert_allclose(got['train/lr'], want, rtol=1e-6)
    np.testing.assert_allclose(got['train/step_size'], lrts, rtol=1e-6)
    assert not np.allclose(lrts, want)  # Adam's bias corrections: the two differ
    np.testing.assert_allclose(got['train/clf_cost'], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(got['train/grad_norm'], [2.0] * 3)


def test_each_update_of_the_run_logs_the_numpy_runs_cost_norm_step_size_and_scheduled_lr(the_run,  # noqa: F811
                                                                                       numpy_reference):  # noqa: F811
    """test_run_level's run, update by update: the classifier cost, the gradient's norm, Adam's step size lrt
    (train/step_size) and the schedule's learning rate lr * schedule(k / t_total) (train/lr)."""
    scalars = read_scalars(the_run['out'])
    cost, lrt, norm = (np.array(x) for x in zip(*numpy_reference['updates']))
    np.testing.assert_allclose(scalars['train/clf_cost'], cost, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scalars['train/grad_norm'], norm, rtol=2e-5)
    np.testing.assert_allclose(scalars['train/step_size'], lrt, rtol=1e-6, atol=1e-12)
    t_total = 16 // (HP['n_batch'] * HP['n_gpu']) * HP['n_iter']
    lr = [HP['lr'] * reference.schedules[HP['lr_schedule']](np.float32(k / t_total), HP['lr_warmup'])
          for k in range(1, len(cost) + 1)]
    np.testing.assert_allclose(scalars['train/lr'], lr, rtol=1e-6, atol=1e-12)
    assert len(lrt) == 6 and norm.min() > HP['max_grad_norm']


def test_an_xla_run_logs_the_numpy_runs_costs_and_step_sizes(files, numpy_reference):  # noqa: F811
    """--xla compiles the steps: test_run_level's run to float rounding, its evaluations and each update's cost
    and step size."""
    from tests.test_run_level import NO_DROPOUT, hp_flags, read_log, run
    out = run(files['root'], 'xla-redesign', files['flags'], *hp_flags(), '--vector_l2', *NO_DROPOUT, '--xla')
    for got, want in zip(read_log(out), numpy_reference['evaluations']):
        for k in ['tr_cost', 'va_cost']:
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2e-6, err_msg=k)
        assert (got['tr_acc'], got['va_acc']) == pytest.approx((want['tr_acc'], want['va_acc']), abs=1e-9)
    scalars = read_scalars(out)
    cost, lrt, norm = (np.array(x) for x in zip(*numpy_reference['updates']))
    np.testing.assert_allclose(scalars['train/clf_cost'], cost, rtol=0, atol=2e-6)
    np.testing.assert_allclose(scalars['train/step_size'], lrt, rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------------------------------- the update's seeds

def test_a_replicas_lone_tower_draws_the_mask_of_its_global_index(monkeypatch):
    """test_towers' check with n_gpu 2 on two devices: each replica computes one tower, its only part, whose `we`
    mask is still seeded by (seed, updates done) folded with its global tower index, then part 0."""
    monkeypatch.setattr(test_towers, 'N_GPU', 2)
    test_towers.test_each_tower_draws_its_own_we_mask_on_any_number_of_devices(2, 1)


# ------------------------------------------------------------------------------------------- stopping on a signal

def test_a_signal_saves_a_checkpoint_of_the_last_update_and_the_program_s_files_then_exits(tmp_path):
    state, saved = RunState(), []
    v = tf.Variable([1., 2.])
    checkpoint = tf.train.CheckpointManager(tf.train.Checkpoint(state=state, v=v), str(tmp_path / 'ckpt'), 1)
    control = RunControl('python train.py --resume')
    run = loop.Run(control, state, checkpoint, None, tf.summary.create_file_writer(str(tmp_path / 'tb')), [v],
                   None, 10, 'clf_cost')
    run.bar = types.SimpleNamespace(close=lambda: None)
    state.n_updates = 3
    run.boundary(save=False, on_save=lambda: saved.append(state.n_updates))
    assert checkpoint.latest_checkpoint is None and saved == []  # no save due, no signal: nothing
    control.signum = 2
    with pytest.raises(SystemExit) as exit:
        run.boundary(save=False, on_save=lambda: saved.append(state.n_updates))
    assert exit.value.code == 128 + 2 and saved == [3]
    assert checkpoint.latest_checkpoint is not None and checkpoint.latest_checkpoint.endswith('-3')
    assert 'update 3' in control.stopped and '--resume' in control.stopped


# ------------------------------------------------------------------------------------------------ a run's batches

def random_split(task, n, seed, longest=9):
    rng = np.random.RandomState(seed)
    fields = 2 if task.shape in ('entailment', 'similarity') else 1 if task.shape == 'classification' else \
        task.n_context + task.n_choices
    texts = tuple(text_utils.Ragged.from_lists([list(rng.randint(0, N_VOCAB, rng.randint(1, longest)))
                                                 for _ in range(n)]) for _ in range(fields))
    Y = rng.randint(0, task.n_seq if task.shape == 'multiple_choice' else 2, n).astype(np.int32)
    return inputs.Split(None, Y, inputs.sequences(task, texts, N_VOCAB, 32), None)


def test_train_batch_with_a_packing_packs_each_part_into_its_rows():
    task, n, n_parts = TASKS['rocstories'], 8, 2
    split = random_split(task, n, seed=1)
    packing = inputs.Packing(rows=8, length=32)
    X, seg, clf_at, Y = inputs.train_batch(task, split, np.arange(n), N_VOCAB, 32, kernels.DEFAULT, n_parts, packing)
    assert X.shape == (n_parts * 8, 32, 2) and seg.shape == (n_parts * 8, 32) and clf_at.shape == (n, task.n_seq)
    assert (seg > 0).sum() == split.seqs.lengths.sum() and (Y == split.Y).all()
    X2, M2, Y2 = inputs.train_batch(task, split, np.arange(n), N_VOCAB, 32, kernels.TRIMMED, n_parts)
    assert X2.shape[:2] == (n, task.n_seq) and M2.sum() == split.seqs.lengths.sum()


def test_eval_batches_count_each_example_once_and_no_filler():
    task, n, n_batch = TASKS['sst2'], 11, 4
    split = random_split(task, n, seed=2)
    packing = inputs.eval_packing(task, split, n_batch, 768)
    got = list(inputs.eval_batches(task, split, N_VOCAB, 32, kernels.DEFAULT, n_batch, packing))
    assert [k for k, _ in got] == [4, 4, 3]
    assert all(len(batch[-1]) == n_batch for _, batch in got)  # every batch at one shape: the last filled up
    plain = list(inputs.eval_batches(task, split, N_VOCAB, 32, kernels.TRIMMED, n_batch))
    assert [k for k, _ in plain] == [4, 4, 3] and len(plain[-1][1][-1]) == 3


# --------------------------------------------------------------------------------- train.py's loop of epochs

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('redesign')
    original = test_train.real_path
    test_train.real_path = lambda *parts: None
    try:
        data_dir, encoder_path, bpe_path, _, n_batch, _, _ = test_train.tiny_run_files(tmp_path)
    finally:
        test_train.real_path = original
    return tmp_path, ['--desc', 'tiny', '--n_batch', str(n_batch), '--n_embd', '32', '--n_head', '4',
                      '--n_layer', '2', '--n_transfer', '2', '--data_dir', data_dir, '--model_dir',
                      str(tmp_path / 'model'), '--encoder_path', encoder_path, '--bpe_path', bpe_path]


def test_the_evaluations_inside_an_epoch_are_those_of_the_first_epoch_alone(tiny, monkeypatch):
    """The original evaluates at EVAL_UPDATES inside the first epoch only, and after each epoch: with 3 updates
    an epoch and EVAL_UPDATES (2, 4), at updates 2, 3 and 6."""
    tmp_path, flags = tiny
    monkeypatch.setattr(train, 'EVAL_UPDATES', (2, 4))
    out = tmp_path / 'evals'
    train.main(flags + ['--n_iter', '2', '--log_dir', str(out / 'log'), '--save_dir', str(out / 'save'),
                        '--submission_dir', str(out / 'submission')])
    with open(out / 'log' / 'tiny.jsonl') as f:
        lines = [json.loads(line) for line in f][1:]
    assert [(r['n_epochs'], r['n_updates']) for r in lines] == [(0, 2), (1, 3), (2, 6)]


# ----------------------------------------------------------------------------- the encoded data set's cache key

def test_the_cache_of_an_encoded_data_set_follows_the_code_that_reads_and_encodes_it(tmp_path, monkeypatch):
    """Editing the task's module (finetuning/tasks.py), the readers (datasets.py) or the encoder (text_utils.py)
    makes the next run encode the data set again."""
    monkeypatch.setattr(test_train, 'real_path', lambda *parts: None)
    data_dir, encoder_path, bpe_path, _, _, _, _ = test_train.tiny_run_files(tmp_path)
    task = TASKS['rocstories']
    cache_dir = str(tmp_path / 'cache')
    _, write_cache = text_utils.encoded_dataset(task, data_dir, cache_dir, text_utils.TextEncoder(encoder_path,
                                                                                                  bpe_path))
    write_cache()
    import datasets
    import finetuning.tasks
    for k, module in enumerate([finetuning.tasks, datasets, text_utils]):
        edited = str(tmp_path / f'edited{k}.py')
        shutil.copy(module.__file__, edited)
        with open(edited, 'a') as f:
            f.write('\n# an edit\n')
        with monkeypatch.context() as m:
            m.setattr(module, '__file__', edited)
            encoder = text_utils.TextEncoder(encoder_path, bpe_path)
            encoded = []
            real_encode = encoder.encode
            m.setattr(encoder, 'encode', lambda *a, **kw: encoded.append(1) or real_encode(*a, **kw))
            text_utils.encoded_dataset(task, data_dir, cache_dir, encoder)
            assert encoded, f'{module.__name__} edited, the cache read all the same'
    encoder = text_utils.TextEncoder(encoder_path, bpe_path)
    monkeypatch.setattr(encoder, 'encode', lambda *a, **kw: pytest.fail('unchanged code, encoded again'))
    text_utils.encoded_dataset(task, data_dir, cache_dir, encoder)


def test_lm_logits_at_positions_are_the_rows_of_the_whole_forward():
    model = tiny_model(head=None, n_special=0)
    X = np.stack([np.array([[1, 5, 2, 7, 3]]), Vocab(N_VOCAB, 0).position(np.arange(5))[None]], -1).astype(np.int32)
    full = lm_logits(model, tf.constant(X)).numpy()
    at = np.array([[0, 1], [0, 4]])
    np.testing.assert_allclose(lm_logits(model, tf.constant(X), at=tf.constant(at)).numpy(), full[0, [1, 4]],
                               rtol=1e-5, atol=1e-6)
