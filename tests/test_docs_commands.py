"""The README's and docs' example commands run as written, in order, in one folder (issue 31: the pre-training
example's train.py met the main job's run, and `analysis.py --table log/*.jsonl` stopped at the pre-training
log). The main job and the examples are shortened by flags appended to them (a tiny model, few updates), never by
editing them: the commands are read from README.md and docs/pretraining.md."""
import glob
import os
import re
import shlex
import shutil
import sys

import pytest

from tests.fixtures import REAL_FILES_HINT, openai_shapes, real_path, write_random_weights, write_rocstories

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--n_embd', '16', '--n_head', '2', '--n_layer', '1', '--n_transfer', '1']


def commands(page, program):
    """The commands of `program` in `page`, in order, as argument lists: the lines of its indented code blocks (a
    line ending in a backslash continues on the next) and the `python ...` in its prose."""
    text = open(os.path.join(ROOT, page), encoding='utf-8').read().replace('\\\n', ' ')
    found = []
    for line in text.splitlines():
        lines = [line.split('#')[0]] if line.startswith('    python ') else re.findall(r'`(python [^`]+)`', line)
        for command in lines:
            argv = shlex.split(command)[1:]
            if argv[0] == program:
                found.append(argv[1:])
    return found


def run(program, argv):
    """`program`'s main on argv, in this process; SystemExit(0) counts as success."""
    import importlib
    module = importlib.import_module(program)
    try:
        module.main(argv)
    except SystemExit as stop:
        assert stop.code in (0, None), f'{program} {shlex.join(argv)}: exit {stop.code}'


def test_the_readme_and_pretraining_examples_run_in_order_in_one_folder(tmp_path, monkeypatch, capsys):
    model_dir = real_path('model')
    if not model_dir:
        pytest.skip(REAL_FILES_HINT)
    monkeypatch.chdir(tmp_path)
    os.makedirs('model')
    for name in ('encoder_bpe_40000.json', 'vocab_40000.bpe'):
        shutil.copy(os.path.join(model_dir, name), 'model')
    write_random_weights('model', openai_shapes(40478, 16, 1), n_shards=2)
    write_rocstories('data', n_val=400, n_test=12)
    sys.path.insert(0, os.path.join(ROOT, 'bench'))
    monkeypatch.setattr(sys, 'path', sys.path)

    (main_job,) = [c for c in commands('README.md', 'train.py') if '--desc' in c and 'rocstories' in c]
    run('train', main_job + TINY + ['--n_iter', '1', '--n_batch', '2'])

    (write,) = [c for c in commands('docs/pretraining.md', 'bench/bench_pretrain.py') if '--write_corpus' in c]
    pre = [c for c in commands('docs/pretraining.md', 'pretrain.py') if 'books_small' in c]
    gen = [c for c in commands('docs/pretraining.md', 'generate.py') if 'save/books_small' in c]
    fine = [c for c in commands('docs/pretraining.md', 'train.py') if 'save/books_small' in c]
    assert len(pre) == len(gen) == len(fine) == 1
    import bench_pretrain
    bench_pretrain.main(write + ['--corpus_mb', '0.2'])
    run('pretrain', pre[0] + ['--max_updates', '20', '--eval_every', '10'])
    run('generate', gen[0] + ['--n_tokens', '3'])
    run('train', fine[0] + ['--n_batch', '2'])
    assert len(glob.glob('log/*.jsonl')) == 3  # the main job's, the pre-training's, the fine-tuning's: apart

    capsys.readouterr()
    (table,) = [c for c in commands('README.md', 'analysis.py') if '--table' in c]
    run('analysis', [a for a in table if '*' not in a] + sorted(glob.glob('log/*.jsonl')))
    out = capsys.readouterr().out
    assert re.search(r'books_small\.jsonl: left out: a pre-training log', out), out
