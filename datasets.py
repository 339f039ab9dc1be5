"""The readers of the paper's tasks' files as their publishers distribute them: ROCStories / Story Cloze Test 2016
(with the original's train/valid split), GLUE, SNLI, SciTail, RACE; and DPRD, which only the zero-shot heuristics read
(zeroshot.py). finetuning/inputs.py makes the model's inputs of them."""
import csv
import io
import json
import os
import re
from typing import NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split

from utils import InputError

ROC_VAL = 'cloze_test_val__spring2016 - cloze_test_ALL_val.csv'
ROC_TEST = 'cloze_test_test__spring2016 - cloze_test_ALL_test.csv'
ROC_HEADER = ['InputStoryid', 'InputSentence1', 'InputSentence2', 'InputSentence3', 'InputSentence4',
              'RandomFifthSentenceQuiz1', 'RandomFifthSentenceQuiz2', 'AnswerRightEnding']
ROC_URL = 'https://cs.rochester.edu/nlp/rocstories/'
SPLIT_SEED = 3535999445


def rocstories_csv(path):
    """Stories (4 sentences joined by spaces), both endings and the 0/1 label of each row of one CSV."""
    if not os.path.isfile(path):
        raise InputError(f"{path!r} not found: download the Story Cloze Test 2016 CSVs from {ROC_URL}")
    rows = read_csv(path)
    if not rows or rows[0] != ROC_HEADER:
        found = rows[0] if rows else 'an empty file'
        raise InputError(f"{path}, line 1: expected the Story Cloze header {','.join(ROC_HEADER)}, found {found}: "
                         f"download the Story Cloze Test 2016 CSVs from {ROC_URL}")
    st, ct1, ct2, y = [], [], [], []
    for i, line in enumerate(rows[1:], start=2):
        if len(line) != len(ROC_HEADER):
            raise InputError(f"{path}, line {i}: expected {len(ROC_HEADER)} columns, found {len(line)}: "
                             f"the file is cut or not a Story Cloze CSV: download it again from {ROC_URL}")
        if line[-1] not in ('1', '2'):
            raise InputError(f"{path}, line {i}: the right ending must be 1 or 2, found {line[-1]!r}: "
                             f"correct that line or download the file again from {ROC_URL}")
        st.append(' '.join(line[1:5]))
        ct1.append(line[5])
        ct2.append(line[6])
        y.append(int(line[-1]) - 1)
    if not y:
        raise InputError(f"{path}: no stories after the header: download the Story Cloze CSVs again from {ROC_URL}")
    return st, ct1, ct2, y


def read_csv(path):
    """The rows of a UTF-8 CSV (a spreadsheet's byte-order mark is not part of the header); InputError naming
    the line of a byte that is not UTF-8 or of a field over the csv module's limit."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b'\n') + 1
        raise InputError(f"{path}, line {line}: a byte that is not UTF-8 ({data[err.start:err.start + 1]!r}): save "
                         f"the file as UTF-8 or download it again from {ROC_URL}") from err
    reader = csv.reader(io.StringIO(text))
    try:
        return list(reader)
    except csv.Error as err:
        raise InputError(f"{path}, line {reader.line_num}: {err}: the file is damaged or not a Story Cloze CSV; "
                         f"download it again from {ROC_URL}") from err


def rocstories_paths(data_dir):
    """Paths of the val and test CSVs in `data_dir`; InputError naming both files when either is missing."""
    paths = [os.path.join(data_dir, ROC_VAL), os.path.join(data_dir, ROC_TEST)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"missing ROCStories data: {', '.join(repr(p) for p in missing)} not found. Put the two "
                         f"Story Cloze Test 2016 files '{ROC_VAL}' and '{ROC_TEST}' in --data_dir "
                         f"(now {data_dir!r}); they are available from {ROC_URL}")
    return paths


def rocstories(data_dir, n_train=1497, n_valid=374):
    """The original's split of the val CSV (n_valid examples for validation, the rest, n_train on the real file,
    for training) and the test CSV with its labels (which only the analysis reads).
    Returns (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3, teY); X* lists of str, Y int32."""
    val_path, test_path = rocstories_paths(data_dir)
    storys, comps1, comps2, ys = rocstories_csv(val_path)
    if len(ys) <= n_valid:
        raise InputError(f"{val_path}: {len(ys)} stories, but the split needs more than {n_valid}: {n_valid} for "
                         f"validation and the rest for training; use the whole file from {ROC_URL}")
    teX1, teX2, teX3, teY = rocstories_csv(test_path)
    (trX1, vaX1, trX2, vaX2, trX3, vaX3, trY, vaY) = train_test_split(
        storys, comps1, comps2, ys, test_size=n_valid, random_state=SPLIT_SEED)
    trY = np.asarray(trY, dtype=np.int32)
    vaY = np.asarray(vaY, dtype=np.int32)
    return (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3, np.asarray(teY, dtype=np.int32))


# ------------------------------------------------------------ the paper's other tasks, as their publishers ship them

GLUE_URL = 'https://gluebenchmark.com/tasks'
SNLI_URL = 'https://nlp.stanford.edu/projects/snli/'
SCITAIL_URL = 'https://allenai.org/data/scitail'
RACE_URL = 'https://www.cs.cmu.edu/~glai1/data/race/'


class Examples(NamedTuple):
    """One split: `texts` one list of str per text field (in the model's order), `y` int32 class ids, float32
    scores or None (a test set whose labels are not distributed), `ids` the publisher's example ids (the index
    column of a submission), `group` a subset name per example or None (RACE: middle / high), `n_skipped` the rows
    left out (QQP's malformed rows, SNLI's pairs without a gold label)."""
    texts: tuple
    y: object
    ids: list
    group: object = None
    n_skipped: int = 0


class Tsv(NamedTuple):
    """The layout of one tab-separated file: its columns (for a file without a header row, the names this module
    gives them), whether line 1 is that header, the text columns in the model's order, the label column (None: not
    distributed) and the id column (None: the 0-based row number)."""
    columns: tuple
    has_header: bool
    texts: tuple
    label: str = None
    index: str = None


def open_text(path, url):
    """`path` opened for reading UTF-8 text; a byte-order mark is dropped and lines end at '\\n' only (a stray
    '\\r' stays inside its field; a CRLF's '\\r' is removed by `lines`)."""
    if not os.path.isfile(path):
        raise InputError(f"{path!r} not found: download the data set from {url} and give --data_dir the folder "
                         f"as unpacked")
    return open(path, encoding='utf-8-sig', newline='\n')


def lines(f, path):
    """(line number, text) of each non-empty line of the open file `f`, without its line end."""
    try:
        for i, line in enumerate(f, start=1):
            line = line.rstrip('\n').removesuffix('\r')
            if line:
                yield i, line
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}): is it the file as "
                         f"downloaded?") from err


def label_ids(path, i, value, labels, url):
    """The position of `value` in `labels` (a tuple of label strings), or its float for a regression (labels
    None, a score in [0, 5]); an InputError pointing at `url`, where the right file is, otherwise."""
    fix = f"is it this task's file, as downloaded from {url}? (--dataset chooses the task, --data_dir its folder)"
    if labels is None:
        try:
            score = float(value)
        except ValueError:
            score = -1.0
        if not 0.0 <= score <= 5.0:
            raise InputError(f"{path}, line {i}: expected a similarity score from 0 to 5, found {value!r}: {fix}")
        return score
    if value not in labels:
        raise InputError(f"{path}, line {i}: expected a label among {', '.join(labels)}, found {value!r}: {fix}")
    return labels.index(value)


def read_tsv(path, layout, labels, url, max_skipped=0.0):
    """Examples of one tab-separated file of `layout` (a Tsv), read without quoting (quote characters are text, as
    in GLUE's files). A row with the wrong number of fields is an InputError unless max_skipped > 0: then it is
    skipped and counted, and an InputError only when more than that fraction of the rows are."""
    n_fields = len(layout.columns)
    cols = {name: k for k, name in enumerate(layout.columns)}
    texts = tuple([] for _ in layout.texts)
    ys, ids, n_rows, skipped = [], [], 0, []
    with open_text(path, url) as f:
        rows = lines(f, path)
        if layout.has_header:
            i, header = next(rows, (1, ''))
            if header.split('\t') != list(layout.columns):
                raise InputError(f"{path}, line {i}: expected the tab-separated header {', '.join(layout.columns)}; "
                                 f"found {', '.join(header.split(chr(9)))[:200]!r}: is it the right file? Download it "
                                 f"from {url}")
        for i, line in rows:
            fields = line.split('\t')
            n_rows += 1
            if len(fields) != n_fields:
                if max_skipped:
                    skipped.append(i)
                    continue
                raise InputError(f"{path}, line {i}: expected {n_fields} tab-separated fields "
                                 f"({', '.join(layout.columns)}), found {len(fields)}: is it the right file, as "
                                 f"downloaded from {url}?")
            for field, name in zip(texts, layout.texts):
                field.append(fields[cols[name]])
            if layout.label is not None:
                ys.append(label_ids(path, i, fields[cols[layout.label]], labels, url))
            ids.append(fields[cols[layout.index]] if layout.index else str(len(ids)))
    if len(skipped) > max_skipped * max(n_rows, 1):
        raise InputError(f"{path}: {len(skipped)} of {n_rows} rows (lines {', '.join(map(str, skipped[:5]))}...) do "
                         f"not have {n_fields} tab-separated fields: is it the file as downloaded from {url}?")
    y = None if layout.label is None else np.asarray(ys, dtype=np.int32 if labels else np.float32)
    return Examples(texts, y, ids, n_skipped=len(skipped))


def tsv_task(files, labels, url, max_skipped=0.0):
    """(load, paths) of a task whose splits are TSV files: `files` maps each split to (its path relative to the
    data folder, its Tsv layout). load(data_dir) -> {split: Examples}; paths(data_dir) -> the files, in order.
    max_skipped applies to the labelled files only."""
    def paths(data_dir):
        return [os.path.join(data_dir, name) for name, _ in files.values()]

    def load(data_dir):  # a test file's rows all count: a skipped one would be missing from the submission
        return {split: read_tsv(os.path.join(data_dir, name), layout, labels, url, max_skipped if layout.label else 0.0)
                for split, (name, layout) in files.items()}
    return load, paths


def glue_files(labelled, test, splits=('train', 'dev')):
    """A GLUE task's files: each of `splits` in the `labelled` layout, test.tsv in the `test` one."""
    return {**{split: (f'{split}.tsv', labelled) for split in splits}, 'test': ('test.tsv', test)}


INDEX_SENTENCE = Tsv(('index', 'sentence'), True, ('sentence',), index='index')
MNLI_COLUMNS = ('index', 'promptID', 'pairID', 'genre', 'sentence1_binary_parse', 'sentence2_binary_parse',
                'sentence1_parse', 'sentence2_parse', 'sentence1', 'sentence2')
MNLI_TEST = Tsv(MNLI_COLUMNS, True, ('sentence1', 'sentence2'), index='index')
MNLI_DEV = Tsv(MNLI_COLUMNS + ('label1', 'label2', 'label3', 'label4', 'label5', 'gold_label'), True,
               ('sentence1', 'sentence2'), 'gold_label')
STSB_COLUMNS = ('index', 'genre', 'filename', 'year', 'old_index', 'source1', 'source2', 'sentence1', 'sentence2')
MRPC_COLUMNS = ('#1 ID', '#2 ID', '#1 String', '#2 String')

# GLUE's files as download_glue_data.py unpacks them. CoLA's train and dev have no header; MRPC's train and dev
# start with the byte-order mark of Microsoft's msr_paraphrase_train.txt; QQP's train has a few rows broken by
# newlines inside questions (skipped and counted).
GLUE_FILES = {
    'sst2': glue_files(Tsv(('sentence', 'label'), True, ('sentence',), 'label'), INDEX_SENTENCE),
    'cola': glue_files(Tsv(('source', 'label', 'original_label', 'sentence'), False, ('sentence',), 'label'),
                       INDEX_SENTENCE),
    'mnli': {'train': ('train.tsv', Tsv(MNLI_COLUMNS + ('label1', 'gold_label'), True, ('sentence1', 'sentence2'),
                                        'gold_label')),
             'dev_matched': ('dev_matched.tsv', MNLI_DEV), 'dev_mismatched': ('dev_mismatched.tsv', MNLI_DEV),
             'test_matched': ('test_matched.tsv', MNLI_TEST), 'test_mismatched': ('test_mismatched.tsv', MNLI_TEST)},
    'qnli': glue_files(Tsv(('index', 'question', 'sentence', 'label'), True, ('question', 'sentence'), 'label'),
                       Tsv(('index', 'question', 'sentence'), True, ('question', 'sentence'), index='index')),
    'rte': glue_files(Tsv(('index', 'sentence1', 'sentence2', 'label'), True, ('sentence1', 'sentence2'), 'label'),
                      Tsv(('index', 'sentence1', 'sentence2'), True, ('sentence1', 'sentence2'), index='index')),
    'mrpc': glue_files(Tsv(('Quality',) + MRPC_COLUMNS, True, ('#1 String', '#2 String'), 'Quality'),
                       Tsv(('index',) + MRPC_COLUMNS, True, ('#1 String', '#2 String'), index='index')),
    'qqp': glue_files(Tsv(('id', 'qid1', 'qid2', 'question1', 'question2', 'is_duplicate'), True,
                          ('question1', 'question2'), 'is_duplicate'),
                      Tsv(('id', 'question1', 'question2'), True, ('question1', 'question2'), index='id')),
    'stsb': glue_files(Tsv(STSB_COLUMNS + ('score',), True, ('sentence1', 'sentence2'), 'score'),
                       Tsv(STSB_COLUMNS, True, ('sentence1', 'sentence2'), index='index')),
}
SCITAIL_FILES = {split: (f'tsv_format/scitail_1.0_{split}.tsv',
                         Tsv(('premise', 'hypothesis', 'label'), False, ('premise', 'hypothesis'), 'label'))
                 for split in ('train', 'dev', 'test')}
QQP_MAX_SKIPPED = 0.001  # the real train.tsv has a handful of broken rows in 364k; a wrong file has far more


def snli_paths(data_dir):
    """The three SNLI 1.0 jsonl files in `data_dir` (the folder snli_1.0 as unpacked)."""
    return [os.path.join(data_dir, f'snli_1.0_{split}.jsonl') for split in ('train', 'dev', 'test')]


def snli_jsonl(path, labels):
    """Examples of one SNLI 1.0 jsonl file: sentence1, sentence2, gold_label; ids the pairID. Pairs whose gold
    label is '-' (no majority among the annotators) are dropped and counted, as the SNLI README advises."""
    s1, s2, ys, ids, n_dropped = [], [], [], [], 0
    with open_text(path, SNLI_URL) as f:
        for i, line in lines(f, path):
            try:
                row = json.loads(line)
                pair = (row['sentence1'], row['sentence2'], row['gold_label'], row['pairID'])
            except (json.JSONDecodeError, TypeError, KeyError) as err:
                raise InputError(f"{path}, line {i}: expected a JSON object with sentence1, sentence2, gold_label "
                                 f"and pairID (SNLI 1.0's jsonl), found {line[:100]!r}: download {SNLI_URL}") from err
            if pair[2] == '-':
                n_dropped += 1
                continue
            ys.append(label_ids(path, i, pair[2], labels, SNLI_URL))
            s1.append(pair[0])
            s2.append(pair[1])
            ids.append(pair[3])
    return Examples((s1, s2), np.asarray(ys, dtype=np.int32), ids, n_skipped=n_dropped)


def snli(data_dir, labels=('entailment', 'neutral', 'contradiction')):
    """{'train', 'dev', 'test': Examples} of SNLI 1.0; fields (premise, hypothesis)."""
    return {split: snli_jsonl(path, labels) for split, path in zip(('train', 'dev', 'test'), snli_paths(data_dir))}


RACE_LEVELS = ('middle', 'high')


def race_paths(data_dir, splits=('train', 'dev', 'test')):
    """Every RACE passage file, split by split, middle before high, in the numeric order of the file names."""
    paths = []
    for split in splits:
        for level in RACE_LEVELS:
            folder = os.path.join(data_dir, split, level)
            if not os.path.isdir(folder):
                raise InputError(f"{folder!r} not found: download RACE from {RACE_URL} and give --data_dir the "
                                 f"folder RACE as unpacked (RACE/{{train,dev,test}}/{{middle,high}}/*.txt)")
            names = [n for n in os.listdir(folder) if n.endswith('.txt')]
            names.sort(key=lambda n: (len(n), n))  # 2.txt before 10.txt
            paths.extend(os.path.join(folder, n) for n in names)
    return paths


def race_passage(path):
    """(article, questions, options, answers) of one RACE file, checked: one JSON object with as many questions,
    option lists (4 each) and answers (A-D)."""
    with open_text(path, RACE_URL) as f:
        text = ''.join(line for _, line in lines(f, path))  # JSON has no line ends inside its strings
    try:
        obj = json.loads(text)
        article, questions, options, answers = (obj[k] for k in ('article', 'questions', 'options', 'answers'))
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise InputError(f"{path}: expected one JSON object with article, questions, options and answers (a RACE "
                         f"passage): download RACE from {RACE_URL}") from err
    ok = (isinstance(article, str) and all(isinstance(x, list) for x in (questions, options, answers))
          and len(questions) == len(options) == len(answers) and all(isinstance(q, str) for q in questions)
          and all(isinstance(o, list) and len(o) == 4 and all(isinstance(t, str) for t in o) for o in options)
          and all(a in ('A', 'B', 'C', 'D') for a in answers))
    if not ok:
        raise InputError(f"{path}: expected an article, and lists of as many questions, option lists (4 options "
                         f"each) and answers (A, B, C or D): download RACE from {RACE_URL}")
    return article, questions, options, answers


def race_split(paths):
    """Examples of RACE passage files, one per question: fields (article, question, option A, B, C, D), y the
    right option (0-3), ids 'level/file:question', group the level (middle, high)."""
    texts = tuple([] for _ in range(6))
    ys, ids, group = [], [], []
    for path in paths:
        article, questions, options, answers = race_passage(path)
        level = os.path.basename(os.path.dirname(path))
        for q, (question, opts, answer) in enumerate(zip(questions, options, answers)):
            for field, text in zip(texts, [article, question, *opts]):
                field.append(text)
            ys.append('ABCD'.index(answer))
            ids.append(f'{level}/{os.path.basename(path)}:{q}')
            group.append(level)
    return Examples(texts, np.asarray(ys, dtype=np.int32), ids, group=np.asarray(group))


def race(data_dir):
    """{'train', 'dev', 'test': Examples} of RACE (middle and high together; `group` tells them apart)."""
    return {split: race_split(race_paths(data_dir, (split,))) for split in ('train', 'dev', 'test')}


# ------------------------------------------------ DPRD, zero-shot only (the paper's Figure 2 right; not fine-tuned)

DPRD_URL = 'http://www.hlt.utdallas.edu/~vince/data/emnlp12/'
DPRD_FILES = {'train': 'train.c.txt', 'test': 'test.c.txt'}
DPRD_FORMAT = ('five lines per example: the sentence, the pronoun, the two candidates separated by a comma, the '
               'answer, a blank line')


def pronoun_span(sentence, pronoun):
    """(start, end) of the first whole-word occurrence of `pronoun` in `sentence` (not inside a longer word), as
    written; where the sentence has it only with other capitals (`He` for `he`), the first of those; None if
    neither."""
    for flags in (0, re.IGNORECASE):
        found = re.search(r'(?<!\w)' + re.escape(pronoun) + r'(?!\w)', sentence, flags)
        if found:
            return found.span()
    return None


def dprd_paths(data_dir):
    """train.c.txt and test.c.txt in `data_dir`."""
    return [os.path.join(data_dir, name) for name in DPRD_FILES.values()]


def dprd_file(path):
    """Examples of one file of Rahman and Ng's (2012) Definite Pronoun Resolution data (DPRD_FORMAT): fields
    (sentence, pronoun, candidate 1, candidate 2), y the answer's candidate (0 or 1), ids the 0-based example
    number. InputError naming the file and the line of anything else."""
    fix = f"is it the file as downloaded from {DPRD_URL}? ({DPRD_FORMAT})"
    with open_text(path, DPRD_URL) as f:
        try:
            rows = [line.rstrip('\n').removesuffix('\r').strip() for line in f]
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}): {fix}") from err
    texts, ys, i = tuple([] for _ in range(4)), [], 0
    while i < len(rows):
        if not rows[i]:  # the blank lines between examples
            i += 1
            continue
        block = rows[i:i + 4]
        if len(block) < 4 or not all(block):
            k = i + next((j for j, row in enumerate(block) if not row), len(block))
            raise InputError(f"{path}, line {k + 1}: the example that starts at line {i + 1} ends early: {fix}")
        if i + 4 < len(rows) and rows[i + 4]:
            raise InputError(f"{path}, line {i + 5}: expected the blank line after the example that starts at line "
                             f"{i + 1}, found {rows[i + 4][:80]!r}: {fix}")
        sentence, pronoun, candidates, answer = block
        pair = [c.strip() for c in candidates.split(',')]
        if len(pair) != 2 or not all(pair) or pair[0] == pair[1]:
            raise InputError(f"{path}, line {i + 3}: expected two different candidates separated by a comma, found "
                             f"{candidates[:80]!r}: {fix}")
        if answer not in pair:
            raise InputError(f"{path}, line {i + 4}: the answer {answer[:80]!r} is neither candidate "
                             f"({pair[0]!r}, {pair[1]!r}): {fix}")
        if pronoun_span(sentence, pronoun) is None:
            raise InputError(f"{path}, line {i + 2}: the pronoun {pronoun[:80]!r} is not a word of the sentence on "
                             f"line {i + 1}: {fix}")
        for field, text in zip(texts, (sentence, pronoun, *pair)):
            field.append(text)
        ys.append(pair.index(answer))
        i += 4
    if not ys:
        raise InputError(f"{path}: no examples: {fix}")
    return Examples(texts, np.asarray(ys, dtype=np.int32), [str(k) for k in range(len(ys))])


def dprd(data_dir):
    """{'train', 'test': Examples} of the DPRD files in `data_dir` (DPRD_FILES)."""
    return {split: dprd_file(path) for split, path in zip(DPRD_FILES, dprd_paths(data_dir))}
