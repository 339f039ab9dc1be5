"""Benchmark of the full-size GPT-1 fine-tuning step on ROCStories against the original itself: the original's
TF1 graph (bench_original.py, run in a tf.compat.v1 Session in the same process) against train.py's paths
(engine.kernels.Path: --padded; the default: the kernels (fused Adam, GELU, LayerNorm), the LM head on real tokens
only, each tower's sequences packed into rows of one shape; --xla), and the original's evaluation against the
padded, trimmed and packed ones; each path's executed GFLOP/s against the model's matmuls timed alone in the same
rounds.

    python bench/bench.py [--n_batch 8] [--n_gpu 1] [--steps 5] [--model_dir DIR] [--data_dir DIR] [--quick]
                          [--mixed] [--ablation] [--profile]

Random weights in the original's layout (or --model_dir with the real ones), loaded as train.py loads them; real
ROCStories batches (--data_dir, else where the tests find the real files: $GPT1_DATA_DIR, data/, then
../shared/data/rocstories; generated text when none has them; the BPE files likewise from --model_dir,
$GPT1_MODEL_DIR, model/, ../shared/model), through the task registry and finetuning/inputs.py as train.py makes
them. What it used is printed above the tables. Tables go to stdout, progress lines start with '#', bars and
TensorFlow's messages go to stderr.

Two more measurements are programs of their own; bench.py hands over to them (os.execv) with the other flags:
    python bench/bench.py --masks [--n_gpu 4]        is  python bench/bench_masks.py [--n_gpu 4]  (the dropout masks)
    python bench/bench.py --mnli_pipeline [--quick]  is  python bench/bench_pipeline.py [--quick]  (MNLI's pipeline)
"""
import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import NamedTuple

# The project's modules live in the repository root, one folder up from this program's bench/ (the other bench_*
# modules are found here, in the script's own folder).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.flags import add_flags  # noqa: E402
from utils import HelpFormatter, InputError, exit_on_input_error, tensorflow_start_up_hidden  # noqa: E402

HANDED_OVER = {'--masks': 'bench_masks.py', '--mnli_pipeline': 'bench_pipeline.py'}


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    add_flags(p, ['n_batch', 'n_gpu'], n_gpu=dict(default=1, help='towers: the global batch is n_batch * n_gpu'))
    p.add_argument('--steps', type=int, default=5, help='timed updates (and evaluation batches) after 2 warm-up')
    add_flags(p, ['model_dir', 'data_dir'],
              model_dir=dict(default=None, help='real weights (params_shapes.json, params_*.npy); default random'),
              data_dir=dict(help='the Story Cloze CSVs (default: $GPT1_DATA_DIR, data/ or ../shared/data/rocstories, '
                                 'the first holding them)'))
    p.add_argument('--quick', action='store_true', help='n_embd 64, 2 layers, 1 step: an end-to-end check')
    add_flags(p, ['n_layer'], n_layer=dict(default=None, help='random weights of this many layers instead of 12 '
                                                              '(a shorter run)'))
    p.add_argument('--mixed', action='store_true', help="also train.py's default path in bf16 and fp16")
    p.add_argument('--profile', action='store_true',
                   help="also profile one more update of each path (TensorFlow's profiler): op time by op type")
    p.add_argument('--ablation', action='store_true',
                   help="also the default's gains one at a time (the kernels: fused Adam, GELU, LayerNorm; then "
                        "trimmed batches and masked LM), and the last --xla (trimmed to multiples of 8)")
    p.add_argument('--no_rss', action='store_true',
                   help='skip the peak RSS of each path alone (one child process per path, run first)')
    p.add_argument('--rss_of', metavar='VARIANT',
                   help="instead, set up and run only the first updates of this row of the training table, then "
                        "print the process's peak RSS (what bench.py runs in a child process per path)")
    p.add_argument('--mnli_pipeline', action='store_true',
                   help="instead, run bench_pipeline.py with the other flags: the MNLI input pipeline on a generated "
                        "MNLI-sized folder (reading, encoding, the input sequences, the cache), then MNLI updates")
    p.add_argument('--masks', action='store_true',
                   help="instead, run bench_masks.py with the other flags: the full-size we dropout masks, n_gpu "
                        "per update (a few seconds)")
    return p


def hand_over(argv):
    """With --masks or --mnli_pipeline in argv: become that measurement's program in bench/ beside this one
    (os.execv, the same Python and interpreter options), given the other flags. Otherwise nothing."""
    asked = [flag for flag in HANDED_OVER if flag in argv]
    if not asked:
        return
    if len(asked) > 1:
        raise InputError('--masks and --mnli_pipeline are two programs (bench/bench_masks.py, '
                         'bench/bench_pipeline.py): run one at a time')
    options = sys.orig_argv[1:len(sys.orig_argv) - len(sys.argv)]  # e.g. -X importtime, -u
    options = options[:options.index('-m')] if '-m' in options else options
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), HANDED_OVER[asked[0]])
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, *options, script, *[a for a in argv if a != asked[0]]])


def checked_args(argv):
    """bench.py's flags, checked (InputError) before TensorFlow is imported."""
    args = parser().parse_args(argv)
    if args.quick:
        args.steps = 1
    for flag in ['n_batch', 'n_gpu', 'steps'] + (['n_layer'] if args.n_layer is not None else []):
        if getattr(args, flag) < 1:
            raise InputError(f'--{flag} must be at least 1, got {getattr(args, flag)}')
    if args.model_dir and not os.path.isfile(os.path.join(args.model_dir, 'params_shapes.json')):
        raise InputError(f"--model_dir {args.model_dir!r} holds no params_shapes.json: give the folder of the "
                         "pretrained weights, or leave --model_dir out for random ones")
    if args.data_dir:
        import datasets  # no TensorFlow
        datasets.rocstories_paths(args.data_dir)
    return args


if __name__ == '__main__':  # --help, a bad flag and the hand-overs before TensorFlow is imported
    exit_on_input_error(hand_over, sys.argv[1:])
    ARGS = exit_on_input_error(checked_args, sys.argv[1:])

with tensorflow_start_up_hidden():  # TensorFlow's start-up lines, unless TF_CPP_MIN_LOG_LEVEL asks for them
    import numpy as np
    import tensorflow as tf

    import bench_harness
    from engine import loop
    from bench_harness import (N_WARMUP, Failures, Phases, batch_flops, default_adam, interleaved, matmul_job,
                               op_profile, packed_batch_flops, progress, sync, training_matmuls)
    import bench_rss
    from bench_original import OriginalGraph
    from bench_setup import print_setup, setup
    from bench_tables import (agreement_table, evaluation_table, memory_table, profile_section, targets_table,
                              training_table)
    from engine.kernels import DEFAULT, PADDED, TRIMMED, XLA
    from model import finetune_losses, finetune_objective
    from opt import LossScale, make_update


class Variant(NamedTuple):
    """A row of the tables: the computation path (engine.kernels.Path) in a precision."""
    name: str
    path: object
    precision: str = 'fp32'


ORIGINAL = 'original graph (TF1)'  # bench_original.OriginalGraph: the baseline of every ratio
MATMUL, MATMUL_2048 = 'matmuls alone (the model\'s shapes)', 'matmul 2048x2048'  # timed beside the updates
VARIANTS = [Variant('padded (--padded)', PADDED), Variant('trimmed (the last default)', TRIMMED),
            Variant('default (train.py, packed)', DEFAULT), Variant('xla (--xla, packed)', XLA)]
DEFAULT_ROW = VARIANTS[2].name
ABLATION_VARIANTS = [  # with --ablation, after padded: the default's gains one at a time, and the last --xla
    Variant('padded + kernels (fused Adam, GELU, LayerNorm)', PADDED._replace(fused=True)),
    Variant('+ trimmed, masked LM', PADDED._replace(fused=True, multiple=1, masked_lm=True)),
    Variant('xla trimmed (the last --xla)', XLA._replace(packed_train=False, fixed_eval=False)),
]
MIXED_VARIANTS = [  # with --mixed: train.py's default path in mixed precision (changes the rounding)
    Variant('default bf16', DEFAULT, 'bf16'),
    Variant('default fp16', DEFAULT, 'fp16'),
]
EVAL_VARIANTS = [Variant('padded (--padded)', PADDED), Variant('trimmed (padded to the longest)', TRIMMED),
                 Variant('packed, one shape (default)', DEFAULT),
                 Variant('padded xla', PADDED._replace(jit_compile=True)),
                 Variant('packed xla, one shape (--xla)', XLA)]


def variants_of(args):
    return VARIANTS[:1] + (ABLATION_VARIANTS if args.ablation else []) + VARIANTS[1:] \
        + (MIXED_VARIANTS if args.mixed else [])


def forward(model, path, n_parts):
    """The dropout-off forward losses (clf_losses, lm_losses) of a training batch along `path`: model.finetune_losses
    of its padded (X, M, Y), or with packed_train of each of its n_parts parts' packed rows (X, seg, clf_at, Y)
    (a part's segments and extract positions are its own), the parts' losses concatenated."""
    losses = tf.function(lambda *batch: finetune_losses(model, batch, train=False, path=path)[1:],
                         jit_compile=path.jit_compile)
    if not path.packed_train:
        return lambda *batch: [t.numpy() for t in losses(*batch)]

    def by_part(*batch):
        parts = [losses(*(x[p * (len(x) // n_parts):(p + 1) * (len(x) // n_parts)] for x in batch))
                 for p in range(n_parts)]
        return [np.concatenate([part[i].numpy() for part in parts]) for i in range(2)]

    return by_part


# ------------------------------------------------------------------------------ dropout-off agreement checks

def make_step(v, model, opt, s):
    """train.py's update of `model` along the variant's path: opt.make_update of the fine-tuning objective
    (lm_coef 0.5, seed 42, n_gpu towers), with fp16's loss scaling."""
    return make_update(finetune_objective(model, 0.5, v.path), model.params, opt, s.strategy, 42, v.path.jit_compile,
                       loss_scale=LossScale() if v.precision == 'fp16' else None, n_towers=s.n_gpu)


def check_original(s):
    """The original graph with dropout off: its forward losses on train batch 0 (padded) at the weights s.init,
    and its parameters after one update on it: the reference of every variant's check."""
    batch = s.batch(s.train, PADDED, 0)
    graph = OriginalGraph(**s.hp(embd_pdrop=0., attn_pdrop=0., resid_pdrop=0., clf_pdrop=0.))
    try:
        graph.load(s.init)
        clf, lm = graph.losses(*batch)
        cost = float(graph.train(*batch))
        params = graph.values()
    finally:
        graph.close()
    upd = max(float(np.max(np.abs(a - b))) for a, b in zip(params, s.init))
    return dict(clf=clf, lm=lm, cost=cost, params=params, upd=upd, T=int(batch[0].shape[2]))


def check_variant(v, model0, s, ref):
    """With dropout off (model0, pdrop 0): the variant's forward losses on train batch 0 (as its path pads it)
    at s.init, and its parameters after one update on it, and their differences from ref (the original graph's
    results; None: no differences)."""
    model0.assign(s.init)
    batch = s.batch(s.train, v.path, 0)
    clf, lm = forward(model0, v.path, s.n_gpu)(*batch)
    step = make_step(v, model0, default_adam(model0.params, v.path.fused, s.t_total), s)
    cost = float(step(*loop.distribute(s.strategy, batch))[0])
    params = [p.numpy() for p in model0.params]
    T = f'{batch[0].shape[0]}x{batch[0].shape[1]}' if v.path.packed_train else int(batch[0].shape[2])
    out = dict(cost=cost, T=T)
    if ref is not None:
        out['d_clf'] = float(np.max(np.abs(clf - ref['clf'])))
        out['d_lm'] = float(np.max(np.abs(lm - ref['lm'])))
        out['d_cost'] = abs(cost - ref['cost'])
        out['d_p'] = max(float(np.max(np.abs(a - b))) for a, b in zip(params, ref['params']))
        out['n_flip'] = int(sum(np.sum(np.abs(a - b) > 0.5 * ref['upd']) for a, b in zip(params, ref['params'])))
    return out


def agreement_checks(s, variants, failures, t_start):
    """name -> check_original's or check_variant's result (or the failure's cell), one after the other on a
    dropout-off model (rebuilt for another precision); the reference without its parameters."""
    progress(f'{ORIGINAL}: dropout-off check ({time.perf_counter() - t_start:.0f} s elapsed)')
    checks = {}
    try:
        checks[ORIGINAL] = check_original(s)
    except Exception as err:  # noqa: BLE001 (a failed variant is a result)
        checks[ORIGINAL] = failures.record(f'train {ORIGINAL} (check)', err)
    ref = checks[ORIGINAL] if isinstance(checks[ORIGINAL], dict) else None
    model0 = None
    for v in variants:
        if model0 is None or v.precision != model0.cfg.precision:
            model0 = None
            model0 = s.new_model(dropout=False, precision=v.precision)
        progress(f'train variant {v.name}: dropout-off check ({time.perf_counter() - t_start:.0f} s elapsed, '
                 f'load average {os.getloadavg()[0]:.1f})')
        try:
            checks[v.name] = check_variant(v, model0, s, ref)
        except Exception as err:  # noqa: BLE001 (a failed variant is a result)
            checks[v.name] = failures.record(f'train {v.name} (check)', err)
        gc.collect()
    if ref is not None:
        del ref['params']
    return checks


# ---------------------------------------------------------------------------------------------- training rounds

def original_job(graph, s):
    """The original graph (dropout on, reset to s.init) on the first n_need padded train batches, and their
    FLOPs."""
    graph.load(s.init)
    batches = [s.batch(s.train, PADDED, i) for i in range(s.n_need)]
    return flops_of(dict(call=lambda i: graph.train(*batches[i])), batches, False, s.dims)


def train_job(v, model, s):
    """The variant's model (reset to s.init) with a fresh Adam and its train step on the first n_need train
    batches (as its path pads them), and their FLOPs."""
    model.assign(s.init)
    opt = default_adam(model.params, v.path.fused, s.t_total)
    step = make_step(v, model, opt, s)
    batches = [s.batch(s.train, v.path, i) for i in range(s.n_need)]
    split = [loop.distribute(s.strategy, batch) for batch in batches]
    job = dict(call=lambda i: sync(step(*split[i])), traces=step.experimental_get_tracing_count,
               always_again=v.path.jit_compile or v.path.fused,  # XLA compiles each new shape: no retrace shows it
               opt=opt)
    return flops_of(job, batches, v.path.masked_lm, s.dims, v.path.packed_train)


def flops_of(job, batches, masked, dims, packed=False):
    """job with, per batch, its length T (packed: its rows 'RxL'), real tokens, useful and executed FLOPs
    (batch_flops, packed_batch_flops) and the positions it computes in Ts, tok, useful, executed, positions."""
    counts = [packed_batch_flops(b[1], masked, dims) if packed else batch_flops(b[1], masked, dims) for b in batches]
    for k, values in zip(('Ts', 'tok', 'useful', 'executed'), zip(*counts)):
        job[k] = list(values)
    job['positions'] = [int(np.prod(b[1].shape)) for b in batches]
    return job


def training_rounds(s, model, variants, failures, args, tmp, t_start):
    """Every variant's update (dropout on), the original graph's and the matmuls alone, timed in interleaved
    rounds; with --profile, one more update of each under the profiler. Returns (timings: name -> interleaved's
    result with the timed batches' Ts, tok, useful, executed; the GFLOP/s of the model's matmuls alone and of
    the 2048x2048 one; the matmuls' rows; the profiles; the original graph, kept for the evaluation, or None)."""
    progress('building the original graph and one model (dropout on) and a fresh Adam per variant')
    jobs, timings, original = {}, {}, None
    try:
        original = OriginalGraph(**s.hp())
        jobs[ORIGINAL] = original_job(original, s)
    except Exception as err:  # noqa: BLE001
        timings[ORIGINAL] = failures.record(f'train {ORIGINAL} (setup)', err)
    for i, v in enumerate(variants):
        try:
            jobs[v.name] = train_job(v, model if i == 0 else s.new_model(precision=v.precision), s)
        except Exception as err:  # noqa: BLE001
            timings[v.name] = failures.record(f'train {v.name} (setup)', err)
    default = jobs.get(DEFAULT_ROW)
    mm_rows = int(np.median(default['positions'] if default else [2 * s.nbt * s.n_ctx]))
    mm_jobs = {MATMUL: matmul_job(training_matmuls(mm_rows, s.n_embd), 2), MATMUL_2048: matmul_job([(2048,) * 3], 10)}
    jobs.update(mm_jobs)
    timings.update(interleaved(jobs, args.steps, 'train', t_start, failures))
    for name, job in jobs.items():
        if isinstance(timings[name], dict) and name not in mm_jobs:
            timings[name].update({k: job[k][N_WARMUP:] for k in ('Ts', 'tok', 'useful', 'executed', 'positions')})
    mm_rate = tuple(mm_jobs[n]['flops'] / statistics.median(timings[n]['first']) / 1e9
                    if isinstance(timings[n], dict) else None for n in (MATMUL, MATMUL_2048))
    profiles = {}
    for name in [n for n in jobs if n not in mm_jobs and isinstance(timings[n], dict)] if args.profile else []:
        progress(f'profiling one update of {name} (batch {N_WARMUP + 1}, its shape already run)')
        try:
            profiles[name] = op_profile(lambda: jobs[name]['call'](N_WARMUP),
                                        os.path.join(tmp, 'profile', str(len(profiles))))
        except Exception as err:  # noqa: BLE001
            failures.record(f'profile {name}', err)
    return timings, mm_rate, mm_rows, profiles, original


# -------------------------------------------------------------------------------------------- evaluation rounds

def eval_job(v, model, s):
    """The evaluation step of a variant as train.py makes it (loop.make_eval_step with the path's kernels, compiled
    or not) on the first n_need batches of the valid split: with fixed_eval, rows of the split's one shape where
    each example (the story, then both endings) is packed whole (n_parts 1 + n_seq); else padded (X, M, Y), to
    n_ctx or to the batch's longest as its path pads them. logits[i] of batch i."""
    fixed = v.path.fixed_eval
    eval_step = loop.make_eval_step(model, 1 + s.task.n_seq if fixed else 1, v.path.fused, v.path.jit_compile,
                                    rows=fixed)
    split = s.valid_packed if fixed else s.valid
    batches = [s.batch(split, v.path, i) for i in range(s.n_need)]
    logits = {}

    def call(i):
        out = eval_step(*batches[i])
        sync(out)
        logits[i] = out[0].numpy()

    return dict(call=call, logits=logits, always_again=True)


def original_eval_job(graph, s):
    """The original's evaluation (reset to s.init) on the first n_need padded batches of the valid split."""
    graph.load(s.init)
    batches = [s.batch(s.valid, PADDED, i) for i in range(s.n_need)]
    logits = {}

    def call(i):
        logits[i] = graph.evaluate(*batches[i])[0]

    return dict(call=call, logits=logits)


def evaluation_rounds(s, model, original, failures, args, t_start):
    """The original's evaluation and each evaluation variant's on `model` (reset to s.init), timed in interleaved
    rounds: name -> interleaved's result with the logits of every batch scored (or the failure's cell)."""
    model.assign(s.init)
    jobs, results = {}, {}
    if original is not None:
        try:
            jobs[ORIGINAL] = original_eval_job(original, s)
        except Exception as err:  # noqa: BLE001
            results[ORIGINAL] = failures.record(f'eval {ORIGINAL} (setup)', err)
    for v in EVAL_VARIANTS:
        try:
            jobs[v.name] = eval_job(v, model, s)
        except Exception as err:  # noqa: BLE001
            results[v.name] = failures.record(f'eval {v.name} (setup)', err)
    results.update(interleaved(jobs, args.steps, 'eval', t_start, failures))
    for name, job in jobs.items():
        if isinstance(results[name], dict):
            results[name]['logits'] = np.concatenate([job['logits'][i] for i in range(s.n_need)])
    return results


# --------------------------------------------------------------------------------------------------------- main

def bench(args, tmp, failures):
    """Set up, check every variant against the original graph, time the training updates, then the evaluation
    batches, and print the tables."""
    t_start, phases, variants = time.perf_counter(), Phases(), variants_of(args)
    rss = {} if args.no_rss else bench_rss.measure([ORIGINAL] + [v.name for v in variants], os.path.abspath(__file__),
                                                    sys.argv[1:])
    s, model = setup(args, tmp, phases)
    print_setup(s, args)
    checks = agreement_checks(s, variants, failures, t_start)
    gc.collect()
    phases.mark('dropout-off checks')
    timings, mm_rate, mm_rows, profiles, original = training_rounds(s, model, variants, failures, args, tmp, t_start)
    gc.collect()
    phases.mark(f'training (original graph, {len(variants)} models + {len(variants)} Adams)')
    results = evaluation_rounds(s, model, original, failures, args, t_start)
    if original is not None:
        original.close()
    phases.mark('evaluation')
    names = [ORIGINAL] + [v.name for v in variants]
    training_table(s, args, names, timings, mm_rate, mm_rows)
    if profiles:
        profile_section(profiles)
    agreement_table(names, checks)
    evaluation_table(s, args, [ORIGINAL] + [v.name for v in EVAL_VARIANTS], results)
    if rss:
        bench_rss.rss_table(rss, N_WARMUP + 1)
    targets_table(timings, results, mm_rate, rss, ORIGINAL, DEFAULT_ROW, EVAL_VARIANTS[2].name, VARIANTS[1].name,
                  s.packs)
    memory_table(s, phases, t_start)


def rss_child(args, tmp):
    """--rss_of: the setup, then the first N_WARMUP + 1 updates of that variant alone (the original graph's or a
    path's), then its peak RSS printed for the parent (bench_rss)."""
    names = {v.name: v for v in VARIANTS + ABLATION_VARIANTS + MIXED_VARIANTS}
    if args.rss_of != ORIGINAL and args.rss_of not in names:
        raise InputError(f"--rss_of {args.rss_of!r} is no row of the training table: choose one of "
                         f"{', '.join([ORIGINAL, *names])}")
    s, model = setup(args, tmp, Phases())
    after_setup = bench_harness.peak_rss_gb()
    if args.rss_of == ORIGINAL:
        graph = OriginalGraph(**s.hp())
        job = original_job(graph, s)
    else:
        v = names[args.rss_of]
        job = train_job(v, model if v.precision == 'fp32' else s.new_model(precision=v.precision), s)
    for i in range(N_WARMUP + 1):
        job['call'](i)
    bench_rss.report(after_setup)


def main(args):
    failures = Failures()
    tmp = tempfile.mkdtemp(prefix='bench-')
    try:
        if args.rss_of:
            return rss_child(args, tmp)
        bench(args, tmp, failures)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failures.report()


if __name__ == '__main__':
    exit_on_input_error(main, ARGS)
