"""GPT-1's weight files, for every program and without the network: the original's layout (params_shapes.json and
the flat shards params_0.npy ..., read as the original reads them), the special-token rows drawn as the original
draws them, --n_transfer's choice of arrays, and the best parameters: best_params.jl (written with joblib as the
original; read without running any code the file could hold) and the same arrays as best_params.safetensors."""
import contextlib
import glob
import json
import os
import pickle
import re
import sys

import joblib
import numpy as np
import safetensors.numpy
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

from utils import InputError, atomic_write, check_weights_folder, download_command

# The 12 arrays of a layer, in the original's order (params_shapes.json, best_params.jl, Model.params).
LAYER_PARAMS = ['attn/c_attn/w', 'attn/c_attn/b', 'attn/c_proj/w', 'attn/c_proj/b', 'ln_1/g', 'ln_1/b',
                'mlp/c_fc/w', 'mlp/c_fc/b', 'mlp/c_proj/w', 'mlp/c_proj/b', 'ln_2/g', 'ln_2/b']


def special_embeddings(n_special, n_embd):
    """The rows of the special tokens, drawn from numpy's global generator exactly as the original (float64
    normal times 0.02, then cast): a run seeded with --seed gets the original's rows."""
    return (np.random.randn(n_special, n_embd) * 0.02).astype(np.float32)


def shard_paths(model_dir):
    """params_0.npy, params_1.npy, ... in `model_dir`: however many there are, numbered without a gap."""
    found = {int(m.group(1)): path for path in glob.glob(os.path.join(model_dir, 'params_*.npy'))
             if (m := re.fullmatch(r'params_(\d+)\.npy', os.path.basename(path)))}
    if not found:
        raise InputError(f"no weight shards params_0.npy, params_1.npy, ... in {model_dir!r}: "
                         f"run `{download_command(model_dir)}`")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise InputError(f"weight shard {os.path.join(model_dir, f'params_{missing[0]}.npy')!r} is missing "
                         f"(shards are numbered from 0 without a gap): run `{download_command(model_dir)}`")
    return [found[i] for i in range(len(found))]


def load_shard(path):
    """One shard: a flat float32 array; InputError when the file is truncated or of another kind."""
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise InputError(f"weight shard {path!r} is truncated or not a .npy file ({err}): "
                         f"run `{download_command(os.path.dirname(path))}` (it replaces a damaged file)") from err
    if a.dtype != np.float32 or a.ndim != 1:
        raise InputError(f"weight shard {path!r} holds a {a.dtype} array of shape {a.shape}, expected a flat "
                         f"float32 array: run `{download_command(os.path.dirname(path))}` (it replaces a damaged file)")
    return a


def read_openai_params(model_dir):
    """The arrays of a model folder in the original's layout as they are stored, in params_shapes.json's order:
    positions (n_pos, n_embd), tokens (n_vocab, n_embd), then 12 per layer (LAYER_PARAMS)."""
    shapes_path = check_weights_folder(model_dir)
    try:
        with open(shapes_path, encoding='utf-8') as f:
            shapes = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{shapes_path!r} is not a JSON file ({err}): "
                         f"run `{download_command(model_dir)}`") from err
    if not (isinstance(shapes, list) and len(shapes) > 2 and (len(shapes) - 2) % len(LAYER_PARAMS) == 0 and all(
            isinstance(shape, list) and all(type(n) is int and n > 0 for n in shape) for shape in shapes)
            and len(shapes[0]) == len(shapes[1]) == 2 and shapes[0][1] == shapes[1][1]):
        raise InputError(f"{shapes_path!r} is not the list of the pretrained arrays' shapes (positions, tokens, then "
                         f"{len(LAYER_PARAMS)} per layer): run `{download_command(model_dir)}`")
    flat = np.concatenate([load_shard(path) for path in shard_paths(model_dir)], 0)
    offsets = np.cumsum([np.prod(shape) for shape in shapes])
    if len(flat) != offsets[-1]:
        raise InputError(f"the shards in {model_dir!r} hold {len(flat)} values but params_shapes.json describes "
                         f"{offsets[-1]}: a shard is missing or from another model; "
                         f"run `{download_command(model_dir)}`")
    return [p.reshape(shape) for p, shape in zip(np.split(flat, offsets)[:-1], shapes)]


def load_openai_params(model_dir, n_ctx, n_special):
    """The pretrained arrays in the original's order, ready to assign: [we, then 12 per layer], where
    we = (token rows, n_special fresh rows, the first n_ctx position rows), shape (n_vocab + n_special + n_ctx, n_embd)."""
    params = read_openai_params(model_dir)
    positions, tokens = params[0], params[1]
    if n_ctx > len(positions):
        raise InputError(f"n_ctx {n_ctx} is larger than the {len(positions)} positions of the pretrained weights: "
                         f"pass --n_ctx {len(positions)} or less")
    we = np.concatenate([tokens, special_embeddings(n_special, tokens.shape[1]), positions[:n_ctx]], 0)
    return [we] + params[2:]


def openai_shapes(n_vocab, n_embd, n_layer, n_pos=512):
    """params_shapes.json of the original's layout: positions (n_pos, n_embd), tokens (n_vocab, n_embd), then the 12
    arrays of each layer (LAYER_PARAMS), the weights of its 1x1 convolutions as (1, nx, nf)."""
    shapes = [[n_pos, n_embd], [n_vocab, n_embd]]
    for _ in range(n_layer):
        shapes += [[1, n_embd, 3 * n_embd], [3 * n_embd], [1, n_embd, n_embd], [n_embd], [n_embd], [n_embd],
                   [1, n_embd, 4 * n_embd], [4 * n_embd], [1, 4 * n_embd, n_embd], [n_embd], [n_embd], [n_embd]]
    return shapes


def save_openai_params(model_dir, arrays, n_shards=10):
    """Write `arrays` (float32, in params_shapes.json's order: positions, tokens, then 12 per layer) as the
    original's files in `model_dir`: params_shapes.json and their concatenation cut into n_shards flat shards
    params_0.npy ... (load_openai_params reads any number). The files are renamed into place only when all are
    written (write_together), so that a failure leaves the folder's previous files whole. Shards of an earlier save
    beyond n_shards are removed."""
    shapes = [list(a.shape) for a in arrays]
    flat = np.concatenate([np.asarray(a, np.float32).ravel() for a in arrays])
    parts = np.array_split(flat, n_shards)
    write_together([(os.path.join(model_dir, 'params_shapes.json'), 'w', lambda f: json.dump(shapes, f))] +
                   [(os.path.join(model_dir, f'params_{i}.npy'), 'wb', lambda f, part=part: np.save(f, part))
                    for i, part in enumerate(parts)])
    for path in shard_paths(model_dir)[n_shards:]:
        os.remove(path)


def write_together(writes):
    """Write several files as one: `writes` is a list of (path, mode, write(f)); each is written to a temporary
    file beside its path (utils.atomic_write) and all are renamed into place only when every one is written, so
    that a failure (or Ctrl-C) leaves every previous file whole and no temporary file behind."""
    stacks = [contextlib.ExitStack() for _ in writes]
    try:
        for stack, (path, mode, write) in zip(stacks, writes):
            write(stack.enter_context(atomic_write(path, mode)))
    except BaseException:
        for stack in stacks:  # each removes its temporary file: nothing is renamed
            stack.__exit__(*sys.exc_info())
        raise
    for stack in stacks:
        stack.close()  # renames into place


BPE_FILES = ('encoder_bpe_40000.json', 'vocab_40000.bpe')  # their names in a model folder (--model_dir)


def save_model_folder(folder, we, layers, n_vocab, encoder_path, bpe_path, n_shards=10):
    """A complete model folder in the original's layout from a pre-trained language model: its `we` (n_vocab token
    rows, then the position rows: no special rows) and `layers` (12 arrays per layer, LAYER_PARAMS' order) as
    params_shapes.json and params_0.npy ... (positions first, then tokens, then the layers: save_openai_params),
    and the BPE files copied in under their usual names, so that --model_dir reads the folder as it reads the
    published one."""
    for name, path in zip(BPE_FILES, (encoder_path, bpe_path)):
        target = os.path.join(folder, name)
        with open(path, 'rb') as f:
            content = f.read()
        if os.path.isfile(target):
            with open(target, 'rb') as f:
                if f.read() == content:
                    continue
        with atomic_write(target, 'wb') as f:
            f.write(content)
    we = np.asarray(we, np.float32)
    save_openai_params(folder, [we[n_vocab:], we[:n_vocab]] + [np.asarray(a, np.float32) for a in layers], n_shards)


def transfer(init_params, n_transfer):
    """The arrays that --n_transfer loads: none for -1, else we and the first n_transfer layers."""
    if n_transfer == -1:
        return []
    n_layers = (len(init_params) - 1) // len(LAYER_PARAMS)
    if not 0 <= n_transfer <= n_layers:
        raise InputError(f"--n_transfer {n_transfer} asks for more layers than the {n_layers} of the pretrained "
                         f"weights: pass --n_transfer {n_layers} or less (-1 loads nothing)")
    return init_params[:1 + len(LAYER_PARAMS) * n_transfer]


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


def save_params(params, path):
    """best_params.jl as the original wrote it: a joblib dump of the list of float32 arrays `params` (numpy arrays
    or variables, in the original's order), written atomically."""
    with atomic_write(path, 'wb') as f:
        _dump_joblib(params, f)


def _dump_joblib(params, f):
    joblib.dump([as_array(p) for p in params], f)


def as_array(p):
    """A numpy array of a numpy array or a variable."""
    return p.numpy() if hasattr(p, 'numpy') else np.asarray(p)


def save_best_params(params, path):
    """The best parameters at `path` (best_params.jl, as the original) and, beside it, the same arrays as
    best_params.safetensors (write_safetensors), the two renamed into place together."""
    arrays = [as_array(p) for p in params]
    write_together([(path, 'wb', lambda f: _dump_joblib(arrays, f)),
                    (safetensors_path(path), 'wb', lambda f: write_safetensors(f, arrays))])


def safetensors_path(path):
    """best_params.safetensors beside best_params.jl `path`."""
    return os.path.splitext(path)[0] + '.safetensors'


def param_names(n_params):
    """The original's variable names of a model's n_params parameters, in its order: model/we, then
    model/h{l}/<LAYER_PARAMS> for each layer l, then model/clf/w, model/clf/b when n_params = 1 + 12 n_layer + 2
    (without them when n_params = 1 + 12 n_layer)."""
    n_layer, rest = divmod(n_params - 1, len(LAYER_PARAMS))
    if rest == 2:
        return param_names(n_params - 2) + ['model/clf/w', 'model/clf/b']
    if rest or n_layer < 1:
        raise ValueError(f"{n_params} arrays are not a model's parameters (1 + {len(LAYER_PARAMS)} per layer, + 2)")
    return ['model/we'] + [f'model/h{l}/{k}' for l in range(n_layer) for k in LAYER_PARAMS]


def write_safetensors(f, arrays):
    """The parameter arrays as a safetensors file into the binary file `f`, each named by param_names; the metadata
    repeats the order. Written array by array, in the file format that safetensors.numpy.save writes (an 8-byte
    little-endian header length, a JSON header padded with spaces to a multiple of 8, then the raw little-endian
    float32 data, the tensors sorted by name), so that saving holds no second copy of the parameters in memory
    (safetensors.numpy.save builds the whole file in memory: 1.4 GB more peak RSS at GPT-1's size)."""
    names = param_names(len(arrays))
    data = {name: np.ascontiguousarray(a, '<f4') for name, a in zip(names, arrays)}
    header, offset = {'__metadata__': {'format': 'np', 'order': ' '.join(names)}}, 0
    for name in sorted(data):
        header[name] = {'dtype': 'F32', 'shape': list(data[name].shape),
                        'data_offsets': [offset, offset + data[name].nbytes]}
        offset += data[name].nbytes
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)
    f.write(len(text).to_bytes(8, 'little'))
    f.write(text)
    for name in sorted(data):
        f.write(memoryview(data[name]).cast('B'))


def load_safetensors_params(path):
    """The arrays of a best_params.safetensors, in the original's order (recovered from their names), read with
    safetensors.numpy: the file holds a JSON header and raw numbers, nothing that can run."""
    what = "a best_params.safetensors that train.py wrote (float32 arrays named model/we, model/h0/..., model/clf/w)"
    try:
        with open(path, 'rb') as f:
            tensors = safetensors.numpy.load(f.read())
    except Exception as err:  # safetensors' own error on a damaged file, or the file system's
        raise InputError(f"{path!r} is not {what} ({type(err).__name__}: {err})") from err
    try:
        names = param_names(len(tensors))
    except ValueError:
        names = []
    if sorted(names) != sorted(tensors):
        odd = sorted(set(tensors) - set(names)) or sorted(set(names) - set(tensors))
        raise InputError(f"{path!r} holds {len(tensors)} arrays, not {what}: {odd[0] if odd else 'none'!r} "
                         "is unexpected or missing")
    for name in names:
        if tensors[name].dtype != np.float32:
            raise InputError(f"{path!r}: {name} is {tensors[name].dtype}, not {what}")
    return [tensors[name] for name in names]


def load_params(path, shapes=None):
    """The list of float32 arrays in the best parameters `path`: a best_params.jl (a joblib dump, as the original
    saved it) or, by its extension, a best_params.safetensors; read without running any code the file could hold.
    InputError when it is anything else, or, given `shapes` (the model's parameter shapes, in order), holds other
    arrays."""
    if not os.path.isfile(path):
        raise InputError(f"{path!r} not found: give the path of a best_params.jl or best_params.safetensors "
                         "that train.py wrote")
    params = load_safetensors_params(path) if path.endswith('.safetensors') else load_joblib_params(path)
    if shapes is not None:
        check_shapes(path, params, shapes)
    return params


def load_joblib_params(path):
    """The list of float32 arrays in the best_params.jl `path` (a joblib dump), read by a restricted unpickler."""
    what = ("a best_params.jl that train.py wrote: a list of float32 arrays saved with joblib (no compression), "
            "the model's parameters in order")
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
