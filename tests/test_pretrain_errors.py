"""Bad input to pretrain.py: one `error:` line saying what is wrong and what to do, exit status 2, no traceback,
and nothing written (no log, no model folder, no cache); --help and a bad flag answer before TensorFlow is
imported."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from pretraining import corpus as corpora
import pretrain
from tests.fixtures import write_random_weights
from tests.pretrain_files import N_VOCAB, argv, write_corpus, write_vocab
from formats.weights import openai_shapes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def files_under(folder):
    return sorted(str(p) for p in folder.rglob('*') if p.is_file()) if folder.exists() else []


@pytest.fixture
def fails(tmp_path, capsys, monkeypatch):
    """fails(corpus, **flags) -> the message of the one error line of a pretrain.main run that must fail, having
    written nothing under out/ nor in the cache (which may hold what the test put there before)."""
    write_vocab(str(tmp_path / 'vocab'))
    monkeypatch.chdir(tmp_path)

    def run(corpus, **flags):
        before = files_under(tmp_path / 'cache')
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            pretrain.main(argv(str(tmp_path), corpus, **flags))
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and 'Traceback' not in err, err
        errors = [line for line in err.splitlines() if line.startswith('error: ')]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
        assert files_under(tmp_path / 'out') == [] and files_under(tmp_path / 'cache') == before
        assert [str(p) for p in tmp_path.rglob('.*.tmp')] == []
        return errors[0][len('error: '):]

    return run


def test_a_corpus_path_that_does_not_exist(fails, tmp_path):
    assert f"--corpus {str(tmp_path / 'nope')!r} does not exist" in fails(tmp_path / 'nope')


def test_a_folder_without_documents(fails, tmp_path):
    (tmp_path / 'books').mkdir()
    (tmp_path / 'books' / 'README.md').write_text('a b c')
    assert 'no document under it (no .txt, .jsonl' in fails(tmp_path / 'books')


def test_an_empty_document_set(fails, tmp_path):
    (tmp_path / 'books').mkdir()
    (tmp_path / 'books' / 'a.txt').write_text('  \n\n ')
    (tmp_path / 'books' / 'b.jsonl').write_text('{"text": ""}\n{"text": "\\n"}\n')
    assert 'its 2 files hold no text (every document is empty)' in fails(tmp_path / 'books')


def test_a_file_that_is_not_utf8_names_the_file_and_the_byte(fails, tmp_path):
    write_corpus(str(tmp_path / 'books'), n_docs=6)
    (tmp_path / 'books' / 'part' / 'doc003.txt').write_bytes(b'a b c d\ne f \xff g')
    message = fails(tmp_path / 'books')
    assert f"{str(tmp_path / 'books' / 'part' / 'doc003.txt')!r} is not UTF-8 text: byte 12 (b'\\xff')" in message


@pytest.mark.parametrize('content, message', [
    (b'{"text": "a b c"}\n{"text": "d e f",}\n', 'notes.jsonl, line 2 is not JSON (Expecting property name'),
    (b'{"text": "a b c"}\n{"title": "d e f"}\n', 'notes.jsonl, line 2 has no "text" field')])
def test_a_jsonl_line_that_is_not_json_or_has_no_text(fails, tmp_path, content, message):
    (tmp_path / 'notes.jsonl').write_bytes(content)
    assert message in fails(tmp_path / 'notes.jsonl')


def test_a_corpus_shorter_than_one_window(fails, tmp_path):
    (tmp_path / 'short.txt').write_text('a b c d e')
    message = fails(tmp_path / 'short.txt', valid_fraction=0)
    assert 'training documents hold 6 tokens' in message and 'fewer than one window of --n_ctx 12' in message


def test_a_damaged_token_shard(fails, tmp_path):
    write_corpus(str(tmp_path / 'books'), n_docs=6)
    line = argv(str(tmp_path), tmp_path / 'books')
    args = pretrain.parse_args(line)
    c = corpora.prepare(corpora.find_sources(args.corpus), args.encoder_path, args.bpe_path, args.cache_dir,
                        args.seed, args.valid_fraction)
    shard = os.path.join(c.folder, 'train', 'tokens_00000.npy')
    tokens = np.load(shard)
    tokens[5] += 1
    np.save(shard, tokens)
    message = fails(tmp_path / 'books')
    assert f"the encoded corpus's file {shard!r} is damaged" in message and f'delete {c.folder!r}' in message


def test_a_full_disk_while_encoding(fails, tmp_path, monkeypatch):
    write_corpus(str(tmp_path / 'books'), n_docs=6)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(corpora, 'write_array', full)
    message = fails(tmp_path / 'books')
    assert f"no space left to write the encoded corpus in {str(tmp_path / 'cache')!r}" in message
    assert 'choose another --cache_dir' in message


@pytest.mark.parametrize('flags, message', [
    (dict(n_layer=3), "has 2 layers, the model 3: pass --n_layer"),
    (dict(n_embd=8, n_head=2), "has 16 states, the model 8: pass --n_embd"),
    (dict(n_ctx=20), "has 12 positions, fewer than --n_ctx 20"),
])
def test_init_from_a_folder_of_another_model(fails, tmp_path, flags, message):
    write_corpus(str(tmp_path / 'books'), n_docs=6)
    write_random_weights(str(tmp_path / 'model'), openai_shapes(N_VOCAB, 16, 2, n_pos=12), n_shards=2)
    assert message in fails(tmp_path / 'books', init_from=tmp_path / 'model', **flags)


@pytest.mark.parametrize('flags, message', [
    (dict(valid_fraction=1), '--valid_fraction 1.0 is out of range: it must be in [0, 1)'),
    (dict(warmup_updates=0), '--warmup_updates 0 is out of range: it must be at least 1'),
    (dict(n_ctx=1), '--n_ctx 1 is out of range'),
    (dict(accum_steps=3), '--n_batch 4 windows cannot be shared evenly by 1 replica of --accum_steps 3 parts'),
    (dict(desc='a/b'), "--desc 'a/b' is not a name"),
    (dict(lr_schedule='linear'), "unknown --lr_schedule 'linear'"),
])
def test_impossible_flags(fails, tmp_path, flags, message):
    write_corpus(str(tmp_path / 'books'), n_docs=6)
    assert message in fails(tmp_path / 'books', **flags)


def test_an_output_folder_that_cannot_be_written(fails, tmp_path):
    write_corpus(str(tmp_path / 'books'), n_docs=6)
    (tmp_path / 'file').write_text('')
    assert 'cannot write the output folder' in fails(tmp_path / 'books', log_dir=tmp_path / 'file' / 'log')


def imported_modules(stderr):
    return {line.split('|')[-1].strip().split('.')[0] for line in stderr.splitlines()
            if line.startswith('import time:')}


@pytest.mark.parametrize('line, code, expected', [
    (['--help'], 0, '--corpus PATH [PATH ...]'),
    (['--corpus', 'x', '--n_batch', '0'], 2, 'error: --n_batch 0 is out of range: it must be at least 1'),
    (['--n_batch', '8'], 2, 'the following arguments are required: --corpus')])
def test_help_and_a_bad_flag_answer_before_tensorflow_is_imported(line, code, expected):
    result = subprocess.run([sys.executable, '-X', 'importtime', 'pretrain.py'] + line, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == code and expected in (result.stdout if code == 0 else result.stderr)
    modules = imported_modules(result.stderr)
    assert 'argparse' in modules and not {'tensorflow', 'numpy', 'spacy'} & modules
