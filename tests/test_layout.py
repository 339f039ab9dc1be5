"""The project's layout (issue 28): the programs a user runs and the original's files stay at the top level, the
rest is grouped by concern in folders; a program imports libraries, never another program; no library imports
itself back through others (no circle); every library is used; and one batch's path from the files to the update
crosses the files listed here, which a run of that path is checked against."""
import ast
import glob
import json
import os
import sys

import numpy as np

from formats.sample_files import PROJECT

PROGRAMS = {'train', 'pretrain', 'zeroshot', 'generate', 'download', 'convert', 'analysis'}
BENCH_PROGRAMS = {'bench', 'bench_masks', 'bench_pipeline', 'bench_pretrain', 'memory_check',
                  'precision'}  # bench/: run as python bench/X.py
REQUIRED = {'train', 'model', 'opt', 'text_utils', 'datasets', 'analysis', 'utils'}  # the original's file names
FOLDERS = {'engine', 'finetuning', 'pretraining', 'formats', 'paper'}

# The files a reader opens to follow one batch from the data files to the update (in that order), each holding a
# step of it; the machinery behind a few calls (devices, towers, the run's writes, the speed kernels behind their
# switch, small helpers) is not on the path.
FINETUNE_PATH = ['train.py', 'datasets.py', 'finetuning/tasks.py', 'text_utils.py', 'finetuning/inputs.py',
                 'model.py', 'opt.py']
PRETRAIN_PATH = ['pretrain.py', 'pretraining/corpus.py', 'text_utils.py', 'pretraining/windows.py', 'model.py',
                 'opt.py']
MACHINERY = {'engine/loop.py', 'engine/kernels.py', 'utils.py'}


def modules():
    """{module name as imported: its path}: the top level, its folders (engine.loop, ...), and bench/'s files under
    their own names (a bench program's folder is on its path)."""
    found = {}
    for path in glob.glob(os.path.join(PROJECT, '*.py')) + glob.glob(os.path.join(PROJECT, '*', '*.py')):
        folder, name = os.path.relpath(path, PROJECT).split(os.sep)[:-1], os.path.splitext(os.path.basename(path))[0]
        if folder and folder[0] in FOLDERS:
            found[f'{folder[0]}.{name}' if name != '__init__' else folder[0]] = path
        elif folder == ['bench'] or not folder:
            found[name] = path
    return found


def project_imports(path, names):
    """The project's modules that the file at `path` imports, anywhere in it (engine.loop for `from engine import
    loop` and for `import engine.loop`)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f'{node.module}.{a.name}' for a in node.names} | {node.module}
    return {name for name in found if name in names and not (name in FOLDERS and f'{name}.' in str(found))}


def graph():
    files = modules()
    return files, {name: project_imports(path, set(files)) - {name} - FOLDERS for name, path in files.items()}


def test_the_original_files_and_the_programs_stay_at_the_top_and_the_rest_is_in_folders():
    top = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(PROJECT, '*.py'))}
    assert REQUIRED | PROGRAMS <= top
    assert top - REQUIRED - PROGRAMS == {'conftest'}, 'a library at the top level: put it in a folder'
    bench = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(PROJECT, 'bench', '*.py'))}
    assert BENCH_PROGRAMS <= bench


def test_no_program_imports_another_program():
    files, imports = graph()
    for name in sorted(imports):
        assert not imports[name] & (PROGRAMS | BENCH_PROGRAMS), f'{name} imports {sorted(imports[name] & PROGRAMS)}'
    for name in PROGRAMS | BENCH_PROGRAMS:
        assert "if __name__ == '__main__':" in open(files[name], encoding='utf-8').read(), name


def test_no_import_circle():
    """A depth-first walk of the import graph (every import, at the top of a file or inside a function) finds no
    module that reaches itself."""
    _, imports = graph()
    done, stack = set(), []

    def visit(name):
        if name in stack:
            raise AssertionError('import circle: ' + ' -> '.join(stack[stack.index(name):] + [name]))
        if name not in done:
            stack.append(name)
            for other in sorted(imports[name]):
                visit(other)
            stack.pop()
            done.add(name)
    for name in sorted(imports):
        visit(name)


def test_every_library_is_used():
    _, imports = graph()
    used = set().union(*imports.values())
    libraries = set(imports) - PROGRAMS - BENCH_PROGRAMS - FOLDERS - {'conftest'}
    assert not libraries - used, f'libraries no file imports: {sorted(libraries - used)}'


def test_the_readers_paths_are_short_and_exist():
    assert len(FINETUNE_PATH) <= 7 and len(PRETRAIN_PATH) <= 6
    for path in FINETUNE_PATH + PRETRAIN_PATH:
        assert os.path.isfile(os.path.join(PROJECT, path)), path


def files_run(fn):
    """The project's files (relative paths; not the tests, not the virtual environment) whose Python functions run
    while fn() does: a trace of each call (never of lines: the function returns no local tracer)."""
    names = set()

    def trace(frame, event, arg):
        names.add(frame.f_code.co_filename)
    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    paths = {os.path.relpath(name, PROJECT) for name in names if name.startswith(PROJECT + os.sep)}
    return {path for path in paths if path.split(os.sep)[0] not in ('tests', '.venv') and 'site-packages' not in path}


def test_one_finetuning_batch_from_the_csv_to_the_update_runs_in_the_listed_files_alone(tmp_path):
    """The ROCStories CSVs read, encoded, made the model's inputs and one packed update made, as train.py does it:
    the files that compute it are FINETUNE_PATH's (and the machinery's)."""
    import tensorflow as tf

    import opt
    import text_utils
    from engine import loop
    from engine.kernels import DEFAULT
    from finetuning import inputs
    from finetuning.tasks import TASKS
    from formats.sample_files import write_rocstories
    from model import Config, Head, Model, finetune_objective
    task = TASKS['rocstories']
    write_rocstories(str(tmp_path / 'data'), n_val=400, n_test=8)
    encoder_path, bpe_path = str(tmp_path / 'encoder.json'), str(tmp_path / 'vocab.bpe')
    symbols = sorted(set('abcdefghijklmnopqrstuvwxyz.'))  # a vocabulary of letters: no merges
    with open(encoder_path, 'w') as f:
        json.dump({s: i for i, s in enumerate(symbols + [s + '</w>' for s in symbols])}, f)
    with open(bpe_path, 'w') as f:
        f.write('#version: 0.2\n\n')

    def one_batch():
        encoder = text_utils.TextEncoder(encoder_path, bpe_path)
        n_vocab = len(encoder.encoder)
        encoded, _ = text_utils.encoded_dataset(task, str(tmp_path / 'data'), None, encoder)
        split = inputs.ready(task, encoded[task.train], n_vocab, 64, packed=False)
        n_ctx = int(split.seqs.lengths.max())
        packing, _ = inputs.packing_plan(split.seqs, inputs.epoch_orders(len(split.Y), 1, np.random.get_state()),
                                         2, 4, 2, 16, 8, n_ctx)
        model = Model(Config(n_vocab, n_ctx, n_embd=16, n_head=2, n_layer=1, head=Head(**task.head)))
        adam = opt.Adam(model.params, 6.25e-5, opt.warmup_linear, 10)
        strategy = tf.distribute.get_strategy()
        update = opt.make_update(finetune_objective(model, 0.5, DEFAULT), model.params, adam, strategy, 0, n_towers=2)
        batch = inputs.train_batch(task, split, np.arange(8), n_vocab, n_ctx, DEFAULT, 2, packing)
        update(*loop.distribute(strategy, batch))
    ran = files_run(one_batch)
    assert set(FINETUNE_PATH) - {'train.py'} <= ran  # each file of the path holds a step of it
    assert ran <= set(FINETUNE_PATH) | MACHINERY, f'files off the listed path: {sorted(ran - set(FINETUNE_PATH))}'
