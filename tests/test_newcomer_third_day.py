"""A newcomer's third day (issue 31): --table over a log/ folder that holds more than finished fine-tuning runs,
the rerun guard's --resume only for the same run, what Ctrl-C says and that a second one always stops, download.py's
messages about a --base_url folder and a missing --model_dir, and its --random_weights stand-in."""
import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_py(*argv, cwd=None, timeout=60):
    return subprocess.run([sys.executable, *argv], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------- the rerun guard and --resume

def make_checkpoint(folder):
    """A real TensorFlow checkpoint (ckpt-2) in folder/checkpoints."""
    import tensorflow as tf
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.)), str(folder / 'checkpoints'),
                                         max_to_keep=1)
    return manager.save(2)


def guard_args(tmp_path, **flags):
    base = dict(desc='run', log_dir=str(tmp_path / 'log'), save_dir=str(tmp_path / 'save'), resume=False,
                overwrite=False, n_iter=3, lr=6.25e-5, save_every=0)
    return argparse.Namespace(**{**base, **flags})


def write_first_line(tmp_path, **flags):
    (tmp_path / 'log').mkdir(exist_ok=True)
    path = tmp_path / 'log' / 'run.jsonl'
    path.write_text(json.dumps(vars(guard_args(tmp_path, **flags))) + '\n')
    return str(path)


def guard_message(args, log_path):
    from engine.run_state import check_outputs
    from utils import InputError
    with pytest.raises(InputError) as err:
        check_outputs(vars(args), log_path)
    return str(err.value)


def test_the_guard_offers_resume_for_the_same_run_even_with_other_harmless_flags(tmp_path):
    checkpoint = make_checkpoint(tmp_path / 'save' / 'run')
    log = write_first_line(tmp_path, save_every=5)  # --save_every changes no number
    msg = guard_message(guard_args(tmp_path), log)
    assert f"continue that run with --resume (its checkpoint {checkpoint!r}, update 2)" in msg
    assert 'another run' not in msg


@pytest.mark.parametrize('log', ['other flags', 'missing', 'damaged'])
def test_the_guard_says_the_folder_holds_another_run_when_resume_could_not_continue_it(tmp_path, log):
    make_checkpoint(tmp_path / 'save' / 'run')
    log_path = str(tmp_path / 'log' / 'run.jsonl')
    if log == 'other flags':
        log_path = write_first_line(tmp_path, n_iter=2, lr=0.001)
    elif log == 'damaged':
        (tmp_path / 'log').mkdir()
        (tmp_path / 'log' / 'run.jsonl').write_text('{"desc": "run", "n_it\n')
    msg = guard_message(guard_args(tmp_path), log_path)
    assert '--resume' in msg and 'continue that run' not in msg
    assert f"{str(tmp_path / 'save' / 'run')!r} holds another run, which --resume cannot continue: " in msg
    if log == 'other flags':
        assert '--n_iter 3 (the run used 2)' in msg and '--lr 6.25e-05 (the run used 0.001)' in msg
    else:
        assert f'its log {log_path!r} is missing or damaged' in msg
    assert msg.endswith('start another with another --desc or replace them with --overwrite')


# ---------------------------------------------------------------------------------------------------- Ctrl-C

CHILD = textwrap.dedent('''
    import hashlib, sys, types
    sys.path.insert(0, {repo!r})
    tf = sys.modules['tensorflow'] = types.ModuleType('tensorflow')  # RunControl needs none of it: no seconds of import
    tf.train = types.SimpleNamespace(experimental=types.SimpleNamespace(PythonState=object))
    from engine.run_state import RunControl
    with RunControl('python train.py --resume') as control:
        control.armed = True
        control.pace = {pace}
        print('ready', flush=True)
        hashlib.pbkdf2_hmac('sha256', b'x', b'y', 10 ** 8)  # a minute inside C (as in TensorFlow's ops): Python's
        # handlers wait for it
        print('returned', flush=True)
''')


def read_until(fd, text, timeout):
    """What the file descriptor `fd` gives until it has given `text` (or `timeout` seconds have passed)."""
    data, end = b'', time.time() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while text.encode() not in data and sel.select(max(end - time.time(), 0)):
            data += os.read(fd, 4096)
    return data.decode()


def test_ctrl_c_says_at_once_what_it_does_and_a_second_one_stops_even_inside_a_c_call():
    process = subprocess.Popen([sys.executable, '-c', CHILD.format(repo=REPO, pace=7.4)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        assert process.stdout.readline() == b'ready\n'
        time.sleep(0.2)  # inside the C call
        process.send_signal(signal.SIGINT)
        err = read_until(process.stderr.fileno(), 'without saving\n', 5)  # at once, not after the C call
        assert err.splitlines()[-1] == ('SIGINT: stopping after this update (7.4 s at the current pace), then '
                                        'saving; Ctrl-C again to stop now without saving'), err
        assert process.poll() is None  # still in the C call: the line came at once
        started = time.time()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
        err = err.decode()
        assert time.time() - started < 5  # not once the minute's call returned
        assert process.returncode == 130 and b'returned' not in out
        assert err.strip().splitlines()[-1] == 'SIGINT again: stopped at once, without saving'
    finally:
        process.kill() if process.poll() is None else None


def test_without_a_pace_the_line_gives_no_time_and_the_resume_line_comes_last(capsys):
    from engine.run_state import RunControl, at_boundary

    class Checkpoint:  # what at_boundary uses of a CheckpointManager
        directory, saved = 'save/run/checkpoints', []

        def save(self, n):
            self.saved.append(n)

    class Summaries:
        def flush(self):
            pass

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_:
        with RunControl('python train.py --desc run --resume') as control:
            control.armed = True
            assert control.pace is None
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # the watcher thread's line
            assert control.signum == signal.SIGTERM
            at_boundary(control, Checkpoint(), 7, [], Summaries(), save=False)
    assert exit_.value.code == 143 and Checkpoint.saved == [7]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # given back
    err = capsys.readouterr().err.strip().splitlines()
    assert 'SIGTERM: stopping after this update, then saving; another SIGTERM or a Ctrl-C to stop now without ' \
           'saving' in err
    assert err[-1] == ("SIGTERM: stopped after update 7, saved in 'save/run/checkpoints'; resume with: "
                       "python train.py --desc run --resume")
    assert err.count(err[-1]) == 1


# ------------------------------------------------------------------------------------- --table over a log/ folder

def write_task_log(path, flags, evaluations):
    """A log as train.py writes it: the flags, then one line per evaluation."""
    path.write_text(''.join(json.dumps(line) + '\n' for line in [flags] + evaluations))
    return str(path)


def table_logs(tmp_path):
    """log/: two finished Story Cloze runs (the full recipe, and one without pre-training), a pre-training log
    and a run interrupted before its first evaluation."""
    log = tmp_path / 'log'
    log.mkdir()
    evaluation = dict(n_epochs=1, n_updates=46, tr_cost=0.9, va_cost=1.0, tr_acc=70., time=1.)
    good = write_task_log(log / 'rocstories.jsonl', dict(desc='rocstories', dataset='rocstories'),
                          [dict(evaluation, va_acc=81.25), dict(evaluation, n_updates=92, va_acc=80.5)])
    scratch = write_task_log(log / 'scratch.jsonl', dict(desc='scratch', dataset='rocstories', n_transfer=-1),
                             [dict(evaluation, va_acc=60.75)])
    books = write_task_log(log / 'books_small.jsonl', dict(desc='books_small', n_ctx=512),
                           [dict(n_updates=100, n_tokens=51200, tr_cost=5.5, va_cost=5.6, va_ppl=270.4, time=1.)])
    bigctx = write_task_log(log / 'bigctx.jsonl', dict(desc='bigctx', dataset='rocstories'), [])
    return good, scratch, books, bigctx


def test_table_leaves_out_the_logs_that_are_not_task_runs_with_a_line_each(tmp_path, capsys):
    import analysis
    good, scratch, books, bigctx = table_logs(tmp_path)
    analysis.main(['--table', books, good, bigctx, scratch])
    out, err = capsys.readouterr()
    assert err == ''
    (story_cloze,) = [line for line in out.splitlines() if line.startswith('| Story Cloze |')]
    assert story_cloze.split('|')[4].strip() == '81.2' and good in story_cloze  # 81.25, its best evaluation
    assert (f"{scratch}: in no table: Table 5 has no ROCStories column (the run is of its row 'Transformer w/o "
            "pre-training')") in out.splitlines()
    assert f"{books}: left out: a pre-training log (pretrain.py's): it has no task's figures" in out.splitlines()
    assert f"{bigctx}: left out: no evaluation yet (the run is before its first one, or stopped before it: " \
        "train.py --resume continues it)" in out.splitlines()
    assert sum(line.endswith('left out') or ': left out: ' in line for line in out.splitlines()) == 2


def test_table_of_no_usable_log_is_one_error_line(tmp_path, capsys):
    import analysis
    _, _, books, bigctx = table_logs(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        analysis.main(['--table', books, bigctx])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == '' and len(err.splitlines()) == 1 and err.startswith("error: no log given is a run of the paper's")
    assert f'{books}: left out: a pre-training log' in err and f'{bigctx}: left out: no evaluation yet' in err


# --------------------------------------------------------------------------------------------------- download.py

def real_model_file(name):
    """The path of a real file of model/ where this machine has one (sample_files.real_path), else None."""
    from formats.sample_files import real_path
    return real_path('model', name)


def download_main(capsys, *argv):
    """(exit status, stdout, stderr) of download.main(argv)."""
    import download
    try:
        code = download.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_base_url_folder_without_the_files_says_that_it_lacks_them(tmp_path, capsys):
    (tmp_path / 'copies').mkdir()
    folder = str(tmp_path / 'copies')
    code, out, err = download_main(capsys, '--only', 'bpe', '--base_url', folder, '--model_dir', str(tmp_path / 'm'))
    assert code == 1
    assert f"  encoder_bpe_40000.json   FAILED: {folder!r} has no encoder_bpe_40000.json" in out.splitlines()
    assert err.strip().splitlines()[-1] == (
        f"error: 2 of 2 files failed (encoder_bpe_40000.json, vocab_40000.bpe; why: above): the folder {folder!r} "
        "lacks encoder_bpe_40000.json, vocab_40000.bpe: copy them there, or give --base_url a folder or a mirror "
        "that holds the files")
    assert 're-run' not in out + err


def test_a_base_url_folder_that_does_not_exist_is_one_error_line(tmp_path, capsys):
    code, out, err = download_main(capsys, '--base_url', str(tmp_path / 'nowhere'), '--model_dir', str(tmp_path / 'm'))
    assert code == 2 and out == '' and 'Traceback' not in err
    assert err.splitlines() == [f"error: --base_url {str(tmp_path / 'nowhere')!r}: no such folder: give the folder "
                                "that holds the files (a path or a file:// URL) or a mirror's http(s):// URL"]
    assert not (tmp_path / 'm').exists()


@pytest.mark.parametrize('n_transfer, command', [('12', 'python download.py --model_dir nowhere`'),
                                                 ('-1', 'python download.py --only bpe --model_dir nowhere`')])
def test_a_missing_model_dir_says_so_and_fetches_what_the_run_needs(tmp_path, n_transfer, command):
    from formats.sample_files import write_rocstories
    write_rocstories(str(tmp_path / 'data'), n_val=3, n_test=2)
    result = run_py(os.path.join(REPO, 'train.py'), '--data_dir', 'data', '--model_dir', 'nowhere', '--n_transfer',
                    n_transfer, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "error: BPE file 'nowhere/encoder_bpe_40000.json' not found (the folder 'nowhere' does not exist)" \
        in result.stderr and command in result.stderr
    assert ('the pretrained weights' in result.stderr) == (n_transfer != '-1')


SMALL = [[8, 4], [6, 4], [4]]  # 60 parameters: enough for 10 shards


def test_random_weights_are_written_in_the_originals_layout_and_labelled(tmp_path):
    import download
    assert download.random_weights(str(tmp_path), SMALL) == 60
    with open(tmp_path / 'params_shapes.json') as f:
        assert json.load(f) == SMALL
    flat = np.concatenate([np.load(tmp_path / f'params_{i}.npy') for i in range(10)])
    assert flat.dtype == np.float32 and flat.shape == (60,) and 0 < flat.std() < 0.05  # N(0, 0.02)
    note = (tmp_path / 'RANDOM_WEIGHTS.txt').read_text()
    assert 'RANDOM weights' in note and 'never for results' in note


def test_random_weights_default_to_the_originals_full_shapes(tmp_path, monkeypatch):
    import download
    from formats import sample_files
    shapes_path = real_model_file('params_shapes.json')
    if not shapes_path:
        pytest.skip("no real params_shapes.json on this machine")
    written = []
    monkeypatch.setattr(sample_files, 'write_random_weights', lambda folder, shapes: written.append(shapes))
    assert download.random_weights(str(tmp_path)) == 116_534_784  # the original's parameters
    with open(shapes_path) as f:
        assert written == [json.load(f)]


def test_random_weights_never_write_over_weights(tmp_path, capsys):
    (tmp_path / 'm').mkdir()
    (tmp_path / 'm' / 'params_0.npy').write_bytes(b'real weights')
    (tmp_path / 'copies').mkdir()
    before = sorted(os.listdir(tmp_path / 'm'))
    code, out, err = download_main(capsys, '--random_weights', '--model_dir', str(tmp_path / 'm'), '--base_url',
                                   str(tmp_path / 'copies'))
    assert code == 2 and out == ''
    assert err.splitlines() == [f"error: --random_weights: {str(tmp_path / 'm')!r} already holds weights (the real "
                                "ones?) (params_0.npy): it never writes over them; give another --model_dir, or "
                                "delete them first"]
    assert sorted(os.listdir(tmp_path / 'm')) == before and (tmp_path / 'm' / 'params_0.npy').read_bytes() == \
        b'real weights'


def test_random_weights_from_the_command_line_fetch_the_bpe_files_and_say_what_they_are(tmp_path, capsys,
                                                                                         monkeypatch):
    from formats import weights
    bpe = real_model_file('vocab_40000.bpe')
    if not bpe or not real_model_file('encoder_bpe_40000.json'):
        pytest.skip("no real BPE files on this machine")
    monkeypatch.setattr(weights, 'openai_shapes', lambda *args: SMALL)  # small: the full size takes seconds
    model = tmp_path / 'model'
    code, out, err = download_main(capsys, '--random_weights', '--model_dir', str(model), '--base_url', os.path.dirname(bpe))
    assert code == 0, err
    assert sorted(os.listdir(model)) == sorted(['RANDOM_WEIGHTS.txt', 'encoder_bpe_40000.json', 'vocab_40000.bpe',
                                                'params_shapes.json'] + [f'params_{i}.npy' for i in range(10)])
    assert out.splitlines()[-1].startswith(f'RANDOM weights (60 parameters, N(0, 0.02)) written to {model} ')
    assert 'for trying the pipeline, never for results' in out.splitlines()[-1]


def test_random_weights_help_says_what_they_are_for(capsys):
    code, out, _ = download_main(capsys, '--help')
    text = ' '.join(out.split())
    assert code == 0 and 'write RANDOM full-size weights' in text and 'never for results' in text


def test_a_bad_copy_in_a_base_url_folder_is_not_fixed_by_a_rerun(tmp_path, capsys):
    (tmp_path / 'copies').mkdir()
    (tmp_path / 'copies' / 'vocab_40000.bpe').write_text('#version: 0.2\nnot the merges\n')
    (tmp_path / 'copies' / 'encoder_bpe_40000.json').write_text('{}')
    code, out, err = download_main(capsys, '--only', 'bpe', '--base_url', str(tmp_path / 'copies'), '--model_dir',
                                   str(tmp_path / 'm'))
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith('  vocab_40000.bpe ')]
    assert 'failed verification' in line and line.endswith(
        'the file was deleted: the copy there is not the original file: replace it, or give --base_url another '
        'folder or a mirror')
    assert 're-run' not in out + err
    assert err.strip().splitlines()[-1].endswith(
        f"the copies of encoder_bpe_40000.json, vocab_40000.bpe in {str(tmp_path / 'copies')!r} are not the original "
        "files (why: above): replace them, or give --base_url another folder or a mirror")
