"""A run's figures, read from what train.py wrote: its log (flags, evaluations, the best one), its submission scored
against the public test labels (SNLI, SciTail, RACE, Story Cloze), the report that train.py --analysis prints, and
the learning curves. analysis.py is their command line; the original's analysis.rocstories is rocstories here."""
import io
import json
import os

import numpy as np

from datasets import ROC_TEST, Examples, rocstories_csv
from finetuning import tasks
from finetuning.tasks import TASKS
from utils import InputError, atomic_write

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
    from matplotlib.figure import Figure  # here: train.py imports this module too, and plots nothing

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
