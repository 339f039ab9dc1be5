"""How much memory and time one training update takes, estimated before a run starts (train.py's and pretrain.py's
--dry_run), and the smallest --accum_steps that fits a device.

The memory of one device during an update: the weights (float32), Adam's two moments, the gradients (the part's,
the sum over the parts when a device computes several, and the clipped copy), and the activations that one tower
part keeps for its gradient, at the run's shapes: rows R of length L (N = R L positions), n_embd C, n_head H,
n_layer layers, `we` of W rows, the LM head over V rows on K positions, the MLP's 4C and attention's L x L per head,
the dropout masks in training. On the CPU the process's resident memory adds TensorFlow's own (TF_BASELINE_BYTES,
measured here). The counts of arrays below are named after what model.py keeps, but their numbers were fitted to
the peak RSS that bench/memory_check.py measured on this CPU (docs/gpus.md has the figures, including
configurations that were not used to fit them). On a GPU they are assumed, not measured.
"""
import re
from typing import NamedTuple

F32 = 4

# TensorFlow 2.21's process after `import tensorflow` and the project's model modules: peak RSS (ru_maxrss) on
# this machine kind (x86-64 Linux, 2 CPU cores), measured by bench/memory_check.py in each of its children: 0.75 GB
# (751.7 to 752.3 MB). Only the CPU's process carries it; a GPU's memory does not.
TF_BASELINE_BYTES = 752_000_000
# What tracing the train step and compiling its XLA kernels adds to the process's peak: the tiny configuration's
# peak RSS after its updates less its RSS after building the model and optimiser (0.918 - 0.759 GB), measured here.
TRACE_BYTES = 160_000_000
CPU_PROCESS_BYTES = TF_BASELINE_BYTES + TRACE_BYTES

# The peak of an update is at the start of the backward pass, when every array the gradient needs is alive, or at
# the update, when the gradients are (whichever is larger). The arrays at the first, per tower part:
# N x C floats per block: 16. model.py's block keeps more than that for its gradient (about 27: the input; q, k, v
# split and moved to heads; the attention output and its projection; the residual sums and LayerNorms; the MLP's
# 4C projection and gelu's 4C output; the dropout masks and outputs), but TensorFlow's graph frees what the
# gradient does not read; 16 is what the measured peaks fit (bench/memory_check.py, docs/gpus.md), not a count.
BLOCK_NC_TRAIN = 16
# Evaluation keeps no array for a gradient: a block's input and output and its temporaries (assumed, not measured).
BLOCK_NC_EVAL = 2
# R x H x L x L floats per block: 4 (the scores scaled and masked, the softmax, the dropout's mask and the dropped
# weights kept for the gradient); fitted by the main job against pre-training (rows of 128 against 512), whose
# difference is almost all attention's.
BLOCK_ATTN_TRAIN = 4
BLOCK_ATTN_EVAL = 2
# K x V floats of the LM head: the logits, the cross-entropy's gradient (kept from the forward pass) and the
# logits' gradient.
LM_KV = 3
# W x C floats of `we` in training: its dropout mask and dropped copy (kept for the gradient), and its dense
# gradient (the gather's and the LM head's summed).
WE_TRAIN = 3
# Several parts on one device (towers x --accum_steps): opt.make_update's loop over the parts (a tf.range
# loop, whose iterations may overlap) starts the next part's forward pass while one part's gradient is computed:
# the main job's peak is 2 to 2.4 GB above the same job with the loop's iterations one at a time (6.97 and 7.40
# against 5.00 GB in runs of bench/memory_check.py's main and main_serial), about one more part's arrays (1.8 GB).
PART_OVERLAP = 1


class Estimate(NamedTuple):
    """Estimated peak bytes of one device during an update, by part; total their sum."""
    baseline: int
    weights: int
    adam: int
    grads: int
    activations: int
    lm_head: int
    embedding: int

    @property
    def total(self):
        return sum(self)

    def parts(self):
        return self._asdict()

    def line(self):
        """One line: the total and its parts in GB."""
        parts = ', '.join(f'{k.replace("_", " ")} {v / 1e9:.2f}' for k, v in self.parts().items() if v)
        return f'estimated peak memory per device {self.total / 1e9:.1f} GB ({parts} GB)'


def n_params(we_rows, n_embd, n_layer, n_out=1, clf=True):
    """The model's float32 parameters: `we` (we_rows x C), 12 arrays per block (c_attn 3C^2 + 3C, c_proj C^2 + C,
    c_fc 4C^2 + 4C, c_proj 4C^2 + C, two LayerNorms 4C) and, with clf, the classifier C x n_out + n_out."""
    C = n_embd
    block = 12 * C * C + 13 * C
    return we_rows * C + n_layer * block + ((C * n_out + n_out) if clf else 0)


def estimate(n_params, n_layer, n_embd, n_head, rows, length, we_rows, lm_rows, n_parts=1, train=True,
             lm_positions=None, clip=True, baseline=CPU_PROCESS_BYTES, bytes_per=F32, overlap=PART_OVERLAP):
    """The Estimate of one device's peak during an update (train) or an evaluation batch (not train).
    n_params: the parameters trained (n_params()); rows x length: one tower part's rows (packed, or examples x
    sequences padded to length); we_rows: W, `we`'s rows; lm_rows: V, the rows the LM head scores (0: no LM head);
    n_parts: the parts this device computes in an update (its towers x --accum_steps): more than one keeps the
    running sum of the gradients and the part's own, and PART_OVERLAP more parts' arrays; lm_positions: K, the
    positions the LM head scores (default every position of the part); clip: --max_grad_norm > 0 (a clipped copy of
    the gradients at the update); baseline: the process's own bytes (CPU_PROCESS_BYTES on the CPU; 0 for a GPU's
    memory, whose CUDA context and cuDNN workspace are not counted: not measured here); overlap: the extra parts
    alive at once when there are several (PART_OVERLAP: opt.make_update's loop; 0 for a loop that runs its
    iterations one at a time)."""
    P, C, N = n_params * bytes_per, n_embd, rows * length
    K = N if lm_positions is None else lm_positions
    attn = rows * n_head * length * length
    if not train:
        acts = n_layer * (BLOCK_NC_EVAL * N * C + BLOCK_ATTN_EVAL * attn) * bytes_per
        return Estimate(baseline, P, 0, 0, acts, (LM_KV - 2) * K * lm_rows * bytes_per, 0)
    acts = n_layer * (BLOCK_NC_TRAIN * N * C + BLOCK_ATTN_TRAIN * attn) * bytes_per
    lm = LM_KV * K * lm_rows * bytes_per
    we = WE_TRAIN * we_rows * C * bytes_per
    several = n_parts > 1
    alive = 1 + (overlap if several else 0)                       # parts whose arrays live at once
    backward = (2 * P if several else 0) + alive * (acts + lm + we)    # the running sum and the part's gradients
    update = (1 + several + clip) * P                                  # the gradients, their sum, the clipped copy
    if backward >= update:
        return Estimate(baseline, P, 2 * P, 2 * P if several else 0, alive * acts, alive * lm, alive * we)
    return Estimate(baseline, P, 2 * P, update, 0, 0, 0)


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def smallest_accum_steps(memory_bytes, n_batch, estimate_at):
    """The smallest --accum_steps (a divisor of n_batch) whose estimate fits memory_bytes; estimate_at(accum_steps)
    -> Estimate (the caller's shapes of one part at that split). None when even n_batch steps do not fit."""
    for d in divisors(n_batch):
        if estimate_at(d).total <= memory_bytes:
            return d
    return None


_UNITS = {'': 1, 'b': 1, 'kb': 10 ** 3, 'mb': 10 ** 6, 'gb': 10 ** 9, 'tb': 10 ** 12,
          'kib': 2 ** 10, 'mib': 2 ** 20, 'gib': 2 ** 30, 'tib': 2 ** 40, 'k': 10 ** 3, 'm': 10 ** 6, 'g': 10 ** 9}


def parse_size(text):
    """Bytes of a size such as '8GB' (10^9), '8GiB' (2^30), '500MB', '1.5 GB', '123' (bytes). ValueError, with
    what is accepted, on anything else (empty, negative, zero, an unknown unit)."""
    m = re.fullmatch(r'\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*', str(text))
    unit = m and m.group(2).lower()
    if not m or unit not in _UNITS:
        raise ValueError(f"cannot read the size {text!r}: write a number and a unit, such as 8GB, 8GiB or 500MB")
    n = float(m.group(1)) * _UNITS[unit]
    if n < 1:
        raise ValueError(f"the size {text!r} is not positive: write a number and a unit, such as 8GB")
    return int(n)


# ----------------------------------------------------------------------------------------------------- time

def update_flops(n_layer, n_embd, length, tokens, lm_positions, lm_rows, train=True):
    """FLOPs of one update (train: forward and backward, 3x the forward) of `tokens` positions in rows of `length`:
    2 per multiply-add of each block's matmuls (12 C^2 weights per position), of attention's scores and weighted
    sum (2 x L x C per position and block, the whole L x L computed), and of the LM head (lm_rows x C on each of
    lm_positions). With train, 6 x params x tokens plus the attention terms."""
    C = n_embd
    forward = (2 * n_layer * 12 * C * C * tokens + 2 * n_layer * 2 * length * C * tokens
               + 2 * lm_rows * C * lm_positions)
    return 3 * forward if train else forward


# float32 peak TFLOP/s (no tensor cores), and TF32 / bf16 tensor-core peaks without sparsity (half the data sheets'
# "with sparsity" figures), from NVIDIA's data sheets and architecture whitepapers. Spec figures, not measured: a run
# reaches a fraction of them. A row matches a GPU whose name holds its name part as a whole word, first row first.
GPU_PEAK_TFLOPS = [
    # name part,   fp32,  tf32,  bf16 (None: not listed here), source
    ('H100 PCIe', 51.0, 378.0, 756.5, "NVIDIA H100 Tensor Core GPU data sheet (PCIe)"),
    ('H100', 67.0, 494.5, 989.5, "NVIDIA H100 Tensor Core GPU data sheet (SXM)"),
    ('A100', 19.5, 156.0, 312.0, "NVIDIA A100 Tensor Core GPU data sheet"),
    ('A10', 31.2, 62.5, 125.0, "NVIDIA A10 Tensor Core GPU data sheet"),
    ('L40S', 91.6, 183.0, 362.0, "NVIDIA L40S GPU data sheet"),
    ('L4', 30.3, 60.0, 121.0, "NVIDIA L4 Tensor Core GPU data sheet"),
    ('V100', 15.7, None, None, "NVIDIA Tesla V100 GPU data sheet (SXM2)"),
    ('T4', 8.1, None, None, "NVIDIA T4 Tensor Core GPU data sheet"),
    ('RTX 4090', 82.6, None, None, "NVIDIA Ada GPU architecture whitepaper"),
    ('RTX 3090', 35.6, None, None, "NVIDIA Ampere GA102 GPU architecture whitepaper"),
]

# This machine kind's CPU (2 cores, AMD EPYC, x86-64), TensorFlow 2.21, float32, measured on 2026-12-07, whose
# speed varied about 4x during the day (a shared host): a matmul alone (measure_cpu_rate(): (1024 x 768) @
# (768 x 3072), (1024 x 768) @ (768 x 40558), (4096 x 768) @ (768 x 768)) at 43 to 65 GFLOP/s; whole updates of
# bench/memory_check.py at 34 to 171 GFLOP/s (update_flops over the fastest of 3 updates; 38 for main_1_tower's
# 0.725 TFLOP in 19.0 s); the README's runs saw 219 GFLOP/s matmuls. CPU_UPDATE_GFLOPS is the slow end, to plan
# with; update_time takes a rate measured on the spot instead.
CPU_MATMUL_GFLOPS = 43.0
CPU_UPDATE_GFLOPS = 38.0


def gpu_peak(name, precision='fp32'):
    """(TFLOP/s, source) of a GPU named `name` at --precision (fp32; tf32 and bf16 the tensor cores; fp16 as
    bf16), a spec figure; None when the table does not know it."""
    column = {'fp32': 1, 'tf32': 2, 'bf16': 3, 'fp16': 3}[precision]
    for row in GPU_PEAK_TFLOPS:
        if re.search(r'(?<![A-Za-z0-9])' + re.escape(row[0]) + r'(?![A-Za-z0-9])', name):
            return (row[column], row[4] + ', a spec figure, not measured') if row[column] else None
    return None


def measure_cpu_rate(n=1024, k=768, m=3072, repeats=5):
    """float32 FLOP/s of TensorFlow's matmul (n x k) @ (k x m) on this machine's CPU, the best of `repeats`."""
    import time
    import tensorflow as tf
    a, b = tf.random.normal([n, k]), tf.random.normal([k, m])
    tf.matmul(a, b).numpy()
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n * k * m / best


def update_seconds(flops, rate):
    """Seconds of an update of `flops` FLOPs at `rate` FLOP/s."""
    return flops / rate


def update_time(flops, gpu_name=None, precision='fp32', cpu_rate=None):
    """(seconds, what the figure is) of an update of `flops` FLOPs: on a GPU the table knows, at its spec peak for
    --precision (a lower bound: no run reaches the peak); on the CPU (gpu_name None), at cpu_rate FLOP/s (e.g.
    measure_cpu_rate() now: a matmul's rate, so a lower bound) or else at the slow update rate measured here
    (CPU_UPDATE_GFLOPS); (None, why) for a GPU the table does not know."""
    if gpu_name is None and cpu_rate:
        return (update_seconds(flops, cpu_rate),
                f'at least: at the {cpu_rate / 1e9:.0f} GFLOP/s of a matmul on this CPU now (measured)')
    if gpu_name is None:
        return (update_seconds(flops, CPU_UPDATE_GFLOPS * 1e9),
                f'at the {CPU_UPDATE_GFLOPS:.0f} GFLOP/s an update reached on a 2-core CPU here (measured)')
    peak = gpu_peak(gpu_name, precision)
    if peak is None:
        return None, f'no peak rate known for {gpu_name} at --precision {precision}'
    tflops, source = peak
    return update_seconds(flops, tflops * 1e12), f'at least: at the {tflops:g} TFLOP/s peak ({source})'


# ------------------------------------------------------------------------------------------- a run's figures

class RunFigures(NamedTuple):
    """One device's estimate and the FLOPs of one whole update (every device's parts) of a run."""
    estimate: Estimate
    flops: float


def finetune_figures(n_vocab, n_special, n_ctx, n_embd, n_head, n_layer, rows, length, n_towers, n_devices=1,
                     accum_steps=1, n_out=1, clip=True, baseline=CPU_PROCESS_BYTES, real=1.0):
    """train.py's update: n_towers towers shared by n_devices, each tower's part packed into `rows` rows of
    `length` (pack.Packing of a part: rows and length at the run's --accum_steps), the LM head over every row of
    `we` (n_vocab + n_special + n_ctx); real: the share of positions holding a token (Packing.real; the LM head
    scores those)."""
    W = n_vocab + n_special + n_ctx
    P = n_params(W, n_embd, n_layer, n_out)
    parts = n_towers // n_devices * accum_steps
    K = int(rows * length * real)
    est = estimate(P, n_layer, n_embd, n_head, rows, length, W, W, n_parts=parts, lm_positions=K, clip=clip,
                   baseline=baseline)
    flops = update_flops(n_layer, n_embd, length, rows * length * n_towers * accum_steps,
                         K * n_towers * accum_steps, W)
    return RunFigures(est, flops)


def pretrain_figures(n_vocab, n_ctx, n_embd, n_head, n_layer, n_batch, n_devices=1, accum_steps=1, clip=True,
                     baseline=CPU_PROCESS_BYTES):
    """pretrain.py's update: n_batch windows of n_ctx tokens shared by n_devices, each device's split into
    accum_steps parts; `we` of n_vocab + n_ctx rows, the LM head over the n_vocab token rows."""
    W = n_vocab + n_ctx
    P = n_params(W, n_embd, n_layer, clf=False)
    rows = max(1, n_batch // n_devices // accum_steps)
    est = estimate(P, n_layer, n_embd, n_head, rows, n_ctx, W, n_vocab, n_parts=accum_steps,
                   lm_positions=rows * (n_ctx - 1), clip=clip, baseline=baseline)
    return RunFigures(est, update_flops(n_layer, n_embd, n_ctx, n_batch * n_ctx, n_batch * (n_ctx - 1), n_vocab))


def dry_run_lines(figures, gpu_name=None, precision='fp32', memory_bytes=None, n_batch=None, figures_at=None,
                  cpu_rate=None):
    """--dry_run's lines: the memory estimate per device; the time of an update (update_time); and, given the
    device's memory (memory_bytes) when the estimate exceeds it, the smallest --accum_steps that fits
    (figures_at(accum_steps) -> RunFigures, over the divisors of n_batch) or that none does."""
    lines = [figures.estimate.line()]
    seconds, what = update_time(figures.flops, gpu_name, precision, cpu_rate)
    lines.append(f'an update: {figures.flops / 1e12:.2f} TFLOP' +
                 (f', {seconds:.3g} s {what}' if seconds is not None else f'; {what}'))
    if memory_bytes is not None and figures.estimate.total > memory_bytes:
        fits = None if figures_at is None or n_batch is None else smallest_accum_steps(
            memory_bytes, n_batch, lambda d: figures_at(d).estimate)
        have = f'more than the {memory_bytes / 1e9:.1f} GB available'
        lines.append(f'{have}: --accum_steps {fits} fits (estimated)' if fits else
                     f'{have}, at every --accum_steps: use a device with more memory or a smaller model')
    return lines


def dry_run_report(figures_at, accum_steps, n_batch, precision='fp32', gpus=(), memory_bytes=None, cpu_rate=None):
    """--dry_run's lines for a run at --accum_steps (figures_at(accum_steps) -> RunFigures at that split, the run's
    shapes): one device's estimated peak memory and an update's time (dry_run_lines: at the first GPU's spec
    peak for --precision, or on the CPU at cpu_rate), and the smallest --accum_steps (a divisor of n_batch) whose
    estimate fits memory_bytes (--device_memory; default the smallest memory of `gpus`, the devices the run uses,
    engine.devices.Gpu; on the CPU without it, a line saying that none was given)."""
    figures = figures_at(accum_steps)
    lines = dry_run_lines(figures, gpus[0].name if gpus else None, precision, cpu_rate=None if gpus else cpu_rate)
    where = (f"each of the {len(gpus)} GPUs" if len(gpus) > 1 else 'the GPU') if gpus else \
        "the CPU (this process's resident memory, TensorFlow's own included)"
    lines[0] += f' at --accum_steps {accum_steps}, on {where}'
    source = '--device_memory'
    if memory_bytes is None and gpus and all(g.memory for g in gpus):
        memory_bytes = min(g.memory for g in gpus)
        source = "the GPU's memory usable by TensorFlow" + (' (the smallest)' if len(gpus) > 1 else '')
    if memory_bytes is None:
        return lines + ['device memory: none given (--device_memory SIZE, such as 8GB, gives the smallest '
                        '--accum_steps that fits it)']
    fits = smallest_accum_steps(memory_bytes, n_batch, lambda d: figures_at(d).estimate)
    have = f'the {memory_bytes / 1e9:.1f} GB of {source}'
    return lines + [f'--accum_steps {fits} is the smallest that fits in {have} (estimated)' if fits else
                    f'no --accum_steps fits in {have} (estimated): use a device with more memory or a smaller model']
