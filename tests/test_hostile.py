"""Hostile and damaged inputs: no file a user can be handed runs code when it is read (the data-set cache, a
best_params.jl), every damaged input or junk flag stops the run with one `error:` line before it writes anything,
a run that goes wrong keeps its last good outputs, and an interrupted run stops at an update boundary, saved,
and resumes to the numbers of the uninterrupted run. Tiny generated inputs (tests/test_errors.py's)."""
import errno
import fcntl
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys

import joblib
from joblib.numpy_pickle import NumpyUnpickler
import numpy as np
import pytest
import tensorflow as tf

import datasets
import opt
import generate
from engine import loop
import train
import utils
from formats import weights
from datasets import ROC_TEST, ROC_VAL
from engine.flags import parse_args
import text_utils
from model import Config, Model
from text_utils import TextEncoder
from tests.fixtures import write_rocstories
from tests.test_errors import N_EMBD, N_LAYER, files_under, inputs, rewrite_line, run  # noqa: F401 (fixtures)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Plant:
    """A pickle that, when unpickled, creates the file `marker`: the proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def argv_of(inputs, root, **flags):
    """train.py's arguments for the tiny inputs copied under root (data/, model/), outputs under root/out."""
    args = dict(dataset='rocstories', desc='tiny', n_iter=1, n_batch=2, n_embd=N_EMBD, n_head=4,
                n_layer=N_LAYER, n_transfer=N_LAYER, data_dir=root / 'data', model_dir=root / 'model',
                encoder_path=inputs['encoder_path'], bpe_path=inputs['bpe_path'], log_dir=root / 'out' / 'log',
                save_dir=root / 'out' / 'save', submission_dir=root / 'out' / 'submission',
                cache_dir=root / 'cache', padded=True)  # --padded: one shape, no kernel compiled per length
    args.update(flags)
    argv = []
    for flag, value in args.items():
        if value is True:
            argv.append(f'--{flag}')
        elif value is not None and value is not False:
            argv += [f'--{flag}', str(value)]
    return argv


@pytest.fixture
def tiny(inputs, tmp_path, monkeypatch, capsys):
    """tiny(code=0, **flags) -> stderr of a train.main run on copies of the inputs under tmp_path, which must end
    with exit status `code` (0: normally), and print no traceback."""
    shutil.copytree(inputs['data_dir'], tmp_path / 'data')
    shutil.copytree(inputs['model_dir'], tmp_path / 'model')
    (tmp_path / 'cwd').mkdir()
    monkeypatch.chdir(tmp_path / 'cwd')

    def run_(code=0, **flags):
        capsys.readouterr()
        if code == 0:
            train.main(argv_of(inputs, tmp_path, **flags))
        else:
            with pytest.raises(SystemExit) as exit_:
                train.main(argv_of(inputs, tmp_path, **flags))
            assert exit_.value.code == code
        err = capsys.readouterr().err
        assert 'Traceback' not in err, err
        return err

    return run_


def only_error(err):
    """The message of the one `error: ` line of stderr, which must be its last line."""
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return errors[0][len('error: '):]


def snapshot(folder):
    return {str(p): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


# --- the cache of the encoded data set ----------------------------------------------------------------------------

def encoder_args(inputs, tmp_path, cache_dir):
    args = parse_args(argv_of(inputs, tmp_path, data_dir=inputs['data_dir'], cache_dir=cache_dir))
    return args, train.TextEncoder(args.encoder_path, args.bpe_path)


def encoded_dataset(args, task, encoder):
    """text_utils.encoded_dataset of a run's flags."""
    return text_utils.encoded_dataset(task, args.data_dir, args.cache_dir, encoder)


def assert_same_splits(a, b):
    assert list(a) == list(b)
    for split in a:
        assert a[split].ids == b[split].ids and np.array_equal(a[split].y, b[split].y)
        assert [f.tolist() for f in a[split].texts] == [f.tolist() for f in b[split].texts]


@pytest.mark.parametrize('damage', ['planted pickle', 'object array', 'cut', 'wrong offsets', 'not npz'])
def test_a_damaged_cache_runs_nothing_and_is_encoded_again(inputs, tmp_path, monkeypatch, capsys, damage):
    args, encoder = encoder_args(inputs, tmp_path, tmp_path / 'cache')
    task = train.TASKS['rocstories']
    good, write_cache = encoded_dataset(args, task, encoder)
    write_cache()
    (cache,) = (tmp_path / 'cache').iterdir()
    assert cache.suffix == '.npz'
    with np.load(cache, allow_pickle=False) as npz:  # numbers and strings only: every array reads without pickle
        assert all(npz[name].dtype.kind in 'iufU' for name in npz.files)
    marker = tmp_path / 'code_ran'
    if damage == 'planted pickle':
        cache.write_bytes(pickle.dumps(Plant(marker)))
    elif damage == 'object array':
        with open(cache, 'wb') as f:
            np.savez(f, s0_f0_ids=np.array([Plant(marker)], dtype=object))
    elif damage == 'cut':
        cache.write_bytes(cache.read_bytes()[:200])
    elif damage == 'wrong offsets':
        with np.load(cache) as npz:
            arrays = dict(npz)
        with open(cache, 'wb') as f:
            np.savez(f, **{**arrays, 'train/texts/0/offsets': arrays['train/texts/0/offsets'][::-1].copy()})
    else:
        cache.write_text('not a cache\n')
    capsys.readouterr()
    again, write_cache = encoded_dataset(args, task, encoder)
    err = capsys.readouterr().err
    assert not marker.exists()
    assert_same_splits(again, good)
    (warning,) = [line for line in err.splitlines() if line.startswith('warning: ')]
    assert str(cache) in warning and 'encoding the data set again' in warning
    write_cache()  # replaced by a good one, read without encoding
    monkeypatch.setattr(encoder, 'encode', lambda *a, **k: pytest.fail('encoded again despite the cache'))
    assert_same_splits(encoded_dataset(args, task, encoder)[0], good)
    assert 'warning' not in capsys.readouterr().err


@pytest.mark.parametrize('how', ['not a folder', 'disk full'])
def test_a_cache_that_cannot_be_written_is_a_warning(inputs, tmp_path, monkeypatch, capsys, how):
    afile = tmp_path / 'afile'
    afile.write_text('not a folder\n')
    args, encoder = encoder_args(inputs, tmp_path, afile / 'cache' if how == 'not a folder' else tmp_path / 'cache')
    splits, write_cache = encoded_dataset(args, train.TASKS['rocstories'], encoder)
    if how == 'disk full':
        def full(*a, **k):
            raise OSError(errno.ENOSPC, 'No space left on device')
        monkeypatch.setattr(datasets.np, 'savez', full)
    capsys.readouterr()
    write_cache()
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning: ')]
    assert warning.startswith('warning: could not cache') and 'encodes it again' in warning
    assert files_under(tmp_path / 'cache') == [] and afile.read_text() == 'not a folder\n'


# --- best_params.jl -----------------------------------------------------------------------------------------------

def pickle_globals(path):
    """(module, name) of every global that the joblib file `path` refers to."""
    found = set()

    class Recorder(NumpyUnpickler):
        def find_class(self, module, name):
            found.add((module, name))
            return super().find_class(module, name)

    with open(path, 'rb') as f:
        Recorder(str(path), f, ensure_native_byte_order=True).load()
    return found


def test_load_params_allows_exactly_what_save_params_writes(tmp_path):
    arrays = [np.random.RandomState(0).randn(3, 4).astype(np.float32), np.arange(5, dtype=np.float32)]
    holder = type('M', (), {'params': [tf.Variable(a) for a in arrays]})()
    path = tmp_path / 'best_params.jl'
    weights.save_params(holder.params, str(path))
    # joblib writes a pickle of placeholders, each followed by its array's bytes: the pickle's globals are these
    # three, and the restricted unpickler allows no other.
    assert pickle_globals(path) == set(weights._ParamsUnpickler.GLOBALS)
    loaded = weights.load_params(str(path), [(3, 4), (5,)])
    assert all(a.dtype == np.float32 and np.array_equal(a, b) for a, b in zip(loaded, arrays))


def restore_file(tmp_path, kind, marker):
    path = tmp_path / f'{kind.replace(" ", "_")}.jl'
    rng = np.random.RandomState(0)
    if kind == 'planted pickle':
        joblib.dump([Plant(marker)], path)
    elif kind == 'planted in a list of arrays':
        joblib.dump([rng.randn(3).astype(np.float32), Plant(marker)], path)
    elif kind == 'plain pickle':
        path.write_bytes(pickle.dumps([Plant(marker)]))
    elif kind == 'object array':
        joblib.dump([np.array([Plant(marker)], dtype=object)], path)
    elif kind == 'a dict':
        joblib.dump({'we': rng.randn(3).astype(np.float32)}, path)
    elif kind == 'text':
        path.write_text('<html>404 Not Found</html>\n')
    elif kind == 'compressed':
        joblib.dump([rng.randn(3).astype(np.float32)], path, compress=3)
    elif kind == 'cut':
        joblib.dump([rng.randn(1000).astype(np.float32)], path)
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == 'float64':
        joblib.dump([rng.randn(3)], path)
    return path


@pytest.mark.parametrize('kind', ['planted pickle', 'planted in a list of arrays', 'plain pickle', 'object array',
                                  'a dict', 'text', 'compressed', 'cut', 'float64'])
def test_restore_runs_nothing_and_refuses_what_is_not_a_list_of_float32_arrays(run, tmp_path, kind):
    marker = tmp_path / 'code_ran'
    path = restore_file(tmp_path, kind, marker)
    msg = run(restore=path)
    assert not marker.exists()
    assert str(path) in msg and 'best_params.jl' in msg


@pytest.mark.parametrize('n_arrays, shape, message', [(1, (2,), 'holds 1 arrays but the model has 27'),
                                                     (28, (2,), 'holds 28 arrays but the model has 27'),
                                                     (27, (2,), 'array 0 has shape (2,)')])
def test_restore_of_other_arrays_than_the_model_has(run, tmp_path, n_arrays, shape, message):
    path = tmp_path / 'other.jl'
    joblib.dump([np.zeros(shape, np.float32)] * n_arrays, path)
    msg = run(restore=path)
    assert str(path) in msg and message in msg


# --- damaged data and BPE files, junk flags --------------------------------------------------------------------------

def test_csv_with_a_byte_that_is_not_utf8(run, tmp_path):
    path = tmp_path / 'data' / ROC_VAL
    lines = path.read_bytes().split(b'\n')
    lines[4] = lines[4].replace(b'a', b'\xe9', 1)  # latin-1's é
    path.write_bytes(b'\n'.join(lines))
    msg = run()
    assert ROC_VAL in msg and 'line 5' in msg and 'UTF-8' in msg


def test_val_csv_with_fewer_stories_than_the_split_needs(run, tmp_path):
    write_rocstories(str(tmp_path / 'data'), n_val=300, n_test=8)
    msg = run()
    assert ROC_VAL in msg and '300 stories' in msg and 'more than 374' in msg


def test_test_csv_with_a_header_only(run, tmp_path):
    path = tmp_path / 'data' / ROC_TEST
    path.write_text(path.read_text().split('\n')[0] + '\n')
    msg = run()
    assert ROC_TEST in msg and 'no stories' in msg


def test_csv_field_over_the_csv_modules_limit(run, tmp_path):
    rewrite_line(tmp_path / 'data' / ROC_VAL, 3, lambda line: line.replace(',', ',"' + 'a' * 131073 + '",', 1))
    msg = run()
    assert ROC_VAL in msg and 'line 3' in msg and 'field larger than field limit' in msg


@pytest.mark.parametrize('name, content, words', [
    ('encoder.json', b'{"a": 0, "b":', 'not a JSON file'), ('encoder.json', b'[1, 2]', 'not a BPE vocabulary'),
    ('encoder.json', b'\xff\xfe{}', 'not a JSON file'), ('encoder.json', b'{"a": "0"}', 'not a BPE vocabulary'),
    ('encoder.json', b'{"a": 0, "b": 54}', 'not a BPE vocabulary'),
    ('vocab.bpe', b'#version: 0.2\n\xff\xfe\x00\x01\n', 'not a text file'),
    ('vocab.bpe', b'#version: 0.2\na b c\n', 'line 2'),
    ('params_shapes.json', b'[[512, 32], [54', 'not a JSON file'),
    ('params_shapes.json', b'{"shapes": 1}', 'not the list of the pretrained arrays'),
    ('params_shapes.json', b'[[512], [54, 32]]', 'not the list of the pretrained arrays')])
def test_bpe_and_shape_files_that_are_not_what_they_should_be(run, tmp_path, name, content, words):
    path = tmp_path / 'model' / name
    path.write_bytes(content)
    flags = {'encoder_path': path} if name == 'encoder.json' else {'bpe_path': path} if name == 'vocab.bpe' else {}
    msg = run(**flags)
    assert str(path) in msg and words in msg and 'download.py' in msg
    if name in ('encoder.json', 'vocab.bpe'):  # the command that fixes the folder this run used
        assert f'download.py --only bpe --model_dir {path.parent}' in msg


@pytest.mark.parametrize('flag, value', [('lr', 'nan'), ('lr', 'inf'), ('lr', '0'), ('lr', '-0.0001'),
                                         ('lr_warmup', '0'), ('lr_warmup', '1.5'), ('lr_warmup', 'nan'),
                                         ('attn_pdrop', '1'), ('embd_pdrop', '-0.1'), ('resid_pdrop', 'nan'),
                                         ('clf_pdrop', '1.5'), ('seed', '-1'), ('seed', str(2 ** 31)),
                                         ('n_ctx', '5'), ('n_transfer', '-2'), ('e', '0'), ('b2', '1'),
                                         ('l2', 'inf'), ('lm_coef', 'nan')])
def test_junk_flag_values(run, flag, value):
    msg = run(**{flag: value})
    assert f'--{flag} {value}' in msg and 'must be' in msg


@pytest.mark.parametrize('desc', ['..', '.', '../../x', 'a/b', '/tmp/x'])
def test_desc_is_a_name_not_a_path(run, desc):
    msg = run(desc=desc)
    assert f'--desc {desc!r}' in msg and 'not a name' in msg and '--log_dir' in msg


def test_a_training_split_smaller_than_one_global_batch(run):
    msg = run(n_batch=3)  # 12 > the 8 training examples
    assert '8 examples' in msg and 'n_batch * n_gpu = 12' in msg


# --- runs that go wrong: --resume of a damaged or changed run, junk numbers, a full disk, a second run ----------

def test_resume_refuses_a_damaged_or_changed_run(tiny, tmp_path):
    out, backup = tmp_path / 'out', tmp_path / 'backup'
    save = out / 'save' / 'tiny'
    leftovers = [save / '.best_params.jl.x1.tmp', save / 'checkpoints' / 'ckpt-7_temp' / 'part-00000-of-00001',
                 save / 'checkpoints' / 'checkpoint.tmp1234', out / 'log' / '.tiny.jsonl.y2.tmp']
    for path in leftovers:  # what a kill in the middle of a write leaves
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('half')
    tiny(n_iter=2, save_every=1, submit=True)  # 1 update an epoch
    assert not any(path.exists() for path in leftovers) and not (save / 'checkpoints' / 'ckpt-7_temp').exists()
    assert tf.train.latest_checkpoint(str(save / 'checkpoints')).endswith('ckpt-2')
    shutil.copytree(out, backup)

    def refused(damage=lambda: None, **flags):
        shutil.rmtree(out)
        shutil.copytree(backup, out)
        damage()
        before = snapshot(out)
        msg = only_error(tiny(code=2, **{**dict(n_iter=2, save_every=1, submit=True, resume=True), **flags}))
        assert snapshot(out) == before  # nothing written, nothing removed
        return msg

    log = out / 'log' / 'tiny.jsonl'
    data = save / 'checkpoints' / 'ckpt-2.data-00000-of-00001'
    assert 'no checkpoint' in refused(lambda: shutil.rmtree(save / 'checkpoints'))
    msg = refused(lambda: log.unlink())
    assert str(log) in msg and 'missing' in msg
    msg = refused(lambda: log.write_text(log.read_text()[:-10]))
    assert str(log) in msg and 'damaged' in msg
    msg = refused(lambda: log.write_text(log.read_text().splitlines(keepends=True)[0]))
    assert str(log) in msg and 'has 0 results but its checkpoint 2' in msg
    for damage in [lambda: data.write_bytes(data.read_bytes()[:len(data.read_bytes()) // 2]), lambda: data.unlink(),
                   lambda: (save / 'checkpoints' / 'ckpt-2.index').write_bytes(b'\0' * 100)]:
        msg = refused(damage)
        assert 'ckpt-2' in msg and 'damaged' in msg and 'without --resume' in msg
    msg = refused(lr=0.001, n_iter=5)
    assert '--lr 0.001 (the run used 6.25e-05)' in msg and '--n_iter 5 (the run used 2)' in msg
    assert '--n_embd' not in msg and '--save_every' not in msg
    tiny(n_iter=2, save_every=3, submit=True, resume=True, cache_dir=tmp_path / 'elsewhere')  # those may change


def test_a_loss_that_is_not_finite_stops_the_run_keeping_the_last_good_outputs(tiny, tmp_path):
    msg = only_error(tiny(code=2, lr=1e30, n_iter=3, save_every=1, submit=True))  # update 1 makes junk weights
    assert re.search(r'update 2: the loss is nan', msg) and 'lower --lr' in msg
    save = tmp_path / 'out' / 'save' / 'tiny'
    assert tf.train.latest_checkpoint(str(save / 'checkpoints')).endswith('ckpt-1')
    with open(tmp_path / 'out' / 'log' / 'tiny.jsonl') as f:
        assert [json.loads(line)['n_updates'] for line in f.readlines()[1:]] == [1]
    assert len(weights.load_params(str(save / 'best_params.jl'))) == 27


@pytest.mark.parametrize('where', ['log', 'checkpoint'])
def test_a_full_disk_names_the_folder(tiny, tmp_path, monkeypatch, where):
    if where == 'log':  # every atomic write fails: the cache is a warning, the log the error
        def full(fd):
            raise OSError(errno.ENOSPC, 'No space left on device')
        monkeypatch.setattr(utils.os, 'fsync', full)
        folder = tmp_path / 'out' / 'log'
    else:
        def full(self, checkpoint_number=None):
            raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device')
        monkeypatch.setattr(tf.train.CheckpointManager, 'save', full)
        folder = tmp_path / 'out' / 'save' / 'tiny' / 'checkpoints'
    err = tiny(code=2, save_every=1)
    msg = only_error(err)
    assert 'no space left' in msg and repr(str(folder)) in msg and re.search(r'more than [\d.]+ [KM]B', msg)
    if where == 'log':
        assert 'warning: could not cache' in err
    assert [str(p) for p in tmp_path.rglob('.*.tmp')] == []


def test_a_second_run_with_the_same_desc_is_refused(tiny, tmp_path):
    folder = tmp_path / 'out' / 'log' / 'tiny'
    folder.mkdir(parents=True)
    with open(folder / '.lock', 'a') as held:  # the first run's lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        msg = only_error(tiny(code=2))
    assert 'another run with --desc tiny' in msg and str(folder) in msg
    assert files_under(tmp_path / 'out') == [str(folder / '.lock')]


# --- interruption --------------------------------------------------------------------------------------------------

RUN = dict(n_batch=1, n_iter=2, deterministic=True, submit=True)  # 8 training examples, 4 a batch: 2 updates an epoch


def results(out):
    """What a run leaves: its evaluations (without their times), best parameters and submission files."""
    with open(out / 'log' / 'tiny.jsonl') as f:
        evaluations = [{k: v for k, v in json.loads(line).items() if k != 'time'} for line in f][1:]
    params = weights.load_params(str(out / 'save' / 'tiny' / 'best_params.jl'))
    return evaluations, params, snapshot(out / 'submission')


def assert_same_results(out, reference):
    evaluations, params, submission = results(out)
    ref_evaluations, ref_params, ref_submission = results(reference)
    assert evaluations == ref_evaluations and len(evaluations) == RUN['n_iter']
    assert all(np.array_equal(a, b) for a, b in zip(params, ref_params)) and len(params) == len(ref_params)
    assert list(submission.values()) == list(ref_submission.values())


@pytest.fixture(scope='module')
def reference(inputs, tmp_path_factory):
    """The outputs of an uninterrupted RUN."""
    root = tmp_path_factory.mktemp('reference')
    shutil.copytree(inputs['data_dir'], root / 'data')
    shutil.copytree(inputs['model_dir'], root / 'model')
    train.main(argv_of(inputs, root, **RUN))
    return root / 'out'


def resume_line(err):
    (line,) = [line for line in err.splitlines() if 'resume with: ' in line]
    return line


def test_sigterm_stops_at_the_next_update_with_a_checkpoint_and_resume_ends_as_the_uninterrupted_run(
        inputs, tiny, tmp_path, monkeypatch, reference):
    make_update = opt.make_update
    second_signal = []

    def signalling(*args, **kwargs):
        step, calls = make_update(*args, **kwargs), []

        def step_(*batch):
            calls.append(1)
            if len(calls) == 3:  # in the middle of the second epoch
                os.kill(os.getpid(), signal.SIGTERM)
                second_signal.append(signal.getsignal(signal.SIGTERM))
            return step(*batch)
        return step_

    monkeypatch.setattr(opt, 'make_update', signalling)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    err = tiny(code=143, **RUN)  # no --save_every: the signal saves anyway
    monkeypatch.setattr(opt, 'make_update', make_update)
    assert second_signal == [signal.SIG_DFL]  # a second one stops the program at once
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # given back
    checkpoints = tmp_path / 'out' / 'save' / 'tiny' / 'checkpoints'
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith('ckpt-3')
    line = resume_line(err)
    assert line.startswith('SIGTERM: stopped after update 3') and str(checkpoints) in line
    command = shlex.split(line.split('resume with: ')[1])
    assert command[:2] == ['python', os.path.join(REPO, 'train.py')]
    assert command[2:] == argv_of(inputs, tmp_path, **RUN) + ['--resume']
    tiny(**RUN, resume=True)
    assert_same_results(tmp_path / 'out', reference)


def test_a_signal_outside_the_training_loop_stops_with_one_line(tiny, tmp_path, monkeypatch):
    make_strategy = loop.make_strategy

    def interrupted(*args):
        os.kill(os.getpid(), signal.SIGINT)
        return make_strategy(*args)

    monkeypatch.setattr(loop, 'make_strategy', interrupted)
    err = tiny(code=130, **RUN)
    assert err.strip().splitlines()[-1] == 'SIGINT: stopped outside the training loop, where a run saves nothing'
    assert files_under(tmp_path / 'out') == [] and files_under(tmp_path / 'cache') == []


def test_ctrl_c_stops_a_run_and_the_command_it_prints_resumes_it(inputs, tmp_path, reference):
    """A real process: SIGINT once it has made updates (its first evaluation is printed), then the printed
    command, run as it is, ends with the outputs of the uninterrupted run."""
    shutil.copytree(inputs['data_dir'], tmp_path / 'data')
    shutil.copytree(inputs['model_dir'], tmp_path / 'model')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(tmp_path / 'stderr', 'w') as stderr:
        process = subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py')] + argv_of(inputs, tmp_path, **RUN),
                                   stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=tmp_path, env=env)
        for line in process.stdout:
            if line.startswith('1 2 '):  # epoch 1, update 2: its evaluation
                process.send_signal(signal.SIGINT)
                break
        process.communicate(timeout=600)
    err = (tmp_path / 'stderr').read_text()
    assert process.returncode == 130 and 'Traceback' not in err, err
    command = shlex.split(resume_line(err).split('resume with: ')[1])
    assert command[0] == 'python' and command[-1] == '--resume'
    resumed = subprocess.run([sys.executable] + command[1:], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0 and 'Traceback' not in resumed.stderr, resumed.stderr
    assert_same_results(tmp_path / 'out', reference)


# --- generate.py --restore ---------------------------------------------------------------------------------------

def test_generate_continues_a_prompt_with_a_finetuned_model(inputs, tmp_path, capsys):
    n_vocab = len(json.loads(inputs['encoder_path'].read_text()))
    model = Model(Config(n_vocab, 20, n_embd=16, n_head=2, n_layer=1, embd_pdrop=0, attn_pdrop=0, resid_pdrop=0,
                         clf_pdrop=0))
    rng = np.random.RandomState(0)
    model.assign([(rng.randn(*p.shape) * 0.5).astype(np.float32) for p in model.params])
    path = tmp_path / 'best_params.jl'
    weights.save_params(model.params, str(path))
    argv = ['--prompt', 'the cat sat.', '--n_tokens', '5', '--temperature', '0', '--n_head', '2',
            '--encoder_path', str(inputs['encoder_path']), '--bpe_path', str(inputs['bpe_path'])]
    generate.main(argv + ['--restore', str(path)])  # n_ctx 20, n_embd 16 and 1 layer come from the file
    out = capsys.readouterr().out
    encoder = TextEncoder(str(inputs['encoder_path']), str(inputs['bpe_path']))
    tokens = [n_vocab] + encoder.encode(['the cat sat.'], verbose=False)[0]
    expected = generate.decode(encoder.decoder, generate.sample(model, tokens, 5, n_vocab, temperature=0))
    assert out == f'the cat sat. {expected.rstrip()}\n'  # the prompt, then the greedy continuation of that model

    marker = tmp_path / 'code_ran'
    joblib.dump([Plant(marker)], path)
    with pytest.raises(SystemExit) as exit_:
        generate.main(argv + ['--restore', str(path)])
    assert exit_.value.code == 2 and not marker.exists()
    assert capsys.readouterr().err.startswith(f'error: {str(path)!r} is not a best_params.jl')


def test_generate_refuses_a_negative_seed_and_a_prompt_longer_than_the_restored_context(inputs, tmp_path, capsys):
    n_vocab = len(json.loads(inputs['encoder_path'].read_text()))
    model = Model(Config(n_vocab, 8, n_embd=16, n_head=2, n_layer=1))
    path = tmp_path / 'best_params.jl'
    weights.save_params(model.params, str(path))
    argv = ['--n_head', '2', '--encoder_path', str(inputs['encoder_path']), '--bpe_path', str(inputs['bpe_path']),
            '--restore', str(path)]
    for flags, message in [(['--prompt', 'the cat.', '--seed', '-1'], '--seed must be in [0, 2**32), got -1'),
                           (['--prompt', 'the cat sat on the mat.'], 'fills the 8 positions of the model in')]:
        with pytest.raises(SystemExit) as exit_:
            generate.main(argv + flags)
        assert exit_.value.code == 2
        assert message in only_error(capsys.readouterr().err)
