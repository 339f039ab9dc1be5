"""Benchmark of the full-size GPT-1 fine-tuning step on ROCStories: the original's padded computation against the
faster paths that train.py offers (fused Adam, trimmed batches with the LM head on real tokens only, XLA), and the
padded against the packed evaluation.

    python bench.py [--n_batch 8] [--n_gpu 1] [--steps 5] [--model_dir DIR] [--data_dir DIR] [--quick] [--mixed]

Random weights in the original's layout (or --model_dir with the real ones), loaded as train.py loads them; real
ROCStories batches (../shared/data/rocstories, or --data_dir; generated text when neither exists). Tables go to
stdout, progress lines start with '#', bars and TensorFlow's messages go to stderr.
"""
import os

os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from itertools import islice  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import train  # noqa: E402
from datasets import context_length, pack_roc, rocstories, transform_roc  # noqa: E402
from model import LAYER_PARAMS, Model, load_openai_params, transfer  # noqa: E402
from opt import Adam, LossScale, warmup_linear  # noqa: E402
from tests.fixtures import openai_shapes, shared_path, write_random_weights, write_rocstories  # noqa: E402
from text_utils import TextEncoder  # noqa: E402
from utils import encode_dataset  # noqa: E402

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
    elif shared_path('data', 'rocstories'):
        data_dir, data_src = shared_path('data', 'rocstories'), '../shared/data/rocstories (real)'
    else:
        data_dir, data_src = os.path.join(tmp, 'data'), 'generated (tests/fixtures.write_rocstories, 1871 + 1871)'
        write_rocstories(data_dir, n_val=1871, n_test=1871)
    for folder, src in [(args.model_dir, args.model_dir), (shared_path('model'), '../shared/model')]:
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

VARIANTS = [  # name, trimmed, multiple, masked_lm, XLA kernels of gelu and LayerNorm, jit_compile, fused Adam, precision
    ('padded (original)', False, 1, False, False, False, False, 'fp32'),
    ('fused adam', False, 1, False, False, False, True, 'fp32'),
    ('+ trimmed, masked LM', True, 1, True, False, False, True, 'fp32'),
    ('default (train.py)', True, 1, True, True, False, True, 'fp32'),
    ('xla', True, 8, False, True, True, True, 'fp32'),
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


def check_variant(v, model0, init, strategy, data, nbt, t_total, ref):
    """With dropout off (model0, pdrop 0): the variant's forward losses on batch 0 at the initial weights, and
    its parameters after one update on batch 0. ref: the baseline's results (None for the baseline)."""
    name, trimmed, multiple, masked, kernels, jit, fused, precision = v
    model0.assign(init)
    (X, M, Y), = first_batches(strategy, *data, nbt, 1, trimmed, multiple)
    fwd = tf.function(lambda X, M, Y: model0(X, M, Y, train=False, masked_lm=masked, fused=kernels)[1:],
                      jit_compile=jit)
    clf, lm = (t.numpy() for t in fwd(X, M, Y))
    opt = new_adam(model0, fused, t_total)
    step = train.make_train_step(model0, opt, strategy, lm_coef=0.5, seed=42, masked_lm=masked, fused=kernels,
                                 jit_compile=jit, loss_scale=LossScale() if precision == 'fp16' else None)
    cost = float(step(X, M, Y)[0])
    params = [p.numpy() for p in model0.params]
    out = dict(clf=clf, lm=lm, cost=cost, params=params, T=int(X.shape[2]))
    if ref is not None:
        out['d_clf'] = float(np.max(np.abs(clf - ref['clf'])))
        out['d_lm'] = float(np.max(np.abs(lm - ref['lm'])))
        out['d_cost'] = abs(cost - ref['cost'])
        out['d_p'] = max(float(np.max(np.abs(a - b))) for a, b in zip(params, ref['params']))
        out['n_flip'] = int(sum(np.sum(np.abs(a - b) > 0.5 * ref['upd']) for a, b in zip(params, ref['params'])))
    else:
        out['upd'] = max(float(np.max(np.abs(a - b))) for a, b in zip(params, init))
    del step, opt, fwd
    return out


def train_job(v, model, init, strategy, data, nbt, n_batches, t_total, dims):
    """The variant's model (reset to init) with a fresh Adam and its train step, and the FLOPs of its batches."""
    name, trimmed, multiple, masked, kernels, jit, fused, precision = v
    n_layer, n_embd, n_lm = dims
    model.assign(init)
    opt = new_adam(model, fused, t_total)
    step = train.make_train_step(model, opt, strategy, lm_coef=0.5, seed=42, masked_lm=masked, fused=kernels,
                                 jit_compile=jit, loss_scale=LossScale() if precision == 'fp16' else None)
    batches = first_batches(strategy, *data, nbt, n_batches, trimmed, multiple)
    job = dict(call=lambda i: sync(step(*batches[i])), traces=step.experimental_get_tracing_count,
               always_again=jit or kernels,  # XLA compiles each new shape at run time: the tracing count misses it
               Ts=[], tok=[], useful=[], executed=[], opt=opt)
    for X, M, Y in batches:
        M = M.numpy().reshape(-1, M.shape[-1])
        T = M.shape[-1]
        lengths = M.sum(1)
        job['Ts'].append(T)
        job['tok'].append(float(M.sum()))
        job['useful'].append(3 * forward_flops(lengths, None, M[:, 1:].sum(), n_layer, n_embd, n_lm))
        lm_rows = M[:, 1:].sum() if masked else M.shape[0] * (T - 1)
        job['executed'].append(3 * forward_flops(lengths, T, lm_rows, n_layer, n_embd, n_lm))
    return job


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


# ---------------------------------------------------------------------------------------------------- evaluation

EVAL_VARIANTS = [  # name, packed, jit_compile, multiple
    ('padded (original)', False, False, 1),
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


# --------------------------------------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n_batch', type=int, default=8)
    p.add_argument('--n_gpu', type=int, default=1, help='towers: the global batch is n_batch * n_gpu')
    p.add_argument('--steps', type=int, default=5, help='timed updates (and evaluation batches) after 2 warm-up')
    p.add_argument('--model_dir', type=str, help='real weights (params_shapes.json, params_*.npy); default random')
    p.add_argument('--data_dir', type=str, help='the Story Cloze CSVs; default ../shared/data/rocstories')
    p.add_argument('--quick', action='store_true', help='n_embd 64, 2 layers, 1 step: an end-to-end check')
    p.add_argument('--mixed', action='store_true', help="also train.py's default path in bf16 and fp16")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = 1
    return args


def main(argv=None):
    args = parse_args(argv)
    tmp = tempfile.mkdtemp(prefix='bench-')
    try:
        bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(args, tmp):
    variants = VARIANTS + (MIXED_VARIANTS if args.mixed else [])
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
    train.encoded_dataset(cache_args, text_encoder)[1]()  # encodes and writes the cache
    t0 = time.perf_counter()
    train.encoded_dataset(cache_args, text_encoder)
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
        n_embd, n_layer, n_head = (64, 2, 4) if args.quick else (768, 12, 12)
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
    strategy = train.make_strategy()
    nbt = args.n_batch * args.n_gpu
    train.check_replicas(nbt, strategy.num_replicas_in_sync)
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
    checks = {}
    for v in variants:
        name = v[0]
        if v[7] != model0.precision:
            with strategy.scope():
                model0 = Model(n_vocab, N_SPECIAL, n_ctx, clf_token, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                               embd_pdrop=0., attn_pdrop=0., resid_pdrop=0., clf_pdrop=0., precision=v[7])
        progress(f'train variant {name}: dropout-off check ({time.perf_counter() - t_start:.0f} s elapsed, '
                 f'load average {os.getloadavg()[0]:.1f})')
        try:
            checks[name] = check_variant(v, model0, init, strategy, data, nbt, t_total,
                                         None if name == variants[0][0] else checks.get(variants[0][0]))
        except Exception as err:  # noqa: BLE001 (a failed variant is a result)
            checks[name] = fail(f'train {name} (check)', err)
        gc.collect()
    if isinstance(checks.get(variants[0][0]), dict):
        del checks[variants[0][0]]['params']
    del model0
    gc.collect()
    rss.append(('dropout-off checks', peak_rss_gb()))
    load.append(('dropout-off checks', os.getloadavg()))

    progress('building one model (dropout on) and a fresh Adam per variant')
    jobs, timings = {}, {}
    for i, v in enumerate(variants):
        try:
            if i:
                with strategy.scope():
                    models.append(Model(n_vocab, N_SPECIAL, n_ctx, clf_token, n_embd=n_embd, n_head=n_head,
                                        n_layer=n_layer, precision=v[7]))
            jobs[v[0]] = train_job(v, models[i], init, strategy, data, nbt, n_need, t_total, dims)
        except Exception as err:  # noqa: BLE001
            timings[v[0]] = fail(f'train {v[0]} (setup)', err)
    timings.update(interleaved(jobs, args.steps, 'train', t_start))
    for name, job in jobs.items():
        if isinstance(timings[name], dict):
            timings[name].update({k: job[k][N_WARMUP:] for k in ('Ts', 'tok', 'useful', 'executed')})
    del jobs
    gc.collect()
    rss.append((f'training ({len(variants)} models + {len(variants)} Adams)', peak_rss_gb()))
    load.append(('training', os.getloadavg()))

    # ---- 3. evaluation, in interleaved rounds
    model = models[0]
    del models[1:]
    gc.collect()
    model.assign(init)
    jobs, eval_results = {}, {}
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
    rss.append(('evaluation', peak_rss_gb()))
    load.append(('evaluation', os.getloadavg()))

    # ---- 4. matmul rate
    progress('fp32 matmul rate')
    a = tf.random.normal([2048, 2048])
    b = tf.random.normal([2048, 2048])
    mm = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    mm_times = []
    for i in range(9):
        t0 = time.perf_counter()
        mm(a, b).numpy()
        if i >= 2:
            mm_times.append(time.perf_counter() - t0)
    mm_gflops = 2 * 2048 ** 3 / statistics.median(mm_times) / 1e9

    # ---- tables
    med = statistics.median
    base = timings.get(variants[0][0])
    base_med = med(base['first']) if isinstance(base, dict) else None
    base_seen = med(base['seen']) if isinstance(base, dict) else None
    rows = []
    for v in variants:
        r = timings[v[0]]
        if isinstance(r, str):
            rows.append([v[0], r])
            continue
        first, seen = med(r['first']), med(r['seen'])
        rows.append([v[0], f'{first:.2f}', fmt(base_med and base_med / first, '.2f') + 'x',
                     f"{med(r['cpu_first']):.2f}", f"{med([t / s for t, s in zip(r['tok'], r['first'])]):.0f}",
                     f'{seen:.2f}', fmt(base_seen and base_seen / seen, '.2f') + 'x', f"{med(r['cpu_seen']):.2f}",
                     f"{r['warm'][0]:.1f}", str(r['traces']), ','.join(str(T) for T in r['Ts']),
                     f"{med([f / s for f, s in zip(r['useful'], r['seen'])]) / 1e9:.1f}",
                     f"{med([f / s for f, s in zip(r['executed'], r['seen'])]) / 1e9:.1f}"])
    print(f'TRAINING UPDATE (global batch {nbt}; dropout on; median over {args.steps} updates after {N_WARMUP} warm-up; '
          'the variants interleaved)')
    table(['variant', 's/update', 'speed-up', 'CPU s', 'real tok/s', 's/upd seen', 'speed-up', 'CPU s',
           '1st upd s', 'retraces', 'T per batch', 'useful GF/s', 'exec GF/s'], rows)
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
    print("  3x forward, forward = 24 L C^2 + 4 L T C per token + 2 C V per predicted token.")
    print(f'fp32 matmul 2048x2048 (tf.function, median of 7): {mm_gflops:.1f} GFLOP/s')
    print()

    rows = []
    ref = checks.get(variants[0][0])
    for v in variants:
        r = checks[v[0]]
        if isinstance(r, str):
            rows.append([v[0], r])
        elif v[0] == variants[0][0]:
            rows.append([v[0], str(r['T']), f"{r['cost']:.6f}", 'reference', '', '', '', ''])
        else:
            rows.append([v[0], str(r['T']), f"{r['cost']:.6f}", f"{r['d_clf']:.2e}", f"{r['d_lm']:.2e}",
                         f"{r['d_cost']:.2e}", f"{r['d_p']:.2e}", str(r['n_flip'])])
    print('AGREEMENT WITH THE BASELINE (batch 0, same weights, dropout off: a Model with every pdrop 0)')
    table(['variant', 'T', 'clf cost', 'max|dclf_loss|', 'max|dlm_loss|', '|dcost|', 'max|dp| 1 upd',
           '#p off>upd/2'], rows)
    print('dclf_loss, dlm_loss: the forward losses (train=False, the variant\'s masked_lm / XLA) at the loaded '
          'weights; dcost, dp: the')
    print('variant\'s train step from the same weights and a fresh Adam, one update.'
          + (f" One baseline update moves a parameter by up to {ref['upd']:.2e}" if isinstance(ref, dict) else '')
          + ';')
    print("Adam's first update is about lr * sign(g), so a gradient near 0 whose sign flips by rounding moves its "
          "parameter by up to")
    print("twice that: '#p off>upd/2' counts parameters that differ by more than half the largest update.")
    if isinstance(ref, dict):
        print(f"Scale: the baseline's clf_losses lie in [{ref['clf'].min():.6f}, {ref['clf'].max():.6f}], its lm_losses in "
              f"[{ref['lm'].min():.4f}, {ref['lm'].max():.4f}].")
    print()

    rows = []
    eref = eval_results.get(EVAL_VARIANTS[0][0])
    e_med = med(eref['first']) if isinstance(eref, dict) else None
    e_seen = med(eref['seen']) if isinstance(eref, dict) else None
    for v in EVAL_VARIANTS:
        r = eval_results[v[0]]
        if isinstance(r, str):
            rows.append([v[0], r])
            continue
        first, seen = med(r['first']), med(r['seen'])
        d = float(np.max(np.abs(r['logits'] - eref['logits']))) if isinstance(eref, dict) else None
        rows.append([v[0], f'{first:.3f}', fmt(e_med and e_med / first, '.2f') + 'x', f"{med(r['cpu_first']):.3f}",
                     f'{seen:.3f}', fmt(e_seen and e_seen / seen, '.2f') + 'x', f"{med(r['cpu_seen']):.3f}",
                     f"{r['warm'][0]:.1f}", 'reference' if v is EVAL_VARIANTS[0] else fmt(d, '.2e')])
    print(f'EVALUATION BATCH ({nbt} examples of the valid split, no dropout; median over {args.steps} batches after '
          f'{N_WARMUP} warm-up; interleaved)')
    table(['variant', 's/batch', 'speed-up', 'CPU s', 's/batch 2nd', 'speed-up', 'CPU s', '1st batch s',
           'max|dclf_logits|'], rows)
    print(f'padded: transform_roc arrays ({nbt} x 2 sequences of n_ctx {n_ctx}); packed: pack_roc arrays (one '
          f'sequence per example, cut to the batch\'s longest, to a multiple of 8 for xla).')
    print("max|dclf_logits| over all the batches scored, against the padded non-XLA evaluation. 's/batch 2nd': "
          "the same batches again.")
    if isinstance(eref, dict):
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
    print("the checks a dropout-off model and the baseline's parameters after one update. Load average: "
          f"os.getloadavg() on {os.cpu_count()} CPUs.")
    print()
    print(f'total time {time.perf_counter() - t_start:.0f} s')
    for what, tb in ERRORS:
        progress(f'error in {what}:')
        for line in tb.rstrip().splitlines():
            progress('  ' + line)


if __name__ == '__main__':
    main()
