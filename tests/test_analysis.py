"""analysis.py: the accuracies that --analysis prints, the learning curves, and its command line."""
import json
import os

import numpy as np
import pytest

import analysis
from datasets import ROC_TEST, rocstories_csv
from tasks import TASKS
from tests.fixtures import write_rocstories

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def write_log(path, desc, va_accs, n_batch=8):
    """A log as train.py writes it: the flags, then one line per evaluation."""
    with open(path, 'w') as f:
        f.write(json.dumps({'desc': desc, 'dataset': 'rocstories', 'n_batch': n_batch, 'time': 0.}) + '\n')
        for k, va_acc in enumerate(va_accs, start=1):
            f.write(json.dumps({'n_epochs': k, 'n_updates': 46 * k, 'tr_cost': 1. / k, 'va_cost': 1.2 / k,
                                'tr_acc': 60. + 10 * k, 'va_acc': va_acc, 'time': float(k)}) + '\n')
    return str(path)


@pytest.fixture
def submission(tmp_path):
    """Data dir with a 20-story test CSV, a submission right on 15 of them, and a log whose best va_acc (75.5)
    comes twice, between lower ones."""
    data_dir = tmp_path / 'data'
    write_rocstories(str(data_dir), n_val=8, n_test=20)
    labels = np.array(rocstories_csv(str(data_dir / ROC_TEST))[3])
    preds = labels.copy()
    preds[[0, 3, 7, 11, 19]] = 1 - preds[[0, 3, 7, 11, 19]]
    pred_path = tmp_path / 'ROCStories.tsv'
    pred_path.write_text('index\tprediction\n' + ''.join(f'{i}\t{p}\n' for i, p in enumerate(preds)))
    log_path = write_log(tmp_path / 'run.jsonl', 'run', [50., 75.5, 75.5, 60.25])
    return str(data_dir), str(pred_path), log_path


def test_rocstories_prints_the_best_valid_and_the_test_accuracy(submission, capsys):
    assert analysis.rocstories(*submission) == (75.5, 75.)
    assert capsys.readouterr().out.splitlines() == ['ROCStories Valid Accuracy: 75.50',
                                                    'ROCStories Test Accuracy:  75.00']


def test_the_first_best_evaluation_is_taken():
    # The argmax that rocstories() uses: the first of equal maxima.
    logs = [{'va_acc': 70., 'k': 0}, {'va_acc': 80., 'k': 1}, {'va_acc': 80., 'k': 2}]
    assert logs[int(np.argmax([log['va_acc'] for log in logs]))]['k'] == 1


def test_main_prints_the_accuracies(submission, capsys):
    data_dir, pred_path, log_path = submission
    analysis.main(['--data_dir', data_dir, '--submission', pred_path, '--log', log_path])
    assert capsys.readouterr().out.splitlines() == ['ROCStories Valid Accuracy: 75.50',
                                                    'ROCStories Test Accuracy:  75.00']


def read_png(path):
    from matplotlib.image import imread
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_SIGNATURE
    return imread(path)


def has_colour(image, hex_colour, tol=0.02):
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255.
    return bool(np.any(np.all(np.abs(image[..., :3] - rgb) < tol, axis=-1)))


def test_plot_draws_one_colour_per_run(tmp_path):
    a = write_log(tmp_path / 'a.jsonl', 'a', [70., 75., 74.])
    b = write_log(tmp_path / 'b.jsonl', 'b', [72., 71., 78.])
    one, two = str(tmp_path / 'out' / 'one.png'), str(tmp_path / 'out' / 'two.png')
    analysis.plot([a], one)
    analysis.plot([a, b], two)
    img1, img2 = read_png(one), read_png(two)
    assert img1.shape[:2] == img2.shape[:2] == (450, 1200)  # figsize (12, 4.5) at 100 dpi
    assert os.path.getsize(two) > os.path.getsize(one) > 1000
    assert has_colour(img1, '#1f77b4') and not has_colour(img1, '#ff7f0e')  # C0 only
    assert has_colour(img2, '#1f77b4') and has_colour(img2, '#ff7f0e')  # C0 and C1
    assert sorted(os.listdir(tmp_path / 'out')) == ['one.png', 'two.png']  # no temporary file left


def test_plot_through_main_and_a_log_without_evaluations(tmp_path):
    a = write_log(tmp_path / 'a.jsonl', 'a', [70., 75.])
    empty = write_log(tmp_path / 'empty.jsonl', 'empty', [])
    out = str(tmp_path / 'curves.png')
    analysis.main(['--plot', out, a, empty])
    assert read_png(out).shape[:2] == (450, 1200)


@pytest.mark.parametrize('content, message', [(None, 'not found'), ('{"desc": "x"}\nnot json\n', 'line 2: not JSON'),
                                              ('{"desc": "x"}\n{"n_updates": 1}\n', 'line 2: no tr_cost')])
def test_a_bad_log_is_one_error_line(tmp_path, capsys, content, message):
    log = tmp_path / 'run.jsonl'
    if content is not None:
        log.write_text(content)
    out = tmp_path / 'curves.png'
    with pytest.raises(SystemExit) as exit_info:
        analysis.main(['--plot', str(out), str(log)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and message in err[0]
    assert not out.exists() and sorted(os.listdir(tmp_path)) == (['run.jsonl'] if content else [])


def test_missing_accuracy_inputs_are_one_error_line(submission, tmp_path, capsys):
    data_dir, pred_path, log_path = submission
    empty_log = write_log(tmp_path / 'e.jsonl', 'e', [])
    for argv in [['--data_dir', data_dir, '--submission', str(tmp_path / 'nope.tsv'), '--log', log_path],
                 ['--data_dir', str(tmp_path / 'nodata'), '--submission', pred_path, '--log', log_path],
                 ['--data_dir', data_dir, '--submission', pred_path, '--log', empty_log]]:
        with pytest.raises(SystemExit) as exit_info:
            analysis.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith('error: '), err


@pytest.mark.parametrize('argv', [[], ['--plot', 'x.png'], ['a.jsonl'], ['--data_dir', 'd'],
                                  ['--plot', 'x.png', 'a.jsonl', '--log', 'a.jsonl']])
def test_incomplete_command_lines_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        analysis.main(argv)
    assert exit_info.value.code == 2
    assert 'error:' in capsys.readouterr().err


def test_report_prints_the_first_best_evaluations_metrics_then_the_other_splits(tmp_path, capsys):
    path = tmp_path / 'mrpc.jsonl'
    records = [{'desc': 'mrpc', 'dataset': 'mrpc'}] + [
        {'n_updates': k, 'tr_cost': 1., 'va_cost': 1., 'tr_F1': 0., 'va_F1': f1, 'tr_acc': 0., 'va_acc': acc}
        for k, (f1, acc) in enumerate([(70., 60.), (81.25, 71.), (81.25, 75.), (80., 90.)], start=1)]
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    lines = analysis.report(TASKS['mrpc'], analysis.read_log(str(path))[1], {'test': {'F1': 66.666, 'acc': 50.}})
    # the best by F1, the first of equal ones: neither the last evaluation nor the best accuracy
    assert lines == {'MRPC Dev F1': 81.25, 'MRPC Dev Accuracy': 71., 'MRPC Test F1': 66.666,
                     'MRPC Test Accuracy': 50.}
    assert capsys.readouterr().out.splitlines() == ['MRPC Dev F1:        81.25', 'MRPC Dev Accuracy:  71.00',
                                                    'MRPC Test F1:       66.67', 'MRPC Test Accuracy: 50.00']


def test_report_gives_rocstories_the_originals_two_lines(submission, capsys):
    analysis.report(TASKS['rocstories'], analysis.read_log(submission[2])[1], {'test': {'acc': 75.}})
    assert capsys.readouterr().out.splitlines() == ['ROCStories Valid Accuracy: 75.50',
                                                    'ROCStories Test Accuracy:  75.00']
