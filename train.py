"""Fine-tune the pretrained GPT-1 on a task of the paper (finetuning/tasks.py: Story Cloze, SST-2, CoLA, MNLI,
QNLI, RTE, SNLI, SciTail, MRPC, QQP, STS-B, RACE) with the paper's recipe, as the original train.py fine-tunes it
on the Story Cloze Test:
    python train.py --dataset rocstories --desc rocstories --submit --analysis
    python train.py --dataset mnli --submit --analysis

What the run computes, and where it deliberately differs from the original, is in SPEC.md; README.md has its
cost, its outputs and the table of the paper's tasks, docs/running.md the flags that matter. This file is what
fine-tuning is: the task's data, the model with its head, the update (opt.make_update) in its loop of epochs and
batches, the evaluations, the best parameters and the predictions. The machinery (devices, towers, resume,
signals, progress, TensorBoard, checkpoints) is engine/loop.py's, behind a few calls.

Flags the original did not have: --model_dir, --padded, --xla, --precision, --deterministic, --accum_steps,
--save_every, --resume, --overwrite, --restore, --cache_dir, --eval_only, --dry_run, --device_memory.
"""
import os
import random
import shlex
import sys
from typing import NamedTuple

from engine.flags import check_args, device_memory_bytes, format_flags, parse_args
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
    from finetuning import tasks
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

    import text_utils
    from engine import devices, loop, memory
    from engine.kernels import path_of, without_xla
    from engine.run_state import check_outputs, check_resume, command_path, guard_says, run_with_control
    from finetuning import inputs, tasks
    from finetuning.tasks import TASKS
    from formats.weights import (load_openai_params, load_params, safetensors_path, save_best_params,
                                 special_embeddings, transfer)
    from model import Config, Head, Model, finetune_objective
    import opt
    from opt import LossScale, schedules
    from paper import runs
    from text_utils import N_SPECIAL, TextEncoder
    from utils import InputError, atomic_write, batches_of

EVAL_UPDATES = (1000, 2000, 4000, 8000, 16000, 32000)  # evaluations inside the first epoch, as the original


def train(args, control):
    """The run: seed, encode the data, build the model, fine-tune it (logging evaluations), then predict the test
    set (--submit, --eval_only)."""
    task = TASKS[args.dataset]
    log_path = os.path.join(args.log_dir, f'{args.desc}.jsonl')
    params_path = os.path.join(args.save_dir, args.desc, 'best_params.jl')
    if args.resume:
        check_resume(vars(args), log_path)
    replaced = check_outputs(vars(args), log_path, save=args.submit or not args.eval_only,  # best_params.jl
                             elsewhere=[('--submission_dir', path) for path in submission_files(args, task)])
    print(format_flags(args))
    strategy, path = start_devices(args)
    n_batch_train = args.n_batch * args.n_gpu  # the original's n_gpu towers of n_batch, whatever the devices

    # the data: the task's files read, encoded and made the model's input sequences
    data = prepare_data(args, task, TextEncoder(args.encoder_path, args.bpe_path), n_batch_train, path)
    train_split = data.splits[task.train]
    n_train, n_batches = len(train_split.Y), len(train_split.Y) // n_batch_train
    print(run_plan(args, n_batches, n_batch_train, [len(s.Y) for s in data.evaluated.values()],
                   sum(len(data.splits[name].Y) for name in task.tests)))

    # the model, Adam and the update
    model, adam, loss_scale = build_model(args, task, strategy, path, data.n_vocab, data.n_ctx,
                                          n_batches * args.n_iter)
    packing, path = (None, path) if args.eval_only else training_packing(args, task, data, n_batch_train, path)
    update = opt.make_update(finetune_objective(model, args.lm_coef, path), model.params, adam, strategy, args.seed,
                             path.jit_compile, args.accum_steps, loss_scale, n_towers=args.n_gpu)
    eval_step = loop.make_eval_step(model, 1 + task.n_seq if data.packed else 1, path.fused, path.jit_compile,
                                    rows=path.fixed_eval)
    run = loop.start_run(args.desc, args.log_dir, args.save_dir, args.resume, vars(args), control,
                         dict(model=model, opt=adam, **({} if loss_scale is None else {'loss_scale': loss_scale})),
                         model.params, adam, n_batches * args.n_iter, before_writing=data.write_cache,
                         replace=replaced)

    def evaluate():  # the original's log(): an evaluation logged, printed, sent to TensorBoard; the best kept
        record = evaluation(task, eval_step, data, path, n_batch_train)
        run.logger.log(n_epochs=run.state.n_epochs, n_updates=run.state.n_updates, **record)
        run.state.n_logged += 1
        tqdm.write(('%d %d %.3f %.3f' + ' %.2f' * (len(record) - 2)) % (run.state.n_epochs, run.state.n_updates,
                                                                          *record.values()))
        with run.summaries.as_default(step=run.state.n_updates):
            for name, value in record.items():
                tf.summary.scalar('eval/' + name, value)
        score = record['va_' + task.metrics[0].name]
        if args.submit and score > run.state.best_score:  # the first evaluation always: best_params.jl written then
            run.state.best_score = score
            save_best_params(model.params, params_path)

    print(f"evaluations (classifier loss, then {', '.join(m.name for m in task.metrics)} in % on the first "
          f"{len(data.evaluated['tr'].Y)} train and the {len(data.evaluated['va'].Y)} {task.valid} examples):")
    print(' '.join(['n_epochs', 'n_updates', 'tr_cost', 'va_cost'] +
                   [f'{prefix}_{m.name}' for m in task.metrics for prefix in data.evaluated]))
    if args.eval_only:
        evaluate()
    else:
        with run:  # the progress bar; from here a first Ctrl-C stops the loop at the next boundary, saving
            for epoch in range(run.state.n_epochs, args.n_iter):
                run.epoch(epoch, args.n_iter)
                np.random.set_state(run.state.epoch_rng)  # each epoch the generator's next draw, as the original
                order = shuffle(np.arange(n_train), random_state=np.random.mtrand._rand)
                done = run.state.n_updates - epoch * n_batches  # the updates a resumed run made in this epoch
                for rows in batches_of(order[done * n_batch_train:], n_batch_train, full_only=True):
                    batch = inputs.train_batch(task, train_split, rows, data.n_vocab, data.n_ctx, path,
                                               args.n_gpu * args.accum_steps, packing)
                    cost, lrt, grad_norm = update(*loop.distribute(strategy, batch))
                    run.updated(cost, lrt, grad_norm, check=loss_scale is None)
                    if run.state.n_updates in EVAL_UPDATES and epoch == 0:
                        evaluate()
                    run.boundary(save=args.save_every and run.state.n_updates % args.save_every == 0)
                run.state.epoch_rng = np.random.get_state()  # where the next epoch's draw starts
                run.state.n_epochs += 1
                evaluate()
                run.boundary(save=args.save_every)
    run.summaries.close()

    outputs = []
    if args.submit or args.eval_only:
        outputs = predict(args, task, model, eval_step, data, path, n_batch_train, params_path, run.logger.records)
    print('\n'.join(written_files(args, log_path, params_path, outputs)))


def start_devices(args):
    """Seed Python, NumPy and TensorFlow with --seed (and op determinism with --deterministic), set TF32 for
    --precision, report the GPUs and probe XLA on them (engine.devices.start_report: before TensorFlow initialises
    the GPUs, since the probe's child needs them; nothing is said on a machine without an NVIDIA driver), start the
    devices and say which; returns the tf.distribute strategy and the computation's Path (--padded, --xla; without
    any XLA kernel where XLA cannot compile: the same numbers). InputError: --xla where XLA cannot compile."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    tf.random.set_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    with tensorflow_start_up_hidden(device_init=True):
        report, plan = devices.start_report(args.precision, args.xla)
        for line in report:  # with the fallback's one line when XLA cannot compile
            print(line)
        strategy = loop.make_strategy(args.n_gpu)
    print(loop.describe_devices(strategy, args.precision))
    loop.check_replicas(args.n_batch, args.n_gpu, strategy.num_replicas_in_sync, args.accum_steps)
    path = path_of(args.padded, args.xla)
    return strategy, path if plan.xla else without_xla(path)


def dry_run(args):
    """--dry_run: the inputs checked as the run checks them (the flags and files before this, then the data read
    and encoded, or read from the cache, the weights and --restore loaded into the model), then the plan, the
    devices, the estimated peak memory of a device and the time of an update (dry_run_lines), and what the rerun
    guard would say; nothing is trained or written (no log, save folder, cache, lock or checkpoint). A previous
    run's outputs are not refused: the line says what the run would do with them."""
    task = TASKS[args.dataset]
    log_path = os.path.join(args.log_dir, f'{args.desc}.jsonl')
    print(format_flags(args))
    strategy, path = start_devices(args)
    n_batch_train = args.n_batch * args.n_gpu
    data = prepare_data(args, task, TextEncoder(args.encoder_path, args.bpe_path), n_batch_train, path)
    n_batches = len(data.splits[task.train].Y) // n_batch_train
    print(run_plan(args, n_batches, n_batch_train, [len(s.Y) for s in data.evaluated.values()],
                   sum(len(data.splits[name].Y) for name in task.tests)))
    build_model(args, task, strategy, path, data.n_vocab, data.n_ctx, max(1, n_batches * args.n_iter))
    state = np.random.get_state()  # where training_packing draws the epochs' orders, as in the run
    packing, path = (None, path) if args.eval_only else training_packing(args, task, data, n_batch_train, path)
    print('dry run: ' + guard_says(vars(args), log_path, save=args.submit or not args.eval_only,
                                   elsewhere=[('--submission_dir', p) for p in submission_files(args, task)]))
    facts = devices.collect_facts()
    for line in dry_run_figures(args, task, data, path, packing, state, strategy.num_replicas_in_sync, facts):
        print(line)


def dry_run_figures(args, task, data, path, packing, state, n_devices, facts):
    """--dry_run's lines of memory and time: one device's estimated peak at the run's shapes (engine.memory: its
    largest packed rows, or every part padded to n_ctx: the largest a trimmed batch can be), the FLOPs and time of an
    update (a GPU's spec peak, or this CPU's matmul rate measured now), and the smallest --accum_steps whose
    estimate fits the device's memory (--device_memory, else the smallest visible GPU's)."""
    gpus = facts.gpus[:n_devices]
    split = data.splits[task.train]

    def figures_at(accum_steps):
        n_part = args.n_batch // accum_steps
        shape = None
        if packing is not None and accum_steps == args.accum_steps:
            shape = packing.rows, packing.length, packing.real
        elif packing is not None:  # the packing the run would choose at that --accum_steps
            orders = inputs.epoch_orders(len(split.Y), args.n_iter, state)
            other, cheaper = inputs.packing_plan(split.seqs, orders, task.n_seq, n_part, args.n_gpu * accum_steps,
                                                 args.n_embd, path.pad_to(data.n_ctx), data.n_ctx)
            shape = (other.rows, other.length, other.real) if cheaper else None
        rows, length, real = shape or (n_part * task.n_seq, data.n_ctx, 1.0)
        return memory.finetune_figures(data.n_vocab, N_SPECIAL, data.n_ctx, args.n_embd, args.n_head, args.n_layer,
                                       rows, length, args.n_gpu, n_devices, accum_steps, n_out=task.n_out,
                                       clip=args.max_grad_norm > 0, real=real,
                                       baseline=0 if gpus else memory.CPU_PROCESS_BYTES)

    return memory.dry_run_report(figures_at, args.accum_steps, args.n_batch, args.precision, gpus,
                                 device_memory_bytes(args), None if gpus else memory.measure_cpu_rate())


def training_packing(args, task, data, n_batch_train, path):
    """The shapes of the run's packed training parts (inputs.packing_plan) for its epochs' orders, drawn ahead
    on a copy of numpy's generator as it stands before the run (where RunState takes it, on a resumed run too),
    and the run's Path: `path`, or, when packing would compute more than cutting each batch to its longest
    (lengths far apart), `path` without packing. Says which in one line."""
    if not path.packed_train:
        return None, path
    split = data.splits[task.train]
    orders = inputs.epoch_orders(len(split.Y), args.n_iter, np.random.get_state())
    n_part = args.n_batch // args.accum_steps
    packing, cheaper = inputs.packing_plan(split.seqs, orders, task.n_seq, n_part, args.n_gpu * args.accum_steps,
                                           args.n_embd, path.pad_to(data.n_ctx), data.n_ctx)
    trimmed = f'cut to each batch\'s longest sequence: {100 * packing.trimmed:.0f}% real tokens'
    if not cheaper:
        print(f'training batches: {trimmed} (packed into {packing.in_words()} per tower, '
              f'{100 * packing.real:.0f}%, they would compute more)')
        return None, path._replace(packed_train=False)
    print(f'training batches: the {n_part * task.n_seq} sequences of each tower{" part" * (args.accum_steps > 1)} '
          f'packed into {packing.in_words()} (each batch the cheapest that holds it), {100 * packing.real:.0f}% '
          f'real tokens ({trimmed})')
    return packing, path


def scored(task, eval_step, data, split, path, n_batch, desc):
    """The logits and mean classifier loss of a split of `data`, in batches of n_batch examples
    (inputs.eval_batches: with path.fixed_eval in rows of the split's one shape, data.eval_packings')."""
    batches = inputs.eval_batches(task, split, data.n_vocab, data.n_ctx, path, n_batch,
                                  data.eval_packings.get(id(split)))
    return loop.iter_apply(eval_step, batches, len(split.Y), desc)


def evaluation(task, eval_step, data, path, n_batch):
    """One evaluation, as the original's log(): {tr_cost, va_cost, then tr_<metric>, va_<metric> for each of the
    task's metrics} on data.evaluated ({'tr': the first training examples, 'va': the valid split})."""
    costs, scores = {}, {}
    for prefix, split in data.evaluated.items():
        logits, costs[prefix] = scored(task, eval_step, data, split, path, n_batch,
                                       f"evaluating {'train' if prefix == 'tr' else 'valid'}")
        scores[prefix] = tasks.score(task, tasks.predictions(task, logits), split.examples)
    record = {f'{prefix}_cost': cost for prefix, cost in costs.items()}
    record.update({f'{prefix}_{m.name}': scores[prefix][m.name] for m in task.metrics for prefix in data.evaluated})
    return record


class Data(NamedTuple):
    """A task's data ready for the model: the vocabulary's size n_vocab (its special tokens follow), the context
    length n_ctx (the longest input sequence of any split, at most --n_ctx), the splits ({name: inputs.Split}),
    the evaluated sets ({'tr': the first training examples, as many as the valid split has, in split order, as the
    original; 'va': the valid split}), whether the scored splits' multiple-choice examples are packed whole
    (packed), the one shape of each scored split's evaluation rows ({id(split): inputs.Packing}, with the Path's
    fixed_eval) and text_utils.encoded_dataset's cache writer."""
    n_vocab: int
    n_ctx: int
    splits: dict
    evaluated: dict
    packed: bool
    eval_packings: dict
    write_cache: object


def prepare_data(args, task, text_encoder, n_batch_train, path):
    """The task's Data: its files read, encoded (or read from the cache) and cut to --n_ctx; with path.fixed_eval
    the scored splits' rows of one shape, a multiple-choice example packed whole (its context once)."""
    n_vocab = len(text_encoder.encoder)
    packed = path.fixed_eval and task.shape == 'multiple_choice'
    encoded, write_cache = text_utils.encoded_dataset(task, args.data_dir, args.cache_dir, text_encoder)
    scored_splits = set(task.evals) | set(task.tests) | {task.valid}
    splits = {name: inputs.ready(task, ex, n_vocab, args.n_ctx, packed and name in scored_splits)
              for name, ex in encoded.items()}
    n_ctx = max(int(split.seqs.lengths.max(initial=0)) for split in splits.values())
    if n_ctx < args.n_ctx:
        print(f'n_ctx {n_ctx}: the longest input sequence of the data (--n_ctx {args.n_ctx} is a cap, as the original)')
    for name, ex in encoded.items():
        if ex.n_skipped:  # QQP's known broken rows, SNLI's pairs without a gold label
            print(f'{task.name} {name}: {ex.n_skipped} rows of the file left out (see docs/tasks.md), '
                  f'{len(ex.ids)} examples kept')
    n_train, n_valid = len(splits[task.train].Y), len(splits[task.valid].Y)
    if n_train < n_batch_train and not args.eval_only:
        raise InputError(f"the training split has {n_train} examples, fewer than one global batch (n_batch * n_gpu = "
                         f"{n_batch_train}): no update could be made; lower --n_batch or --n_gpu, or give more data")
    first = inputs.head_of(encoded[task.train], min(n_valid, n_train))
    evaluated = {'tr': inputs.ready(task, first, n_vocab, args.n_ctx, packed), 'va': splits[task.valid]}
    scored = list(evaluated.values()) + [splits[name] for name in task.evals + task.tests]
    eval_packings = {id(split): inputs.eval_packing(task, split, n_batch_train, args.n_embd)
                     for split in scored if path.fixed_eval}
    return Data(n_vocab, n_ctx, splits, evaluated, packed, eval_packings, write_cache)


def build_model(args, task, strategy, path, n_vocab, n_ctx, n_updates_total):
    """The model with the task's head, Adam (its update fused along `path`) and fp16's LossScale (else None), made
    under the strategy, then the pretrained weights (the special rows are drawn even when none are loaded) and
    --restore's parameters."""
    with strategy.scope():
        model = Model(Config(n_vocab, n_ctx, n_embd=args.n_embd, n_head=args.n_head, n_layer=args.n_layer,
                             embd_pdrop=args.embd_pdrop, attn_pdrop=args.attn_pdrop, resid_pdrop=args.resid_pdrop,
                             clf_pdrop=args.clf_pdrop, afn=args.afn, precision=args.precision, head=Head(**task.head)))
        adam = opt.optimizers[args.opt](model.params, lr=args.lr, t_total=n_updates_total, b1=args.b1, b2=args.b2,
                                        e=args.e, schedule=lambda x: schedules[args.lr_schedule](x, warmup=args.lr_warmup),
                                        l2=args.l2, vector_l2=args.vector_l2, max_grad_norm=args.max_grad_norm,
                                        fused=path.fused)
        loss_scale = LossScale() if args.precision == 'fp16' else None
    if args.n_transfer == -1:
        special_embeddings(N_SPECIAL, args.n_embd)
    else:
        model.assign(transfer(load_openai_params(args.model_dir, n_ctx, N_SPECIAL), args.n_transfer))
    if args.restore:
        model.assign(load_params(args.restore, [p.shape for p in model.params]))
    return model, adam, loss_scale


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
        files += [('best parameters', params_path), ('best parameters (safetensors)', safetensors_path(params_path))]
    if args.save_every:
        files.append(('checkpoints', os.path.join(args.save_dir, args.desc, 'checkpoints')))
    files += outputs
    width = max(len(what) for what, _ in files) + 1
    lines = ['written:'] + [f'  {what:<{width}} {path}' for what, path in files]
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


def predict(args, task, model, eval_step, data, path, n_batch, params_path, evaluations):
    """The test sets' predictions (and, for classes and choices, probabilities) written in --submission_dir, by the
    best parameters (--submit) or those of the run; with --analysis, the task's metrics printed (paper/runs.py's
    report) for the valid split (the best of the run's `evaluations`), the other dev sets and the test sets whose
    labels are public. Returns the (what, path) pairs it wrote."""
    if args.submit:
        model.assign(load_params(params_path, [p.shape for p in model.params]))
    outputs, scores = [], {}
    for name in task.tests:
        split = data.splits[name]
        logits, _ = scored(task, eval_step, data, split, path, n_batch, f'predicting {name}')
        predictions = tasks.predictions(task, logits)
        path_tsv, probs_path = submission_paths(args, task, name)
        write_submission(path_tsv, split.examples.ids, tasks.prediction_strings(task, predictions))
        outputs.append(('submission', path_tsv))
        if probs_path:
            outputs.append(('probabilities', probs_path))
            write_probabilities(probs_path, split.examples.ids, logits)
        if task.test_labels:
            scores[name] = tasks.score(task, predictions, split.examples)
    if args.analysis:
        for name in task.evals:  # the other dev sets (MNLI's mismatched one)
            logits, _ = scored(task, eval_step, data, data.splits[name], path, n_batch, f'evaluating {name}')
            scores[name] = tasks.score(task, tasks.predictions(task, logits), data.splits[name].examples)
        runs.report(task, evaluations, {name: scores[name] for name in task.evals + task.tests if name in scores})
    return outputs


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
        run_with_control(train, args, argv, 'train.py')


if __name__ == '__main__':
    run(ARGS, sys.argv[1:])
