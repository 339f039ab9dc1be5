"""The MNLI input pipeline's cost, on a generated MNLI-sized folder (GLUE's five files at their real sizes): reading,
encoding, the input sequences, the encoded cache (text_utils.encoded_dataset's first and second start), one epoch
of padded batches; seconds, CPU seconds and peak RSS per step. Then updates per second of the full-size model (random
weights, the 3-class entailment head, train.py's default path, 4 towers of 8) on batches of that training set in a
shuffled order: --steps of them after 2 warm-up (--quick: a 2-layer n_embd 64 model). The BPE files of --model_dir,
else where the tests find the real ones ($GPT1_MODEL_DIR, model/, ../shared/model), else a character-level one.

    python bench/bench_pipeline.py [--model_dir DIR] [--steps 5] [--quick]
    (python bench/bench.py --mnli_pipeline ... hands over to this program)
"""
import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

# The project's modules live in the repository root, one folder up from this program's bench/ (bench_harness is
# found here, in the script's own folder).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.flags import add_flags  # noqa: E402
from utils import HelpFormatter, tensorflow_start_up_hidden  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_flags(p, ['model_dir'], model_dir=dict(default=None, help='the real BPE files (default: where the tests '
                                                                  'find them, else a character-level vocabulary)'))
    p.add_argument('--steps', type=int, default=5, help='timed updates after 2 warm-up')
    p.add_argument('--quick', action='store_true', help='updates of a 2-layer n_embd 64 model, 1 step')
    args = p.parse_args(argv)
    if args.quick:
        args.steps = 1
    return args


if __name__ == '__main__':  # --help and a bad flag answer before TensorFlow is imported
    ARGS = parse_args(sys.argv[1:])

with tensorflow_start_up_hidden():
    import numpy as np
    import tensorflow as tf

    import text_utils
    from bench_harness import N_WARMUP, default_adam, fmt, peak_rss_gb, progress, sync, table
    from engine import loop
    from engine.kernels import DEFAULT, TRIMMED
    from finetuning import inputs, tasks
    from formats.sample_files import bpe_files
    from model import Config, Head, Model, finetune_objective
    from opt import make_update
    from text_utils import TextEncoder

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


def cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Steps:
    """The pipeline's table: each step's wall seconds, CPU seconds (on a shared machine the wall clock includes
    waiting) and the peak RSS after it."""

    def __init__(self):
        self.rows = []

    def __call__(self, name, fn):
        """fn() timed as the step `name`; its result."""
        t0, c0 = time.perf_counter(), cpu_s()
        out = fn()
        self.rows.append([name, fmt(time.perf_counter() - t0, '.1f'), fmt(cpu_s() - c0, '.1f'),
                          fmt(peak_rss_gb(), '.2f')])
        progress(f'{name}: {self.rows[-1][1]} s ({self.rows[-1][2]} s CPU), peak RSS {self.rows[-1][3]} GB')
        return out


def pipeline(args, tmp):
    """Time and peak RSS of train.py's MNLI input pipeline on a generated MNLI-sized folder: read the five files,
    encode every text (text_utils.encode_splits), build the input sequences at n_ctx 512, save and reload the
    encoded cache, text_utils.encoded_dataset's first and second start; then one epoch's worth of padded batches of
    32."""
    encoder_path, bpe_path, enc_src = bpe_files(args.model_dir, tmp)
    folder = os.path.join(tmp, 'MNLI')
    progress(f'writing an MNLI-sized folder ({sum(MNLI_SIZES.values())} pairs) to {folder}')
    write_mnli_sized(folder, encoder_path)
    size_mb = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 1e6
    gc.collect()
    rss0, step = peak_rss_gb(), Steps()
    task = tasks.TASKS['mnli']
    encoder = step('TextEncoder init', lambda: TextEncoder(encoder_path, bpe_path))
    splits = step('read the 5 files', lambda: task.load(folder))
    n_texts = sum(len(f) for ex in splits.values() for f in ex.texts)
    n_unique = len({t for ex in splits.values() for f in ex.texts for t in f})
    encoded = step('encode (each distinct text once)', lambda: text_utils.encode_splits(encoder, splits, 'mnli'))
    splits = None  # the texts: the encoded splits hold what follows
    n_tokens = sum(len(f.ids) for ex in encoded.values() for f in ex.texts)
    seqs = step('input sequences, n_ctx 512', lambda: {s: inputs.sequences(task, ex.texts, len(encoder.encoder), 512)
                                                        for s, ex in encoded.items()})
    cache = os.path.join(tmp, 'mnli.npz')
    step('save the encoded cache (.npz)', lambda: text_utils.save_encoded(cache, encoded))
    step('load the encoded cache', lambda: text_utils.load_encoded(cache))
    cache_dir = os.path.join(tmp, 'cache')

    def first_start():  # text_utils.encoded_dataset as a run calls it: read, hash, encode, then write the cache
        _, write_cache = text_utils.encoded_dataset(task, folder, cache_dir, encoder)
        write_cache()

    step("train.py's first start: read, encode, cache", first_start)
    step("train.py's second start: read, check the cache",
         lambda: text_utils.encoded_dataset(task, folder, cache_dir, encoder))
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
    table(['step', 'seconds', 'CPU seconds', 'peak RSS (GB)'], step.rows)
    print(f'files {size_mb:.0f} MB, {n_texts} texts ({n_unique} distinct), {n_tokens} BPE tokens '
          f'({n_tokens / n_texts:.1f} per text); encoder {enc_src}; RSS before the pipeline {rss0:.2f} GB '
          f'(Python, TensorFlow and the other imports)')
    print(f'train sequences: {len(train_seqs.ids) * 4 / 1e6:.0f} MB of int32 ids; padded to its longest sequence '
          f'({int(train_seqs.lengths.max())}) the train set would be '
          f'{len(train_seqs) * int(train_seqs.lengths.max()) * 8 / 1e9:.2f}'
          f' GB of X (ids and positions); the longest batch is {longest}; cache {os.path.getsize(cache) / 1e6:.0f} MB')
    updates(args, task, train_seqs, order, len(encoder.encoder), n_ctx)


def updates(args, task, seqs, order, n_vocab, n_ctx):
    """Seconds per update of the full-size model with MNLI's head on MNLI-shaped batches (`seqs` the training
    sequences, `order` a shuffled order of the examples), as train.py runs them: the default path, 4 towers of 8,
    its batches packed where inputs.packing_plan says that computes less (for this order as one epoch), else cut to
    their longest (inputs.train_batch either way)."""
    n_embd, n_layer, n_head = (64, 2, 4) if args.quick else (768, 12, 12)
    n_batch, n_gpu = 8, 4
    progress(f'MNLI updates: model n_embd {n_embd}, {n_layer} layers, n_ctx {n_ctx}, {n_gpu} towers of {n_batch}')
    tf.random.set_seed(0)
    with tensorflow_start_up_hidden(device_init=True):
        strategy = loop.make_strategy(n_gpu)
    n_updates = len(order) // (n_batch * n_gpu)
    packing, packs = inputs.packing_plan(seqs, [order], task.n_seq, n_batch, n_gpu, n_embd, 1, n_ctx)
    path = DEFAULT if packs else TRIMMED
    with strategy.scope():
        model = Model(Config(n_vocab, n_ctx, n_embd=n_embd, n_head=n_head, n_layer=n_layer, head=Head(**task.head)))
        opt = default_adam(model.params, path.fused, 3 * n_updates)
    step = make_update(finetune_objective(model, 0.5, path), model.params, opt, strategy, 42, path.jit_compile,
                       n_towers=n_gpu)
    labels = np.arange(len(seqs) // task.n_seq, dtype=np.int32) % len(task.labels)
    split = inputs.Split(None, labels, seqs)
    n_batch_train = n_batch * n_gpu
    times, lengths = [], []
    for k in range(min(N_WARMUP + args.steps, n_updates)):  # the epoch's first full batches, in order
        rows = order[k * n_batch_train:(k + 1) * n_batch_train]
        batch = loop.distribute(strategy, inputs.train_batch(task, split, rows, n_vocab, n_ctx, path, n_gpu,
                                                             packing if packs else None))
        t0 = time.perf_counter()
        sync(step(*batch)[0])
        if k >= N_WARMUP:
            times.append(time.perf_counter() - t0)
            lengths.append(f'{batch[0].shape[0]}x{batch[0].shape[1]}' if packs else str(int(batch[0].shape[2])))
    s = statistics.median(times)
    table(['MNLI training update (batch 32)', 's/update (median)', 'updates/s',
           'T of the timed batches' + (' (rows x L)' if packs else ''), 'epoch of updates'],
          [[f"train.py default path ({'packed' if packs else 'cut to the longest'})", fmt(s, '.2f'), fmt(1 / s, '.3f'),
            ' '.join(lengths),
            f'{n_updates} x {s:.2f} s = {n_updates * s / 3600:.1f} h']])


def main(args):
    tmp = tempfile.mkdtemp(prefix='bench-')
    try:
        pipeline(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main(ARGS)
