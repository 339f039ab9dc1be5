"""ROCStories / Story Cloze Test 2016: reading, the original's train/valid split, and the model's input arrays."""
import csv
import io
import os

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
    for training) and the test CSV.
    Returns (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3); X* lists of str, Y int32."""
    val_path, test_path = rocstories_paths(data_dir)
    storys, comps1, comps2, ys = rocstories_csv(val_path)
    if len(ys) <= n_valid:
        raise InputError(f"{val_path}: {len(ys)} stories, but the split needs more than {n_valid}: {n_valid} for "
                         f"validation and the rest for training; use the whole file from {ROC_URL}")
    teX1, teX2, teX3, _ = rocstories_csv(test_path)
    (trX1, vaX1, trX2, vaX2, trX3, vaX3, trY, vaY) = train_test_split(
        storys, comps1, comps2, ys, test_size=n_valid, random_state=SPLIT_SEED)
    trY = np.asarray(trY, dtype=np.int32)
    vaY = np.asarray(vaY, dtype=np.int32)
    return (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3)


def context_length(X1, X2, X3, max_len):
    """3 + the longest story[:max_len] + longer ending[:max_len] over the examples (the start, delimiter and
    classify tokens make the 3)."""
    return 3 + max(len(x1[:max_len]) + max(len(x2[:max_len]), len(x3[:max_len])) for x1, x2, x3 in zip(X1, X2, X3))


def transform_roc(X1, X2, X3, n_vocab, n_ctx, max_len):
    """The model's inputs: X int32 (n, 2, n_ctx, 2), token ids in [..., 0] (0-padded) and position ids
    n_vocab + 3 + t in [..., 1]; M float32 (n, 2, n_ctx), 1 on real tokens. Special ids: _start_ = n_vocab,
    _delimiter_ = n_vocab + 1, _classify_ = n_vocab + 2."""
    start, delimiter, clf_token = n_vocab, n_vocab + 1, n_vocab + 2
    xmb = np.zeros((len(X1), 2, n_ctx, 2), dtype=np.int32)
    mmb = np.zeros((len(X1), 2, n_ctx), dtype=np.float32)
    for i, (x1, x2, x3) in enumerate(zip(X1, X2, X3)):
        x12 = [start] + x1[:max_len] + [delimiter] + x2[:max_len] + [clf_token]
        x13 = [start] + x1[:max_len] + [delimiter] + x3[:max_len] + [clf_token]
        xmb[i, 0, :len(x12), 0] = x12
        xmb[i, 1, :len(x13), 0] = x13
        mmb[i, 0, :len(x12)] = 1
        mmb[i, 1, :len(x13)] = 1
    xmb[:, :, :, 1] = np.arange(n_vocab + 3, n_vocab + 3 + n_ctx)
    return xmb, mmb


def pack_roc(X1, X2, X3, n_vocab, max_len):
    """Both choices of each example in one sequence for evaluation (Model.score_packed):
    [_start_] story [_delimiter_] ending1 [_classify_] ending2 [_classify_], ending2's positions restarting
    where ending1's began. Returns X int32 (n, T, 2), seg int32 (n, T) (0 story, 1 and 2 the endings, 3 padding)
    and clf_idx int32 (n, 2), T the longest packed example."""
    start, delimiter, clf_token = n_vocab, n_vocab + 1, n_vocab + 2
    rows = []
    for x1, x2, x3 in zip(X1, X2, X3):
        prefix = [start] + x1[:max_len] + [delimiter]
        e1, e2 = x2[:max_len] + [clf_token], x3[:max_len] + [clf_token]
        positions = list(range(len(prefix) + len(e1))) + list(range(len(prefix), len(prefix) + len(e2)))
        rows.append((prefix + e1 + e2, positions, [0] * len(prefix) + [1] * len(e1) + [2] * len(e2)))
    T = max(len(tokens) for tokens, _, _ in rows)
    X = np.zeros((len(rows), T, 2), dtype=np.int32)
    seg = np.full((len(rows), T), 3, dtype=np.int32)
    clf_idx = np.zeros((len(rows), 2), dtype=np.int32)
    for i, (tokens, positions, segments) in enumerate(rows):
        X[i, :len(tokens), 0] = tokens
        X[i, :len(tokens), 1] = n_vocab + 3 + np.array(positions)
        seg[i, :len(tokens)] = segments
        clf_idx[i] = [segments.index(2) - 1, len(tokens) - 1]
    X[:, :, 1] = np.where(seg == 3, n_vocab + 3, X[:, :, 1])
    return X, seg, clf_idx
