"""engine/devices.py without a GPU: the facts are injected (TensorFlow 2.21's build info, GPUs of compute
capability 8.0, 8.9, 9.0, 10.0 and 12.0, a driver without a visible GPU, no driver), the XLA probe's child is a
test double that kills itself with SIGABRT, and TF32 is read back from TensorFlow's own setting."""
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from engine import devices
from engine.devices import Facts, Gpu, Verdict
from utils import InputError

BUILD = {'cpu_compiler': 'clang', 'cuda_compute_capabilities': ['sm_60', 'sm_70', 'sm_80', 'sm_89', 'compute_90'],
         'cuda_version': '12.5.1', 'cudnn_version': '9', 'is_cuda_build': True, 'is_rocm_build': False,
         'is_tensorrt_build': False}
GiB = 2 ** 30
A100 = Gpu('NVIDIA A100-SXM4-80GB', (8, 0), 79 * GiB)
L4 = Gpu('NVIDIA L4', (8, 9), 22 * GiB)
H100 = Gpu('NVIDIA H100 80GB HBM3', (9, 0), 79 * GiB)
B200 = Gpu('NVIDIA B200', (10, 0), 178 * GiB)
RTX5090 = Gpu('NVIDIA GeForce RTX 5090', (12, 0), 30 * GiB)
P100 = Gpu('Tesla P100-PCIE-16GB', (6, 0), 15 * GiB)
K80 = Gpu('Tesla K80', (3, 7), 11 * GiB)


BEFORE = tf.config.experimental.tensor_float_32_execution_enabled()  # restored after the tests that set it


def facts(*gpus, driver='550.54.14', build=BUILD, tf_version='2.21.0'):
    return Facts(build, tuple(gpus), driver, tf_version)


# ------------------------------------------------------------------------------------------------------ TF32

def test_tf32_off_by_default_and_on_only_with_tf32():
    try:
        for precision in ('fp32', 'bf16', 'fp16'):
            assert devices.set_tf32(precision) is False
            assert tf.config.experimental.tensor_float_32_execution_enabled() is False
            assert 'TF32 matmuls off' in devices.tf32_line(precision)
        assert devices.set_tf32('tf32') is True
        assert tf.config.experimental.tensor_float_32_execution_enabled() is True
        assert 'TF32 matmuls on' in devices.tf32_line('tf32')
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(BEFORE)


def numpy_tf32(x):
    """The expectation on the bits: keep sign, exponent and the top 10 mantissa bits; round the 13 dropped bits to
    nearest, ties to the even kept bit; inf and NaN as they are."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    dropped, kept = b & 0x1FFF, b >> 13
    up = (dropped > 0x1000) | ((dropped == 0x1000) & (kept & 1 == 1))
    out = ((kept + up) << 13).astype(np.uint32)
    special = (b & 0x7F800000) == 0x7F800000
    return np.where(special, b.astype(np.uint32), out).view(np.float32)


def test_tf32_round_matches_the_bits():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 2 ** 32, 100000, dtype=np.uint32).view(np.float32),  # every kind of bits
                        np.array([0., -0., 1., 1 + 2 ** -11, 1 + 2 ** -10 + 2 ** -11, 1 + 2 ** -11 + 2 ** -20,
                                  -(1 + 2 ** -11), 3.4028235e38, 1e-45, np.inf, -np.inf, np.nan], np.float32)])
    got = devices.tf32_round(x).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), numpy_tf32(x).view(np.uint32))
    assert (got[np.isfinite(got)].view(np.uint32) & 0x1FFF == 0).all()  # 10 mantissa bits left
    # ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 and goes to the even 1; 1 + 3 * 2^-11 goes up to 1 + 2^-9
    assert got[-9] == 1.0 and got[-8] == np.float32(1 + 2 ** -9) and got[-7] == np.float32(1 + 2 ** -10)
    assert got[-6] == -1.0 and got[-5] == np.inf  # the largest float32 rounds up to inf


def test_tf32_matmul_rounds_both_inputs():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal((32, 8)).astype(np.float32)
    expected = numpy_tf32(a).astype(np.float64) @ numpy_tf32(b).astype(np.float64)
    got = devices.tf32_matmul(a, b).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(got - a @ b).max() > 1e-4  # and it differs from float32's


# ---------------------------------------------------------------------------------------- the kernels per GPU

@pytest.mark.parametrize('capability, how, arch', [
    ((8, 0), 'native', 'sm_80'), ((8, 6), 'native', 'sm_80'), ((8, 9), 'native', 'sm_89'),
    ((9, 0), 'ptx', 'compute_90'), ((10, 0), 'ptx', 'compute_90'), ((12, 0), 'ptx', 'compute_90'),
    ((7, 5), 'native', 'sm_70'), ((6, 1), 'native', 'sm_60'), ((3, 7), 'none', None), ((5, 2), 'none', None)])
def test_kernel_support(capability, how, arch):
    assert devices.kernel_support(capability, BUILD['cuda_compute_capabilities']) == (how, arch)


def test_parse_arch():
    assert devices.parse_arch('sm_89') == ('sm', 8, 9)
    assert devices.parse_arch('compute_90') == ('compute', 9, 0)
    assert devices.parse_arch('sm_120') == ('sm', 12, 0)
    assert devices.parse_arch('sm_90a') == ('sm', 9, 0)
    assert devices.parse_arch('gfx90a') is None
    # a build with sm_120 runs natively there
    assert devices.kernel_support((12, 0), ['sm_80', 'sm_120']) == ('native', 'sm_120')


def test_build_line():
    line = devices.build_line(facts(A100))
    assert line == ('TensorFlow 2.21.0 built with CUDA 12.5.1, cuDNN 9; kernels compiled for sm_60, sm_70, sm_80, '
                    'sm_89; PTX for compute_90')


@pytest.mark.parametrize('gpu, kernels, xla', [
    (A100, "kernels run natively (sm_80)", 'XLA unknown until probed'),
    (L4, "kernels run natively (sm_89)", 'XLA unknown until probed'),
    (H100, "kernels run only through PTX JIT from compute_90", 'XLA unknown until probed'),
    (B200, "kernels run only through PTX JIT from compute_90", 'XLA cannot compile for it with TensorFlow 2.21.0'),
    (RTX5090, "kernels run only through PTX JIT from compute_90", 'XLA cannot compile for it with TensorFlow 2.21.0'),
    (K80, "kernels cannot run on it", 'XLA unknown until probed')])
def test_report_per_gpu(gpu, kernels, xla):
    lines = devices.report_lines(facts(gpu))
    assert len(lines) == 2 and lines[0].startswith('TensorFlow 2.21.0 built with CUDA 12.5.1')
    cap = f'{gpu.capability[0]}.{gpu.capability[1]}'
    assert lines[1].startswith(f'GPU 0: {gpu.name}, compute capability {cap}, ')
    assert f'{gpu.memory / GiB:.1f} GiB' in lines[1]
    assert kernels in lines[1] and xla in lines[1]
    if gpu.capability >= (10, 0):
        assert '89272' in lines[1] and '111958' in lines[1] and 'PTX version 8.5' in lines[1]


def test_report_with_probe_verdicts():
    lines = devices.report_lines(facts(A100, H100), xla={0: Verdict(True, 'ran'),
                                                         1: Verdict(False, 'the probe was killed by SIGABRT')})
    assert len(lines) == 3
    assert 'XLA compiles for it (probed)' in lines[1]
    assert 'XLA cannot compile for it (probed: the probe was killed by SIGABRT)' in lines[2]


def test_xla_known_failure_only_where_the_issues_say():
    assert devices.xla_known_failure((12, 0), '2.21.0')
    assert devices.xla_known_failure((10, 0), '2.21.0')
    assert devices.xla_known_failure((9, 0), '2.21.0') is None
    assert devices.xla_known_failure((12, 0), '2.22.0') is None  # not known: probed instead
    assert devices.xla_known_failure((12, 0), '2.210') is None


def test_driver_without_a_visible_gpu_says_the_cause_and_the_command():
    lines = devices.report_lines(facts(driver='550.54.14'))
    assert len(lines) == 1
    assert 'TensorFlow sees no GPU' in lines[0] and 'without its CUDA libraries' in lines[0]
    assert '`pip install -r requirements-gpu.txt`' in lines[0] and '550.54.14' in lines[0]
    cpu_build = dict(BUILD, is_cuda_build=False, cuda_version=None)
    assert 'built without CUDA' in devices.report_lines(facts(build=cpu_build))[0]


def test_no_driver_says_nothing():
    assert devices.report_lines(facts(driver=None)) == []


def test_driver_version(tmp_path):
    f = tmp_path / 'version'
    f.write_text('NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n'
                 'GCC version:  gcc version 12.3.0\n')
    assert devices.driver_version(str(f)) == '550.54.14'
    f.write_text('NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build\n')
    assert devices.driver_version(str(f)) == '570.86.15'
    f.write_text('something else\n')
    assert devices.driver_version(str(f)) == 'unknown'
    assert devices.driver_version(str(tmp_path / 'absent')) is None


def test_collect_facts_on_this_machine(tmp_path):
    assert devices.collect_facts(driver_path=str(tmp_path / 'absent'), memory=False) == devices.with_memory(
        devices.collect_facts(driver_path=str(tmp_path / 'absent')))
    f = devices.collect_facts(driver_path=str(tmp_path / 'absent'))
    assert f.build == dict(tf.sysconfig.get_build_info()) and f.tf_version == tf.__version__
    assert f.gpus == () and f.driver is None  # no GPU here
    assert devices.report_lines(f) == []


# ----------------------------------------------------------------------------------------------- the XLA probe

def abort_double(counter):
    """A child that counts its runs in `counter` and kills itself with SIGABRT, as an LLVM error does."""
    code = (f"import os, signal, sys; open({str(counter)!r}, 'a').write('run\\n'); "
            "sys.stderr.write('LLVM ERROR: PTX version 8.5 does not support target sm_120\\n'); sys.stderr.flush(); "
            "os.kill(os.getpid(), signal.SIGABRT)")
    return [sys.executable, '-c', code]


def runs(counter):
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_probe_abort_is_a_verdict_and_cached(tmp_path):
    counter, cache = tmp_path / 'runs', tmp_path / 'cache'
    v = devices.probe_xla(H100, 0, '550.54.14', '2.21.0', cache_dir=str(cache), command=abort_double(counter))
    assert v.ok is False and not v.cached and 'SIGABRT' in v.detail and 'PTX version 8.5' in v.detail
    assert runs(counter) == 1
    again = devices.probe_xla(H100, 0, '550.54.14', '2.21.0', cache_dir=str(cache), command=abort_double(counter))
    assert again == Verdict(False, v.detail, cached=True)
    assert runs(counter) == 1  # the second call did not run the child
    data = json.loads((cache / devices.CACHE_FILE).read_text())
    assert list(data) == ['NVIDIA H100 80GB HBM3 | cc 9.0 | driver 550.54.14 | tensorflow 2.21.0']
    # another driver or TensorFlow version is another key: probed again
    devices.probe_xla(H100, 0, '570.86.15', '2.21.0', cache_dir=str(cache), command=abort_double(counter))
    devices.probe_xla(H100, 0, '570.86.15', '2.22.0', cache_dir=str(cache), command=abort_double(counter))
    assert runs(counter) == 3 and len(json.loads((cache / devices.CACHE_FILE).read_text())) == 3


def test_probe_success_and_exit_status(tmp_path):
    ok = [sys.executable, '-c', "import sys; print('XLA_OK', sys.argv[1])"]
    assert devices.run_probe(3, ok).ok
    failed = devices.run_probe(0, [sys.executable, '-c', "import sys; sys.exit('error: no GPU')"])
    assert not failed.ok and 'status 1' in failed.detail
    slow = devices.run_probe(0, [sys.executable, '-c', 'import time; time.sleep(30)'], timeout=1)
    assert not slow.ok and 'no answer' in slow.detail


def test_cacheable():
    assert devices.cacheable(Verdict(False, 'the probe was killed by SIGABRT: LLVM ERROR: ...'))
    assert devices.cacheable(Verdict(True, 'a jit_compile function ran'))
    assert not devices.cacheable(Verdict(False, 'no answer in 900 s'))
    assert not devices.cacheable(Verdict(False, 'the probe exited with status 1: ResourceExhaustedError: OOM when'))
    assert not devices.cacheable(Verdict(False, 'the probe exited with status 1: CUDA_ERROR_OUT_OF_MEMORY: out of memory'))


def test_probe_timeout_not_cached(tmp_path):
    cache = tmp_path / 'cache'
    devices.probe_xla(A100, 0, 'd', '2.21.0', cache_dir=str(cache),
                      command=[sys.executable, '-c', 'import time; time.sleep(30)'], timeout=1)
    assert not (cache / devices.CACHE_FILE).exists()


def test_real_probe_command_on_the_cpu():
    """The default child on this machine (no GPU): it fails with an exit status, and the run is not harmed."""
    v = devices.run_probe(0, timeout=300)
    assert v.ok is False and 'status' in v.detail


# ----------------------------------------------------------------------------------------------- the decisions

def test_cpu_needs_no_probe(tmp_path):
    counter = tmp_path / 'runs'
    plan = devices.xla_plan(facts(driver=None), xla_flag=True, cache_dir=str(tmp_path), command=abort_double(counter))
    assert plan == devices.XlaPlan(True, None) and runs(counter) == 0


@pytest.mark.parametrize('gpu', [A100, L4, H100])
def test_gpus_where_the_probe_passes_use_xla(gpu, tmp_path):
    ok = [sys.executable, '-c', "print('XLA_OK')"]
    assert devices.xla_plan(facts(gpu), cache_dir=str(tmp_path), command=ok) == devices.XlaPlan(True, None)
    assert devices.xla_plan(facts(gpu), xla_flag=True, cache_dir=str(tmp_path), command=ok).xla


@pytest.mark.parametrize('gpu', [A100, L4, H100])
def test_gpus_where_the_probe_aborts_fall_back(gpu, tmp_path):
    counter = tmp_path / 'runs'
    plan = devices.xla_plan(facts(gpu), cache_dir=str(tmp_path), command=abort_double(counter))
    assert plan.xla is False and runs(counter) == 1
    assert plan.line.startswith(f'XLA cannot compile for GPU 0 ({gpu.name}, compute capability ')
    assert 'without XLA kernels' in plan.line and '\n' not in plan.line
    with pytest.raises(InputError, match='--xla: XLA cannot compile for GPU 0'):
        devices.xla_plan(facts(gpu), xla_flag=True, cache_dir=str(tmp_path), command=abort_double(counter))
    assert runs(counter) == 1  # the cached verdict


@pytest.mark.parametrize('gpu', [B200, RTX5090])
def test_blackwell_falls_back_without_probing(gpu, tmp_path):
    counter = tmp_path / 'runs'
    plan = devices.xla_plan(facts(gpu), cache_dir=str(tmp_path), command=abort_double(counter))
    assert plan.xla is False and runs(counter) == 0
    assert 'compute capability ' + f'{gpu.capability[0]}.0' in plan.line and '111958' in plan.line
    with pytest.raises(InputError) as err:
        devices.xla_plan(facts(gpu), xla_flag=True, cache_dir=str(tmp_path), command=abort_double(counter))
    assert '\n' not in str(err.value) and 'run without --xla' in str(err.value)
    assert devices.xla_verdicts(facts(gpu), cache_dir=str(tmp_path), command=abort_double(counter)) == {}


def test_one_bad_gpu_of_two(tmp_path):
    ok = [sys.executable, '-c', "print('XLA_OK')"]
    plan = devices.xla_plan(facts(A100, RTX5090), cache_dir=str(tmp_path), command=ok)
    assert not plan.xla and plan.line.startswith('XLA cannot compile for GPU 1 (NVIDIA GeForce RTX 5090')


def test_default_cache_dir():
    assert devices.DEFAULT_CACHE_DIR == os.path.join(os.path.expanduser('~'), '.cache', 'gpt1-tf')


def test_start_report(tmp_path):
    counter = tmp_path / 'runs'
    try:
        lines, plan = devices.start_report('tf32', facts=facts(H100), cache_dir=str(tmp_path),
                                           command=abort_double(counter))
        assert not plan.xla and runs(counter) == 1 and len(lines) == 4
        assert 'probed: the probe was killed by SIGABRT' in lines[1]
        assert lines[2].startswith('TF32 matmuls on') and lines[3] == plan.line
        lines, plan = devices.start_report('fp32', facts=facts(A100), cache_dir=str(tmp_path),
                                           command=[sys.executable, '-c', "print('XLA_OK')"])
        assert plan == devices.XlaPlan(True, None) and lines[2].startswith('TF32 matmuls off')
        assert not tf.config.experimental.tensor_float_32_execution_enabled()
        with pytest.raises(InputError):
            devices.start_report('fp32', xla_flag=True, facts=facts(B200), cache_dir=str(tmp_path))
        assert devices.start_report('fp32', facts=facts(driver=None)) == ([], devices.XlaPlan(True, None))
        assert len(devices.start_report('fp32', facts=facts())[0]) == 1
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(BEFORE)
