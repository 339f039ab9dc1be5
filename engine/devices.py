"""What the GPUs of a run can do with this TensorFlow, said before the run starts, and never an abort.

The facts (TensorFlow's build info, the GPUs it sees, whether an NVIDIA driver is installed) are collected once by
collect_facts(); every judgement on them is a pure function of injected facts, so that tests stand in for GPUs
that this machine does not have:

    lines, plan = start_report(args.precision, args.xla)         # InputError: --xla on a GPU where XLA fails
    for line in lines:                                           # none at all on a machine without a driver
        print(line)
    if not plan.xla: ...                                         # compute without XLA kernels (fused off)

or the same in steps: collect_facts(), xla_verdicts(facts), report_lines(facts, verdicts), xla_plan(facts,
args.xla, verdicts), set_tf32(args.precision), tf32_line(args.precision).

Sources of the GPU facts used here (none measured on a GPU by this project):
- The architectures TensorFlow's kernels are compiled for, its CUDA and cuDNN: TensorFlow's build info,
  tf.sysconfig.get_build_info() (2.21.0: CUDA 12.5.1, cuDNN 9, sm_60 sm_70 sm_80 sm_89 compute_90).
- Binary compatibility: a cubin for sm_XY runs on a GPU of the same major X and minor >= Y; PTX (compute_XY) is
  compiled by the driver at start-up (JIT) for any GPU of capability >= X.Y (NVIDIA's CUDA C++ Programming Guide,
  "Binary Compatibility" and "PTX Compatibility").
- XLA on compute capability >= 10.0 (Blackwell) with TensorFlow 2.21: XLA's LLVM back end fails with
  'PTX version 8.5 does not support target sm_120' and the process aborts: tensorflow/tensorflow issues 89272
  and 111958 (the second labelled 2.21.0).
- TF32: TensorFlow's docs of tf.config.experimental.enable_tensor_float_32_execution (on by default; matmuls and
  convolutions on Ampere or newer round their inputs to a 10-bit mantissa).
"""
import json
import os
import re
import signal
import subprocess
import sys
from typing import NamedTuple, Optional, Tuple

from utils import InputError

NVIDIA_DRIVER_FILE = '/proc/driver/nvidia/version'
INSTALL_COMMAND = 'pip install -r requirements-gpu.txt'
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'gpt1-tf')
CACHE_FILE = 'xla_probe.json'

# (smallest compute capability, TensorFlow versions (prefixes), what happens, source): XLA cannot compile there.
XLA_KNOWN_FAILURES = [
    ((10, 0), ('2.21',), "XLA's LLVM back end aborts ('PTX version 8.5 does not support target sm_120')",
     'tensorflow/tensorflow issues 89272 and 111958'),
]


class Gpu(NamedTuple):
    """A GPU as TensorFlow sees it: its name, compute capability (major, minor) and the memory in bytes that
    TensorFlow may use on it (None when unknown)."""
    name: str
    capability: Tuple[int, int]
    memory: Optional[int] = None


class Facts(NamedTuple):
    """What the device report and the decisions read. build: tf.sysconfig.get_build_info()'s dict; gpus: Gpu per
    visible GPU; driver: the NVIDIA kernel driver's version ('unknown' when its file does not say), None without
    a driver; tf_version: tf.__version__."""
    build: dict
    gpus: tuple
    driver: Optional[str]
    tf_version: str


# ------------------------------------------------------------------------------------------------------- TF32

def set_tf32(precision):
    """TensorFlow's TF32 setting for a run's --precision (fp32, tf32, bf16, fp16): on only with 'tf32' (TensorFlow
    itself turns it on by default, which would round fp32 runs' matmul inputs on Ampere or newer GPUs). Returns the
    setting as TensorFlow reads it back."""
    import tensorflow as tf
    tf.config.experimental.enable_tensor_float_32_execution(precision == 'tf32')
    return tf32_enabled()


def tf32_enabled():
    """TensorFlow's own TF32 setting (tf.config.experimental.tensor_float_32_execution_enabled)."""
    import tensorflow as tf
    return bool(tf.config.experimental.tensor_float_32_execution_enabled())


def tf32_line(precision):
    """The device line's statement of TF32, read from TensorFlow's setting."""
    on = tf32_enabled()
    return (f"TF32 matmuls {'on' if on else 'off'} (--precision {precision}"
            f"{'' if on else '; float32 matmuls in full precision'})")


def tf32_round(x):
    """x (float32) rounded as a TF32 tensor core rounds a matmul's inputs: the mantissa cut from 23 to 10 bits,
    round to nearest with ties to even on the float32 bits, the 8-bit exponent kept (inf and NaN unchanged). A CPU
    emulation, for measuring what TF32 changes."""
    import tensorflow as tf
    x = tf.convert_to_tensor(x, tf.float32)
    b = tf.bitcast(x, tf.int32)
    lsb = tf.bitwise.bitwise_and(tf.bitwise.right_shift(b, 13), 1)
    rounded = tf.bitwise.bitwise_and(b + 0xFFF + lsb, -0x2000)             # -0x2000: 0xFFFFE000, sign and 19 bits
    special = tf.equal(tf.bitwise.bitwise_and(b, 0x7F800000), 0x7F800000)  # inf, NaN
    return tf.bitcast(tf.where(special, b, rounded), tf.float32)


def tf32_matmul(a, b, **kwargs):
    """tf.matmul of the TF32-rounded inputs, accumulated in float32: a TF32 matmul emulated on the CPU."""
    import tensorflow as tf
    return tf.matmul(tf32_round(a), tf32_round(b), **kwargs)


# ------------------------------------------------------------------------------------------------- the facts

def driver_version(path=NVIDIA_DRIVER_FILE):
    """The NVIDIA kernel driver's version from `path` (/proc/driver/nvidia/version), 'unknown' when the file does
    not say it, None when there is no such file (no driver)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r'Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)', text)
    return m.group(1) if m else 'unknown'


def collect_facts(driver_path=NVIDIA_DRIVER_FILE, memory=True):
    """The real facts from TensorFlow: its build info, each visible GPU's name and compute capability
    (tf.config.list_physical_devices, tf.config.experimental.get_device_details: neither initialises the GPUs),
    the driver's version from driver_path, and with `memory` the memory TensorFlow may use on each GPU
    (with_memory: this initialises the GPUs, so call it after any memory-growth setting and after the XLA probe)."""
    import tensorflow as tf
    gpus = []
    for d in tf.config.list_physical_devices('GPU'):
        details = tf.config.experimental.get_device_details(d)
        gpus.append(Gpu(details.get('device_name', d.name), tuple(details.get('compute_capability') or (0, 0))))
    facts = Facts(dict(tf.sysconfig.get_build_info()), tuple(gpus), driver_version(driver_path), tf.__version__)
    return with_memory(facts) if memory else facts


def with_memory(facts):
    """facts with each GPU's memory: its TensorFlow device's memory_limit (the bytes TensorFlow may use on it),
    None where TensorFlow does not say. Initialises the GPUs."""
    if not facts.gpus:
        return facts
    try:
        from tensorflow.python.client import device_lib
        limits = {d.name.split('device:')[-1]: int(d.memory_limit) for d in device_lib.list_local_devices()
                  if d.device_type == 'GPU'}
    except Exception:  # the memory is only reported; the run goes on without it
        limits = {}
    return facts._replace(gpus=tuple(g._replace(memory=limits.get(f'GPU:{i}', g.memory))
                                     for i, g in enumerate(facts.gpus)))


# --------------------------------------------------------------------------------------------- the judgements

def parse_arch(arch):
    """'sm_89' -> ('sm', 8, 9); 'compute_90' -> ('compute', 9, 0); 'sm_120' -> ('sm', 12, 0) (the last digit the
    minor; a suffix such as sm_90a's 'a' dropped); None when it is not one."""
    m = re.fullmatch(r'(sm|compute)_(\d+)(\d)[a-z]?', arch.strip())
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def kernel_support(capability, archs):
    """How TensorFlow's compiled kernels run on a GPU of compute capability (major, minor), archs the build's
    cuda_compute_capabilities: ('native', 'sm_XY') when a cubin of the same major and a lower or equal minor is
    there (CUDA's binary compatibility; the closest one); ('ptx', 'compute_XY') when only PTX of a capability at or
    below it is (the driver compiles it at start-up: the first start is slow); ('none', None) otherwise."""
    parsed = [(a, parse_arch(a)) for a in archs]
    parsed = [(a, p) for a, p in parsed if p]
    native = [(p[2], a) for a, p in parsed if p[0] == 'sm' and p[1] == capability[0] and p[2] <= capability[1]]
    if native:
        return 'native', max(native)[1]
    ptx = [((p[1], p[2]), a) for a, p in parsed if p[0] == 'compute' and (p[1], p[2]) <= tuple(capability)]
    if ptx:
        return 'ptx', max(ptx)[1]
    return 'none', None


def xla_known_failure(capability, tf_version):
    """(what happens, source) when XLA is known to fail on this compute capability with this TensorFlow, else
    None (then only a probe can tell)."""
    for least, versions, what, source in XLA_KNOWN_FAILURES:
        if tuple(capability) >= least and any(tf_version == v or tf_version.startswith(v + '.') for v in versions):
            return what, source
    return None


def fmt_bytes(n):
    return 'memory unknown' if n is None else f'{n / 2 ** 30:.1f} GiB usable by TensorFlow'


def build_line(facts):
    """TensorFlow's version, its CUDA and cuDNN and the architectures its kernels are compiled for."""
    b = facts.build
    if not b.get('is_cuda_build', bool(b.get('cuda_version'))):
        return f'TensorFlow {facts.tf_version}: built without CUDA (no GPU kernels)'
    archs = b.get('cuda_compute_capabilities') or []
    sm = [a for a in archs if a.startswith('sm_')]
    ptx = [a for a in archs if a.startswith('compute_')]
    return (f"TensorFlow {facts.tf_version} built with CUDA {b.get('cuda_version', '?')}, cuDNN "
            f"{b.get('cudnn_version', '?')}; kernels compiled for {', '.join(sm) or 'no architecture'}"
            f"{'; PTX for ' + ', '.join(ptx) if ptx else ''}")


def gpu_line(i, gpu, facts, xla=None):
    """One GPU: its name, compute capability and memory; whether TensorFlow's kernels run on it natively, through
    PTX JIT or not at all; whether XLA compiles for it (xla: a Verdict from probing, or None: not probed)."""
    cap = f'{gpu.capability[0]}.{gpu.capability[1]}'
    how, arch = kernel_support(gpu.capability, facts.build.get('cuda_compute_capabilities') or [])
    kernels = {'native': f"TensorFlow's kernels run natively ({arch})",
               'ptx': f"TensorFlow's kernels run only through PTX JIT from {arch} (the driver compiles them at "
                      f"the first start: slow)",
               'none': "TensorFlow's kernels cannot run on it (no compatible sm_ or compute_ architecture in its "
                       "build)"}[how]
    known = xla_known_failure(gpu.capability, facts.tf_version)
    if known:
        xla_text = f'XLA cannot compile for it with TensorFlow {facts.tf_version}: {known[0]} ({known[1]})'
    elif xla is None:
        xla_text = 'XLA unknown until probed'
    elif xla.ok:
        xla_text = 'XLA compiles for it (probed)'
    else:
        xla_text = f'XLA cannot compile for it (probed: {xla.detail})'
    return f'GPU {i}: {gpu.name}, compute capability {cap}, {fmt_bytes(gpu.memory)}; {kernels}; {xla_text}'


def report_lines(facts, xla=None):
    """The device report: with GPUs, the build line and one line per GPU (xla: {gpu index: Verdict} of probes
    made); a driver without a visible GPU: one line with the likely cause and the install command; neither: no
    line (start-up stays quiet on a machine without an NVIDIA driver)."""
    xla = xla or {}
    if facts.gpus:
        return [build_line(facts)] + [gpu_line(i, g, facts, xla.get(i)) for i, g in enumerate(facts.gpus)]
    if facts.driver is None:
        return []
    b = facts.build
    if not b.get('is_cuda_build', bool(b.get('cuda_version'))):
        return [f'an NVIDIA driver ({facts.driver}) is installed but this TensorFlow {facts.tf_version} is built '
                f'without CUDA: install the CUDA build with `{INSTALL_COMMAND}`']
    return [f'an NVIDIA driver ({facts.driver}) is installed but TensorFlow sees no GPU: most likely TensorFlow was '
            f'installed without its CUDA libraries; install them with `{INSTALL_COMMAND}` (the run goes on on the '
            f'CPU)']


# ----------------------------------------------------------------------------------------------- the XLA probe

class Verdict(NamedTuple):
    """Whether XLA compiled and ran a tiny function on a GPU; detail says how the probe ended; cached: read from
    the cache file rather than probed now."""
    ok: bool
    detail: str
    cached: bool = False


# The child's program: a jit_compile'd function on GPU index argv[1]; 'XLA_OK' on stdout when it ran.
PROBE_CODE = '''
import os, sys
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import tensorflow as tf
i = int(sys.argv[1]) if len(sys.argv) > 1 else 0
for gpu in tf.config.list_physical_devices('GPU'):  # take only what the probe needs: the run holds the rest
    tf.config.experimental.set_memory_growth(gpu, True)
with tf.device(f'/GPU:{i}'):
    f = tf.function(lambda x: tf.nn.softmax(tf.matmul(x, x) + 1.), jit_compile=True)
    y = f(tf.ones([8, 8]))
if 'GPU' not in y.device:
    sys.exit(f'error: the function ran on {y.device}, not on GPU {i}')
print('XLA_OK', float(tf.reduce_sum(y)), y.device)
'''


def probe_command():
    """The child's command: this Python running PROBE_CODE (the GPU's index is appended)."""
    return [sys.executable, '-c', PROBE_CODE]


def cache_key(gpu, driver, tf_version):
    """The cache's key: GPU name, compute capability, driver version and TensorFlow version."""
    return f'{gpu.name} | cc {gpu.capability[0]}.{gpu.capability[1]} | driver {driver} | tensorflow {tf_version}'


def read_cache(cache_dir):
    try:
        with open(os.path.join(cache_dir, CACHE_FILE)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_cache(cache_dir, data):
    """Written to a temporary file and renamed, so that a reader never sees half of it; a failure to write only
    means probing again next time."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = os.path.join(cache_dir, f'{CACHE_FILE}.{os.getpid()}.tmp')
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(cache_dir, CACHE_FILE))
    except OSError:
        pass


def run_probe(index=0, command=None, timeout=900):
    """Run the probe in a child process (command: argv, default probe_command(); the GPU's index appended): an
    abort of the child (SIGABRT from an LLVM error, any signal, a non-zero exit) is a verdict, not a crash of the
    run. A timeout is a failed verdict too (detail says so). The first start on a GPU reached only through PTX can
    take minutes, hence the long timeout."""
    argv = list(command or probe_command()) + [str(index)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Verdict(False, f'no answer in {timeout} s')
    except OSError as err:
        return Verdict(False, f'the probe could not start: {err}')
    last = next((line.strip() for line in reversed(done.stderr.splitlines())
                 if 'LLVM ERROR' in line or 'error' in line.lower()), '')
    if done.returncode == 0 and 'XLA_OK' in done.stdout:
        return Verdict(True, 'a jit_compile function ran')
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f'signal {-done.returncode}'
        return Verdict(False, f'the probe was killed by {name}' + (f': {last[:200]}' if last else ''))
    return Verdict(False, f'the probe exited with status {done.returncode}' + (f': {last[:200]}' if last else ''))


def probe_xla(gpu, index, driver, tf_version, cache_dir=None, command=None, timeout=900):
    """XLA's Verdict on `gpu` (the visible GPU number `index`): from the cache file in cache_dir (default
    ~/.cache/gpt1-tf/) under cache_key(gpu, driver, tf_version), else from run_probe in a child process, then
    cached (a timeout is not cached: it may pass another time)."""
    cache_dir = cache_dir or DEFAULT_CACHE_DIR
    key = cache_key(gpu, driver, tf_version)
    cached = read_cache(cache_dir).get(key)
    if isinstance(cached, dict) and 'ok' in cached:
        return Verdict(bool(cached['ok']), str(cached.get('detail', '')), cached=True)
    verdict = run_probe(index, command, timeout)
    if cacheable(verdict):
        data = read_cache(cache_dir)
        data[key] = dict(ok=verdict.ok, detail=verdict.detail)
        write_cache(cache_dir, data)
    return verdict


def cacheable(verdict):
    """Whether a verdict holds for the next run too: not a timeout, a child that could not start, or a lack of
    memory (another process may hold the GPU's memory now)."""
    detail = verdict.detail.lower()
    return not (detail.startswith('no answer') or 'could not start' in detail or 'resource_exhausted' in detail
                or 'out of memory' in detail or 'oom' in detail.split())


def xla_verdicts(facts, cache_dir=None, command=None, timeout=900):
    """{gpu index: Verdict} for every visible GPU that needs a probe (none on the CPU, none where XLA is known to
    fail: those are judged by xla_known_failure without starting a child)."""
    out = {}
    for i, gpu in enumerate(facts.gpus):
        if not xla_known_failure(gpu.capability, facts.tf_version):
            out[i] = probe_xla(gpu, i, facts.driver, facts.tf_version, cache_dir, command, timeout)
    return out


class XlaPlan(NamedTuple):
    """Whether the run may use XLA kernels (its fused kernels and --xla); line: the one line to print when it may
    not (None: nothing to say)."""
    xla: bool
    line: Optional[str]


def xla_plan(facts, xla_flag=False, verdicts=None, cache_dir=None, command=None, timeout=900):
    """The decision: on the CPU (no GPU) XLA works and nothing is probed. On GPUs, XLA only when every GPU can
    compile (known failures, else verdicts, else probes now): otherwise the run computes the same numbers without
    XLA kernels (the caller turns its fused kernels off) and `line` says so; with --xla (xla_flag) that is an
    InputError instead."""
    if not facts.gpus:
        return XlaPlan(True, None)
    if verdicts is None:
        verdicts = xla_verdicts(facts, cache_dir, command, timeout)
    bad = []
    for i, gpu in enumerate(facts.gpus):
        known = xla_known_failure(gpu.capability, facts.tf_version)
        if known:
            bad.append((i, gpu, f'{known[0]}; {known[1]}'))
        elif i in verdicts and not verdicts[i].ok:
            bad.append((i, gpu, verdicts[i].detail))
    if not bad:
        return XlaPlan(True, None)
    i, gpu, why = bad[0]
    where = (f'GPU {i} ({gpu.name}, compute capability {gpu.capability[0]}.{gpu.capability[1]})'
             + (f' and {len(bad) - 1} more' if len(bad) > 1 else ''))
    if xla_flag:
        raise InputError(f'--xla: XLA cannot compile for {where} with TensorFlow {facts.tf_version} ({why}): run '
                         f'without --xla (the same computation without XLA kernels), or see docs/gpus.md')
    return XlaPlan(False, f'XLA cannot compile for {where} with TensorFlow {facts.tf_version} ({why}): computing the '
                          f'same numbers without XLA kernels (slower); see docs/gpus.md')


def start_report(precision, xla_flag=False, facts=None, cache_dir=None, command=None, timeout=900):
    """What a run calls once at start-up, after its device settings (memory growth) and before building its
    model: sets TF32 for --precision (set_tf32), collects
    the facts (collect_facts, unless given), probes XLA where needed (cached) and decides (xla_plan; InputError with
    --xla on a GPU where XLA fails) -> (lines to print, XlaPlan). The lines: with GPUs, the report, the TF32 line
    and the fallback's line if any; a driver without a visible GPU, its one line; no driver, none."""
    set_tf32(precision)
    probe_first = facts is None
    facts = facts or collect_facts(memory=False)  # the probes before this process takes the GPUs' memory
    verdicts = xla_verdicts(facts, cache_dir, command, timeout) if facts.gpus else {}
    plan = xla_plan(facts, xla_flag, verdicts)
    facts = with_memory(facts) if probe_first else facts
    lines = report_lines(facts, verdicts)
    if facts.gpus:
        lines.append(tf32_line(precision))
    if plan.line:
        lines.append(plan.line)
    return lines, plan
