"""The training engine that every training program stands on (train.py fine-tunes, pretrain.py pre-trains): the
devices and the tf.distribute strategy, the original's towers over replicas and accumulation steps, one update of
any objective, the loop over updates with its evaluations, checkpoints, interruption, progress bar and
TensorBoard, and scoring a split in batches.

How a program uses it:
    strategy = make_strategy(n_towers)
    step = make_train_step(objective, params, opt, strategy, seed, ...)     # objective(batch, seed) -> loss, cost
    run = start_run(args, control, dict(model=model, opt=opt), log_path, params)
    fit(run, step, epoch_batches, n_epochs, n_batches, log, ...)            # epoch_batches(epoch, done) -> batches
"""
import os
import sys
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from run_state import RunState, at_boundary, check_finite, lock_run, remove_outputs, restore_checkpoint
from utils import InputError, ResultLogger, batches_of


# ------------------------------------------------------------------------------------------ devices and replicas

def make_strategy(n_towers=None, towers='the n_gpu {n} towers'):
    """MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster of workers; MirroredStrategy over the
    visible GPUs when there are several (with n_towers, the largest number of them that divides n_towers, so that
    each runs the same number of the original's towers: saying so, with `towers` naming them, when some are left
    idle); else the default strategy (one GPU, or the CPU), whose plain variables let the optimiser fuse its
    update."""
    if 'TF_CONFIG' in os.environ:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices('GPU')
    n = tower_devices(n_towers, len(gpus)) if n_towers else len(gpus)
    if n < len(gpus):
        print(f"using {n} of the {len(gpus)} GPUs: the largest count that divides {towers.format(n=n_towers)} "
              f"({n_towers // n} each)")
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


def tower_devices(n_towers, n_devices):
    """The largest number of devices, at most n_devices, that share n_towers towers evenly."""
    return max(n for n in range(1, max(n_devices, 1) + 1) if n_towers % n == 0)


def check_replicas(n_batch, n_towers, n_replicas, accum_steps=1):
    """InputError unless the n_towers towers of n_batch examples share evenly over n_replicas replicas and
    accum_steps splits a tower evenly (a single machine always picks a count of devices that divides n_towers; a
    cluster of workers cannot)."""
    if n_towers % n_replicas:
        raise InputError(f"the {n_replicas} replicas of the cluster cannot share the --n_gpu {n_towers} towers "
                         f"evenly: choose an --n_gpu that is a multiple of {n_replicas}, or as many workers as divide "
                         f"{n_towers}")
    if n_batch % accum_steps:
        raise InputError(f"--accum_steps {accum_steps} cannot split a tower of --n_batch {n_batch} examples evenly: "
                         f"choose a divisor of {n_batch}")


def distribute(strategy, batches):
    """Each global batch (a tuple of arrays whose first axis is n_gpu equal runs, one per tower: the examples, or
    a packed batch's rows) of `batches` split over the replicas: replica r of R (over all workers) gets rows
    [r * n / R, (r + 1) * n / R) of each array (n its own length), the original's towers r * n_gpu / R onwards."""
    for batch in batches:
        batch = tuple(tf.convert_to_tensor(x) for x in batch)

        def replica_rows(ctx, batch=batch):
            r, n_replicas = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
            return tuple(x[r * (int(x.shape[0]) // n_replicas):(r + 1) * (int(x.shape[0]) // n_replicas)]
                         for x in batch)

        yield strategy.experimental_distribute_values_from_function(replica_rows)


# ------------------------------------------------------------------------------------------------- one update

def make_train_step(objective, params, opt, strategy, seed, jit_compile=False, accum_steps=1, loss_scale=None,
                    n_towers=None):
    """A tf.function doing one update of `params` from a global batch already split over the replicas, as the
    original's n_towers towers (its n_gpu; default one per replica): each array of the global batch is n_towers
    equal runs of its first axis, tower after tower; each replica holds an equal run of towers and computes them
    one after the other, each tower split further into accum_steps equal parts; the gradients of the parts'
    losses, averaged over every part of every tower (the gradient of the mean over the global batch), make one
    update of `opt`. objective(part, part_seed) -> (loss, cost): `part` the batch's arrays each cut to one part's
    run, the loss to differentiate and the figure to report (averaged over the parts and replicas).
    Each part draws its own dropout masks, seeded by fold_in(fold_in((seed, updates done), global tower index),
    part): the same masks on any number of replicas; accum_steps > 1 draws more masks than the original's towers.
    jit_compile: each part's gradient compiled by XLA. With a LossScale, the loss is scaled before the gradient,
    and an update whose gradient is not finite is skipped. The step returns the cost, lrt and the gradient's
    global norm."""
    if n_towers and n_towers % strategy.num_replicas_in_sync:
        raise ValueError(f'{n_towers} towers cannot be shared evenly by {strategy.num_replicas_in_sync} replicas')

    def part_grads(part, part_seed):
        with tf.GradientTape() as tape:
            loss, cost = objective(part, part_seed)
            if loss_scale is not None:
                loss = loss * loss_scale.scale
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, params)], cost

    part_grads = tf.function(part_grads, jit_compile=True) if jit_compile else part_grads

    def replica_step(*batch):
        ctx = tf.distribute.get_replica_context()
        towers = (n_towers or ctx.num_replicas_in_sync) // ctx.num_replicas_in_sync  # this replica's towers
        first_tower = ctx.replica_id_in_sync_group * towers
        update_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(opt.t, tf.int32)])

        def part_seed(k):  # this replica's part k: part k % accum_steps of its tower k // accum_steps
            tower_seed = tf.random.experimental.stateless_fold_in(update_seed, first_tower + k // accum_steps)
            return tf.random.experimental.stateless_fold_in(tower_seed, k % accum_steps)

        n_parts = towers * accum_steps
        if n_parts == 1:
            return part_grads(batch, part_seed(0))
        sizes = [tf.shape(x)[0] // n_parts for x in batch]
        grads, cost = [tf.zeros_like(p) for p in params], 0.
        for k in tf.range(n_parts):  # a loop in the graph: one part's activations alive at a time
            g, c = part_grads(tuple(x[k * n:(k + 1) * n] for x, n in zip(batch, sizes)), part_seed(k))
            grads, cost = [a + b / n_parts for a, b in zip(grads, g)], cost + c / n_parts
        return grads, cost

    @tf.function(reduce_retracing=True)  # trimmed batches vary in length: one trace for all of them
    def train_step(*batch):
        grads, cost = strategy.run(replica_step, args=batch)
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


# ------------------------------------------------------------------------------------------------------ a run

class Run:
    """What a training run holds while it runs: its RunControl (locks, signals), RunState (saved in its
    checkpoints), CheckpointManager, ResultLogger (the jsonl log), TensorBoard writer, and the parameters (for
    the size of a checkpoint that did not fit on the disk)."""

    def __init__(self, control, state, checkpoint, logger, summaries, params):
        self.control, self.state, self.checkpoint = control, state, checkpoint
        self.logger, self.summaries, self.params = logger, summaries, params


def start_run(args, control, saved, log_path, params, before_writing=lambda: None, n_updates=None, replace=()):
    """Where the run `args.desc` starts: a new RunState, or that of the last checkpoint in
    save/{desc}/checkpoints/ with --resume (the log kept up to its evaluations; a line says where it resumes, of
    the run's n_updates); then, every input checked (before_writing() first: the last check, or a cache to
    write), the run's writes: the locks on its folders, the removal of a previous run's outputs `replace`
    (run_state.check_outputs's, with --overwrite), its log (its first line the flags), its TensorBoard writer.
    `saved`: the objects a checkpoint holds besides the state ({'model': ..., 'opt': ...})."""
    state = RunState()

    def checkpoints():
        return tf.train.CheckpointManager(tf.train.Checkpoint(state=state, **saved),
                                          os.path.join(args.save_dir, args.desc, 'checkpoints'), max_to_keep=1)
    if args.resume:
        checkpoint = checkpoints()
        restore_checkpoint(checkpoint)
        logger = ResultLogger.resume(log_path, state.n_logged)
    before_writing()  # every input is checked: from here on the run writes
    lock_run(control, args)
    remove_outputs(replace)
    if args.resume:
        print(f"resumed from update {state.n_updates}{f' of {n_updates}' if n_updates else ''} "
              f"(checkpoint {checkpoint.latest_checkpoint})")
    else:
        checkpoint = checkpoints()  # made after the removal: it knows of no checkpoint of a run replaced
        logger = ResultLogger(log_path, **vars(args))
    summaries = tf.summary.create_file_writer(os.path.join(args.log_dir, args.desc))
    return Run(control, state, checkpoint, logger, summaries, params)


class Schedule(NamedTuple):
    """When loop.fit does what: n_epochs epochs of n_batches updates (an int, or a list of each epoch's count), or
    max_updates updates when that comes first (0: no limit); an evaluation after an update when
    evaluate_after(n_updates, n_epochs) says so, after each epoch and after the max_updates-th update; a
    checkpoint every save_every updates, at the end of each epoch and after the last update when save_every is
    set (0: only when a signal comes)."""
    n_epochs: int
    n_batches: object
    evaluate_after: object = lambda n_updates, n_epochs: False
    save_every: int = 0
    max_updates: int = 0


def fit(run, train_step, epoch_batches, schedule, log, check=True, cost_name='clf_cost', postfix=None,
        after_update=None, on_save=None):
    """The training loop, from where run.state stands to the end of `schedule` (a Schedule): each update
    train_step(*batch) on the batches epoch_batches(epoch, done) gives for each epoch (those after the first
    `done`, which a resumed run has made); after_update(n_updates, cost) after each update; log() when the schedule
    says; a checkpoint when it says and when a signal came (then the program exits, saying how to resume),
    on_save() just before each checkpoint. One bar spans the whole run (its ETA is the run's), showing
    postfix(costs, lrt) (default: the running mean cost and the learning rate); TensorBoard gets
    train/<cost_name>, train/lr and train/grad_norm per update. check: stop on an update whose cost or gradient is
    not finite."""
    state, control, summaries = run.state, run.control, run.summaries
    n_epochs, n_batches, evaluate_after, save_every, max_updates = schedule
    per_epoch = [n_batches] * n_epochs if isinstance(n_batches, int) else list(n_batches)
    total = min(sum(per_epoch), max_updates) if max_updates else sum(per_epoch)
    postfix = postfix or (lambda costs, lrt: f'loss {np.mean(costs):.3f} lr {float(lrt):.3g}')

    def boundary(save):
        if on_save and (save or control.signum):
            on_save()
        at_boundary(control, run.checkpoint, state.n_updates, run.params, summaries, save)

    bar = tqdm(total=total, initial=state.n_updates, unit='update', file=sys.stderr, leave=False)
    control.armed = True  # a signal now stops the loop at the next update boundary
    try:  # the bar is cleared however the loop ends (an error line must not follow it on its line)
        while state.n_epochs < n_epochs and not (max_updates and state.n_updates >= max_updates):
            bar.set_description(f'epoch {state.n_epochs + 1}/{n_epochs}')
            costs, ended = [], True
            for batch in epoch_batches(state.n_epochs, state.n_updates - sum(per_epoch[:state.n_epochs])):
                cost, lrt, grad_norm = train_step(*batch)
                state.n_updates += 1
                if check:  # with loss scaling an update whose gradient is not finite is skipped
                    check_finite(state.n_updates, cost, grad_norm)
                costs.append(float(cost))
                bar.set_postfix_str(postfix(costs, lrt), refresh=False)
                bar.update()
                with summaries.as_default(step=state.n_updates):
                    tf.summary.scalar('train/' + cost_name, cost)
                    tf.summary.scalar('train/lr', lrt)
                    tf.summary.scalar('train/grad_norm', grad_norm)
                if after_update:
                    after_update(state.n_updates, float(cost))
                if evaluate_after(state.n_updates, state.n_epochs):
                    log()
                if state.n_updates == max_updates:  # the run's last update: maybe in the middle of an epoch
                    ended = state.n_updates == sum(per_epoch[:state.n_epochs + 1])
                    break
                boundary(save=save_every and state.n_updates % save_every == 0)
            if ended:
                state.n_epochs += 1
            log()
            boundary(save=save_every)
    finally:
        bar.close()
    control.armed = False


# --------------------------------------------------------------------------------------------------- scoring

def iter_apply(eval_step, batch, n, n_batch, desc=None):
    """Logits (n, n_logits) and the mean loss of n examples, in batches of n_batch (the last one partial):
    batch(rows) gives eval_step's arguments for the examples `rows` (and possibly filler examples after them,
    whose outputs are dropped), eval_step returns (logits, losses); desc labels the bar."""
    logits, losses = [], []
    with tqdm(total=n, desc=desc, unit='ex', file=sys.stderr, ncols=80, leave=False) as bar:
        for rows in batches_of(np.arange(n), n_batch):
            clf_logits, clf_losses = eval_step(*batch(rows))
            logits.append(clf_logits.numpy()[:len(rows)])
            losses.append(clf_losses.numpy()[:len(rows)])
            bar.update(len(losses[-1]))
    return np.concatenate(logits, 0), float(np.sum(np.concatenate(losses), dtype=np.float64)) / n
