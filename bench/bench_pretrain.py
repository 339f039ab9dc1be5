"""Speed of pre-training (pretrain.py) on this machine, in one invocation:
    python bench/bench_pretrain.py                # full size: one update of n_ctx 512 windows, a 50 MB corpus encoded
    python bench/bench_pretrain.py --quick        # a small model and a 5 MB corpus (a minute)
    python bench/bench_pretrain.py --only update  # or: --only encoding
    python bench/bench_pretrain.py --only update --breakdown   # and what lies outside the matmuls
    python bench/bench_pretrain.py --write_corpus books --corpus_mb 20   # only write the generated corpus: an example

The update: the full-size model (random weights, the vocabulary's 40,478 token rows) makes pre-training's update
(opt.make_update of model.pretrain_objective, dropout on, Adam) on --n_batch random windows of --n_ctx
tokens; in the same rounds, alternating with it, the same matmuls alone (every weight matmul of the update forward
and both gradients, the attention's, the LM head's): the update's FLOP rate against theirs says how much of the
update is matmul work done at the matmuls' own speed (issue 34's target: 90%). --breakdown adds to the same rounds
the update with dropout off and the update's gradient alone (no clipping, no Adam), and one update's op profile by
op type: what dropout's random numbers and Adam cost, by difference, and what else runs outside the matmuls.
The encoding: a generated corpus of --corpus_mb MB of English (books of a small grammar's sentences, with a long tail
of rarer words from the BPE vocabulary, in paragraphs) encoded by pretraining/corpus.py's prepare with
--procs worker processes (ftfy, spaCy and BPE, as pretrain.py does), then read back and checked as a run's start
does: tokens per second per process, the workers' CPU time, peak memory.
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

# The project's modules live in the repository root, one folder up from this program's bench/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import HelpFormatter, tensorflow_start_up_hidden  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--quick', action='store_true', help='a small model (2 layers of 128, n_ctx 128) and 5 MB')
    parser.add_argument('--only', choices=['update', 'encoding'], help='one of the two measurements')
    parser.add_argument('--n_batch', type=int, default=2, help='windows per update')
    parser.add_argument('--n_ctx', type=int, default=512, help='tokens per window')
    parser.add_argument('--n_embd', type=int, default=768)
    parser.add_argument('--n_head', type=int, default=12)
    parser.add_argument('--n_layer', type=int, default=12)
    parser.add_argument('--rounds', type=int, default=3, help='timed rounds (after one of warm-up)')
    parser.add_argument('--breakdown', action='store_true',
                        help='also the update with dropout off and its gradient alone, and the op profile of one '
                             'update')
    parser.add_argument('--corpus_mb', type=float, default=50, help='size of the generated corpus')
    parser.add_argument('--procs', type=int, default=len(os.sched_getaffinity(0)), help='encoding processes')
    parser.add_argument('--model_dir', type=str, default=None,
                        help='the BPE files (default: model/, then ../shared/model)')
    parser.add_argument('--write_corpus', type=str, metavar='DIR',
                        help='only write the generated corpus (of --corpus_mb MB) in DIR, a new folder: an example')
    args = parser.parse_args(argv)
    if args.quick:
        args.n_ctx, args.n_embd, args.n_head, args.n_layer = 128, 128, 4, 2
        args.corpus_mb = min(args.corpus_mb, 5)
    return args


def progress(msg):
    print('# ' + msg, flush=True)


def peak_rss_mb(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def bpe_files(model_dir):
    """The real BPE files (--model_dir, else where the tests find them: $GPT1_MODEL_DIR, model/, ../shared/model):
    the encoding measures the real vocabulary."""
    from formats.sample_files import real_folders
    folders = [model_dir] if model_dir else real_folders('model')
    for folder in folders:
        paths = [os.path.join(folder, name) for name in ('encoder_bpe_40000.json', 'vocab_40000.bpe')]
        if all(os.path.isfile(p) for p in paths):
            return paths
    sys.exit(f"error: the BPE files are not in {model_dir or ', '.join(folders)}: run "
             "`python download.py --only bpe` (or pass --model_dir)")


# ------------------------------------------------------------------------------------------------ the update

def update_matmuls(B, T, C, H, V):
    """The (batch, m, k, n) of the matmuls of one update, forward and both gradients: those of one block (its
    weights: x W, dy W^T, x^T dy over B T rows; its attention per head: q k^T and w v forward, four products
    backward), and those of the LM head over the B (T - 1) predicted positions."""
    rows, block, D = B * T, [], C // H
    for nx, nf in [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)]:
        block += [(1, rows, nx, nf), (1, rows, nf, nx), (1, nx, rows, nf)]
    block += [(B * H, T, D, T), (B * H, T, T, D)] * 2 + [(B * H, T, T, D)] * 2
    lm = B * (T - 1)
    return block, [(1, lm, C, V), (1, lm, V, C), (1, C, lm, V)]


def matmul_job(tf, shapes):
    """A tf.function multiplying float32 matrices of `shapes`, one after the other as the update does; its FLOPs.
    Each product has its own variables (Grappler merges products of the same inputs) and is read at two corners (a
    sum or a single element of a product lets Grappler compute less)."""
    pairs = [(tf.Variable(tf.random.normal([b, m, k])), tf.Variable(tf.random.normal([b, k, n])))
             for b, m, k, n in shapes]

    @tf.function
    def step():
        out = []
        for a, c in pairs:
            with tf.control_dependencies(out[-1:]):
                product = tf.matmul(a, c)
                out.append(product[0, 0, 0] + product[-1, -1, -1])
        return tf.add_n(out)

    return step, sum(2. * b * m * k * n for b, m, k, n in shapes)


def update_matmul_job(tf, B, T, C, H, L, V):
    """The matmuls of one update, alone: a block's L times (a call each), then the LM head's; their FLOPs, the
    update's counted FLOPs (3 x the forward's: 24 L C^2 + 4 L T C per token, 2 C V per predicted token)."""
    block, head = update_matmuls(B, T, C, H, V)
    (block_step, block_flops), (head_step, head_flops) = matmul_job(tf, block), matmul_job(tf, head)

    def call():
        return [float(block_step()) for _ in range(L)] + [float(head_step())]

    return call, L * block_flops + head_flops


def bench_update(args, n_vocab):
    with tensorflow_start_up_hidden():
        import numpy as np
        import tensorflow as tf

        from engine import loop
        from engine.kernels import DEFAULT
        from model import Config, Model, pretrain_objective
        from opt import Adam, make_update, warmup_cosine
        from pretraining.windows import weighted
    B, T, C, L, V = args.n_batch, args.n_ctx, args.n_embd, args.n_layer, n_vocab
    progress(f'the update: {L} layers of {C}, {args.n_head} heads, {B} windows of {T} tokens, {V} token rows')
    tf.random.set_seed(0)
    strategy = tf.distribute.get_strategy()

    def pretraining(pdrop):
        """Pre-training's model (dropout `pdrop` everywhere), Adam and update, as pretrain.py makes them."""
        model = Model(Config(V, T, n_special=0, n_embd=C, n_head=args.n_head, n_layer=L, head=None,
                             embd_pdrop=pdrop, attn_pdrop=pdrop, resid_pdrop=pdrop))
        opt = Adam(model.params, lr=2.5e-4, schedule=lambda x: warmup_cosine(x, 0.5), t_total=10 * args.rounds,
                   l2=0.01, max_grad_norm=1, fused=DEFAULT.fused)
        objective = pretrain_objective(model, V, DEFAULT)
        return model, objective, make_update(objective, model.params, opt, strategy, seed=0)

    model, objective, step = pretraining(0.1)
    rng = np.random.RandomState(0)
    X = np.stack([rng.randint(V, size=(B, T)), np.broadcast_to(V + np.arange(T), (B, T))], -1).astype(np.int32)
    M = np.ones((B, T), np.float32)
    M[:, 0] = 0
    batch = loop.distribute(strategy, (X, weighted(M)))
    mm_call, mm_flops = update_matmul_job(tf, B, T, C, args.n_head, L, V)
    flops = mm_flops  # the update's counted FLOPs are those of its matmuls
    jobs = {'update': lambda: float(step(*batch)[0]), 'matmuls': mm_call}
    if args.breakdown:
        no_dropout_step = pretraining(0.)[2]

        @tf.function
        def gradient(*part):  # the update's gradient alone: no clipping, no Adam
            with tf.GradientTape() as tape:
                loss = objective(part, tf.constant([0, 0], tf.int32))[0]
            return tf.linalg.global_norm(tape.gradient(loss, model.params))

        jobs.update({'update, dropout off': lambda: float(no_dropout_step(*batch)[0]),
                     'gradient alone': lambda: float(gradient(*batch))})
    times = {name: [] for name in jobs}
    start = time.perf_counter()
    for r in range(1 + args.rounds):
        for name in (list(jobs) if r % 2 else list(jobs)[::-1]):  # alternated: outside load falls on all alike
            t0 = time.perf_counter()
            jobs[name]()
            if r:
                times[name].append(time.perf_counter() - t0)
        progress(f'round {r + 1}/{1 + args.rounds} ({"warm-up, tracing" if r == 0 else "timed"}; '
                 f'{time.perf_counter() - start:.0f} s elapsed, load average {os.getloadavg()[0]:.1f})')
    t = {name: float(np.median(v)) for name, v in times.items()}
    t_update, t_mm = t['update'], t['matmuls']
    rate, mm_rate = flops / t_update / 1e9, mm_flops / t_mm / 1e9
    print(f'\none update of {B} x {T} tokens: {t_update:.2f} s (median of {args.rounds}; '
          f'{", ".join(f"{x:.2f}" for x in times["update"])}): {B * T / t_update:,.0f} tokens/s')
    print(f'  counted work: {flops / 1e9:,.1f} GFLOP ({flops / (B * T) / 1e9:.3f} GFLOP per token: 3 x the forward '
          f'matmuls, 24 L C^2 + 4 L T C per token + 2 C V per predicted token)')
    print(f'  executed: {rate:.1f} GFLOP/s; the same matmuls alone, same rounds: {t_mm:.2f} s, {mm_rate:.1f} '
          f'GFLOP/s: the update runs at {100 * rate / mm_rate:.0f}% of the matmul rate (target >= 90%)')
    print(f'  at --n_batch 64 (the paper\'s 64 x 512 tokens): about {64 / B * t_update:.0f} s an update on this '
          f'machine; peak RSS {peak_rss_mb():,.0f} MB')
    if args.breakdown:
        print_breakdown(t, times, args.rounds)
        from bench_harness import op_profile, profile_table
        progress('the op profile of one more update')
        profile_table({'update': op_profile(jobs['update'], tempfile.mkdtemp(prefix='bench-pretrain-profile-'))})
    return dict(t_update=t_update, tokens_per_s=B * T / t_update, rate=rate, mm_rate=mm_rate)


def print_breakdown(t, times, rounds):
    """What lies outside the matmuls, by difference of the medians of the same rounds (t: job -> seconds)."""
    print(f'  in the same rounds (median of {rounds}): ' + '; '.join(
        f'{name} {t[name]:.2f} s ({", ".join(f"{x:.2f}" for x in times[name])})' for name in t if name != 'update'))
    dropout, adam = t['update'] - t['update, dropout off'], t['update'] - t['gradient alone']
    print(f'  dropout (its random numbers, masks and products, forward and backward): {dropout:.2f} s, '
          f'{100 * dropout / t["update"]:.0f}% of the update; clipping and Adam: {adam:.2f} s, '
          f'{100 * adam / t["update"]:.0f}%; everything else outside the matmuls (softmaxes, LayerNorm, GELU, the '
          f'embedding\'s gradient): {t["update"] - dropout - adam - t["matmuls"]:.2f} s')
    print(f'  the update without dropout runs at {100 * t["matmuls"] / t["update, dropout off"]:.0f}% of the matmul '
          f'rate; its gradient alone (dropout on) at {100 * t["matmuls"] / t["gradient alone"]:.0f}%')


# ---------------------------------------------------------------------------------------------- the encoding

LEXICON = dict(
    name='anna ben carla david emma frank grace henry iris jack kate leo mia nora oscar paul rose sam tom vera'.split(),
    det='the the the a a his her their this that one every'.split(),
    adj=('old young small big quiet dark bright cold warm red green tired happy strange empty long short heavy '
         'gentle sudden').split(),
    noun=('man woman boy girl dog cat house door window road river boat tree garden city village letter book '
          'table chair room fire storm morning night friend mother father teacher doctor horse bird hill field '
          'song story box key ship train car').split(),
    verb=('saw found took opened closed followed watched left carried pushed pulled painted heard remembered '
          'wanted loved'
          ).split(),
    walk='walked ran looked waited sat stood slept smiled laughed stopped'.split(),
    prep='to from near behind under over across into through beside'.split(),
    say='said asked whispered shouted replied'.split(),
)


def sentence(rng, rare):
    """One sentence of a small English grammar: a subject, a verb with its object or a place, maybe a second
    clause; a noun or adjective is now and then a `rare` word (the long tail real text has)."""
    def pick(kind):
        if kind in ('noun', 'adj') and rng.rand() < 0.15:
            return rare[rng.randint(len(rare))]
        return LEXICON[kind][rng.randint(len(LEXICON[kind]))]

    def noun_phrase():
        if rng.rand() < 0.25:
            return pick('name').capitalize()
        return ' '.join([pick('det')] + ([pick('adj')] if rng.rand() < 0.5 else []) + [pick('noun')])

    def clause():
        if rng.rand() < 0.5:
            return f'{noun_phrase()} {pick("verb")} {noun_phrase()}'
        return f'{noun_phrase()} {pick("walk")} {pick("prep")} {noun_phrase()}'

    text = clause() + (f', and {clause()}' if rng.rand() < 0.3 else '')
    text = text[0].upper() + text[1:]
    if rng.rand() < 0.15:
        return f'"{text}," {pick("name").capitalize()} {pick("say")}.'
    return text + ('.' if rng.rand() < 0.9 else '!')


def generate_corpus(folder, encoder_path, n_bytes, seed=0):
    """Books of generated English, about n_bytes in all, in `folder`: sentences of a small grammar (`sentence`),
    3-12 to a paragraph, paragraphs separated by blank lines, ~150 KB a book; the rare words are the BPE
    vocabulary's whole words of 5 letters or more. Returns (bytes, books)."""
    import json

    import numpy as np
    with open(encoder_path, encoding='utf-8') as f:
        rare = [w[:-4] for w in json.load(f) if w.endswith('</w>') and len(w) > 8 and w[:-4].isascii()
                and w[:-4].isalpha()]
    rng = np.random.RandomState(seed)
    os.makedirs(folder)
    written, book = 0, 0
    while written < n_bytes:
        paragraphs = [' '.join(sentence(rng, rare) for _ in range(rng.randint(3, 13))) for _ in range(400)]
        text = '\n\n'.join(paragraphs) + '\n'
        with open(os.path.join(folder, f'book{book:05d}.txt'), 'w', encoding='utf-8') as f:
            f.write(text)
        written, book = written + len(text.encode()), book + 1
    return written, book


def bench_encoding(args, encoder_path, bpe_path, tmp):
    from pretraining import corpus
    folder = os.path.join(tmp, 'books')
    progress(f'generating a corpus of {args.corpus_mb:.0f} MB in {folder}')
    n_bytes, n_books = generate_corpus(folder, encoder_path, int(args.corpus_mb * 2 ** 20))
    sources = corpus.find_sources([folder])
    progress(f'encoding {n_books} books ({n_bytes / 2 ** 20:.1f} MB) with {args.procs} processes')
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    encoded = corpus.prepare(sources, encoder_path, bpe_path, os.path.join(tmp, 'cache'), 42, 0.001, args.procs)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    t0 = time.perf_counter()
    corpus.open_corpus(encoded.folder, encoded.index['n_vocab'])
    reread = time.perf_counter() - t0
    n_tokens = len(encoded.train) + len(encoded.valid)
    procs = max(args.procs, 1)
    print(f'\nencoding {n_bytes / 2 ** 20:.1f} MB ({n_books} books): {n_tokens:,} tokens in {wall:.1f} s with '
          f'{args.procs} processes: {n_tokens / wall:,.0f} tokens/s, {n_tokens / wall / procs:,.0f} tokens/s per '
          f'process ({n_bytes / wall / procs / 2 ** 20:.2f} MB/s per process)')
    if args.procs:
        print(f'  the workers\' CPU time: {worker_cpu:.1f} s, {n_tokens / worker_cpu:,.0f} tokens per CPU second '
              f'(a busy machine slows the wall clock, not this)')
    print(f'  {n_tokens / n_bytes:.3f} tokens per byte; shards {n_tokens * 2 / 2 ** 20:.1f} MB; read back and '
          f'checked (hashes) in {reread:.2f} s')
    print(f'  peak RSS: this process {peak_rss_mb():,.0f} MB, the largest worker '
          f'{peak_rss_mb(resource.RUSAGE_CHILDREN):,.0f} MB')
    per_s = n_tokens / worker_cpu if args.procs else n_tokens / wall
    print(f'  at this rate per CPU second: BooksCorpus (~1.14e9 tokens) {1.14e9 / per_s / 3600:.2f} CPU hours '
          f'({1.14e9 / per_s / 60 / 16:.0f} min on 16 processes); 1e10 tokens {1e10 / per_s / 3600:.1f} CPU hours')
    return dict(tokens_per_s=n_tokens / wall, per_process=n_tokens / wall / procs, worker_cpu=worker_cpu)


def main(argv=None):
    args = parse_args(argv)
    encoder_path, bpe_path = bpe_files(args.model_dir)
    if args.write_corpus:
        if os.path.exists(args.write_corpus):
            sys.exit(f'error: {args.write_corpus!r} exists: give a new folder to --write_corpus')
        n_bytes, n_books = generate_corpus(args.write_corpus, encoder_path, int(args.corpus_mb * 2 ** 20))
        print(f'{n_books} books, {n_bytes / 2 ** 20:.1f} MB, in {args.write_corpus}')
        return
    with open(encoder_path, encoding='utf-8') as f:
        n_vocab = len(__import__('json').load(f))
    tmp = tempfile.mkdtemp(prefix='bench-pretrain-')
    try:
        if args.only in (None, 'encoding'):
            bench_encoding(args, encoder_path, bpe_path, tmp)
        if args.only in (None, 'update'):
            bench_update(args, n_vocab)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
