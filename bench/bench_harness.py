"""What the benchmarks (bench.py, bench_masks.py, bench_pipeline.py) share: progress lines, peak RSS, waiting for a
result, tables and their figures, the collection of failed measurements, the interleaved timing rounds, the FLOPs of
the model and of matmuls timed alone, and TensorFlow's op profile of one call. The inputs they run on are
formats/sample_files.py's.

A measurement is a job: a dict whose call(i) runs batch i and waits for its result (optional keys: traces, a
function giving the tracing count of its tf.function; always_again, time the batches a second time even without a
new trace). Tables go to stdout, progress lines (starting with '#') too; tracebacks and bars go to stderr.
"""
import collections
import glob
import os
import resource
import sys
import time
import traceback

import numpy as np
import tensorflow as tf

from opt import Adam, warmup_linear

N_WARMUP = 2  # rounds run before the timed ones: traces, compilation, the allocator's first requests


def progress(msg):
    print('# ' + msg, flush=True)


def peak_rss_gb():
    """The process's peak resident memory so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def sync(x):
    """Wait for a result (a tensor or a nest of tensors) by reading it back."""
    for t in tf.nest.flatten(x):
        np.asarray(t)


class Failures:
    """The measurements that failed, (what, traceback text) each: a failure is a result (its table cell says so),
    and the tracebacks are printed again at the end."""

    def __init__(self):
        self.items = []

    def record(self, what, err):
        """Keep err's traceback (printed to stderr now) and return the table cell 'failed: <the error's first
        line>'."""
        self.items.append((what, ''.join(traceback.format_exception(type(err), err, err.__traceback__))))
        print(self.items[-1][1], file=sys.stderr, flush=True)
        return 'failed: ' + (f'{type(err).__name__}: {err}'.splitlines() or [''])[0][:90]

    def report(self):
        """Each failure's traceback as progress lines."""
        for what, tb in self.items:
            progress(f'error in {what}:')
            for line in tb.rstrip().splitlines():
                progress('  ' + line)


def default_adam(params, fused, t_total):
    """A fresh Adam of `params` with train.py's default hyperparameters (fused: opt.Adam's fused update)."""
    return Adam(params, lr=6.25e-5, schedule=lambda x: warmup_linear(x, warmup=0.002), t_total=t_total, b1=0.9,
                b2=0.999, e=1e-8, l2=0.01, vector_l2=False, max_grad_norm=1, fused=fused)


class Phases:
    """Peak RSS and the load average after each phase of a run: rows of (name, GB or None, load or None)."""

    def __init__(self):
        self.rows = [('start', None, os.getloadavg())]

    def mark(self, name, load=True):
        self.rows.append((name, peak_rss_gb(), os.getloadavg() if load else None))


# ------------------------------------------------------------------------------------------------------ tables

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


def batch_flops(M, masked, dims):
    """(T, real tokens, useful FLOPs, executed FLOPs) of a training update on a batch whose mask M (n, n_seq, T)
    is computed at its length T: 3x the forward (forward + backward). Useful: each sequence at its own length,
    the LM head on its real predicted tokens; executed: every sequence at T, the LM head on every position unless
    masked. dims: (n_layer, n_embd, n_lm) with n_lm the LM head's rows."""
    n_layer, n_embd, n_lm = dims
    M = np.asarray(M).reshape(-1, np.shape(M)[-1])
    T = M.shape[-1]
    useful = 3 * forward_flops(M.sum(1), None, M[:, 1:].sum(), n_layer, n_embd, n_lm)
    lm_rows = M[:, 1:].sum() if masked else M.shape[0] * (T - 1)
    return T, float(M.sum()), useful, 3 * forward_flops(M.sum(1), T, lm_rows, n_layer, n_embd, n_lm)


def packed_batch_flops(seg, masked, dims):
    """batch_flops of a packed training batch (inputs.pack_parts' seg (rows, L)): (its shape 'RxL', real tokens,
    useful FLOPs: each sequence at its own length, the LM head on its predicted tokens; executed: every row at L,
    the LM head on every position unless masked)."""
    n_layer, n_embd, n_lm = dims
    seg = np.asarray(seg)
    n_rows, L = seg.shape
    starts = np.concatenate([np.ones((n_rows, 1), bool), seg[:, 1:] != seg[:, :-1]], axis=1)
    runs = np.cumsum(starts.ravel()) - 1                                    # a run of equal seg: one sequence
    lengths = np.bincount(runs[seg.ravel() > 0])
    lengths = lengths[lengths > 0]
    useful = 3 * forward_flops(lengths, None, np.sum(lengths - 1), n_layer, n_embd, n_lm)
    lm_rows = np.sum(lengths - 1) if masked else n_rows * (L - 1)
    return f'{n_rows}x{L}', float(lengths.sum()), useful, 3 * forward_flops(np.zeros(n_rows), L, lm_rows, n_layer,
                                                                          n_embd, n_lm)


def training_matmuls(rows, n_embd):
    """The (m, k, n) of a block's four weight matmuls over `rows` positions in training: forward x W, and the
    gradients dy W^T and x^T dy."""
    shapes = []
    for nx, nf in [(n_embd, 3 * n_embd), (n_embd, n_embd), (n_embd, 4 * n_embd), (4 * n_embd, n_embd)]:
        shapes += [(rows, nx, nf), (rows, nf, nx), (nx, rows, nf)]
    return shapes


def matmul_job(shapes, n_repeat):
    """Matmuls alone, timed as the model's: a tf.function multiplying float32 matrices of `shapes` ((m, k, n)
    each), called n_repeat times per call of the job (not repeated inside the graph, where Grappler would merge
    the copies); flops, the FLOPs of a call."""
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


# ------------------------------------------------------------------------------------------------ timing rounds

def interleaved(jobs, n_steps, label, t_start, failures):
    """Time jobs (name -> job, see the module's docstring) in rounds: round r runs batch r of every job, the order
    rotated each round, so that load from other processes falls on every job alike. N_WARMUP rounds, n_steps timed
    rounds ('first'), then the timed batches again for the jobs that traced during the timed rounds or ask for it
    ('seen'; the others' seen = first). Returns name -> {warm, first, seen, cpu_warm, cpu_first, cpu_seen: wall
    and process CPU seconds of each call; traces: new traces in the timed rounds}, or the failure's table cell
    (a job that raised is not run again; `failures` keeps its traceback)."""
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
            out[name] = failures.record(f'{label} {name}', err)

    def rotated(names, r):
        return names[r % len(names):] + names[:r % len(names)]

    traces0 = {}
    for r in range(N_WARMUP + n_steps):
        if r == N_WARMUP:
            traces0 = {n: jobs[n]['traces']() for n in names if jobs[n].get('traces')}
        progress(f'{label} round {r + 1}/{N_WARMUP + n_steps} ({"warm-up" if r < N_WARMUP else "timed"}; '
                 f'{time.perf_counter() - t_start:.0f} s elapsed, load average {os.getloadavg()[0]:.1f})')
        for name in rotated(names, r):
            run(name, r, 'warm' if r < N_WARMUP else 'first')
    for n in names:
        if not isinstance(out[n], str):
            out[n]['traces'] = jobs[n]['traces']() - traces0[n] if n in traces0 else 0
    again = [n for n in names if not isinstance(out[n], str) and (out[n]['traces'] or jobs[n].get('always_again'))]
    for r in range(N_WARMUP, N_WARMUP + n_steps) if again else []:
        progress(f'{label} seen-shapes round {r + 1 - N_WARMUP}/{n_steps} for {", ".join(again)} '
                 f'({time.perf_counter() - t_start:.0f} s elapsed, load average {os.getloadavg()[0]:.1f})')
        for name in rotated(again, r):
            run(name, r, 'seen')
    for n in names:
        if not isinstance(out[n], str) and n not in again:
            out[n]['seen'], out[n]['cpu_seen'] = out[n]['first'], out[n]['cpu_first']
    return out


# ------------------------------------------------------------------------------------------------- op profile

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
    with open(max(glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True), key=os.path.getmtime),
              'rb') as f:
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
