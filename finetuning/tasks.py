"""The paper's fine-tuning tasks (Radford et al. 2018, Tables 2-4), one registry entry each: the reader of its
files, its shape (classification, entailment, similarity, multiple choice), its labels, the metrics the paper
reports, its splits and its submission files; and the scoring of predictions. finetuning/inputs.py turns a task's
texts into the model's inputs.

How a training script uses it (train.py):
    task = TASKS[name]
    splits = task.load(data_dir or task.data_dir)                       # {split: Examples of str}
    ... the model's inputs and logits (inputs.py, model.Model(Config(..., head=Head(**task.head)))) ...
    score(task, predictions(task, logits), splits[task.valid])[task.metrics[0].name]   # selects the best parameters
"""
from typing import NamedTuple

import numpy as np

import datasets
from engine import flags
from finetuning import metrics
from datasets import Examples

SHAPES = ('classification', 'entailment', 'similarity', 'multiple_choice')


class Metric(NamedTuple):
    """One figure the paper reports: its name (the log's keys are tr_<name> and va_<name>), the function of
    (predictions, labels), the subset it covers (a value of Examples.group; None: all examples), and its title in
    the --analysis lines."""
    name: str
    fn: object
    group: str = None
    title: str = 'Accuracy'


class Task(NamedTuple):
    """A registry entry. load(data_dir) -> {split: Examples}; paths(data_dir) -> the files it reads. `labels` the
    label strings in class-id order (None: a regression on 0-5); `n_choices` answers per example (multiple choice);
    `n_context` leading text fields that form the context (multiple choice). `metrics[0]` selects the best
    parameters on `valid`; `evals` more labelled splits to report; `tests` the splits to predict, `test_labels`
    whether their labels are public (scored by --analysis); `submissions` split -> file name; `truncate` multiple
    choice's truncation rule, 'roc' or 'context' (the other shapes have one rule each); `title` the task's name in
    the --analysis lines (the paper's figures are paper/results.py's). Its default folder is flags.DATA_DIRS[name]
    (there, so that --help answers before this module's imports)."""
    name: str
    load: object
    paths: object
    shape: str
    labels: tuple
    metrics: tuple
    url: str
    train: str = 'train'
    valid: str = 'dev'
    evals: tuple = ()
    tests: tuple = ('test',)
    test_labels: bool = False
    submissions: dict = None
    truncate: str = None
    n_choices: int = 0
    n_context: int = 0
    title: str = None

    @property
    def data_dir(self):
        return flags.DATA_DIRS[self.name]

    @property
    def n_seq(self):
        """Sequences per example: 1, 2 (similarity's two orders) or n_choices."""
        return {'similarity': 2, 'multiple_choice': self.n_choices}.get(self.shape, 1)

    @property
    def n_out(self):
        """Outputs of the head per example: 1 per choice (multiple choice), 1 for a regression, else a class
        each."""
        return 1 if self.shape == 'multiple_choice' or self.labels is None else len(self.labels)

    @property
    def head(self):
        """The fields of the model's head (model.Head) that follow from the task's shape and labels."""
        return dict(n_seq=self.n_seq, n_out=self.n_out, pool='choices' if self.shape == 'multiple_choice' else 'sum',
                    loss='softmax' if self.labels else 'squared')


def rocstories_splits(data_dir):
    """ROCStories' splits as Examples: 'train' and 'valid' the original's split of the val CSV, 'test' the test CSV
    with its public labels; fields (story, ending 1, ending 2)."""
    (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3, teY) = datasets.rocstories(data_dir)
    return {name: Examples(tuple(map(list, texts)), y, [str(i) for i in range(len(y))])
            for name, texts, y in [('train', (trX1, trX2, trX3), trY), ('valid', (vaX1, vaX2, vaX3), vaY),
                                   ('test', (teX1, teX2, teX3), teY)]}


def glue(name, folder, labels, metric, submission, shape='entailment', max_skipped=0.0, **kwargs):
    """A GLUE task's entry: its files in <folder> as unpacked, test labels private, the submission GLUE scores."""
    load, paths = datasets.tsv_task(datasets.GLUE_FILES[name], labels, datasets.GLUE_URL, max_skipped)
    kwargs.setdefault('submissions', {'test': submission})
    return Task(name, load, paths, shape, labels, metric, datasets.GLUE_URL, title=folder, **kwargs)


BINARY = ('0', '1')
NLI3 = ('entailment', 'neutral', 'contradiction')
NLI2 = ('entailment', 'not_entailment')
ACC = (Metric('acc', metrics.accuracy),)
F1_ACC = (Metric('F1', metrics.f1, title='F1'), Metric('acc', metrics.accuracy))
scitail_load, scitail_paths = datasets.tsv_task(datasets.SCITAIL_FILES, ('entails', 'neutral'), datasets.SCITAIL_URL)

TASKS = {task.name: task for task in [
    # The labels are the choices' indices: the original's submission writes the index of the chosen ending.
    Task('rocstories', rocstories_splits, datasets.rocstories_paths, 'multiple_choice', ('0', '1'), ACC,
         datasets.ROC_URL, valid='valid', test_labels=True,
         submissions={'test': 'ROCStories.tsv'}, truncate='roc', n_choices=2, n_context=1, title='ROCStories'),
    glue('sst2', 'SST-2', BINARY, ACC, 'SST-2.tsv', shape='classification'),
    glue('cola', 'CoLA', BINARY, (Metric('mc', metrics.matthews_corrcoef, title='Matthews Corr.'),), 'CoLA.tsv',
         shape='classification'),
    glue('mnli', 'MNLI', NLI3, ACC, None,
         valid='dev_matched', evals=('dev_mismatched',), tests=('test_matched', 'test_mismatched'),
         submissions={'test_matched': 'MNLI-m.tsv', 'test_mismatched': 'MNLI-mm.tsv'}),
    glue('qnli', 'QNLI', NLI2, ACC, 'QNLI.tsv'),
    glue('rte', 'RTE', NLI2, ACC, 'RTE.tsv'),
    Task('snli', datasets.snli, datasets.snli_paths, 'entailment', NLI3, ACC, datasets.SNLI_URL,
         test_labels=True, submissions={'test': 'SNLI.tsv'}, title='SNLI'),
    Task('scitail', scitail_load, scitail_paths, 'entailment', ('entails', 'neutral'), ACC,
         datasets.SCITAIL_URL, test_labels=True, submissions={'test': 'SciTail.tsv'},
         title='SciTail'),
    glue('mrpc', 'MRPC', BINARY, F1_ACC, 'MRPC.tsv', shape='similarity'),
    glue('qqp', 'QQP', BINARY, F1_ACC, 'QQP.tsv', shape='similarity',
         max_skipped=datasets.QQP_MAX_SKIPPED),
    glue('stsb', 'STS-B', None, (Metric('pearson', metrics.pearson, title='Pearson'),
                                 Metric('spearman', metrics.spearman, title='Spearman')),
         'STS-B.tsv', shape='similarity'),
    Task('race', datasets.race, datasets.race_paths, 'multiple_choice', ('A', 'B', 'C', 'D'),
         (Metric('all', metrics.accuracy), Metric('RACE-m', metrics.accuracy, 'middle', 'RACE-m Accuracy'),
          Metric('RACE-h', metrics.accuracy, 'high', 'RACE-h Accuracy')), datasets.RACE_URL,
         test_labels=True, submissions={'test': 'RACE.tsv'},
         truncate='context', n_choices=4, n_context=2, title='RACE'),
]}


def score(task, predictions, examples):
    """{metric name: value in the paper's units (times 100)} of `predictions` (class ids, or scores for a
    regression) on `examples` (labelled)."""
    predictions = np.asarray(predictions)
    scores = {}
    for metric in task.metrics:
        keep = slice(None) if metric.group is None else np.asarray(examples.group) == metric.group
        scores[metric.name] = 100.0 * metric.fn(predictions[keep], np.asarray(examples.y)[keep])
    return scores


def predictions(task, logits):
    """The predictions of the model's logits (n, n_logits): the class (or choice) with the largest logit (the first
    of equal ones), or the single output of a regression."""
    return logits[:, 0] if task.labels is None else np.argmax(logits, 1)


def prediction_strings(task, predictions):
    """A submission's prediction column: the label string of each class id, or each score with 3 decimals."""
    if task.labels is None:
        return ['%.3f' % p for p in predictions]
    return [task.labels[p] for p in predictions]
