"""A newcomer's first day: --help and bad flags answer before TensorFlow is imported, every flag documented with
its default, a quiet start-up, a run that says what it computes and on what, labelled progress, the list of its
outputs, error messages that name the folder the run used, and the real files found where users put them."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tqdm import tqdm

import datasets
from engine import flags
from engine import loop
import model
import opt
from formats import weights
import text_utils
import train
import utils
from tests import test_train
from tests.fixtures import REAL_FILES, real_folders, real_path, write_rocstories

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(*argv, env=None, cwd=PROJECT):
    """A fresh `python -X importtime` process running argv (stderr then lists every module imported)."""
    return subprocess.run([sys.executable, '-X', 'importtime'] + list(argv), cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def imported(stderr):
    """The top-level modules that -X importtime reported, and the other lines of stderr."""
    modules, others = set(), []
    for line in stderr.splitlines():
        m = re.match(r'import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)', line)
        if m:
            modules.add(m.group(1).split('.')[0])
        elif not line.startswith('import time:'):
            others.append(line)
    return modules, others


# --- --help and the flags, before TensorFlow ----------------------------------------------------------------

# Every program of the project (those not written yet are covered once they exist) and what their --help must not
# import: each takes seconds (TensorFlow 5-25 s on a busy machine)
PROGRAMS = [name for name in ['train.py', 'generate.py', 'analysis.py', 'download.py', 'pretrain.py', 'zeroshot.py',
                              'convert.py'] if os.path.isfile(os.path.join(PROJECT, name))]
HEAVY = {'tensorflow', 'numpy', 'pandas', 'spacy', 'sklearn', 'scipy', 'matplotlib', 'joblib', 'ftfy'}


def test_help_does_not_import_tensorflow():
    result = run_script('train.py', '--help')
    modules, _ = imported(result.stderr)
    assert result.returncode == 0 and '--n_iter' in result.stdout
    assert 'argparse' in modules  # the listing works
    assert not {'tensorflow', 'numpy', 'spacy', 'sklearn'} & modules


@pytest.mark.parametrize('program', PROGRAMS)
def test_every_program_answers_help_and_a_bad_flag_before_its_heavy_imports(program):
    result = run_script(program, '--help')
    modules, _ = imported(result.stderr)
    assert result.returncode == 0 and result.stdout.startswith('usage: ') and '--help' in result.stdout
    assert 'argparse' in modules and not HEAVY & modules, HEAVY & modules
    result = run_script(program, '--no_such_flag')  # argparse's message, or the program's first error
    modules, others = imported(result.stderr)
    assert result.returncode == 2 and 'error: ' in others[-1], others
    assert not HEAVY & modules, HEAVY & modules


@pytest.mark.parametrize('argv, message', [
    (['train.py', '--data_dir', 'nowhere', '--encoder_path', '{enc}', '--bpe_path', '{bpe}'],
     "missing ROCStories data: 'nowhere/cloze_test_val"),
    (['train.py', '--dataset', 'rte', '--data_dir', '.', '--encoder_path', '{enc}', '--bpe_path', '{bpe}'],
     "'./train.tsv' not found: download the data set from"),
    (['train.py', '--data_dir', '{data}', '--model_dir', 'nowhere', '--encoder_path', '{enc}', '--bpe_path', '{bpe}'],
     "the weights folder 'nowhere' does not exist: run `python download.py --model_dir nowhere`"),
    (['generate.py', '--prompt', 'a', '--model_dir', 'nowhere', '--encoder_path', '{enc}', '--bpe_path', '{bpe}'],
     "the weights folder 'nowhere' does not exist"),
    (['generate.py', '--prompt', 'a', '--restore', 'nowhere.jl', '--encoder_path', '{enc}', '--bpe_path', '{bpe}'],
     "--restore 'nowhere.jl' not found"),
    (['analysis.py', '--plot', 'x.png', 'nowhere.jsonl'], "log 'nowhere.jsonl' not found"),
    (['analysis.py', '--data_dir', '.', '--submission', 'nowhere.tsv', '--log', 'nowhere.jsonl'],
     "--log 'nowhere.jsonl' not found")])
def test_a_missing_input_file_is_reported_before_tensorflow_is_imported(tmp_path, argv, message):
    (tmp_path / 'enc.json').write_text('{}')
    (tmp_path / 'vocab.bpe').write_text('#version: 0.2\n\n')
    write_rocstories(str(tmp_path / 'data'), n_val=3, n_test=2)
    paths = dict(enc=tmp_path / 'enc.json', bpe=tmp_path / 'vocab.bpe', data=tmp_path / 'data')
    result = run_script(os.path.join(PROJECT, argv[0]), *[arg.format(**paths) for arg in argv[1:]], cwd=tmp_path)
    modules, others = imported(result.stderr)
    assert result.returncode == 2 and others == [f'error: {others[-1][7:]}'] and message in others[-1], others
    assert not {'tensorflow'} & modules


@pytest.mark.parametrize('argv, message', [(['--afn', 'tanh'], "error: unknown --afn 'tanh': choose one of gelu"),
                                           (['--n_iter', '0'], 'error: --n_iter must be at least 1'),
                                           (['--n_iter', 'x'], "invalid int value: 'x'")])
def test_a_bad_flag_is_refused_before_tensorflow_is_imported(argv, message):
    result = run_script('train.py', *argv)
    modules, others = imported(result.stderr)
    assert result.returncode == 2
    assert message in others[-1]
    assert 'tensorflow' not in modules


def test_every_flag_has_a_help_line_and_its_default(capsys, monkeypatch):
    monkeypatch.setenv('COLUMNS', '1000')  # one line per flag
    with pytest.raises(SystemExit):
        flags.parse_args(['--help'])
    entries = []  # an option's lines, joined: a long flag has its help on the next line
    for line in capsys.readouterr().out.split('options:')[1].splitlines():
        if line.startswith('  -'):
            entries.append(line)
        elif line.startswith('   ') and entries:
            entries[-1] += ' ' + line.strip()
    lines = {entry.split()[0]: entry for entry in entries if entry.startswith('  --')}
    defaults = vars(flags.parse_args([]))
    assert set(lines) == {f'--{name}' for name in defaults}
    parser_defaults = {'desc': None, 'encoder_path': None, 'bpe_path': None, 'data_dir': None}  # computed after
    for name, default in {**defaults, **parser_defaults}.items():
        line = lines[f'--{name}']
        words = line.split()[1 if default is False else 2:]  # past the flag and its metavar
        assert words and not words[0].startswith('('), f'--{name} has no help: {line!r}'
        if default is not None and default is not False:
            assert line.endswith(f'(default: {default})'), line


def test_the_choices_are_the_keys_of_the_tables():
    assert flags.CHOICES['dataset'] == tuple(train.TASKS)
    assert flags.DATA_DIRS == {name: task.data_dir for name, task in train.TASKS.items()}
    glue = [task for task in train.TASKS.values() if task.url == datasets.GLUE_URL]
    assert len(glue) == 8 and all(task.data_dir == f'data/{task.title}' for task in glue)  # GLUE's folder names
    assert set(flags.CHOICES['afn']) == set(model.act_fns)
    assert set(flags.CHOICES['lr_schedule']) == set(opt.schedules)
    assert set(flags.CHOICES['opt']) == set(opt.optimizers)
    assert set(flags.CHOICES['precision']) == set(model.compute_dtypes)
    for flag, names in flags.CHOICES.items():
        assert vars(flags.parse_args([f'--{flag}', names[-1]]))[flag] == names[-1]


def test_the_flags_are_printed_in_aligned_cells():
    args = flags.parse_args(['--data_dir', '/a/long/folder/name/for/the/story/cloze/files'])
    lines = flags.format_flags(args).splitlines()
    assert len(lines) < len(vars(args)) / 2 and all(len(line) <= 112 for line in lines)
    cells = [cell for line in lines for cell in re.findall(r'\S+ \S+', line)]
    assert cells == [f'{name} {value}' for name, value in vars(args).items()]
    for line in lines:  # every cell starts on the grid
        assert all(m.start() % 28 == 0 for m in re.finditer(r'(?:^|(?<=  ))\S+ \S+', line)), line


# --- a quiet start-up --------------------------------------------------------------------------------------

QUIET_PROBE = '''
import os
from utils import tensorflow_start_up_hidden
with tensorflow_start_up_hidden():
    os.write(2, b"chatter of a C++ library\\n")
print(os.environ["TF_CPP_MIN_LOG_LEVEL"])
'''


@pytest.mark.parametrize('level, hidden', [(None, True), ('3', True), ('0', False), ('1', False)])
def test_tensorflow_start_up_lines_are_hidden_unless_the_user_sets_a_low_log_level(level, hidden):
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    if level is not None:
        env['TF_CPP_MIN_LOG_LEVEL'] = level
    result = subprocess.run([sys.executable, '-c', QUIET_PROBE], cwd=PROJECT, capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.stdout.strip() == (level or '2')  # the user's value wins
    assert ('chatter' in result.stderr) == (not hidden)


def test_a_run_starts_without_tensorflow_lines(tmp_path):
    """The whole start-up (imports, devices) then data too small for the split (3 stories, 374 to validate):
    stderr holds the error line alone."""
    encoder_path, bpe_path = tmp_path / 'enc.json', tmp_path / 'vocab.bpe'
    encoder_path.write_text(json.dumps({'a</w>': 0}))
    bpe_path.write_text('#version: 0.2\n\n')
    write_rocstories(str(tmp_path / 'data'), n_val=3, n_test=2)
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    result = subprocess.run([sys.executable, 'train.py', '--data_dir', str(tmp_path / 'data'), '--n_transfer', '-1',
                             '--encoder_path', str(encoder_path), '--bpe_path', str(bpe_path),
                             '--log_dir', str(tmp_path / 'log'), '--save_dir', str(tmp_path / 'save'),
                             '--cache_dir', ''], cwd=PROJECT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line for line in result.stderr.strip().splitlines()
                                                 if line.startswith('error: ')], result.stderr
    assert '374' in result.stderr
    assert result.stdout.splitlines()[-1].startswith('devices: ')


# --- what a run says ---------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('newcomer')
    original = test_train.real_path
    test_train.real_path = lambda *parts: None  # generated data: fast
    try:
        data_dir, encoder_path, bpe_path, _, n_batch, n_train, n_test = test_train.tiny_run_files(tmp)
    finally:
        test_train.real_path = original
    return dict(tmp=tmp, n_batch=n_batch, n_train=n_train, n_test=n_test,
                flags=['--desc', 'tiny', '--n_batch', str(n_batch), '--n_embd', '32', '--n_head', '4', '--n_layer', '2',
                       '--n_transfer', '2', '--data_dir', data_dir, '--model_dir', str(tmp / 'model'),
                       '--encoder_path', encoder_path, '--bpe_path', bpe_path, '--cache_dir', ''])


@pytest.fixture
def bars(monkeypatch):
    """Every progress bar that train.py, engine/loop.py and text_utils.py open, as they stand when closed."""
    opened = []

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    for module in [train, loop, text_utils]:
        monkeypatch.setattr(module, 'tqdm', Bar)
    return opened


def test_a_run_says_what_it_computes_shows_labelled_progress_and_lists_its_outputs(tiny, capsys, bars):
    out = tiny['tmp'] / 'out'
    train.main(tiny['flags'] + ['--n_iter', '2', '--submit', '--save_every', '100', '--log_dir', str(out / 'log'),
                                '--save_dir', str(out / 'save'), '--submission_dir', str(out / 'submission')])
    stdout, stderr = capsys.readouterr()
    lines = stdout.splitlines()
    n_batches = tiny['n_train'] // (tiny['n_batch'] * 4)
    assert ('devices: the CPU (no GPU visible); strategy: DefaultDistributionStrategy with 1 replica; precision fp32 '
            '(TF32 off)') in lines
    assert (f"2 epochs x {n_batches} updates of {tiny['n_batch'] * 4} examples = {2 * n_batches} updates; "
            f"2 evaluations of {tiny['n_train']} train + 374 valid examples; then {tiny['n_test']} test examples"
            ) in lines
    header = lines.index('n_epochs n_updates tr_cost va_cost tr_acc va_acc')
    assert [line.split()[:2] for line in lines[header + 1:header + 3]] == [['1', str(n_batches)],
                                                                            ['2', str(2 * n_batches)]]
    assert all(re.fullmatch(r'\d+ \d+ \d+\.\d{3} \d+\.\d{3} \d+\.\d{2} \d+\.\d{2}', line)
               for line in lines[header + 1:header + 3])

    listed = dict(re.match(r'  (\S.*?)\s{2,}(\S+)$', line).groups() for line in lines[lines.index('written:') + 1:]
                  if line.startswith('  '))
    assert listed == {'log': str(out / 'log' / 'tiny.jsonl'), 'TensorBoard': str(out / 'log' / 'tiny'),
                      'best parameters': str(out / 'save' / 'tiny' / 'best_params.jl'),
                      'best parameters (safetensors)': str(out / 'save' / 'tiny' / 'best_params.safetensors'),
                      'checkpoints': str(out / 'save' / 'tiny' / 'checkpoints'),
                      'submission': str(out / 'submission' / 'ROCStories.tsv'),
                      'probabilities': str(out / 'submission' / 'ROCStories_probs.tsv')}
    assert all(os.path.exists(path) for path in listed.values())
    assert f"plot the learning curves: python analysis.py --plot tiny.png {out / 'log' / 'tiny.jsonl'}" in lines

    shown = [(bar.desc, bar.n, bar.total) for bar in bars if hasattr(bar, 'desc')]  # not the disabled ones
    encoding = [(d, n, t) for d, n, t in shown if d.startswith('encoding')]  # counts the distinct texts
    assert [d for d, _, _ in encoding] == [f'encoding rocstories {split}' for split in ['train', 'valid', 'test']]
    assert all(0 < n == t for _, n, t in encoding)
    (run,) = [bar for bar in bars if getattr(bar, 'desc', '').startswith('epoch')]  # one bar spans the whole run
    assert (run.desc, run.n, run.total) == ('epoch 2/2: ', 2 * n_batches, 2 * n_batches)
    assert re.fullmatch(r'loss \d\.\d{3} lr [\d.e-]+', run.postfix)
    assert [(d, n, t) for d, n, t in shown if d.startswith(('evaluating', 'predicting'))] == \
        [('evaluating train', tiny['n_train'], tiny['n_train']), ('evaluating valid', 374, 374)] * 2 + \
        [('predicting test', tiny['n_test'], tiny['n_test'])]  # each counts the stories of its split


def test_evaluation_bars_count_every_example_of_a_partial_last_batch(bars):
    batches = []

    def eval_step(rows):
        batches.append(rows)
        return tf.zeros((len(rows), 2)), tf.zeros(len(rows))
    batches_of_4 = ((len(rows), (rows,)) for rows in np.array_split(np.arange(10), [4, 8]))
    loop.iter_apply(eval_step, batches_of_4, 10, desc='evaluating valid')
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [(bar.desc, bar.n, bar.total) for bar in bars] == [('evaluating valid', 10, 10)]


# --- error messages name the folder the run used -----------------------------------------------------------

def test_missing_bpe_files_suggest_downloading_them_into_the_folder_used(tmp_path, capsys):
    folder = tmp_path / 'my weights'
    with pytest.raises(SystemExit):
        train.main(['--model_dir', str(folder), '--log_dir', str(tmp_path / 'log'), '--cache_dir', ''])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"python download.py --model_dir '{folder}'`" in err  # the run needs the weights too

    with pytest.raises(SystemExit):
        train.main(['--encoder_path', str(tmp_path / 'elsewhere' / 'enc.json'), '--log_dir', str(tmp_path / 'log')])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--model_dir {tmp_path / 'elsewhere'}" in err and '--encoder_path' in err


def test_missing_weights_suggest_downloading_them_into_the_folder_used(tmp_path):
    with pytest.raises(utils.InputError, match=re.escape(f"python download.py --model_dir {tmp_path / 'w'}`")):
        weights.load_openai_params(str(tmp_path / 'w'), 16, 3)
    (tmp_path / 'w').mkdir()
    (tmp_path / 'w' / 'params_shapes.json').write_text('[[4, 2]]')
    (tmp_path / 'w' / 'params_0.npy').write_bytes(b'not a numpy file')
    with pytest.raises(utils.InputError, match=re.escape(f"python download.py --model_dir {tmp_path / 'w'}`")):
        weights.load_openai_params(str(tmp_path / 'w'), 16, 3)


# --- the real files, where users put them ------------------------------------------------------------------

def test_real_files_are_looked_for_in_the_environment_then_the_project_then_shared(tmp_path, monkeypatch):
    monkeypatch.delenv('GPT1_DATA_DIR', raising=False)
    assert real_folders('data')[0] == os.path.join(PROJECT, 'data')
    assert real_folders('model')[0] == os.path.join(PROJECT, 'model')
    assert real_folders('data')[1].endswith(os.path.join('shared', 'data', 'rocstories'))

    mine = tmp_path / 'stories'
    write_rocstories(str(mine), n_val=3, n_test=2)
    monkeypatch.setenv('GPT1_DATA_DIR', str(mine))
    assert real_folders('data')[0] == str(mine)
    assert real_path('data') == str(mine)
    (mine / REAL_FILES['data'][1]).unlink()  # a folder without both files is passed over
    assert real_path('data') != str(mine)
    monkeypatch.setenv('GPT1_MODEL_DIR', str(tmp_path))
    (tmp_path / 'params_shapes.json').write_text('[]')
    assert real_path('model', 'params_shapes.json') == str(tmp_path / 'params_shapes.json')
