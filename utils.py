"""Small helpers shared by more than one file: errors, paths, atomic writes, safe loading, batching, logging,
start-up."""
import argparse
import contextlib
import errno
import json
import os
import pickle
import shlex
import sys
import tempfile
import time

import numpy as np
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler
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


def encode_dataset(splits, encoder, names=('train', 'valid', 'test')):
    """Encode every field of `splits` (a nested tuple of splits, each a tuple of fields) that is a list of str
    with `encoder.encode`, its bar labelled with the split's name from `names`; other fields (labels) pass
    through."""
    encoded_splits = []
    for name, split in zip(names, splits):
        fields = []
        for k, field in enumerate(split):
            if len(field) and isinstance(field[0], str):
                field = encoder.encode(field, desc=f'encoding {name} {k + 1}/{len(split)}')
            fields.append(field)
        encoded_splits.append(fields)
    return encoded_splits


def save_encoded(path, splits):
    """Write encoded splits (as encode_dataset returns them) to the .npz `path`, a format that holds only
    numbers: field j of split i as `s{i}_f{j}_ids` (every text's ids concatenated) and `s{i}_f{j}_offsets`
    (where each text starts, and the end), or, for labels, `s{i}_f{j}_labels`."""
    arrays = {}
    for i, split in enumerate(splits):
        for j, field in enumerate(split):
            if isinstance(field, np.ndarray):
                arrays[f's{i}_f{j}_labels'] = field
            else:
                arrays[f's{i}_f{j}_ids'] = np.array([t for text in field for t in text], np.int32)
                arrays[f's{i}_f{j}_offsets'] = np.cumsum([0] + [len(text) for text in field], dtype=np.int64)
    with atomic_write(path, 'wb') as f:
        np.savez(f, **arrays)


def load_encoded(path, like):
    """The splits saved by save_encoded, ids as lists of lists of int; ValueError unless the file holds exactly
    the fields of `like` (the splits before encoding) with as many texts each, the same labels, and ids in
    [0, 2**31). Nothing in the file is unpickled."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    splits = []
    for i, split in enumerate(like):
        fields = []
        for j, field in enumerate(split):
            key = f's{i}_f{j}_'
            if isinstance(field, np.ndarray):
                labels = arrays.pop(key + 'labels')
                if labels.dtype != field.dtype or not np.array_equal(labels, field):
                    raise ValueError(f'{key}labels differ from the data set')
                fields.append(labels)
                continue
            ids, offsets = arrays.pop(key + 'ids'), arrays.pop(key + 'offsets')
            if (ids.dtype != np.int32 or ids.ndim != 1 or offsets.shape != (len(field) + 1,) or offsets[0] != 0
                    or offsets[-1] != len(ids) or np.any(np.diff(offsets) < 0) or np.any(ids < 0)):
                raise ValueError(f'{key}ids and {key}offsets are not {len(field)} texts of ids')
            ids = ids.tolist()
            fields.append([ids[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())])
        splits.append(fields)
    if arrays:
        raise ValueError(f"fields not in the data set: {', '.join(sorted(arrays))}")
    return splits


class _Float32ArrayWrapper(NumpyArrayWrapper):
    """joblib's placeholder of an array in its pickle, read only when it describes a float32 array that the rest
    of the file can hold (an object array would be read with pickle)."""

    def read(self, unpickler, *args, **kwargs):
        shape = getattr(self, 'shape', None)
        if not (isinstance(getattr(self, 'dtype', None), np.dtype) and self.dtype.newbyteorder('=') == np.float32
                and isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
                and getattr(self, 'subclass', None) is np.ndarray and getattr(self, 'order', None) in ('C', 'F')):
            raise pickle.UnpicklingError('an array that is not a plain float32 array')
        f = unpickler.file_handle
        if np.prod(shape, dtype=np.float64) * 4 > os.fstat(f.fileno()).st_size - f.tell():
            raise pickle.UnpicklingError(f'an array of shape {shape} larger than the file')
        return super().read(unpickler, *args, **kwargs)


class _ParamsUnpickler(NumpyUnpickler):
    """joblib's unpickler that builds nothing but what `joblib.dump` of a list of float32 arrays holds: lists,
    joblib's array placeholders, numpy's dtype and ndarray (the placeholders' class). numpy 1 and 2 both write
    them as `numpy.dtype` and `numpy.ndarray` (GLOBALS); their homes in numpy 1 (`numpy.core`) and 2
    (`numpy._core`) are accepted too. Any other global, the path by which a pickle runs code, is refused before
    its module is imported."""
    GLOBALS = {('joblib.numpy_pickle', 'NumpyArrayWrapper'): NumpyArrayWrapper,
               ('numpy', 'dtype'): np.dtype, ('numpy', 'ndarray'): np.ndarray}
    ALIASES = {(core, name): obj for core in ('numpy.core.multiarray', 'numpy._core.multiarray')
               for name, obj in [('dtype', np.dtype), ('ndarray', np.ndarray)]}

    def find_class(self, module, name):
        allowed = {**self.GLOBALS, **self.ALIASES}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f'it refers to {module}.{name}')
        found = super().find_class(module, name)
        if found is not allowed[module, name]:
            raise pickle.UnpicklingError(f'{module}.{name} is not what it should be')
        return _Float32ArrayWrapper if found is NumpyArrayWrapper else found


def load_params(path, shapes=None):
    """The list of float32 arrays in the best_params.jl `path` (a joblib dump, as the original saved it), read
    without running any code the file could hold; InputError when it is anything else, or, given `shapes`
    (the model's parameter shapes, in order), holds other arrays."""
    what = ("a best_params.jl that train.py wrote: a list of float32 arrays saved with joblib (no compression), "
            "the model's parameters in order")
    if not os.path.isfile(path):
        raise InputError(f"{path!r} not found: give the path of {what}")
    try:
        with open(path, 'rb') as f:
            if f.read(1) != b'\x80':
                raise pickle.UnpicklingError('it is not a pickle of protocol 2 or more')
            f.seek(0)
            params = _ParamsUnpickler(path, f, ensure_native_byte_order=True).load()
    except Exception as err:  # whatever a damaged or hostile file makes the unpickler raise
        raise InputError(f"{path!r} is not {what} ({type(err).__name__}: {err}); nothing in it was run") from err
    if not (isinstance(params, list) and params and all(isinstance(p, np.ndarray) for p in params)):
        held = type(params).__name__
        if isinstance(params, list):
            held = f"list of {', '.join(sorted({type(p).__name__ for p in params})) or 'nothing'}"
        raise InputError(f"{path!r} holds a {held}, not {what}")
    if shapes is not None:
        check_shapes(path, params, shapes)
    return params


def check_shapes(path, params, shapes):
    """InputError unless the arrays `params` read from `path` have the model's parameter shapes `shapes`."""
    shapes = [tuple(s) for s in shapes]
    if len(params) != len(shapes):
        raise InputError(f"{path!r} holds {len(params)} arrays but the model has {len(shapes)} parameters: "
                         "give a best_params.jl of a model built with the same --n_layer")
    for k, (p, shape) in enumerate(zip(params, shapes)):
        if p.shape != shape:
            raise InputError(f"{path!r}: array {k} has shape {p.shape} but the model's parameter {k} has {shape}: "
                             "build the model with the flags (--n_embd, --n_layer, --n_ctx, the vocabulary) of the "
                             "run that saved it")


def iter_data(*datas, n_batch=128, truncate=False, verbose=False, max_batches=float('inf'), desc=None):
    """Yield consecutive slices of n_batch rows of each array in `datas` (a tuple of slices when there are
    several); with truncate, only full batches. verbose: a bar labelled `desc`, counting examples."""
    n = len(datas[0])
    if truncate:
        n = (n // n_batch) * n_batch
    n = min(n, max_batches * n_batch)
    n_batches = 0
    with tqdm(total=n, desc=desc, unit='ex', file=sys.stderr, ncols=80, leave=False, disable=not verbose) as bar:
        for i in range(0, n, n_batch):
            if n_batches >= max_batches:
                return
            if len(datas) == 1:
                yield datas[0][i:i + n_batch]
            else:
                yield tuple(d[i:i + n_batch] for d in datas)
            n_batches += 1
            bar.update(min(n_batch, n - i))


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

    def log(self, **kwargs):
        kwargs.setdefault('time', time.time())
        self.lines.append(json.dumps(kwargs) + '\n')
        with atomic_write(self.path) as f:
            f.writelines(self.lines)
