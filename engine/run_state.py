"""A run's lifecycle: where it stands (RunState, saved in its checkpoints), the locks and signals it holds while
on (RunControl), saving and restoring its checkpoints, stopping cleanly at an update boundary, and --resume."""
import fcntl
import fnmatch
import glob
import json
import math
import os
import shlex
import shutil
import signal
import sys
import threading

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from engine.flags import RESUMABLE_CHANGES
from utils import InputError, exit_on_input_error, no_space


class RunState(tf.train.experimental.PythonState):
    """Where a run stands, saved in its checkpoints: updates and epochs done, the best validation figure of the
    task's first metric (-inf before the first evaluation: the original started from an accuracy of 0, which a
    correlation can fail to beat), evaluations logged, and numpy's generator at the start of the current epoch (it
    drew that epoch's order)."""

    def __init__(self):
        self.n_updates, self.n_epochs, self.best_score, self.n_logged = 0, 0, float('-inf'), 0
        self.epoch_rng = np.random.get_state()

    def serialize(self):
        name, keys, pos, has_gauss, cached = self.epoch_rng
        return json.dumps(dict(n_updates=self.n_updates, n_epochs=self.n_epochs, best_score=self.best_score,
                               n_logged=self.n_logged, epoch_rng=[name, keys.tolist(), pos, has_gauss, cached]))

    def deserialize(self, string_value):
        state = json.loads(string_value)
        self.n_updates, self.n_epochs = state['n_updates'], state['n_epochs']
        self.best_score, self.n_logged = state['best_score'], state['n_logged']
        name, keys, pos, has_gauss, cached = state['epoch_rng']
        self.epoch_rng = (name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached)


def check_resume(flags, log_path):
    """For --resume: InputError unless the run of `flags` (a dict of the program's flags) has a checkpoint, and a
    whole log whose first line holds these flags, but for those of RESUMABLE_CHANGES."""
    checkpoints = os.path.join(flags['save_dir'], flags['desc'], 'checkpoints')
    if tf.train.latest_checkpoint(checkpoints) is None:
        raise InputError(f"--resume: no checkpoint in {checkpoints!r}: start the run without --resume "
                         "(with --save_every N to make checkpoints)")
    fix = "start the run again without --resume, or with another --desc"
    if not os.path.isfile(log_path):
        raise InputError(f"--resume: the run's log {log_path!r} is missing: {fix}")
    with open(log_path, encoding='utf-8', errors='replace') as f:
        lines = f.readlines()
    try:
        records = [json.loads(line) for line in lines]
    except json.JSONDecodeError as err:
        raise InputError(f"--resume: the run's log {log_path!r} is damaged (not JSON: {err.msg}): {fix}") from err
    if not records or not all(isinstance(r, dict) for r in records):
        raise InputError(f"--resume: the run's log {log_path!r} is damaged (not train.py's lines of flags and "
                         f"results): {fix}")
    changed = changed_flags(flags, records[0])
    if changed:
        raise InputError(f"--resume with flags that change the run: {', '.join(changed)}: resume with the flags "
                         f"in the first line of {log_path!r}, or start a new run with another --desc")


def changed_flags(flags, first):
    """`--flag value (the run used value)` for each of `flags` (a dict) that differs from the run whose log's first
    line is `first` (a dict of flags), leaving out those that do not change the run (RESUMABLE_CHANGES)."""
    return [f"--{k} {flags[k]} (the run used {v})" for k, v in first.items()
            if k in flags and k not in RESUMABLE_CHANGES and flags[k] != v]


def first_line_flags(log_path):
    """The flags in the first line of the log `log_path` (a dict), or None when the log is missing or its first line
    is not a JSON object."""
    try:
        with open(log_path, encoding='utf-8', errors='replace') as f:
            first = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    return first if isinstance(first, dict) else None


def check_outputs(flags, log_path, save=True, elsewhere=()):
    """Before the run of `flags` (a dict of the program's flags) writes anything: what a previous run left that this
    one would replace: its log `log_path`, its TensorBoard folder, with `save` its save folder (best parameters,
    checkpoints, ...), and the files of `elsewhere`, (flag, path) pairs of what it writes outside its --desc (a run
    of another --desc writes them too, such as the submissions; flag: the one that moves them). InputError naming
    them and the ways on (--resume when a checkpoint exists and its log's first line holds this run's flags, but for
    RESUMABLE_CHANGES; else it says that the checkpoint is of another run), another --desc or flag, --overwrite);
    with --overwrite, they are returned instead, for loop.start_run to remove once the run holds its locks. With
    --resume, nothing (check_resume checks the run)."""
    if flags['resume']:
        return []
    save_folder = os.path.join(flags['save_dir'], flags['desc'])
    own = [log_path, os.path.join(flags['log_dir'], flags['desc'])] + [save_folder] * save
    own = [path for path in own if holds_output(path)]
    others = [(flag, path) for flag, path in elsewhere if holds_output(path)]
    found = own + [path for _, path in others]
    if flags['overwrite'] or not found:
        return found
    ways = []
    try:
        checkpoint = tf.train.latest_checkpoint(os.path.join(save_folder, 'checkpoints'))
    except Exception:  # a damaged list of checkpoints: --resume would say so, not the guard
        checkpoint = None
    another = ''
    if own and checkpoint:
        first = first_line_flags(log_path)
        changed = None if first is None else changed_flags(flags, first)
        if changed == []:  # the checkpoint is of this very run (its flags but those that do not change the run)
            ways.append(f"continue that run with --resume (its checkpoint {checkpoint!r}, update "
                        f"{checkpoint.rsplit('-', 1)[-1]})")
        else:  # --resume would refuse it: say so here
            another = (f"; {save_folder!r} holds another run, which --resume cannot continue: " +
                       (f"its log {log_path!r} is missing or damaged" if changed is None else ', '.join(changed)))
    moves = (['--desc'] if own else []) + sorted({flag for flag, _ in others})
    ways += [f"start another with another {' and '.join(moves)}", 'replace them with --overwrite']
    raise InputError(f"a previous run wrote what this one would replace: {', '.join(map(describe_output, found))}"
                     f"{another}; {', '.join(ways[:-1])} or {ways[-1]}")


def guard_says(flags, log_path, save=True, elsewhere=()):
    """What check_resume or check_outputs would say of the outputs of the run of `flags` (a dict), read only: one
    phrase for a dry run (nothing is locked, removed or written)."""
    try:
        if flags['resume']:
            check_resume(flags, log_path)
            return 'nothing trained or written; the run would resume from the last checkpoint'
        found = check_outputs(flags, log_path, save, elsewhere)
    except InputError as err:
        return f'nothing trained or written; the run would stop: {err}'
    return 'nothing trained or written' + (f"; the run would replace (--overwrite) {', '.join(found)}" if found else '')


# Names that are not a run's outputs: its locks and utils.atomic_write's temporary files (hidden), and what an
# interrupted TensorFlow checkpoint leaves (lock_run removes those)
NOT_OUTPUTS = ('.*', '*.tmp*', 'ckpt-*_temp')


def is_output(name):
    """Whether a file or folder called `name` can be a run's output (it matches none of NOT_OUTPUTS)."""
    return not any(fnmatch.fnmatch(name, pattern) for pattern in NOT_OUTPUTS)


def holds_output(path):
    """Whether `path` is a file, or a folder holding a file at any depth, that is an output (is_output)."""
    if os.path.isfile(path):
        return True
    for folder, folders, files in os.walk(path):
        folders[:] = [name for name in folders if is_output(name)]
        if any(map(is_output, files)):
            return True
    return False


def describe_output(path, n=3):
    """`path` quoted; a folder followed by its first n outputs."""
    if not os.path.isdir(path):
        return repr(path)
    names = sorted(name + '/' * os.path.isdir(os.path.join(path, name)) for name in os.listdir(path)
                   if is_output(name))
    return f"{path!r} ({', '.join(names[:n])}{', ...' * (len(names) > n)})"


def remove_outputs(paths):
    """Remove what check_outputs found (--overwrite): the files, and what the folders hold but the entries whose
    name starts with '.' (the locks this run holds)."""
    for path in paths:
        if not os.path.isdir(path):
            os.remove(path)
            continue
        for name in os.listdir(path):
            entry = os.path.join(path, name)
            if not name.startswith('.'):
                shutil.rmtree(entry) if os.path.isdir(entry) and not os.path.islink(entry) else os.remove(entry)


def restore_checkpoint(checkpoint):
    """Restore the latest checkpoint of a CheckpointManager; InputError when it is damaged."""
    try:
        checkpoint.checkpoint.restore(checkpoint.latest_checkpoint).assert_consumed()
    except Exception as err:  # whatever TensorFlow's reader raises on a damaged file (OpError, IndexError, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"--resume: the checkpoint {checkpoint.latest_checkpoint!r} is damaged or of another model "
                         f"({first}): delete {checkpoint.directory!r} and start the run again without --resume"
                         ) from err


def save_checkpoint(checkpoint, n_updates, params):
    """checkpoint.save(n_updates); InputError naming the folder when the disk is full (`params` the model's
    variables, for the size it needs)."""
    try:
        checkpoint.save(n_updates)
    except (tf.errors.ResourceExhaustedError, tf.errors.UnknownError, OSError) as err:
        if not isinstance(err, tf.errors.ResourceExhaustedError) and 'No space left' not in str(err):
            raise
        needed = 3 * sum(p.numpy().nbytes for p in params)  # the parameters and Adam's two moments
        raise InputError(no_space(os.path.join(checkpoint.directory, f'ckpt-{n_updates}'), needed)) from err


def check_finite(n_update, cost, grad_norm):
    """InputError naming the update when its loss or gradient is not finite (in float32 the update has made the
    parameters junk: the run stops before it saves anything more)."""
    cost, grad_norm = float(cost), float(grad_norm)
    if not (math.isfinite(cost) and math.isfinite(grad_norm)):
        raise InputError(f"update {n_update}: the loss is {cost} and the gradient's norm {grad_norm}, not finite "
                         "numbers: the run stopped, keeping its last checkpoint and best_params.jl from before this "
                         "update; lower --lr or check the data")


class RunControl:
    """What a run holds while it is on (a context manager): locks on its folders, and SIGINT / SIGTERM.

    While `armed` (the training loop) the first signal sets `signum`, so that the loop stops at the next update
    boundary, saves and exits (at_boundary); unarmed, it raises Interrupted. Either way a second signal stops the
    program at once, without saving, whenever it comes: even while the main thread is inside TensorFlow (an update,
    a checkpoint being written), where Python's handlers wait for it to return. For that a thread reads the signals
    as they arrive (signal.set_wakeup_fd): it says at once what the first one will do, and ends the process on the
    second (status 128 + its number). After the first signal in the loop, the signal's default action comes back
    too (a later signal needs no Python at all).

    The training loop sets `pace` (seconds per update, None until known) after each update: the first signal's
    line says how long the stop will take. at_boundary keeps the line that says how to resume (`stopped`), and
    print_resume() prints it once: __exit__ calls it, after whatever the run printed while it stopped, so that it
    is the last line on screen; a loop that clears its progress bar on the way out may call it itself after that."""

    def __init__(self, resume_command):
        self.resume_command, self.signum, self.armed, self.locks = resume_command, None, False, []
        self.pace = None  # seconds per update, set by the training loop after each update
        self.stopped = None  # the line saying how to resume, once at_boundary has saved and stops the run
        self.n_signals, self.told = 0, False
        self._lock, self._watcher, self._pipe, self._previous_fd = threading.Lock(), None, None, None

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
            self._watch()
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        if self._pipe:
            signal.set_wakeup_fd(self._previous_fd)
            os.write(self._pipe[1], b'\0')  # 0: no signal, the watcher's cue to end
            self._watcher.join()
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
        for f in self.locks:
            f.close()
        self.print_resume()

    def _watch(self):
        """Start the thread that sees each signal as it arrives (a byte on the wakeup pipe)."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            self._previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        except (ValueError, OSError):  # not possible here: Python's handlers alone
            os.close(read), os.close(write)
            return
        self._pipe = (read, write)
        self._watcher = threading.Thread(target=self._watcher_loop, name='RunControl signals', daemon=True)
        self._watcher.start()

    def _watcher_loop(self):
        while True:
            try:
                data = os.read(self._pipe[0], 64)
            except InterruptedError:
                continue
            for signum in data:
                if signum == 0:
                    return
                if signum in (signal.SIGINT, signal.SIGTERM):
                    self.arrived(signum)

    def arrived(self, signum):
        """A signal has arrived (called at once, from the watcher thread): the second one ends the process now;
        the first one in the training loop says what will happen."""
        with self._lock:
            self.n_signals += 1
            if self.n_signals >= 2:
                sys.stderr.write(f"\n{signal.Signals(signum).name} again: stopped at once, without saving\n")
                sys.stderr.flush()
                os._exit(128 + signum)
            if self.armed:
                self.tell(signum)

    def tell(self, signum):
        """Print (once) what the first signal in the training loop does."""
        if self.told:
            return
        self.told = True
        pace = self.pace
        when = '' if pace is None else f" ({pace:.1f} s at the current pace)" if pace < 10 else \
            f" ({pace:.0f} s at the current pace)"
        again = 'Ctrl-C again' if signum == signal.SIGINT else f'another {signal.Signals(signum).name} or a Ctrl-C'
        tqdm.write(f"\n{signal.Signals(signum).name}: stopping after this update{when}, then saving; {again} to "
                   "stop now without saving", file=sys.stderr)

    def handle(self, signum, frame):
        """Python's handler (it runs when the main thread next runs Python code)."""
        if not self.armed:
            raise Interrupted(signum)
        if self.signum is None:
            self.signum = signum
        signal.signal(signum, signal.SIG_DFL)
        if not self._pipe:  # no watcher thread (it tells otherwise: not here, where tqdm's lock may be held)
            self.arrived(signum)

    def print_resume(self):
        """Print the line that says how to resume (at_boundary's `stopped`), once; nothing when the run did not
        stop on a signal."""
        if self.stopped:
            print(self.stopped, file=sys.stderr, flush=True)
            self.stopped = None

    def lock(self, folder, desc):
        """An exclusive lock on `folder`'s lock file, held until the run ends; InputError when another run holds
        it."""
        path = os.path.join(folder, '.lock')
        try:
            os.makedirs(folder, exist_ok=True)
            f = open(path, 'a')
        except OSError as err:
            raise InputError(f"cannot write in {folder!r} ({err.strerror}): choose a writable folder") from err
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise InputError(f"another run with --desc {desc} is writing in {folder!r}: wait for it to end, or "
                             "choose another --desc") from None
        self.locks.append(f)


class Interrupted(BaseException):
    """SIGINT or SIGTERM outside the training loop."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def at_boundary(control, checkpoint, n_updates, params, summaries, save):
    """Between two updates: save a checkpoint when `save` or when a signal came; after a signal, keep the line that
    says how to resume in control.stopped (RunControl.print_resume prints it) and exit with 128 + the signal's
    number."""
    signum = control.signum  # read once: a signal that comes during the save stops the run at the next boundary
    if save or signum:
        save_checkpoint(checkpoint, n_updates, params)
    if signum:
        summaries.flush()
        control.stopped = (f"{signal.Signals(signum).name}: stopped after update {n_updates}, saved in "
                           f"{checkpoint.directory!r}; resume with: {control.resume_command}")
        sys.exit(128 + signum)  # the line is printed by control.print_resume(): at the latest when control exits


def lock_run(control, desc, log_dir, save_dir):
    """Lock the run's folders (its TensorBoard folder and its save folder) against a second run with the same
    desc, then remove what this run's interrupted writes left: temporary files of utils.atomic_write and
    TensorFlow's unfinished checkpoints."""
    save_folder = os.path.join(save_dir, desc)
    control.lock(os.path.join(log_dir, desc), desc)
    control.lock(save_folder, desc)
    checkpoints = os.path.join(save_folder, 'checkpoints')
    patterns = [(log_dir, f'.{glob.escape(desc)}.jsonl.*.tmp'), (save_folder, '.*.tmp'),
                (checkpoints, '*.tmp*'), (checkpoints, 'ckpt-*_temp')]
    for folder, pattern in patterns:
        for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def command_path(program):
    """The path of `program` (a program of the project's top folder) as the user types it from the current folder:
    relative below it, else absolute."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), program)
    relative = os.path.relpath(path)
    return path if relative.startswith('..') else relative


def run_with_control(fn, args, argv, program):
    """fn(args, control): the training program `program`'s run of checked `args` (from its command line `argv`),
    holding its locks and its signals (RunControl); one `error:` line and status 2 on bad input, 128 + the
    signal's number when one stops it outside the training loop."""
    with RunControl(resume_command(argv, program)) as control:
        try:
            exit_on_input_error(fn, args, control)
        except Interrupted as stop:  # outside the training loop: nothing to save
            print(f"{stop}: stopped outside the training loop, where a run saves nothing", file=sys.stderr)
            sys.exit(128 + stop.signum)


def resume_command(argv, program='train.py'):
    """The command line that resumes the run of `program`'s (a training program of the project's top folder) arguments
    `argv` (without --overwrite: the run resumed is the one it started)."""
    argv = [arg for arg in argv if arg != '--overwrite']
    return 'python ' + shlex.join([command_path(program)] + argv + ([] if '--resume' in argv else ['--resume']))
