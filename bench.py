"""Benchmark of the full-size GPT-1 fine-tuning step on ROCStories against the original itself: the original's
TF1 graph (bench_original.py, run in a tf.compat.v1 Session in the same process) against train.py's paths (--padded,
the default: fused Adam, trimmed batches with the LM head on real tokens only, XLA kernels; --xla), and the
original's evaluation against the padded and packed ones; each path's executed GFLOP/s against the model's
matmuls timed alone in the same rounds.

    python bench.py [--n_batch 8] [--n_gpu 1] [--steps 5] [--model_dir DIR] [--data_dir DIR] [--quick] [--mixed]
                    [--ablation]
    python bench.py --masks [--n_gpu 4]     (only the cost of the n_gpu embedding-dropout masks of an update)

Random weights in the original's layout (or --model_dir with the real ones), loaded as train.py loads them; real
ROCStories batches (--data_dir, else where the tests find the real files: $GPT1_DATA_DIR, data/, then
../shared/data/rocstories; generated text when none has them; the BPE files likewise from --model_dir,
$GPT1_MODEL_DIR, model/, ../shared/model). What it used is printed above the tables. Tables go to
stdout, progress lines start with '#', bars and TensorFlow's messages go to stderr.

    python bench.py --mnli_pipeline [--model_dir DIR]

instead times the MNLI input pipeline (reading, encoding, input sequences, cache) on a generated MNLI-sized folder,
with the real BPE of ../shared/model or --model_dir when there: seconds, CPU seconds and peak RSS per step; then
updates per second of the full-size model (random weights, the 3-class entailment head, train.py's default path,
4 towers of 8) on batches of that training set in a shuffled order (--steps of them after 2 warm-up; --quick: a
2-layer n_embd 64 model).
"""
import argparse
import collections
import gc
import glob
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from itertools import islice

from utils import tensorflow_start_up_hidden

with tensorflow_start_up_hidden():  # TensorFlow's start-up lines, unless TF_CPP_MIN_LOG_LEVEL asks for them
    import numpy as np
    import tensorflow as tf

import inputs  # noqa: E402
import tasks  # noqa: E402
import train  # noqa: E402
from datasets import context_length, pack_roc, rocstories, transform_roc  # noqa: E402
from bench_original import OriginalGraph  # noqa: E402
from model import Head, Model, dropout  # noqa: E402
from opt import Adam, LossScale, warmup_linear  # noqa: E402
from tests.fixtures import openai_shapes, real_path, write_random_weights, write_rocstories  # noqa: E402
from text_utils import TextEncoder  # noqa: E402
from utils import encode_dataset  # noqa: E402
from weights import LAYER_PARAMS, load_openai_params, transfer  # noqa: E402

N_SPECIAL = 3
N_WARMUP = 2
GPT1_VOCAB = 40478
ERRORS = []  # (what, traceback text) of every failed measurement, printed at the end


def progress(msg):
    print('# ' + msg, flush=True)


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


def sync(x):
    """Wait for a result (a tensor or a nest of tensors) by reading it back."""
    for t in tf.nest.flatten(x):
        np.asarray(t)


def fail(what, err):
    ERRORS.append((what, ''.join(traceback.format_exception(type(err), err, err.__traceback__))))
    print(ERRORS[-1][1], file=sys.stderr, flush=True)
    return 'failed: ' + (f'{type(err).__name__}: {err}'.splitlines() or [''])[0][:90]


def table(headers, rows):
    """Print rows (lists of str) under headers, columns padded; a str row is printed as it is."""
    cells = [r for r in rows if not isinstance(r, str)]
    widths = [max(len(h), *(len(r[i]) for r in cells if i < len(r))) if cells else len(h)
              for i, h in enumerate(headers)]
    line = '  '.join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    print(line)
    print('-' * len(line))
    for r in rows:
        if isinstance(r, str):
            print(r)
        else:
            print('  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    print()


def fmt(x, spec):
    return 'n/a' if x is None else format(x, spec)


def ratio(base, t):
    """'1.23x': the speed-up of time t over time base ('n/a' without a base)."""
    return fmt(base and base / t, '.2f') + 'x'


# ---------------------------------------------------------------------------------------------------------- data

def char_level_encoder(folder):
    """A character-level vocabulary (each letter and '.', alone or word-final) for the generated text."""
    symbols = sorted(set('abcdefghijklmnopqrstuvwxyz.'))
    encoder_path, bpe_path = os.path.join(folder, 'enc.json'), os.path.join(folder, 'vocab.bpe')
    with open(encoder_path, 'w') as f:
        json.dump({s: i for i, s in enumerate(symbols + [s + '</w>' for s in symbols])}, f)
    with open(bpe_path, 'w') as f:
        f.write('#version: 0.2\n\n')
    return encoder_path, bpe_path


def find_inputs(args, tmp):
    """(data_dir, data source, encoder_path, bpe_path, encoder source)."""
    if args.data_dir:
        data_dir, data_src = args.data_dir, args.data_dir
    elif real_path('data'):
        data_dir = real_path('data')
        data_src = f'{data_dir} (real)'
    else:
        data_dir, data_src = os.path.join(tmp, 'data'), 'generated (tests/fixtures.write_rocstories, 1871 + 1871)'
        write_rocstories(data_dir, n_val=1871, n_test=1871)
    for folder, src in [(args.model_dir, args.model_dir), (real_path('model'), real_path('model'))]:
        if folder and os.path.isfile(os.path.join(folder, 'encoder_bpe_40000.json')) \
                and os.path.isfile(os.path.join(folder, 'vocab_40000.bpe')):
            return (data_dir, data_src, os.path.join(folder, 'encoder_bpe_40000.json'),
                    os.path.join(folder, 'vocab_40000.bpe'), src + ' (real BPE)')
    return (data_dir, data_src, *char_level_encoder(tmp), 'character-level (generated)')


# ------------------------------------------------------------------------------------------------------- FLOPs

def forward_flops(lengths, T, lm_rows, n_layer, n_embd, n_lm):
    """Forward FLOPs of sequences of `lengths` computed at length T (T None: each at its own length), with the
    LM head over `n_lm` rows of we for `lm_rows` predicted positions: per token 24 L C^2 (blocks' matmuls) +
    4 L T C (attention scores and values), plus 2 C n_lm per predicted position."""
    lengths = np.asarray(lengths, np.float64)
    if T is None:
        blocks = np.sum(lengths * (24 * n_layer * n_embd ** 2 + 4 * n_layer * lengths * n_embd))
    else:
        blocks = len(lengths) * T * (24 * n_layer * n_embd ** 2 + 4 * n_layer * T * n_embd)
    return blocks + 2 * n_embd * n_lm * lm_rows


# ------------------------------------------------------------------------------------------------------ training

ORIGINAL = 'original graph (TF1)'  # bench_original.OriginalGraph: the baseline of every ratio
PADDED, DEFAULT = 'padded (--padded)', 'default (train.py)'
MATMUL, MATMUL_2048 = 'matmuls alone (the model\'s shapes)', 'matmul 2048x2048'
VARIANTS = [  # name, trimmed, multiple, masked_lm, XLA kernels of gelu and LayerNorm, jit_compile, fused Adam, precision
    (PADDED, False, 1, False, False, False, False, 'fp32'),
    (DEFAULT, True, 1, True, True, False, True, 'fp32'),
    ('xla (--xla)', True, 8, False, True, True, True, 'fp32'),
]
ABLATION_VARIANTS = [  # with --ablation, between padded and default: the default's gains one at a time
    ('padded + fused adam', False, 1, False, False, False, True, 'fp32'),
    ('+ trimmed, masked LM', True, 1, True, False, False, True, 'fp32'),
]
MIXED_VARIANTS = [  # with --mixed: train.py's default path in mixed precision (changes the rounding)
    ('default bf16', True, 1, True, True, False, True, 'bf16'),
    ('default fp16', True, 1, True, True, False, True, 'fp16'),
]


def new_adam(model, fused, t_total):
    """A fresh Adam with train.py's default hyperparameters."""
    return Adam(model.params, lr=6.25e-5, schedule=lambda x: warmup_linear(x, warmup=0.002), t_total=t_total,
                b1=0.9, b2=0.999, e=1e-8, l2=0.01, vector_l2=False, max_grad_norm=1, fused=fused)


def first_batches(strategy, X, M, Y, n_batch_train, n, trimmed, multiple):
    """The first n full batches (split order) as train.train_batches gives them."""
    k = n * n_batch_train
    return list(islice(train.train_batches(strategy, X[:k], M[:k], Y[:k], n_batch_train, trimmed=trimmed,
                                           multiple=multiple), n))


def check_variant(v, model0, init, strategy, data, nbt, t_total, ref, n_towers=None):
    """With dropout off (model0, pdrop 0): the variant's forward losses on batch 0 at the initial weights, and
    its parameters after one update on batch 0, and their differences from ref (the original graph's results)."""
    name, trimmed, multiple, masked, kernels, jit, fused, precision = v
    model0.assign(init)
    (X, M, Y), = first_batches(strategy, *data, nbt, 1, trimmed, multiple)
    fwd = tf.function(lambda X, M, Y: model0(X, M, Y, train=False, masked_lm=masked, fused=kernels)[1:],
                      jit_compile=jit)
    clf, lm = (t.numpy() for t in fwd(X, M, Y))
    opt = new_adam(model0, fused, t_total)
    step = train.make_train_step(model0, opt, strategy, lm_coef=0.5, seed=42, masked_lm=masked, fused=kernels,
                                 jit_compile=jit, loss_scale=LossScale() if precision == 'fp16' else None,
                                 n_towers=n_towers)
    cost = float(step(X, M, Y)[0])
    params = [p.numpy() for p in model0.params]
    out = dict(cost=cost, T=int(X.shape[2]))
    if ref is not None:
        out['d_clf'] = float(np.max(np.abs(clf - ref['clf'])))
        out['d_lm'] = float(np.max(np.abs(lm - ref['lm'])))
        out['d_cost'] = abs(cost - ref['cost'])
        out['d_p'] = max(float(np.max(np.abs(a - b))) for a, b in zip(params, ref['params']))
        out['n_flip'] = int(sum(np.sum(np.abs(a - b) > 0.5 * ref['upd']) for a, b in zip(params, ref['params'])))
    del step, opt, fwd
    return out


def check_original(hp, init, batch):
    """The original graph (hp: OriginalGraph's arguments) with dropout off: its forward losses on `batch` (X, M,
    Y padded, numpy) at the weights `init`, and its parameters after one update on it: the reference of every
    variant's check."""
    graph = OriginalGraph(**hp, embd_pdrop=0., attn_pdrop=0., resid_pdrop=0., clf_pdrop=0.)
    try:
        graph.load(init)
        clf, lm = graph.losses(*batch)
        cost = float(graph.train(*batch))
        params = graph.values()
    finally:
        graph.close()
    upd = max(float(np.max(np.abs(a - b))) for a, b in zip(params, init))
    return dict(clf=clf, lm=lm, cost=cost, params=params, upd=upd, T=int(batch[0].shape[2]))


def batch_flops(M, masked, dims):
    """(T, real tokens, useful FLOPs, executed FLOPs) of a training update on a batch whose mask M (n, 2, T) is
    computed at its length T: 3x the forward (forward + backward)."""
    n_layer, n_embd, n_lm = dims
    M = np.asarray(M).reshape(-1, M.shape[-1])
    T = M.shape[-1]
    useful = 3 * forward_flops(M.sum(1), None, M[:, 1:].sum(), n_layer, n_embd, n_lm)
    lm_rows = M[:, 1:].sum() if masked else M.shape[0] * (T - 1)
    return T, float(M.sum()), useful, 3 * forward_flops(M.sum(1), T, lm_rows, n_layer, n_embd, n_lm)


def original_job(graph, init, data, nbt, n_batches, dims):
    """The original graph (dropout on, reset to init) timed on the first n_batches padded batches."""
    graph.load(init)
    batches = [tuple(a[i * nbt:(i + 1) * nbt] for a in data) for i in range(n_batches)]
    job = dict(call=lambda i: graph.train(*batches[i]), Ts=[], tok=[], useful=[], executed=[])
    for _, M, _ in batches:
        for k, x in zip(('Ts', 'tok', 'useful', 'executed'), batch_flops(M, False, dims)):
            job[k].append(x)
    return job


def train_job(v, model, init, strategy, data, nbt, n_batches, t_total, dims, n_towers=None):
    """The variant's model (reset to init) with a fresh Adam and its train step, and the FLOPs of its batches."""
    name, trimmed, multiple, masked, kernels, jit, fused, precision = v
    model.assign(init)
    opt = new_adam(model, fused, t_total)
    step = train.make_train_step(model, opt, strategy, lm_coef=0.5, seed=42, masked_lm=masked, fused=kernels,
                                 jit_compile=jit, loss_scale=LossScale() if precision == 'fp16' else None,
                                 n_towers=n_towers)
    batches = first_batches(strategy, *data, nbt, n_batches, trimmed, multiple)
    job = dict(call=lambda i: sync(step(*batches[i])), traces=step.experimental_get_tracing_count,
               always_again=jit or kernels,  # XLA compiles each new shape at run time: the tracing count misses it
               Ts=[], tok=[], useful=[], executed=[], opt=opt)
    for _, M, _ in batches:
        for k, x in zip(('Ts', 'tok', 'useful', 'executed'), batch_flops(M.numpy(), masked, dims)):
            job[k].append(x)
    return job


def matmul_job(shapes, n_repeat):
    """Matmuls alone, timed as the model's: a tf.function multiplying float32 matrices of `shapes` ((m, k, n)
    each), called n_repeat times per call of the job (not repeated inside the graph, where Grappler would merge
    the copies); the FLOPs of a call."""
    pairs = [(tf.random.normal([m, k]), tf.random.normal([k, n])) for m, k, n in shapes]

    @tf.function
    def step():  # one after the other, as the model's run (two at once would share the two cores' threads)
        out = []
        for a, b in pairs:
            with tf.control_dependencies(out[-1:]):
                out.append(tf.matmul(a, b))
        return out


    def call(i):
        for _ in range(n_repeat):
            sync(step())

    return dict(call=call, flops=n_repeat * sum(2. * m * k * n for m, k, n in shapes))


def training_matmuls(rows, n_embd):
    """The (m, k, n) of a block's four weight matmuls over `rows` positions in training: forward x W, and the
    gradients dy W^T and x^T dy."""
    shapes = []
    for nx, nf in [(n_embd, 3 * n_embd), (n_embd, n_embd), (n_embd, 4 * n_embd), (4 * n_embd, n_embd)]:
        shapes += [(rows, nx, nf), (rows, nf, nx), (nx, rows, nf)]
    return shapes


def interleaved(jobs, n_steps, label, t_start):
    """Time jobs (name -> dict with call(i): run batch i and wait; traces: () -> tracing count) in rounds: round
    r runs batch r of every job, the order rotated each round, so that load from other processes falls on every
    variant alike. N_WARMUP rounds, n_steps timed rounds, then the timed batches again for the jobs that traced
    during the timed rounds ('seen'; the others' seen = first). Wall and process CPU seconds of each call."""
    names = list(jobs)
    out = {n: {k: [] for k in ('warm', 'first', 'seen', 'cpu_warm', 'cpu_first', 'cpu_seen')} for n in names}

    def run(name, i, key):
        if isinstance(out[name], str):
            return
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            jobs[name]['call'](i)
            out[name][key].append(time.perf_counter() - t0)
            out[name]['cpu_' + key].append(time.process_time() - c0)
        except Exception as err:  # noqa: BLE001 (a failed variant is a result)
            out[name] = fail(f'{label} {name}', err)

    traces0 = {}
    for r in range(N_WARMUP + n_steps):
        if r == N_WARMUP:
            traces0 = {n: jobs[n]['traces']() for n in names if jobs[n].get('traces')}
        progress(f'{label} round {r + 1}/{N_WARMUP + n_steps} ({"warm-up" if r < N_WARMUP else "timed"}; '
                 f'{time.perf_counter() - t_start:.0f} s elapsed, load average {os.getloadavg()[0]:.1f})')
        for name in names[r % len(names):] + names[:r % len(names)]:
            run(name, r, 'warm' if r < N_WARMUP else 'first')
    for n in names:
        if not isinstance(out[n], str):
            out[n]['traces'] = jobs[n]['traces']() - traces0[n] if n in traces0 else 0
    again = [n for n in names if not isinstance(out[n], str) and (out[n]['traces'] or jobs[n].get('always_again'))]
    for r in range(N_WARMUP, N_WARMUP + n_steps if again else N_WARMUP):
        if again:
            progress(f'{label} seen-shapes round {r + 1 - N_WARMUP}/{n_steps} for {", ".join(again)} '
                     f'({time.perf_counter() - t_start:.0f} s elapsed, load average {os.getloadavg()[0]:.1f})')
        for name in again[r % len(again):] + again[:r % len(again)]:
            run(name, r, 'seen')
    for n in names:
        if not isinstance(out[n], str) and n not in again:
            out[n]['seen'], out[n]['cpu_seen'] = out[n]['first'], out[n]['cpu_first']
    return out


def op_profile(call, logdir):
    """One call under TensorFlow's profiler: (wall seconds, {op type: [seconds, count]}, seconds of the ops
    under a gradient name scope (the backward pass)). Function-call ops are left out (their ops are counted); on
    several threads the ops' seconds can add up to more than the wall time. An XLA program (a jit_compile
    function: the fused kernels, or --xla's whole step) counts as one op."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # the trace's format; TensorFlow's own module
    tf.profiler.experimental.start(logdir)
    t0 = time.perf_counter()
    call()
    wall = time.perf_counter() - t0
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(max(glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True), key=os.path.getmtime), 'rb') as f:
        space.ParseFromString(f.read())
    by_type, backward = collections.defaultdict(lambda: [0., 0]), 0.
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                label = plane.event_metadata[event.metadata_id].name
                name, _, kind = label.rpartition(':')
                if label == 'CpuExecutable::ExecuteAsyncOnStream':  # an XLA program runs under no op's name
                    name, kind = 'XLA', 'XLA program'
                elif line.name == 'python' or not name or name.endswith(':') \
                        or kind in ('PartitionedCall', 'StatefulPartitionedCall'):
                    continue
                by_type[kind][0] += event.duration_ps / 1e12
                by_type[kind][1] += 1
                backward += event.duration_ps / 1e12 if 'gradient' in name else 0.
    return wall, dict(by_type), backward


def profile_table(profiles, n_top=18):
    """Op time by op type of each path's profiled update (profiles: name -> op_profile's result)."""
    names = list(profiles)
    top = sorted({k for _, types, _ in profiles.values() for k in types},
                 key=lambda k: -max(p[1].get(k, [0.])[0] for p in profiles.values()))[:n_top]
    rows = [['wall time of the update'] + [f'{profiles[n][0]:.3f}' for n in names],
            ['all ops (summed over threads)'] + [f'{sum(t for t, _ in profiles[n][1].values()):.3f}' for n in names],
            ['ops under a gradient scope'] + [f'{profiles[n][2]:.3f}' for n in names]]
    for k in top:
        rows.append([k] + [f'{profiles[n][1][k][0]:.3f} ({profiles[n][1][k][1]})' if k in profiles[n][1] else ''
                           for n in names])
    table(['op type: seconds (ops run)'] + names, rows)


# ---------------------------------------------------------------------------------------------------- evaluation

EVAL_VARIANTS = [  # name, packed, jit_compile, multiple
    ('padded (--padded)', False, False, 1),
    ('packed (default)', True, False, 1),
    ('padded xla', False, True, 1),
    ('packed xla', True, True, 8),
]


def eval_job(v, model, padded, packed, Y, nbt, n_batches):
    """The evaluation step of a variant on the first n_batches batches of the valid split; logits[i] of batch i."""
    name, is_packed, jit, multiple = v
    eval_step = train.make_eval_step(model, packed=is_packed, jit_compile=jit, multiple=multiple)
    inputs = packed if is_packed else padded
    batches = [tuple(a[i * nbt:(i + 1) * nbt] for a in (*inputs, Y)) for i in range(n_batches)]
    logits = {}

    def call(i):
        out = eval_step(*batches[i])
        sync(out)
        logits[i] = out[0].numpy()

    return dict(call=call, logits=logits, always_again=True)


def original_eval_job(graph, init, data, nbt, n_batches):
    """The original's evaluation (reset to init) on the first n_batches padded batches of data (X, M, Y)."""
    graph.load(init)
    batches = [tuple(a[i * nbt:(i + 1) * nbt] for a in data) for i in range(n_batches)]
    logits = {}

    def call(i):
        logits[i] = graph.evaluate(*batches[i])[0]

    return dict(call=call, logits=logits)


# ------------------------------------------------------------------------------------- embedding-dropout masks

def mask_methods(p):
    """Ways to draw one dropout mask of a matrix and apply it (keep an element with probability 1 - p, to 2^-23,
    and scale it by 1 / (1 - p)): name -> (f(x, seed), differentiable)."""
    threshold = tf.constant(min(round(p * 2 ** 32), 2 ** 32 - 1), tf.uint32)
    return {
        'RNG alone: Philox uniform float32': (
            lambda x, s: tf.random.stateless_uniform(tf.shape(x), s, alg='philox'), False),
        'model.dropout (the port): uniform >= p, x * mask / (1 - p)': (
            lambda x, s: dropout(x, p, True, lambda: s), True),
        'the same mask built by one tf.where(uniform >= p, 1 / (1 - p), 0)': (
            lambda x, s: x * tf.where(tf.random.stateless_uniform(tf.shape(x), s, alg='philox') >= p, 1 / (1 - p), 0.),
            True),
        'Philox uint32 >= p * 2^32, tf.where(keep, x / (1 - p), 0)': (
            lambda x, s: tf.where(tf.random.stateless_uniform(tf.shape(x), s, minval=None, maxval=None,
                                                              dtype=tf.uint32, alg='philox') >= threshold,
                                  x * (1 / (1 - p)), tf.zeros_like(x)), True),
    }


def bench_masks(args):
    """--masks: the time of drawing and applying the full-size `we` dropout mask (n_vocab + 3 + 77 rows: every
    row, as the LM head reads them all), forward and forward + backward, as a graph and under XLA; and n_gpu of
    them (one per tower) against the update they belong to."""
    shape, p, n_runs = (GPT1_VOCAB + N_SPECIAL + 77, 768), 0.1, 5
    we = tf.Variable(tf.random.normal(shape))
    dy = tf.random.normal(shape)
    print(f'EMBEDDING-DROPOUT MASKS (TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, load average '
          f'{os.getloadavg()[0]:.1f}): one mask of we {shape[0]} x {shape[1]} = {shape[0] * shape[1] / 1e6:.1f}M '
          f'elements, p {p}; the fastest of {n_runs - 2} calls after 2 warm-up (wall ms / process CPU ms: the '
          'machine may be shared); each call ends with a reduce_sum of its outputs')
    rows = []
    for name, (f, differentiable) in mask_methods(p).items():
        def forward(s, f=f):
            return tf.reduce_sum(f(we, s))

        def backward(s, f=f):  # the dropped-out matrix and its gradient, as in a training step
            with tf.GradientTape() as tape:
                y = f(we, s)
            return tf.reduce_sum(y) + tf.reduce_sum(tape.gradient(y, we, output_gradients=dy))

        row = [name]
        for jit in [False, True]:
            for g in [forward, backward]:
                if g is backward and not differentiable:
                    row.append('n/a')
                    continue
                call, times = tf.function(g, jit_compile=jit), []
                for i in range(n_runs):
                    t0, c0 = time.perf_counter(), time.process_time()
                    call(tf.constant([42, i], tf.int32)).numpy()
                    times.append((time.perf_counter() - t0, time.process_time() - c0))
                row.append('%.0f / %.0f' % tuple(1e3 * t for t in min(times[2:])))
        rows.append(row)
    table(['method', 'fwd ms', 'fwd+bwd ms', 'xla fwd ms', 'xla fwd+bwd ms'], rows)
    port_s = float(rows[1][2].split(' / ')[0]) / 1e3  # model.dropout, forward + backward, wall
    masks_s = args.n_gpu * port_s
    update_s = args.n_gpu * args.update_s
    print(f"An update of n_gpu {args.n_gpu} towers draws {args.n_gpu} masks: {masks_s:.2f} s (model.dropout, "
          f"forward + backward) against ~{update_s:.1f} s for the update ({args.n_gpu} x --update_s {args.update_s}, "
          f"one tower's update of 8 examples on the default path), {100 * masks_s / update_s:.1f}%;")
    print(f"one mask per update instead would save {(args.n_gpu - 1) * port_s:.2f} s. The mask is "
          "needed in full: the LM head reads every row of we.")


# --------------------------------------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n_batch', type=int, default=8)
    p.add_argument('--n_gpu', type=int, default=1, help='towers: the global batch is n_batch * n_gpu')
    p.add_argument('--steps', type=int, default=5, help='timed updates (and evaluation batches) after 2 warm-up')
    p.add_argument('--model_dir', type=str, help='real weights (params_shapes.json, params_*.npy); default random')
    p.add_argument('--data_dir', type=str, help='the Story Cloze CSVs (default: $GPT1_DATA_DIR, data/ or '
                   '../shared/data/rocstories, the first holding them)')
    p.add_argument('--quick', action='store_true', help='n_embd 64, 2 layers, 1 step: an end-to-end check')
    p.add_argument('--n_layer', type=int, help='random weights of this many layers instead of 12 (a shorter run)')
    p.add_argument('--mixed', action='store_true', help="also train.py's default path in bf16 and fp16")
    p.add_argument('--profile', action='store_true',
                   help="also profile one more update of each path (TensorFlow's profiler): op time by op type")
    p.add_argument('--ablation', action='store_true',
                   help="also the default's gains one at a time (fused Adam, then trimmed batches and masked LM)")
    p.add_argument('--mnli_pipeline', action='store_true',
                   help="only the MNLI input pipeline on a generated MNLI-sized folder: reading, encoding, the "
                        "input sequences, the cache; time and peak RSS (CPU only)")
    p.add_argument('--masks', action='store_true',
                   help="only time the full-size we dropout masks, n_gpu per update (a few seconds)")
    p.add_argument('--update_s', type=float, default=7.4,
                   help="--masks: seconds of one tower's update of 8 examples to compare with (default: this "
                        "machine's default-path figure in the README)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = 1
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.masks:
        return bench_masks(args)
    tmp = tempfile.mkdtemp(prefix='bench-')
    try:
        (mnli_pipeline if args.mnli_pipeline else bench)(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


MNLI_SIZES = {'train': 392702, 'dev_matched': 9815, 'dev_mismatched': 9832, 'test_matched': 9796,
              'test_mismatched': 9847}


def write_mnli_sized(folder, encoder_path, seed=0):
    """MNLI's five files at their real sizes, in GLUE's format: three hypotheses per premise as in MNLI; words
    drawn Zipf-like from the BPE vocabulary's whole words (lower ids, merged earlier, are more frequent) plus 3% of
    made-up names from a pool of 60k, so that about 100k word types occur, as in MNLI; premises of 22 words on
    average (a gamma tail to 200), hypotheses of 11."""
    rng = np.random.RandomState(seed)
    with open(encoder_path) as f:
        words = [w[:-4] for w in json.load(f) if w.endswith('</w>') and w[:-4].isalpha()]
    syllables = ['ka', 'lo', 'mi', 'ren', 'sto', 'var', 'den', 'ix', 'ul', 'bre', 'tan', 'qu']
    names = [''.join(rng.choice(syllables, rng.randint(2, 5))).capitalize() for _ in range(60000)]
    cdf = np.cumsum(1.0 / np.arange(1, len(words) + 1) ** 1.05)
    endings = ['.', '.', '?', ' , he said .', '!']

    def text(mean):
        n = int(np.clip(rng.gamma(3.0, mean / 3.0), 1, 200))
        ranks = np.minimum(np.searchsorted(cdf, rng.rand(n) * cdf[-1]), len(words) - 1)
        ws = [names[rng.randint(len(names))] if r < 0.03 else words[i] for i, r in zip(ranks, rng.rand(n))]
        return ' '.join(ws).capitalize() + endings[rng.randint(len(endings))]

    os.makedirs(folder, exist_ok=True)
    head = ['index', 'promptID', 'pairID', 'genre', 'sentence1_binary_parse', 'sentence2_binary_parse',
            'sentence1_parse', 'sentence2_parse', 'sentence1', 'sentence2']
    labels = ['entailment', 'neutral', 'contradiction']
    for split, n in MNLI_SIZES.items():
        tail = {'train': ['label1', 'gold_label'], 'dev_matched': [f'label{k}' for k in range(1, 6)] + ['gold_label'],
                'dev_mismatched': [f'label{k}' for k in range(1, 6)] + ['gold_label']}.get(split, [])
        with open(os.path.join(folder, f'{split}.tsv'), 'w', encoding='utf-8') as f:
            f.write('\t'.join(head + tail) + '\n')
            for i in range(n):
                if i % 3 == 0:
                    premise = text(22)
                s2 = text(11)
                row = [str(i), str(i // 3), f'{i // 3}{"enc"[i % 3]}', 'fiction', f'( {premise} )', f'( {s2} )',
                       f'(ROOT (S {premise}))', f'(ROOT (S {s2}))', premise, s2] + [labels[i % 3]] * len(tail)
                f.write('\t'.join(row) + '\n')


def mnli_pipeline(args, tmp):
    """Time and peak RSS of train.py's MNLI input pipeline on a generated MNLI-sized folder: read the five files,
    encode every text (inputs.encode_splits), build the input sequences at n_ctx 512, save and reload the encoded
    cache; then one epoch's worth of padded batches of 32."""
    _, _, encoder_path, bpe_path, enc_src = find_inputs(argparse.Namespace(data_dir=None, model_dir=args.model_dir),
                                                        tmp)
    folder = os.path.join(tmp, 'MNLI')
    progress(f'writing an MNLI-sized folder ({sum(MNLI_SIZES.values())} pairs) to {folder}')
    write_mnli_sized(folder, encoder_path)
    size_mb = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 1e6
    gc.collect()
    rows, rss0 = [], peak_rss_gb()

    def cpu_s():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def step(name, fn):  # CPU seconds beside wall seconds: on a shared machine the wall clock includes waiting
        t0, c0 = time.perf_counter(), cpu_s()
        out = fn()
        rows.append([name, fmt(time.perf_counter() - t0, '.1f'), fmt(cpu_s() - c0, '.1f'), fmt(peak_rss_gb(), '.2f')])
        progress(f'{name}: {rows[-1][1]} s ({rows[-1][2]} s CPU), peak RSS {rows[-1][3]} GB')
        return out

    task = tasks.TASKS['mnli']
    encoder = step('TextEncoder init', lambda: TextEncoder(encoder_path, bpe_path))
    splits = step('read the 5 files', lambda: task.load(folder))
    n_texts = sum(len(f) for ex in splits.values() for f in ex.texts)
    n_unique = len({t for ex in splits.values() for f in ex.texts for t in f})
    encoded = step('encode (each distinct text once)', lambda: inputs.encode_splits(encoder, splits, 'mnli'))
    del splits
    n_tokens = sum(len(f.ids) for ex in encoded.values() for f in ex.texts)
    seqs = step('input sequences, n_ctx 512', lambda: {s: inputs.sequences(task, ex.texts, len(encoder.encoder), 512)
                                                        for s, ex in encoded.items()})
    cache = os.path.join(tmp, 'mnli.npz')
    step('save the encoded cache (.npz)', lambda: inputs.save_encoded(cache, encoded))
    step('load the encoded cache', lambda: inputs.load_encoded(cache))
    run_args = argparse.Namespace(data_dir=folder, cache_dir=os.path.join(tmp, 'cache'), encoder_path=encoder_path,
                                  bpe_path=bpe_path)

    def first_start():  # train.encoded_dataset as a run calls it: read, hash, encode, then write the cache
        _, write_cache = train.encoded_dataset(run_args, task, encoder)
        write_cache()

    step("train.py's first start: read, encode, cache", first_start)
    step("train.py's second start: read, check the cache", lambda: train.encoded_dataset(run_args, task, encoder))
    train_seqs = seqs['train']
    order = np.random.RandomState(0).permutation(len(train_seqs) // task.n_seq)

    def batches():
        longest = 0
        for i in range(0, len(order) - 31, 32):
            X, _ = inputs.pad_batch(train_seqs, order[i:i + 32], task.n_seq, len(encoder.encoder))
            longest = max(longest, X.shape[2])
        return longest

    longest = step('pad 1 epoch of batches of 32', batches)
    n_ctx = max(int(q.lengths.max()) for q in seqs.values())
    table(['step', 'seconds', 'CPU seconds', 'peak RSS (GB)'], rows)
    print(f'files {size_mb:.0f} MB, {n_texts} texts ({n_unique} distinct), {n_tokens} BPE tokens '
          f'({n_tokens / n_texts:.1f} per text); encoder {enc_src}; RSS before the pipeline {rss0:.2f} GB '
          f'(Python, TensorFlow and the other imports)')
    print(f'train sequences: {len(train_seqs.ids) * 4 / 1e6:.0f} MB of int32 ids; padded to its longest sequence '
          f'({int(train_seqs.lengths.max())}) the train set would be '
          f'{len(train_seqs) * int(train_seqs.lengths.max()) * 8 / 1e9:.2f}'
          f' GB of X (ids and positions); the longest batch is {longest}; cache {os.path.getsize(cache) / 1e6:.0f} MB')
    mnli_updates(args, task, train_seqs, order, len(encoder.encoder), n_ctx)


def mnli_updates(args, task, seqs, order, n_vocab, n_ctx):
    """Seconds per update of the full-size model with MNLI's head on MNLI-shaped batches (`seqs` the training
    sequences, `order` a shuffled order of the examples), as train.py runs them: the default path, 4 towers of 8."""
    n_embd, n_layer, n_head = (64, 2, 4) if args.quick else (768, 12, 12)
    n_batch, n_gpu = 8, 4
    progress(f'MNLI updates: model n_embd {n_embd}, {n_layer} layers, n_ctx {n_ctx}, {n_gpu} towers of {n_batch}')
    tf.random.set_seed(0)
    with tensorflow_start_up_hidden(device_init=True):
        strategy = train.make_strategy(n_gpu)
    with strategy.scope():
        model = Model(n_vocab, N_SPECIAL, n_ctx, n_vocab + 2, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                      head=Head(**task.head))
        opt = new_adam(model, True, 3 * (len(order) // (n_batch * n_gpu)))
    step = train.make_train_step(model, opt, strategy, 0.5, 42, masked_lm=True, fused=True, n_towers=n_gpu)
    labels = np.arange(len(seqs) // task.n_seq, dtype=np.int32) % len(task.labels)
    batches = train.distribute(strategy, inputs.epoch_batches(
        lambda rows: (*inputs.pad_batch(seqs, rows, task.n_seq, n_vocab), labels[rows]), order, n_batch * n_gpu))
    times, lengths = [], []
    for k, batch in enumerate(islice(batches, N_WARMUP + args.steps)):
        t0 = time.perf_counter()
        sync(step(*batch)[0])
        if k >= N_WARMUP:
            times.append(time.perf_counter() - t0)
            lengths.append(int(batch[0].shape[2]))
    s = statistics.median(times)
    n_updates = len(order) // (n_batch * n_gpu)
    table(['MNLI training update (batch 32)', 's/update (median)', 'updates/s', 'T of the timed batches',
           'epoch of updates'],
          [['train.py default path', fmt(s, '.2f'), fmt(1 / s, '.3f'), ' '.join(map(str, lengths)),
            f'{n_updates} x {s:.2f} s = {n_updates * s / 3600:.1f} h']])


def bench(args, tmp):
    variants = VARIANTS[:1] + (ABLATION_VARIANTS if args.ablation else []) + VARIANTS[1:] \
        + (MIXED_VARIANTS if args.mixed else [])
    rss, load = [], [('start', os.getloadavg())]
    t_start = time.perf_counter()

    # ---- 1. data and weights
    progress('reading and encoding the data set')
    data_dir, data_src, encoder_path, bpe_path, enc_src = find_inputs(args, tmp)
    t0 = time.perf_counter()
    text_encoder = TextEncoder(encoder_path, bpe_path)
    t_enc_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    splits = rocstories(data_dir)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3) = encode_dataset(splits, encoder=text_encoder)
    t_encode = time.perf_counter() - t0
    # A run's second start reads the encoded set from train.py's cache (the first start wrote it).
    cache_args = argparse.Namespace(dataset='rocstories', data_dir=data_dir, cache_dir=os.path.join(tmp, 'cache'),
                                    encoder_path=encoder_path, bpe_path=bpe_path)
    train.encoded_dataset(cache_args, tasks.TASKS['rocstories'], text_encoder)[1]()  # encodes and writes the cache
    t0 = time.perf_counter()
    train.encoded_dataset(cache_args, tasks.TASKS['rocstories'], text_encoder)
    t_cached = time.perf_counter() - t0
    n_texts = sum(len(f) for s in splits for f in s if len(f) and isinstance(f[0], str))
    n_bpe = sum(len(x) for f in (trX1, trX2, trX3, vaX1, vaX2, vaX3, teX1, teX2, teX3) for x in f)
    rss.append(('data encoded', peak_rss_gb()))

    if args.model_dir:
        with open(os.path.join(args.model_dir, 'params_shapes.json')) as f:
            shapes = json.load(f)
        n_vocab, n_embd = shapes[1]
        n_layer, n_head = (len(shapes) - 2) // 12, 12
        weights_dir, weights_src = args.model_dir, args.model_dir
    else:
        n_vocab = len(text_encoder.encoder) if 'real' in enc_src else GPT1_VOCAB
        n_embd, n_layer, n_head = (64, 2, 4) if args.quick else (768, args.n_layer or 12, 12)
        weights_dir = os.path.join(tmp, 'model')
        progress(f'writing random weights ({n_layer} layers, n_embd {n_embd}) in the original layout to {weights_dir}')
        t0 = time.perf_counter()
        write_random_weights(weights_dir, openai_shapes(n_vocab, n_embd, n_layer), n_shards=10, seed=0)
        t_write = time.perf_counter() - t0
        weights_src = (f'random (tests/fixtures.write_random_weights, 10 shards, written in {t_write:.1f} s), loaded; '
                       'then LayerNorm g = 1, b = 0 (random LN gains make the output independent of the input)')
    max_len = 512 // 2 - 2
    n_ctx = min(context_length(trX1 + vaX1 + teX1, trX2 + vaX2 + teX2, trX3 + vaX3 + teX3, max_len), 512)
    clf_token = n_vocab + 2
    n_lm = n_vocab + N_SPECIAL + n_ctx  # rows of we: the LM head's classes
    trX, trM = transform_roc(trX1, trX2, trX3, n_vocab, n_ctx, max_len)
    vaXp, vaMp = transform_roc(vaX1, vaX2, vaX3, n_vocab, n_ctx, max_len)
    va_packed = pack_roc(vaX1, vaX2, vaX3, n_vocab, max_len)

    random_seed = 42
    np.random.seed(random_seed)
    tf.random.set_seed(random_seed)
    strategy = train.make_strategy(args.n_gpu)
    nbt = args.n_batch * args.n_gpu
    train.check_replicas(args.n_batch, args.n_gpu, strategy.num_replicas_in_sync)
    n_need = N_WARMUP + args.steps
    if len(trY) // nbt < n_need or -(-len(vaY) // nbt) < n_need:
        sys.exit(f'bench.py: {n_need} batches of {nbt} needed, the data has {len(trY)} train and {len(vaY)} valid')
    t_total = (len(trY) // nbt) * 3

    progress('building the models and loading the weights')
    with strategy.scope():
        t0 = time.perf_counter()
        model = Model(n_vocab, N_SPECIAL, n_ctx, clf_token, n_embd=n_embd, n_head=n_head, n_layer=n_layer)
        t_build = time.perf_counter() - t0
        model0 = Model(n_vocab, N_SPECIAL, n_ctx, clf_token, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                       embd_pdrop=0., attn_pdrop=0., resid_pdrop=0., clf_pdrop=0.)
    t0 = time.perf_counter()
    arrays = transfer(load_openai_params(weights_dir, n_ctx, N_SPECIAL), n_layer)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.assign(arrays)
    t_assign = time.perf_counter() - t0
    del arrays
    init = [p.numpy() for p in model.params]  # loaded weights plus the fresh classifier: every variant starts here
    if not args.model_dir:
        # write_random_weights draws the LayerNorm gains and biases N(0, 0.02) too: after 12 such layers the hidden
        # state no longer depends on the input (the two choices' _classify_ states agree to ~1e-8), which would make
        # the agreement checks vacuous. Give the LayerNorms a fresh model's g = 1, b = 0 (the timing is unaffected).
        for l in range(n_layer):
            for k in ('ln_1/g', 'ln_2/g', 'ln_1/b', 'ln_2/b'):
                i = 1 + len(LAYER_PARAMS) * l + LAYER_PARAMS.index(k)
                init[i] = np.full_like(init[i], 1. if k.endswith('/g') else 0.)
    n_params = sum(a.size for a in init)
    models = [model]
    rss.append(('weights loaded (2 models)', peak_rss_gb()))
    load.append(('weights loaded', os.getloadavg()))

    print(f'GPT-1 fine-tuning benchmark  (TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, '
          f'devices: {", ".join(d.name for d in tf.config.list_logical_devices())})')
    print(f'model: n_embd {n_embd}, n_layer {n_layer}, n_head {n_head}, n_vocab {n_vocab}, n_ctx {n_ctx}, '
          f'{n_params / 1e6:.1f}M parameters, LM head over {n_lm} rows')
    print(f'weights: {weights_src}')
    print(f'data: {data_src}; text encoder: {enc_src}')
    print(f'batches: global {nbt} examples (n_batch {args.n_batch} x n_gpu {args.n_gpu}, '
          f'{strategy.num_replicas_in_sync} replica), first {n_need} full batches of the train split in split order; '
          f'{N_WARMUP} warm-up + {args.steps} timed')
    print()
    table(['setup', 'seconds', 'detail'], [
        ['TextEncoder init', f'{t_enc_init:.2f}', 'vocabulary and BPE merges'],
        ['read + split CSVs', f'{t_read:.2f}', 'datasets.rocstories'],
        ['encode whole data set', f'{t_encode:.2f}',
         f'{n_texts} texts -> {n_bpe} BPE tokens ({n_texts / t_encode:.0f} texts/s)'],
        ['encoded set from the cache', f'{t_cached:.2f}', "train.py's second start (--cache_dir)"],
        ['build Model', f'{t_build:.2f}', 'random init of every variable'],
        ['load weights', f'{t_load:.2f}', 'load_openai_params + transfer (10 .npy shards)'],
        ['Model.assign', f'{t_assign:.2f}', ''],
        ['load + assign', f'{t_load + t_assign:.2f}', ''],
    ])

    # ---- 2. training updates: dropout-off checks one variant after another, then timing in interleaved rounds
    data = (trX, trM, trY)
    dims = (n_layer, n_embd, n_lm)
    hp = dict(n_vocab=n_vocab, n_ctx=n_ctx, clf_token=clf_token, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
              n_batch=args.n_batch, n_gpu=args.n_gpu, t_total=t_total)
    progress(f'{ORIGINAL}: dropout-off check ({time.perf_counter() - t_start:.0f} s elapsed)')
    checks = {}
    try:
        checks[ORIGINAL] = check_original(hp, init, tuple(a[:nbt] for a in data))
    except Exception as err:  # noqa: BLE001 (a failed variant is a result)
        checks[ORIGINAL] = fail(f'train {ORIGINAL} (check)', err)
    ref = checks[ORIGINAL] if isinstance(checks[ORIGINAL], dict) else None
    for v in variants:
        name = v[0]
        if v[7] != model0.precision:
            with strategy.scope():
                model0 = Model(n_vocab, N_SPECIAL, n_ctx, clf_token, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                               embd_pdrop=0., attn_pdrop=0., resid_pdrop=0., clf_pdrop=0., precision=v[7])
        progress(f'train variant {name}: dropout-off check ({time.perf_counter() - t_start:.0f} s elapsed, '
                 f'load average {os.getloadavg()[0]:.1f})')
        try:
            checks[name] = check_variant(v, model0, init, strategy, data, nbt, t_total, ref, args.n_gpu)
        except Exception as err:  # noqa: BLE001 (a failed variant is a result)
            checks[name] = fail(f'train {name} (check)', err)
        gc.collect()
    if ref is not None:
        del ref['params']
    del model0
    gc.collect()
    rss.append(('dropout-off checks', peak_rss_gb()))
    load.append(('dropout-off checks', os.getloadavg()))

    progress('building the original graph and one model (dropout on) and a fresh Adam per variant')
    jobs, timings = {}, {}
    original = None
    try:
        original = OriginalGraph(**hp)
        jobs[ORIGINAL] = original_job(original, init, data, nbt, n_need, dims)
    except Exception as err:  # noqa: BLE001
        timings[ORIGINAL] = fail(f'train {ORIGINAL} (setup)', err)
    for i, v in enumerate(variants):
        try:
            if i:
                with strategy.scope():
                    models.append(Model(n_vocab, N_SPECIAL, n_ctx, clf_token, n_embd=n_embd, n_head=n_head,
                                        n_layer=n_layer, precision=v[7]))
            jobs[v[0]] = train_job(v, models[i], init, strategy, data, nbt, n_need, t_total, dims, args.n_gpu)
        except Exception as err:  # noqa: BLE001
            timings[v[0]] = fail(f'train {v[0]} (setup)', err)
    default = jobs.get(DEFAULT)
    mm_rows = 2 * nbt * int(np.median(default['Ts'] if default else [n_ctx]))
    mm_jobs = {MATMUL: matmul_job(training_matmuls(mm_rows, n_embd), 2), MATMUL_2048: matmul_job([(2048,) * 3], 10)}
    jobs.update(mm_jobs)
    timings.update(interleaved(jobs, args.steps, 'train', t_start))
    for name, job in jobs.items():
        if isinstance(timings[name], dict) and name not in mm_jobs:
            timings[name].update({k: job[k][N_WARMUP:] for k in ('Ts', 'tok', 'useful', 'executed')})
    mm_rate = {n: (mm_jobs[n]['flops'] / statistics.median(timings[n]['first']) / 1e9
                   if isinstance(timings[n], dict) else None) for n in mm_jobs}
    profiles = {}
    for name in [n for n in jobs if n not in mm_jobs and isinstance(timings[n], dict)] if args.profile else []:
        progress(f'profiling one update of {name} (batch {N_WARMUP + 1}, its shape already run)')
        try:
            profiles[name] = op_profile(lambda: jobs[name]['call'](N_WARMUP),
                                        os.path.join(tmp, 'profile', str(len(profiles))))
        except Exception as err:  # noqa: BLE001
            fail(f'profile {name}', err)
    del jobs, mm_jobs
    gc.collect()
    rss.append((f'training (original graph, {len(variants)} models + {len(variants)} Adams)', peak_rss_gb()))
    load.append(('training', os.getloadavg()))

    # ---- 3. evaluation, in interleaved rounds
    model = models[0]
    del models[1:]
    gc.collect()
    model.assign(init)
    jobs, eval_results = {}, {}
    if original is not None:
        try:
            jobs[ORIGINAL] = original_eval_job(original, init, (vaXp, vaMp, vaY), nbt, n_need)
        except Exception as err:  # noqa: BLE001
            eval_results[ORIGINAL] = fail(f'eval {ORIGINAL} (setup)', err)
    for v in EVAL_VARIANTS:
        try:
            jobs[v[0]] = eval_job(v, model, (vaXp, vaMp), va_packed, vaY, nbt, n_need)
        except Exception as err:  # noqa: BLE001
            eval_results[v[0]] = fail(f'eval {v[0]} (setup)', err)
    eval_results.update(interleaved(jobs, args.steps, 'eval', t_start))
    for name, job in jobs.items():
        if isinstance(eval_results[name], dict):
            eval_results[name]['logits'] = np.concatenate([job['logits'][i] for i in range(n_need)])
    del jobs
    if original is not None:
        original.close()
    rss.append(('evaluation', peak_rss_gb()))
    load.append(('evaluation', os.getloadavg()))

    # ---- tables
    med = statistics.median
    names = [ORIGINAL] + [v[0] for v in variants]
    firsts = {n: med(timings[n]['first']) for n in names if isinstance(timings.get(n), dict)}
    seens = {n: med(timings[n]['seen']) for n in names if isinstance(timings.get(n), dict)}
    rows = []
    for name in names:
        r = timings[name]
        if isinstance(r, str):
            rows.append([name, r])
            continue
        first, seen = firsts[name], seens[name]
        executed = med([f / s for f, s in zip(r['executed'], r['seen'])]) / 1e9
        rows.append([name, f'{first:.2f}', ratio(firsts.get(ORIGINAL), first), ratio(firsts.get(PADDED), first),
                     f"{med(r['cpu_first']):.2f}", f"{med([t / s for t, s in zip(r['tok'], r['first'])]):.0f}",
                     f'{seen:.2f}', ratio(seens.get(ORIGINAL), seen), ratio(seens.get(PADDED), seen),
                     f"{r['warm'][0]:.1f}", str(r['traces']), ','.join(str(T) for T in r['Ts']),
                     f"{med([f / s for f, s in zip(r['useful'], r['seen'])]) / 1e9:.1f}", f'{executed:.1f}',
                     fmt(mm_rate[MATMUL] and 100 * executed / mm_rate[MATMUL], '.0f') + '%'])
    print(f'TRAINING UPDATE (global batch {nbt} = {args.n_gpu} towers of {args.n_batch}; dropout on; median over '
          f'{args.steps} updates after {N_WARMUP} warm-up; the variants interleaved)')
    table(['variant', 's/update', 'vs orig', 'vs padded', 'CPU s', 'real tok/s', 's/upd seen', 'vs orig',
           'vs padded', '1st upd s', 'retraces', 'T per batch', 'useful GF/s', 'exec GF/s', 'of matmul'], rows)
    print(f"{ORIGINAL}: the original's train graph (bench_original.py: its model, towers and adam under "
          "tf.compat.v1, in a Session), fed")
    print("  the same weights and padded batches. vs orig, vs padded: speed-up over it and over --padded (time "
          "ratio).")
    print("s/update: median wall time of the timed updates, each batch seen for the first time (a new shape's "
          "trace/compile included).")
    print("CPU s: process CPU time (all threads) of the same updates: less sensitive than wall time to other "
          "processes' load.")
    print("retraces: new traces of the train step during the timed updates; 's/upd seen' times the same batches "
          "again once their")
    print("  shapes are traced (equals s/update when nothing was retraced; always run for xla, which compiles each "
          "new shape")
    print("  without a retrace). 1st upd s: the first warm-up update (trace + compile).")
    print("Rounds: update r of every variant runs before update r + 1 of any (order rotated), so outside load "
          "falls on all alike.")
    print("real tok/s: real tokens (M.sum()) / s. GF/s from 's/upd seen': useful = FLOPs of the real tokens only "
          "(LM head on real")
    print("  predicted tokens), exec = FLOPs of the shapes computed (padding included; LM head on every position "
          "unless masked);")
    print("  3x forward, forward = 24 L C^2 + 4 L T C per token + 2 C V per predicted token. of matmul: exec GF/s "
          "over the rate below.")
    print(f"matmul rate, timed in the same rounds (median): {fmt(mm_rate[MATMUL], '.1f')} GFLOP/s for a block's "
          f"training matmuls at {mm_rows} rows")
    print(f"  ((R, C) x (C, 3C), (C, C), (C, 4C), (4C, C), each forward, dy W^T and x^T dy; R = 2 x {nbt} x the "
          f"default's median T), {fmt(mm_rate[MATMUL_2048], '.1f')} GFLOP/s at 2048x2048.")
    print()

    if profiles:
        print(f'PROFILE OF ONE UPDATE (batch {N_WARMUP + 1} again, after the timed rounds; TensorFlow\'s profiler)')
        profile_table(profiles)
        print("Seconds of the ops of each type (count in brackets), summed over the threads that ran them. "
              "A function's ops are")
        print("counted, not the call; an XLA program (the default's gelu, LayerNorm and Adam kernels; --xla's "
              "whole step) counts as one op.")
        print("Under a gradient scope: TF2's 'gradient_tape/...', TF1's 'gradients/...'.")
        print()

    rows = []
    for name in names:
        r = checks.get(name)
        if isinstance(r, str):
            rows.append([name, r])
        elif name == ORIGINAL:
            rows.append([name, str(r['T']), f"{r['cost']:.6f}", 'reference', '', '', '', ''])
        elif ref is None:
            rows.append([name, str(r['T']), f"{r['cost']:.6f}", 'no reference'])
        else:
            rows.append([name, str(r['T']), f"{r['cost']:.6f}", f"{r['d_clf']:.2e}", f"{r['d_lm']:.2e}",
                         f"{r['d_cost']:.2e}", f"{r['d_p']:.2e}", str(r['n_flip'])])
    print("AGREEMENT WITH THE ORIGINAL GRAPH (batch 0, same weights, dropout off: every pdrop 0)")
    table(['variant', 'T', 'clf cost', 'max|dclf_loss|', 'max|dlm_loss|', '|dcost|', 'max|dp| 1 upd',
           '#p off>upd/2'], rows)
    print("dclf_loss, dlm_loss: the forward losses (train=False; the variant's masked_lm / XLA) at the loaded "
          "weights; dcost, dp: the")
    print("variant's train step from the same weights and a fresh Adam, one update."
          + (f" One update of the original moves a parameter by up to {ref['upd']:.2e};" if ref else ''))
    print("Adam's first update is about lr * sign(g), so a gradient near 0 whose sign flips by rounding moves its "
          "parameter by up to")
    print("twice that: '#p off>upd/2' counts parameters that differ by more than half the largest update.")
    if ref:
        print(f"Scale: the original's clf_losses lie in [{ref['clf'].min():.6f}, {ref['clf'].max():.6f}], its "
              f"lm_losses in [{ref['lm'].min():.4f}, {ref['lm'].max():.4f}].")
    print()

    rows = []
    enames = [ORIGINAL] + [v[0] for v in EVAL_VARIANTS]
    eref = eval_results.get(ORIGINAL) if isinstance(eval_results.get(ORIGINAL), dict) else None
    e_first = {n: med(eval_results[n]['first']) for n in enames if isinstance(eval_results.get(n), dict)}
    e_seen = {n: med(eval_results[n]['seen']) for n in enames if isinstance(eval_results.get(n), dict)}
    for name in enames:
        r = eval_results.get(name, 'not run')
        if isinstance(r, str):
            rows.append([name, r])
            continue
        d = float(np.max(np.abs(r['logits'] - eref['logits']))) if eref else None
        rows.append([name, f'{e_first[name]:.3f}', ratio(e_first.get(ORIGINAL), e_first[name]),
                     f"{med(r['cpu_first']):.3f}", f'{e_seen[name]:.3f}', ratio(e_seen.get(ORIGINAL), e_seen[name]),
                     f"{med(r['cpu_seen']):.3f}", f"{r['warm'][0]:.1f}",
                     'reference' if name == ORIGINAL else fmt(d, '.2e')])
    print(f'EVALUATION BATCH ({nbt} examples of the valid split, no dropout; median over {args.steps} batches after '
          f'{N_WARMUP} warm-up; interleaved)')
    table(['variant', 's/batch', 'vs orig', 'CPU s', 's/batch 2nd', 'vs orig', 'CPU s', '1st batch s',
           'max|dclf_logits|'], rows)
    print(f"{ORIGINAL}: the original's mgpu_predict graph, fetching the logits and the mean classifier loss as "
          "its evaluation did.")
    print(f'padded: transform_roc arrays ({nbt} x 2 sequences of n_ctx {n_ctx}); packed: pack_roc arrays (one '
          f'sequence per example, cut to the batch\'s longest, to a multiple of 8 for xla).')
    print("max|dclf_logits| over all the batches scored, against the original graph. 's/batch 2nd': "
          "the same batches again.")
    if eref:
        lg = eref['logits']
        print(f"Scale: the reference logits have max |clf_logits| {np.max(np.abs(lg)):.3e} and max |logit 1 - logit 2| "
              f"{np.max(np.abs(lg[:, 0] - lg[:, 1])):.3e}.")
    print()

    loads = dict(load)
    table(['after phase', 'peak RSS GB', 'load avg 1/5 min'],
          [['start', '', '%.1f / %.1f' % loads['start'][:2]]]
          + [[p, f'{g:.2f}', '%.1f / %.1f' % loads[k][:2] if k in loads else '']
             for (p, g), k in zip(rss, ['', 'weights loaded', 'dropout-off checks', 'training', 'evaluation'])])
    print("peak RSS: resource.getrusage(RUSAGE_SELF).ru_maxrss, cumulative (the largest so far, not the phase's "
          "own). Training holds")
    print(f"one dropout model and one Adam per variant ({n_params / 1e6:.1f}M parameters: {n_params * 4 / 1e9:.2f} GB "
          f"a model, {n_params * 8 / 1e9:.2f} GB an Adam) plus the initial arrays;")
    print("the original graph holds its own copy and Adam; the checks a dropout-off model and the original's "
          "parameters after one update. Load average: "
          f"os.getloadavg() on {os.cpu_count()} CPUs.")
    print()
    print(f'total time {time.perf_counter() - t_start:.0f} s')
    for what, tb in ERRORS:
        progress(f'error in {what}:')
        for line in tb.rstrip().splitlines():
            progress('  ' + line)


if __name__ == '__main__':
    main()
