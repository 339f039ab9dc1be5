"""Hostile and damaged inputs: no file a user can be handed runs code when it is read (the data-set cache, a
best_params.jl), every damaged input or junk flag stops the run with one `error:` line before it writes anything,
a run that goes wrong keeps its last good outputs, and an interrupted run stops at an update boundary, saved,
and resumes to the numbers of the uninterrupted run. Tiny generated inputs (tests/test_errors.py's)."""
import errno
import fcntl
import io
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

import train
import utils
from datasets import ROC_TEST, ROC_VAL
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
    args = train.parse_args(argv_of(inputs, tmp_path, data_dir=inputs['data_dir'], cache_dir=cache_dir))
    return args, train.TextEncoder(args.encoder_path, args.bpe_path)


def assert_same_splits(a, b):
    assert [len(split) for split in a] == [len(split) for split in b]
    for split_a, split_b in zip(a, b):
        for field_a, field_b in zip(split_a, split_b):
            assert type(field_a) is type(field_b)
            assert np.array_equal(field_a, field_b) if isinstance(field_a, np.ndarray) else field_a == field_b


@pytest.mark.parametrize('damage', ['planted pickle', 'object array', 'cut', 'wrong offsets', 'not npz'])
def test_a_damaged_cache_runs_nothing_and_is_encoded_again(inputs, tmp_path, monkeypatch, capsys, damage):
    args, encoder = encoder_args(inputs, tmp_path, tmp_path / 'cache')
    good, write_cache = train.encoded_dataset(args, encoder)
    write_cache()
    (cache,) = (tmp_path / 'cache').iterdir()
    assert cache.suffix == '.npz'
    with np.load(cache, allow_pickle=False) as npz:  # numbers only: every array reads without pickle
        assert all(npz[name].dtype in (np.int32, np.int64) for name in npz.files)
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
            np.savez(f, **{**arrays, 's0_f0_offsets': arrays['s0_f0_offsets'][::-1].copy()})
    else:
        cache.write_text('not a cache\n')
    capsys.readouterr()
    again, write_cache = train.encoded_dataset(args, encoder)
    err = capsys.readouterr().err
    assert not marker.exists()
    assert_same_splits(again, good)
    (warning,) = [line for line in err.splitlines() if line.startswith('warning: ')]
    assert str(cache) in warning and 'encoding the data set again' in warning
    write_cache()  # replaced by a good one, read without encoding
    monkeypatch.setattr(encoder, 'encode', lambda *a, **k: pytest.fail('encoded again despite the cache'))
    assert_same_splits(train.encoded_dataset(args, encoder)[0], good)
    assert 'warning' not in capsys.readouterr().err


@pytest.mark.parametrize('how', ['not a folder', 'disk full'])
def test_a_cache_that_cannot_be_written_is_a_warning(inputs, tmp_path, monkeypatch, capsys, how):
    afile = tmp_path / 'afile'
    afile.write_text('not a folder\n')
    args, encoder = encoder_args(inputs, tmp_path, afile / 'cache' if how == 'not a folder' else tmp_path / 'cache')
    splits, write_cache = train.encoded_dataset(args, encoder)
    if how == 'disk full':
        def full(*a, **k):
            raise OSError(errno.ENOSPC, 'No space left on device')
        monkeypatch.setattr(utils.np, 'savez', full)
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
    model = type('M', (), {'params': [tf.Variable(a) for a in arrays]})()
    path = tmp_path / 'best_params.jl'
    train.save_params(model, str(path))
    # joblib writes a pickle of placeholders, each followed by its array's bytes: the pickle's globals are these
    # three, and the restricted unpickler allows no other.
    assert pickle_globals(path) == set(utils._ParamsUnpickler.GLOBALS)
    loaded = utils.load_params(str(path), [(3, 4), (5,)])
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
