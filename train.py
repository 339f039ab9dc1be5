"""Fine-tune the pretrained GPT-1 on a task of the paper (tasks.py: Story Cloze, SST-2, CoLA, MNLI, QNLI, RTE,
SNLI, SciTail, MRPC, QQP, STS-B, RACE) with the paper's recipe, as the original train.py fine-tunes it on the Story
Cloze Test:
    python train.py --dataset rocstories --desc rocstories --submit --analysis
    python train.py --dataset mnli --submit --analysis

What the run computes, and where it deliberately differs from the original, is in SPEC.md; README.md has its
cost, its outputs, the table of the paper's tasks and the flags that matter. The training machinery (devices,
towers, the update, the loop, checkpoints) is loop.py's; this file is what fine-tuning is: the task's data and
head, its evaluations, its best parameters and its predictions.

Flags the original did not have: --model_dir, --padded, --xla, --precision, --deterministic, --accum_steps,
--save_every, --resume, --overwrite, --restore, --cache_dir, --eval_only.
"""
import os
import random
import shlex
import sys
from typing import NamedTuple

from flags import check_args, format_flags, parse_args
from utils import check_weights_folder, exit_on_input_error, tensorflow_start_up_hidden


def checked_args(argv):
    """train.py's flags of the command line `argv`, parsed and checked, and its input files found (InputError when
    they cannot run)."""
    args = parse_args(argv, __doc__)
    check_args(args)
    check_inputs(args)
    return args


def check_inputs(args):
    """InputError when a file the run reads is missing: the task's files, and the pretrained weights unless
    --n_transfer -1. Before TensorFlow's seconds of start-up: it imports the readers (numpy, pandas) alone."""
    import datasets
    import tasks
    task = tasks.TASKS[args.dataset]
    for path in task.paths(args.data_dir):  # ROCStories' and RACE's paths say which are missing; the others here
        datasets.open_text(path, task.url).close()
    if args.n_transfer != -1:
        check_weights_folder(args.model_dir)


if __name__ == '__main__':  # --help, a bad flag and a missing file answer now, before the imports below
    ARGS = exit_on_input_error(checked_args, sys.argv[1:])

with tensorflow_start_up_hidden():
    import numpy as np
    import tensorflow as tf
    from sklearn.utils import shuffle
    from tqdm import tqdm

    import analysis
    import inputs
    import pack
    import loop
    import tasks
    from model import Head, Model, finetune_objective, make_eval_step, path_of
    from opt import Adam, LossScale, schedules
    from run_state import check_outputs, check_resume, command_path, run_with_control
    from tasks import TASKS
    from text_utils import TextEncoder
    from utils import InputError, atomic_write
    from vocab import N_SPECIAL, Vocab
    from weights import load_openai_params, load_params, save_best_params, special_embeddings, transfer

opts = {'adam': Adam}
EVAL_UPDATES = (1000, 2000, 4000, 8000, 16000, 32000)  # evaluations inside the first epoch, as the original


def train(args, control):
    """The run: seed, encode the data, build the model, fine-tune it (logging evaluations), then predict the test
    set (--submit, --eval_only)."""
    task = TASKS[args.dataset]
    log_path = os.path.join(args.log_dir, f'{args.desc}.jsonl')
    params_path = os.path.join(args.save_dir, args.desc, 'best_params.jl')
    if args.resume:
        check_resume(args, log_path)
    replaced = check_outputs(args, log_path, save=args.submit or not args.eval_only,  # checkpoints, best_params.jl
                             elsewhere=[('--submission_dir', path) for path in submission_files(args, task)])
    print(format_flags(args))
    strategy, n_batch_train, path = start_devices(args)
    text_encoder = TextEncoder(args.encoder_path, args.bpe_path)
    data = prepare_data(args, task, len(text_encoder.encoder), text_encoder, n_batch_train,
                        path.packed and task.shape == 'multiple_choice')  # evaluation shares each context exactly
    n_batches = len(data.splits[task.train].Y) // n_batch_train
    print(run_plan(args, n_batches, n_batch_train, [len(s.Y) for s in data.evaluated.values()],
                   sum(len(data.splits[name].Y) for name in task.tests)))
    model, opt, loss_scale = build_model(args, task, strategy, path, data.n_vocab, data.n_ctx, n_batches * args.n_iter)
    packing, path = (None, path) if args.eval_only else training_packing(args, task, data, n_batch_train, path)
    train_step = loop.make_train_step(finetune_objective(model, args.lm_coef, path), model.params, opt, strategy,
                                      args.seed, path.jit_compile, args.accum_steps, loss_scale, n_towers=args.n_gpu)
    eval_step = make_eval_step(model, packed=data.packed, jit_compile=path.jit_compile, rows=path.fixed_eval)
    eval_packings = {}  # id(split) -> its one shape

    def batch(split):  # packed in rows of one shape per split; with --padded padded to n_ctx, as the original
        if not path.fixed_eval:
            return lambda rows: inputs.batch_inputs(task, split, rows, data.n_vocab, data.n_ctx,
                                                    path.pad_to(data.n_ctx))
        if id(split) not in eval_packings:
            eval_packings[id(split)] = pack.eval_packing(task, split, n_batch_train, args.n_embd)
        packing = eval_packings[id(split)]
        return lambda rows: pack.eval_batch(task, split, rows, data.n_vocab, n_batch_train, packing)

    def train_batch(split):  # each part's sequences packed (one shape per run), else as batch(split)
        if path.packed_train:
            return lambda rows: pack.packed_train_batch(task, split, rows, data.n_vocab,
                                                          args.n_gpu * args.accum_steps, packing)
        return lambda rows: inputs.batch_inputs(task, split, rows, data.n_vocab, data.n_ctx, path.pad_to(data.n_ctx))

    saved = dict(model=model, opt=opt, **({} if loss_scale is None else {'loss_scale': loss_scale}))
    run = loop.start_run(args, control, saved, log_path, model.params, before_writing=data.write_cache,
                         n_updates=n_batches * args.n_iter, replace=replaced)
    log = evaluation_log(args, task, run, model, eval_step, batch, data.evaluated, n_batch_train, params_path)
    print(f"evaluations (classifier loss, then {', '.join(m.name for m in task.metrics)} in % on the first "
          f"{len(data.evaluated['tr'].Y)} train and the {len(data.evaluated['va'].Y)} {task.valid} examples):")
    print(' '.join(['n_epochs', 'n_updates', 'tr_cost', 'va_cost'] +
                   [f'{prefix}_{m.name}' for m in task.metrics for prefix in data.evaluated]))
    if args.eval_only:
        log()
    else:
        train_split = data.splits[task.train]
        loop.fit(run, train_step, epochs(run.state, strategy, train_batch(train_split), len(train_split.Y),
                                         n_batch_train),
                 loop.Schedule(args.n_iter, n_batches, save_every=args.save_every,
                               evaluate_after=lambda n_updates, n_epochs: n_updates in EVAL_UPDATES and n_epochs == 0),
                 log, check=loss_scale is None)
    run.summaries.close()

    outputs = []
    if args.submit or args.eval_only:
        outputs = predict(args, task, model, eval_step, batch, data.splits, n_batch_train, params_path,
                          run.logger.records)
    print('\n'.join(written_files(args, log_path, params_path, outputs)))


def start_devices(args):
    """Seed Python, NumPy and TensorFlow with --seed (and op determinism with --deterministic), start the devices
    and say which; returns the tf.distribute strategy, the global batch (n_batch * n_gpu, the original's towers
    whatever the devices) and the computation's Path (--padded, --xla)."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    tf.random.set_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    with tensorflow_start_up_hidden(device_init=True):
        strategy = loop.make_strategy(args.n_gpu)
    print(loop.describe_devices(strategy))
    loop.check_replicas(args.n_batch, args.n_gpu, strategy.num_replicas_in_sync, args.accum_steps)
    return strategy, args.n_batch * args.n_gpu, path_of(args.padded, args.xla)


def epochs(state, strategy, batch, n_train, n_batch_train):
    """loop.fit's epoch_batches: epoch k's order shuffles the split order with numpy's global generator, as the
    original's sklearn.utils.shuffle with the module, from the generator's state at the epoch's start (kept in the
    run's state, so that a resumed run draws the same order); its full batches after the first `done`, split over
    the replicas."""
    def epoch_batches(k, done):
        np.random.set_state(state.epoch_rng)
        order = shuffle(np.arange(n_train), random_state=np.random.mtrand._rand)
        yield from loop.distribute(strategy, inputs.epoch_batches(batch, order[done * n_batch_train:], n_batch_train))
        state.epoch_rng = np.random.get_state()
    return epoch_batches


def training_packing(args, task, data, n_batch_train, path):
    """The one shape of the run's packed training parts (pack.packing_plan) for its epochs' orders, drawn ahead
    on a copy of numpy's generator as it stands before the run (where RunState takes it, on a resumed run too),
    and the run's Path: `path`, or, when packing would compute more than cutting each batch to its longest
    (lengths far apart), `path` without packing. Says which in one line."""
    if not path.packed_train:
        return None, path
    split = data.splits[task.train]
    orders = inputs.epoch_orders(len(split.Y), args.n_iter, np.random.get_state())
    n_part = args.n_batch // args.accum_steps
    packing, cheaper = pack.packing_plan(split.seqs, orders, task.n_seq, n_part, args.n_gpu * args.accum_steps,
                                           args.n_embd, path.pad_to(data.n_ctx), data.n_ctx)
    trimmed = f'cut to each batch\'s longest sequence: {100 * packing.trimmed:.0f}% real tokens'
    if not cheaper:
        print(f'training batches: {trimmed} (packed into {packing.rows} rows of {packing.length} per tower, '
              f'{100 * packing.real:.0f}%, they would compute more)')
        return None, path._replace(packed_train=False)
    print(f'training batches: the {n_part * task.n_seq} sequences of each tower{" part" * (args.accum_steps > 1)} '
          f'packed into {packing.rows} rows of {packing.length} tokens, {100 * packing.real:.0f}% real tokens '
          f'({trimmed})')
    return packing, path


def evaluation_log(args, task, run, model, eval_step, batch, evaluated, n_batch, params_path):
    """loop.fit's log(): one evaluation (evaluate) logged, printed as the original's line and sent to TensorBoard;
    with --submit, best_params.jl saved when the valid figure of the task's first metric beats the best so far
    (the first evaluation always does: the file is first written then, not at the start as the original)."""
    state = run.state

    def log():
        record = evaluate(task, eval_step, batch, evaluated, n_batch)
        run.logger.log(n_epochs=state.n_epochs, n_updates=state.n_updates, **record)
        state.n_logged += 1
        tqdm.write(('%d %d %.3f %.3f' + ' %.2f' * (len(record) - 2)) % (state.n_epochs, state.n_updates,
                                                                          *record.values()))
        with run.summaries.as_default(step=state.n_updates):
            for name, value in record.items():
                tf.summary.scalar('eval/' + name, value)
        if args.submit and record['va_' + task.metrics[0].name] > state.best_score:
            state.best_score = record['va_' + task.metrics[0].name]
            save_best_params(model.params, params_path)
    return log


def evaluate(task, eval_step, batch, evaluated, n_batch):
    """One evaluation, as the original's log(): {tr_cost, va_cost, then tr_<metric>, va_<metric> for each of the
    task's metrics} on `evaluated` ({'tr': the first training examples, 'va': the valid split})."""
    costs, scores = {}, {}
    for prefix, split in evaluated.items():
        desc = f"evaluating {'train' if prefix == 'tr' else 'valid'}"
        logits, costs[prefix] = loop.iter_apply(eval_step, batch(split), len(split.Y), n_batch, desc)
        scores[prefix] = tasks.score(task, tasks.predictions(task, logits), split.examples)
    record = {f'{prefix}_cost': cost for prefix, cost in costs.items()}
    record.update({f'{prefix}_{m.name}': scores[prefix][m.name] for m in task.metrics for prefix in evaluated})
    return record


class Data(NamedTuple):
    """A task's data ready for the model: the vocabulary's size n_vocab (its special tokens follow), the context
    length n_ctx (the longest input sequence of any split, at most --n_ctx), the splits ({name: inputs.Split}),
    the evaluated sets ({'tr': the first training examples, as many as the valid split has, in split order, as the
    original; 'va': the valid split}), whether the scored splits are packed (multiple choice), and
    inputs.encoded_dataset's cache writer."""
    n_vocab: int
    n_ctx: int
    splits: dict
    evaluated: dict
    packed: bool
    write_cache: object


def prepare_data(args, task, n_vocab, text_encoder, n_batch_train, packed):
    """The task's Data: its files read, encoded (or read from the cache) and cut to --n_ctx; packed: the scored
    splits packed for evaluation."""
    encoded, write_cache = inputs.encoded_dataset(args, task, text_encoder)
    scored = set(task.evals) | set(task.tests) | {task.valid}
    splits = {name: inputs.ready(task, ex, n_vocab, args.n_ctx, packed and name in scored)
              for name, ex in encoded.items()}
    n_ctx = max(int(split.seqs.lengths.max(initial=0)) for split in splits.values())
    for name, ex in encoded.items():
        if ex.n_skipped:  # QQP's known broken rows, SNLI's pairs without a gold label
            print(f'{task.name} {name}: {ex.n_skipped} rows of the file left out (see README.md), '
                  f'{len(ex.ids)} examples kept')
    n_train, n_valid = len(splits[task.train].Y), len(splits[task.valid].Y)
    if n_train < n_batch_train and not args.eval_only:
        raise InputError(f"the training split has {n_train} examples, fewer than one global batch (n_batch * n_gpu = "
                         f"{n_batch_train}): no update could be made; lower --n_batch or --n_gpu, or give more data")
    first = inputs.head_of(encoded[task.train], min(n_valid, n_train))
    tr_eval = inputs.ready(task, first, n_vocab, args.n_ctx, packed)
    return Data(n_vocab, n_ctx, splits, {'tr': tr_eval, 'va': splits[task.valid]}, packed, write_cache)


def build_model(args, task, strategy, path, n_vocab, n_ctx, n_updates_total):
    """The model with the task's head, its optimiser (fused along `path`) and fp16's LossScale (else None), made
    under the strategy, then the pretrained weights (the special rows are drawn even when none are loaded) and
    --restore's parameters."""
    with strategy.scope():
        model = Model(n_vocab, N_SPECIAL, n_ctx, Vocab(n_vocab).classify, n_embd=args.n_embd, n_head=args.n_head,
                      n_layer=args.n_layer, embd_pdrop=args.embd_pdrop, attn_pdrop=args.attn_pdrop,
                      resid_pdrop=args.resid_pdrop, clf_pdrop=args.clf_pdrop, afn=args.afn, precision=args.precision,
                      head=Head(**task.head))
        opt = opts[args.opt](model.params, lr=args.lr, t_total=n_updates_total, b1=args.b1, b2=args.b2, e=args.e,
                             schedule=lambda x: schedules[args.lr_schedule](x, warmup=args.lr_warmup),
                             l2=args.l2, vector_l2=args.vector_l2, max_grad_norm=args.max_grad_norm,
                             fused=path.fused_adam)
        loss_scale = LossScale() if args.precision == 'fp16' else None
    if args.n_transfer == -1:
        special_embeddings(N_SPECIAL, args.n_embd)
    else:
        model.assign(transfer(load_openai_params(args.model_dir, n_ctx, N_SPECIAL), args.n_transfer))
    if args.restore:
        model.assign(load_params(args.restore, [p.shape for p in model.params]))
    return model, opt, loss_scale


def write_submission(path, ids, predictions):
    """`index<TAB>prediction` lines, as the original and GLUE's submissions: the publisher's example ids and the
    prediction strings (tasks.prediction_strings)."""
    with atomic_write(path) as f:
        f.write('index\tprediction\n')
        for i, prediction in zip(ids, predictions):
            f.write(f'{i}\t{prediction}\n')


def write_probabilities(path, ids, logits):
    """The softmax of each test example's logits (p0, p1, ...: one per class or choice), beside the submission."""
    probs = tf.nn.softmax(logits).numpy()
    with atomic_write(path) as f:
        f.write('\t'.join(['index'] + [f'p{k}' for k in range(probs.shape[1])]) + '\n')
        for i, p in zip(ids, probs):
            f.write('\t'.join([str(i)] + [f'{x:.6f}' for x in p]) + '\n')


def run_plan(args, n_batches, n_batch_train, n_evaluated, n_test):
    """One line: the work the run will do (what its time is made of); n_evaluated: (train, valid) examples scored
    by an evaluation."""
    evaluation = f'{n_evaluated[0]} train + {n_evaluated[1]} valid examples'
    if args.eval_only:
        return f'no training: 1 evaluation of {evaluation}, then {n_test} test examples'
    n_evals = args.n_iter + sum(u <= n_batches for u in EVAL_UPDATES)
    plan = (f'{args.n_iter} epochs x {n_batches} updates of {n_batch_train} examples = {args.n_iter * n_batches} '
            f'updates; {n_evals} evaluations of {evaluation}')
    return plan + (f'; then {n_test} test examples' if args.submit else '')


def written_files(args, log_path, params_path, outputs):
    """Lines listing what the run wrote (`outputs`: predict's (what, path) pairs), and the command that plots its
    learning curves."""
    files = [('log', log_path), ('TensorBoard', os.path.join(args.log_dir, args.desc))]
    if args.submit:
        files.append(('best parameters', params_path))
    if args.save_every:
        files.append(('checkpoints', os.path.join(args.save_dir, args.desc, 'checkpoints')))
    files += outputs
    lines = ['written:'] + [f'  {what:<16} {path}' for what, path in files]
    plot = shlex.join([command_path('analysis.py'), '--plot', f'{args.desc}.png', log_path])
    return lines + [f'plot the learning curves: python {plot}',
                    f'or watch them in TensorBoard: tensorboard --logdir {shlex.quote(args.log_dir)}']


def submission_paths(args, task, name):
    """The files of the test split `name`'s predictions: its submission (tasks.Task.submissions) in
    --submission_dir, and for classes and choices its probabilities beside it (else None)."""
    path = os.path.join(args.submission_dir, task.submissions[name])
    return path, os.path.splitext(path)[0] + '_probs.tsv' if task.labels else None


def submission_files(args, task):
    """Every file that the test sets' predictions go to (--submit, --eval_only), in the order they are written."""
    if not (args.submit or args.eval_only):
        return []
    return [path for name in task.tests for path in submission_paths(args, task, name) if path]


def predict(args, task, model, eval_step, batch, splits, n_batch, params_path, evaluations):
    """The test sets' predictions (and, for classes and choices, probabilities) written in --submission_dir, by the
    best parameters (--submit) or those of the run; with --analysis, the task's metrics printed (analysis.report)
    for the valid split (the best of the run's `evaluations`), the other dev sets and the test sets whose labels
    are public. Returns the (what, path)
    pairs it wrote."""
    if args.submit:
        model.assign(load_params(params_path, [p.shape for p in model.params]))
    outputs, scores = [], {}
    for name in task.tests:
        split = splits[name]
        logits, _ = loop.iter_apply(eval_step, batch(split), len(split.Y), n_batch, f'predicting {name}')
        predictions = tasks.predictions(task, logits)
        path, probs_path = submission_paths(args, task, name)
        write_submission(path, split.examples.ids, tasks.prediction_strings(task, predictions))
        outputs.append(('submission', path))
        if probs_path:
            outputs.append(('probabilities', probs_path))
            write_probabilities(probs_path, split.examples.ids, logits)
        if task.test_labels:
            scores[name] = tasks.score(task, predictions, split.examples)
    if args.analysis:
        for name in task.evals:  # the other dev sets (MNLI's mismatched one)
            logits, _ = loop.iter_apply(eval_step, batch(splits[name]), len(splits[name].Y), n_batch,
                                        f'evaluating {name}')
            scores[name] = tasks.score(task, tasks.predictions(task, logits), splits[name].examples)
        analysis.report(task, evaluations, {name: scores[name] for name in task.evals + task.tests if name in scores})
    return outputs


def main(argv=None):
    """The command line `argv` (default sys.argv[1:]) parsed, checked and run."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    run(exit_on_input_error(checked_args, argv), argv)


def run(args, argv):
    """The run of checked `args` (from `argv`), holding its locks and signals (run_state.run_with_control)."""
    run_with_control(train, args, argv, 'train.py')


if __name__ == '__main__':
    run(ARGS, sys.argv[1:])
