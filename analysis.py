"""Story Cloze test accuracy of a submission, and the valid accuracy of the run's best evaluation; learning curves;
and (report) the paper's metrics of any task's run, which train.py --analysis prints.
    python analysis.py --data_dir data/ --submission submission/ROCStories.tsv --log log/rocstories.jsonl
    python analysis.py --plot curves.png log/a.jsonl [log/b.jsonl ...]
"""
import argparse
import io
import json
import os

from utils import InputError, atomic_write, exit_on_input_error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--plot', metavar='OUT_PNG', help='draw the learning curves of the LOGS to this PNG')
    parser.add_argument('logs', nargs='*', metavar='LOG', help='with --plot: train.py logs (log/{desc}.jsonl)')
    parser.add_argument('--data_dir', help='the folder of the Story Cloze CSVs (the test labels)')
    parser.add_argument('--submission', help='the predictions, submission/ROCStories.tsv')
    parser.add_argument('--log', help="the run's log, log/{desc}.jsonl")
    args = parser.parse_args(argv)
    accuracy_flags = [args.data_dir, args.submission, args.log]
    if args.plot is not None:
        if not args.logs:
            parser.error('--plot needs at least one LOG')
        if any(flag is not None for flag in accuracy_flags):
            parser.error('--plot takes LOG files, not --data_dir, --submission or --log: run them separately')
    elif args.logs:
        parser.error('LOG files are drawn with --plot OUT_PNG')
    elif any(flag is None for flag in accuracy_flags):
        parser.error('give --plot OUT_PNG LOG..., or --data_dir, --submission and --log together')
    return args


def check_files(args):
    """InputError when a file or folder to read is missing (checked before numpy and pandas are imported)."""
    files = [('log', path, 'a log/{desc}.jsonl that train.py wrote') for path in args.logs] + [
        ('--log', args.log, 'the log/{desc}.jsonl that train.py wrote'),
        ('--submission', args.submission, 'the submission/ROCStories.tsv that train.py --submit wrote')]
    for what, path, hint in files:
        if path is not None and not os.path.isfile(path):
            raise InputError(f"{what} {path!r} not found: give {hint}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise InputError(f"--data_dir {args.data_dir!r} not found: give the folder of the Story Cloze CSVs")


if __name__ == '__main__':  # --help, a bad flag and a missing file answer now, before the imports below
    exit_on_input_error(check_files, parse_args())

import numpy as np  # noqa: E402 (after the command line is checked)
import pandas as pd  # noqa: E402

from datasets import ROC_TEST, rocstories_csv  # noqa: E402
from tasks import TASKS  # noqa: E402

COSTS = ('cost', 'tr_cost', 'va_cost')  # the first panel; the second: the task's first metric (tr_acc, va_acc, ...)


def rocstories(data_dir, pred_path, log_path):
    """Print (report) the va_acc of the first best evaluation in `log_path` and the accuracy of the submission
    `pred_path` on the test labels; return both (percent)."""
    preds = pd.read_csv(pred_path, delimiter='\t')['prediction'].values.tolist()
    _, _, _, labels = rocstories_csv(os.path.join(data_dir, ROC_TEST))
    test_accuracy = np.mean(np.array(labels) == np.array(preds)) * 100.
    return tuple(report(TASKS['rocstories'], read_log(log_path)[1], {'test': {'acc': test_accuracy}}).values())


def report(task, evaluations, scores):
    """Print the paper's metrics of a run in the paper's units (percent), one aligned line each, and return them
    ({line's label: value}): the valid split's from the best of the run's `evaluations` (its log's evaluation
    lines; by the task's first metric, the first of equal ones, as the original picks its best parameters), then
    each split of `scores` ({split: {metric name: value}}: the other dev sets, the test sets whose labels are
    public)."""
    first = 'va_' + task.metrics[0].name
    best = evaluations[int(np.argmax([e[first] for e in evaluations]))]
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
    desc = records[0].get('desc') or os.path.splitext(os.path.basename(path))[0]
    return str(desc), records[1:]


def plot(log_paths, out_path):
    """Learning curves of the runs in `log_paths` to the PNG `out_path`: tr_cost and va_cost against n_updates in
    one panel, the first run's first metric (tr_acc and va_acc for accuracy) in the other; one colour per run
    (labelled by its desc), train solid, valid dashed. A log without evaluations yet draws nothing but keeps its
    colour and label."""
    runs = [read_log(path) for path in log_paths]
    curves = [COSTS, next((metric_curve(ev[0]) for _, ev in runs if ev), ('accuracy (%)', 'tr_acc', 'va_acc'))]
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # here: train.py imports this module too
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
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
    buf = io.BytesIO()  # rendered before the file is opened: a failure leaves no temporary file behind
    fig.savefig(buf, format='png')
    with atomic_write(out_path, 'wb') as f:
        f.write(buf.getvalue())


def analyse(args):
    check_files(args)
    if args.plot is not None:
        plot(args.logs, args.plot)
        return
    if not read_log(args.log)[1]:
        raise InputError(f"--log {args.log!r} has no evaluation yet: wait for the run's first one")
    rocstories(args.data_dir, args.submission, args.log)


def main(argv=None):
    exit_on_input_error(analyse, parse_args(argv))


if __name__ == '__main__':
    main()
