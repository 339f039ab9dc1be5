"""Small helpers shared by more than one file: errors, paths, atomic writes, batching, logging,
start-up. The standard library alone."""
import argparse
import contextlib
import errno
import json
import os
import shlex
import sys
import tempfile
import time


class InputError(Exception):
    """Bad input from the user (a missing file, a flag that disagrees with the data): the message says what is
    wrong and how to fix it. train.py prints it on one line and exits with status 2."""


def exit_on_input_error(fn, *args):
    """fn(*args); an InputError ends the program with its message on one line (`error: ...`) and status 2."""
    try:
        return fn(*args)
    except InputError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeping the docstring's layout and showing each flag's default, except an off switch or a None
    (whose help says what it means)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


@contextlib.contextmanager
def tensorflow_start_up_hidden(device_init=False):
    """Inside the block, what C++ libraries write to stderr goes to /dev/null: TensorFlow's start-up lines, which
    its libraries print while loading, before any log level applies. Only while TF_CPP_MIN_LOG_LEVEL (set to 2
    here unless the user set it) is 2 or more. device_init: the block initialises the devices; hidden only on a
    machine without an NVIDIA driver, where `failed call to cuInit` only means that there is no GPU."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    hide = os.environ['TF_CPP_MIN_LOG_LEVEL'].strip() not in ('0', '1')
    if device_init:
        hide = hide and not os.path.exists('/proc/driver/nvidia/version')
    if not hide:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def download_command(model_dir, only=None):
    """The download.py command that fetches the pretrained files (only='bpe': the BPE files) into model_dir."""
    return ' '.join(['python download.py'] + (['--only', only] if only else []) +
                    ['--model_dir', shlex.quote(model_dir or '.')])


def check_weights_folder(model_dir):
    """The path of params_shapes.json in the pretrained weights' folder `model_dir`; InputError when the folder or
    the file is missing (the programs check it before their heavy imports, formats/weights.py before reading a
    shard)."""
    if not os.path.isdir(model_dir):
        raise InputError(f"the weights folder {model_dir!r} does not exist: run `{download_command(model_dir)}` to "
                         "fetch the pretrained GPT-1 into it (its BPE files and weights, 466 MB; train.py "
                         "--n_transfer -1 trains from scratch without the weights)")
    shapes_path = os.path.join(model_dir, 'params_shapes.json')
    if not os.path.isfile(shapes_path):
        raise InputError(f"{shapes_path!r} not found: the pretrained weights are not in {model_dir!r}: run "
                         f"`{download_command(model_dir)}` to fetch them (466 MB)")
    return shapes_path


def missing_bpe_file(path, flag, with_weights):
    """The message for the BPE file `path` (given by `flag`) not found: the download.py command that fetches it into
    its folder, with the pretrained weights too when the run needs them there (`with_weights`); it says when the
    folder itself does not exist."""
    folder = os.path.dirname(path) or '.'
    where = '' if os.path.isdir(folder) else f" (the folder {folder!r} does not exist)"
    what = 'the BPE files and the pretrained weights (466 MB)' if with_weights else 'the BPE files'
    return (f"BPE file {path!r} not found{where}: run `{download_command(folder, None if with_weights else 'bpe')}` "
            f"to fetch {what}, or give the file with {flag}")


def round_up(n, multiple):
    """The smallest multiple of `multiple` that is at least n."""
    return -(-n // multiple) * multiple


def make_path(f):
    """Create the parent folder of `f` and return `f`."""
    d = os.path.dirname(f)
    if d:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create the output folder {d!r} ({err.strerror}): "
                             "choose a writable folder with the matching --*_dir flag") from err
    return f


@contextlib.contextmanager
def atomic_write(path, mode='w'):
    """Yield a file object on a temporary file beside `path`, renamed onto `path` only when the block exits
    without error: a crash never leaves a truncated file in place of a good one."""
    make_path(path)
    d = os.path.dirname(path) or '.'
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    except OSError as err:
        raise InputError(f"cannot write {path!r} ({err.strerror}): choose a writable folder") from err
    written = 0
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            written = f.tell()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private: give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError, ValueError):
            written = written or os.path.getsize(tmp)
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InputError(no_space(path, written)) from err
        raise


def no_space(path, needed):
    """The message for a full disk while writing `path`, which needs more than `needed` bytes."""
    size = f'{needed / 2 ** 20:.1f} MB' if needed >= 2 ** 20 else f'{needed / 2 ** 10:.1f} KB'
    return (f"no space left to write {path!r}: it needs more than {size}; free space in "
            f"{os.path.dirname(os.path.abspath(path))!r} or choose another folder for it")


def batches_of(rows, n_batch, full_only=False):
    """Consecutive runs of n_batch of the array `rows` (the last one shorter, unless full_only)."""
    end = len(rows) - len(rows) % n_batch if full_only else len(rows)
    for i in range(0, end, n_batch):
        yield rows[i:i + n_batch]


class ResultLogger:
    """A jsonl log: the first line holds the run's flags, then one line per `log` call; each line gets `time`.
    The whole file is rewritten atomically at every call (it holds a few lines), so it is never left cut."""

    def __init__(self, path, **kwargs):
        self.path = path
        self.lines = []
        self.log(**kwargs)

    @classmethod
    def resume(cls, path, n_logged):
        """The log of an interrupted run, keeping its first line and its first n_logged results."""
        logger = cls.__new__(cls)
        logger.path = path
        with open(path) as f:
            logger.lines = f.readlines()[:1 + n_logged]
        if len(logger.lines) < 1 + n_logged:
            raise InputError(f"--resume: the run's log {path!r} has {len(logger.lines) - 1} results but its checkpoint "
                             f"{n_logged}: it is cut or from another run; start the run again without --resume")
        return logger

    @property
    def records(self):
        """The lines after the first (the results), as dicts."""
        return [json.loads(line) for line in self.lines[1:]]

    def log(self, **kwargs):
        kwargs.setdefault('time', time.time())
        self.lines.append(json.dumps(kwargs) + '\n')
        with atomic_write(self.path) as f:
            f.writelines(self.lines)
