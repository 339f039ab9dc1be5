"""Issue 29 wired into the programs, without a GPU: TF32 read from TensorFlow's own setting while a run builds its
update; the XLA fallback of a run on injected facts (an sm_120 GPU whose probe aborts) computing the default
path's numbers; --xla there one error line; --dry_run writing nothing, and its memory estimate against a measured
peak (a child process's ru_maxrss)."""
import functools
import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

import opt
import pretrain
import train
from engine import devices
from engine.devices import Facts, Gpu
from tests.pretrain_files import argv as pretrain_argv, write_corpus, write_vocab
from tests.test_gpu import BUILD, abort_double, runs
from tests.test_train import tiny_run_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTX5090 = Gpu('NVIDIA GeForce RTX 5090', (12, 0), 30 * 2 ** 30)
BEFORE = tf.config.experimental.tensor_float_32_execution_enabled()


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('wiring')
    original = sys.modules['tests.test_train'].real_path
    sys.modules['tests.test_train'].real_path = lambda *parts: None  # generated data: fast
    try:
        data_dir, encoder_path, bpe_path, _, n_batch, _, _ = tiny_run_files(tmp)
    finally:
        sys.modules['tests.test_train'].real_path = original
    return tmp, ['--desc', 'tiny', '--n_iter', '1', '--n_batch', str(n_batch), '--n_embd', '32', '--n_head', '4',
                 '--n_layer', '2', '--n_transfer', '2', '--data_dir', data_dir, '--model_dir', str(tmp / 'model'),
                 '--encoder_path', encoder_path, '--bpe_path', bpe_path]


def outputs(root):
    return ['--log_dir', str(root / 'log'), '--save_dir', str(root / 'save'), '--cache_dir', str(root / 'cache')]


def logged(root):
    with open(root / 'log' / 'tiny.jsonl') as f:
        return [json.loads(line) for line in f][1:]


def record(monkeypatch, seen):
    """Appends to `seen` what each update that train.py builds sees: TensorFlow's TF32 setting then, and the Path
    of its objective."""
    make_update, objective = opt.make_update, train.finetune_objective

    def recording_update(*args, **kwargs):
        seen.append(dict(tf32=tf.config.experimental.tensor_float_32_execution_enabled()))
        return make_update(*args, **kwargs)

    def recording_objective(model, lm_coef, path):
        seen.append(dict(path=path))
        return objective(model, lm_coef, path)

    monkeypatch.setattr(opt, 'make_update', recording_update)
    monkeypatch.setattr(train, 'finetune_objective', recording_objective)


@pytest.fixture
def recorded(monkeypatch):
    seen = []
    record(monkeypatch, seen)
    yield seen
    tf.config.experimental.enable_tensor_float_32_execution(BEFORE)


@pytest.fixture(scope='module')
def default_run(inputs):
    """A default run (fp32), begun with TF32 on (TensorFlow's own default): its log and what its update saw."""
    tmp, flags = inputs
    seen = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        record(monkeypatch, seen)
        tf.config.experimental.enable_tensor_float_32_execution(True)
        try:
            train.main(flags + outputs(tmp / 'default'))
        finally:
            tf.config.experimental.enable_tensor_float_32_execution(BEFORE)
    return logged(tmp / 'default'), seen


def test_tf32_off_in_a_default_run_on_with_precision_tf32(inputs, default_run, recorded, capsys):
    tmp, flags = inputs
    assert default_run[1][1] == dict(tf32=False)
    train.main(flags + outputs(tmp / 'tf32') + ['--precision', 'tf32'])
    assert recorded[1] == dict(tf32=True)
    assert ('devices: the CPU (no GPU visible); strategy: DefaultDistributionStrategy with 1 replica; precision '
            'tf32 (TF32 on)') in capsys.readouterr().out.splitlines()
    assert [r['tr_cost'] for r in logged(tmp / 'tf32')] == [r['tr_cost'] for r in default_run[0]]  # the CPU: no TF32


def sm120(tmp_path, tf_version):
    """start_report with the facts of an RTX 5090 (sm_120) and a probe that aborts (counted in tmp_path/runs)."""
    facts = Facts(BUILD, (RTX5090,), '570.86.15', tf_version)
    return functools.partial(devices.start_report, facts=facts, cache_dir=str(tmp_path / 'probe-cache'),
                             command=abort_double(tmp_path / 'runs'))


def test_xla_fallback_computes_the_default_paths_numbers(inputs, default_run, recorded, monkeypatch, capsys, tmp_path):
    """A TensorFlow not known to fail on sm_120 (2.22.0 here): the probe runs, aborts, and the run goes on without
    XLA kernels, logging the default path's costs and accuracies."""
    tmp, flags = inputs
    monkeypatch.setattr(devices, 'start_report', sm120(tmp_path, '2.22.0'))
    train.main(flags + outputs(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert runs(tmp_path / 'runs') == 1
    assert out[out.index('TensorFlow 2.22.0 built with CUDA 12.5.1, cuDNN 9; kernels compiled for sm_60, sm_70, '
                         'sm_80, sm_89; PTX for compute_90') + 3] == (
        'XLA cannot compile for GPU 0 (NVIDIA GeForce RTX 5090, compute capability 12.0) with TensorFlow 2.22.0 '
        '(the probe was killed by SIGABRT: LLVM ERROR: PTX version 8.5 does not support target sm_120): computing '
        'the same numbers without XLA kernels (slower); see docs/gpus.md')
    path = recorded[0]['path']
    assert not path.fused and not path.jit_compile and recorded[1] == dict(tf32=False)
    assert default_run[1][0]['path'].fused  # the default path: XLA's kernels
    fallback = logged(tmp_path)
    assert len(fallback) == len(default_run[0]) == 1
    for got, want in zip(fallback, default_run[0]):
        for k in ['tr_cost', 'va_cost', 'tr_acc', 'va_acc']:
            assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), k


def test_xla_flag_on_sm120_is_one_error_line(inputs, monkeypatch, capsys, tmp_path):
    tmp, flags = inputs
    monkeypatch.setattr(devices, 'start_report', sm120(tmp_path, tf.__version__))
    with pytest.raises(SystemExit) as exit_:
        train.main(flags + outputs(tmp_path) + ['--xla'])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --xla: XLA cannot compile for GPU 0 (NVIDIA GeForce RTX 5090')
    assert runs(tmp_path / 'runs') == 0  # known to fail with 2.21: not probed


def snapshot(root):
    return sorted((os.path.relpath(os.path.join(d, name), root), os.path.getmtime(os.path.join(d, name)))
                  for d, dirs, files in os.walk(root) for name in dirs + files)


def test_dry_run_writes_nothing_even_beside_a_previous_run(inputs, default_run, capsys):
    tmp, flags = inputs
    for root, extra in [(tmp / 'fresh', []), (tmp / 'default', ['--device_memory', '2GB'])]:
        os.makedirs(root, exist_ok=True)
        before = snapshot(tmp)
        train.main(flags + outputs(root) + ['--dry_run'] + extra)  # returns: exit status 0
        assert snapshot(tmp) == before
        lines = capsys.readouterr().out.splitlines()
        assert any(re.fullmatch(r'1 epochs x \d+ updates of \d+ examples = \d+ updates; .*', line) for line in lines)
        assert any(line.startswith('devices: the CPU') for line in lines)
        assert any(line.startswith('estimated peak memory per device ') for line in lines)
        assert any(re.match(r'an update: \d+\.\d\d TFLOP, .* s at least: at the \d+ GFLOP/s of a matmul', line)
                   for line in lines)
    assert 'dry run: nothing trained or written' in lines[-4] and 'the run would stop: a previous run' in lines[-4]
    assert lines[-1] == '--accum_steps 1 is the smallest that fits in the 2.0 GB of --device_memory (estimated)'


@pytest.mark.parametrize('program', ['train', 'pretrain'])
def test_bad_device_memory_is_one_error_line(inputs, program, tmp_path):
    tmp, flags = inputs
    argv = (flags if program == 'train' else ['--corpus', str(tmp)]) + outputs(tmp_path)
    result = subprocess.run([sys.executable, f'{program}.py', '--dry_run', '--device_memory', '8 parsecs'] + argv,
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --device_memory: cannot read the size '8 parsecs': write a number and a unit, such as 8GB, 8GiB or "
        "500MB"]


MEASURE = '''
import resource, sys
sys.argv = ['pretrain.py'] + sys.argv[1:]
import pretrain
try:
    pretrain.main(sys.argv[1:])
finally:
    # VmHWM, this image's own peak: ru_maxrss would keep the parent's peak across the fork and exec (Linux)
    print('MAXRSS', [int(line.split()[1]) * 1024 for line in open('/proc/self/status') if line.startswith('VmHWM')][0])
'''


def test_pretrain_dry_run_estimate_against_a_measured_peak(tmp_path):
    """pretrain.py --dry_run's estimate of a small model (4 layers, C 128, 8 windows of 128: 0.3 GB beyond
    TensorFlow's own) within 25% of a run's peak RSS (1 update, then its evaluation and save), in a child each."""
    write_vocab(str(tmp_path / 'vocab'))
    write_corpus(str(tmp_path / 'books'), n_docs=120)
    flags = pretrain_argv(str(tmp_path), tmp_path / 'books', n_embd=128, n_head=4, n_layer=4, n_ctx=128, n_batch=8,
                          max_updates=1, eval_every=0, n_iter=1)
    before = snapshot(tmp_path)
    dry = subprocess.run([sys.executable, 'pretrain.py', '--dry_run'] + flags, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert snapshot(tmp_path) == before  # not even the corpus's cache
    assert 'is not encoded in --cache_dir yet' in dry.stdout
    parts = re.search(r'estimated peak memory per device [\d.]+ GB \((.*) GB\)', dry.stdout).group(1)
    estimate = sum(float(p.split()[-1]) for p in parts.split(', ')) * 1e9
    run = subprocess.run([sys.executable, '-c', MEASURE] + flags, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    measured = int(re.search(r'MAXRSS (\d+)', run.stdout).group(1))
    assert estimate == pytest.approx(measured, rel=0.25), (estimate, measured)
    dry = subprocess.run([sys.executable, 'pretrain.py', '--dry_run'] + flags, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)  # the corpus cached now: the plan; the run's outputs: not refused
    assert dry.returncode == 0 and re.search(r'^plan: 1 epochs x \d+ updates of 8 windows', dry.stdout, re.M)
    assert 'the run would stop: a previous run wrote' in dry.stdout
