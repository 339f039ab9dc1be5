"""Small files in exactly the formats the paper's task publishers distribute (GLUE as download_glue_data.py unpacks
it, SNLI 1.0 jsonl, SciTail v1.1 tsv_format, RACE), with rows modelled on the real ones: literal quote characters,
a byte-order mark and CRLF line ends where noted, a trailing empty line.

Two optional hooks, the files unchanged without them:
    make      the texts and label of row k of a split: make(split, k) -> (text, ..., label string) (RACE:
              make(split, level, k) -> (article, questions, options, answers)); a test file ignores the label.
    texts_of  {test split: the labelled split whose texts and labels it holds}, e.g. {'test': 'dev'}: a test file
              in the test format (its ids, no label column) with the dev file's rows, so that a test can score a
              submission against the dev labels."""
import json
import os

BOM = '\ufeff'
MNLI_HEAD = ['index', 'promptID', 'pairID', 'genre', 'sentence1_binary_parse', 'sentence2_binary_parse',
             'sentence1_parse', 'sentence2_parse', 'sentence1', 'sentence2']
STSB_HEAD = ['index', 'genre', 'filename', 'year', 'old_index', 'source1', 'source2', 'sentence1', 'sentence2']


def write_lines(path, rows, bom=False, eol='\n', trailing=''):
    """Rows (lists of fields, or str) joined by tabs, each ended by `eol`; `trailing` appended (an empty line)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = ''.join(('\t'.join(r) if isinstance(r, list) else r) + eol for r in rows)
    with open(path, 'w', encoding='utf-8', newline='') as f:
        f.write((BOM if bom else '') + text + trailing)


def source(split, texts_of):
    """The split whose rows a file of `split` holds (see texts_of above)."""
    return (texts_of or {}).get(split, split)


def replace_line(path, n, change):
    """Line n (1-based) of a text file replaced by change(line), its line end kept: a damaged file for a test."""
    with open(path, encoding='utf-8', newline='') as f:
        lines = f.read().split('\n')
    lines[n - 1] = change(lines[n - 1])
    with open(path, 'w', encoding='utf-8', newline='') as f:
        f.write('\n'.join(lines))


def sentence(k, split, label=None):
    """A distinct sentence; every third holds literal double quotes, as GLUE's text does."""
    quote = ' he said " no " .' if k % 3 == 0 else ' .'
    return f'{split} sentence {k} {label if label is not None else ""}'.strip() + quote


def one_sentence(split, k):
    """The default row k of a single-sentence task: (sentence, label)."""
    return sentence(k, split), str(k % 2)


def sst2(folder, n=6, make=one_sentence, texts_of=None):
    """SST-2: train/dev `sentence label` (sentences end with a space), test `index sentence`; dev has CRLF."""
    for split in ('train', 'dev'):
        rows = [['sentence', 'label']] + [[text + ' ', label] for text, label in (make(split, k) for k in range(n))]
        write_lines(os.path.join(folder, f'{split}.tsv'), rows, eol='\r\n' if split == 'dev' else '\n')
    write_lines(os.path.join(folder, 'test.tsv'), [['index', 'sentence']] + [
        [str(k), make(source('test', texts_of), k)[0]] for k in range(n)], trailing='\n')


def cola(folder, n=6, make=one_sentence, texts_of=None):
    """CoLA: train/dev without a header (source, label, the original's '*' mark, sentence), test `index
    sentence`."""
    for split in ('train', 'dev'):
        rows = [['gj04', label, '' if label == '1' else '*', text] for text, label in (make(split, k)
                                                                                          for k in range(n))]
        write_lines(os.path.join(folder, f'{split}.tsv'), rows)
    write_lines(os.path.join(folder, 'test.tsv'), [['index', 'sentence']] + [
        [str(k), make(source('test', texts_of), k)[0]] for k in range(n)])


MNLI_LABELS = ['entailment', 'neutral', 'contradiction']


def premise_pair(split, k):
    """The default row k of MNLI and SNLI: (premise, hypothesis, label)."""
    return sentence(k, split + '-premise'), sentence(k, split + '-hypothesis'), MNLI_LABELS[k % 3]


def mnli_row(k, row, n_labels):
    s1, s2, label = row
    head = [str(k), str(31193 + k), f'{31193 + k}n', 'government', f'( {s1} )', f'( {s2} )', f'(ROOT (S {s1}))',
            f'(ROOT (S {s2}))', s1, s2]
    return head + [label] * n_labels


def mnli(folder, n=6, make=premise_pair, texts_of=None):
    """MNLI: train (12 columns: ... sentence1 sentence2 label1 gold_label), dev_matched/mismatched (16: label1-5
    and gold_label), test_matched/mismatched (10, no label)."""
    write_lines(os.path.join(folder, 'train.tsv'), [MNLI_HEAD + ['label1', 'gold_label']] +
                [mnli_row(k, make('train', k), 2) for k in range(n)])
    for split in ('dev_matched', 'dev_mismatched'):
        write_lines(os.path.join(folder, f'{split}.tsv'),
                    [MNLI_HEAD + ['label1', 'label2', 'label3', 'label4', 'label5', 'gold_label']] +
                    [mnli_row(k, make(split, k), 6) for k in range(n)])
    for split in ('test_matched', 'test_mismatched'):
        write_lines(os.path.join(folder, f'{split}.tsv'), [MNLI_HEAD] + [
            mnli_row(k, make(source(split, texts_of), k), 0) for k in range(n)])


def pair(labels):
    """The default rows of a sentence-pair task whose label k % 2 picks from `labels`: make(split, k)."""
    return lambda split, k: (sentence(k, split + '-a'), sentence(k, split + '-b'), labels[k % 2])


def glue_pair(folder, columns, n, make, texts_of):
    """QNLI / RTE: `index <text1> <text2> label`, test without the label."""
    for split in ('train', 'dev'):
        rows = [['index', *columns, 'label']] + [[str(k), *make(split, k)] for k in range(n)]
        write_lines(os.path.join(folder, f'{split}.tsv'), rows)
    write_lines(os.path.join(folder, 'test.tsv'), [['index', *columns]] +
                [[str(k), *make(source('test', texts_of), k)[:2]] for k in range(n)])


def qnli(folder, n=6, make=pair(['entailment', 'not_entailment']), texts_of=None):
    glue_pair(folder, ['question', 'sentence'], n, make, texts_of)


def rte(folder, n=6, make=pair(['not_entailment', 'entailment']), texts_of=None):
    glue_pair(folder, ['sentence1', 'sentence2'], n, make, texts_of)


def mrpc(folder, n=6, make=pair(['0', '1']), texts_of=None):
    """MRPC as download_glue_data.py writes it: train/dev start with the BOM of msr_paraphrase_train.txt and its
    header `Quality #1 ID #2 ID #1 String #2 String`; test has `index` in place of Quality."""
    for split in ('train', 'dev'):
        rows = [['Quality', '#1 ID', '#2 ID', '#1 String', '#2 String']] + [
            [label, str(702876 + k), str(702977 + k), a, b]
            for k, (a, b, label) in enumerate(make(split, k) for k in range(n))]
        write_lines(os.path.join(folder, f'{split}.tsv'), rows, bom=True)
    write_lines(os.path.join(folder, 'test.tsv'), [['index', '#1 ID', '#2 ID', '#1 String', '#2 String']] +
                [[str(k), str(1089874 + k), str(1089925 + k), *make(source('test', texts_of), k)[:2]]
                 for k in range(n)])


def question_pair(split, k):
    """The default row k of QQP: (question1, question2, is_duplicate)."""
    if split == 'train':
        return f'How is "question" {k}?', f'Which is question {k}?', str(k % 2)
    return f'{split.title()} q {k}?', f'{split.title()} r {k}?', str(k % 2)


def qqp(folder, n=6, broken=(), make=question_pair, texts_of=None):
    """QQP: `id qid1 qid2 question1 question2 is_duplicate`, test `id question1 question2`. Train rows in `broken`
    hold a newline inside question1, splitting them over two malformed lines, as in the real train file."""
    rows = [['id', 'qid1', 'qid2', 'question1', 'question2', 'is_duplicate']]
    for k in range(n):
        q1, q2, label = make('train', k)
        q1 = f'How is question {k}?\nWhat about it' if k in broken else q1
        rows.append([str(133273 + k), str(2 * k + 1), str(2 * k + 2), q1, q2, label])
    write_lines(os.path.join(folder, 'train.tsv'), rows)
    write_lines(os.path.join(folder, 'dev.tsv'), rows[:1] + [[str(k), str(k), str(k + 1), *make('dev', k)]
                                                             for k in range(n)])
    write_lines(os.path.join(folder, 'test.tsv'), [['id', 'question1', 'question2']] +
                [[str(k), *make(source('test', texts_of), k)[:2]] for k in range(n)])


def scored_pair(split, k):
    """The default row k of STS-B: (sentence1, sentence2, score with 3 decimals, 0 to 4, in steps of 0.8)."""
    return sentence(k, split + '-a'), sentence(k, split + '-b'), f'{k % 6 * 0.8:.3f}'


def stsb(folder, n=6, make=scored_pair, texts_of=None):
    """STS-B: 10 columns ending in sentence1 sentence2 score (0-5, 3 decimals); test without score."""
    for split in ('train', 'dev'):
        rows = [STSB_HEAD + ['score']] + [[str(k), 'main-captions', 'MSRvid', '2012test', f'{k:04d}', 'none', 'none',
                                          *make(split, k)] for k in range(n)]
        write_lines(os.path.join(folder, f'{split}.tsv'), rows)
    write_lines(os.path.join(folder, 'test.tsv'), [STSB_HEAD] + [
        [str(k), 'main-news', 'headlines', '2016', f'{k:04d}', 'none', 'none',
         *make(source('test', texts_of), k)[:2]] for k in range(n)])


def snli(folder, n=6, n_unlabelled=1, make=premise_pair, texts_of=None):
    """SNLI 1.0 jsonl: one object per line (annotator_labels, captionID, gold_label, pairID, sentence1/2 and their
    parses); the last n_unlabelled pairs of each file have gold_label '-'."""
    for split in ('train', 'dev', 'test'):
        rows = []
        for k in range(n + n_unlabelled):
            s1, s2, label = make(source(split, texts_of), k)
            label = label if k < n else '-'
            rows.append(json.dumps({'annotator_labels': [label], 'captionID': f'{k}.jpg#4', 'gold_label': label,
                                    'pairID': f'{k}.jpg#4r1{label[0]}', 'sentence1': s1,
                                    'sentence1_binary_parse': f'( {s1} )', 'sentence1_parse': f'(ROOT {s1})',
                                    'sentence2': s2, 'sentence2_binary_parse': f'( {s2} )',
                                    'sentence2_parse': f'(ROOT {s2})'}))
        write_lines(os.path.join(folder, f'snli_1.0_{split}.jsonl'), rows)


def scitail_pair(split, k):
    """The default row k of SciTail: (premise, hypothesis, label)."""
    return sentence(k, split + '-premise'), sentence(k, split + '-hypothesis'), ['entails', 'neutral'][k % 2]


def scitail(folder, n=6, make=scitail_pair, texts_of=None):
    """SciTail v1.1 tsv_format: `premise hypothesis label` without a header, labels entails / neutral."""
    for split in ('train', 'dev', 'test'):
        rows = [list(make(source(split, texts_of), k)) for k in range(n)]
        write_lines(os.path.join(folder, 'tsv_format', f'scitail_1.0_{split}.tsv'), rows)


def race_passage(split, level, k):
    """The default passage k of a level: (article, questions, options, answers), k % 3 + 1 questions."""
    n_q = k % 3 + 1
    return (f'{split} {level} article {k} . "Quoted" text\nwith a line end .',
            [f'{split} {level} {k} question {q} _ ?' for q in range(n_q)],
            [[f'{split} {level} {k} option {q} {c}' for c in 'abcd'] for q in range(n_q)],
            ['ABCD'[(k + q) % 4] for q in range(n_q)])


def race(folder, n_files=(2, 10), make=race_passage, texts_of=None):
    """RACE: {train,dev,test}/{middle,high}/<n>.txt, each one JSON object (answers, options, questions, article,
    id); the files of a level are 1.txt ... n.txt."""
    for split in ('train', 'dev', 'test'):
        for level, count in zip(('middle', 'high'), n_files):
            for k in range(1, count + 1):
                article, questions, options, answers = make(source(split, texts_of), level, k)
                obj = {'answers': answers, 'options': options, 'questions': questions, 'article': article,
                       'id': f'{level}{k}.txt'}
                path = os.path.join(folder, split, level, f'{k}.txt')
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'w', encoding='utf-8') as f:
                    json.dump(obj, f)


WRITERS = {'sst2': sst2, 'cola': cola, 'mnli': mnli, 'qnli': qnli, 'rte': rte, 'mrpc': mrpc, 'qqp': qqp,
           'stsb': stsb, 'snli': snli, 'scitail': scitail, 'race': race}
