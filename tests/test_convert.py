"""convert.py and best_params.safetensors: Hugging Face's GPT-1 layout in (--from_hf) and out (--to_hf), checked
against the mapping written out here name by name (transformers' modeling_openai.py: Conv1D weights (in, out), the
original's (1, in, out)); round trips; bad input (one `error:` line, exit 2, nothing written); the best parameters
in safetensors beside best_params.jl and --restore of either. The HF-layout files are made with safetensors.numpy:
torch and transformers are not needed, except by the last tests, which check against transformers itself and skip
without it (GPT1_HF_PYTHON may name an interpreter that has torch and transformers)."""
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

import convert
import download
from finetuning import tasks
from formats import weights
from tests.fixtures import REAL_FILES_HINT, real_path, write_random_weights
from tests.test_errors import inputs  # noqa: F401 (the tiny run's inputs, a fixture)
from tests.test_hostile import tiny  # noqa: F401 (a tiny train.py run, a fixture)

REAL_MODEL = real_path('model')
needs_bpe = pytest.mark.skipif(REAL_MODEL is None, reason=REAL_FILES_HINT)
N_VOCAB, C, N_LAYER, N_POS, N_HEAD = 40478, 8, 2, 16, 2
# transformers' name of each layer array, its shape for width c, and the original's name (weights.LAYER_PARAMS)
LAYER = [('attn.c_attn.weight', lambda c: (c, 3 * c), 'attn/c_attn/w'),
         ('attn.c_attn.bias', lambda c: (3 * c,), 'attn/c_attn/b'),
         ('attn.c_proj.weight', lambda c: (c, c), 'attn/c_proj/w'),
         ('attn.c_proj.bias', lambda c: (c,), 'attn/c_proj/b'),
         ('ln_1.weight', lambda c: (c,), 'ln_1/g'), ('ln_1.bias', lambda c: (c,), 'ln_1/b'),
         ('mlp.c_fc.weight', lambda c: (c, 4 * c), 'mlp/c_fc/w'), ('mlp.c_fc.bias', lambda c: (4 * c,), 'mlp/c_fc/b'),
         ('mlp.c_proj.weight', lambda c: (4 * c, c), 'mlp/c_proj/w'),
         ('mlp.c_proj.bias', lambda c: (c,), 'mlp/c_proj/b'),
         ('ln_2.weight', lambda c: (c,), 'ln_2/g'), ('ln_2.bias', lambda c: (c,), 'ln_2/b')]


def real_bpe():
    """(the original's encoder_bpe_40000.json bytes, vocab_40000.bpe bytes, piece -> id, merges as text lines)."""
    enc = open(os.path.join(REAL_MODEL, 'encoder_bpe_40000.json'), 'rb').read()
    bpe = open(os.path.join(REAL_MODEL, 'vocab_40000.bpe'), 'rb').read()
    return enc, bpe, json.loads(enc), bpe.decode('utf-8').split('\n')[1:-1]


def hf_arrays(seed=0, n_layer=N_LAYER, c=C, n_pos=N_POS, n_vocab=N_VOCAB):
    """Random arrays of an OpenAIGPTModel, by transformers' names (no prefix)."""
    rng = np.random.RandomState(seed)
    arrays = {'tokens_embed.weight': rng.randn(n_vocab, c), 'positions_embed.weight': rng.randn(n_pos, c)}
    for l in range(n_layer):
        arrays.update({f'h.{l}.{name}': rng.randn(*shape(c)) for name, shape, _ in LAYER})
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def write_hf(folder, arrays, prefix='', extra=None, config=None, vocab=True):
    """A folder as save_pretrained writes it: model.safetensors (names under `prefix`, plus `extra` as they are),
    config.json (changed by `config`), vocab.json and merges.txt in transformers' format (the real vocabulary)."""
    os.makedirs(folder, exist_ok=True)
    tensors = {prefix + k: v for k, v in arrays.items()}
    tensors.update(extra or {})
    safetensors.numpy.save_file(tensors, os.path.join(folder, 'model.safetensors'), metadata={'format': 'pt'})
    n_layer = len({k.split('.')[1] for k in arrays if k.startswith('h.')})
    cfg = {'model_type': 'openai-gpt', 'architectures': ['OpenAIGPTLMHeadModel'], 'afn': 'gelu',
           'vocab_size': len(arrays['tokens_embed.weight']), 'n_positions': len(arrays['positions_embed.weight']),
           'n_embd': arrays['tokens_embed.weight'].shape[1], 'n_layer': n_layer, 'n_head': N_HEAD,
           'layer_norm_epsilon': 1e-05, 'embd_pdrop': 0.1, 'attn_pdrop': 0.1, 'resid_pdrop': 0.1}
    cfg.update(config or {})
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
    if vocab:
        _, _, encoder, merges = real_bpe()
        with open(os.path.join(folder, 'vocab.json'), 'w', encoding='utf-8') as f:
            f.write(json.dumps(encoder, indent=2, sort_keys=True, ensure_ascii=False) + '\n')
        with open(os.path.join(folder, 'merges.txt'), 'w', encoding='utf-8') as f:
            f.write('#version: 0.2\n' + ''.join(m + '\n' for m in merges))
    return folder


def expected_openai(arrays, n_layer=N_LAYER):
    """The original's layout of HF arrays, from the table above: positions, tokens, then 12 per layer."""
    out = [arrays['positions_embed.weight'], arrays['tokens_embed.weight']]
    for l in range(n_layer):
        out += [arrays[f'h.{l}.{name}'][None] if orig.endswith('/w') else arrays[f'h.{l}.{name}']
                for name, _, orig in LAYER]
    return out


def convert_ok(capsys, *argv):
    convert.main([str(a) for a in argv])
    return capsys.readouterr().out


def refused(capsys, *argv):
    """The message of a convert.py run that must fail: exit 2, one `error:` line, no traceback, --out not written
    and no temporary folder beside it."""
    argv = [str(a) for a in argv]
    out = argv[argv.index('--out') + 1]
    existed = os.path.exists(out) and sorted(os.listdir(out))
    parent = os.path.dirname(os.path.abspath(out))
    before = sorted(os.listdir(parent)) if os.path.isdir(parent) else []
    with pytest.raises(SystemExit) as exit_:
        convert.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith('error: '), err
    assert (os.path.exists(out) and sorted(os.listdir(out))) == existed
    assert (sorted(os.listdir(parent)) if os.path.isdir(parent) else []) == before
    return err[len('error: '):]


# --- the tables ------------------------------------------------------------------------------------------------

def test_the_tables_agree_with_the_project():
    assert convert.ORIGINAL_BPE == {name: download.FILES[name]['sha256'] for name in convert.ORIGINAL_BPE}
    assert convert.MULTIPLE_CHOICE == tuple(n for n, t in tasks.TASKS.items() if t.shape == 'multiple_choice')
    assert [(k, v) for k, v in convert.HF_LAYER.items()] == [(orig, name) for name, _, orig in LAYER]
    assert list(convert.HF_LAYER) == weights.LAYER_PARAMS


# --- --from_hf -------------------------------------------------------------------------------------------------

@needs_bpe
@pytest.mark.parametrize('saved_as', ['OpenAIGPTModel', 'OpenAIGPTLMHeadModel', 'older file'])
def test_from_hf_writes_the_original_layout(tmp_path, capsys, saved_as):
    arrays = hf_arrays()
    prefix = '' if saved_as == 'OpenAIGPTModel' else 'transformer.'
    extra = {}
    if saved_as == 'older file':  # the tied head stored, each layer's causal mask, position_ids
        extra = {'lm_head.weight': arrays['tokens_embed.weight'], 'transformer.position_ids': np.arange(N_POS)[None]}
        extra.update({f'transformer.h.{l}.attn.bias': np.tril(np.ones((1, 1, N_POS, N_POS), np.float32))
                      for l in range(N_LAYER)})
    hf = write_hf(tmp_path / 'hf', arrays, prefix, extra)
    printed = convert_ok(capsys, '--from_hf', hf, '--out', tmp_path / 'model')
    assert f'--model_dir {tmp_path / "model"} --n_head 2' in printed
    params = weights.read_openai_params(str(tmp_path / 'model'))
    expected = expected_openai(arrays)
    assert [p.shape for p in params] == [tuple(s) for s in weights.openai_shapes(N_VOCAB, C, N_LAYER, N_POS)]
    assert all(np.array_equal(p, e) for p, e in zip(params, expected)) and len(params) == len(expected)
    enc, bpe, _, _ = real_bpe()  # the original's files, byte for byte (download.py's checksums)
    assert (tmp_path / 'model' / 'encoder_bpe_40000.json').read_bytes() == enc
    assert (tmp_path / 'model' / 'vocab_40000.bpe').read_bytes() == bpe
    assert sorted(os.listdir(tmp_path)) == ['hf', 'model']
    assert oct(os.stat(tmp_path / 'model').st_mode & 0o777) != oct(0o700)


@needs_bpe
def test_from_hf_bpe_files_read_as_the_original_s(tmp_path, capsys):
    from text_utils import TextEncoder
    convert_ok(capsys, '--from_hf', write_hf(tmp_path / 'hf', hf_arrays()), '--out', tmp_path / 'model')
    mine = TextEncoder(*(str(tmp_path / 'model' / name) for name in ('encoder_bpe_40000.json', 'vocab_40000.bpe')))
    real = TextEncoder(os.path.join(REAL_MODEL, 'encoder_bpe_40000.json'), os.path.join(REAL_MODEL, 'vocab_40000.bpe'))
    assert mine.encoder == real.encoder and mine.bpe_ranks == real.bpe_ranks and len(mine.encoder) == N_VOCAB
    text = ['Karen was assigned a roommate her first year of college!']
    assert mine.encode(text) == real.encode(text)


@needs_bpe
def test_from_hf_reads_a_tokenizer_json_when_vocab_and_merges_are_absent(tmp_path, capsys):
    hf = write_hf(tmp_path / 'hf', hf_arrays(), vocab=False)
    _, _, encoder, merges = real_bpe()
    with open(hf / 'tokenizer.json', 'w') as f:  # tokenizers writes merges as pairs (newer) or as "a b" (older)
        json.dump({'model': {'type': 'BPE', 'vocab': encoder, 'merges': [m.split(' ') for m in merges]}}, f)
    convert_ok(capsys, '--from_hf', hf, '--out', tmp_path / 'model')
    assert (tmp_path / 'model' / 'vocab_40000.bpe').read_bytes() == real_bpe()[1]


@needs_bpe
def test_from_hf_refuses_bad_input(tmp_path, capsys):
    arrays = hf_arrays()
    out = tmp_path / 'model'
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert 'no model.safetensors' in refused(capsys, '--from_hf', empty, '--out', out)
    pickled = tmp_path / 'pickled'
    pickled.mkdir()
    marker = tmp_path / 'ran'

    class Plant:
        def __reduce__(self):
            return open, (str(marker), 'w')

    (pickled / 'pytorch_model.bin').write_bytes(pickle.dumps(Plant()))
    write_hf(pickled, arrays)
    (pickled / 'model.safetensors').unlink()
    msg = refused(capsys, '--from_hf', pickled, '--out', out)
    assert 'pytorch_model.bin' in msg and 're-save' in msg and 'save_pretrained' in msg and not marker.exists()
    for key, value in [('n_layer', 3), ('vocab_size', 40000), ('n_embd', 16), ('n_positions', 512)]:
        hf = write_hf(tmp_path / f'cfg_{key}', arrays, config={key: value})
        msg = refused(capsys, '--from_hf', hf, '--out', out)
        assert f'{key} {value}' in msg and 'different models' in msg
    hf = write_hf(tmp_path / 'eps', arrays, config={'layer_norm_epsilon': 1e-12})
    assert 'layer_norm_epsilon 1e-12' in refused(capsys, '--from_hf', hf, '--out', out)
    hf = write_hf(tmp_path / 'heads', arrays, config={'n_head': 3})
    assert 'n_head 3 does not divide n_embd 8' in refused(capsys, '--from_hf', hf, '--out', out)
    # a vocabulary that is not the original's: two merges swapped, one piece renamed
    _, _, encoder, merges = real_bpe()
    hf = write_hf(tmp_path / 'merges', arrays)
    swapped = merges[:5] + [merges[6], merges[5]] + merges[7:]
    (hf / 'merges.txt').write_text('#version: 0.2\n' + ''.join(m + '\n' for m in swapped))
    assert "is not GPT-1's BPE vocabulary" in refused(capsys, '--from_hf', hf, '--out', out)
    hf = write_hf(tmp_path / 'pieces', arrays)
    renamed = dict(encoder)
    renamed['qqqzx</w>'] = renamed.pop('the</w>')
    (hf / 'vocab.json').write_text(json.dumps(renamed))
    assert "is not GPT-1's BPE vocabulary" in refused(capsys, '--from_hf', hf, '--out', out)
    # arrays: a task head, a missing layer array, a damaged file, a wrong shape
    hf = write_hf(tmp_path / 'head', arrays, 'transformer.', {'multiple_choice_head.summary.weight': np.ones((1, C))})
    assert 'multiple_choice_head.summary.weight' in refused(capsys, '--from_hf', hf, '--out', out)
    hf = write_hf(tmp_path / 'missing', {k: v for k, v in arrays.items() if k != 'h.1.ln_2.bias'})
    assert 'h.1.ln_2.bias' in refused(capsys, '--from_hf', hf, '--out', out)
    hf = write_hf(tmp_path / 'damaged', arrays)
    (hf / 'model.safetensors').write_bytes((hf / 'model.safetensors').read_bytes()[:1000])
    assert 'cannot be read' in refused(capsys, '--from_hf', hf, '--out', out)
    hf = write_hf(tmp_path / 'shape', {**arrays, 'h.0.mlp.c_fc.weight': np.ones((4 * C, C), np.float32)})
    assert 'h.0.mlp.c_fc.weight' in refused(capsys, '--from_hf', hf, '--out', out)
    hf = write_hf(tmp_path / 'untied', arrays, extra={'lm_head.weight': arrays['tokens_embed.weight'] + 1})
    assert 'tied' in refused(capsys, '--from_hf', hf, '--out', out)
    out.mkdir()
    (out / 'keep').write_text('mine')
    assert 'not an empty folder' in refused(capsys, '--from_hf', write_hf(tmp_path / 'good', arrays), '--out', out)


@needs_bpe
@pytest.mark.parametrize('error', [OSError, KeyboardInterrupt])
def test_a_failure_while_writing_leaves_no_folder(tmp_path, capsys, monkeypatch, error):
    hf = write_hf(tmp_path / 'hf', hf_arrays())

    def half(model_dir, arrays, n_shards=10):
        with open(os.path.join(model_dir, 'params_0.npy'), 'wb') as f:
            f.write(b'half')
        raise error(28, 'No space left on device')

    monkeypatch.setattr(weights, 'save_openai_params', half)
    if error is OSError:
        assert 'No space left on device' in refused(capsys, '--from_hf', hf, '--out', tmp_path / 'model')
    else:
        with pytest.raises(error):
            convert.main(['--from_hf', str(hf), '--out', str(tmp_path / 'model')])
    assert sorted(os.listdir(tmp_path)) == ['hf']


# --- --to_hf ---------------------------------------------------------------------------------------------------

def finetuned(seed=1, n_ctx=12, n_out=1):
    """Random best parameters of a fine-tuned model in the original's order: we (tokens, 3 special rows, n_ctx
    positions), 12 per layer, clf/w (C, n_out), clf/b."""
    rng = np.random.RandomState(seed)
    shapes = [(N_VOCAB + 3 + n_ctx, C)] + [tuple(s) for s in weights.openai_shapes(1, C, N_LAYER)[2:]]
    shapes += [(C, n_out), (n_out,)]
    return [rng.randn(*s).astype(np.float32) for s in shapes]


def read_hf(folder):
    return safetensors.numpy.load_file(os.path.join(folder, 'model.safetensors')), json.load(
        open(os.path.join(folder, 'config.json')))


@needs_bpe
@pytest.mark.parametrize('fmt', ['jl', 'safetensors'])
def test_to_hf_of_multiple_choice_best_params(tmp_path, capsys, fmt):
    params = finetuned()
    weights.save_best_params(params, str(tmp_path / 'best_params.jl'))
    convert_ok(capsys, '--to_hf', tmp_path / f'best_params.{fmt}', '--out', tmp_path / 'hf', '--n_head', 2,
               '--dataset', 'race', '--model_dir', REAL_MODEL, '--clf_pdrop', 0.25, '--resid_pdrop', 0.15,
               '--afn', 'swish')
    arrays, config = read_hf(tmp_path / 'hf')
    we, layers, (clf_w, clf_b) = params[0], params[1:-2], params[-2:]
    expected = {'transformer.tokens_embed.weight': we[:N_VOCAB + 3], 'transformer.positions_embed.weight':
                we[N_VOCAB + 3:], 'multiple_choice_head.summary.weight': clf_w.T,
                'multiple_choice_head.summary.bias': clf_b}
    for l in range(N_LAYER):
        for k, (name, _, orig) in enumerate(LAYER):
            a = layers[12 * l + k]
            expected[f'transformer.h.{l}.{name}'] = a[0] if orig.endswith('/w') else a
    assert sorted(arrays) == sorted(expected)
    for name, a in expected.items():
        assert arrays[name].dtype == np.float32 and np.array_equal(arrays[name], a), name
    assert config == {
        'architectures': ['OpenAIGPTDoubleHeadsModel'], 'model_type': 'openai-gpt', 'vocab_size': N_VOCAB + 3,
        'n_positions': 12, 'n_ctx': 12, 'n_embd': C, 'n_layer': N_LAYER, 'n_head': 2, 'afn': 'swish',
        'layer_norm_epsilon': 1e-5, 'embd_pdrop': 0.1, 'attn_pdrop': 0.1, 'resid_pdrop': 0.15,
        'initializer_range': 0.02, 'tie_word_embeddings': True, 'dtype': 'float32', 'summary_type': 'cls_index',
        'summary_use_proj': True, 'summary_proj_to_labels': True, 'num_labels': 1, 'summary_activation': None,
        'summary_first_dropout': 0.25}
    _, _, encoder, merges = real_bpe()
    assert json.load(open(tmp_path / 'hf' / 'vocab.json', encoding='utf-8')) == encoder
    assert (tmp_path / 'hf' / 'merges.txt').read_text(encoding='utf-8').split('\n') == ['#version: 0.2'] + merges + ['']
    assert json.load(open(tmp_path / 'hf' / 'added_tokens.json')) == {
        '_start_': N_VOCAB, '_delimiter_': N_VOCAB + 1, '_classify_': N_VOCAB + 2}


@needs_bpe
def test_to_hf_takes_the_run_s_flags_from_its_log(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs('save/story')
    weights.save_best_params(finetuned(), 'save/story/best_params.jl')
    run = {'desc': 'story', 'dataset': 'rocstories', 'n_embd': C, 'n_layer': N_LAYER, 'n_head': 4, 'afn': 'relu',
           'embd_pdrop': 0.3, 'attn_pdrop': 0.2, 'resid_pdrop': 0.0, 'clf_pdrop': 0.05}
    os.makedirs('log')
    with open('log/story.jsonl', 'w') as f:
        f.write(json.dumps(run) + '\n' + json.dumps({'n_epochs': 1, 'va_acc': 50.0}) + '\n')
    printed = convert_ok(capsys, '--to_hf', 'save/story/best_params.jl', '--out', 'hf', '--model_dir', REAL_MODEL)
    assert 'from log/story.jsonl' in printed
    config = read_hf('hf')[1]
    keys = ('n_head', 'afn', 'embd_pdrop', 'attn_pdrop', 'resid_pdrop', 'summary_first_dropout')
    assert {k: config[k] for k in keys} == {'n_head': 4, 'afn': 'relu', 'embd_pdrop': 0.3, 'attn_pdrop': 0.2,
                                            'resid_pdrop': 0.0, 'summary_first_dropout': 0.05}
    convert_ok(capsys, '--to_hf', 'save/story/best_params.jl', '--out', 'hf2', '--model_dir', REAL_MODEL,
               '--n_head', 2)
    assert read_hf('hf2')[1]['n_head'] == 2  # the command line first
    run['dataset'] = 'stsb'
    with open('log/story.jsonl', 'w') as f:
        f.write(json.dumps(run) + '\n')
    assert 'stsb' in refused(capsys, '--to_hf', 'save/story/best_params.jl', '--out', 'hf3', '--model_dir', REAL_MODEL)
    run.update(dataset='rocstories', n_embd=768)
    with open('log/story.jsonl', 'w') as f:
        f.write(json.dumps(run) + '\n')
    assert 'n_embd 768' in refused(capsys, '--to_hf', 'save/story/best_params.jl', '--out', 'hf3',
                                   '--model_dir', REAL_MODEL)


@needs_bpe
def test_to_hf_refuses_heads_transformers_cannot_compute(tmp_path, capsys):
    weights.save_best_params(finetuned(n_out=3), str(tmp_path / 'cls' / 'best_params.jl'))
    msg = refused(capsys, '--to_hf', tmp_path / 'cls' / 'best_params.jl', '--out', tmp_path / 'hf', '--model_dir',
                  REAL_MODEL, '--dataset', 'mnli')
    assert 'classification head of 3 outputs' in msg and 'no bias' in msg
    weights.save_best_params(finetuned(), str(tmp_path / 'one' / 'best_params.jl'))
    msg = refused(capsys, '--to_hf', tmp_path / 'one' / 'best_params.jl', '--out', tmp_path / 'hf', '--model_dir',
                  REAL_MODEL)
    assert 'pass --dataset' in msg
    msg = refused(capsys, '--to_hf', tmp_path / 'one' / 'best_params.jl', '--out', tmp_path / 'hf', '--model_dir',
                  REAL_MODEL, '--dataset', 'stsb')
    assert "STS-B's regression" in msg
    msg = refused(capsys, '--to_hf', tmp_path / 'one' / 'best_params.jl', '--out', tmp_path / 'hf', '--model_dir',
                  REAL_MODEL, '--dataset', 'rocstories', '--n_head', 3)
    assert '--n_head 3 does not divide n_embd 8' in msg
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'encoder_bpe_40000.json').write_text(json.dumps({'a': 0, 'b': 1}))
    (other / 'vocab_40000.bpe').write_text('#version: 0.2\na b\n')
    msg = refused(capsys, '--to_hf', tmp_path / 'one' / 'best_params.jl', '--out', tmp_path / 'hf', '--model_dir',
                  other, '--dataset', 'rocstories')
    assert "is not GPT-1's BPE vocabulary" in msg


@needs_bpe
def test_round_trips(tmp_path, capsys):
    # a model folder -> an OpenAIGPTLMHeadModel folder -> the same model folder
    model = tmp_path / 'model'
    original = write_random_weights(str(model), weights.openai_shapes(N_VOCAB, C, N_LAYER, N_POS), n_shards=3)
    shutil.copy(os.path.join(REAL_MODEL, 'encoder_bpe_40000.json'), model)
    shutil.copy(os.path.join(REAL_MODEL, 'vocab_40000.bpe'), model)
    convert_ok(capsys, '--to_hf', model, '--out', tmp_path / 'hf', '--n_head', 4)
    arrays, config = read_hf(tmp_path / 'hf')
    assert config['architectures'] == ['OpenAIGPTLMHeadModel'] and config['vocab_size'] == N_VOCAB
    assert 'summary_type' not in config and not (tmp_path / 'hf' / 'added_tokens.json').exists()
    assert np.array_equal(arrays['transformer.tokens_embed.weight'], original[1])
    convert_ok(capsys, '--from_hf', tmp_path / 'hf', '--out', tmp_path / 'back')
    back = weights.read_openai_params(str(tmp_path / 'back'))
    assert all(np.array_equal(a, b) for a, b in zip(back, original)) and len(back) == len(original)
    for name in ('encoder_bpe_40000.json', 'vocab_40000.bpe'):
        assert (tmp_path / 'back' / name).read_bytes() == (model / name).read_bytes()
    # a transformers folder -> the original's layout -> the same arrays under transformers' names
    hf = write_hf(tmp_path / 'hf_in', hf_arrays(seed=3), 'transformer.')
    convert_ok(capsys, '--from_hf', hf, '--out', tmp_path / 'm2')
    convert_ok(capsys, '--to_hf', tmp_path / 'm2', '--out', tmp_path / 'hf_out', '--n_head', N_HEAD)
    again = read_hf(tmp_path / 'hf_out')[0]
    source = safetensors.numpy.load_file(str(hf / 'model.safetensors'))
    assert sorted(again) == sorted(source) and all(np.array_equal(again[k], source[k]) for k in source)


# --- best_params.safetensors -----------------------------------------------------------------------------------

def test_best_params_safetensors_holds_the_same_arrays_by_the_original_s_names(tmp_path):
    params = finetuned(n_ctx=2)
    path = str(tmp_path / 'best_params.jl')
    weights.save_best_params(params, path)
    assert sorted(os.listdir(tmp_path)) == ['best_params.jl', 'best_params.safetensors']
    names = (['model/we'] + [f'model/h{l}/{orig}' for l in range(N_LAYER) for _, _, orig in LAYER] +
             ['model/clf/w', 'model/clf/b'])
    raw = safetensors.numpy.load_file(str(tmp_path / 'best_params.safetensors'))
    assert sorted(raw) == sorted(names) and all(np.array_equal(raw[n], p) for n, p in zip(names, params))
    for loaded in (weights.load_params(path), weights.load_params(str(tmp_path / 'best_params.safetensors'),
                                                                   [p.shape for p in params])):
        assert len(loaded) == len(params) and all(np.array_equal(a, b) for a, b in zip(loaded, params))


def test_best_params_safetensors_is_the_file_the_safetensors_package_writes(tmp_path):
    """weights.write_safetensors streams the file; the safetensors package's own writer, given the same arrays,
    names and metadata, gives the same header (as JSON: its key order is the package's) and the same data bytes."""
    params = finetuned(n_ctx=2)
    names = weights.param_names(len(params))
    path = tmp_path / 'best_params.safetensors'
    with open(path, 'wb') as f:
        weights.write_safetensors(f, params)
    ours = path.read_bytes()
    theirs = safetensors.numpy.save(dict(zip(names, params)), metadata={'format': 'np', 'order': ' '.join(names)})

    def split(raw):
        n = int.from_bytes(raw[:8], 'little')
        return n, json.loads(raw[8:8 + n]), raw[8 + n:]
    (n_ours, header_ours, data_ours), (n_theirs, header_theirs, data_theirs) = split(ours), split(theirs)
    assert n_ours == n_theirs and n_ours % 8 == 0 and header_ours == header_theirs and data_ours == data_theirs
    loaded = safetensors.numpy.load(ours)
    assert sorted(loaded) == sorted(names) and all(np.array_equal(loaded[n], p) for n, p in zip(names, params))


def test_best_params_safetensors_refuses_other_files(tmp_path):
    params = finetuned(n_ctx=2)
    names = weights.param_names(len(params))
    path = tmp_path / 'best_params.safetensors'
    cases = {'missing': {n: p for n, p in zip(names[:-1], params)},
             'extra': {**dict(zip(names, params)), 'model/h9/ln_1/g': params[5]},
             'float64': {**dict(zip(names, params)), 'model/clf/b': params[-1].astype(np.float64)}}
    for case, tensors in cases.items():
        path.write_bytes(safetensors.numpy.save(tensors))
        with pytest.raises(weights.InputError, match='best_params.safetensors'):
            weights.load_params(str(path))
    path.write_bytes(b'\x80\x04 a pickle is not a safetensors file')
    with pytest.raises(weights.InputError, match='is not a best_params.safetensors'):
        weights.load_params(str(path))
    path.write_bytes(safetensors.numpy.save(dict(zip(names, params))))
    with pytest.raises(weights.InputError, match='array 0 has shape'):
        weights.load_params(str(path), [(3, C)] + [p.shape for p in params[1:]])


def test_a_crash_while_saving_leaves_both_previous_files(tmp_path, monkeypatch):
    path = str(tmp_path / 'best_params.jl')
    good = finetuned(n_ctx=2)
    weights.save_best_params(good, path)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}

    def crash(f, arrays):
        raise KeyboardInterrupt()

    monkeypatch.setattr(weights, 'write_safetensors', crash)  # the second file fails after the first is written
    with pytest.raises(KeyboardInterrupt):
        weights.save_best_params(finetuned(seed=5, n_ctx=2), path)
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


# --- train.py and generate.py ----------------------------------------------------------------------------------

def test_train_writes_best_params_safetensors_and_restores_either(tiny, tmp_path):
    tiny(submit=True)
    save = tmp_path / 'out' / 'save' / 'tiny'
    jl = weights.load_params(str(save / 'best_params.jl'))
    st = weights.load_params(str(save / 'best_params.safetensors'))
    assert len(jl) == len(st) == 27 and all(np.array_equal(a, b) for a, b in zip(jl, st))
    probs = {}
    for ext in ('jl', 'safetensors'):
        shutil.copy(save / f'best_params.{ext}', tmp_path / f'restore.{ext}')
        tiny(eval_only=True, desc=f'e{ext}', restore=tmp_path / f'restore.{ext}', overwrite=True)
        probs[ext] = (tmp_path / 'out' / 'submission' / 'ROCStories_probs.tsv').read_text()
    assert probs['jl'] == probs['safetensors']


def test_generate_restores_a_safetensors(inputs, tmp_path):
    import generate
    n_vocab = len(json.load(open(inputs['encoder_path'])))
    rng = np.random.RandomState(0)
    shapes = [(n_vocab + 3 + 6, 32)] + [tuple(s) for s in weights.openai_shapes(1, 32, 1)[2:]] + [(32, 1), (1,)]
    arrays = [rng.randn(*s).astype(np.float32) for s in shapes]
    weights.save_best_params(arrays, str(tmp_path / 'best_params.jl'))
    args = generate.parse_args(['--prompt', 'x', '--restore', str(tmp_path / 'best_params.safetensors'),
                                '--n_head', '4', '--encoder_path', str(inputs['encoder_path']),
                                '--bpe_path', str(inputs['bpe_path'])])
    model = generate.finetuned_model(args, n_vocab)
    assert model.cfg.n_ctx == 6 and all(np.array_equal(p.numpy(), a) for p, a in zip(model.params, arrays))



# --- against transformers itself (skipped without it) -----------------------------------------------------------

HF_SIDE = r'''
import json, sys
import numpy as np, torch
from transformers import OpenAIGPTConfig, OpenAIGPTDoubleHeadsModel, OpenAIGPTLMHeadModel
what, folder, io = sys.argv[1:4]
data = dict(np.load(io))
torch.manual_seed(0)
torch.set_grad_enabled(False)
if what == 'make_lm':  # a model saved by transformers itself, its LayerNorms and biases moved off their init
    cfg = OpenAIGPTConfig(vocab_size=40478, n_positions=16, n_embd=8, n_layer=2, n_head=2, initializer_range=0.3)
    model = OpenAIGPTLMHeadModel(cfg)
    for name, p in model.named_parameters():
        if 'ln_' in name or name.endswith('bias'):
            p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(folder)
    out = model.eval()(torch.tensor(data['ids']), output_hidden_states=True)
    np.savez(io, hidden=out.hidden_states[-1].numpy(), logits=out.logits.numpy())
else:
    model = OpenAIGPTDoubleHeadsModel.from_pretrained(folder).eval()
    out = model(torch.tensor(data['ids']), mc_token_ids=torch.tensor(data['mc']))
    np.savez(io, mc_logits=out.mc_logits.numpy(), logits=out.logits.numpy())
'''


def hf_python():
    """An interpreter with torch and transformers: $GPT1_HF_PYTHON, else this one if it has them; else skip."""
    if os.environ.get('GPT1_HF_PYTHON'):
        return os.environ['GPT1_HF_PYTHON']
    if importlib.util.find_spec('transformers') and importlib.util.find_spec('torch'):
        return sys.executable
    pytest.skip('transformers and torch are not installed (GPT1_HF_PYTHON may name a Python that has them)')


def on_hf(tmp_path, what, folder, **arrays):
    script, io = tmp_path / 'hf_side.py', tmp_path / 'io.npz'
    script.write_text(HF_SIDE)
    np.savez(io, **arrays)
    done = subprocess.run([hf_python(), str(script), what, str(folder), str(io)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(io))


@needs_bpe
def test_from_hf_gives_transformers_hidden_states_and_lm_logits(tmp_path, capsys):
    import tensorflow as tf
    from model import Config, Model, lm_logits
    from text_utils import Vocab
    hf_python()  # skips here, before any work, without transformers
    ids = np.random.RandomState(0).randint(0, N_VOCAB, (3, 14))
    hf = on_hf(tmp_path, 'make_lm', tmp_path / 'hf', ids=ids)
    write_hf(tmp_path / 'vocab_only', hf_arrays(n_layer=1))
    for name in ('vocab.json', 'merges.txt'):
        shutil.copy(tmp_path / 'vocab_only' / name, tmp_path / 'hf')
    convert_ok(capsys, '--from_hf', tmp_path / 'hf', '--out', tmp_path / 'model')
    V = Vocab(N_VOCAB)
    model = Model(Config(N_VOCAB, N_POS, n_embd=C, n_head=N_HEAD, n_layer=N_LAYER, embd_pdrop=0, attn_pdrop=0,
                         resid_pdrop=0, clf_pdrop=0))
    model.assign(weights.load_openai_params(str(tmp_path / 'model'), N_POS, 3))
    X = tf.constant(np.stack([ids, np.broadcast_to(V.position(np.arange(14)), ids.shape)], -1).astype(np.int32))
    h = model(X)[0].numpy()
    logits = lm_logits(model, X, n_rows=N_VOCAB).numpy()
    assert np.abs(h).max() > 1 and np.abs(h - hf['hidden']).max() < 1e-5
    assert np.abs(logits - hf['logits']).max() < 1e-5 * np.abs(logits).max()


@needs_bpe
def test_to_hf_gives_the_port_s_classifier_logits_as_mc_logits(tmp_path, capsys):
    import tensorflow as tf
    from model import Config, Model, finetune_losses, lm_logits
    from text_utils import Vocab
    hf_python()  # skips here, before any work, without transformers
    V, n_ctx, T = Vocab(N_VOCAB), 12, 10
    params = finetuned(seed=4, n_ctx=n_ctx)
    params = [p * 0.3 + (1 if i % 12 in (5, 11) and i < 25 else 0) for i, p in enumerate(params)]  # ln gains ~1
    weights.save_best_params(params, str(tmp_path / 'best_params.jl'))
    convert_ok(capsys, '--to_hf', tmp_path / 'best_params.safetensors', '--out', tmp_path / 'hf', '--n_head', N_HEAD,
               '--dataset', 'rocstories', '--model_dir', REAL_MODEL)
    rng = np.random.RandomState(2)
    X, M, mc = np.zeros((4, 2, T, 2), np.int32), np.zeros((4, 2, T), np.float32), np.zeros((4, 2), np.int64)
    for i in range(4):
        for j in range(2):
            seq = [V.start] + list(rng.randint(0, N_VOCAB, rng.randint(2, 5))) + [V.delimiter] + list(
                rng.randint(0, N_VOCAB, rng.randint(1, 3))) + [V.classify]
            X[i, j, :len(seq), 0], M[i, j, :len(seq)], mc[i, j] = seq, 1, len(seq) - 1
    X[..., 1] = V.position(np.arange(T))
    model = Model(Config(N_VOCAB, n_ctx, n_embd=C, n_head=N_HEAD, n_layer=N_LAYER, embd_pdrop=0, attn_pdrop=0,
                         resid_pdrop=0, clf_pdrop=0))
    model.assign(params)
    clf_logits = finetune_losses(model, (tf.constant(X), tf.constant(M), tf.zeros([4], tf.int32)))[0].numpy()
    hf = on_hf(tmp_path, 'double_heads', tmp_path / 'hf', ids=X[..., 0], mc=mc)
    assert np.abs(clf_logits[:, 0] - clf_logits[:, 1]).min() > 1e-3
    assert np.abs(hf['mc_logits'] - clf_logits).max() < 1e-5
    lm = lm_logits(model, tf.constant(X.reshape(-1, T, 2)), n_rows=N_VOCAB + 3).numpy()
    assert np.abs(hf['logits'].reshape(lm.shape) - lm).max() < 1e-5 * np.abs(lm).max()


def test_the_command_line_is_checked_before_numpy_is_imported(tmp_path):
    code = ("import sys, convert, utils\n"
            "args = convert.parse_args(['--from_hf', sys.argv[1], '--out', sys.argv[2]])\n"
            "try:\n    convert.check_args(args)\nexcept utils.InputError as err:\n    print('refused:', err)\n"
            "print('numpy' in sys.modules, 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'nowhere'), str(tmp_path / 'out')],
                          capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.stdout.splitlines() == [f"refused: --from_hf {str(tmp_path / 'nowhere')!r} not found", 'False False']
    help_ = subprocess.run([sys.executable, 'convert.py', '--help'], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.dirname(__file__)))
    assert help_.returncode == 0 and '--from_hf HF_DIR' in help_.stdout and '--to_hf PARAMS' in help_.stdout
