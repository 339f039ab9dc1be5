"""analysis.py: the accuracies that --analysis prints, the learning curves, and its command line."""
import csv
import json
import os

import numpy as np
import pytest

import analysis
from datasets import ROC_TEST, rocstories_csv
from finetuning.tasks import TASKS
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


# ------------------------------------------------------------------------- the paper's tables from real tiny runs

from tests import test_task_runs as task_runs  # noqa: E402 (its tiny vocabulary, weights and task files)
from tests.test_task_runs import inputs  # noqa: E402,F401 (the fixture) # pyflakes: ignore

PAPER_ROWS = {  # the paper's row: (its table, the task, the log's metric, the paper's figure)
    'MNLI-m': ('2', 'mnli', 'acc', 82.1), 'MNLI-mm': ('2', 'mnli', None, 81.4), 'SNLI': ('2', 'snli', 'acc', 89.9),
    'SciTail': ('2', 'scitail', 'acc', 88.3), 'QNLI': ('2', 'qnli', 'acc', 88.1), 'RTE': ('2', 'rte', 'acc', 56.0),
    'Story Cloze': ('3', 'rocstories', 'acc', 86.5), 'RACE-m': ('3', 'race', 'RACE-m', 62.9),
    'RACE-h': ('3', 'race', 'RACE-h', 57.4), 'RACE': ('3', 'race', 'all', 59.0), 'CoLA': ('4', 'cola', 'mc', 45.4),
    'SST-2': ('4', 'sst2', 'acc', 91.3), 'MRPC': ('4', 'mrpc', 'F1', 82.3), 'STS-B': ('4', 'stsb', 'pearson', 82.0),
    'QQP': ('4', 'qqp', 'F1', 70.3), 'GLUE': ('4', None, None, 72.8)}
TABLE5 = ['cola', 'sst2', 'mrpc', 'stsb', 'qqp', 'mnli', 'qnli', 'rte']  # its columns' tasks, the paper's order


@pytest.fixture(scope='module')
def runs(inputs, tmp_path_factory):  # noqa: F811
    """Tiny train.py runs (one update, --submit) of every task with the full transfer, two ablations (CoLA without
    pre-training, SST-2 without the auxiliary LM) and an --n_transfer 0 run of MNLI: {desc: log path}, the data
    folders and the submissions' folder."""
    import train
    root = tmp_path_factory.mktemp('runs')
    folders, logs = {}, {}
    for name in sorted(task_runs.TITLES) + ['rocstories']:
        folders[name] = root / 'data' / name
        if name == 'rocstories':
            write_rocstories(str(folders[name]), n_val=400, n_test=12)
            n_train = 400 - 374
        else:
            n_train = task_runs.write_task(name, folders[name])
        runs = [(name, {})] + {'cola': [('cola-scratch', {'n_transfer': -1})], 'sst2': [('sst2-nolm', {'lm_coef': 0})],
                               'mnli': [('mnli-layers0', {'n_transfer': 0})]}.get(name, [])
        for desc, more in runs:  # the ablations' submissions in folders of their own (a run never replaces one)
            more = dict(more, submission_dir=root / 'submission' / desc) if more else more
            train.main(task_runs.flags(inputs, root, name, folders[name], desc=desc, n_batch=n_train, submit=True,
                                       **more))
            logs[desc] = str(root / 'log' / f'{desc}.jsonl')
    return dict(logs=logs, folders=folders, submissions=root / 'submission')


def best_dev(log, metric):
    """va_<metric> of the run's first best evaluation by its first metric, read from the log here."""
    with open(log) as f:
        evaluations = [json.loads(line) for line in f][1:]
    first = next(k for k in evaluations[0] if k.startswith('va_'))
    return max(evaluations, key=lambda e: e[first])['va_' + metric]


def markdown_rows(text, heading):
    """The cells of each row of the Markdown table after the line `heading`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            if rows:
                break
            continue
        rows.append([c.strip() for c in line.strip('|').split('|')])
    return rows[2:]  # after the header and the separator


def public_test_figures(runs, name):
    """{metric: value} of the run's test submission, scored here against the labels in the data files."""
    if name == 'rocstories':
        rows = list(csv.reader(open(runs['folders'][name] / ROC_TEST, encoding='utf-8')))[1:]
        gold = [str(int(row[-1]) - 1) for row in rows]
        pred = [line.split('\t')[1] for line in (runs['submissions'] / 'ROCStories.tsv').read_text().splitlines()[1:]]
        return {'acc': 100 * np.mean(np.array(pred) == gold)}
    figures = task_runs.submitted_figures(name, str(runs['folders'][name]), runs['submissions'])
    return {key: figures[f'{task_runs.TITLES[name]} Test {title}'] for key, title, _, _ in task_runs.METRICS[name]}


def table_text(capsys, *argv):
    analysis.main(list(argv))
    return capsys.readouterr().out


def test_table_puts_each_runs_dev_and_public_test_figures_beside_the_papers(runs, capsys):
    logs = runs['logs']
    text = table_text(capsys, '--table', *logs.values())
    for table in ('2', '3', '4'):
        rows = {row[0]: row for row in markdown_rows(text, f'### Table {table}:')}
        assert set(rows) == {row for row, spec in PAPER_ROWS.items() if spec[0] == table}
        for name, (_, task, metric, value) in PAPER_ROWS.items():
            if name not in rows:
                continue
            row = rows[name]
            assert float(row[2]) == value, name
            if task is None:  # GLUE's score: the server's, over its nine test sets
                assert row[3:6] == ['-', '-', '-'], row
                continue
            assert row[5] == logs[task], row
            assert row[3] == ('-' if metric is None else f'{best_dev(logs[task], metric):.1f}'), row
            public = task in ('snli', 'scitail', 'race', 'rocstories')
            expected_test = f'{public_test_figures(runs, task)[metric]:.1f}' if public else '-'
            assert row[4] == expected_test, row
            assert 'n_layer 1' in row[6] and 'n_embd 16' in row[6], row   # not the paper's model: said so
    assert f"{logs['mnli-layers0']}: in no table" in text


def test_table_of_one_log_shows_the_papers_figures_and_dashes_elsewhere(runs, capsys):
    text = table_text(capsys, '--table', runs['logs']['rte'])
    rows = {row[0]: row for table in '234' for row in markdown_rows(text, f'### Table {table}:')}
    assert rows['RTE'][3] == f"{best_dev(runs['logs']['rte'], 'acc'):.1f}"
    for name, row in rows.items():
        if name != 'RTE':
            assert row[3:6] == ['-', '-', '-'] and float(row[2]) == PAPER_ROWS[name][3], row
    assert '### Table 5' not in text  # no ablation run given


def test_table_5_gives_each_ablation_runs_dev_figures(runs, capsys):
    logs = runs['logs']
    text = table_text(capsys, '--table', *logs.values())
    rows = markdown_rows(text, '### Table 5:')
    by = {(row[0], row[1]): row[2:] for row in rows}
    assert by[('Transformer w/ aux LM (full)', 'paper')] == ['74.7', '45.4', '91.3', '82.3', '82.0', '70.3', '81.8',
                                                             '88.1', '56.0']
    assert by[('LSTM w/ aux LM', 'paper')][0] == '69.1' and 'not reproduced' in by[('LSTM w/ aux LM', 'run')][0]
    metric = {'cola': 'mc', 'stsb': 'pearson', 'mrpc': 'F1', 'qqp': 'F1'}
    full = [best_dev(logs[t], metric.get(t, 'acc')) for t in TABLE5]
    assert by[('Transformer w/ aux LM (full)', 'run (dev)')] == [f'{np.mean(full):.1f}'] + [f'{v:.1f}' for v in full]
    scratch = by[('Transformer w/o pre-training', 'run (dev)')]
    assert scratch == ['-', f"{best_dev(logs['cola-scratch'], 'mc'):.1f}"] + ['-'] * 7
    no_lm = by[('Transformer w/o aux LM', 'run (dev)')]
    assert no_lm == ['-', '-', f"{best_dev(logs['sst2-nolm'], 'acc'):.1f}"] + ['-'] * 6
    assert f"- Transformer w/o pre-training, CoLA (mc): {logs['cola-scratch']}" in text.splitlines()


def test_figure2_draws_the_dev_figure_against_the_layers_transferred(runs, capsys, tmp_path):
    logs = runs['logs']
    out = tmp_path / 'figure2.png'
    text = table_text(capsys, '--figure2', str(out), logs['mnli'], logs['cola-scratch'], logs['mnli-layers0'],
                      logs['cola'])
    rows = markdown_rows('figure\n\n' + text, 'figure')
    expected = [['MNLI', '0', logs['mnli-layers0'], 'acc'], ['MNLI', '1', logs['mnli'], 'acc'],
                ['CoLA', 'none', logs['cola-scratch'], 'mc'], ['CoLA', '1', logs['cola'], 'mc']]
    assert [[row[0], row[1], row[4]] for row in rows] == [e[:3] for e in expected]
    for row, (_, _, log, metric) in zip(rows, expected):
        assert row[2] == f"{best_dev(log, metric):.1f}"
    assert read_png(str(out)).shape[:2] == (450, 700)


def test_log_alone_prints_the_runs_dev_and_public_test_figures(runs, capsys):
    analysis.main(['--log', runs['logs']['race']])   # the data folder and the submission from the run's flags
    lines = dict(line.split(':') for line in capsys.readouterr().out.splitlines())
    test = public_test_figures(runs, 'race')
    assert float(lines['RACE Test Accuracy']) == pytest.approx(test['all'], abs=0.006)
    assert float(lines['RACE Test RACE-h Accuracy']) == pytest.approx(test['RACE-h'], abs=0.006)
    assert float(lines['RACE Dev Accuracy']) == pytest.approx(best_dev(runs['logs']['race'], 'all'), abs=0.006)
    analysis.main(['--log', runs['logs']['qnli']])   # private test labels: the dev figure alone
    assert [line.split(':')[0] for line in capsys.readouterr().out.splitlines()] == ['QNLI Dev Accuracy']
    with pytest.raises(SystemExit) as exit_info:
        analysis.main(['--log', runs['logs']['qnli'], '--submission', str(runs['submissions'] / 'QNLI.tsv')])
    assert exit_info.value.code == 2 and 'not public' in capsys.readouterr().err
