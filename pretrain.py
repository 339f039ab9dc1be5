"""Pre-train GPT-1's language model on any corpus with the paper's recipe (section 4.1): the first of its two
stages, which the original code never shipped.
    python pretrain.py --corpus books/ --desc books            # the paper's recipe on a folder of .txt books
    python pretrain.py --corpus notes.jsonl --init_from model/ --desc domain --n_iter 3   # continue GPT-1
    python train.py --dataset rocstories --desc books-rocstories --model_dir save/books --submit  # then fine-tune
    python generate.py --model_dir save/books --prompt "..."

The corpus is encoded once (pretraining/corpus.py: the original's text pipeline, in worker processes, into uint16
shards in --cache_dir) and read in windows of n_ctx contiguous tokens (pretraining/windows.py). The model is
train.py's network without
its special tokens and classifier: `we` holds the token rows then the position rows, and the LM's softmax runs over
the token rows (the paper's eq. (2)). save/{desc}/ is a model folder in the original's layout, which train.py and
generate.py read with --model_dir. SPEC.md, "Pre-training", has the contract; README.md the costs and outputs.
"""
import argparse
import atexit
import json
import os
import random
import shutil
import sys
import tempfile

from engine.flags import (CHOICES, add_flags, bpe_paths, check_desc, check_device_memory, check_output_dir,
                          device_memory_bytes, format_flags)
from utils import HelpFormatter, InputError, download_command, exit_on_input_error, tensorflow_start_up_hidden

# train.py's flags that pre-training shares, with train.py's names and meanings (the defaults are the paper's).
SHARED = ['desc', 'seed', 'n_iter', 'n_batch', 'max_grad_norm', 'lr', 'n_ctx', 'n_embd', 'n_head', 'n_layer',
          'embd_pdrop', 'attn_pdrop', 'resid_pdrop', 'l2', 'vector_l2', 'opt', 'afn', 'lr_schedule', 'b1', 'b2', 'e',
          'model_dir', 'encoder_path', 'bpe_path', 'log_dir', 'save_dir', 'cache_dir', 'save_every', 'resume',
          'overwrite', 'deterministic', 'accum_steps', 'xla', 'precision', 'dry_run', 'device_memory']
CHANGES = {
    'desc': dict(help="name of the run's log and save folder (default: the first --corpus's name)"),
    'seed': dict(help='seeds the initial weights, the held-out documents, the windows of each epoch and the dropout '
                      'masks'),
    'n_iter': dict(default=100, help='epochs over the training stream'),
    'n_batch': dict(default=64, help='the global batch: windows of n_ctx tokens per update, whatever the devices'),
    'lr': dict(default=2.5e-4),
    'n_ctx': dict(help='tokens per window: the positions of the model'),
    'lr_schedule': dict(default='warmup_cosine', help=f"{', '.join(CHOICES['lr_schedule'])}: after "
                                                      "--warmup_updates, to 0 over the run"),
    'model_dir': dict(help='the BPE files, copied into the saved model folder'),
    'save_dir': dict(help='the model folder, its kept copies and the checkpoints go in SAVE_DIR/DESC'),
    'cache_dir': dict(help="the encoded corpus goes here, keyed by the corpus's content ('' for none)"),
    'save_every': dict(help='write the model folder and a checkpoint every N updates (0: the model folder at the '
                            'end only)'),
    'accum_steps': dict(help="split each replica's share of the global batch into this many parts, accumulating "
                             "their gradients (each part draws its own dropout masks)"),
}


def parse_args(argv=None):
    """pretrain.py's flags of the command line `argv`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--corpus', nargs='+', required=True, metavar='PATH',
                        help='files and folders: a .txt is one document, a .jsonl one per line in its "text", .gz of '
                             'either; a folder is every .txt and .jsonl under it, recursively, sorted')
    add_flags(parser, SHARED, **CHANGES)
    parser.add_argument('--init_from', type=str, help="start from this model folder's weights (the original's "
                                                      "layout, e.g. model/) instead of N(0, 0.02)")
    parser.add_argument('--max_updates', type=int, default=0,
                        help='stop after N updates; the schedule spans them (0: the n_iter epochs)')
    parser.add_argument('--warmup_updates', type=int, default=2000,
                        help='updates of linear warmup (1: the first update at the peak --lr)')
    parser.add_argument('--valid_fraction', type=float, default=0.001,
                        help='share of the documents held out (drawn from --seed and each text)')
    parser.add_argument('--eval_every', type=int, default=1000,
                        help='evaluate on the held-out documents every N updates (and after each epoch and at the '
                             'end; 0: only then)')
    parser.add_argument('--keep_every', type=int, default=0,
                        help='also keep a model folder every N updates in SAVE_DIR/DESC/updates/N_UPDATES/')
    parser.add_argument('--encode_procs', type=int, default=0,
                        help='processes encoding the corpus (0: every CPU, or this process for a few MB)')
    args = parser.parse_args(argv)
    if args.desc is None:
        args.desc = os.path.basename(os.path.normpath(args.corpus[0])).split('.')[0] or 'corpus'
    return bpe_paths(args)


def check_args(args):
    """Refuse impossible flags and missing inputs before any work (the standard library alone, and the corpus's
    reader for its files: before TensorFlow)."""
    probability = 'in [0, 1): a probability of dropping'
    for flag, ok, what in [
            ('n_iter', args.n_iter >= 1, 'at least 1'), ('n_batch', args.n_batch >= 1, 'at least 1'),
            ('n_ctx', args.n_ctx >= 2, 'at least 2: a window predicts its tokens from the ones before'),
            ('n_embd', args.n_embd >= 1, 'at least 1'), ('n_head', args.n_head >= 1, 'at least 1'),
            ('n_layer', args.n_layer >= 1, 'at least 1'), ('lr', 0 < args.lr < float('inf'), 'finite and above 0'),
            ('embd_pdrop', 0 <= args.embd_pdrop < 1, probability),
            ('attn_pdrop', 0 <= args.attn_pdrop < 1, probability),
            ('resid_pdrop', 0 <= args.resid_pdrop < 1, probability),
            ('l2', 0 <= args.l2 < float('inf'), 'finite and at least 0'),
            ('b1', 0 <= args.b1 < 1, 'in [0, 1)'), ('b2', 0 <= args.b2 < 1, 'in [0, 1)'),
            ('e', 0 < args.e < float('inf'), 'finite and above 0'), ('seed', 0 <= args.seed < 2 ** 31, 'in [0, 2**31)'),
            ('valid_fraction', 0 <= args.valid_fraction < 1, 'in [0, 1): the share of documents held out'),
            ('warmup_updates', args.warmup_updates >= 1, 'at least 1 (1: no warmup)'),
            ('accum_steps', args.accum_steps >= 1, 'at least 1')] + [
            (flag, getattr(args, flag) >= 0, 'at least 0') for flag in
            ('max_updates', 'eval_every', 'keep_every', 'save_every', 'encode_procs')]:
        if not ok:
            raise InputError(f"--{flag} {getattr(args, flag)} is out of range: it must be {what}")
    for flag in ('afn', 'lr_schedule', 'opt', 'precision'):
        if getattr(args, flag) not in CHOICES[flag]:
            raise InputError(f"unknown --{flag} {getattr(args, flag)!r}: choose one of {', '.join(CHOICES[flag])}")
    check_desc(args.desc)
    check_device_memory(args)
    for path in args.corpus:
        if not os.path.exists(path):
            raise InputError(f"--corpus {path!r} does not exist: give files (.txt, .jsonl, .gz of either) or folders "
                             "holding them")
    from pretraining.corpus import find_sources  # its files' kinds and contents, before TensorFlow's start-up
    find_sources(args.corpus)
    for flag, path in [('--encoder_path', args.encoder_path), ('--bpe_path', args.bpe_path)]:
        if not os.path.isfile(path):
            raise InputError(f"BPE file {path!r} not found: run `{download_command(os.path.dirname(path), 'bpe')}` "
                             f"or give the file with {flag}")
    if args.init_from:
        check_init_from(args)
    check_output_folders(args)


def check_init_from(args):
    """InputError unless --init_from is a model folder whose params_shapes.json fits the model of the flags (its
    weights are read, and checked again, later)."""
    path = os.path.join(args.init_from, 'params_shapes.json')
    if not os.path.isfile(path):
        raise InputError(f"--init_from {args.init_from!r} is not a model folder (no params_shapes.json): give a folder "
                         f"in the original's layout, e.g. one that `{download_command(args.init_from)}` fills, or a "
                         "pretrain.py save/DESC")
    try:
        with open(path, encoding='utf-8') as f:
            shapes = json.load(f)
        (n_positions, n_embd), (n_vocab, _) = shapes[0], shapes[1]
        n_layer = (len(shapes) - 2) // 12
    except (ValueError, TypeError, IndexError) as err:
        raise InputError(f"{path!r} is not the list of a model's array shapes ({err}): give a model folder in the "
                         "original's layout") from None
    try:
        with open(args.encoder_path, encoding='utf-8') as f:
            n_pieces = len(json.load(f))
    except ValueError:  # not JSON: TextEncoder says so
        n_pieces = n_vocab
    for what, theirs, ours, flag in [('layers', n_layer, args.n_layer, '--n_layer'),
                                     ('states', n_embd, args.n_embd, '--n_embd'),
                                     ('token rows', n_vocab, n_pieces, '--encoder_path (the vocabulary)')]:
        if theirs != ours:
            raise InputError(f"--init_from {args.init_from!r} has {theirs} {what}, the model {ours}: pass {flag} "
                             "to match the folder's model")
    if n_positions < args.n_ctx:
        raise InputError(f"--init_from {args.init_from!r} has {n_positions} positions, fewer than --n_ctx "
                         f"{args.n_ctx}: pass --n_ctx {n_positions} or less")


def check_output_folders(args):
    """InputError unless the run can write its outputs' folders: --log_dir (log/{desc}.jsonl and log/{desc}/, its
    TensorBoard) and save/{desc}/ (the model folder, updates/, checkpoints/). That a previous run's outputs are
    there is run_state.check_outputs's to say, once the worker's own --desc is known."""
    check_output_dir('--log_dir', args.log_dir)
    check_output_dir('--save_dir', os.path.join(args.save_dir, args.desc))


def checked_args(argv):
    args = parse_args(argv)
    check_args(args)
    return args


if __name__ == '__main__':  # --help and a bad flag answer now, before the imports below
    ARGS = exit_on_input_error(checked_args, sys.argv[1:])

if __name__ != '__mp_main__':  # a corpus-encoding worker process imports this file under that name: it needs none
    with tensorflow_start_up_hidden():
        import numpy as np
        import tensorflow as tf
        from tqdm import tqdm

        import text_utils
        from engine import devices, loop, memory
        from engine.kernels import path_of, without_xla
        from engine.run_state import check_outputs, check_resume, guard_says, run_with_control
        from formats import weights
        from model import Config, Model, pretrain_objective
        import opt
        from opt import LossScale, schedules
        from pretraining import corpus as corpora
        from pretraining.lm_log import Progress
        from pretraining.windows import EpochPlan, heldout_windows, lm_batch, weighted


def pretrain(args, control):
    """The run: the corpus encoded (or read from the cache), the model built (or --init_from), trained for the
    plan's updates with evaluations on the held-out documents, the model folder written."""
    print(format_flags(args))
    strategy, path = start_devices(args)
    chief, own = worker_args(args, strategy)
    own_log = os.path.join(own.log_dir, f'{own.desc}.jsonl')
    if args.resume:
        check_resume(vars(own), own_log)
    replaced = check_outputs(vars(own), own_log, save=True)  # a previous run's outputs: refused, or --overwrite
    corpus = read_corpus(args)
    n_vocab = corpus.index['n_vocab']
    plan = EpochPlan(len(corpus.train), args.n_ctx, args.n_batch, args.seed)
    per_epoch = [plan.n_updates(epoch) for epoch in range(args.n_iter)]
    n_updates = min(sum(per_epoch), args.max_updates) if args.max_updates else sum(per_epoch)
    print(run_plan(args, corpus, per_epoch, n_updates))

    model, adam, loss_scale = build_model(args, strategy, path, n_vocab, n_updates)
    update = opt.make_update(pretrain_objective(model, n_vocab, path), model.params, adam, strategy, args.seed,
                             path.jit_compile, args.accum_steps, loss_scale)
    eval_step = loop.make_lm_eval_step(model, strategy, n_vocab, path)
    progress = Progress()
    saved = dict(model=model, opt=adam, progress=progress, **({} if loss_scale is None else {'loss_scale': loss_scale}))
    run = loop.start_run(own.desc, own.log_dir, own.save_dir, own.resume, vars(own), control, saved, model.params,
                         adam, n_updates, cost_name='lm_cost', replace=replaced)
    folder = os.path.join(args.save_dir, args.desc)

    def save(where=folder):  # the model folder (the first worker's), once per update
        if chief and progress.saved.get(where) != run.state.n_updates:
            weights.save_model_folder(where, model.we.numpy(), [p.numpy() for p in model.params[1:]], n_vocab,
                                      args.encoder_path, args.bpe_path)
            progress.saved[where] = run.state.n_updates

    log = progress.logger(run, lambda: held_out_cost(eval_step, strategy, corpus.valid, args.n_batch, args.n_ctx,
                                                     n_vocab) if len(corpus.valid) > 1 else None)
    print('n_updates n_tokens tr_cost va_cost va_ppl')
    with run:  # the progress bar; from here a first Ctrl-C stops the loop at the next boundary, saving
        while run.state.n_epochs < args.n_iter and run.state.n_updates < n_updates:
            epoch = run.state.n_epochs
            run.epoch(epoch, args.n_iter)
            done = run.state.n_updates - sum(per_epoch[:epoch])  # the updates a resumed run made in this epoch
            for starts, lengths in plan.batches(epoch, done):
                X, M = lm_batch(corpus.train, starts, lengths, args.n_batch, args.n_ctx, n_vocab)
                cost, lrt, grad_norm = update(*loop.distribute(strategy, (X, weighted(M))))
                run.updated(cost, lrt, grad_norm, check=loss_scale is None, postfix=progress.postfix)
                progress.add(int(lengths.sum()), float(M.sum()), float(cost))  # tokens read, predicted
                n = run.state.n_updates
                if args.keep_every and n % args.keep_every == 0:
                    save(os.path.join(folder, 'updates', str(n)))
                if args.eval_every and n % args.eval_every == 0:
                    log()
                if n == args.max_updates:  # the run's last update: maybe in the middle of an epoch
                    break
                run.boundary(save=args.save_every and n % args.save_every == 0, on_save=save)
            if run.state.n_updates == sum(per_epoch[:epoch + 1]):
                run.state.n_epochs += 1
            log()
            run.boundary(save=args.save_every, on_save=save)
    save()
    run.summaries.close()
    if chief:
        print('\n'.join(written_files(args, folder)))


def start_devices(args):
    """Seed Python, NumPy and TensorFlow with --seed (and op determinism with --deterministic), set TF32 for
    --precision and report the GPUs and XLA on them (engine.devices.start_report, before TensorFlow initialises the
    GPUs; silent without an NVIDIA driver), start the devices and say which; the tf.distribute strategy, whose
    replicas share each global batch of --n_batch windows, and the Path (--xla; without any XLA kernel where XLA
    cannot compile: the same numbers). InputError: --xla where XLA cannot compile."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    tf.random.set_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    with tensorflow_start_up_hidden(device_init=True):
        report, plan = devices.start_report(args.precision, args.xla)
        for line in report:  # with the fallback's one line when XLA cannot compile
            print(line)
        strategy = loop.make_strategy(args.n_batch // args.accum_steps, towers='the --n_batch {n} windows')
    print(loop.describe_devices(strategy, args.precision))
    n = strategy.num_replicas_in_sync
    if args.n_batch % (n * args.accum_steps):
        raise InputError(f"--n_batch {args.n_batch} windows cannot be shared evenly by {n} replica{'s' * (n > 1)} of "
                         f"--accum_steps {args.accum_steps} parts: choose an --n_batch that is a multiple of "
                         f"{n * args.accum_steps}")
    path = path_of(False, args.xla)
    return strategy, path if plan.xla else without_xla(path)


def dry_run(args):
    """--dry_run: the inputs checked as the run checks them (the flags, corpus and BPE files and --init_from's
    shapes before this; then --init_from's weights loaded into the model, and the encoded corpus checked when
    --cache_dir holds it: a corpus not encoded yet is not encoded, which can take hours, so the plan then says
    so), the plan, the devices, one device's estimated peak memory (n_batch x n_ctx windows), the smallest
    --accum_steps that fits --device_memory, the time of an update, and what the rerun guard would say. Nothing
    is trained or written (no log, save folder, cache, lock or checkpoint)."""
    print(format_flags(args))
    strategy, path = start_devices(args)
    chief, own = worker_args(args, strategy)
    n_vocab = len(text_utils.read_encoder(args.encoder_path))
    sources, corpus = cached_corpus(args, n_vocab)
    if corpus is None:
        size = sum(os.path.getsize(s.path) for s in sources)
        print(f'plan: the corpus ({len(sources)} files, {size / 1e6:,.1f} MB) is not encoded in --cache_dir yet: the '
              f'run encodes it first, then plans its updates from its tokens')
        n_updates = args.max_updates or 1
    else:
        plan = EpochPlan(len(corpus.train), args.n_ctx, args.n_batch, args.seed)
        per_epoch = [plan.n_updates(epoch) for epoch in range(args.n_iter)]
        n_updates = min(sum(per_epoch), args.max_updates) if args.max_updates else sum(per_epoch)
        print(run_plan(args, corpus, per_epoch, n_updates))
    build_model(args, strategy, path, n_vocab, max(1, n_updates))
    print('dry run: ' + guard_says(vars(own), os.path.join(own.log_dir, f'{own.desc}.jsonl')))
    n_devices = strategy.num_replicas_in_sync
    gpus = devices.collect_facts().gpus[:n_devices]

    def figures_at(accum_steps):
        return memory.pretrain_figures(n_vocab, args.n_ctx, args.n_embd, args.n_head, args.n_layer, args.n_batch,
                                       n_devices, accum_steps, clip=args.max_grad_norm > 0,
                                       baseline=0 if gpus else memory.CPU_PROCESS_BYTES)

    for line in memory.dry_run_report(figures_at, args.accum_steps, args.n_batch // n_devices, args.precision, gpus,
                                      device_memory_bytes(args), None if gpus else memory.measure_cpu_rate()):
        print(line)


def cached_corpus(args, n_vocab):
    """(the corpus's sources, its encoded Corpus when --cache_dir holds it, else None), read only, checked as
    read_corpus checks it."""
    sources = corpora.find_sources(args.corpus)
    if not args.cache_dir:
        return sources, None
    key, _ = corpora.cache_key(sources, args.encoder_path, args.bpe_path, args.cache_dir, args.seed,
                               args.valid_fraction)
    folder = os.path.join(args.cache_dir, f'corpus-{key}')
    if not os.path.isdir(folder):
        return sources, None
    corpus = corpora.open_corpus(folder, n_vocab)
    check_corpus(args, sources, corpus)
    return sources, corpus


def check_corpus(args, sources, corpus):
    """InputError when the encoded corpus has no text, or no training window."""
    n_train, n_valid = len(corpus.train), len(corpus.valid)
    if corpus.index['splits']['train']['n_documents'] + corpus.index['splits']['valid']['n_documents'] == 0:
        raise InputError(f"--corpus {' '.join(args.corpus)}: its {len(sources)} files hold no text (every "
                         "document is empty): give documents with text")
    if n_train < args.n_ctx:
        raise InputError(f"the corpus's training documents hold {n_train} tokens (and {n_valid} held out by "
                         f"--valid_fraction {args.valid_fraction}), fewer than one window of --n_ctx "
                         f"{args.n_ctx}: give more text, or a smaller --n_ctx or --valid_fraction")


def worker_args(args, strategy):
    """(whether this process writes the outputs, the flags of what it writes itself): the first worker of a
    cluster (and a single process) writes the run's outputs; another worker only its checkpoints and log, which
    its --resume needs (every worker saves its checkpoints), under --desc DESC-worker<its index>."""
    if strategy.extended.should_checkpoint:
        return True, args
    return False, argparse.Namespace(**{**vars(args), 'desc': f'{args.desc}-worker{strategy.cluster_resolver.task_id}'})


def written_files(args, folder):
    """Lines listing what the run wrote."""
    files = [('log', os.path.join(args.log_dir, f'{args.desc}.jsonl')),
             ('TensorBoard', os.path.join(args.log_dir, args.desc)),
             ('the model folder (train.py and generate.py --model_dir)', folder)]
    if args.save_every:  # (a signal's checkpoint is named by the line that stopped the run)
        files.append(('checkpoints (--resume)', os.path.join(folder, 'checkpoints')))
    if args.keep_every:
        files.append((f'a model folder every {args.keep_every} updates', os.path.join(folder, 'updates', 'N_UPDATES')))
    return [f'{what}: {path}' for what, path in files]


def read_corpus(args):
    """The encoded corpus of --corpus (corpus.prepare): InputError when it has no training window."""
    sources = corpora.find_sources(args.corpus)

    def check(corpus):
        check_corpus(args, sources, corpus)

    scratch = None if args.cache_dir else tempfile_folder()
    corpus = corpora.prepare(sources, args.encoder_path, args.bpe_path, args.cache_dir, args.seed,
                             args.valid_fraction, args.encode_procs, check, scratch=scratch)
    index = corpus.index
    print(f"corpus: {len(sources)} files, {index['splits']['train']['n_documents']:,} training documents of "
          f"{len(corpus.train):,} tokens, {index['splits']['valid']['n_documents']:,} held out of {len(corpus.valid):,}"
          f" tokens ({index['n_empty']} empty documents left out), encoded in {corpus.folder}")
    if len(corpus.valid) <= 1:
        print(f"note: --valid_fraction {args.valid_fraction} held out no document: no held-out loss is measured "
              "(va_cost null)")
    return corpus


def tempfile_folder():
    """A temporary folder for a corpus encoded without --cache_dir, removed when the program exits."""
    folder = tempfile.mkdtemp(prefix='gpt1-corpus-')
    atexit.register(shutil.rmtree, folder, True)
    return folder


def run_plan(args, corpus, per_epoch, n_updates):
    """One line: the updates the run makes and what they read, and its evaluations."""
    n_tokens = len(corpus.train)
    counts = f'{min(per_epoch)}' + (f'-{max(per_epoch)}' if max(per_epoch) > min(per_epoch) else '')
    plan = (f'plan: {args.n_iter} epochs x {counts} updates of {args.n_batch} windows of {args.n_ctx} tokens (each '
            f'epoch every one of the {n_tokens:,} training tokens once) = {sum(per_epoch):,} updates')
    if n_updates < sum(per_epoch):
        plan += f', stopping after --max_updates {n_updates:,} ({n_updates / per_epoch[0]:.2f} epochs)'
    evals = f'every {args.eval_every} updates and ' if args.eval_every else ''
    return plan + (f'; an evaluation of the {len(corpus.valid):,} held-out tokens {evals}after each epoch'
                   if len(corpus.valid) > 1 else '')


def build_model(args, strategy, path, n_vocab, n_updates):
    """The model without special tokens (we: token rows, then n_ctx position rows), N(0, 0.02) or --init_from's
    weights, its optimiser over the LM's parameters (the schedule's warmup of --warmup_updates of the n_updates)
    and fp16's LossScale (else None), made under the strategy."""
    with strategy.scope():
        model = Model(Config(n_vocab, args.n_ctx, n_special=0, n_embd=args.n_embd, n_head=args.n_head,
                             n_layer=args.n_layer, embd_pdrop=args.embd_pdrop, attn_pdrop=args.attn_pdrop,
                             resid_pdrop=args.resid_pdrop, afn=args.afn, precision=args.precision, head=None))
        warmup = args.warmup_updates / n_updates
        adam = opt.optimizers[args.opt](model.params, lr=args.lr, t_total=n_updates, b1=args.b1, b2=args.b2,
                                        e=args.e, schedule=lambda x: schedules[args.lr_schedule](x, warmup=warmup),
                                        l2=args.l2, vector_l2=args.vector_l2, max_grad_norm=args.max_grad_norm,
                                        fused=path.fused)
        loss_scale = LossScale() if args.precision == 'fp16' else None
    if args.init_from and not args.resume:
        model.assign(weights.load_openai_params(args.init_from, args.n_ctx, 0))  # check_init_from: its layers
    return model, adam, loss_scale


def held_out_cost(eval_step, strategy, stream, n_batch, n_ctx, n_vocab):
    """The mean LM loss per token of the held-out stream, every token but its first predicted once
    (windows.heldout_windows), in batches of n_batch windows."""
    starts, lengths = heldout_windows(len(stream), n_ctx)
    total, count = 0., 0.
    for i in tqdm(range(0, len(starts), n_batch), desc='evaluating held-out', unit='batch', file=sys.stderr,
                  leave=False):
        X, M = lm_batch(stream, starts[i:i + n_batch], lengths[i:i + n_batch], n_batch, n_ctx, n_vocab)
        t, c = eval_step(*loop.distribute(strategy, (X, M)))
        total, count = total + float(t), count + float(c)
    return total / count


def main(argv=None):
    """The command line `argv` (default sys.argv[1:]) parsed, checked and run."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    run(exit_on_input_error(checked_args, argv), argv)


def run(args, argv):
    """The run of checked `args` (from `argv`), holding its locks and signals (run_state.run_with_control); with
    --dry_run, dry_run alone (no lock: it writes nothing)."""
    if args.dry_run:
        exit_on_input_error(dry_run, args)
    else:
        run_with_control(pretrain, args, argv, 'pretrain.py')


if __name__ == '__main__':
    run(ARGS, sys.argv[1:])
