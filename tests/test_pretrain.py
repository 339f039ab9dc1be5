"""pretrain.py: one update of the LM objective against a NumPy float64 computation (loss over windows, gradient,
Adam with decoupled decay, the schedule around its warmup and at its end); the same update on two replicas and in
accumulated parts; whole tiny runs: the log, the model folder in the original's layout that train.py and
generate.py load with the logits of the model that wrote it, the kept copies, --init_from, Ctrl-C and kill -9
then --resume ending bit-identical, a small model learning a structured corpus."""
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import generate
import opt
import pretrain
import train
from engine import flags, loop
from engine.kernels import DEFAULT, PADDED
from finetuning.tasks import TASKS
from formats import weights
from model import Config, Model, lm_logits, pretrain_objective
from opt import make_update
from pretraining import corpus as corpora
from pretraining.windows import EpochPlan, heldout_windows, lm_batch, weighted
from tests import reference
from tests.pretrain_files import N_VOCAB, argv, write_corpus, write_vocab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CTX, N_EMBD, N_HEAD, N_LAYER = 12, 16, 2, 2


def tiny_args(**flags):
    return pretrain.parse_args(argv('/nowhere', '/nowhere/corpus', **flags))


def random_arrays(model, seed=0, std=0.3):
    rng = np.random.RandomState(seed)
    return [(rng.randn(*p.shape) * std).astype(np.float32) if len(p.shape) > 1 else
            (1 + rng.randn(*p.shape) * 0.1).astype(np.float32) for p in model.params]


def window_batch(seed=0, n_rows=4, lengths=(N_CTX, N_CTX, 5, 0)):
    """Windows of random tokens, one shorter and one empty row: (X, M)."""
    tokens = np.random.RandomState(seed).randint(N_VOCAB, size=200).astype(np.uint16)
    stream = corpora.Stream([tokens], np.array([0, len(tokens)]))
    return lm_batch(stream, np.array([0, 40, 100, 0][:len(lengths)]), np.array(lengths), n_rows, N_CTX, N_VOCAB)


def assert_updated_as(params, expected):
    """Parameters equal to 1% of lr, 1e-4 (the update moves them by ~5e-3, its decay by ~5e-4): Adam's m / sqrt(v)
    amplifies the rounding of near-zero gradients. The key bias (the middle third of c_attn/b) has a zero gradient
    (it adds the same to every score a softmax compares), which Adam turns into steps of rounding noise: left
    out."""
    for k, (p, e) in enumerate(zip(params, expected)):
        got = p.numpy() if hasattr(p, 'numpy') else p
        if got.shape == (3 * N_EMBD,):  # c_attn/b
            keep = np.r_[0:N_EMBD, 2 * N_EMBD:3 * N_EMBD]
            got, e = got[keep], e[keep]
        np.testing.assert_allclose(got, e, rtol=0, atol=1e-4, err_msg=f'parameter {k}')


# --- one update -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('path', [DEFAULT, PADDED], ids=['default', 'padded'])
def test_one_update_and_the_schedule_are_the_numpy_float64_computation(path):
    args = tiny_args(embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, warmup_updates=2, lr=0.01, l2=1.)
    strategy = tf.distribute.get_strategy()
    model, opt, _ = pretrain.build_model(args, strategy, path, N_VOCAB, 5)
    arrays = random_arrays(model)
    model.assign(arrays)
    X, M = window_batch()
    step = make_update(pretrain_objective(model, N_VOCAB, path), model.params, opt, strategy, seed=0)
    batch = loop.distribute(strategy, (X, weighted(M)))
    cost, lrt, norm = step(*batch)

    loss, grads = reference.lm_loss_and_gradients(arrays, X, M, N_HEAD, n_rows=N_VOCAB)
    np.testing.assert_allclose(float(cost), loss, rtol=2e-6)
    np.testing.assert_allclose(float(norm), np.sqrt(sum((g ** 2).sum() for g in grads)), rtol=1e-5)
    zeros = [np.zeros_like(a) for a in arrays]
    schedule = lambda x: reference.warmup_cosine(x, warmup=2 / 5)  # noqa: E731
    expected, _, _, expected_lrt = reference.adam_step(arrays, grads, zeros, zeros, 1, 0.01, schedule, 5, l2=1.,
                                                       max_grad_norm=1)
    assert float(lrt) == expected_lrt
    assert_updated_as(model.params, expected)
    assert len(model.params) == 1 + 12 * N_LAYER and not hasattr(model, 'clf_w')  # no classifier in the LM

    lrts = [expected_lrt] + [float(step(*batch)[1]) for _ in range(4)]  # updates 1 .. 5 of t_total 5, warmup 2
    bias = [0.01 * math.sqrt(1 - 0.999 ** k) / (1 - 0.9 ** k) for k in range(1, 6)]  # in float64: to ~1e-5
    np.testing.assert_allclose(lrts[:2], [bias[0] / 2, bias[1]], rtol=3e-5)     # warmup's first and last
    np.testing.assert_allclose(lrts[2], bias[2] * 0.5 * (1 + math.cos(math.pi * 3 / 5)), rtol=3e-5)  # then cosine
    assert lrts[4] == 0                                                          # to 0 at the end
    np.testing.assert_allclose(lrts, [reference.learning_rate(k, 0.01, schedule, 5) for k in range(1, 6)], rtol=1e-6)


@pytest.mark.parametrize('how', ['two replicas', 'accumulation'])
def test_two_replicas_and_accumulated_parts_make_the_update_of_one_device(how):
    args = tiny_args(embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, accum_steps=2 if how == 'accumulation' else 1)
    X, M = window_batch(1, lengths=(N_CTX, 3, N_CTX, 7))
    results = []
    for strategy in [tf.distribute.get_strategy(),
                     tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']) if how == 'two replicas' else None]:
        strategy = strategy or tf.distribute.get_strategy()
        model, opt, _ = pretrain.build_model(args, strategy, DEFAULT, N_VOCAB, 10)
        model.assign(random_arrays(model, seed=1))
        accum = args.accum_steps if len(results) else 1
        step = make_update(pretrain_objective(model, N_VOCAB, DEFAULT), model.params, opt, strategy, 0,
                                    accum_steps=accum)
        costs = [float(step(*loop.distribute(strategy, (X, weighted(M))))[0]) for _ in range(2)]
        results.append((costs, [p.numpy() for p in model.params]))
    (costs, params), (other_costs, other_params) = results
    np.testing.assert_allclose(other_costs, costs, rtol=1e-5)
    assert_updated_as(other_params, params)


# --- whole runs ---------------------------------------------------------------------------------------------------

RUN = dict(deterministic=True, n_batch=8, save_every=2, keep_every=3)  # dropout on; 2 epochs of about 7 updates


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('pretrain')
    write_vocab(str(root / 'vocab'))
    texts = write_corpus(str(root / 'books'), n_docs=24)
    return dict(root=root, books=root / 'books', texts=texts)


def run_in(files, name, code=0, **flags):
    """pretrain.main on the tiny corpus, outputs in root/name/out (the cache shared); returns the out folder."""
    root = files['root'] / name
    line = argv(str(files['root']), files['books'], **flags)
    line = [a.replace(str(files['root'] / 'out'), str(root / 'out')) for a in line]
    if code:
        with pytest.raises(SystemExit) as exit_:
            pretrain.main(line)
        assert exit_.value.code == code
    else:
        pretrain.main(line)
    return root / 'out'


@pytest.fixture(scope='module')
def reference_run(files):
    return run_in(files, 'reference', **RUN)


def log_of(out):
    with open(out / 'log' / 'tiny.jsonl') as f:
        return [json.loads(line) for line in f]


def the_corpus(files, out):
    line = json.loads(open(out / 'log' / 'tiny.jsonl').readline())
    key = corpora.cache_key(corpora.find_sources(line['corpus']), line['encoder_path'], line['bpe_path'],
                            line['cache_dir'], line['seed'], line['valid_fraction'])[0]
    return corpora.open_corpus(os.path.join(line['cache_dir'], f'corpus-{key}'), N_VOCAB)


def folder_arrays(folder, n_special=0):
    return weights.load_openai_params(str(folder), N_CTX, n_special)


def test_the_log_holds_the_flags_then_tokens_and_costs_and_va_cost_is_the_numpy_held_out_loss(files, reference_run):
    lines = log_of(reference_run)
    assert lines[0]['corpus'] == [str(files['books'])] and lines[0]['n_batch'] == 8
    records = lines[1:]
    assert all(list(r) == ['n_updates', 'n_tokens', 'tr_cost', 'va_cost', 'va_ppl', 'time'] for r in records)
    c = the_corpus(files, reference_run)
    plan = EpochPlan(len(c.train), N_CTX, 8, 42)
    per_epoch = [plan.n_updates(0), plan.n_updates(1)]
    expected_updates = sorted(set(range(2, sum(per_epoch) + 1, 2)) | {per_epoch[0], sum(per_epoch)})
    assert [r['n_updates'] for r in records] == expected_updates
    read = [int(lengths.sum()) for e in (0, 1) for _, lengths in plan.batches(e)]
    assert [r['n_tokens'] for r in records] == [sum(read[:r['n_updates']]) for r in records]
    assert records[-1]['n_tokens'] == 2 * len(c.train)  # each epoch every training token once
    assert all(r['va_ppl'] == math.exp(r['va_cost']) and 0 < r['tr_cost'] < 10 for r in records)

    # The last line's va_cost: every held-out token but the first predicted once by the saved model, in NumPy.
    arrays = folder_arrays(reference_run / 'save' / 'tiny') + [np.zeros((N_EMBD, 1)), np.zeros(1)]  # (+ a classifier)
    tokens = c.valid.read(0, len(c.valid))
    nll = []
    for start in range(0, len(tokens) - 1, N_CTX - 1):  # windows of N_CTX sharing one token
        window = tokens[start:start + N_CTX]
        X = np.stack([window, N_VOCAB + np.arange(len(window))], -1)[None]
        logp = reference.log_softmax(reference.hidden(arrays, X[:, None], N_HEAD)[0, :-1] @
                                     arrays[0][:N_VOCAB].astype(np.float64).T)
        nll += list(-logp[np.arange(len(window) - 1), window[1:]])
    assert len(nll) == len(tokens) - 1 == sum(n - 1 for n in heldout_windows(len(tokens), N_CTX)[1])
    np.testing.assert_allclose(records[-1]['va_cost'], np.mean(nll), rtol=1e-6)


def last_checkpoint_model(out):
    """The pre-training model as its last checkpoint holds it (the model that wrote the folder)."""
    model = Model(Config(N_VOCAB, N_CTX, n_special=0, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER, head=None))
    tf.train.Checkpoint(model=model).restore(tf.train.latest_checkpoint(str(out / 'save' / 'tiny' / 'checkpoints'))
                                              ).expect_partial()
    return model


def test_the_model_folder_is_the_originals_layout_and_train_and_generate_load_it_with_its_logits(
        files, reference_run, capsys):
    folder = reference_run / 'save' / 'tiny'
    shapes = json.loads((folder / 'params_shapes.json').read_text())
    assert shapes == weights.openai_shapes(N_VOCAB, N_EMBD, N_LAYER, n_pos=N_CTX)  # positions, tokens, 12 a layer
    assert sorted(p.name for p in folder.glob('params_*.npy')) == sorted(f'params_{i}.npy' for i in range(10))
    for name, original in zip(weights.BPE_FILES, ['encoder.json', 'vocab.bpe']):
        assert (folder / name).read_bytes() == (files['root'] / 'vocab' / original).read_bytes()

    writer = last_checkpoint_model(reference_run)
    tokens = np.random.RandomState(3).randint(N_VOCAB, size=(2, N_CTX))
    expected = lm_logits(writer, np.stack([tokens, np.broadcast_to(N_VOCAB + np.arange(N_CTX), tokens.shape)], -1),
                                n_rows=N_VOCAB).numpy()
    args = flags.parse_args(['--dataset', 'rocstories', '--model_dir', str(folder), '--n_embd', str(N_EMBD),
                               '--n_head', str(N_HEAD), '--n_layer', str(N_LAYER), '--n_transfer', str(N_LAYER),
                               '--data_dir', str(files['root']), '--log_dir', str(files['root'] / 'train-log')])
    finetuned, _, _ = train.build_model(args, TASKS['rocstories'], tf.distribute.get_strategy(), DEFAULT, N_VOCAB,
                                        N_CTX, 10)
    gen_args = generate.parse_args(['--prompt', 'a d g', '--model_dir', str(folder), '--n_ctx', str(N_CTX),
                                    '--n_embd', str(N_EMBD), '--n_head', str(N_HEAD), '--n_layer', str(N_LAYER)])
    sampler = generate.pretrained_model(gen_args, N_VOCAB)
    for model in (finetuned, sampler):  # their positions follow the 3 special rows
        X = np.stack([tokens, np.broadcast_to(N_VOCAB + 3 + np.arange(N_CTX), tokens.shape)], -1)
        np.testing.assert_array_equal(lm_logits(model, X, n_rows=N_VOCAB).numpy(), expected)
    generate.main(['--prompt', 'a d g', '--model_dir', str(folder), '--n_ctx', str(N_CTX), '--n_embd', str(N_EMBD),
                   '--n_head', str(N_HEAD), '--n_layer', str(N_LAYER), '--n_tokens', '4', '--temperature', '0'])
    assert capsys.readouterr().out.startswith('a d g ')


def test_keep_every_keeps_the_model_folder_of_every_n_updates(reference_run):
    n_updates = log_of(reference_run)[-1]['n_updates']
    kept = reference_run / 'save' / 'tiny' / 'updates'
    assert sorted(int(p.name) for p in kept.iterdir()) == list(range(3, n_updates + 1, 3))
    first, second = folder_arrays(kept / '3'), folder_arrays(kept / '6')
    assert all(a.shape == b.shape for a, b in zip(first, second)) and not np.array_equal(first[1], second[1])
    assert sorted(p.name for p in (kept / '3').iterdir()) == sorted(
        list(weights.BPE_FILES) + ['params_shapes.json'] + [f'params_{i}.npy' for i in range(10)])


def test_tensorboard_has_the_training_cost_of_every_update(reference_run):
    n_updates = log_of(reference_run)[-1]['n_updates']
    (events,) = (reference_run / 'log' / 'tiny').glob('events.out.tfevents.*')
    tags = [v.tag for e in tf.compat.v1.train.summary_iterator(str(events)) for v in e.summary.value]
    assert tags.count('train/lm_cost') == n_updates and tags.count('eval/va_cost') == len(log_of(reference_run)) - 1


def assert_same_outputs(out, reference_out):
    """The same log (but its times), model folder and kept folders, byte for byte."""
    strip = [[{k: v for k, v in r.items() if k != 'time'} for r in log_of(o)[1:]] for o in (out, reference_out)]
    assert strip[0] == strip[1]
    save, ref = out / 'save' / 'tiny', reference_out / 'save' / 'tiny'
    files = sorted(str(p.relative_to(ref)) for p in ref.rglob('params_*.npy'))
    assert files == sorted(str(p.relative_to(save)) for p in save.rglob('params_*.npy')) and len(files) > 20
    for name in files:
        assert (save / name).read_bytes() == (ref / name).read_bytes(), name


def test_a_rerun_never_replaces_a_runs_outputs_without_overwrite(files, reference_run, capsys):
    out = files['root'] / 'rerun' / 'out'
    shutil.copytree(reference_run, out)
    before = {str(p): p.read_bytes() for p in out.rglob('*') if p.is_file()}
    capsys.readouterr()
    run_in(files, 'rerun', code=2, **RUN)  # the same command again, forgetting --resume
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: a previous run wrote what this one would replace: ')
    assert repr(str(out / 'log' / 'tiny.jsonl')) in err[0] and '--resume' in err[0] and '--overwrite' in err[0]
    assert {str(p): p.read_bytes() for p in out.rglob('*') if p.is_file()} == before
    (out / 'save' / 'tiny' / 'updates' / '99').mkdir()  # what only the previous run made goes with --overwrite
    (out / 'save' / 'tiny' / 'updates' / '99' / 'params_0.npy').write_bytes(b'old')
    run_in(files, 'rerun', overwrite=True, **RUN)
    assert not (out / 'save' / 'tiny' / 'updates' / '99').exists()
    assert_same_outputs(out, reference_run)


def test_ctrl_c_saves_says_how_to_resume_and_the_resumed_run_ends_as_the_uninterrupted_one(
        files, reference_run, monkeypatch, capsys):
    make_update = opt.make_update

    def interrupted(*args, **kwargs):
        step, calls = make_update(*args, **kwargs), []

        def step_(*batch):
            calls.append(1)
            if len(calls) == 5:
                os.kill(os.getpid(), signal.SIGINT)
            return step(*batch)
        return step_

    monkeypatch.setattr(opt, 'make_update', interrupted)
    out = run_in(files, 'interrupted', code=130, **RUN)
    monkeypatch.setattr(opt, 'make_update', make_update)
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if 'resume with: ' in line]
    checkpoints = out / 'save' / 'tiny' / 'checkpoints'
    assert line.startswith('SIGINT: stopped after update 5, saved in ') and str(checkpoints) in line
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith('ckpt-5') and 'Traceback' not in err
    assert not np.array_equal(folder_arrays(out / 'save' / 'tiny')[1],
                              folder_arrays(reference_run / 'save' / 'tiny')[1])  # the folder of update 5
    command = shlex.split(line.split('resume with: ')[1])
    assert command[0] == 'python' and os.path.abspath(command[1]) == os.path.join(ROOT, 'pretrain.py')
    assert command[-1] == '--resume'
    pretrain.main(command[2:])
    assert_same_outputs(out, reference_run)


KILLER = '''import os, signal, sys
sys.path.insert(0, {root!r})
import pretrain
import opt
make_update = opt.make_update
def dying(*args, **kwargs):
    step, calls = make_update(*args, **kwargs), []
    def step_(*batch):
        calls.append(1)
        if len(calls) == 11:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(*batch)
    return step_
opt.make_update = dying
pretrain.main(sys.argv[1:])
'''


def test_a_run_killed_by_sigkill_resumes_to_the_uninterrupted_runs_outputs(files, reference_run):
    line = [a.replace(str(files['root'] / 'out'), str(files['root'] / 'killed' / 'out'))
            for a in argv(str(files['root']), files['books'], **RUN)]
    killed = subprocess.run([sys.executable, '-c', KILLER.format(root=ROOT)] + line, cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = files['root'] / 'killed' / 'out'
    assert tf.train.latest_checkpoint(str(out / 'save' / 'tiny' / 'checkpoints')).endswith('ckpt-10')
    pretrain.main(line + ['--resume'])
    assert_same_outputs(out, reference_run)


def test_a_small_model_learns_a_structured_corpus_well_below_its_unigram_entropy(tmp_path):
    write_vocab(str(tmp_path / 'vocab'))
    write_corpus(str(tmp_path / 'books'), n_docs=60, seed=1, n_words=(30, 90))
    pretrain.main(argv(str(tmp_path), tmp_path / 'books', n_embd=32, n_head=4, n_ctx=16, n_batch=16, lr=0.005,
                       warmup_updates=10, max_updates=80, eval_every=0, embd_pdrop=0, attn_pdrop=0, resid_pdrop=0,
                       n_iter=100))
    with open(tmp_path / 'out' / 'log' / 'tiny.jsonl') as f:
        record = [json.loads(line) for line in f][-1]
    key = corpora.cache_key(corpora.find_sources([str(tmp_path / 'books')]), str(tmp_path / 'vocab' / 'encoder.json'),
                            str(tmp_path / 'vocab' / 'vocab.bpe'), str(tmp_path / 'cache'), 42, 0.25)[0]
    valid = corpora.open_corpus(str(tmp_path / 'cache' / f'corpus-{key}'), N_VOCAB).valid
    counts = np.bincount(valid.read(0, len(valid)), minlength=N_VOCAB)
    p = counts[counts > 0] / counts.sum()
    unigram = -(p * np.log(p)).sum()  # ~ log 11: ten words and the paragraph break
    assert record['n_updates'] == 80 and unigram > 2
    assert record['va_cost'] < 0.25 * unigram, (record, unigram)


CONTINUED = dict(embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, max_updates=3, eval_every=1, n_batch=4, save_every=2)


@pytest.fixture(scope='module')
def continued(files, reference_run):
    """A run --init_from the reference run's folder, dropout off: in this process, and by two workers of a
    cluster on this machine (TF_CONFIG, MultiWorkerMirroredStrategy, one CPU each) meanwhile; their outputs."""
    from tests.test_multiworker import free_ports
    flags = dict(CONTINUED, init_from=reference_run / 'save' / 'tiny')
    cluster = {'worker': [f'127.0.0.1:{p}' for p in free_ports(2)]}
    line = [a.replace(str(files['root'] / 'out'), str(files['root'] / 'cluster' / 'out'))
            for a in argv(str(files['root']), files['books'], **flags)]
    procs = []
    try:
        for i in range(2):
            env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
                       TF_CONFIG=json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': i}}))
            procs.append(subprocess.Popen([sys.executable, 'pretrain.py'] + line, cwd=ROOT, env=env,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
        one = run_in(files, 'continued', **flags)
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return dict(one=one, cluster=files['root'] / 'cluster' / 'out', outputs=outputs,
                codes=[proc.returncode for proc in procs])


def test_init_from_starts_from_the_folders_weights(files, reference_run, continued):
    folder = reference_run / 'save' / 'tiny'
    first = log_of(continued['one'])[1]
    c = the_corpus(files, continued['one'])
    starts, lengths = next(EpochPlan(len(c.train), N_CTX, 4, 42).batches(0))
    X, M = lm_batch(c.train, starts, lengths, 4, N_CTX, N_VOCAB)
    loss, _ = reference.lm_loss_and_gradients(folder_arrays(folder), X, M, N_HEAD, N_VOCAB)
    assert first['n_updates'] == 1
    np.testing.assert_allclose(first['tr_cost'], loss, rtol=1e-5)  # the first update's loss: the folder's model's
    assert loss < math.log(N_VOCAB) - 0.5  # a trained model's loss, not that of N(0, 0.02)


def test_two_localhost_workers_make_the_updates_of_one_process_and_one_writes_the_outputs(continued):
    outputs = continued['outputs']
    assert continued['codes'] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert all('with 2 replicas' in out for out in outputs), outputs[1][-3000:]
    out, one = continued['cluster'], continued['one']
    for a, b in zip(folder_arrays(out / 'save' / 'tiny'), folder_arrays(one / 'save' / 'tiny')):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert [r['n_updates'] for r in log_of(out)[1:]] == [1, 2, 3]
    for a, b in zip(log_of(out)[1:], log_of(one)[1:]):
        np.testing.assert_allclose([a['tr_cost'], a['va_cost']], [b['tr_cost'], b['va_cost']], rtol=1e-5)
    # The second worker keeps only what its --resume needs, under its own name; no model folder of its own.
    assert sorted(p.name for p in (out / 'save').iterdir()) == ['tiny', 'tiny-worker1']
    assert not list((out / 'save' / 'tiny-worker1').rglob('params_*.npy'))
    assert tf.train.latest_checkpoint(str(out / 'save' / 'tiny-worker1' / 'checkpoints')).endswith('ckpt-3')


def test_max_updates_ends_the_run_and_its_schedule_and_tr_cost_is_the_loss_since_the_last_line(continued):
    (events,) = (continued['one'] / 'log' / 'tiny').glob('events.out.tfevents.*')
    scalars = {}
    for e in tf.compat.v1.train.summary_iterator(str(events)):
        for v in e.summary.value:
            scalars.setdefault(v.tag, []).append(float(tf.make_ndarray(v.tensor)))
    assert len(scalars['train/lr']) == 3 and scalars['train/lr'][-1] == 0 < scalars['train/lr'][1]  # cosine to 0
    records = log_of(continued['one'])[1:]
    assert [r['n_updates'] for r in records] == [1, 2, 3]  # --eval_every 1: each line one update's loss
    np.testing.assert_allclose([r['tr_cost'] for r in records], scalars['train/lm_cost'], rtol=1e-6)


# --- issue 32: the log's figures against NumPy, updates of different token counts ----------------------------------

def spec_updates(n_tokens, n_ctx, n_batch, seed, n_epochs):
    """(tokens read, tokens predicted) of each update, from SPEC.md "Pre-training"'s windows written out: epoch e
    draws o = integers(n_ctx) then a permutation from default_rng([seed, e]), the stream is cut at 0, o, o + n_ctx,
    ... and at its end; n_batch windows an update; a window of n tokens predicts n - 1."""
    updates = []
    for epoch in range(n_epochs):
        rng = np.random.default_rng([seed, epoch])
        o = int(rng.integers(n_ctx))
        cuts = sorted({0, n_tokens} | set(range(o, n_tokens, n_ctx)))
        lengths = np.diff(cuts)[rng.permutation(len(cuts) - 1)]
        updates += [(int(lengths[k:k + n_batch].sum()), int((lengths[k:k + n_batch] - 1).sum()))
                    for k in range(0, len(lengths), n_batch)]
    return updates


def numpy_held_out_cost(folder, tokens):
    """The mean -log p of every held-out token but the first, windows of N_CTX sharing one token, in NumPy."""
    arrays = folder_arrays(folder) + [np.zeros((N_EMBD, 1)), np.zeros(1)]
    nll = []
    for start in range(0, len(tokens) - 1, N_CTX - 1):
        window = tokens[start:start + N_CTX]
        X = np.stack([window, N_VOCAB + np.arange(len(window))], -1)[None]
        logp = reference.log_softmax(reference.hidden(arrays, X[:, None], N_HEAD)[0, :-1] @
                                     arrays[0][:N_VOCAB].astype(np.float64).T)
        nll += list(-logp[np.arange(len(window) - 1), window[1:]])
    return float(np.mean(nll))


def test_tr_cost_is_the_loss_per_predicted_token_since_the_last_line_and_n_tokens_and_va_cost_are_numpys(
        files, reference_run):
    records = log_of(reference_run)[1:]
    c = the_corpus(files, reference_run)
    updates = spec_updates(len(c.train), N_CTX, RUN['n_batch'], 42, 2)
    (events,) = (reference_run / 'log' / 'tiny').glob('events.out.tfevents.*')
    costs = [float(tf.make_ndarray(v.tensor)) for e in tf.compat.v1.train.summary_iterator(str(events))
             for v in e.summary.value if v.tag == 'train/lm_cost']   # each update's mean loss per predicted token
    assert len(costs) == len(updates) == records[-1]['n_updates']
    previous, plain_differs = 0, False
    for r in records:
        n = r['n_updates']
        cost, predicted = np.array(costs[previous:n]), np.array([p for _, p in updates[previous:n]], float)
        np.testing.assert_allclose(r['tr_cost'], (cost * predicted).sum() / predicted.sum(), rtol=1e-6)
        plain_differs |= abs(cost.mean() - r['tr_cost']) > 1e-5   # the updates' plain mean would fail here
        assert r['n_tokens'] == sum(t for t, _ in updates[:n])
        previous = n
    assert plain_differs and len({p for _, p in updates}) > 2
    kept = reference_run / 'save' / 'tiny' / 'updates'
    checked = [r for r in records if (kept / str(r['n_updates'])).is_dir()]   # the model of that line kept
    assert len(checked) >= 2
    tokens = c.valid.read(0, len(c.valid))
    for r in checked:
        np.testing.assert_allclose(r['va_cost'], numpy_held_out_cost(kept / str(r['n_updates']), tokens), rtol=1e-6)
