"""ROCStories (SPEC "ROCStories data"): reading the CSVs, the original's split, context length, model inputs, errors."""
import csv
import os
import re

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from datasets import ROC_TEST, ROC_VAL, rocstories, rocstories_csv
from tests.reference import context_length, transform_roc
from tests.fixtures import REAL_FILES_HINT, real_path
from utils import InputError

HEADER = ['InputStoryid', 'InputSentence1', 'InputSentence2', 'InputSentence3', 'InputSentence4',
          'RandomFifthSentenceQuiz1', 'RandomFifthSentenceQuiz2', 'AnswerRightEnding']
SPLIT_SEED = 3535999445


def make_rows(prefix, n):
    """n distinct Story Cloze rows; some fields hold commas and quotes, so the CSV needs quoting."""
    rows = []
    for i in range(n):
        sentences = [f'{prefix} story {i} sentence {k}.' for k in range(1, 5)]
        if i % 7 == 0:
            sentences[1] = f'He said "hi, there" to {i}.'
        rows.append([f'{prefix}-id-{i}', *sentences, f'{prefix} ending one of {i}.', f'{prefix} ending two, {i}.',
                     '1' if (i * 5) % 3 else '2'])
    return rows


def write_csv(path, rows, header=HEADER):
    with open(path, 'w', encoding='utf-8', newline='') as f:
        w = csv.writer(f)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def small(tmp_path):
    val, test = make_rows('val', 30), make_rows('test', 10)
    write_csv(tmp_path / ROC_VAL, val)
    write_csv(tmp_path / ROC_TEST, test)
    return tmp_path, val, test


def test_file_names_are_the_original_ones():
    assert ROC_VAL == 'cloze_test_val__spring2016 - cloze_test_ALL_val.csv'
    assert ROC_TEST == 'cloze_test_test__spring2016 - cloze_test_ALL_test.csv'


def test_rocstories_csv_joins_sentences_and_reads_zero_based_labels(small):
    data_dir, val, _ = small
    st, e1, e2, y = rocstories_csv(str(data_dir / ROC_VAL))
    assert st == [' '.join(r[1:5]) for r in val]
    assert st[0] == 'val story 0 sentence 1. He said "hi, there" to 0. val story 0 sentence 3. val story 0 sentence 4.'
    assert e1 == [r[5] for r in val]
    assert e2 == [r[6] for r in val]
    assert e2[3] == 'val ending two, 3.'
    assert y == [int(r[7]) - 1 for r in val]
    assert set(y) == {0, 1}


def test_rocstories_split_is_the_original_train_test_split(small):
    data_dir, val, test = small
    stories = [' '.join(r[1:5]) for r in val]
    e1, e2, labels = [r[5] for r in val], [r[6] for r in val], [int(r[7]) - 1 for r in val]
    tr_s, va_s, tr_1, va_1, tr_2, va_2, tr_y, va_y = train_test_split(
        stories, e1, e2, labels, test_size=10, random_state=SPLIT_SEED)

    (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3, _) = rocstories(
        str(data_dir), n_train=20, n_valid=10)
    assert (list(trX1), list(trX2), list(trX3)) == (tr_s, tr_1, tr_2)
    assert (list(vaX1), list(vaX2), list(vaX3)) == (va_s, va_1, va_2)
    assert isinstance(trY, np.ndarray) and trY.dtype == np.int32 and trY.tolist() == tr_y
    assert isinstance(vaY, np.ndarray) and vaY.dtype == np.int32 and vaY.tolist() == va_y
    assert len(trX1) == 20 and len(vaX1) == 10
    assert trX1 != stories[:20]  # the split shuffles: the order is the one train_test_split returns
    # the test file is read whole, in file order
    assert list(teX1) == [' '.join(r[1:5]) for r in test]
    assert list(teX2) == [r[5] for r in test]
    assert list(teX3) == [r[6] for r in test]


def test_rocstories_on_the_real_files():
    data_dir = real_path('data')
    if data_dir is None:
        pytest.skip(REAL_FILES_HINT)
    (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3, _) = rocstories(str(data_dir))
    assert [len(x) for x in (trX1, trX2, trX3, trY)] == [1497] * 4
    assert [len(x) for x in (vaX1, vaX2, vaX3, vaY)] == [374] * 4
    assert [len(x) for x in (teX1, teX2, teX3)] == [1871] * 3
    assert trY.dtype == np.int32 and vaY.dtype == np.int32
    assert set(trY.tolist()) == {0, 1} and set(vaY.tolist()) == {0, 1}

    with open(os.path.join(data_dir, ROC_VAL), encoding='utf-8') as f:
        rows = list(csv.reader(f))[1:]
    split = train_test_split([' '.join(r[1:5]) for r in rows], [r[5] for r in rows], [r[6] for r in rows],
                             [int(r[-1]) - 1 for r in rows], test_size=374, random_state=SPLIT_SEED)
    assert list(trX1) == split[0] and list(vaX1) == split[1]
    assert list(trX2) == split[2] and list(vaX2) == split[3]
    assert list(trX3) == split[4] and list(vaX3) == split[5]
    assert trY.tolist() == split[6] and vaY.tolist() == split[7]
    assert 'Rick grew up in a troubled household.' in rows[0][1]
    with open(os.path.join(data_dir, ROC_TEST), encoding='utf-8') as f:
        test_rows = list(csv.reader(f))[1:]
    assert list(teX1) == [' '.join(r[1:5]) for r in test_rows]


# --------------------------------------------------------------------------------------------- model inputs

def test_context_length_is_three_plus_longest_truncated_story_and_ending():
    X1 = [[1, 2, 3], [1]]
    X2 = [[4], [1, 2, 3, 4, 5]]
    X3 = [[5, 6, 7], [1]]
    # max_len 2: example 0 -> 2 + max(1, 2) = 4; example 1 -> 1 + max(2, 1) = 3
    assert context_length(X1, X2, X3, max_len=2) == 3 + 4
    # max_len 10: example 0 -> 3 + 3 = 6; example 1 -> 1 + 5 = 6
    assert context_length(X1, X2, X3, max_len=10) == 3 + 6
    assert context_length([[9] * 300], [[9] * 2], [[9] * 400], max_len=254) == 3 + 254 + 254


def test_transform_roc_layout_padding_positions_and_mask():
    n_vocab, n_ctx, max_len = 10, 9, 2
    X1 = [[1, 2, 3], [7]]
    X2 = [[4], [8, 8, 8]]
    X3 = [[5, 6, 7], [9]]
    X, M = transform_roc(X1, X2, X3, n_vocab=n_vocab, n_ctx=n_ctx, max_len=max_len)
    assert X.shape == (2, 2, n_ctx, 2) and X.dtype == np.int32
    assert M.shape == (2, 2, n_ctx) and M.dtype == np.float32
    start, delim, clf = 10, 11, 12
    expected = [
        [[start, 1, 2, delim, 4, clf, 0, 0, 0],
         [start, 1, 2, delim, 5, 6, clf, 0, 0]],
        [[start, 7, delim, 8, 8, clf, 0, 0, 0],
         [start, 7, delim, 9, clf, 0, 0, 0, 0]],
    ]
    assert X[..., 0].tolist() == expected
    assert M.tolist() == [[[1] * 6 + [0] * 3, [1] * 7 + [0] * 2], [[1] * 6 + [0] * 3, [1] * 5 + [0] * 4]]
    positions = list(range(n_vocab + 3, n_vocab + 3 + n_ctx))  # n_vocab + n_special + t, also on padding
    assert positions[0] == 13 and positions[-1] == 21
    assert all(X[i, j, :, 1].tolist() == positions for i in range(2) for j in range(2))


def test_transform_roc_fills_n_ctx_exactly_at_context_length():
    X1, X2, X3 = [[1, 2, 3, 4], [5]], [[6, 7], [8]], [[9], [1, 2, 3]]
    max_len = 3
    n_ctx = context_length(X1, X2, X3, max_len)
    assert n_ctx == 3 + 3 + 2
    X, M = transform_roc(X1, X2, X3, n_vocab=100, n_ctx=n_ctx, max_len=max_len)
    assert X[0, 0, :, 0].tolist() == [100, 1, 2, 3, 101, 6, 7, 102]  # the longest sequence has no padding
    assert M[0, 0].tolist() == [1.0] * n_ctx
    assert X[0, 1, :, 0].tolist() == [100, 1, 2, 3, 101, 9, 102, 0]
    assert X[1, 1, :, 0].tolist() == [100, 5, 101, 1, 2, 3, 102, 0]


# ----------------------------------------------------------------------------------------------------- errors

def check_missing_message(msg):
    assert ROC_VAL in msg and ROC_TEST in msg, msg
    assert 'cs.rochester.edu/nlp/rocstories' in msg, msg


def test_missing_data_folder_names_both_files_and_the_website(tmp_path):
    with pytest.raises(InputError) as err:
        rocstories(str(tmp_path / 'no_such_folder'))
    check_missing_message(str(err.value))


@pytest.mark.parametrize('missing', [ROC_VAL, ROC_TEST])
def test_either_missing_csv_names_both_files_and_the_website(small, missing):
    data_dir, _, _ = small
    (data_dir / missing).unlink()
    with pytest.raises(InputError) as err:
        rocstories(str(data_dir), n_train=20, n_valid=10)
    check_missing_message(str(err.value))


@pytest.mark.parametrize('which', [ROC_VAL, ROC_TEST])
def test_wrong_header_is_an_input_error_naming_the_file(small, which):
    data_dir, val, test = small
    rows = val if which == ROC_VAL else test
    write_csv(data_dir / which, rows, header=['id', 'a', 'b', 'c', 'd', 'e', 'f', 'g'])
    with pytest.raises(InputError) as err:
        rocstories(str(data_dir), n_train=20, n_valid=10)
    assert which in str(err.value)


def test_headerless_file_is_an_input_error(small):
    data_dir, val, _ = small
    write_csv(data_dir / ROC_VAL, val, header=None)  # the first story would otherwise be silently dropped
    with pytest.raises(InputError) as err:
        rocstories(str(data_dir), n_train=20, n_valid=10)
    assert ROC_VAL in str(err.value)


def line_named(msg, n):
    return re.search(rf'line\D{{0,3}}{n}\b', msg, re.IGNORECASE)


@pytest.mark.parametrize('which', [ROC_VAL, ROC_TEST])
def test_short_row_names_file_and_line(small, which):
    data_dir, val, test = small
    rows = [list(r) for r in (val if which == ROC_VAL else test)]
    rows[6] = rows[6][:6]  # file line 8 (the header is line 1)
    write_csv(data_dir / which, rows)
    with pytest.raises(InputError) as err:
        rocstories(str(data_dir), n_train=20, n_valid=10)
    msg = str(err.value)
    assert which in msg and line_named(msg, 8), msg


@pytest.mark.parametrize('label', ['3', '0', '', 'x', '1.0'])
@pytest.mark.parametrize('which', [ROC_VAL, ROC_TEST])
def test_bad_label_names_file_and_line(small, which, label):
    data_dir, val, test = small
    rows = [list(r) for r in (val if which == ROC_VAL else test)]
    rows[4][-1] = label  # file line 6
    write_csv(data_dir / which, rows)
    with pytest.raises(InputError) as err:
        rocstories(str(data_dir), n_train=20, n_valid=10)
    msg = str(err.value)
    assert which in msg and line_named(msg, 6), msg


def test_rocstories_csv_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as err:
        rocstories_csv(str(tmp_path / ROC_VAL))
    assert ROC_VAL in str(err.value)
