"""The paper's Tables 2-5 with the runs' figures beside the paper's, and Figure 2 (left), from train.py logs
(analysis.py --table, --figure2). A run's figure is the dev figure of its best evaluation (runs.best_evaluation)
and, where the test labels are public (SNLI, SciTail, RACE, Story Cloze), its submission's test figure.

Which table a log belongs to is read from its flags (its first line): --n_transfer equal to --n_layer with
--lm_coef above 0 is the full recipe (Tables 2-4, Table 5's first row); --n_transfer -1 "w/o pre-training";
--lm_coef 0 "w/o aux LM"; any other --n_transfer is a point of Figure 2 (left). The LSTM row of Table 5 is the
paper's alone (README.md says why). --table leaves out the logs that are not runs of the paper's tasks with an
evaluation (a pre-training log, a run stopped before its first evaluation), with a line each saying why.
"""
import json
import os

import numpy as np

from paper import results
from paper.runs import (best_evaluation, read_run, save_png, submission_paths, submission_scores, task_of,
                      test_splits)
from finetuning.tasks import TASKS
from utils import InputError

# Flags whose value shows that a run is not the paper's recipe (train.py's defaults are the paper's).
RECIPE = {'n_layer': 12, 'n_embd': 768, 'n_head': 12, 'n_iter': 3, 'lr': 6.25e-5}


class Run:
    """One log: its path, flags, task, variant (variant_of), best evaluation and test figures ({split: {metric:
    value}}, None when its submission is not there)."""

    def __init__(self, path):
        self.path = path
        self.flags, evaluations = read_run(path)
        self.task = task_of(self.flags, path)
        if not evaluations:
            raise InputError(f"{path}: no evaluation yet (the run is before its first one, or stopped before it: "
                             "train.py --resume continues it)")
        self.best = best_evaluation(self.task, evaluations)
        self.variant = variant_of(self.flags)
        self.tests = None

    def dev(self, metric):
        return self.best.get('va_' + metric)

    def notes(self):
        """The ways the run differs from the paper's recipe."""
        notes = [f'{k} {self.flags[k]}' for k, v in RECIPE.items() if k in self.flags and self.flags[k] != v]
        batch = self.flags.get('n_batch', 8) * self.flags.get('n_gpu', 4)
        return notes + ([f'batch {batch}'] if batch != 32 else [])


def variant_of(flags):
    """'full', 'no_pretraining', 'no_aux_lm' (Table 5's rows), or None (a partial transfer, or both ablations)."""
    n_transfer, lm_coef = flags.get('n_transfer', 12), flags.get('lm_coef', 0.5)
    full_transfer = n_transfer == flags.get('n_layer', 12)
    if lm_coef > 0:
        return 'full' if full_transfer else 'no_pretraining' if n_transfer == -1 else None
    return 'no_aux_lm' if full_transfer else None


def why_not_a_run(path, err):
    """Why the log `path` is not a run of the paper's tasks, from the InputError `err` that reading it raised: a
    pre-training log (its lines have va_ppl), else err's message without the path."""
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            lines = [json.loads(line) for line in f if line.strip()]
        if any(isinstance(line, dict) and 'va_ppl' in line for line in lines[1:]):
            return "a pre-training log (pretrain.py's): it has no task's figures"
    except ValueError:
        pass
    text = str(err)
    return text[len(path):].lstrip(':, ') if text.startswith(path) else text


def read_runs(log_paths):
    """{(task, variant): the first Run given of it}, the runs of no table, and lines on the logs not used: those
    given twice, and those that are not finished runs of the paper's tasks (a pre-training log, a run without an
    evaluation yet, a file that is no log), left out with the reason. InputError when no log is a run."""
    chosen, others, unused, left_out = {}, [], [], []
    for path in log_paths:
        try:
            run = Run(path)
        except InputError as err:
            left_out.append(f"{path}: left out: {why_not_a_run(path, err)}")
            continue
        key = (run.task.name, run.variant)
        if run.variant is None:
            others.append(run)
        elif key in chosen:
            unused.append(f"{path}: not used ({chosen[key].path} gives {run.task.name}, {run.variant} already)")
        else:
            chosen[key] = run
            if run.task.test_labels and run.variant == 'full':
                paths = submission_paths(run.task, run.flags)
                if all(os.path.isfile(p) for p in paths.values()):
                    data_dir = run.flags.get('data_dir') or run.task.data_dir
                    run.tests = submission_scores(run.task, test_splits(run.task, data_dir), paths)
    if left_out and not chosen and not others:
        raise InputError(f"no log given is a run of the paper's tasks with an evaluation ({'; '.join(left_out)}): "
                         "give the logs of train.py's runs")
    return chosen, others, unused + left_out


def cell(value):
    return '-' if value is None else f'{value:.1f}'


def results_table(table, chosen):
    """Markdown lines of one of Tables 2-4: a row per paper result."""
    lines = [f'### {results.TABLE_TITLES[table]}', '',
             "| paper's row | metric | paper (test) | run (dev) | run (test) | log | notes |", '|---' * 7 + '|']
    for result in (r for r in results.RESULTS if r.table == table):
        run = chosen.get((result.task, 'full'))
        dev = test = None
        notes = run.notes() if run else []
        if run and result.split == run.task.tests[0]:  # the test set of the dev set the log holds
            dev = run.dev(result.metric)
        elif run:
            notes.append(f"the log holds no {result.split.replace('test', 'dev')} figure (train.py --analysis "
                         f"prints it)")
        if run and run.task.test_labels:
            test = run.tests[result.split][result.metric] if run.tests else None
            notes += [] if run.tests else ['no submission file (train.py --submit writes it)']
        elif run:
            notes.append(f"private test labels: GLUE's server scores {run.task.submissions[result.split]}")
        if result.task is None:
            notes = ["GLUE's server score over its nine tasks' test sets"]
        lines.append(f'| {result.name} | {result.unit} | {result.value:.1f} | {cell(dev)} | {cell(test)} | '
                     f'{run.path if run else "-"} | {", ".join(notes)} |')
    return lines


def ablation_table(chosen):
    """Markdown lines of Table 5: for each row the paper's figures, then the runs' dev figures."""
    head = ['method', 'figures', 'Avg.'] + [name for name, _, _ in results.ABLATION_COLUMNS]
    lines = [f'### {results.TABLE_TITLES["Table 5"]}', '', '| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    used = []
    for variant, (name, avg, values) in results.ABLATIONS.items():
        lines.append(f'| {name} | paper | {avg:.1f} | ' + ' | '.join(f'{v:.1f}' for v in values) + ' |')
        if variant == 'lstm':
            lines.append(f'| {name} | run | not reproduced (README.md, "The paper\'s analysis") |' + ' |' * 8)
            continue
        runs = [chosen.get((task, variant)) for _, task, _ in results.ABLATION_COLUMNS]
        figures = [run.dev(metric) if run else None for run, (_, _, metric) in zip(runs, results.ABLATION_COLUMNS)]
        mean = None if None in figures else float(np.mean(figures))
        lines.append(f'| {name} | run (dev) | {cell(mean)} | ' + ' | '.join(map(cell, figures)) + ' |')
        used += [f'- {name}, {column}: {run.path}' for run, (column, _, _) in zip(runs, results.ABLATION_COLUMNS) if run]
    return lines + ['', "The runs' figures are their best evaluations' dev figures (MNLI: the matched dev set; the "
                    "paper's MNLI column looks like the mean of its matched and mismatched test figures). Logs:"] + used


def tables(log_paths):
    """The paper's Tables 2, 3, 4 (and 5 when an ablation run is among the logs) as Markdown, with the runs'
    figures; returns the text."""
    chosen, others, unused = read_runs(log_paths)
    lines = []
    for table in ('Table 2', 'Table 3', 'Table 4'):
        lines += results_table(table, chosen) + ['']
    if any(variant != 'full' for _, variant in chosen):
        lines += ablation_table(chosen) + ['']
    columns = {task for _, task, _ in results.ABLATION_COLUMNS}
    for (task, variant), run in chosen.items():
        if variant != 'full' and task not in columns:
            lines.append(f"{run.path}: in no table: Table 5 has no {run.task.title} column (the run is of its row "
                         f"{results.ABLATIONS[variant][0]!r})")
    for run in others:
        lines.append(f"{run.path}: in no table (--n_transfer {run.flags.get('n_transfer')}, --lm_coef "
                     f"{run.flags.get('lm_coef')}): a point of Figure 2 (left), analysis.py --figure2")
    return '\n'.join(lines + unused).rstrip() + '\n'


def figure2(log_paths, out_path):
    """Figure 2 (left) of an n_transfer sweep: each task's best dev figure (solid) and the train figure of that
    evaluation (dashed) against the layers transferred (-1: none), drawn to the PNG `out_path`; returns the
    Markdown table of the points."""
    points = {}
    for path in log_paths:
        run = Run(path)
        if 'n_transfer' not in run.flags:
            raise InputError(f"{path}: its first line has no n_transfer: is it a log that train.py wrote?")
        metric = run.task.metrics[0].name
        points.setdefault(run.task.name, []).append(
            (int(run.flags['n_transfer']), run.dev(metric), run.best['tr_' + metric], path))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100, layout='constrained')
    ax = fig.subplots()
    lines = ['| task | layers transferred | dev | train | log |', '|---|---|---|---|---|']
    for i, (name, rows) in enumerate(points.items()):
        rows.sort()
        x = [r[0] for r in rows]
        ax.plot(x, [r[1] for r in rows], color=f'C{i}', marker='o', label=f'{TASKS[name].title} dev')
        ax.plot(x, [r[2] for r in rows], color=f'C{i}', linestyle='--', marker='o', label=f'{TASKS[name].title} train')
        lines += [f'| {TASKS[name].title} | {"none" if k < 0 else k} | {dev:.1f} | {tr:.1f} | {path} |'
                  for k, dev, tr, path in rows]
    ticks = sorted({r[0] for rows in points.values() for r in rows})
    ax.set_xticks(ticks, ['none' if k < 0 else str(k) for k in ticks])
    ax.set_xlabel('layers transferred')
    ax.set_ylabel("dev (solid) and train (dashed): the task's metric (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
    save_png(fig, out_path)
    return '\n'.join(lines) + '\n'
