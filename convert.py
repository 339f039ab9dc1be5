"""GPT-1's weights between this project and Hugging Face's transformers, without torch and without unpickling; and
out as a TensorFlow SavedModel.

    python convert.py --from_hf HF_DIR --out MODEL_DIR
    python convert.py --to_hf save/rocstories/best_params.jl --out HF_DIR --n_head 12
    python convert.py --to_hf model/ --out HF_DIR
    python convert.py --to_savedmodel save/rocstories/best_params.jl --out SAVEDMODEL_DIR --example request.json

--from_hf: a folder that transformers' save_pretrained wrote for OpenAIGPTModel or OpenAIGPTLMHeadModel
(model.safetensors, config.json, vocab.json and merges.txt, as openai-community/openai-gpt on the hub) -> a model
folder in the original's layout (params_shapes.json, params_0.npy .. params_9.npy, encoder_bpe_40000.json,
vocab_40000.bpe) for --model_dir. The vocabulary must be the original's (its content is compared).

--to_hf: a fine-tuned multiple-choice model (train.py's best_params.jl or best_params.safetensors of rocstories or
race) -> an OpenAIGPTDoubleHeadsModel folder whose mc_logits, given the port's token ids and mc_token_ids at each
sequence's _classify_ token, are the port's classifier logits; a model folder in the original's layout -> an
OpenAIGPTLMHeadModel folder. The arrays keep no n_head, activation nor dropouts: they come from the flags, else
from the run's log (LOG_DIR/<the name of PARAMS' folder>.jsonl, as train.py writes save/{desc}/ and
log/{desc}.jsonl), else train.py's defaults.

--to_savedmodel: the best parameters of any task (its --dataset from the flags or the run's log), or a model folder
in the original's layout (the language model) -> a TensorFlow SavedModel (formats/savedmodel.py: the signatures)
that tf.saved_model.load, saved_model_cli and TF Serving read without this project. --example FILE writes a request
(TF Serving's REST body) for it, a sample text encoded with text_utils.py.

Nothing is written unless every input is right: the output folder is written under a temporary name and renamed
into place at the end; --out must be a new (or empty) folder.
"""
import argparse
import hashlib
import json
import os
import shutil
import tempfile

from engine.flags import CHOICES, FLAGS, add_flags
from utils import HelpFormatter, InputError, atomic_write, exit_on_input_error

# The SHA-256 of the original's two BPE files (download.py's table; a test checks that they agree): a vocabulary is
# the original's when, written as the original's files are, it gives these exact bytes.
ORIGINAL_BPE = {'encoder_bpe_40000.json': 'fdf49b19e7de236852091da09b84a7a3cd5e7b0e79916376cf45f6b8127b8078',
                'vocab_40000.bpe': '0ea9b51ae695073cd871e0358f7016311d671a7ff3963e367d5236522f294725'}
# A layer's arrays: the original's name (weights.LAYER_PARAMS' order) -> transformers' name under h.{l}.
HF_LAYER = {'attn/c_attn/w': 'attn.c_attn.weight', 'attn/c_attn/b': 'attn.c_attn.bias',
            'attn/c_proj/w': 'attn.c_proj.weight', 'attn/c_proj/b': 'attn.c_proj.bias',
            'ln_1/g': 'ln_1.weight', 'ln_1/b': 'ln_1.bias',
            'mlp/c_fc/w': 'mlp.c_fc.weight', 'mlp/c_fc/b': 'mlp.c_fc.bias',
            'mlp/c_proj/w': 'mlp.c_proj.weight', 'mlp/c_proj/b': 'mlp.c_proj.bias',
            'ln_2/g': 'ln_2.weight', 'ln_2/b': 'ln_2.bias'}
HF_BUFFERS = ('attn.bias', 'attn.masked_bias')  # per layer: the causal mask that older transformers saved
HF_AFN = {'gelu': 'gelu', 'relu': 'relu', 'swish': 'swish'}  # --afn -> config.json's afn (transformers' "gelu" is
PORT_AFN = {'gelu': 'gelu', 'relu': 'relu', 'swish': 'swish', 'silu': 'swish'}  # the tanh form, as the original's)
MULTIPLE_CHOICE = ('rocstories', 'race')  # the tasks of shape multiple_choice (finetuning/tasks.py; a test checks)
SPECIAL_TOKENS = ('_start_', '_delimiter_', '_classify_')  # text_utils.Vocab's ids n_vocab, + 1, + 2: tokenizer's names
RUN_FLAGS = ('n_head', 'afn', 'embd_pdrop', 'attn_pdrop', 'resid_pdrop', 'clf_pdrop', 'dataset')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    way = parser.add_mutually_exclusive_group(required=True)
    way.add_argument('--from_hf', metavar='HF_DIR', help="a transformers folder (model.safetensors, config.json, "
                     "vocab.json, merges.txt) -> the original's layout in --out")
    way.add_argument('--to_hf', metavar='PARAMS', help="a best_params.jl / best_params.safetensors of a "
                     "multiple-choice task, or a model folder in the original's layout -> a transformers folder")
    way.add_argument('--to_savedmodel', metavar='PARAMS', help="a best_params.jl / best_params.safetensors of any "
                     "task, or a model folder in the original's layout -> a TensorFlow SavedModel")
    parser.add_argument('--out', required=True, help='the folder to write (new or empty)')
    parser.add_argument('--example', metavar='FILE', default=None, help="--to_savedmodel: also write a request "
                        "for it (TF Serving's REST body, a sample text's token ids) to FILE (JSON)")
    keep = "--to_hf, --to_savedmodel: the run's log's, else train.py's default"
    changes = {name: dict(default=None, help=f"{FLAGS[name]['help']} ({keep}, {FLAGS[name]['default']})")
               for name in RUN_FLAGS}
    changes['dataset']['help'] = (f"--to_hf, --to_savedmodel: the task of PARAMS ({FLAGS['dataset']['help']}; "
                                  "default: the run's log's): a head of one output is multiple choice (rocstories, "
                                  "race) or STS-B's")
    add_flags(parser, RUN_FLAGS, **changes)
    add_flags(parser, ['log_dir', 'model_dir', 'encoder_path', 'bpe_path'],
              log_dir=dict(help="--to_hf, --to_savedmodel: where the run's log is (LOG_DIR/<PARAMS' folder's "
                                "name>.jsonl)"),
              model_dir=dict(default=None, help="--to_hf, --to_savedmodel: the BPE files' folder (default: PARAMS "
                                                "when it is a model folder, else model/)"))
    return parser.parse_args(argv)


def check_args(args):
    """Refuse what can be refused before reading any weights: missing inputs, an output folder in use."""
    source = args.from_hf or args.to_hf or args.to_savedmodel
    flag = '--from_hf' if args.from_hf else '--to_hf' if args.to_hf else '--to_savedmodel'
    if not os.path.exists(source):
        raise InputError(f"{flag} {source!r} not found")
    if args.example and not args.to_savedmodel:
        raise InputError("--example goes with --to_savedmodel")
    if args.from_hf and not os.path.isdir(args.from_hf):
        raise InputError(f"--from_hf {args.from_hf!r} is not a folder: give the folder save_pretrained wrote")
    for flag in ('afn', 'dataset'):
        if getattr(args, flag) is not None and getattr(args, flag) not in CHOICES[flag]:
            raise InputError(f"unknown --{flag} {getattr(args, flag)!r}: choose one of {', '.join(CHOICES[flag])}")
    if os.path.exists(args.out) and not (os.path.isdir(args.out) and not os.listdir(args.out)):
        raise InputError(f"--out {args.out!r} exists and is not an empty folder: choose a new one (nothing is "
                         "overwritten)")
    if args.from_hf:
        return
    args.model_dir = args.model_dir or (source if os.path.isdir(source) else 'model/')
    args.encoder_path = args.encoder_path or os.path.join(args.model_dir, 'encoder_bpe_40000.json')
    args.bpe_path = args.bpe_path or os.path.join(args.model_dir, 'vocab_40000.bpe')
    if args.to_savedmodel and os.path.isdir(source) and not args.example:
        return  # a model folder's token rows are the vocabulary's: the BPE files are not read
    why = ('written into the transformers folder' if args.to_hf else
           'the vocabulary: which rows of the parameters are tokens' if os.path.isfile(source) else "--example's text")
    for path in (args.encoder_path, args.bpe_path):
        if not os.path.isfile(path):
            raise InputError(f"the BPE file {path!r} ({why}) not found: run `python download.py --only bpe "
                             f"--model_dir {args.model_dir}` or pass --model_dir")


# ------------------------------------------------------------------------------------------------- vocabulary

def original_bpe_bytes(encoder, merges):
    """{file name: bytes} of the vocabulary `encoder` (piece -> id) and `merges` (pairs, by rank) written as the
    original's encoder_bpe_40000.json (json.dumps in id order, id 0 last) and vocab_40000.bpe (a version line,
    one merge per line)."""
    ordered = dict(sorted(encoder.items(), key=lambda item: (item[1] == 0, item[1])))
    return {'encoder_bpe_40000.json': json.dumps(ordered).encode(),
            'vocab_40000.bpe': ''.join(['#version: 0.2\n'] + [f'{a} {b}\n' for a, b in merges]).encode()}


def check_original_bpe(encoder, merges, where):
    """The original's files (original_bpe_bytes) when `encoder` and `merges` are the original's vocabulary; else
    InputError naming `where` they came from."""
    files = original_bpe_bytes(encoder, merges)
    if any(hashlib.sha256(data).hexdigest() != ORIGINAL_BPE[name] for name, data in files.items()):
        raise InputError(f"{where} is not GPT-1's BPE vocabulary ({len(encoder)} pieces and {len(merges)} merges; "
                         "the original's are 40,478 and 40,000, compared as a piece -> id map and a list of merges "
                         "in rank order): only the original's (openai-community/openai-gpt) can be converted")
    return files


def parse_merges(text, path):
    """The merges of a merges.txt / vocab_40000.bpe text: a version line, then one `a b` pair per line."""
    lines = text.split('\n')
    lines = lines[1:] if lines and lines[0].startswith('#version') else lines
    while lines and not lines[-1]:
        lines.pop()
    merges = [tuple(line.split(' ')) for line in lines]
    bad = next((i for i, m in enumerate(merges) if len(m) != 2 or not all(m)), None)
    if bad is not None:
        raise InputError(f"{path}: {lines[bad][:80]!r} is not a merge (two BPE pieces and a space)")
    return merges


def read_json(path, what):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path!r} is not {what} ({err})") from err


def read_vocab(encoder_path, merges_path):
    """(piece -> id, merges) of a vocab.json / encoder_bpe_40000.json and a merges.txt / vocab_40000.bpe."""
    encoder = read_json(encoder_path, 'a JSON vocabulary')
    if not (isinstance(encoder, dict) and all(type(i) is int for i in encoder.values())):
        raise InputError(f"{encoder_path!r} is not a vocabulary: a JSON object mapping BPE pieces to ids")
    try:
        with open(merges_path, encoding='utf-8') as f:
            return encoder, parse_merges(f.read(), merges_path)
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{merges_path!r} is not a text of BPE merges ({err})") from err


def read_hf_vocab(hf_dir):
    """(piece -> id, merges) of a transformers folder: vocab.json and merges.txt, else tokenizer.json's BPE."""
    vocab, merges_txt = os.path.join(hf_dir, 'vocab.json'), os.path.join(hf_dir, 'merges.txt')
    if os.path.isfile(vocab) and os.path.isfile(merges_txt):
        return read_vocab(vocab, merges_txt)
    path = os.path.join(hf_dir, 'tokenizer.json')
    if not os.path.isfile(path):
        raise InputError(f"no vocab.json and merges.txt (nor tokenizer.json) in {hf_dir!r}: save the tokenizer "
                         "there too (tokenizer.save_pretrained), or copy those of openai-community/openai-gpt")
    model = read_json(path, "a tokenizers file").get('model') or {}
    encoder, merges = model.get('vocab'), model.get('merges')
    if not (isinstance(encoder, dict) and isinstance(merges, list)):
        raise InputError(f"{path!r} holds no BPE model (model.vocab and model.merges)")
    return encoder, [tuple(m.split(' ')) if isinstance(m, str) else tuple(m) for m in merges]


# ----------------------------------------------------------------------------------------------- --from_hf

def read_hf_arrays(hf_dir):
    """{name: array} of HF_DIR/model.safetensors, the names without the `transformer.` prefix, read with
    safetensors (no code runs); a pickle-only folder is refused without being opened."""
    import numpy as np
    from safetensors import safe_open
    path = os.path.join(hf_dir, 'model.safetensors')
    if not os.path.isfile(path):
        pickles = sorted(f for f in os.listdir(hf_dir) if f.endswith(('.bin', '.pt', '.pth', '.ckpt', '.h5')))
        if pickles:
            raise InputError(f"{hf_dir!r} has no model.safetensors, only {', '.join(pickles)}: not read (a pickle "
                             "can run code when loaded); re-save it with transformers, which writes safetensors: "
                             "OpenAIGPTModel.from_pretrained(DIR).save_pretrained(NEW_DIR)")
        raise InputError(f"no model.safetensors in {hf_dir!r}: give the folder that save_pretrained wrote "
                         "(model.safetensors, config.json, vocab.json, merges.txt)")
    try:
        with safe_open(path, framework='np') as f:
            arrays = {name.removeprefix('transformer.'): f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # safetensors' error on a damaged file or a type numpy lacks (bfloat16)
        raise InputError(f"{path!r} cannot be read as float32 arrays ({type(err).__name__}: {err}): re-save it "
                         "with save_pretrained in float32") from err
    return arrays


def hf_layers(arrays, path):
    """n_layer of the arrays h.{l}.*: every layer 0 .. n_layer - 1 with its 12 arrays. Buffers (the causal masks
    that older files hold, position_ids) and the tied lm_head (equal to tokens_embed) are removed from `arrays`,
    any other name is refused, and the arrays are made float32."""
    import numpy as np
    if 'lm_head.weight' in arrays:  # tied to tokens_embed; OpenAIGPTDoubleHeadsModel saves it in its place
        head = arrays.pop('lm_head.weight')
        tokens = arrays.setdefault('tokens_embed.weight', head)
        if tokens.shape != head.shape or not np.array_equal(tokens, head):
            raise InputError(f"{path!r}: lm_head.weight differs from tokens_embed.weight: GPT-1's LM head is tied to "
                             "the token embeddings, and the original's layout keeps one matrix")
    arrays.pop('position_ids', None)
    known, layers = {'tokens_embed.weight', 'positions_embed.weight'}, set()
    for name in list(arrays):
        parts = name.split('.', 2)
        if parts[0] == 'h' and len(parts) == 3 and parts[1].isdigit():
            if parts[2] in HF_BUFFERS:
                del arrays[name]
                continue
            if parts[2] in HF_LAYER.values():
                layers.add(int(parts[1]))
                continue
        if name not in known:
            raise InputError(f"{path!r} holds {name!r}: not an array of OpenAIGPTModel or OpenAIGPTLMHeadModel (a "
                             "task head has no place in the original's layout): convert the pretrained model")
    for name, a in arrays.items():
        if a.dtype not in (np.float32, np.float16):
            raise InputError(f"{path!r}: {name} is {a.dtype}: re-save the model in float32")
        arrays[name] = a.astype(np.float32)
    n_layer = max(layers, default=-1) + 1
    for name in sorted({'tokens_embed.weight', 'positions_embed.weight'} |
                       {f'h.{l}.{hf}' for l in range(n_layer) for hf in HF_LAYER.values()}):
        if name not in arrays:
            raise InputError(f"{path!r} has no {name}: not a whole GPT-1 model")
    return n_layer


def expected_shapes(n_embd):
    """transformers' shape of each layer array, for width n_embd (Conv1D weights are (in, out))."""
    c = n_embd
    return {'attn.c_attn.weight': (c, 3 * c), 'attn.c_attn.bias': (3 * c,), 'attn.c_proj.weight': (c, c),
            'attn.c_proj.bias': (c,), 'ln_1.weight': (c,), 'ln_1.bias': (c,), 'mlp.c_fc.weight': (c, 4 * c),
            'mlp.c_fc.bias': (4 * c,), 'mlp.c_proj.weight': (4 * c, c), 'mlp.c_proj.bias': (c,), 'ln_2.weight': (c,),
            'ln_2.bias': (c,)}


def check_hf_config(config, arrays, n_layer, n_vocab, path):
    """InputError unless config.json (`config`, read from `path`) describes the arrays and the port computes its
    model: the sizes, LayerNorm's epsilon 1e-5, an activation the port has; n_head divides n_embd."""
    tokens, positions = arrays['tokens_embed.weight'], arrays['positions_embed.weight']
    n_embd = tokens.shape[1] if tokens.ndim == 2 else None
    if not isinstance(config, dict) or config.get('model_type', 'openai-gpt') != 'openai-gpt':
        raise InputError(f"{path!r} is not an openai-gpt config (model_type {config.get('model_type')!r})"
                         if isinstance(config, dict) else f"{path!r} is not a JSON object")
    sizes = {'vocab_size': tokens.shape[0], 'n_positions': positions.shape[0], 'n_embd': n_embd, 'n_layer': n_layer}
    for key, value in sizes.items():
        if config.get(key) != value:
            raise InputError(f"{path!r} says {key} {config.get(key)!r} but model.safetensors holds {value}: the "
                             "config and the weights are of different models")
    if positions.shape != (positions.shape[0], n_embd):
        raise InputError(f"{path!r}: positions_embed.weight has shape {positions.shape}, not (n_positions, {n_embd})")
    for l in range(n_layer):
        for name, shape in expected_shapes(n_embd).items():
            if arrays[f'h.{l}.{name}'].shape != shape:
                raise InputError(f"model.safetensors: h.{l}.{name} has shape {arrays[f'h.{l}.{name}'].shape}, not "
                                 f"{shape} (n_embd {n_embd})")
    if n_vocab != tokens.shape[0]:
        raise InputError(f"the vocabulary has {n_vocab} pieces but tokens_embed.weight {tokens.shape[0]} rows: a model "
                         "with added tokens is not the pretrained GPT-1")
    n_head, eps, afn = config.get('n_head', 12), config.get('layer_norm_epsilon', 1e-5), config.get('afn', 'gelu')
    if not (type(n_head) is int and n_head > 0 and n_embd % n_head == 0):
        raise InputError(f"{path!r}: n_head {n_head!r} does not divide n_embd {n_embd}")
    if eps != 1e-5:
        raise InputError(f"{path!r}: layer_norm_epsilon {eps!r}: the port's LayerNorm (as the original's) uses 1e-5")
    if afn not in PORT_AFN:
        raise InputError(f"{path!r}: afn {afn!r} is none of the port's activations ({', '.join(PORT_AFN)})")
    return n_head, PORT_AFN[afn]


def from_hf(args):
    """--from_hf: HF_DIR -> the original's layout in --out."""
    import numpy as np
    from formats.weights import LAYER_PARAMS, save_openai_params
    hf_dir = args.from_hf
    arrays = read_hf_arrays(hf_dir)
    n_layer = hf_layers(arrays, os.path.join(hf_dir, 'model.safetensors'))
    config_path = os.path.join(hf_dir, 'config.json')
    if not os.path.isfile(config_path):
        raise InputError(f"no config.json in {hf_dir!r}: give the folder that save_pretrained wrote")
    encoder, merges = read_hf_vocab(hf_dir)
    n_head, afn = check_hf_config(read_json(config_path, 'a JSON config'), arrays, n_layer, len(encoder), config_path)
    bpe = check_original_bpe(encoder, merges, f"the vocabulary of {hf_dir!r}")
    params = [arrays['positions_embed.weight'], arrays['tokens_embed.weight']]
    for l in range(n_layer):
        params += [arrays[f'h.{l}.{HF_LAYER[k]}'][None] if k.endswith('/w') else arrays[f'h.{l}.{HF_LAYER[k]}']
                   for k in LAYER_PARAMS]  # Conv1D (in, out) -> the original's (1, in, out)

    def write(tmp):
        save_openai_params(tmp, [np.ascontiguousarray(p) for p in params])
        for name, data in bpe.items():
            with open(os.path.join(tmp, name), 'wb') as f:
                f.write(data)

    written(args.out, write)
    flags = ' '.join(f'--{k} {v}' for k, v in [('n_head', n_head), ('afn', afn)] if FLAGS[k]['default'] != v)
    keep = f" {flags} (the original's layout does not keep them)" if flags else ''
    print(f"wrote {args.out}: {n_layer} layers, n_embd {params[1].shape[1]}, {len(params[0])} positions, the "
          f"original's BPE files; use it with --model_dir {args.out}{keep}")


def written(out, write):
    """Call write(folder) on a temporary folder beside `out`, then rename it to `out` (new or empty): a failure
    leaves nothing."""
    parent = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(os.path.abspath(out))}.')
    except OSError as err:
        raise InputError(f"cannot write --out {out!r} ({err.strerror}): choose a writable folder") from err
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes the folder private: give it a normal folder's mode
        if os.path.isdir(out):
            os.rmdir(out)  # empty (check_args)
        os.rename(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise InputError(f"cannot write --out {out!r} ({err.strerror or err}): nothing was written; free some "
                             "space or choose another folder") from err
        raise


# ------------------------------------------------------------------------------------------------- --to_hf

def run_flags(args, n_embd, n_layer):
    """{flag: value} of RUN_FLAGS: the command line's, else the run's log's, else train.py's defaults; and the log's
    path when one was read."""
    source = args.to_hf or args.to_savedmodel
    desc = os.path.basename(os.path.dirname(os.path.abspath(source)))
    log_path = os.path.join(args.log_dir, f'{desc}.jsonl')
    logged = {}
    if os.path.isfile(source) and os.path.isfile(log_path):
        with open(log_path, encoding='utf-8') as f:
            line = f.readline()
        try:
            logged = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{log_path!r} is not train.py's log ({err}): pass --log_dir, or the flags") from err
        if (logged.get('n_embd'), logged.get('n_layer')) != (n_embd, n_layer):
            raise InputError(f"{log_path!r} is the log of a model of n_embd {logged.get('n_embd')} and "
                             f"{logged.get('n_layer')} layers, not of {source!r} ({n_embd}, {n_layer}): pass "
                             "--log_dir, or the flags")
    values = {k: next(v for v in (getattr(args, k), logged.get(k), FLAGS[k].get('default')) if v is not None)
              for k in RUN_FLAGS if k != 'dataset'}
    values['dataset'] = args.dataset or logged.get('dataset')
    return values, (log_path if logged else None)


def head_kind(args, clf_w, dataset):
    """'multiple_choice' for a head that transformers' OpenAIGPTDoubleHeadsModel computes; InputError otherwise."""
    if clf_w.ndim != 2 or clf_w.shape[1] != 1:
        raise InputError(f"{args.to_hf!r} has a classification head of {clf_w.shape[-1]} outputs (clf/w "
                         f"{clf_w.shape}): transformers has no class that computes it exactly (its "
                         "OpenAIGPTForSequenceClassification has no bias and pools the last token); only multiple-"
                         "choice models (rocstories, race) and model folders convert")
    if dataset is None:
        raise InputError(f"{args.to_hf!r} has a head of one output, multiple choice (rocstories, race) or STS-B's "
                         "regression, and no run's log says which: pass --dataset (or --log_dir)")
    if dataset not in MULTIPLE_CHOICE:
        raise InputError(f"{args.to_hf!r} is a {dataset} model: its head (STS-B's regression on the sum of both "
                         "orders' states, or a classifier) has no exact transformers class; only multiple-choice "
                         "models (rocstories, race) and model folders convert")
    return 'multiple_choice'


def hf_config(arch, vocab_size, n_positions, n_embd, n_layer, flags):
    """config.json of an openai-gpt model: the sizes, the run's flags, one cls_index summary for multiple choice."""
    config = {'architectures': [arch], 'model_type': 'openai-gpt', 'vocab_size': vocab_size,
              'n_positions': n_positions, 'n_ctx': n_positions, 'n_embd': n_embd, 'n_layer': n_layer,
              'n_head': flags['n_head'], 'afn': HF_AFN[flags['afn']], 'layer_norm_epsilon': 1e-5,
              'embd_pdrop': flags['embd_pdrop'], 'attn_pdrop': flags['attn_pdrop'],
              'resid_pdrop': flags['resid_pdrop'], 'initializer_range': 0.02, 'tie_word_embeddings': True,
              'dtype': 'float32'}
    if arch == 'OpenAIGPTDoubleHeadsModel':
        config.update(summary_type='cls_index', summary_use_proj=True, summary_proj_to_labels=True, num_labels=1,
                      summary_activation=None, summary_first_dropout=flags['clf_pdrop'])
    return config


def to_hf_arrays(tokens, positions, layers, n_layer):
    """transformers' names of the arrays (OpenAIGPTLMHeadModel / DoubleHeadsModel: under `transformer.`; the tied
    lm_head not stored, as save_pretrained does); `layers`: 12 per layer in the original's order."""
    import numpy as np
    arrays = {'transformer.tokens_embed.weight': tokens, 'transformer.positions_embed.weight': positions}
    for l in range(n_layer):
        for k, a in zip(HF_LAYER, layers[12 * l:12 * (l + 1)]):
            arrays[f'transformer.h.{l}.{HF_LAYER[k]}'] = a[0] if k.endswith('/w') else a  # (1, in, out) -> (in, out)
    return {name: np.ascontiguousarray(a, np.float32) for name, a in arrays.items()}


def to_hf(args):
    """--to_hf: best parameters of a multiple-choice run, or a model folder -> a transformers folder in --out."""
    import numpy as np
    import safetensors.numpy
    from formats.weights import LAYER_PARAMS, check_shapes, load_params, openai_shapes, read_openai_params
    encoder, merges = read_vocab(args.encoder_path, args.bpe_path)
    check_original_bpe(encoder, merges, f"{args.encoder_path!r} and {args.bpe_path!r}")
    n_vocab = len(encoder)
    if os.path.isdir(args.to_hf):
        positions, tokens, *layers = read_openai_params(args.to_hf)
        if len(tokens) != n_vocab:
            raise InputError(f"{args.to_hf!r} has {len(tokens)} token rows but its vocabulary {n_vocab} pieces")
        arch, head = 'OpenAIGPTLMHeadModel', {}
    else:
        we, *layers, clf_w, clf_b = params = load_params(args.to_hf)
        n_layer, rest = divmod(len(params) - 3, len(LAYER_PARAMS))
        if rest or n_layer < 1 or we.ndim != 2 or len(we) <= n_vocab + 3:
            raise InputError(f"{args.to_hf!r} holds {len(params)} arrays, the first of shape {we.shape}: not the "
                             f"parameters of a fine-tuned model of this vocabulary of {n_vocab} pieces")
        tokens, positions = we[:n_vocab + 3], we[n_vocab + 3:]  # the 3 special rows are tokens to transformers
        arch = 'OpenAIGPTDoubleHeadsModel'
    n_embd, n_layer = tokens.shape[1], len(layers) // len(LAYER_PARAMS)
    flags, log_path = run_flags(args, n_embd, n_layer)
    if arch == 'OpenAIGPTDoubleHeadsModel':
        head_kind(args, clf_w, flags['dataset'])
        head = {'multiple_choice_head.summary.weight': clf_w.T, 'multiple_choice_head.summary.bias': clf_b}
    if n_embd % flags['n_head']:
        raise InputError(f"--n_head {flags['n_head']} does not divide n_embd {n_embd}: pass the run's --n_head")
    check_shapes(args.to_hf, [positions, tokens] + layers, openai_shapes(len(tokens), n_embd, n_layer, len(positions)))
    arrays = {**to_hf_arrays(tokens, positions, layers, n_layer),
              **{name: np.ascontiguousarray(a, np.float32) for name, a in head.items()}}
    config = hf_config(arch, len(tokens), len(positions), n_embd, n_layer, flags)
    vocab = json.dumps(encoder, indent=2, sort_keys=True, ensure_ascii=False) + '\n'
    merges_txt = ''.join(['#version: 0.2\n'] + [f'{a} {b}\n' for a, b in merges])
    special = dict(zip(SPECIAL_TOKENS, range(n_vocab, len(tokens))))  # the rows after the vocabulary's pieces
    added = [('added_tokens.json', json.dumps(special) + '\n')] if special else []

    def write(tmp):
        with open(os.path.join(tmp, 'model.safetensors'), 'wb') as f:
            f.write(safetensors.numpy.save(arrays, metadata={'format': 'pt'}))
        for name, text in [('config.json', json.dumps(config, indent=2) + '\n'), ('vocab.json', vocab),
                           ('merges.txt', merges_txt)] + added:
            with open(os.path.join(tmp, name), 'w', encoding='utf-8') as f:
                f.write(text)

    written(args.out, write)
    source = f" (from {log_path})" if log_path else ''
    print(f"wrote {args.out}: a transformers {arch}, {n_layer} layers, n_embd {n_embd}, n_head {flags['n_head']}, "
          f"afn {flags['afn']}{source}, vocab_size {len(tokens)}, n_positions {len(positions)}")

# ------------------------------------------------------------------------------------------- --to_savedmodel

# --example's text, by the task's shape: its fields in the order of the task's Examples (multiple choice: the
# context fields, then the answers; RACE's context is an article and a question).
SAMPLE = {'classification': ['A gripping, funny and moving film.'],
          'pair': ['A man is playing a guitar on the stage.', 'A person plays music.'],
          'context': ['Karen was assigned a roommate her first year of college. They went to a concert together.',
                      'How did Karen feel about her roommate?'],
          'answers': ['Karen became good friends with her roommate.', 'Karen hated her roommate.',
                      'Karen never met her roommate.', 'Karen moved out at once.']}


def example_request(args, task, n_vocab, n_ctx):
    """A request for the SavedModel in TF Serving's REST form (columnar `inputs`): SAMPLE's text encoded with
    text_utils.TextEncoder and, for a fine-tuned model, made into the task's sequences by inputs.sequences and
    padded by inputs.pad_batch (one example); for the language model two texts padded to one length."""
    import numpy as np
    from finetuning.inputs import pad_batch, sequences
    from text_utils import Ragged, TextEncoder
    encoder = TextEncoder(args.encoder_path, args.bpe_path)
    if task is None:
        rows = [ids[:n_ctx] for ids in encoder.encode(SAMPLE['context'], verbose=False)]
        T = max(map(len, rows))
        return {'signature_name': 'serving_default',
                'inputs': {'input_ids': [ids + [0] * (T - len(ids)) for ids in rows],
                           'lengths': [len(ids) for ids in rows]}}
    fields = (SAMPLE['context'][:task.n_context] + SAMPLE['answers'][:task.n_choices]
              if task.shape == 'multiple_choice' else SAMPLE[task.shape if task.shape == 'classification' else 'pair'])
    texts = [Ragged.from_lists(encoder.encode([text], verbose=False)) for text in fields]
    X, _ = pad_batch(sequences(task, texts, n_vocab, n_ctx), np.arange(1), task.n_seq, n_vocab)
    return {'signature_name': 'serving_default', 'inputs': {'input_ids': X[..., 0].tolist()}}


def to_savedmodel(args):
    """--to_savedmodel: best parameters of any task, or a model folder -> a TensorFlow SavedModel in --out."""
    from finetuning.tasks import TASKS
    from formats.weights import LAYER_PARAMS, check_shapes, load_params, openai_shapes, read_openai_params
    source = args.to_savedmodel
    if os.path.isdir(source):
        positions, tokens, *layers = read_openai_params(source)
        n_vocab, n_embd = tokens.shape
        n_layer, task = len(layers) // len(LAYER_PARAMS), None
        flags, log_path = run_flags(args, n_embd, n_layer)
        n_ctx = len(positions)
        check_shapes(source, [positions, tokens] + layers, openai_shapes(n_vocab, n_embd, n_layer, n_ctx))
    else:
        encoder, _ = read_vocab(args.encoder_path, args.bpe_path)
        n_vocab = len(encoder)
        params = load_params(source)
        n_layer, rest = divmod(len(params) - 3, len(LAYER_PARAMS))
        we = params[0]
        if rest or n_layer < 1 or we.ndim != 2 or len(we) <= n_vocab + 3:
            raise InputError(f"{source!r} holds {len(params)} arrays, the first of shape {we.shape}: not the "
                             f"parameters of a fine-tuned model of this vocabulary of {n_vocab} pieces")
        n_embd, n_ctx = we.shape[1], len(we) - n_vocab - 3
        flags, log_path = run_flags(args, n_embd, n_layer)
        if flags['dataset'] is None:
            raise InputError(f"{source!r} is a fine-tuned model and no run's log says of which task: pass --dataset "
                             "(or --log_dir): the task's shape gives the SavedModel's inputs")
        task = TASKS[flags['dataset']]
        n_out = task.n_out
        shapes = [we.shape] + openai_shapes(1, n_embd, n_layer)[2:] + [(n_embd, n_out), (n_out,)]
        if params[-2].shape != (n_embd, n_out):
            raise InputError(f"{source!r} has a head of {params[-2].shape[-1]} outputs (clf/w {params[-2].shape}) "
                             f"but a {task.name} model has {n_out}: pass the run's --dataset")
        check_shapes(source, params, shapes)
    if n_embd % flags['n_head']:
        raise InputError(f"--n_head {flags['n_head']} does not divide n_embd {n_embd}: pass the run's --n_head")
    example = example_request(args, task, n_vocab, n_ctx) if args.example else None
    import tensorflow as tf
    from formats import savedmodel
    if task is None:
        module = savedmodel.LanguageModel(savedmodel.language_model(tokens, positions, layers, flags['n_head'],
                                                                    flags['afn']))
    else:
        module = savedmodel.FineTuned(savedmodel.finetuned_model(params, n_vocab, task.head, flags['n_head'],
                                                                 flags['afn']))

    def write(tmp):
        try:
            savedmodel.save(module, tmp)
        except tf.errors.OpError as err:  # TensorFlow's own file writes (a full disk: ResourceExhausted, ...)
            raise OSError(f"{type(err).__name__}: {err.message}") from err
        if example is not None:
            with atomic_write(args.example, 'w') as f:
                json.dump(example, f)
                f.write('\n')

    written(args.out, write)
    what = 'the language model' if task is None else f'a {task.name} model ({task.shape.replace("_", " ")})'
    source = f" (from {log_path})" if log_path else ''
    inputs = ('input_ids int32 (batch, length), lengths int32 (batch,) -> log_probs, last_log_probs' if task is None
              else f"input_ids int32 (batch, {task.n_seq}, length) -> " +
              ('score' if task.head['loss'] == 'squared' else 'logits, probabilities'))
    print(f"wrote {args.out}: a SavedModel of {what}, {n_layer} layers, n_embd {n_embd}, n_head {flags['n_head']}, "
          f"afn {flags['afn']}{source}, at most {n_ctx} tokens a sequence; signature serving_default: {inputs}" +
          (f"; a request in {args.example}" if example is not None else ''))


def main(argv=None):
    args = parse_args(argv)
    exit_on_input_error(check_args, args)
    exit_on_input_error(from_hf if args.from_hf else to_hf if args.to_hf else to_savedmodel, args)


if __name__ == '__main__':
    main()
