"""convert.py --to_savedmodel (formats/savedmodel.py): tiny fine-tuned models of each head (multiple choice,
classification, similarity, STS-B) and a tiny language model exported as SavedModels, loaded by a Python that cannot
import this project, and their numbers compared with the port's own (evaluate_batch, lm_logprobs) on the same token
ids; saved_model_cli show and run on a request that --example wrote; bad input (one `error:` line, exit 2, nothing
left behind). The models have the real vocabulary's 40,478 rows (the tests need the real BPE files)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import convert
from finetuning.inputs import pad_batch, sequences
from finetuning.tasks import TASKS
from formats import weights
from formats.language_model import language_model, load_language_model
from model import Config, Head, Model, evaluate_batch, lm_logprobs
from tests.fixtures import REAL_FILES_HINT, real_path, write_random_weights
from tests.test_convert import refused
from text_utils import Ragged, TextEncoder, Vocab

REAL_MODEL = real_path('model')
pytestmark = pytest.mark.skipif(REAL_MODEL is None, reason=REAL_FILES_HINT)
N_VOCAB, C, N_LAYER, N_HEAD, N_CTX, N_POS = 40478, 8, 2, 2, 12, 16
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
FINETUNED = {'rocstories': 'jl', 'sst2': 'safetensors', 'mrpc': 'jl', 'stsb': 'safetensors'}  # a shape each


def best_params(task, seed):
    """Random best parameters of a tiny fine-tuned model of `task` (we: tokens, 3 special rows, N_CTX positions)."""
    rng = np.random.RandomState(seed)
    shapes = [(N_VOCAB + 3 + N_CTX, C)] + [tuple(s) for s in weights.openai_shapes(1, C, N_LAYER)[2:]]
    shapes += [(C, task.n_out), (task.n_out,)]
    return [(rng.randn(*s) * 0.3).astype(np.float32) for s in shapes]


def task_sequences(task, n, seed):
    """The sequences (inputs.sequences, as train.py builds them) of n examples of random texts."""
    rng = np.random.RandomState(seed)
    n_fields = {'classification': 1, 'multiple_choice': task.n_context + task.n_choices}.get(task.shape, 2)
    texts = [Ragged.from_lists([rng.randint(0, N_VOCAB, rng.randint(1, 8)).tolist() for _ in range(n)])
             for _ in range(n_fields)]
    return sequences(task, texts, N_VOCAB, N_CTX)


def port_logits(task, params, X, M):
    model = Model(Config(N_VOCAB, N_CTX, n_embd=C, n_head=N_HEAD, n_layer=N_LAYER,
                         head=Head(**task.head)).without_dropout())
    model.assign(params)
    Y = np.zeros(len(X), np.float32 if task.labels is None else np.int32)
    return evaluate_batch(model, (tf.constant(X), tf.constant(M), tf.constant(Y)))[0].numpy()


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """{name: (SavedModel folder, {input name: array}, {output name: the port's array})} of the four tasks and the
    language model; rocstories' flags from its run's log, with an --example request."""
    tmp = tmp_path_factory.mktemp('savedmodel')
    cases = {}
    for k, (name, fmt) in enumerate(FINETUNED.items()):
        task = TASKS[name]
        params = best_params(task, k)
        os.makedirs(tmp / 'save' / name)
        weights.save_best_params(params, str(tmp / 'save' / name / 'best_params.jl'))
        flags = ['--n_head', N_HEAD, '--dataset', name]
        if name == 'rocstories':  # the flags from the run's log
            os.makedirs(tmp / 'log')
            with open(tmp / 'log' / 'rocstories.jsonl', 'w') as f:
                f.write(json.dumps({'dataset': name, 'n_embd': C, 'n_layer': N_LAYER, 'n_head': N_HEAD}) + '\n')
            flags = ['--log_dir', tmp / 'log', '--example', tmp / 'request.json']
        argv = ['--to_savedmodel', tmp / 'save' / name / f'best_params.{fmt}', '--out', tmp / name,
                '--model_dir', REAL_MODEL] + flags
        convert.main([str(a) for a in argv])
        seqs = task_sequences(task, 3, k)
        X, M = pad_batch(seqs, np.arange(3), task.n_seq, N_VOCAB)  # padded to the longest, as train.py
        logits = port_logits(task, params, X, M)
        expected = {'score': logits[:, 0]} if task.labels is None else {
            'logits': logits, 'probabilities': tf.nn.softmax(logits).numpy()}
        X_long, _ = pad_batch(seqs, np.arange(3), task.n_seq, N_VOCAB, length=N_CTX)  # padded to n_ctx
        cases[name] = (tmp / name, {'input_ids': X[..., 0]}, expected)
        cases[name + ' at n_ctx'] = (tmp / name, {'input_ids': X_long[..., 0]}, expected)
    write_random_weights(str(tmp / 'lm'), weights.openai_shapes(N_VOCAB, C, N_LAYER, N_POS), std=0.3)
    convert.main([str(a) for a in ['--to_savedmodel', tmp / 'lm', '--out', tmp / 'lm_savedmodel', '--n_head', N_HEAD,
                                   '--model_dir', REAL_MODEL, '--example', tmp / 'lm_request.json']])
    model = load_language_model(language_model(N_VOCAB, N_POS, C, N_HEAD, N_LAYER), str(tmp / 'lm'))
    rng = np.random.RandomState(9)
    lengths = np.array([5, 9, 3], np.int32)
    ids = np.where(np.arange(9) < lengths[:, None], rng.randint(0, N_VOCAB, (3, 9)), 0).astype(np.int32)
    X = np.stack([ids, np.broadcast_to(Vocab(N_VOCAB).position(np.arange(9)), ids.shape)], -1).astype(np.int32)
    log_probs = lm_logprobs(model, tf.constant(X), n_rows=N_VOCAB).numpy()
    cases['lm'] = (tmp / 'lm_savedmodel', {'input_ids': ids, 'lengths': lengths},
                   {'log_probs': log_probs, 'last_log_probs': log_probs[np.arange(3), lengths - 1]})
    return tmp, cases


# The Python that loads them: isolated (-I: no PYTHONPATH, no current folder, no user site), in a folder without the
# project, and it checks that it cannot import the project's modules.
LOADER = r"""
import json, sys
import numpy as np
for name in ('model', 'convert', 'formats', 'text_utils', 'utils'):
    try:
        __import__(name)
    except ImportError:
        continue
    sys.exit(f'the project module {name} is importable')
import tensorflow as tf
cases, results, signatures = json.load(open(sys.argv[1])), {}, {}
for name, (folder, inputs) in cases.items():
    fn = tf.saved_model.load(folder).signatures['serving_default']
    signatures[name] = {k: [spec.dtype.name, spec.shape.as_list()] for k, spec in fn.structured_input_signature[1].items()}
    outputs = fn(**{k: tf.constant(np.load(path)) for k, path in inputs.items()})
    for k, v in outputs.items():
        np.save(f'{folder}.{name.replace(" ", "_")}.{k}.npy', v.numpy())
        results.setdefault(name, {})[k] = f'{folder}.{name.replace(" ", "_")}.{k}.npy'
print(json.dumps({'results': results, 'signatures': signatures, 'path': sys.path}))
"""


def test_loaded_without_the_project_it_gives_the_port_s_numbers(exported, tmp_path):
    tmp, cases = exported
    request = {}
    for name, (folder, inputs, _) in cases.items():
        paths = {}
        for k, a in inputs.items():
            paths[k] = str(tmp_path / f"{name.replace(' ', '_')}.{k}.npy")
            np.save(paths[k], a)
        request[name] = (str(folder), paths)
    with open(tmp_path / 'cases.json', 'w') as f:
        json.dump(request, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith('PYTHON')}
    done = subprocess.run([sys.executable, '-I', '-c', LOADER, str(tmp_path / 'cases.json')], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(env, TF_CPP_MIN_LOG_LEVEL='3'))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not any(os.path.abspath(p or '.') == PROJECT for p in report['path'])
    for name, (_, _, expected) in cases.items():
        got = report['results'][name]
        assert sorted(got) == sorted(expected), name
        for k, want in expected.items():
            a = np.load(got[k])
            assert a.dtype == np.float32 and a.shape == want.shape, (name, k, a.shape, want.shape)
            assert np.abs(a - want).max() <= 1e-5, (name, k, np.abs(a - want).max())
    sig = report['signatures']
    assert sig['rocstories'] == {'input_ids': ['int32', [None, 2, None]]}
    assert sig['sst2'] == {'input_ids': ['int32', [None, 1, None]]}
    assert sig['mrpc'] == sig['stsb'] == {'input_ids': ['int32', [None, 2, None]]}
    assert sig['lm'] == {'input_ids': ['int32', [None, None]], 'lengths': ['int32', [None]]}


def test_the_examples_are_the_text_pipeline_s_token_ids(exported):
    tmp, _ = exported
    encoder = TextEncoder(os.path.join(REAL_MODEL, 'encoder_bpe_40000.json'),
                          os.path.join(REAL_MODEL, 'vocab_40000.bpe'))
    request = json.load(open(tmp / 'request.json'))
    task = TASKS['rocstories']
    texts = [Ragged.from_lists(encoder.encode([t], verbose=False)) for t in
             convert.SAMPLE['context'][:1] + convert.SAMPLE['answers'][:2]]
    X, _ = pad_batch(sequences(task, texts, N_VOCAB, N_CTX), [0], 2, N_VOCAB)
    assert request == {'signature_name': 'serving_default', 'inputs': {'input_ids': X[..., 0].tolist()}}
    lm = json.load(open(tmp / 'lm_request.json'))['inputs']
    rows = [ids[:N_POS] for ids in encoder.encode(convert.SAMPLE['context'], verbose=False)]  # cut to n_ctx
    assert lm['lengths'] == [len(r) for r in rows] and len(set(map(len, lm['input_ids']))) == 1
    assert [ids[:n] for ids, n in zip(lm['input_ids'], lm['lengths'])] == rows


def test_a_request_without_the_extract_token_is_refused(exported):
    tmp, _ = exported
    fn = tf.saved_model.load(str(tmp / 'sst2')).signatures['serving_default']
    with pytest.raises(tf.errors.InvalidArgumentError, match='no _classify_'):
        fn(input_ids=tf.constant([[[N_VOCAB, 5, 6]]], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match='n_ctx'):
        fn(input_ids=tf.constant([[[N_VOCAB] + [5] * N_CTX + [N_VOCAB + 2]]], tf.int32))


def test_saved_model_cli_shows_the_signature_and_runs_the_example(exported):
    tmp, cases = exported
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    show = subprocess.run([CLI, 'show', '--dir', str(tmp / 'rocstories'), '--all'], capture_output=True, text=True,
                          env=env, cwd=tmp)
    assert show.returncode == 0, show.stderr[-2000:]
    text = show.stdout.split("signature_def['serving_default']")[1]
    for line in ["inputs['input_ids'] tensor_info:\n        dtype: DT_INT32\n        shape: (-1, 2, -1)",
                 "outputs['logits'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 2)",
                 "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 2)"]:
        assert line in text
    ids = json.load(open(tmp / 'request.json'))['inputs']['input_ids']  # as docs/conversions.md passes it
    run = subprocess.run([CLI, 'run', '--dir', str(tmp / 'rocstories'), '--tag_set', 'serve', '--signature_def',
                          'serving_default', '--input_exprs', f'input_ids={ids}'], capture_output=True, text=True,
                         env=env, cwd=tmp)
    assert run.returncode == 0, run.stderr[-2000:]
    printed = run.stdout.split('Result for output key logits:')[1].split('Result')[0]
    logits = np.array([float(x) for x in re.findall(r'-?\d+\.\d*(?:e[-+]\d+)?', printed)])
    X = np.stack([np.array(ids), np.broadcast_to(Vocab(N_VOCAB).position(np.arange(len(ids[0][0]))),
                                                 np.shape(ids))], -1).astype(np.int32)
    params = weights.load_params(str(tmp / 'save' / 'rocstories' / 'best_params.jl'))
    want = port_logits(TASKS['rocstories'], params, X, np.ones(X.shape[:3], np.float32))
    assert logits.size == want.size and np.abs(logits - want.ravel()).max() <= 1e-5


# --- bad input ---------------------------------------------------------------------------------------------------

def test_bad_input_is_refused_and_leaves_nothing(exported, tmp_path, capsys, monkeypatch):
    tmp, _ = exported
    roc = tmp / 'save' / 'rocstories' / 'best_params.jl'
    base = ['--model_dir', REAL_MODEL, '--log_dir', tmp_path / 'nolog']
    assert 'a sst2 model has 2' in refused(capsys, '--to_savedmodel', roc, '--out', tmp_path / 'o', '--dataset',
                                           'sst2', '--n_head', 2, *base)
    assert 'not divide' in refused(capsys, '--to_savedmodel', roc, '--out', tmp_path / 'o', '--dataset',
                                   'rocstories', '--n_head', 3, *base)
    assert 'pass --dataset' in refused(capsys, '--to_savedmodel', roc, '--out', tmp_path / 'o', '--n_head', 2, *base)
    os.makedirs(tmp_path / 'layers')
    weights.save_params(best_params(TASKS['rocstories'], 0)[:-3], str(tmp_path / 'layers' / 'best_params.jl'))
    assert 'not the parameters of a fine-tuned model' in refused(
        capsys, '--to_savedmodel', tmp_path / 'layers' / 'best_params.jl', '--out', tmp_path / 'o', '--dataset',
        'rocstories', '--n_head', 2, *base)
    message = refused(capsys, '--to_savedmodel', roc, '--out', tmp_path / 'o', '--dataset', 'rocstories',
                      '--model_dir', tmp_path / 'nowhere')
    assert 'encoder_bpe_40000.json' in message and 'download.py --only bpe' in message
    assert 'BPE file' in refused(capsys, '--to_savedmodel', tmp / 'lm', '--out', tmp_path / 'o', '--model_dir',
                                 tmp_path / 'nowhere', '--example', tmp_path / 'r.json')
    os.makedirs(tmp_path / 'full')
    (tmp_path / 'full' / 'x').write_text('x')
    assert 'not an empty folder' in refused(capsys, '--to_savedmodel', roc, '--out', tmp_path / 'full', *base)

    def fills_the_disk(module, folder, **kwargs):
        with open(os.path.join(folder, 'saved_model.pb'), 'wb') as f:
            f.write(b'x' * 1000)
        raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device')
    monkeypatch.setattr(tf.saved_model, 'save', fills_the_disk)
    message = refused(capsys, '--to_savedmodel', roc, '--out', tmp_path / 'o', '--dataset', 'rocstories',
                      '--n_head', 2, '--example', tmp_path / 'r.json', *base)
    assert 'No space left on device' in message and 'nothing was written' in message
    assert sorted(os.listdir(tmp_path)) == ['full', 'layers']


def test_the_command_line_is_checked_before_tensorflow_is_imported(tmp_path):
    code = ("import sys, convert, utils\n"
            "args = convert.parse_args(['--to_savedmodel', sys.argv[1], '--out', sys.argv[2]])\n"
            "try:\n    convert.check_args(args)\nexcept utils.InputError as err:\n    print('refused:', err)\n"
            "print('numpy' in sys.modules, 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'nowhere'), str(tmp_path / 'out')],
                          capture_output=True, text=True, cwd=PROJECT)
    assert done.stdout.splitlines() == [f"refused: --to_savedmodel {str(tmp_path / 'nowhere')!r} not found",
                                        'False False']
