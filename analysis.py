"""The paper's figures of runs: a run's metrics on its dev set (its best evaluation) and, where the test labels are
public (SNLI, SciTail, RACE, Story Cloze), of its submission (report: what train.py --analysis prints); learning
curves; the paper's Tables 2-5 with the runs' figures beside the paper's; Figure 2 (left) of an n_transfer sweep.
    python analysis.py --log log/rocstories.jsonl [--data_dir data/ --submission submission/ROCStories.tsv]
    python analysis.py --plot curves.png log/a.jsonl [log/b.jsonl ...]
    python analysis.py --table log/*.jsonl
    python analysis.py --figure2 figure2.png log/mnli-layers*.jsonl log/race-layers*.jsonl
--log reads the data folder and the submission from the run's flags (its log's first line) unless given.
"""
import argparse
import io
import json
import os

from utils import InputError, atomic_write, exit_on_input_error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--plot', metavar='OUT_PNG', help='draw the learning curves of the LOGS to this PNG')
    parser.add_argument('--table', action='store_true',
                        help="print the paper's Tables 2-4 (and 5, given ablation runs) with the LOGS' figures (a "
                             "log that is not a run with an evaluation is left out, with a line saying why)")
    parser.add_argument('--figure2', metavar='OUT_PNG',
                        help="draw Figure 2 (left) of the LOGS of an --n_transfer sweep to this PNG")
    parser.add_argument('logs', nargs='*', metavar='LOG', help='with --plot, --table, --figure2: train.py logs '
                                                              '(log/{desc}.jsonl)')
    parser.add_argument('--log', help="the run's log, log/{desc}.jsonl: print its figures")
    parser.add_argument('--data_dir', help="with --log: the task's data folder (the test labels; default: the run's)")
    parser.add_argument('--submission', help="with --log: the test predictions (default: the run's, e.g. "
                                             "submission/ROCStories.tsv)")
    args = parser.parse_args(argv)
    modes = [flag for flag, on in [('--plot', args.plot is not None), ('--table', args.table),
                                   ('--figure2', args.figure2 is not None), ('--log', args.log is not None)] if on]
    if len(modes) != 1:
        parser.error('give one of --plot OUT_PNG LOG..., --table LOG..., --figure2 OUT_PNG LOG... or --log LOG '
                     f'(given: {", ".join(modes) or "none"})')
    if modes[0] == '--log' and args.logs:
        parser.error('LOG files go with --plot, --table or --figure2; --log takes one')
    if modes[0] != '--log' and not args.logs:
        parser.error(f'{modes[0]} needs at least one LOG')
    if modes[0] != '--log' and (args.data_dir or args.submission):
        parser.error(f'{modes[0]} takes LOG files, not --data_dir or --submission: those go with --log')
    return args


def check_files(args):
    """InputError when a file or folder to read is missing (checked before numpy and the task registry are
    imported)."""
    files = [('log', path, 'a log/{desc}.jsonl that train.py wrote') for path in args.logs] + [
        ('--log', args.log, 'the log/{desc}.jsonl that train.py wrote'),
        ('--submission', args.submission, 'the test predictions that train.py --submit wrote')]
    for what, path, hint in files:
        if path is not None and not os.path.isfile(path):
            raise InputError(f"{what} {path!r} not found: give {hint}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise InputError(f"--data_dir {args.data_dir!r} not found: give the task's data folder")


if __name__ == '__main__':  # --help, a bad flag and a missing file answer now, before the imports below
    exit_on_input_error(check_files, parse_args())

import numpy as np  # noqa: E402 (after the command line is checked)

import tasks  # noqa: E402
from datasets import ROC_TEST, Examples, rocstories_csv  # noqa: E402
from tasks import TASKS  # noqa: E402

COSTS = ('cost', 'tr_cost', 'va_cost')  # the first panel; the second: the task's first metric (tr_acc, va_acc, ...)


def rocstories(data_dir, pred_path, log_path):
    """Print (report) the va_acc of the first best evaluation in `log_path` and the accuracy of the submission
    `pred_path` on the test labels; return both (percent)."""
    return tuple(analyse_log(log_path, data_dir, pred_path).values())


def analyse_log(log_path, data_dir=None, submission=None):
    """Print (report) and return the paper's metrics of the run of `log_path`: its best evaluation's, and those
    of its test submission where the test labels are public (the file `submission`, default the run's
    --submission_dir's; the labels read from `data_dir`, default the run's --data_dir)."""
    flags, evaluations = read_run(log_path)
    task = task_of(flags, log_path)
    if not evaluations:
        raise InputError(f"--log {log_path!r} has no evaluation yet (the run is before its first one, or stopped "
                         "before it: train.py --resume continues it)")
    if submission and not task.test_labels:
        raise InputError(f"{task.title}'s test labels are not public: --submission cannot be scored; --log alone "
                         "prints the dev figures")
    scores = {}
    if task.test_labels:
        paths = submission_paths(task, flags, submission)
        missing = [p for p in paths.values() if not os.path.isfile(p)]
        if missing:
            raise InputError(f"--submission {missing[0]!r} not found: the run writes it with --submit")
        scores = submission_scores(task, test_splits(task, data_dir or flags.get('data_dir') or task.data_dir), paths)
    return report(task, evaluations, scores)


def task_of(flags, path):
    """The task of a run's flags (the original's logs have no dataset: ROCStories)."""
    name = flags.get('dataset') or 'rocstories'
    if name not in TASKS:
        raise InputError(f"{path}: the run's dataset {name!r} is none of {', '.join(TASKS)}")
    return TASKS[name]


def submission_paths(task, flags, submission=None):
    """{test split: its submission file}: `submission` (a task with one test split), else the run's
    --submission_dir's files."""
    if submission:
        return {task.tests[0]: submission}
    return {name: os.path.join(flags.get('submission_dir') or 'submission/', task.submissions[name])
            for name in task.tests}


def test_splits(task, data_dir):
    """The task's test splits as Examples with their public labels: Story Cloze's from its test CSV alone, the
    others' by the registry's reader."""
    if task.name == 'rocstories':
        stories, endings1, endings2, y = rocstories_csv(os.path.join(data_dir, ROC_TEST))
        return {'test': Examples((stories, endings1, endings2), np.asarray(y, np.int32),
                                 [str(i) for i in range(len(y))])}
    splits = task.load(data_dir)
    return {name: splits[name] for name in task.tests}


def read_submission(path):
    """(ids, prediction strings) of a submission file: `index<TAB>prediction`, then a row per example."""
    with open(path, encoding='utf-8') as f:
        rows = [line.rstrip('\n').split('\t') for line in f if line.strip()]
    if not rows or rows[0] != ['index', 'prediction'] or any(len(r) != 2 for r in rows):
        raise InputError(f"{path}: expected the header index<TAB>prediction and two fields a row: is it a submission "
                         "that train.py wrote?")
    return [r[0] for r in rows[1:]], [r[1] for r in rows[1:]]


def submission_scores(task, splits, paths):
    """{split: {metric name: value}} of the submissions `paths` ({split: file}) against the labels of `splits`
    (Examples)."""
    scores = {}
    for name, path in paths.items():
        ids, predictions = read_submission(path)
        examples = splits[name]
        if ids != [str(i) for i in examples.ids]:
            raise InputError(f"{path}: its {len(ids)} rows are not the {len(examples.ids)} examples of the {name} file "
                             f"in order: is it this run's submission, for these data?")
        unknown = sorted(set(predictions) - set(task.labels))
        if unknown:
            raise InputError(f"{path}: predictions {', '.join(unknown[:3])} are not {task.title}'s labels "
                             f"({', '.join(task.labels)})")
        scores[name] = tasks.score(task, [task.labels.index(p) for p in predictions], examples)
    return scores


def best_evaluation(task, evaluations):
    """The first best of a run's evaluations by the task's first metric on the valid split, as the original picks
    its best parameters."""
    first = 'va_' + task.metrics[0].name
    best = evaluations[int(np.argmax([e[first] for e in evaluations]))]
    return best


def report(task, evaluations, scores):
    """Print the paper's metrics of a run in the paper's units (percent), one aligned line each, and return them
    ({line's label: value}): the valid split's from the best of the run's `evaluations` (best_evaluation), then
    each split of `scores` ({split: {metric name: value}}: the other dev sets, the test sets whose labels are
    public)."""
    best = best_evaluation(task, evaluations)
    rows = [(task.valid, {m.name: best['va_' + m.name] for m in task.metrics})] + list(scores.items())
    lines = {f"{task.title} {split.replace('_', ' ').title()} {m.title}": values[m.name]
             for split, values in rows for m in task.metrics}
    width = max(len(label) for label in lines) + 1
    for label, value in lines.items():
        print(f'{label + ":":<{width}} {value:.2f}')
    return lines


def metric_curve(evaluation):
    """The (ylabel, train key, valid key) of the metric an evaluation line logs first after the costs."""
    name = next(k[3:] for k in evaluation if k.startswith('tr_') and k != 'tr_cost')
    return (name if name != 'acc' else 'accuracy') + ' (%)', 'tr_' + name, 'va_' + name


def read_log(path):
    """(desc, evaluations) of a train.py log: the flags' desc (else the file's name) and the evaluation lines."""
    flags, evaluations = read_run(path)
    return str(flags.get('desc') or os.path.splitext(os.path.basename(path))[0]), evaluations


def read_run(path):
    """(flags, evaluations) of a train.py log: its first line (the run's flags) and its evaluation lines, checked."""
    if not os.path.isfile(path):
        raise InputError(f"log {path!r} not found: give the log/{{desc}}.jsonl that train.py wrote")
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    records = []
    for i, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}, line {i}: not JSON ({err.msg}): is it a log that train.py wrote?") from err
    if not records or not isinstance(records[0], dict):
        raise InputError(f"{path}: empty, or its first line is not the run's flags: is it a log that train.py wrote?")
    keys = ['n_updates', COSTS[1], COSTS[2]]
    for i, record in enumerate(records[1:], start=2):
        missing = [k for k in keys if not isinstance(record, dict) or k not in record]
        if not missing:
            metric = next((k for k in record if k.startswith('tr_') and k != 'tr_cost'), 'tr_acc')
            missing = [k for k in (metric, 'va_' + metric[3:]) if k not in record]
        if missing:
            raise InputError(f"{path}, line {i}: no {', '.join(missing)}: is it a log that train.py wrote?")
    return records[0], records[1:]


def plot(log_paths, out_path):
    """Learning curves of the runs in `log_paths` to the PNG `out_path`: tr_cost and va_cost against n_updates in
    one panel, the first run's first metric (tr_acc and va_acc for accuracy) in the other; one colour per run
    (labelled by its desc), train solid, valid dashed. A log without evaluations yet draws nothing but keeps its
    colour and label."""
    runs = [read_log(path) for path in log_paths]
    curves = [COSTS, next((metric_curve(ev[0]) for _, ev in runs if ev), ('accuracy (%)', 'tr_acc', 'va_acc'))]
    from matplotlib.figure import Figure  # here: train.py imports this module too

    fig = Figure(figsize=(12, 4.5), dpi=100, layout='constrained')
    axes = fig.subplots(1, 2)
    descs = [desc for desc, _ in runs]
    for i, ((desc, evaluations), path) in enumerate(zip(runs, log_paths)):
        label = desc if descs.count(desc) == 1 else f'{desc} ({path})'
        x = [e['n_updates'] for e in evaluations]
        for ax, (_, tr, va) in zip(axes, curves):  # a run of another task has no value of this metric
            ax.plot(x, [e.get(tr, np.nan) for e in evaluations], color=f'C{i % 10}', linestyle='-', marker='o',
                    markersize=3, label=f'{label} train')
            ax.plot(x, [e.get(va, np.nan) for e in evaluations], color=f'C{i % 10}', linestyle='--', marker='o',
                    markersize=3, label=f'{label} valid')
    for ax, (ylabel, _, _) in zip(axes, curves):
        ax.set_xlabel('updates')
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small')
    save_png(fig, out_path)


def save_png(fig, out_path):
    """A matplotlib Figure written as the PNG `out_path` (rendered before the file is opened: a failure leaves no
    temporary file behind)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    with atomic_write(out_path, 'wb') as f:
        f.write(buf.getvalue())


def analyse(args):
    check_files(args)
    if args.plot is not None:
        plot(args.logs, args.plot)
    elif args.table or args.figure2:
        import report_tables  # it imports this module
        print(report_tables.tables(args.logs) if args.table else report_tables.figure2(args.logs, args.figure2),
              end='')
    else:
        analyse_log(args.log, args.data_dir, args.submission)


def main(argv=None):
    exit_on_input_error(analyse, parse_args(argv))


if __name__ == '__main__':
    main()
