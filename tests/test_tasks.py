"""The paper's other tasks' data layer: each reader on files in its publisher's exact format, the registry, the input
transformations token by token, batch padding, the encoded cache, the metrics against sklearn/scipy, bad input."""
import io
import json
import os
import re

import numpy as np
import pytest

import datasets
import text_utils
from finetuning import inputs
from finetuning import metrics
from finetuning import tasks
from datasets import ROC_TEST, ROC_VAL
from tests.reference import context_length, transform_roc
from finetuning.inputs import pad_batch, sequences
from text_utils import Ragged
from finetuning.tasks import TASKS
from tests import task_files
from tests.fixtures import write_rocstories
from utils import InputError


def load(name, tmp_path, **kwargs):
    folder = str(tmp_path / name)
    task_files.WRITERS[name](folder, **kwargs)
    return folder, TASKS[name].load(folder)


def line_named(msg, n):
    return re.search(rf'line\D{{0,3}}{n}\b', msg)


# ------------------------------------------------------------------------------------------------------ readers

def test_sst2_reads_sentences_labels_and_test_index(tmp_path):
    _, splits = load('sst2', tmp_path)
    train, dev, test = splits['train'], splits['dev'], splits['test']
    assert train.texts[0][0] == 'train sentence 0 he said " no " . '  # quotes literal, the trailing space kept
    assert train.y.tolist() == [0, 1, 0, 1, 0, 1] and train.y.dtype == np.int32
    assert dev.texts[0][1] == task_files.sentence(1, 'dev') + ' ' and dev.y.tolist() == [0, 1] * 3  # CRLF gone
    assert test.y is None and test.ids == [str(k) for k in range(6)]
    assert test.texts[0][3] == 'test sentence 3 he said " no " .'


def test_cola_train_has_no_header_and_test_has_one(tmp_path):
    _, splits = load('cola', tmp_path)
    assert splits['train'].texts[0] == [task_files.sentence(k, 'train') for k in range(6)]  # line 1 is a row
    assert splits['train'].y.tolist() == [0, 1] * 3
    assert splits['dev'].ids == [str(k) for k in range(6)]
    assert splits['test'].texts[0][0] == task_files.sentence(0, 'test') and splits['test'].y is None


def test_mnli_columns_of_each_file(tmp_path):
    _, splits = load('mnli', tmp_path)
    assert set(splits) == {'train', 'dev_matched', 'dev_mismatched', 'test_matched', 'test_mismatched'}
    train = splits['train']
    assert train.texts == ([task_files.sentence(k, 'train-premise') for k in range(6)],
                           [task_files.sentence(k, 'train-hypothesis') for k in range(6)])
    assert train.y.tolist() == [0, 1, 2, 0, 1, 2]  # entailment, neutral, contradiction
    assert splits['dev_mismatched'].texts[1][2] == task_files.sentence(2, 'dev_mismatched-hypothesis')
    assert splits['dev_matched'].y.tolist() == [0, 1, 2] * 2
    assert splits['test_matched'].y is None and splits['test_mismatched'].ids == [str(k) for k in range(6)]


@pytest.mark.parametrize('name, first', [('qnli', ('question', 'sentence')), ('rte', ('sentence1', 'sentence2'))])
def test_qnli_and_rte_read_string_labels(tmp_path, name, first):
    _, splits = load(name, tmp_path)
    labels = {'qnli': [0, 1] * 3, 'rte': [1, 0] * 3}[name]  # entailment 0, not_entailment 1
    assert splits['train'].y.tolist() == labels
    assert splits['dev'].texts[0][4] == task_files.sentence(4, 'dev-a')
    assert splits['dev'].texts[1][4] == task_files.sentence(4, 'dev-b')
    assert splits['test'].y is None and splits['test'].texts[1][0] == task_files.sentence(0, 'test-b')


def test_mrpc_with_the_byte_order_mark_and_its_test_header(tmp_path):
    folder, splits = load('mrpc', tmp_path)
    with open(os.path.join(folder, 'train.tsv'), 'rb') as f:
        assert f.read(3) == b'\xef\xbb\xbf'  # the file starts with a BOM, as the real one
    assert splits['train'].y.tolist() == [0, 1] * 3
    assert splits['train'].texts[0][3] == task_files.sentence(3, 'train-a')
    assert splits['test'].ids == [str(k) for k in range(6)] and splits['test'].texts[1][5] == \
        task_files.sentence(5, 'test-b')


def test_qqp_skips_and_counts_its_malformed_rows(tmp_path):
    _, splits = load('qqp', tmp_path, n=6000, broken=(5, 700))
    train = splits['train']
    assert train.n_skipped == 4  # each broken row is two malformed lines
    assert len(train.y) == 5998 and train.texts[0][5] == 'How is "question" 6?'
    assert train.y.tolist()[:6] == [0, 1, 0, 1, 0, 0]  # row 5 is gone: row 6's label follows row 4's
    assert splits['dev'].n_skipped == 0 and splits['test'].ids[:2] == ['0', '1']


def test_qqp_with_many_malformed_rows_is_an_input_error(tmp_path):
    folder = str(tmp_path / 'qqp')
    task_files.qqp(folder, n=100, broken=(3, 50))  # 4 of 102 lines: far beyond the real file's handful
    with pytest.raises(InputError) as err:
        TASKS['qqp'].load(folder)
    assert 'train.tsv' in str(err.value) and '4 of 102' in str(err.value)


def test_qqp_test_rows_are_never_skipped(tmp_path):
    folder = tmp_path / 'qqp'
    task_files.qqp(str(folder), n=6000)
    task_files.replace_line(folder / 'test.tsv', 5, lambda line: line.replace('\t', ' ', 1))
    msg = error('qqp', folder)
    assert 'QQP/test.tsv'.lower() in msg.lower() and line_named(msg, 5) and 'expected 3' in msg, msg


def test_a_carriage_return_inside_a_field_stays_text(tmp_path):
    folder = tmp_path / 'RTE'
    task_files.rte(str(folder))
    task_files.replace_line(folder / 'dev.tsv', 2, lambda line: line.replace('dev sentence', 'dev\rsentence', 1))
    dev = TASKS['rte'].load(str(folder))['dev']
    assert dev.texts[0][0] == task_files.sentence(0, 'dev-a').replace('dev sentence', 'dev\rsentence')
    assert len(dev.ids) == 6


def test_stsb_reads_float_scores(tmp_path):
    _, splits = load('stsb', tmp_path)
    assert splits['train'].y.dtype == np.float32
    np.testing.assert_allclose(splits['train'].y, [k * 0.8 for k in range(6)], atol=1e-6)
    assert splits['dev'].texts[1][2] == task_files.sentence(2, 'dev-b') and splits['test'].y is None


def test_snli_drops_pairs_without_gold_label(tmp_path):
    _, splits = load('snli', tmp_path)
    for split in ('train', 'dev', 'test'):
        ex = splits[split]
        assert ex.n_skipped == 1 and len(ex.ids) == 6
        assert ex.y.tolist() == [0, 1, 2, 0, 1, 2]
        assert ex.texts[0][1] == task_files.sentence(1, split + '-premise')
        assert ex.ids[0] == '0.jpg#4r1e'


def test_scitail_tsv_format_without_header(tmp_path):
    _, splits = load('scitail', tmp_path)
    assert splits['test'].y.tolist() == [0, 1] * 3  # entails, neutral; test labels public
    assert splits['train'].texts[0][0] == task_files.sentence(0, 'train-premise')


def test_race_one_example_per_question_in_file_order(tmp_path):
    _, splits = load('race', tmp_path)
    test = splits['test']
    n_q = [k % 3 + 1 for k in range(1, 3)] + [k % 3 + 1 for k in range(1, 11)]
    assert len(test.ids) == sum(n_q)
    assert test.ids[:4] == ['middle/1.txt:0', 'middle/1.txt:1', 'middle/2.txt:0', 'middle/2.txt:1']
    assert test.ids[4:7] == ['middle/2.txt:2', 'high/1.txt:0', 'high/1.txt:1']
    assert [i for i in test.ids if i.startswith('high/')][-1] == 'high/10.txt:1'  # 10 after 2, not after 1
    assert test.group.tolist() == ['middle'] * 5 + ['high'] * (len(test.ids) - 5)
    article, question, *options = (field[2] for field in test.texts)
    assert article == 'test middle article 2 . "Quoted" text\nwith a line end .'
    assert question == 'test middle 2 question 0 _ ?'
    assert options == [f'test middle 2 option 0 {c}' for c in 'abcd']
    assert test.y[:5].tolist() == [1, 2, 2, 3, 0]  # answers B C, then C D A


def test_every_task_loads_its_files_in_the_registry(tmp_path):
    for name, task in TASKS.items():
        folder = str(tmp_path / name)
        if name == 'rocstories':
            write_rocstories(folder, n_val=400, n_test=12)  # the original's split takes 374 to validate
        else:
            task_files.WRITERS[name](folder)
        splits = task.load(folder)
        assert all(os.path.isfile(p) for p in task.paths(folder)), name
        assert {task.train, task.valid, *task.evals, *task.tests} == set(splits), name
        for split in (task.train, task.valid, *task.evals):
            assert splits[split].y is not None, (name, split)
        for split in task.tests:
            assert (splits[split].y is not None) == task.test_labels, (name, split)
            assert split in task.submissions, (name, split)
        n_fields = {'classification': 1, 'entailment': 2, 'similarity': 2}.get(task.shape,
                                                                                 task.n_context + task.n_choices)
        assert all(len(ex.texts) == n_fields for ex in splits.values()), name


def test_registry_entries_follow_the_paper():
    assert set(TASKS) == {'rocstories', 'sst2', 'cola', 'mnli', 'qnli', 'rte', 'snli', 'scitail', 'mrpc', 'qqp',
                          'stsb', 'race'}
    assert all(task.shape in tasks.SHAPES for task in TASKS.values())
    assert [TASKS[n].metrics[0].name for n in ('cola', 'mrpc', 'qqp', 'stsb', 'race', 'mnli')] == \
        ['mc', 'F1', 'F1', 'pearson', 'all', 'acc']
    assert {n: TASKS[n].n_out for n in ('sst2', 'mnli', 'mrpc', 'stsb', 'race', 'rocstories')} == \
        {'sst2': 2, 'mnli': 3, 'mrpc': 2, 'stsb': 1, 'race': 1, 'rocstories': 1}
    assert {n: TASKS[n].n_seq for n in ('sst2', 'mnli', 'qqp', 'stsb', 'race', 'rocstories')} == \
        {'sst2': 1, 'mnli': 1, 'qqp': 2, 'stsb': 2, 'race': 4, 'rocstories': 2}
    glue_files = sorted(f for t in TASKS.values() if t.url == datasets.GLUE_URL for f in t.submissions.values())
    assert glue_files == sorted(['SST-2.tsv', 'CoLA.tsv', 'MRPC.tsv', 'STS-B.tsv', 'QQP.tsv', 'MNLI-m.tsv',
                                 'MNLI-mm.tsv', 'QNLI.tsv', 'RTE.tsv'])
    assert TASKS['mnli'].valid == 'dev_matched' and TASKS['rocstories'].data_dir == 'data/'
    assert TASKS['race'].data_dir == 'data/RACE' and TASKS['snli'].data_dir == 'data/snli_1.0'


def test_rocstories_entry_is_the_existing_split(tmp_path):
    write_rocstories(str(tmp_path), n_val=400, n_test=12)
    splits = TASKS['rocstories'].load(str(tmp_path))
    (trX1, trX2, trX3, trY), (vaX1, _, _, vaY), (teX1, teX2, _, _) = datasets.rocstories(str(tmp_path))
    assert splits['train'].texts == (list(trX1), list(trX2), list(trX3)) and splits['train'].y.tolist() == trY.tolist()
    assert splits['valid'].texts[0] == list(vaX1) and splits['valid'].y.tolist() == vaY.tolist()
    assert splits['test'].texts[1] == list(teX2)
    assert splits['test'].y.tolist() == datasets.rocstories_csv(str(tmp_path / ROC_TEST))[3]
    assert TASKS['rocstories'].paths(str(tmp_path)) == [str(tmp_path / ROC_VAL), str(tmp_path / ROC_TEST)]


def test_quote_characters_are_text_not_quoting(tmp_path):
    folder = tmp_path / 'SST-2'
    task_files.sst2(str(folder))
    task_files.write_lines(str(folder / 'train.tsv'), [['sentence', 'label'], ['" the movie ', '1'],
                                                       ["it 's \"\"good\"\" ", '0'], ['"', '1']])
    train = TASKS['sst2'].load(str(folder))['train']
    assert train.texts[0] == ['" the movie ', "it 's \"\"good\"\" ", '"'] and train.y.tolist() == [1, 0, 1]


# ---------------------------------------------------------------------------------------- input transformations

N_VOCAB = 10
START, DELIM, CLF = 10, 11, 12


def ragged(*seqs):
    return Ragged.from_lists([list(s) for s in seqs])


def task(name):
    return TASKS[name]


def test_classification_sequences_token_by_token():
    texts = (ragged([1, 2, 3], [4]),)
    assert sequences(task('sst2'), texts, N_VOCAB, n_ctx=100).tolist() == [[START, 1, 2, 3, CLF], [START, 4, CLF]]
    assert sequences(task('cola'), texts, N_VOCAB, n_ctx=4).tolist() == [[START, 1, 2, CLF], [START, 4, CLF]]


def test_entailment_sequences_token_by_token():
    texts = (ragged([1, 2, 3, 4, 5], [1]), ragged([6, 7], [2, 3]))
    assert sequences(task('mnli'), texts, N_VOCAB, n_ctx=100).tolist() == [
        [START, 1, 2, 3, 4, 5, DELIM, 6, 7, CLF], [START, 1, DELIM, 2, 3, CLF]]
    # n_ctx 8 leaves 5 tokens: the premise (the longer) is cut to 3, the hypothesis kept
    assert sequences(task('snli'), texts, N_VOCAB, n_ctx=8)[0].tolist() == [START, 1, 2, 3, DELIM, 6, 7, CLF]


def test_similarity_has_both_orders_cut_alike():
    texts = (ragged([1, 2], [3, 3, 3, 3]), ragged([4], [5, 6, 7, 8, 9]))
    assert sequences(task('mrpc'), texts, N_VOCAB, n_ctx=100).tolist() == [
        [START, 1, 2, DELIM, 4, CLF], [START, 4, DELIM, 1, 2, CLF],
        [START, 3, 3, 3, 3, DELIM, 5, 6, 7, 8, 9, CLF], [START, 5, 6, 7, 8, 9, DELIM, 3, 3, 3, 3, CLF]]
    # n_ctx 8: 5 tokens for a pair of 4 and 5: a keeps 3, b 2 (the longer cut first, then alternately)
    assert sequences(task('stsb'), texts, N_VOCAB, n_ctx=8).tolist()[2:] == [
        [START, 3, 3, 3, DELIM, 5, 6, CLF], [START, 5, 6, DELIM, 3, 3, 3, CLF]]


def bert_rule(la, lb, budget):
    """The rule in words: take a token from the longer text (the second on a tie) until the pair fits."""
    while la + lb > budget:
        if la > lb:
            la -= 1
        else:
            lb -= 1
    return la, lb


def test_pair_lengths_follow_the_one_token_at_a_time_rule():
    grid = np.array([(la, lb, budget) for budget in range(13) for la in range(16) for lb in range(16)])
    a, b = inputs.pair_lengths(grid[:, 0], grid[:, 1], grid[:, 2])
    assert list(zip(a.tolist(), b.tolist())) == [bert_rule(*row) for row in grid.tolist()]


def test_race_sequences_keep_question_and_answers_and_cut_the_article_end():
    article, question = ragged([1, 2, 3, 4, 5, 6]), ragged([7, 8])
    answers = [ragged([9]), ragged([9, 9]), ragged([9, 9, 9]), ragged([])]
    seqs = sequences(task('race'), (article, question, *answers), N_VOCAB, n_ctx=100).tolist()
    assert seqs == [[START, 1, 2, 3, 4, 5, 6, 7, 8, DELIM, *a, CLF] for a in ([9], [9, 9], [9, 9, 9], [])]
    # n_ctx 10: 7 tokens; the longest answer takes 3, the question 2, the article keeps its first 2
    seqs = sequences(task('race'), (article, question, *answers), N_VOCAB, n_ctx=10).tolist()
    assert seqs == [[START, 1, 2, 7, 8, DELIM, *a, CLF] for a in ([9], [9, 9], [9, 9, 9], [])]
    assert max(map(len, seqs)) == 10


def test_race_answers_are_cut_only_past_half_the_context():
    texts = (ragged([1, 2, 3]), ragged([4]), ragged([5] * 9), ragged([6]), ragged([7]), ragged([8]))
    seqs = sequences(task('race'), texts, N_VOCAB, n_ctx=11).tolist()  # 8 tokens: answers up to 4
    assert seqs[0] == [START, 1, 2, 3, 4, DELIM, 5, 5, 5, 5, CLF]
    assert seqs[1] == [START, 1, 2, 3, 4, DELIM, 6, CLF]


def test_race_question_is_cut_at_its_end_when_the_answers_leave_less():
    texts = (ragged([1, 2]), ragged([3, 4, 5, 6]), ragged([7] * 5), ragged([8]), ragged([]), ragged([9]))
    seqs = sequences(task('race'), texts, N_VOCAB, n_ctx=9).tolist()  # 6 tokens: answers up to 3, 3 left
    assert seqs == [[START, 3, 4, 5, DELIM, *a, CLF] for a in ([7, 7, 7], [8], [], [9])]


def race_rule(article, question, answers, n_ctx):
    """The 'context' rule in words: each answer to (n_ctx - 3) // 2 tokens; the question then takes what the
    longest answer leaves, the article the rest, each cut at its end."""
    answers = [a[:(n_ctx - 3) // 2] for a in answers]
    room = n_ctx - 3 - max(map(len, answers))
    context = article[:room - len(question[:room])] + question[:room]
    return [[START] + context + [DELIM] + a + [CLF] for a in answers]


def test_race_sequences_follow_the_rule_and_fit_n_ctx():
    rng = np.random.RandomState(0)
    fields = [[rng.randint(0, N_VOCAB, rng.randint(0, m)).tolist() for _ in range(5)] for m in (30, 8, 9, 9, 9, 9)]
    for n_ctx in (8, 13, 20, 64):
        seqs = sequences(task('race'), tuple(ragged(*f) for f in fields), N_VOCAB, n_ctx).tolist()
        assert max(map(len, seqs)) <= n_ctx
        for i in range(5):
            article, question, *answers = (f[i] for f in fields)
            assert seqs[4 * i:4 * i + 4] == race_rule(article, question, answers, n_ctx), (n_ctx, i)


def test_rocstories_sequences_token_by_token():
    # n_ctx 10: each text to n_ctx // 2 - 2 = 3 tokens, the story and each ending alike
    texts = (ragged([1, 2, 3, 4, 5]), ragged([6, 7, 8, 9]), ragged([5]))
    assert sequences(task('rocstories'), texts, N_VOCAB, n_ctx=10).tolist() == [
        [START, 1, 2, 3, DELIM, 6, 7, 8, CLF], [START, 1, 2, 3, DELIM, 5, CLF]]
    assert sequences(task('rocstories'), texts, N_VOCAB, n_ctx=100).tolist() == [
        [START, 1, 2, 3, 4, 5, DELIM, 6, 7, 8, 9, CLF], [START, 1, 2, 3, 4, 5, DELIM, 5, CLF]]


def roc_ids(rng, n):
    return [rng.randint(0, N_VOCAB, rng.randint(0, 12)).tolist() for _ in range(n)]


@pytest.mark.parametrize('n_ctx', [512, 16])
def test_rocstories_sequences_are_transform_roc(n_ctx):
    rng = np.random.RandomState(0)
    X1, X2, X3 = roc_ids(rng, 20), roc_ids(rng, 20), roc_ids(rng, 20)
    max_len = n_ctx // 2 - 2
    n_ctx_model = min(context_length(X1, X2, X3, max_len), n_ctx)
    X_roc, M_roc = transform_roc(X1, X2, X3, N_VOCAB, n_ctx_model, max_len)
    seqs = sequences(task('rocstories'), (ragged(*X1), ragged(*X2), ragged(*X3)), N_VOCAB, n_ctx)
    X, M = pad_batch(seqs, np.arange(20), 2, N_VOCAB)
    T = X.shape[2]
    assert T == n_ctx_model  # the longest sequence: what train.py sizes the model to
    np.testing.assert_array_equal(X, X_roc[:, :, :T])
    np.testing.assert_array_equal(M, M_roc[:, :, :T])


def test_pad_batch_pads_to_the_batch_longest_with_positions_and_mask():
    seqs = ragged([10, 1, 12], [10, 1, 2, 3, 12], [10, 12], [10, 4, 5, 12])  # 2 examples, 2 sequences each
    X, M = pad_batch(seqs, [1], n_seq=2, n_vocab=N_VOCAB)
    assert X.shape == (1, 2, 4, 2) and X.dtype == np.int32 and M.dtype == np.float32
    assert X[..., 0].tolist() == [[[10, 12, 0, 0], [10, 4, 5, 12]]]
    assert M.tolist() == [[[1, 1, 0, 0], [1, 1, 1, 1]]]
    assert X[0, 0, :, 1].tolist() == [13, 14, 15, 16] == X[0, 1, :, 1].tolist()
    X, M = pad_batch(seqs, [1, 0], n_seq=2, n_vocab=N_VOCAB, multiple=8)
    assert X.shape == (2, 2, 8, 2)
    assert X[1, 0, :, 0].tolist() == [10, 1, 12, 0, 0, 0, 0, 0] and M[1, 1].sum() == 5


# -------------------------------------------------------------------------------------------- ragged and encoding

def test_ragged_take_and_concat():
    r = ragged([1, 2, 3], [], [4, 5])
    assert len(r) == 3 and r.lengths.tolist() == [3, 0, 2] and r[2].tolist() == [4, 5]
    assert r.take([2, 0, 0], [1, 2, 3]).tolist() == [[4], [1, 2], [1, 2, 3]]
    assert Ragged.concat([r, ragged([6])]).tolist() == [[1, 2, 3], [], [4, 5], [6]]


class CountingEncoder:
    """Ids by word (its position in a growing vocabulary); counts the texts it encodes."""

    def __init__(self):
        self.vocab, self.n_encoded = {}, 0

    def encode(self, texts, verbose=True):
        self.n_encoded += len(texts)
        return [[self.vocab.setdefault(w, len(self.vocab)) for w in t.split()] for t in texts]


def test_encode_examples_encodes_each_distinct_text_once_under_a_labelled_bar(capsys):
    examples = datasets.Examples((['a b', 'a b', 'c', 'a b'], ['d', 'c', 'e f g', 'd']), None, list('0123'))
    encoder = CountingEncoder()
    encoded = text_utils.encode_examples(encoder, examples, 'encoding mnli train', chunk=2)
    reference = CountingEncoder()
    assert [f.tolist() for f in encoded.texts] == [reference.encode(f) for f in examples.texts]
    assert encoder.n_encoded == 4  # 'a b', 'c', 'd', 'e f g'
    assert 'encoding mnli train' in capsys.readouterr().err
    assert encoded.ids == examples.ids and all(f.ids.dtype == np.int32 for f in encoded.texts)


def test_encoded_splits_round_trip_through_npz_without_pickle(tmp_path):
    _, splits = load('race', tmp_path)
    encoded = text_utils.encode_splits(CountingEncoder(), splits, 'race')
    buf = io.BytesIO()
    text_utils.save_encoded(buf, encoded)
    buf.seek(0)
    loaded = text_utils.load_encoded(buf)
    assert list(loaded) == ['train', 'dev', 'test']
    for split, ex in encoded.items():
        got = loaded[split]
        assert [f.tolist() for f in got.texts] == [f.tolist() for f in ex.texts]
        assert got.y.tolist() == ex.y.tolist() and got.ids == ex.ids and got.group.tolist() == ex.group.tolist()
    _, glue_splits = load('mnli', tmp_path)
    buf = io.BytesIO()
    text_utils.save_encoded(buf, text_utils.encode_splits(CountingEncoder(), glue_splits, 'mnli'))
    buf.seek(0)
    loaded = text_utils.load_encoded(buf)
    assert loaded['test_matched'].y is None and loaded['train'].group is None and loaded['train'].n_skipped == 0


# ------------------------------------------------------------------------------------------------------- metrics

def test_metrics_match_sklearn_and_scipy():
    from scipy import stats
    from sklearn import metrics as sk
    rng = np.random.RandomState(0)
    for _ in range(20):
        y, pred = rng.randint(0, 2, 50), rng.randint(0, 2, 50)
        assert metrics.accuracy(pred, y) == pytest.approx(sk.accuracy_score(y, pred))
        assert metrics.matthews_corrcoef(pred, y) == pytest.approx(sk.matthews_corrcoef(y, pred))
        assert metrics.f1(pred, y) == pytest.approx(sk.f1_score(y, pred))
        x, z = rng.randn(40), rng.randn(40)
        assert metrics.pearson(x, z) == pytest.approx(stats.pearsonr(x, z)[0])
        tied_x, tied_z = rng.randint(0, 5, 40), np.round(rng.rand(40) * 5, 1)  # STS-B's scores tie often
        np.testing.assert_allclose(metrics.average_ranks(tied_x), stats.rankdata(tied_x))
        assert metrics.spearman(tied_x, tied_z) == pytest.approx(stats.spearmanr(tied_x, tied_z)[0])


def test_degenerate_metrics_are_zero():
    assert metrics.matthews_corrcoef([1, 1, 1], [0, 1, 1]) == 0.0
    assert metrics.f1([0, 0], [0, 0]) == 0.0
    assert metrics.pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_score_in_the_papers_units_with_race_levels(tmp_path):
    _, splits = load('race', tmp_path)
    test = splits['test']
    pred = test.y.copy()
    pred[test.group == 'high'] = (pred[test.group == 'high'] + 1) % 4  # every high-school answer wrong
    scores = tasks.score(TASKS['race'], pred, test)
    n_middle = int(np.sum(test.group == 'middle'))
    assert scores == {'all': pytest.approx(100 * n_middle / len(pred)), 'RACE-m': 100.0, 'RACE-h': 0.0}
    ex = datasets.Examples((['a'] * 4,), np.array([1, 0, 1, 1]), list('0123'))
    assert tasks.score(TASKS['mrpc'], [1, 1, 0, 1], ex) == {'F1': pytest.approx(100 * 2 * 2 / (4 + 1 + 1)),
                                                            'acc': 50.0}
    assert tasks.prediction_strings(TASKS['mnli'], [2, 0]) == ['contradiction', 'entailment']
    assert tasks.prediction_strings(TASKS['stsb'], np.array([4.12345, 0.5])) == ['4.123', '0.500']


# ---------------------------------------------------------------------------------------------------- bad input

def error(name, folder):
    with pytest.raises(InputError) as err:
        TASKS[name].load(str(folder))
    return str(err.value)


def test_another_tasks_file_is_an_error_naming_file_and_header(tmp_path):
    task_files.mnli(str(tmp_path / 'MNLI'))
    task_files.sst2(str(tmp_path / 'SST-2'))
    os.replace(tmp_path / 'SST-2' / 'train.tsv', tmp_path / 'MNLI' / 'train.tsv')
    msg = error('mnli', tmp_path / 'MNLI')
    assert 'MNLI/train.tsv' in msg and line_named(msg, 1) and 'gold_label' in msg, msg
    task_files.cola(str(tmp_path / 'CoLA'))
    os.replace(tmp_path / 'MNLI' / 'train.tsv', tmp_path / 'CoLA' / 'dev.tsv')  # CoLA's dev has no header
    msg = error('cola', tmp_path / 'CoLA')
    assert 'CoLA/dev.tsv' in msg and line_named(msg, 1) and 'expected 4' in msg, msg


@pytest.mark.parametrize('name, file, change, expected', [
    ('mnli', 'dev_matched.tsv', lambda l: l.rsplit('\t', 1)[0], 'expected 16'),  # a missing column
    ('rte', 'train.tsv', lambda l: l + '\textra', 'expected 4'),
    ('mnli', 'train.tsv', lambda l: l.rsplit('\t', 1)[0] + '\tentails', 'entailment, neutral, contradiction'),
    ('qnli', 'dev.tsv', lambda l: l.rsplit('\t', 1)[0] + '\t1', 'entailment, not_entailment'),
    ('sst2', 'train.tsv', lambda l: l.rsplit('\t', 1)[0] + '\tpositive', '0, 1'),
    ('stsb', 'train.tsv', lambda l: l.rsplit('\t', 1)[0] + '\t5.2', 'score from 0 to 5'),
    ('scitail', 'tsv_format/scitail_1.0_test.tsv', lambda l: l.rsplit('\t', 1)[0] + '\tentailment', 'entails'),
    ('qqp', 'dev.tsv', lambda l: l.rsplit('\t', 1)[0] + '\t2', '0, 1'),  # 6 fields, a bad label: not skipped
    ('snli', 'snli_1.0_dev.jsonl', lambda l: l[:-3], 'JSON object'),
    ('snli', 'snli_1.0_train.jsonl', lambda l: l.replace('"gold_label": "neutral"', '"gold_label": "neutrall"'),
     'neutral'),
])
def test_bad_rows_are_an_error_naming_file_line_and_expectation(tmp_path, name, file, change, expected):
    folder = tmp_path / name
    task_files.WRITERS[name](str(folder))
    line = 2 if name == 'scitail' else 3
    if name == 'snli' and 'train' in file:
        line = 2  # the second pair is neutral
    task_files.replace_line(folder / file, line, change)
    msg = error(name, folder)
    assert file in msg and line_named(msg, line) and expected in msg, msg


def test_missing_file_names_it_and_the_download(tmp_path):
    task_files.qnli(str(tmp_path / 'QNLI'))
    os.remove(tmp_path / 'QNLI' / 'test.tsv')
    msg = error('qnli', tmp_path / 'QNLI')
    assert 'QNLI/test.tsv' in msg and 'gluebenchmark.com' in msg
    msg = error('race', tmp_path / 'no_race')
    assert 'no_race/train/middle' in msg and 'cmu.edu' in msg
    msg = error('snli', tmp_path / 'no_snli')
    assert 'snli_1.0_train.jsonl' in msg and 'nlp.stanford.edu' in msg


def test_empty_and_non_utf8_files_are_errors(tmp_path):
    task_files.rte(str(tmp_path / 'RTE'))
    (tmp_path / 'RTE' / 'dev.tsv').write_bytes(b'')
    msg = error('rte', tmp_path / 'RTE')
    assert 'RTE/dev.tsv' in msg and 'header' in msg
    (tmp_path / 'RTE' / 'dev.tsv').write_bytes(b'index\tsentence1\tsentence2\tlabel\n0\t\xe9t\xe9\tb\tentailment\n')
    msg = error('rte', tmp_path / 'RTE')
    assert 'RTE/dev.tsv' in msg and 'UTF-8' in msg


@pytest.mark.parametrize('change, expected', [
    (lambda obj: '{"article": "x", ', 'one JSON object'),
    (lambda obj: json.dumps({**obj, 'answers': ['E'] * len(obj['answers'])}), 'A, B, C or D'),
    (lambda obj: json.dumps({**obj, 'options': [o[:3] for o in obj['options']]}), '4 options'),
    (lambda obj: json.dumps({k: v for k, v in obj.items() if k != 'questions'}), 'questions'),
])
def test_bad_race_file_is_an_error_naming_it(tmp_path, change, expected):
    folder = tmp_path / 'RACE'
    task_files.race(str(folder))
    path = folder / 'dev' / 'high' / '3.txt'
    path.write_text(change(json.loads(path.read_text())))
    msg = error('race', folder)
    assert 'dev/high/3.txt' in msg and expected in msg, msg


# ---------------------------------------------------------------------------------------------- the real files

REAL_SIZES = {  # examples per split of the files as published (SNLI without its '-' pairs; QQP without broken rows)
    'sst2': {'train': 67349, 'dev': 872, 'test': 1821},
    'cola': {'train': 8551, 'dev': 1043, 'test': 1063},
    'mnli': {'train': 392702, 'dev_matched': 9815, 'dev_mismatched': 9832, 'test_matched': 9796,
             'test_mismatched': 9847},
    'qnli': {'train': 104743, 'dev': 5463, 'test': 5463},
    'rte': {'train': 2490, 'dev': 277, 'test': 3000},
    'mrpc': {'train': 3668, 'dev': 408, 'test': 1725},
    'qqp': {'train': 363846, 'dev': 40430, 'test': 390965},
    'stsb': {'train': 5749, 'dev': 1500, 'test': 1379},
    'snli': {'train': 549367, 'dev': 9842, 'test': 9824},
    'scitail': {'dev': 1304, 'test': 2126},
    'race': {'train': 87866, 'dev': 4887, 'test': 4934},
}


@pytest.mark.parametrize('name', sorted(REAL_SIZES))
def test_real_files_where_a_user_put_them(name):
    folder = os.path.basename(TASKS[name].data_dir)
    found = [p for p in (os.path.join('data', folder), os.path.join(os.path.dirname(task_files.__file__), '..', '..',
                                                                     'shared', 'data', folder)) if os.path.isdir(p)]
    if not found:
        pytest.skip(f'the real {name} files are not in data/{folder} or ../shared/data/{folder}')
    splits = TASKS[name].load(found[0])
    for split, n in REAL_SIZES[name].items():
        assert len(splits[split].ids) == n, (name, split)
    labelled = [s for s, ex in splits.items() if ex.y is not None]
    if TASKS[name].labels is not None:
        assert all(set(splits[s].y.tolist()) == set(range(len(TASKS[name].labels))) for s in labelled), name
