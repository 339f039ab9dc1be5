"""The machinery a training program stands on (train.py fine-tunes, pretrain.py pre-trains), behind a few calls:
the devices and the tf.distribute strategy that shares each batch's towers, a run's writes and state (its log,
TensorBoard, checkpoints, resuming, interruption, the progress bar), and scoring a split in batches. The loop
itself is written out in each program; the update is opt.make_update.

How a program uses it:
    strategy = make_strategy(n_towers)
    run = start_run(desc, log_dir, save_dir, resume, flags, control, dict(model=model, opt=opt), params, opt)
    for each update: cost, lrt, norm = update(*distribute(strategy, batch)); run.updated(cost, lrt, norm)
                     run.boundary(save)      # a checkpoint when due, and the stop after Ctrl-C
"""
import os
import sys
import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from engine.run_state import RunState, at_boundary, check_finite, lock_run, remove_outputs, restore_checkpoint
from model import evaluate_batch, lm_cost
from utils import InputError, ResultLogger


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


def describe_devices(strategy, precision=None):
    """One line: the devices the run computes on and the strategy that spreads the batch over them; with
    `precision` (--precision) the precision in effect, TF32 read back from TensorFlow's own setting."""
    gpus = tf.config.list_logical_devices('GPU')
    devices = f"{len(gpus)} GPU{'s' * (len(gpus) > 1)} ({', '.join(d.name for d in gpus)})" if gpus else \
        'the CPU (no GPU visible)'
    line = (f'devices: {devices}; strategy: {type(strategy).__name__.lstrip("_")} with '
            f'{strategy.num_replicas_in_sync} replica{"s" * (strategy.num_replicas_in_sync > 1)}')
    if precision is None:
        return line
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    return line + f"; precision {precision} (TF32 {'on' if tf32 else 'off'})"


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


def distribute(strategy, batch):
    """A global batch (a tuple of arrays whose first axis is n_gpu equal runs, one per tower: the examples, or a
    packed batch's rows) split over the replicas: replica r of R (over all workers) gets rows [r * n / R, (r + 1) *
    n / R) of each array (n its own length), the original's towers r * n_gpu / R onwards."""
    batch = tuple(tf.convert_to_tensor(x) for x in batch)

    def replica_rows(ctx):
        r, n_replicas = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
        return tuple(x[r * (int(x.shape[0]) // n_replicas):(r + 1) * (int(x.shape[0]) // n_replicas)] for x in batch)

    return strategy.experimental_distribute_values_from_function(replica_rows)


# ------------------------------------------------------------------------------------------------------ a run

class Run:
    """What a training run holds while it runs: its RunControl (locks, signals), RunState (saved in its
    checkpoints), CheckpointManager, ResultLogger (the jsonl log), TensorBoard writer, the parameters (for the size
    of a checkpoint that did not fit on the disk), the optimiser (its scheduled learning rate) and the progress bar
    over the run's n_updates. `cost_name` names the training cost in TensorBoard."""

    def __init__(self, control, state, checkpoint, logger, summaries, params, opt, n_updates, cost_name):
        self.control, self.state, self.checkpoint = control, state, checkpoint
        self.logger, self.summaries, self.params, self.opt = logger, summaries, params, opt
        self.n_updates, self.cost_name, self.costs, self.bar, self.last = n_updates, cost_name, [], None, None

    def __enter__(self):
        """The training loop begins: the bar is drawn, and a signal now stops the loop at the next boundary."""
        self.bar = tqdm(total=self.n_updates, initial=self.state.n_updates, unit='update', file=sys.stderr,
                        leave=False)
        self.control.armed, self.last = True, time.time()
        return self

    def __exit__(self, *exc):
        self.bar.close()  # however the loop ends: an error line must not follow the bar on its line
        self.control.armed = False

    def updated(self, cost, lrt, grad_norm, check=True, postfix=None):
        """After an update: counted, checked (check: InputError when its cost or gradient is not finite; with loss
        scaling such an update is skipped instead), shown on the bar (postfix(costs), default the running mean
        cost, and the scheduled learning rate) and sent to TensorBoard: train/<cost_name>, train/lr (the scheduled
        learning rate), train/step_size (Adam's bias-corrected step size lrt) and train/grad_norm."""
        self.state.n_updates += 1
        if check:
            check_finite(self.state.n_updates, cost, grad_norm)
        self.costs.append(float(cost))
        now = time.time()
        self.control.pace, self.last = now - self.last, now  # what the first Ctrl-C says it will wait
        lr = float(self.opt.scheduled_lr())
        self.bar.set_postfix_str(postfix(self.costs) + f' lr {lr:.3g}' if postfix else
                                 f'loss {np.mean(self.costs):.3f} lr {lr:.3g}', refresh=False)
        self.bar.update()
        with self.summaries.as_default(step=self.state.n_updates):
            tf.summary.scalar('train/' + self.cost_name, cost)
            tf.summary.scalar('train/lr', lr)
            tf.summary.scalar('train/step_size', lrt)
            tf.summary.scalar('train/grad_norm', grad_norm)

    def epoch(self, k, n_epochs):
        """Epoch k (from 0) of n_epochs begins: the bar says so; the running mean cost starts again."""
        self.bar.set_description(f'epoch {k + 1}/{n_epochs}')
        self.costs = []

    def boundary(self, save, on_save=None):
        """Between two updates: a checkpoint when `save` or when a signal came (on_save() first: what the program
        writes beside it); after a signal, the bar cleared, the line that says how to resume, and the exit."""
        if on_save and (save or self.control.signum):
            on_save()
        if self.control.signum:
            self.bar.close()
        at_boundary(self.control, self.checkpoint, self.state.n_updates, self.params, self.summaries, save)


def start_run(desc, log_dir, save_dir, resume, flags, control, saved, params, opt, n_updates, cost_name='clf_cost',
              before_writing=lambda: None, replace=()):
    """Where the run `desc` starts: a new RunState, or that of the last checkpoint in {save_dir}/{desc}/checkpoints/
    when `resume` (the log kept up to its evaluations; a line says where it resumes, of the run's n_updates); then,
    every input checked (before_writing() first: the last check, or a cache to write), the run's writes: the locks
    on its folders, the removal of a previous run's outputs `replace` (run_state.check_outputs's, with
    --overwrite), its log {log_dir}/{desc}.jsonl (its first line the `flags`, a dict), its TensorBoard writer.
    `saved`: the objects a checkpoint holds besides the state ({'model': ..., 'opt': ...})."""
    state = RunState()
    log_path = os.path.join(log_dir, f'{desc}.jsonl')

    def checkpoints():
        return tf.train.CheckpointManager(tf.train.Checkpoint(state=state, **saved),
                                          os.path.join(save_dir, desc, 'checkpoints'), max_to_keep=1)
    if resume:
        checkpoint = checkpoints()
        restore_checkpoint(checkpoint)
        logger = ResultLogger.resume(log_path, state.n_logged)
    before_writing()  # every input is checked: from here on the run writes
    lock_run(control, desc, log_dir, save_dir)
    remove_outputs(replace)
    if resume:
        print(f"resumed from update {state.n_updates} of {n_updates} (checkpoint {checkpoint.latest_checkpoint})")
    else:
        checkpoint = checkpoints()  # made after the removal: it knows of no checkpoint of a run replaced
        logger = ResultLogger(log_path, **flags)
    summaries = tf.summary.create_file_writer(os.path.join(log_dir, desc))
    return Run(control, state, checkpoint, logger, summaries, params, opt, n_updates, cost_name)


# --------------------------------------------------------------------------------------------------- scoring

def iter_apply(eval_step, batches, n, desc=None):
    """Logits (n, n_logits) and the mean loss of n examples, from `batches`: pairs (k, the arguments of eval_step)
    whose first k examples are the next real ones (any after them fill the batch up: their outputs are dropped);
    eval_step returns (logits, losses); desc labels the bar."""
    logits, losses = [], []
    with tqdm(total=n, desc=desc, unit='ex', file=sys.stderr, ncols=80, leave=False) as bar:
        for k, batch in batches:
            clf_logits, clf_losses = eval_step(*batch)
            logits.append(clf_logits.numpy()[:k])
            losses.append(clf_losses.numpy()[:k])
            bar.update(k)
    return np.concatenate(logits, 0), float(np.sum(np.concatenate(losses), dtype=np.float64)) / n


def make_eval_step(model, n_parts=1, fused=False, jit_compile=False, rows=True):
    """A tf.function of model.evaluate_batch, traced once for batches of any size -> (clf_logits, clf_losses), each
    compiled by XLA with jit_compile. rows: the batch is evaluation rows, (X (R, L, 2), seg (R, L), clf_at (n,
    n_seq), Y) (inputs.eval_batch; n_parts 1 + n_choices where multiple choice is packed whole); else a padded
    batch (X (n, n_seq, T, 2), M (n, n_seq, T), Y)."""
    head = model.cfg.head
    Y = tf.TensorSpec([None], tf.float32 if head.loss == 'squared' else tf.int32)
    if rows:
        spec = [tf.TensorSpec([None, None, 2], tf.int32), tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None, head.n_seq], tf.int32), Y]
        return tf.function(lambda *batch: evaluate_batch(model, batch, n_parts, fused), jit_compile=jit_compile,
                           input_signature=spec)
    spec = [tf.TensorSpec([None, head.n_seq, None, 2], tf.int32), tf.TensorSpec([None, head.n_seq, None], tf.float32),
            Y]
    return tf.function(lambda *batch: evaluate_batch(model, batch, fused=fused), jit_compile=jit_compile,
                       input_signature=spec)


def make_lm_eval_step(model, strategy, n_rows, path):
    """A tf.function scoring a batch of windows (X, M) already split over the replicas, without dropout -> the sum
    over the batch of M * the LM loss over the first n_rows rows of `we`, and the sum of M (summed over replicas);
    each replica's part compiled by XLA with path.jit_compile."""
    @tf.function(jit_compile=path.jit_compile)
    def replica_sums(X, M):
        return lm_cost(model, X, M, n_rows, path=path), tf.reduce_sum(M[:, 1:])

    @tf.function
    def eval_step(X, M):
        total, count = strategy.run(replica_sums, args=(X, M))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))
    return eval_step
