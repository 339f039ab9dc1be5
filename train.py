"""Fine-tune the pretrained GPT-1 on the Story Cloze Test (ROCStories), as the original train.py:
    python train.py --dataset rocstories --desc rocstories --submit --analysis
or on any other task of the paper (tasks.py: GLUE, SNLI, SciTail, RACE) with the same recipe, e.g.
    python train.py --dataset mnli --submit --analysis

What the run computes, and where it deliberately differs from the original, is in SPEC.md; README.md has its
cost, its outputs, the table of the paper's tasks and the flags that matter.

Flags the original did not have: --model_dir, --padded, --xla, --precision, --deterministic, --accum_steps,
--save_every, --resume, --restore, --cache_dir, --eval_only.
"""
import hashlib
import os
import random
import sys

from flags import check_args, format_flags, parse_args
from utils import InputError, exit_on_input_error, tensorflow_start_up_hidden

if __name__ == '__main__':  # --help and a bad flag answer now, before the imports below
    exit_on_input_error(check_args, parse_args(description=__doc__))

with tensorflow_start_up_hidden():
    import ftfy
    import joblib
    import numpy as np
    import spacy
    import tensorflow as tf
    from sklearn.utils import shuffle
    from tqdm import tqdm

    import analysis
    import datasets
    import inputs
    import tasks
    import text_utils
    from model import Head, Model, load_openai_params, load_params, special_embeddings, transfer
    from opt import Adam, LossScale, schedules
    from tasks import TASKS
    from text_utils import TextEncoder
    from run_state import (Interrupted, RunControl, RunState, at_boundary, check_finite, check_resume, lock_run,
                           restore_checkpoint, resume_command)
    from utils import ResultLogger, atomic_write

opts = {'adam': Adam}
EVAL_UPDATES = (1000, 2000, 4000, 8000, 16000, 32000)  # evaluations inside the first epoch, as the original


def make_strategy(n_gpu=None):
    """MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster of workers; MirroredStrategy over the
    visible GPUs when there are several (with n_gpu, the largest number of them that divides n_gpu, so that each
    runs the same number of the original's towers: saying so when some are left idle); else the default strategy
    (one GPU, or the CPU), whose plain variables let the optimiser fuse its update."""
    if 'TF_CONFIG' in os.environ:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices('GPU')
    n = tower_devices(n_gpu, len(gpus)) if n_gpu else len(gpus)
    if n < len(gpus):
        print(f"using {n} of the {len(gpus)} GPUs: the largest count that divides the n_gpu {n_gpu} towers "
              f"({n_gpu // n} each)")
    if n > 1:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus[:n]])
    return tf.distribute.get_strategy()


def describe_devices(strategy):
    """One line: the devices the run computes on and the strategy that spreads the batch over them."""
    gpus = tf.config.list_logical_devices('GPU')
    devices = f"{len(gpus)} GPU{'s' * (len(gpus) > 1)} ({', '.join(d.name for d in gpus)})" if gpus else \
        'the CPU (no GPU visible)'
    return (f'devices: {devices}; strategy: {type(strategy).__name__.lstrip("_")} with '
            f'{strategy.num_replicas_in_sync} replica{"s" * (strategy.num_replicas_in_sync > 1)}')


def tower_devices(n_gpu, n_devices):
    """The largest number of devices, at most n_devices, that share n_gpu towers evenly."""
    return max(n for n in range(1, max(n_devices, 1) + 1) if n_gpu % n == 0)


def check_replicas(n_batch, n_gpu, n_replicas, accum_steps=1):
    """InputError unless the n_gpu towers of n_batch examples share evenly over n_replicas replicas and
    accum_steps splits a tower evenly (a single machine always picks a count of devices that divides n_gpu; a
    cluster of workers cannot)."""
    if n_gpu % n_replicas:
        raise InputError(f"the {n_replicas} replicas of the cluster cannot share the --n_gpu {n_gpu} towers evenly: "
                         f"choose an --n_gpu that is a multiple of {n_replicas}, or as many workers as divide {n_gpu}")
    if n_batch % accum_steps:
        raise InputError(f"--accum_steps {accum_steps} cannot split a tower of --n_batch {n_batch} examples evenly: "
                         f"choose a divisor of {n_batch}")


def tower_loss(clf_losses, lm_losses, lm_coef):
    """Training loss of one tower: mean classifier loss plus lm_coef times the mean LM loss."""
    if lm_coef > 0:
        return tf.reduce_mean(clf_losses) + lm_coef * tf.reduce_mean(lm_losses)
    return tf.reduce_mean(clf_losses)


def make_train_step(model, opt, strategy, lm_coef, seed, masked_lm=False, fused=False, jit_compile=False,
                    accum_steps=1, loss_scale=None, n_towers=None):
    """A tf.function doing one update from a global batch already split over the replicas, as the original's
    n_towers towers (its n_gpu; default one per replica): the global batch is n_towers equal towers in row order;
    each replica holds an equal run of them and computes them one after the other, each tower split further into
    accum_steps equal parts; the gradients of the parts' tower losses, averaged over every part of every tower
    (the gradient of the mean over the global batch), make one Adam update. Each part draws its own dropout masks
    (its own mask of `we` too), seeded by fold_in(fold_in((seed, updates done), global tower index), part): the
    same masks on any number of replicas; accum_steps > 1 draws more masks than the original's towers. With a
    LossScale, the loss is scaled before the gradient, and an update whose gradient is not finite is skipped.
    Returns the mean classifier loss, lrt and the gradient's global norm."""
    if n_towers and n_towers % strategy.num_replicas_in_sync:
        raise ValueError(f'{n_towers} towers cannot be shared evenly by {strategy.num_replicas_in_sync} replicas')

    def part_grads(X, M, Y, part_seed):
        with tf.GradientTape() as tape:
            _, clf_losses, lm_losses = model(X, M, Y, train=True, seed=part_seed, masked_lm=masked_lm, fused=fused)
            loss = tower_loss(clf_losses, lm_losses, lm_coef)
            if loss_scale is not None:
                loss = loss * loss_scale.scale
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.params)], tf.reduce_mean(clf_losses)

    part_grads = tf.function(part_grads, jit_compile=True) if jit_compile else part_grads

    def replica_step(X, M, Y):
        ctx = tf.distribute.get_replica_context()
        towers = (n_towers or ctx.num_replicas_in_sync) // ctx.num_replicas_in_sync  # this replica's towers
        first_tower = ctx.replica_id_in_sync_group * towers
        update_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(opt.t, tf.int32)])

        def part_seed(k):  # this replica's part k: part k % accum_steps of its tower k // accum_steps
            tower_seed = tf.random.experimental.stateless_fold_in(update_seed, first_tower + k // accum_steps)
            return tf.random.experimental.stateless_fold_in(tower_seed, k % accum_steps)

        n_parts = towers * accum_steps
        if n_parts == 1:
            return part_grads(X, M, Y, part_seed(0))
        n = tf.shape(X)[0] // n_parts
        grads, cost = [tf.zeros_like(p) for p in model.params], 0.
        for k in tf.range(n_parts):  # a loop in the graph: one part's activations alive at a time
            part = slice(k * n, (k + 1) * n)
            g, c = part_grads(X[part], M[part], Y[part], part_seed(k))
            grads, cost = [a + b / n_parts for a, b in zip(grads, g)], cost + c / n_parts
        return grads, cost

    @tf.function(reduce_retracing=True)  # trimmed batches vary in length: one trace for all of them
    def train_step(X, M, Y):
        grads, cost = strategy.run(replica_step, args=(X, M, Y))
        grads = [strategy.reduce(tf.distribute.ReduceOp.MEAN, g, axis=None) for g in grads]
        cost = strategy.reduce(tf.distribute.ReduceOp.MEAN, cost, axis=None)
        if loss_scale is None:
            norm = tf.linalg.global_norm(grads)  # once: logged, and the clipping's
            return cost, opt.apply(grads, norm), norm
        grads = [g / loss_scale.scale for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        norm = tf.linalg.global_norm(grads)
        lrt = tf.cond(finite, lambda: opt.apply(grads, norm), opt.skip)
        loss_scale.update(finite)
        return cost, lrt, norm

    return train_step


def make_eval_step(model, packed, jit_compile=False, multiple=1):
    """A function scoring a batch of any size without dropout -> (clf_logits, clf_losses). packed: the batch is
    inputs.packed_batch's (X, seg, clf_idx, Y) (multiple choice), cut to its longest example (rounded up to a
    multiple of `multiple`), else pad_batch's (X, M, Y) as the original."""
    head = model.head
    Y_spec = tf.TensorSpec([None], tf.float32 if head.loss == 'squared' else tf.int32)
    if not packed:
        return tf.function(lambda X, M, Y: model(X, M, Y, train=False)[:2], jit_compile=jit_compile,
                           input_signature=[tf.TensorSpec([None, head.n_seq, None, 2], tf.int32),
                                            tf.TensorSpec([None, head.n_seq, None], tf.float32), Y_spec])
    score = tf.function(model.score_packed, jit_compile=jit_compile,
                        input_signature=[tf.TensorSpec([None, None, 2], tf.int32), tf.TensorSpec([None, None], tf.int32),
                                         tf.TensorSpec([None, head.n_seq], tf.int32), Y_spec])

    def eval_step(X, seg, clf_idx, Y):
        T = min(-(-int(np.max(np.sum(seg <= head.n_seq, 1))) // multiple) * multiple, seg.shape[1])
        return score(X[:, :T], seg[:, :T], clf_idx, Y)

    return eval_step


def iter_apply(eval_step, batch, n, n_batch, desc=None):
    """Logits (n, n_logits) and the mean classifier loss of n examples, in batches of n_batch (the last one
    partial); batch(rows) gives eval_step's arguments for the examples `rows`; desc labels the bar."""
    logits, losses = [], []
    with tqdm(total=n, desc=desc, unit='ex', file=sys.stderr, ncols=80, leave=False) as bar:
        for i in range(0, n, n_batch):
            clf_logits, clf_losses = eval_step(*batch(np.arange(i, min(i + n_batch, n))))
            logits.append(clf_logits.numpy())
            losses.append(clf_losses.numpy())
            bar.update(len(losses[-1]))
    return np.concatenate(logits, 0), float(np.sum(np.concatenate(losses), dtype=np.float64)) / n


def save_params(model, path):
    with atomic_write(path, 'wb') as f:
        joblib.dump([p.numpy() for p in model.params], f)


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


def trim(X, M, Y, multiple=1):
    """A batch cut to its longest sequence (rounded up to a multiple of `multiple`): with causal attention the
    positions after the last real token change nothing."""
    T = tf.cast(tf.reduce_max(tf.reduce_sum(M, -1)), tf.int32)
    T = tf.minimum((T + multiple - 1) // multiple * multiple, tf.shape(M)[-1])
    return X[:, :, :T], M[:, :, :T], Y


def encoded_dataset(args, task, text_encoder):
    """The task's splits ({split: Examples}) with every text field encoded (a Ragged of token ids), and a function
    that caches them (call it once every input is checked). They are read from --cache_dir when the data files,
    the BPE files, the code that reads and encodes them and its libraries are those that wrote the cache; a cache
    that cannot be read, or that does not fit the data, is encoded again (with a warning) and replaced."""
    splits = task.load(args.data_dir)  # read and checked on every run: the cache holds only the encodings
    n_vocab = len(text_encoder.encoder)
    if not args.cache_dir:
        return inputs.encode_splits(text_encoder, splits, task.name), lambda: None
    digest = hashlib.sha256(f'{ftfy.__version__} {spacy.__version__}'.encode())
    for path in task.paths(args.data_dir) + [args.encoder_path, args.bpe_path, text_utils.__file__,
                                             datasets.__file__, tasks.__file__, inputs.__file__]:
        with open(path, 'rb') as f:
            digest.update(f.read())
    cache_path = os.path.join(args.cache_dir, f'{task.name}-{digest.hexdigest()[:20]}.npz')
    if os.path.isfile(cache_path):
        try:
            return inputs.load_encoded(cache_path, splits, n_vocab), lambda: None
        except Exception as err:  # whatever a damaged file makes numpy raise: the cache is only a shortcut
            print(f"warning: the cache {cache_path!r} is damaged ({type(err).__name__}: {err}): encoding the data "
                  "set again", file=sys.stderr)
    encoded = inputs.encode_splits(text_encoder, splits, task.name)
    return encoded, lambda: save_cache(cache_path, encoded)


def save_cache(path, splits):
    """inputs.save_encoded, atomically; a failure (full disk, read-only folder) a warning: the cache only saves
    time."""
    try:
        with atomic_write(path, 'wb') as f:
            inputs.save_encoded(f, splits)
    except (OSError, InputError) as err:
        print(f"warning: could not cache the encoded data set in {path!r} ({err}): the next run encodes it again",
              file=sys.stderr)


def distribute(strategy, batches):
    """Each global batch (X, M, Y) of `batches` split over the replicas: replica r of R (over all workers) gets rows
    [r * n / R, (r + 1) * n / R), the original's towers r * n_gpu / R onwards."""
    for batch in batches:
        batch = tuple(tf.convert_to_tensor(x) for x in batch)

        def replica_rows(ctx, batch=batch):
            k = int(batch[0].shape[0]) // ctx.num_replicas_in_sync
            return tuple(x[ctx.replica_id_in_sync_group * k:(ctx.replica_id_in_sync_group + 1) * k] for x in batch)

        yield strategy.experimental_distribute_values_from_function(replica_rows)


def train_batches(strategy, X, M, Y, n_batch_train, trimmed=False, multiple=1):
    """The full batches of arrays X (n, n_seq, T, 2), M, Y in order, each split over the replicas (distribute);
    trimmed: each cut to its longest sequence."""
    batches = ((X[i:i + n_batch_train], M[i:i + n_batch_train], Y[i:i + n_batch_train])
               for i in range(0, len(Y) - n_batch_train + 1, n_batch_train))
    return distribute(strategy, (trim(*b, multiple) if trimmed else b for b in batches))


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
    return lines + [f'plot the learning curves: python analysis.py --plot {args.desc}.png {log_path}',
                    f'or watch them in TensorBoard: tensorboard --logdir {args.log_dir}']


def train(args, control=None):
    """The run: check the flags, seed, encode the data, build the model, fine-tune it (logging evaluations), then
    predict the test set (--submit, --eval_only)."""
    check_args(args)
    task = TASKS[args.dataset]
    print(format_flags(args))
    control = control or RunControl(resume_command=None)
    if args.resume:
        check_resume(args, os.path.join(args.log_dir, f'{args.desc}.jsonl'))
    random.seed(args.seed)
    np.random.seed(args.seed)
    tf.random.set_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    with tensorflow_start_up_hidden(device_init=True):
        strategy = make_strategy(args.n_gpu)
    print(describe_devices(strategy))
    n_batch_train = args.n_batch * args.n_gpu
    check_replicas(args.n_batch, args.n_gpu, strategy.num_replicas_in_sync, args.accum_steps)

    text_encoder = TextEncoder(args.encoder_path, args.bpe_path)
    n_vocab = len(text_encoder.encoder)
    packed = task.shape == 'multiple_choice' and not args.padded  # evaluation shares each context exactly
    n_ctx, splits, evaluated, write_cache = prepare_data(args, task, text_encoder, n_vocab, n_batch_train, packed)
    n_batches = len(splits[task.train].Y) // n_batch_train
    n_updates_total = n_batches * args.n_iter
    print(run_plan(args, n_batches, n_batch_train, [len(s.Y) for s in evaluated.values()],
                   sum(len(splits[name].Y) for name in task.tests)))
    model, opt, loss_scale = build_model(args, task, strategy, n_vocab, n_ctx, n_updates_total)

    multiple = 8 if args.xla else 1  # XLA compiles once per shape: few shapes
    train_step = make_train_step(model, opt, strategy, args.lm_coef, args.seed, masked_lm=not (args.padded or args.xla),
                                 fused=not args.padded, jit_compile=args.xla, accum_steps=args.accum_steps,
                                 loss_scale=loss_scale, n_towers=args.n_gpu)
    eval_step = make_eval_step(model, packed=packed, jit_compile=args.xla, multiple=multiple)

    def batch(split):  # padded to each batch's longest sequence; with --padded to n_ctx, as the original
        return lambda rows: inputs.batch_inputs(task, split, rows, n_vocab, n_ctx, n_ctx if args.padded else multiple)

    log_path = os.path.join(args.log_dir, f'{args.desc}.jsonl')
    params_path = os.path.join(args.save_dir, args.desc, 'best_params.jl')
    state, checkpoint, logger, summaries = start_run(args, control, model, opt, loss_scale, write_cache, log_path,
                                                     params_path)

    def log():
        record = evaluate(task, eval_step, batch, evaluated, n_batch_train)
        logger.log(n_epochs=state.n_epochs, n_updates=state.n_updates, **record)
        state.n_logged += 1
        tqdm.write(('%d %d %.3f %.3f' + ' %.2f' * (len(record) - 2)) % (state.n_epochs, state.n_updates,
                                                                          *record.values()))
        with summaries.as_default(step=state.n_updates):
            for name, value in record.items():
                tf.summary.scalar('eval/' + name, value)
        if args.submit and record['va_' + task.metrics[0].name] > state.best_score:
            state.best_score = record['va_' + task.metrics[0].name]
            save_params(model, params_path)

    print(f"evaluations (classifier loss, then {', '.join(m.name for m in task.metrics)} in % on the first "
          f"{len(evaluated['tr'].Y)} train and the {len(evaluated['va'].Y)} {task.valid} examples):")
    print(' '.join(['n_epochs', 'n_updates', 'tr_cost', 'va_cost'] +
                   [f'{prefix}_{m.name}' for m in task.metrics for prefix in evaluated]))
    if args.eval_only:
        log()
    fit(args, control, state, strategy, train_step, batch(splits[task.train]), len(splits[task.train].Y),
        n_batch_train, log, checkpoint, model, summaries, check=loss_scale is None)
    summaries.close()

    outputs = []
    if args.submit or args.eval_only:
        outputs = predict(args, task, model, eval_step, batch, splits, n_batch_train, params_path, log_path)
    print('\n'.join(written_files(args, log_path, params_path, outputs)))


def evaluate(task, eval_step, batch, evaluated, n_batch):
    """One evaluation, as the original's log(): {tr_cost, va_cost, then tr_<metric>, va_<metric> for each of the
    task's metrics} on `evaluated` ({'tr': the first training examples, 'va': the valid split})."""
    costs, scores = {}, {}
    for prefix, split in evaluated.items():
        desc = f"evaluating {'train' if prefix == 'tr' else 'valid'}"
        logits, costs[prefix] = iter_apply(eval_step, batch(split), len(split.Y), n_batch, desc)
        scores[prefix] = tasks.score(task, tasks.predictions(task, logits), split.examples)
    record = {f'{prefix}_cost': cost for prefix, cost in costs.items()}
    record.update({f'{prefix}_{m.name}': scores[prefix][m.name] for m in task.metrics for prefix in evaluated})
    return record


def prepare_data(args, task, text_encoder, n_vocab, n_batch_train, packed):
    """The data set encoded and sized: its context length n_ctx (the longest input sequence of any split, at most
    --n_ctx), its splits ({name: Split}; packed: the evaluated ones packed), the evaluated sets ({'tr': the first
    training examples, as many as the valid split has, in split order, as the original; 'va': the valid split})
    and encoded_dataset's cache writer."""
    encoded, write_cache = encoded_dataset(args, task, text_encoder)
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
    return n_ctx, splits, {'tr': tr_eval, 'va': splits[task.valid]}, write_cache


def build_model(args, task, strategy, n_vocab, n_ctx, n_updates_total):
    """The model with the task's head, its optimiser and fp16's LossScale (else None), made under the strategy,
    then the pretrained weights (the special rows are drawn even when none are loaded) and --restore's
    parameters."""
    n_special = 3
    clf_token = n_vocab + 2  # _start_, _delimiter_, _classify_ follow the vocabulary
    with strategy.scope():
        model = Model(n_vocab, n_special, n_ctx, clf_token, n_embd=args.n_embd, n_head=args.n_head,
                      n_layer=args.n_layer, embd_pdrop=args.embd_pdrop, attn_pdrop=args.attn_pdrop,
                      resid_pdrop=args.resid_pdrop, clf_pdrop=args.clf_pdrop, afn=args.afn, precision=args.precision,
                      head=Head(**task.head))
        opt = opts[args.opt](model.params, lr=args.lr, t_total=n_updates_total, b1=args.b1, b2=args.b2, e=args.e,
                             schedule=lambda x: schedules[args.lr_schedule](x, warmup=args.lr_warmup),
                             l2=args.l2, vector_l2=args.vector_l2, max_grad_norm=args.max_grad_norm,
                             fused=not args.padded)
        loss_scale = LossScale() if args.precision == 'fp16' else None
    if args.n_transfer == -1:
        special_embeddings(n_special, args.n_embd)
    else:
        model.assign(transfer(load_openai_params(args.model_dir, n_ctx, n_special), args.n_transfer))

    if args.restore:
        model.assign(load_params(args.restore, [p.shape for p in model.params]))
    return model, opt, loss_scale


def start_run(args, control, model, opt, loss_scale, write_cache, log_path, params_path):
    """Where the run starts: a new RunState, or the last checkpoint's with --resume; then, every input checked, the
    run's writes: the encoded data set's cache, the locks on its folders, its log, its TensorBoard writer and (with
    --submit) the first best parameters. Returns (state, the CheckpointManager, the ResultLogger, the summary
    writer)."""
    state = RunState()
    saved = dict(model=model, opt=opt, state=state)
    if loss_scale is not None:
        saved['loss_scale'] = loss_scale
    checkpoint = tf.train.CheckpointManager(tf.train.Checkpoint(**saved),
                                            os.path.join(args.save_dir, args.desc, 'checkpoints'), max_to_keep=1)
    if args.resume:
        restore_checkpoint(checkpoint)
        logger = ResultLogger.resume(log_path, state.n_logged)
    write_cache()  # every input is checked: from here on the run writes
    lock_run(control, args)
    if not args.resume:
        logger = ResultLogger(log_path, **vars(args))
    summaries = tf.summary.create_file_writer(os.path.join(args.log_dir, args.desc))
    if args.submit and not args.resume:
        save_params(model, params_path)
    return state, checkpoint, logger, summaries


def fit(args, control, state, strategy, train_step, batch, n_train, n_batch_train, log, checkpoint, model, summaries,
        check):
    """The training loop, from where `state` stands to --n_iter epochs: each epoch in its own order, an update a
    batch of n_batch_train (batch(rows) its inputs), log() after the EVAL_UPDATES of the first epoch and after each
    epoch, a checkpoint when --save_every says or a signal came. check: stop on an update whose loss or gradient is
    not finite."""
    n_batches = n_train // n_batch_train
    bar = tqdm(total=n_batches * args.n_iter, initial=state.n_updates, unit='update', file=sys.stderr, leave=False,
               disable=args.eval_only)  # the whole run: its ETA is the run's
    control.armed = not args.eval_only  # a signal now stops the loop at the next update boundary
    try:  # the bar is cleared however the loop ends (an error line must not follow it on its line)
        while state.n_epochs < args.n_iter and not args.eval_only:
            # Each epoch shuffles the split order with numpy's global generator, as sklearn did with the module; a
            # resumed run draws the same order from the generator's state saved at the epoch's start.
            np.random.set_state(state.epoch_rng)
            order = shuffle(np.arange(n_train), random_state=np.random.mtrand._rand)
            done = state.n_updates - state.n_epochs * n_batches
            bar.set_description(f'epoch {state.n_epochs + 1}/{args.n_iter}')
            costs = []
            batches = inputs.epoch_batches(batch, order[done * n_batch_train:], n_batch_train)
            for xmb, mmb, ymb in distribute(strategy, batches):
                cost, lrt, grad_norm = train_step(xmb, mmb, ymb)
                state.n_updates += 1
                if check:  # with loss scaling an update whose gradient is not finite is skipped
                    check_finite(state.n_updates, cost, grad_norm)
                costs.append(float(cost))
                bar.set_postfix_str(f'loss {np.mean(costs):.3f} lr {float(lrt):.3g}', refresh=False)
                bar.update()
                with summaries.as_default(step=state.n_updates):
                    tf.summary.scalar('train/clf_cost', cost)
                    tf.summary.scalar('train/lr', lrt)
                    tf.summary.scalar('train/grad_norm', grad_norm)
                if state.n_updates in EVAL_UPDATES and state.n_epochs == 0:
                    log()
                at_boundary(control, checkpoint, state.n_updates, model, summaries,
                            save=args.save_every and state.n_updates % args.save_every == 0)
            state.n_epochs += 1
            log()
            state.epoch_rng = np.random.get_state()
            at_boundary(control, checkpoint, state.n_updates, model, summaries, save=args.save_every)
    finally:
        bar.close()
    control.armed = False


def predict(args, task, model, eval_step, batch, splits, n_batch, params_path, log_path):
    """The test sets' predictions (and, for classes and choices, probabilities) written in --submission_dir, by the
    best parameters (--submit) or those of the run; with --analysis, the task's metrics printed (analysis.report)
    for the valid split, the other dev sets and the test sets whose labels are public. Returns the (what, path)
    pairs it wrote."""
    if args.submit:
        model.assign(load_params(params_path, [p.shape for p in model.params]))
    outputs, scores = [], {}
    for name in task.tests:
        split = splits[name]
        logits, _ = iter_apply(eval_step, batch(split), len(split.Y), n_batch, f'predicting {name}')
        predictions = tasks.predictions(task, logits)
        path = os.path.join(args.submission_dir, task.submissions[name])
        write_submission(path, split.examples.ids, tasks.prediction_strings(task, predictions))
        outputs.append(('submission', path))
        if task.labels:
            outputs.append(('probabilities', os.path.splitext(path)[0] + '_probs.tsv'))
            write_probabilities(outputs[-1][1], split.examples.ids, logits)
        if task.test_labels:
            scores[name] = tasks.score(task, predictions, split.examples)
    if args.analysis:
        for name in task.evals:  # the other dev sets (MNLI's mismatched one)
            logits, _ = iter_apply(eval_step, batch(splits[name]), len(splits[name].Y), n_batch, f'evaluating {name}')
            scores[name] = tasks.score(task, tasks.predictions(task, logits), splits[name].examples)
        analysis.report(task, log_path, {name: scores[name] for name in task.evals + task.tests if name in scores})
    return outputs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parse_args(argv, __doc__)
    with RunControl(resume_command(argv)) as control:
        try:
            exit_on_input_error(train, args, control)
        except Interrupted as stop:  # outside the training loop: nothing to save
            print(f"{stop}: stopped outside the training loop, where a run saves nothing", file=sys.stderr)
            sys.exit(128 + stop.signum)


if __name__ == '__main__':
    main()
