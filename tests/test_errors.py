"""Bad input: train.py stops with one line `error: <what is wrong and what to do>` on stderr, exit status 2, no
traceback, and nothing half-written in the output folders (no file under --log_dir, --save_dir, --submission_dir,
no temporary `.*.tmp` left). And the outputs are written atomically: a crash while writing leaves the previous
good file in place. Tiny generated inputs (a character-level vocabulary, random 2-layer weights): almost every
run fails before training starts."""
import json
import os
import shutil

import joblib
import numpy as np
import pytest
import tensorflow as tf

from engine import loop
import train
import utils
from formats import weights
from datasets import ROC_HEADER, ROC_TEST, ROC_VAL
from tests.fixtures import openai_shapes, write_random_weights, write_rocstories

ROC_SITE = 'cs.rochester.edu/nlp/rocstories'
N_EMBD, N_LAYER = 32, 2
SYMBOLS = sorted(set('abcdefghijklmnopqrstuvwxyz.'))
N_VOCAB = 2 * len(SYMBOLS)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """Good inputs shared by the tests (copy before changing them): Story Cloze CSVs, a character-level encoder,
    an empty merges file and random tiny weights in 3 shards."""
    root = tmp_path_factory.mktemp('inputs')
    data_dir = root / 'data'
    write_rocstories(str(data_dir), n_val=382, n_test=8)  # the split keeps 374 for validation, 8 to train
    encoder_path, bpe_path = root / 'enc.json', root / 'vocab.bpe'
    encoder_path.write_text(json.dumps({s: i for i, s in enumerate(SYMBOLS + [s + '</w>' for s in SYMBOLS])}))
    bpe_path.write_text('#version: 0.2\n\n')
    model_dir = root / 'model'
    write_random_weights(str(model_dir), openai_shapes(N_VOCAB, N_EMBD, N_LAYER), n_shards=3)
    return dict(data_dir=data_dir, encoder_path=encoder_path, bpe_path=bpe_path, model_dir=model_dir)


@pytest.fixture
def run(inputs, tmp_path, monkeypatch, capsys):
    """run(**flags) -> the error message of a train.main run that must fail; copies of the inputs are under
    tmp_path (data/, model/) for a test to damage. The run starts in an empty folder (cwd/), so that a default
    output path would show up there too. Afterwards: exit status 2, one `error: ` line on stderr, no traceback."""
    shutil.copytree(inputs['data_dir'], tmp_path / 'data')
    shutil.copytree(inputs['model_dir'], tmp_path / 'model')
    (tmp_path / 'cwd').mkdir()
    monkeypatch.chdir(tmp_path / 'cwd')

    def run_(**flags):
        args = dict(dataset='rocstories', desc='tiny', n_iter=1, n_batch=2, n_embd=N_EMBD, n_head=4,
                    n_layer=N_LAYER, n_transfer=N_LAYER, data_dir=tmp_path / 'data', model_dir=tmp_path / 'model',
                    encoder_path=inputs['encoder_path'], bpe_path=inputs['bpe_path'],
                    log_dir=tmp_path / 'out' / 'log', save_dir=tmp_path / 'out' / 'save',
                    submission_dir=tmp_path / 'out' / 'submission', cache_dir=tmp_path / 'cache')
        args.update(flags)
        argv = []
        for flag, value in args.items():
            if value is True:
                argv.append(f'--{flag}')
            elif value is not None:
                argv += [f'--{flag}', str(value)]
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            train.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert 'Traceback' not in err, err
        errors = [line for line in err.splitlines() if line.startswith('error: ')]
        assert len(errors) == 1, err
        assert err.strip().splitlines()[-1] == errors[0], err
        assert_nothing_written(tmp_path)
        return errors[0][len('error: '):]

    return run_


def files_under(folder):
    return sorted(str(p) for p in folder.rglob('*') if not p.is_dir()) if folder.exists() else []


def assert_nothing_written(tmp_path):
    """No file in the output folders, in the working folder nor in the cache (empty folders are allowed), no
    temporary file: every input is checked before the run writes anything."""
    assert files_under(tmp_path / 'out') == []
    assert files_under(tmp_path / 'cwd') == []
    assert files_under(tmp_path / 'cache') == []
    assert [str(p) for p in tmp_path.rglob('.*.tmp')] == []


def rewrite_line(path, number, change):
    """Replace line `number` (1-based) of a text file by change(line)."""
    lines = path.read_text(encoding='utf-8').split('\n')
    lines[number - 1] = change(lines[number - 1])
    path.write_text('\n'.join(lines), encoding='utf-8')


# --- the data -------------------------------------------------------------------------------------------------

def test_data_folder_missing(run, tmp_path):
    msg = run(data_dir=tmp_path / 'nowhere')
    assert ROC_VAL in msg and ROC_TEST in msg
    assert str(tmp_path / 'nowhere') in msg
    assert ROC_SITE in msg


@pytest.mark.parametrize('missing', [ROC_VAL, ROC_TEST])
def test_one_csv_missing_names_both_files_and_the_website(run, tmp_path, missing):
    (tmp_path / 'data' / missing).unlink()
    msg = run()
    assert ROC_VAL in msg and ROC_TEST in msg
    assert '--data_dir' in msg
    assert ROC_SITE in msg


@pytest.mark.parametrize('name', [ROC_VAL, ROC_TEST])
@pytest.mark.parametrize('header', [','.join(ROC_HEADER[:-1]), ','.join(['Id'] + ROC_HEADER[1:]), ''])
def test_csv_with_a_wrong_header(run, tmp_path, name, header):
    rewrite_line(tmp_path / 'data' / name, 1, lambda line: header)
    msg = run()
    assert name in msg and 'line 1' in msg
    assert 'header' in msg
    assert ROC_SITE in msg


def test_empty_csv(run, tmp_path):
    (tmp_path / 'data' / ROC_VAL).write_text('')
    msg = run()
    assert ROC_VAL in msg and 'line 1' in msg
    assert ROC_SITE in msg


@pytest.mark.parametrize('name', [ROC_VAL, ROC_TEST])
def test_csv_with_a_short_row(run, tmp_path, name):
    rewrite_line(tmp_path / 'data' / name, 5, lambda line: line.rsplit(',', 2)[0])  # 6 columns of 8
    msg = run()
    assert name in msg and 'line 5' in msg
    assert '8 columns' in msg and 'found 6' in msg
    assert ROC_SITE in msg  # what to do: fetch the file again


@pytest.mark.parametrize('label', ['3', '0', 'x', ''])
def test_csv_with_a_label_other_than_1_or_2(run, tmp_path, label):
    rewrite_line(tmp_path / 'data' / ROC_VAL, 7, lambda line: line.rsplit(',', 1)[0] + ',' + label)
    msg = run()
    assert ROC_VAL in msg and 'line 7' in msg
    assert '1 or 2' in msg and repr(label) in msg
    assert ROC_SITE in msg  # what to do: fetch the file again


# --- the pretrained weights -----------------------------------------------------------------------------------

def test_weights_folder_missing(run, tmp_path):
    model_dir = tmp_path / 'no_model'
    msg = run(model_dir=model_dir)
    assert str(model_dir) in msg
    assert f'python download.py --model_dir {model_dir}' in msg
    assert '--n_transfer -1' in msg


def test_bpe_files_missing_point_to_download(run, tmp_path):
    model_dir = tmp_path / 'no_model'
    msg = run(model_dir=model_dir, encoder_path=None, bpe_path=None)
    assert os.path.join(str(model_dir), 'encoder_bpe_40000.json') in msg
    assert f"the folder {str(model_dir)!r} does not exist" in msg  # the run needs the weights too: all the files
    assert f'python download.py --model_dir {model_dir}`' in msg and 'the pretrained weights' in msg


def test_params_shapes_missing(run, tmp_path):
    (tmp_path / 'model' / 'params_shapes.json').unlink()
    msg = run()
    assert 'params_shapes.json' in msg and 'python download.py' in msg


def test_a_shard_missing_in_the_middle(run, tmp_path):
    (tmp_path / 'model' / 'params_1.npy').unlink()
    msg = run()
    assert 'params_1.npy' in msg and 'missing' in msg
    assert 'python download.py' in msg


def test_the_last_shard_missing(run, tmp_path):
    (tmp_path / 'model' / 'params_2.npy').unlink()
    msg = run()
    assert str(tmp_path / 'model') in msg and 'missing' in msg
    assert 'python download.py' in msg


def test_no_shard_at_all(run, tmp_path):
    for i in range(3):
        (tmp_path / 'model' / f'params_{i}.npy').unlink()
    msg = run()
    assert 'params_0.npy' in msg and 'python download.py' in msg


@pytest.mark.parametrize('keep', [0.5, 20, 0])  # half the data, inside the header, empty
def test_a_truncated_shard(run, tmp_path, keep):
    shard = tmp_path / 'model' / 'params_1.npy'
    data = shard.read_bytes()
    shard.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    msg = run()
    assert 'params_1.npy' in msg and 'truncated' in msg
    assert 'python download.py' in msg


@pytest.mark.parametrize('kind', ['float64', 'int32', '2-d', 'object', 'text'])
def test_a_shard_that_is_not_a_flat_float32_npy(run, tmp_path, kind):
    shard = tmp_path / 'model' / 'params_1.npy'
    a = np.load(shard)
    if kind == 'text':
        shard.write_text('<html>404 Not Found</html>\n')
    else:
        a = {'float64': a.astype(np.float64), 'int32': a.view(np.int32), '2-d': a.reshape(1, -1),
             'object': a.astype(object)}[kind]
        np.save(shard, a, allow_pickle=True)
    msg = run()
    assert 'params_1.npy' in msg
    assert 'python download.py' in msg
    if kind in ('float64', 'int32', '2-d'):
        assert 'float32' in msg


def test_weights_with_another_n_embd(run):
    msg = run(n_embd=64)  # the weights have n_embd 32
    assert '--n_embd 64' in msg
    assert ', 32)' in msg and ', 64)' in msg  # the shape in the weights and in the model
    assert 'make the flags match the weights' in msg


def test_weights_with_fewer_layers_than_asked(run):
    msg = run(n_layer=3, n_transfer=3)  # the weights have 2 layers
    assert '--n_transfer 3' in msg
    assert '--n_transfer 2' in msg  # what to do


def test_context_longer_than_the_pretrained_position_table(run, tmp_path):
    shutil.rmtree(tmp_path / 'model')
    write_random_weights(str(tmp_path / 'model'), openai_shapes(N_VOCAB, N_EMBD, N_LAYER, n_pos=16), n_shards=2)
    msg = run()  # the character-level stories are longer than 16 tokens
    assert 'n_ctx' in msg and '16 positions' in msg
    assert '--n_ctx 16' in msg


# --- the flags ------------------------------------------------------------------------------------------------

def test_towers_that_a_cluster_cannot_share(run, monkeypatch):
    # a cluster of workers has a fixed number of replicas (one machine picks a count that divides n_gpu)
    monkeypatch.setattr(loop, 'make_strategy',
                        lambda n_towers=None: tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))
    msg = run(n_batch=3, n_gpu=3)
    assert '2 replicas' in msg and '--n_gpu 3' in msg


@pytest.mark.parametrize('flag, value, choice', [('afn', 'tanh', 'gelu'), ('lr_schedule', 'cosine', 'warmup_linear'),
                                                 ('opt', 'sgd', 'adam'), ('dataset', 'squad', 'rocstories'),
                                                 ('precision', 'fp8', 'bf16')])
def test_unknown_choice(run, flag, value, choice):
    msg = run(**{flag: value})
    assert f'--{flag}' in msg and value in msg
    assert choice in msg  # the valid choices are listed


def test_analysis_without_submit(run):
    msg = run(analysis=True)
    assert '--analysis' in msg and '--submit' in msg


@pytest.mark.parametrize('flag, submit', [('log_dir', False), ('log_dir', True), ('save_dir', True),
                                          ('submission_dir', True)])
@pytest.mark.parametrize('where', ['below', 'itself'])
def test_an_output_folder_that_cannot_be_written(run, tmp_path, flag, submit, where):
    """The tests run as root, so a folder's permissions stop nothing: the path goes through a regular file."""
    afile = tmp_path / 'afile'
    afile.write_text('not a folder\n')
    msg = run(**{flag: afile / 'out' if where == 'below' else afile, 'submit': submit or None})
    assert f'--{flag}' in msg
    assert str(afile) in msg
    assert afile.read_text() == 'not a folder\n'


# --- atomic outputs -------------------------------------------------------------------------------------------

def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('.') and p.name.endswith('.tmp'))


class Crash(Exception):
    pass


class HalfFile:
    """A file that takes half of what is written to it, then raises: a crash in the middle of a write."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[:max(1, len(data) // 2)])
        self.f.flush()
        raise Crash('disk gone')

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.f, name)


def crash_midway(monkeypatch):
    """From now on the files that utils.atomic_write opens crash halfway through their first write."""
    real_fdopen = os.fdopen
    monkeypatch.setattr(utils.os, 'fdopen', lambda *a, **k: HalfFile(real_fdopen(*a, **k)))


@pytest.mark.parametrize('error', [Crash, KeyboardInterrupt])
def test_atomic_write_keeps_the_previous_file_when_the_block_fails(tmp_path, error):
    path = tmp_path / 'out.txt'
    with utils.atomic_write(str(path)) as f:
        f.write('good\n')
    with pytest.raises(error):
        with utils.atomic_write(str(path)) as f:
            f.write('half of a new')
            raise error()
    assert path.read_text() == 'good\n'
    assert leftovers(tmp_path) == []


def test_atomic_write_of_a_new_file_leaves_nothing_when_it_fails(tmp_path):
    with pytest.raises(Crash):
        with utils.atomic_write(str(tmp_path / 'sub' / 'new.txt')) as f:
            f.write('half')
            raise Crash()
    assert files_under(tmp_path) == []


class FakeModel:
    def __init__(self, seed):
        rng = np.random.RandomState(seed)
        self.params = [tf.Variable(rng.randn(3, 4).astype(np.float32)), tf.Variable(rng.randn(4).astype(np.float32))]


@pytest.mark.parametrize('error', [Crash, KeyboardInterrupt])
def test_saved_params_survive_a_crash_in_joblib_dump(tmp_path, monkeypatch, error):
    path = tmp_path / 'save' / 'tiny' / 'best_params.jl'
    good = FakeModel(0)
    weights.save_params(good.params, str(path))

    def dump(value, f, *args, **kwargs):
        f.write(b'\x80\x04 half a pickle')
        raise error()

    monkeypatch.setattr(weights.joblib, 'dump', dump)
    with pytest.raises(error):
        weights.save_params(FakeModel(1).params, str(path))
    monkeypatch.undo()
    for saved, p in zip(joblib.load(path), good.params):
        np.testing.assert_array_equal(saved, p.numpy())
    assert leftovers(path.parent) == []


def test_saved_params_survive_a_crash_while_writing(tmp_path, monkeypatch):
    path = tmp_path / 'best_params.jl'
    good = FakeModel(0)
    weights.save_params(good.params, str(path))
    crash_midway(monkeypatch)
    with pytest.raises(Crash):
        weights.save_params(FakeModel(1).params, str(path))
    monkeypatch.undo()
    for saved, p in zip(joblib.load(path), good.params):
        np.testing.assert_array_equal(saved, p.numpy())
    assert leftovers(tmp_path) == []


def test_result_log_survives_a_crash_while_writing(tmp_path, monkeypatch):
    path = tmp_path / 'log' / 'tiny.jsonl'
    logger = utils.ResultLogger(str(path), desc='tiny', n_iter=1)
    logger.log(n_epochs=1, va_acc=50.0)
    before = path.read_text()
    assert len(before.splitlines()) == 2
    crash_midway(monkeypatch)
    with pytest.raises(Crash):
        logger.log(n_epochs=2, va_acc=60.0)
    assert path.read_text() == before
    assert [json.loads(line)['va_acc'] for line in before.splitlines()[1:]] == [50.0]
    assert leftovers(path.parent) == []


def test_submission_survives_a_crash_while_writing(tmp_path, monkeypatch):
    path = tmp_path / 'submission' / 'ROCStories.tsv'
    train.write_submission(str(path), ['0', '1', '2'], np.array([0, 1, 1]))
    before = path.read_text()
    assert before == 'index\tprediction\n0\t0\n1\t1\n2\t1\n'
    crash_midway(monkeypatch)
    with pytest.raises(Crash):
        train.write_submission(str(path), range(1000), np.zeros(1000, np.int64))
    assert path.read_text() == before
    assert leftovers(path.parent) == []
