"""The paper's figures (Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training"), in one
place, for the programs that print a run's figures beside them (analysis.py --table, zeroshot.py --checkpoints).
The standard library alone.

Where each figure comes from:
- Tables 2-4: the paper's Tables 2, 3 and 4 (test figures) as the project's steering notes transcribe them (a
  PAPER.md beside the repository, not part of it), and several independent transcriptions of the paper agree.
- Table 5: the per-task columns were checked against several independent transcriptions of the paper's Table 5
  (Chinese, Spanish and English), which all give the figures below; the paper's PDF itself was not read here. Its
  "full" row repeats the test figures of Tables 2 and 4; its MNLI column (81.8) looks like the mean of MNLI-m and
  MNLI-mm (82.1, 81.4): an observation, the paper does not say.
- Figure 2 right is normalised "between a random guess baseline and the current state-of-the-art with a single
  model" (its caption); the paper prints neither figure. RANDOM are the chance levels of the metrics; SOTA is this
  project's reading of the caption: the best single-model figure of the paper's own tables (SST-2: Sparse byte
  mLSTM, Table 4; CoLA and RACE: the paper's own fine-tuned model, Tables 3-4, the previous best RACE figure being
  an ensemble of 9), and for DPRD, which no table has, Peng et al. (2015)'s accuracy on Rahman and Ng's test set
  as remembered, not confirmed here (UNVERIFIED lists it).
"""
from typing import NamedTuple


class Result(NamedTuple):
    """One figure of Tables 2-4: the paper's row name, the task (tasks.TASKS' name; None: no task of this project,
    GLUE's score), the metric (the task's Metric.name: the log's va_<metric>), the metric as the paper names it,
    the test split it was measured on (the task's split name), and the value."""
    table: str
    name: str
    task: str
    metric: str
    unit: str
    split: str
    value: float


RESULTS = [
    Result('Table 2', 'MNLI-m', 'mnli', 'acc', 'acc', 'test_matched', 82.1),
    Result('Table 2', 'MNLI-mm', 'mnli', 'acc', 'acc', 'test_mismatched', 81.4),
    Result('Table 2', 'SNLI', 'snli', 'acc', 'acc', 'test', 89.9),
    Result('Table 2', 'SciTail', 'scitail', 'acc', 'acc', 'test', 88.3),
    Result('Table 2', 'QNLI', 'qnli', 'acc', 'acc', 'test', 88.1),
    Result('Table 2', 'RTE', 'rte', 'acc', 'acc', 'test', 56.0),
    Result('Table 3', 'Story Cloze', 'rocstories', 'acc', 'acc', 'test', 86.5),
    Result('Table 3', 'RACE-m', 'race', 'RACE-m', 'acc', 'test', 62.9),
    Result('Table 3', 'RACE-h', 'race', 'RACE-h', 'acc', 'test', 57.4),
    Result('Table 3', 'RACE', 'race', 'all', 'acc', 'test', 59.0),
    Result('Table 4', 'CoLA', 'cola', 'mc', 'mc', 'test', 45.4),
    Result('Table 4', 'SST-2', 'sst2', 'acc', 'acc', 'test', 91.3),
    Result('Table 4', 'MRPC', 'mrpc', 'F1', 'F1', 'test', 82.3),
    Result('Table 4', 'STS-B', 'stsb', 'pearson', 'pc', 'test', 82.0),
    Result('Table 4', 'QQP', 'qqp', 'F1', 'F1', 'test', 70.3),
    Result('Table 4', 'GLUE', None, None, 'score', 'test', 72.8),
]
TABLE_TITLES = {'Table 2': 'Table 2: natural language inference',
                'Table 3': 'Table 3: question answering and commonsense reasoning',
                'Table 4': 'Table 4: semantic similarity and classification',
                'Table 5': 'Table 5: ablations'}

# Table 5: its columns (the paper's heading, the task, its metric) and rows (variant -> Avg, then one per column).
ABLATION_COLUMNS = [('CoLA (mc)', 'cola', 'mc'), ('SST2 (acc)', 'sst2', 'acc'), ('MRPC (F1)', 'mrpc', 'F1'),
                    ('STSB (pc)', 'stsb', 'pearson'), ('QQP (F1)', 'qqp', 'F1'), ('MNLI (acc)', 'mnli', 'acc'),
                    ('QNLI (acc)', 'qnli', 'acc'), ('RTE (acc)', 'rte', 'acc')]
ABLATIONS = {
    'full': ('Transformer w/ aux LM (full)', 74.7, [45.4, 91.3, 82.3, 82.0, 70.3, 81.8, 88.1, 56.0]),
    'no_pretraining': ('Transformer w/o pre-training', 59.9, [18.9, 84.0, 79.4, 30.9, 65.5, 75.7, 71.2, 53.8]),
    'no_aux_lm': ('Transformer w/o aux LM', 75.0, [47.9, 92.0, 84.9, 83.2, 69.8, 81.1, 86.9, 54.4]),
    'lstm': ('LSTM w/ aux LM', 69.1, [30.3, 90.5, 83.2, 71.8, 68.1, 73.7, 81.1, 54.6]),
}

# Figure 2 right: the zero-shot tasks, their metric (zeroshot.py's score, in percent or x 100), chance level and
# the state of the art the paper normalises by (see the docstring).
ZERO_SHOT_TASKS = ('sst2', 'cola', 'race', 'dprd')
RANDOM = {'sst2': 50.0, 'cola': 0.0, 'race': 25.0, 'dprd': 50.0}
SOTA = {'sst2': 93.2, 'cola': 45.4, 'race': 59.0, 'dprd': 76.4}
SOTA_SOURCES = {'sst2': 'Table 4, Sparse byte mLSTM (test accuracy)',
                'cola': "Table 4, the paper's fine-tuned model (test Matthews corr.)",
                'race': "Table 3, the paper's fine-tuned model (test accuracy; the previous best, 53.3, is a 9-model "
                        "ensemble)",
                'dprd': "Peng et al. 2015, Rahman and Ng's test set (not in the paper; unverified)"}
UNVERIFIED = ('dprd',)


def normalised(task, value):
    """The paper's relative zero-shot performance (Figure 2 right): (value - random) / (state of the art -
    random)."""
    return (value - RANDOM[task]) / (SOTA[task] - RANDOM[task])
