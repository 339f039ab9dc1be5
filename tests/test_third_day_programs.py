"""Issue 31 in the training programs: the labels say what each figure is (the bar's and TensorBoard's lr is the
scheduled learning rate, Adam's bias-corrected step is train/step_size), train.py says the n_ctx it uses and lists
every file it wrote, pretrain.py lists checkpoints only where it made them and checks its corpus before
TensorFlow."""
import glob
import math
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.test_errors import inputs  # noqa: F401 (the tiny run's inputs, a fixture)
from tests.test_hostile import tiny  # noqa: F401 (a tiny train.py run, a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scalars(log_dir):
    """{tag: [values in step order]} of a run's TensorBoard folder."""
    found = {}
    for path in sorted(glob.glob(os.path.join(log_dir, 'events.out.tfevents.*'))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return {tag: [v for _, v in sorted(values)] for tag, values in found.items()}


def test_tensorboard_lr_is_the_scheduled_learning_rate_and_step_size_adams_lrt(tiny, tmp_path, capsys):  # noqa: F811
    """SPEC's schedule written out: update k of t_total has lr * warmup_linear(k / t_total) (x > 0.002: 1 - x), and
    Adam's step lrt = that times sqrt(1 - b2^k) / (1 - b1^k): the two figures TensorBoard keeps apart."""
    tiny(lr=1e-3, n_iter=3)
    values = scalars(str(tmp_path / 'out' / 'log' / 'tiny'))
    lrs, steps = values['train/lr'], values['train/step_size']
    t_total = len(lrs)
    assert t_total >= 3
    for k, (lr, step) in enumerate(zip(lrs, steps), start=1):
        x = k / t_total
        want = 1e-3 * ((x / 0.002) if x <= 0.002 else 1.) * (1 - x)
        assert lr == pytest.approx(want, rel=1e-5, abs=1e-12)
        # in float32, as Adam computes it: its bias correction rounds to about 1e-5 (SPEC's update 1: 7e-6)
        assert step == pytest.approx(want * math.sqrt(1 - 0.999 ** k) / (1 - 0.9 ** k), rel=1e-4, abs=1e-12)
    assert abs(steps[0] - lrs[0]) > 0.5 * lrs[0]  # the bias correction: the two differ where the test looks


def test_train_says_the_n_ctx_it_uses_and_lists_both_best_parameter_files(inputs, tmp_path, capsys):  # noqa: F811
    import shutil

    import train
    from tests.test_hostile import argv_of
    for name in ('data', 'model'):
        shutil.copytree(inputs[f'{name}_dir'], tmp_path / name)
    train.main(argv_of(inputs, tmp_path, n_ctx=99999, submit=True))
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if 'the longest input sequence' in line]
    n_ctx = int(line.split()[1].rstrip(':'))
    assert line.startswith('n_ctx ') and n_ctx < 99999 and '--n_ctx 99999 is a cap' in line
    written = out[out.index('written:'):]
    assert 'best_params.jl' in written and 'best_params.safetensors' in written


def test_pretrain_lists_checkpoints_only_where_it_made_them():
    import pretrain
    from tests.pretrain_files import argv
    for save_every, listed in [(0, False), (5, True)]:
        args = pretrain.parse_args(argv('/r', '/r/corpus', save_every=save_every))
        lines = pretrain.written_files(args, '/r/save/tiny')
        assert any('checkpoints' in line for line in lines) == listed, lines


def test_pretrain_refuses_a_corpus_of_binary_files_before_tensorflow(tmp_path):
    """A folder of .txt files that hold NUL bytes: one error line, before TensorFlow is imported (-X importtime
    lists the modules imported outside the start-up's hidden stderr) and before the run prints anything."""
    from tests.pretrain_files import argv, write_vocab
    folder = tmp_path / 'corpus'
    folder.mkdir()
    (folder / 'a.txt').write_bytes(b'\x00\x01binary' * 100)
    write_vocab(tmp_path / 'vocab')
    done = subprocess.run([sys.executable, '-X', 'importtime', os.path.join(ROOT, 'pretrain.py')] +
                          argv(str(tmp_path), str(folder)), capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'binary' in errors[0], done.stderr[-2000:]
    assert not [line for line in done.stderr.splitlines() if line.startswith('import time') and
                line.rstrip().endswith(' tensorflow')]
    assert done.stdout == ''  # the run's flag table, printed once TensorFlow has started, never came
