"""Small helpers shared by more than one file: errors, paths, atomic writes, batching, logging."""
import contextlib
import json
import os
import sys
import tempfile
import time

from tqdm import tqdm


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
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private: give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def encode_dataset(splits, encoder):
    """Encode every field of `splits` (a nested tuple of splits, each a tuple of fields) that is a list of str
    with `encoder.encode`; other fields (labels) pass through."""
    encoded_splits = []
    for split in splits:
        fields = []
        for field in split:
            if len(field) and isinstance(field[0], str):
                field = encoder.encode(field)
            fields.append(field)
        encoded_splits.append(fields)
    return encoded_splits


def iter_data(*datas, n_batch=128, truncate=False, verbose=False, max_batches=float('inf')):
    """Yield consecutive slices of n_batch rows of each array in `datas` (a tuple of slices when there are
    several); with truncate, only full batches."""
    n = len(datas[0])
    if truncate:
        n = (n // n_batch) * n_batch
    n = min(n, max_batches * n_batch)
    n_batches = 0
    for i in tqdm(range(0, n, n_batch), total=n // n_batch, file=sys.stderr, ncols=80, leave=False,
                  disable=not verbose):
        if n_batches >= max_batches:
            return
        if len(datas) == 1:
            yield datas[0][i:i + n_batch]
        else:
            yield tuple(d[i:i + n_batch] for d in datas)
        n_batches += 1


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
        return logger

    def log(self, **kwargs):
        kwargs.setdefault('time', time.time())
        self.lines.append(json.dumps(kwargs) + '\n')
        with atomic_write(self.path) as f:
            f.writelines(self.lines)
