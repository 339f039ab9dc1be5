"""Fine-tune the pretrained GPT-1 on the Story Cloze Test (ROCStories), as the original train.py:
    python train.py --dataset rocstories --desc rocstories --submit --analysis

What the run computes, and where it deliberately differs from the original, is in SPEC.md; README.md has its
cost, its outputs and the flags that matter.

Flags the original did not have: --model_dir, --padded, --xla, --precision, --deterministic, --accum_steps,
--save_every, --resume, --restore, --cache_dir, --eval_only.
"""
import hashlib
import itertools
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
    import text_utils
    from datasets import context_length, load_encoded, pack_roc, rocstories, rocstories_paths, save_encoded, transform_roc
    from model import Model, load_openai_params, load_params, special_embeddings, transfer
    from opt import Adam, LossScale, schedules
    from text_utils import TextEncoder
    from run_state import (Interrupted, RunControl, RunState, at_boundary, check_finite, check_resume, lock_run,
                           restore_checkpoint, resume_command)
    from utils import ResultLogger, atomic_write, encode_dataset, iter_data

datasets = {'rocstories': (rocstories, rocstories_paths)}  # loader, its files
submission_files = {'rocstories': 'ROCStories.tsv'}
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
    pack_roc's (X, seg, clf_idx, Y), cut to its longest example (rounded up to a multiple of `multiple`), else
    transform_roc's (X, M, Y) as the original."""
    if not packed:
        return tf.function(lambda X, M, Y: model(X, M, Y, train=False)[:2], jit_compile=jit_compile,
                           input_signature=[tf.TensorSpec([None, 2, None, 2], tf.int32),
                                            tf.TensorSpec([None, 2, None], tf.float32), tf.TensorSpec([None], tf.int32)])
    score = tf.function(model.score_packed, jit_compile=jit_compile,
                        input_signature=[tf.TensorSpec([None, None, 2], tf.int32), tf.TensorSpec([None, None], tf.int32),
                                         tf.TensorSpec([None, 2], tf.int32), tf.TensorSpec([None], tf.int32)])

    def eval_step(X, seg, clf_idx, Y):
        T = min(-(-int(np.max(np.sum(seg != 3, 1))) // multiple) * multiple, seg.shape[1])
        return score(X[:, :T], seg[:, :T], clf_idx, Y)

    return eval_step


def iter_apply(eval_step, inputs, Y, n_batch, desc=None):
    """Logits (n, 2) and the mean classifier loss over a set, in batches of n_batch (the last one partial);
    `inputs` the arrays that eval_step takes before Y; desc labels the bar."""
    logits, losses = [], []
    for *xs, ymb in iter_data(*inputs, Y, n_batch=n_batch, truncate=False, verbose=True, desc=desc):
        clf_logits, clf_losses = eval_step(*xs, ymb)
        logits.append(clf_logits.numpy())
        losses.append(clf_losses.numpy())
    return np.concatenate(logits, 0), float(np.sum(np.concatenate(losses), dtype=np.float64)) / len(Y)


def accuracy(logits, Y):
    """Percent of examples whose larger logit is the label (ties go to choice 0)."""
    return float(np.mean(np.argmax(logits, 1) == Y) * 100.)


def save_params(model, path):
    with atomic_write(path, 'wb') as f:
        joblib.dump([p.numpy() for p in model.params], f)


def write_submission(path, predictions):
    with atomic_write(path) as f:
        f.write('index\tprediction\n')
        for i, prediction in enumerate(predictions):
            f.write(f'{i}\t{prediction}\n')


def write_probabilities(path, logits):
    """The softmax of each test example's two logits, beside the submission."""
    probs = tf.nn.softmax(logits).numpy()
    with atomic_write(path) as f:
        f.write('index\tp0\tp1\n')
        for i, (p0, p1) in enumerate(probs):
            f.write(f'{i}\t{p0:.6f}\t{p1:.6f}\n')


def trim(X, M, Y, multiple=1):
    """A batch cut to its longest sequence (rounded up to a multiple of `multiple`): with causal attention the
    positions after the last real token change nothing."""
    T = tf.cast(tf.reduce_max(tf.reduce_sum(M, -1)), tf.int32)
    T = tf.minimum((T + multiple - 1) // multiple * multiple, tf.shape(M)[-1])
    return X[:, :, :T], M[:, :, :T], Y


def encoded_dataset(args, text_encoder):
    """The data set's splits with every text encoded, and a function that caches them (call it once every input
    is checked). They are read from --cache_dir when the data files, the BPE files, the encoding code and its
    libraries are those that wrote the cache; a cache that cannot be read, or that does not fit the data, is
    encoded again (with a warning) and replaced."""
    load, data_files = datasets[args.dataset]
    splits = load(args.data_dir)  # read and checked on every run: the cache holds only the encodings
    if not args.cache_dir:
        return encode_dataset(splits, encoder=text_encoder), lambda: None
    digest = hashlib.sha256(f'{ftfy.__version__} {spacy.__version__}'.encode())
    for path in data_files(args.data_dir) + [args.encoder_path, args.bpe_path, text_utils.__file__, load.__code__.co_filename]:
        with open(path, 'rb') as f:
            digest.update(f.read())
    cache_path = os.path.join(args.cache_dir, f'{args.dataset}-{digest.hexdigest()[:20]}.npz')
    if os.path.isfile(cache_path):
        try:
            return load_encoded(cache_path, splits), lambda: None
        except Exception as err:  # whatever a damaged file makes numpy raise: the cache is only a shortcut
            print(f"warning: the cache {cache_path!r} is damaged ({type(err).__name__}: {err}): encoding the data "
                  "set again", file=sys.stderr)
    encoded = encode_dataset(splits, encoder=text_encoder)
    return encoded, lambda: save_cache(cache_path, encoded)


def save_cache(path, splits):
    """save_encoded, a failure (full disk, read-only folder) a warning: the cache only saves time."""
    try:
        save_encoded(path, splits)
    except (OSError, InputError) as err:
        print(f"warning: could not cache the encoded data set in {path!r} ({err}): the next run encodes it again",
              file=sys.stderr)


def train_batches(strategy, X, M, Y, n_batch_train, trimmed=False, multiple=1):
    """The full batches of one epoch in order, prefetched, each split over the replicas: replica r
    of R (over all workers) gets rows [r * n / R, (r + 1) * n / R) of the global batch, the original's towers
    r * n_gpu / R onwards; trimmed: each batch cut to its longest sequence."""
    dataset = tf.data.Dataset.from_tensor_slices((X, M, Y)).batch(n_batch_train, drop_remainder=True)
    if trimmed:
        dataset = dataset.map(lambda X, M, Y: trim(X, M, Y, multiple))

    def split(batch):
        def replica_rows(ctx):
            k = n_batch_train // ctx.num_replicas_in_sync
            return tuple(x[ctx.replica_id_in_sync_group * k:(ctx.replica_id_in_sync_group + 1) * k] for x in batch)
        return strategy.experimental_distribute_values_from_function(replica_rows)

    return (split(batch) for batch in dataset.prefetch(2))


def run_plan(args, n_batches, n_batch_train, n_evaluated, n_test):
    """One line: the work the run will do (what its time is made of); n_evaluated: (train, valid) stories scored
    by an evaluation."""
    evaluation = f'{n_evaluated[0]} train + {n_evaluated[1]} valid stories'
    if args.eval_only:
        return f'no training: 1 evaluation of {evaluation}, then {n_test} test stories'
    n_evals = args.n_iter + sum(u <= n_batches for u in EVAL_UPDATES)
    plan = (f'{args.n_iter} epochs x {n_batches} updates of {n_batch_train} stories = {args.n_iter * n_batches} '
            f'updates; {n_evals} evaluations of {evaluation}')
    return plan + (f'; then {n_test} test stories' if args.submit else '')


def written_files(args, log_path, params_path, submission_path):
    """Lines listing what the run wrote, and the command that plots its learning curves."""
    files = [('log', log_path), ('TensorBoard', os.path.join(args.log_dir, args.desc))]
    if args.submit:
        files.append(('best parameters', params_path))
    if args.save_every:
        files.append(('checkpoints', os.path.join(args.save_dir, args.desc, 'checkpoints')))
    if submission_path:
        files += [('submission', submission_path),
                  ('probabilities', os.path.splitext(submission_path)[0] + '_probs.tsv')]
    lines = ['written:'] + [f'  {what:<16} {path}' for what, path in files]
    return lines + [f'plot the learning curves: python analysis.py --plot {args.desc}.png {log_path}',
                    f'or watch them in TensorBoard: tensorboard --logdir {args.log_dir}']


def train(args, control=None):
    """The run: check the flags, seed, encode the data, build the model, fine-tune it (logging evaluations), then
    predict the test set (--submit, --eval_only)."""
    check_args(args)
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
    n_ctx, (trX, trM, trY), evals, labels, write_cache = prepare_data(args, text_encoder, n_vocab, n_batch_train)
    n_batches = len(trY) // n_batch_train
    n_updates_total = n_batches * args.n_iter
    print(run_plan(args, n_batches, n_batch_train, (len(labels[0]), len(labels[1])), len(labels[2])))
    model, opt, loss_scale = build_model(args, strategy, n_vocab, n_ctx, n_updates_total)

    multiple = 8 if args.xla else 1  # XLA compiles once per shape: few shapes
    train_step = make_train_step(model, opt, strategy, args.lm_coef, args.seed, masked_lm=not (args.padded or args.xla),
                                 fused=not args.padded, jit_compile=args.xla, accum_steps=args.accum_steps,
                                 loss_scale=loss_scale, n_towers=args.n_gpu)
    eval_step = make_eval_step(model, packed=not args.padded, jit_compile=args.xla, multiple=multiple)
    log_path = os.path.join(args.log_dir, f'{args.desc}.jsonl')
    params_path = os.path.join(args.save_dir, args.desc, 'best_params.jl')
    state, checkpoint, logger, summaries = start_run(args, control, model, opt, loss_scale, write_cache, log_path,
                                                     params_path)

    def log():
        tr_logits, tr_cost = iter_apply(eval_step, evals[0], labels[0], n_batch_train, 'evaluating train')
        va_logits, va_cost = iter_apply(eval_step, evals[1], labels[1], n_batch_train, 'evaluating valid')
        tr_acc, va_acc = accuracy(tr_logits, labels[0]), accuracy(va_logits, labels[1])
        logger.log(n_epochs=state.n_epochs, n_updates=state.n_updates, tr_cost=tr_cost, va_cost=va_cost,
                   tr_acc=tr_acc, va_acc=va_acc)
        state.n_logged += 1
        tqdm.write('%d %d %.3f %.3f %.2f %.2f' % (state.n_epochs, state.n_updates, tr_cost, va_cost, tr_acc, va_acc))
        with summaries.as_default(step=state.n_updates):
            for name, value in [('tr_cost', tr_cost), ('va_cost', va_cost), ('tr_acc', tr_acc), ('va_acc', va_acc)]:
                tf.summary.scalar('eval/' + name, value)
        if args.submit and va_acc > state.best_score:
            state.best_score = va_acc
            save_params(model, params_path)

    print('evaluations (classifier loss and accuracy % on the train and valid stories):')
    print('n_epochs n_updates tr_cost va_cost tr_acc va_acc')
    if args.eval_only:
        log()
    fit(args, control, state, strategy, train_step, (trX, trM, trY), n_batch_train, multiple, log, checkpoint, model,
        summaries, check=loss_scale is None)
    summaries.close()

    submission_path = None
    if args.submit or args.eval_only:
        submission_path = predict(args, model, eval_step, evals[2], labels[2], n_batch_train, params_path, log_path)
    print('\n'.join(written_files(args, log_path, params_path, submission_path)))


def prepare_data(args, text_encoder, n_vocab, n_batch_train):
    """The data set encoded and sized: its context length n_ctx (the longest example, at most --n_ctx), the training
    arrays (trX, trM, trY) of transform_roc, the inputs of eval_step and the labels of the first n_valid training
    stories, the valid and the test stories (the test's labels are zeros), and encoded_dataset's cache writer."""
    splits, write_cache = encoded_dataset(args, text_encoder)
    (trX1, trX2, trX3, trY), (vaX1, vaX2, vaX3, vaY), (teX1, teX2, teX3) = splits
    max_len = args.n_ctx // 2 - 2
    n_ctx = min(context_length(trX1 + vaX1 + teX1, trX2 + vaX2 + teX2, trX3 + vaX3 + teX3, max_len), args.n_ctx)
    trX, trM = transform_roc(trX1, trX2, trX3, n_vocab, n_ctx, max_len)
    n_train, n_valid = len(trY), len(vaY)
    if n_train < n_batch_train and not args.eval_only:
        raise InputError(f"the training split has {n_train} examples, fewer than one global batch (n_batch * n_gpu = "
                         f"{n_batch_train}): no update could be made; lower --n_batch or --n_gpu, or give more data")

    def eval_inputs(X1, X2, X3):  # both choices in one packed sequence, or the original's two padded ones
        if args.padded:
            return transform_roc(X1, X2, X3, n_vocab, n_ctx, max_len)
        return pack_roc(X1, X2, X3, n_vocab, max_len)

    tr_eval = eval_inputs(trX1[:n_valid], trX2[:n_valid], trX3[:n_valid])  # the first n_valid, in split order
    va_eval = eval_inputs(vaX1, vaX2, vaX3)
    te_eval = eval_inputs(teX1, teX2, teX3)
    labels = trY[:n_valid], vaY, np.zeros(len(teX1), np.int32)
    return n_ctx, (trX, trM, trY), (tr_eval, va_eval, te_eval), labels, write_cache


def build_model(args, strategy, n_vocab, n_ctx, n_updates_total):
    """The model, its optimiser and fp16's LossScale (else None), made under the strategy, then the pretrained
    weights (the special rows are drawn even when none are loaded) and --restore's parameters."""
    n_special = 3
    clf_token = n_vocab + 2  # _start_, _delimiter_, _classify_ follow the vocabulary
    with strategy.scope():
        model = Model(n_vocab, n_special, n_ctx, clf_token, n_embd=args.n_embd, n_head=args.n_head,
                      n_layer=args.n_layer, embd_pdrop=args.embd_pdrop, attn_pdrop=args.attn_pdrop,
                      resid_pdrop=args.resid_pdrop, clf_pdrop=args.clf_pdrop, afn=args.afn, precision=args.precision)
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


def fit(args, control, state, strategy, train_step, train_set, n_batch_train, multiple, log, checkpoint, model,
        summaries, check):
    """The training loop, from where `state` stands to --n_iter epochs: each epoch in its own order, an update a
    batch of n_batch_train, log() after the EVAL_UPDATES of the first epoch and after each epoch, a checkpoint when
    --save_every says or a signal came. check: stop on an update whose loss or gradient is not finite."""
    trX, trM, trY = train_set
    n_batches = len(trY) // n_batch_train
    bar = tqdm(total=n_batches * args.n_iter, initial=state.n_updates, unit='update', file=sys.stderr, leave=False,
               disable=args.eval_only)  # the whole run: its ETA is the run's
    control.armed = not args.eval_only  # a signal now stops the loop at the next update boundary
    try:  # the bar is cleared however the loop ends (an error line must not follow it on its line)
        while state.n_epochs < args.n_iter and not args.eval_only:
            # Each epoch shuffles the split order with numpy's global generator, as sklearn did with the module; a
            # resumed run draws the same order from the generator's state saved at the epoch's start.
            np.random.set_state(state.epoch_rng)
            xs, ms, ys = shuffle(trX, trM, trY, random_state=np.random.mtrand._rand)
            done = state.n_updates - state.n_epochs * n_batches
            bar.set_description(f'epoch {state.n_epochs + 1}/{args.n_iter}')
            costs = []
            for xmb, mmb, ymb in itertools.islice(train_batches(strategy, xs, ms, ys, n_batch_train, not args.padded,
                                                                multiple), done, None):
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


def predict(args, model, eval_step, te_eval, te_labels, n_batch_train, params_path, log_path):
    """The test set's predictions and probabilities written in --submission_dir, by the best parameters (--submit)
    or those of the run; with --analysis, the valid and test accuracy printed. Returns the submission's path."""
    if args.submit:
        model.assign(load_params(params_path, [p.shape for p in model.params]))
    te_logits, _ = iter_apply(eval_step, te_eval, te_labels, n_batch_train, 'predicting test')
    submission_path = os.path.join(args.submission_dir, submission_files[args.dataset])
    write_submission(submission_path, np.argmax(te_logits, 1))
    write_probabilities(os.path.splitext(submission_path)[0] + '_probs.tsv', te_logits)
    if args.analysis:
        analysis.rocstories(args.data_dir, submission_path, log_path)
    return submission_path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parse_args(argv, __doc__)
    print(format_flags(args))
    with RunControl(resume_command(argv)) as control:
        try:
            exit_on_input_error(train, args, control)
        except Interrupted as stop:  # outside the training loop: nothing to save
            print(f"{stop}: stopped outside the training loop, where a run saves nothing", file=sys.stderr)
            sys.exit(128 + stop.signum)


if __name__ == '__main__':
    main()
