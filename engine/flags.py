"""The command line of train.py: its flags (the original's, then the port's own), their checks and their printing.
The standard library alone, so that --help and a bad flag answer before TensorFlow is imported (it takes seconds)."""
import argparse
import math
import os

from utils import HelpFormatter, InputError, missing_bpe_file

# The names of the choices, listed here so that --help and a bad flag answer before TensorFlow is imported (it
# takes seconds); the tests check that they are the keys of the tables in finetuning/tasks.py, model.py and opt.py.
# Each task's default --data_dir: the folder its publisher's archive unpacks to, in data/ (the original's data/
# for ROCStories); tasks.Task.data_dir reads it here.
DATA_DIRS = {'rocstories': 'data/', 'sst2': 'data/SST-2', 'cola': 'data/CoLA', 'mnli': 'data/MNLI', 'qnli': 'data/QNLI',
             'rte': 'data/RTE', 'snli': 'data/snli_1.0', 'scitail': 'data/SciTailV1.1', 'mrpc': 'data/MRPC',
             'qqp': 'data/QQP', 'stsb': 'data/STS-B', 'race': 'data/RACE'}
CHOICES = {'dataset': tuple(DATA_DIRS), 'afn': ('gelu', 'relu', 'swish'),
           'lr_schedule': ('warmup_cosine', 'warmup_constant', 'warmup_linear'), 'opt': ('adam',),
           'precision': ('fp32', 'tf32', 'bf16', 'fp16')}
# Flags that --resume may change: they move files or change what is saved or printed, not the numbers.
# pretrain.py's own: eval_every and keep_every (what is logged and kept), encode_procs (how the corpus is encoded).
RESUMABLE_CHANGES = ('resume', 'overwrite', 'save_every', 'analysis', 'log_dir', 'save_dir', 'data_dir',
                     'model_dir', 'encoder_path', 'bpe_path', 'cache_dir', 'submission_dir', 'eval_every',
                     'keep_every', 'encode_procs', 'dry_run', 'device_memory')


def choices_help(flag):
    return 'one of ' + ', '.join(CHOICES[flag])


# train.py's flags, in the original's order (its log's first line keeps it), then the port's own (from model_dir on;
# train.py's docstring lists them): name -> argparse's keywords. The other programs declare the flags they share
# with train.py from here (add_flags), so that a flag has one name, meaning and default everywhere.
FLAGS = {
    'desc': dict(type=str, help="name of the run's log and save folder (default: the dataset)"),
    'dataset': dict(type=str, default='rocstories', help=choices_help('dataset')),
    'log_dir': dict(type=str, default='log/', help='the jsonl log and TensorBoard events go here'),
    'save_dir': dict(type=str, default='save/', help='best parameters and checkpoints go here'),
    'data_dir': dict(type=str,
        help="the task's files as their publisher unpacks them (default: data/ for rocstories, the two "
             "Story Cloze CSVs; data/<the publisher's folder> for the others, see README.md)"),
    'submission_dir': dict(type=str, default='submission/',
        help="the test set's predictions and probabilities go here"),
    'submit': dict(action='store_true', help='save the best parameters and predict the test set'),
    'analysis': dict(action='store_true',
        help="with --submit: print the paper's metrics: the valid split's of the best evaluation (from the "
             "run's log), the other dev sets', and the test set's where its labels are public (read from the "
             "test file)"),
    'seed': dict(type=int, default=42,
        help='seeds Python, NumPy (the data order, the special rows), TensorFlow (variables not '
             'loaded, e.g. clf/w) and, directly, the dropout masks: each drawn from the seed, the '
             'update number and its tower'),
    'n_iter': dict(type=int, default=3, help='epochs'),
    'n_batch': dict(type=int, default=8, help='examples per tower (see --n_gpu)'),
    'max_grad_norm': dict(type=int, default=1, help="clip the gradient's global norm to this"),
    'lr': dict(type=float, default=6.25e-5, help='peak learning rate'),
    'lr_warmup': dict(type=float, default=0.002, help='fraction of the updates spent warming up'),
    'n_ctx': dict(type=int, default=512, help='longest context (cut to the longest example)'),
    'n_embd': dict(type=int, default=768, help='width of the model'),
    'n_head': dict(type=int, default=12, help='attention heads'),
    'n_layer': dict(type=int, default=12, help='blocks'),
    'embd_pdrop': dict(type=float, default=0.1, help='dropout on the embeddings'),
    'attn_pdrop': dict(type=float, default=0.1, help='dropout on the attention weights'),
    'resid_pdrop': dict(type=float, default=0.1, help='dropout on the residual branches'),
    'clf_pdrop': dict(type=float, default=0.1, help="dropout before the classifier"),
    'l2': dict(type=float, default=0.01, help='decoupled weight decay'),
    'vector_l2': dict(action='store_true', help='decay the vectors (biases, gains) too'),
    'n_gpu': dict(type=int, default=4,
        help="the original's towers: the global batch is n_batch * n_gpu, each tower of n_batch "
             "with its own dropout masks, whatever the number of devices (one machine uses the "
             "largest count of its GPUs that divides n_gpu)"),
    'opt': dict(type=str, default='adam', help=choices_help('opt')),
    'afn': dict(type=str, default='gelu', help='activation of the MLPs: ' + choices_help('afn')),
    'lr_schedule': dict(type=str, default='warmup_linear', help=choices_help('lr_schedule')),
    'encoder_path': dict(type=str,
        help='the BPE vocabulary (default: MODEL_DIR/encoder_bpe_40000.json)'),
    'bpe_path': dict(type=str, help='the BPE merges (default: MODEL_DIR/vocab_40000.bpe)'),
    'n_transfer': dict(type=int, default=12,
        help='pretrained blocks to load, with the embeddings (tokens and positions): 12 the whole pretrained '
             'model; 0 the embeddings alone; -1 nothing (training from scratch, no weight files needed)'),
    'lm_coef': dict(type=float, default=0.5, help='weight of the LM loss in the training loss'),
    'b1': dict(type=float, default=0.9, help="Adam's beta1"),
    'b2': dict(type=float, default=0.999, help="Adam's beta2"),
    'e': dict(type=float, default=1e-8, help="Adam's epsilon"),
    'model_dir': dict(type=str, default='model/', help='pretrained weights and BPE files'),
    'padded': dict(action='store_true',
        help="the original's computation: batches padded to n_ctx, the LM head over padding too, "
             "both choices of an example scored separately, every op and the Adam update op by op; "
             "slower. With dropout off, the same numbers as the default; with dropout on, its masks "
             "have other shapes (padded vs packed or trimmed): the same distribution, not the same values"),
    'xla': dict(action='store_true', help='compile the train and evaluation steps with XLA'),
    'precision': dict(type=str, default='fp32',
        help=choices_help('precision') + '; tf32: float32 throughout, but matmuls on Ampere and later GPUs in '
        "TF32 (a 10-bit mantissa: not the original's numbers; off unless asked, TensorFlow's default is on; the "
        "CPU has no TF32); bf16 / fp16: mixed precision (float32 weights, matmuls in the 16-bit type, loss "
        "scaling for fp16), mainly for GPUs; changes the rounding"),
    'deterministic': dict(action='store_true',
        help='deterministic ops: two runs with the same seed give bit-identical results'),
    'accum_steps': dict(type=int, default=1,
        help="split each tower of n_batch examples into this many parts, accumulating gradients: "
             "the same update with dropout off, but each part draws its own dropout masks "
             "(ACCUM_STEPS times the original's masks)"),
    'save_every': dict(type=int, default=0,
        help='checkpoint every N updates and at the end of each epoch (0: only when stopped: a first Ctrl-C or '
             'SIGTERM in training saves one after the current update, then the run exits; a second one stops it '
             'at once, saving nothing); --resume continues from the last one'),
    'resume': dict(action='store_true', help='continue from the last checkpoint of this --desc'),
    'overwrite': dict(action='store_true',
        help="replace what a previous run with this --desc wrote (its log, its save folder) and the submission "
             "files this run writes: removed when it starts; without it, a run whose outputs exist stops"),
    'restore': dict(type=str, help='start from the parameters in this best_params.jl or best_params.safetensors'),
    'cache_dir': dict(type=str, default='cache/',
        help="the encoded data set is kept here, keyed by its inputs' hashes ('' for none)"),
    'eval_only': dict(action='store_true',
        help='no training: score the valid set and predict the test set (with --restore)'),
    'dry_run': dict(action='store_true',
        help='check the inputs, then print the plan, the devices, the estimated peak memory per device, the '
             'smallest --accum_steps that fits --device_memory and the estimated time of an update; exit without '
             'training or writing anything'),
    'device_memory': dict(type=str, metavar='SIZE',
        help="with --dry_run: the memory of one device, such as 8GB or 8GiB (default: each visible GPU's memory "
             'as TensorFlow reports it; none on the CPU)'),
}


def add_flags(parser, names, **changes):
    """Declare the flags `names` of FLAGS on `parser`; changes: {name: keywords that replace FLAGS'} (another
    default or help for that program)."""
    for name in names:
        parser.add_argument('--' + name, **{**FLAGS[name], **changes.get(name, {})})


def bpe_paths(args):
    """args with --encoder_path and --bpe_path defaulting to the BPE files in --model_dir."""
    args.encoder_path = args.encoder_path or os.path.join(args.model_dir, 'encoder_bpe_40000.json')
    args.bpe_path = args.bpe_path or os.path.join(args.model_dir, 'vocab_40000.bpe')
    return args


def parse_args(argv=None, description=None):
    """train.py's flags (FLAGS) of the command line `argv`; `description` heads --help."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    add_flags(parser, FLAGS)
    args = parser.parse_args(argv)
    args.desc = args.desc or args.dataset
    args.data_dir = args.data_dir or DATA_DIRS.get(args.dataset)
    return bpe_paths(args)


def check_args(args):
    """Refuse unknown choices and impossible values before any work is done. `python train.py` runs it before
    importing TensorFlow: it uses the standard library alone."""
    check_flags(args)
    for flag, choices in CHOICES.items():
        if getattr(args, flag) not in choices:
            raise InputError(f"unknown --{flag} {getattr(args, flag)!r}: choose one of {', '.join(choices)}")
    for flag in ['n_iter', 'n_batch', 'n_gpu', 'n_ctx', 'n_embd', 'n_head', 'n_layer']:
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.n_transfer > args.n_layer:
        raise InputError(f"--n_transfer {args.n_transfer} is more than the model's --n_layer {args.n_layer}")
    if args.analysis and not (args.submit or args.eval_only):
        raise InputError("--analysis scores the best evaluation of the log and the test set's predictions, which "
                         "--submit makes: pass --submit too")
    if args.resume and args.overwrite:
        raise InputError("--resume continues the run that --overwrite would replace: pass one of them")
    if args.accum_steps < 1 or args.save_every < 0:
        raise InputError("--accum_steps must be at least 1 and --save_every at least 0")
    check_device_memory(args)
    if args.restore and not os.path.isfile(args.restore):
        raise InputError(f"--restore {args.restore!r} not found: give the path of a best_params.jl or "
                         "best_params.safetensors")
    check_output_dir('--log_dir', args.log_dir)
    check_output_dir('--save_dir', os.path.join(args.save_dir, args.desc))  # an interrupted run saves there
    if args.submit or args.eval_only:
        check_output_dir('--submission_dir', args.submission_dir)
    for flag, path in [('--encoder_path', args.encoder_path), ('--bpe_path', args.bpe_path)]:
        if not os.path.isfile(path):  # the weights too when the run reads them from the same folder
            with_weights = args.n_transfer != -1 and \
                os.path.abspath(os.path.dirname(path) or '.') == os.path.abspath(args.model_dir)
            raise InputError(missing_bpe_file(path, flag, with_weights))


def check_flags(args):
    """Refuse numeric flags that would run but give junk (not finite, out of range), and a --desc that is a path."""
    probability = 'in [0, 1): a probability of dropping'
    for flag, ok, what in [('lr', 0 < args.lr < math.inf, 'a finite number above 0'),
                           ('lr_warmup', 0 < args.lr_warmup <= 1, 'in (0, 1]: the warmup fraction of the updates'),
                           ('embd_pdrop', 0 <= args.embd_pdrop < 1, probability),
                           ('attn_pdrop', 0 <= args.attn_pdrop < 1, probability),
                           ('resid_pdrop', 0 <= args.resid_pdrop < 1, probability),
                           ('clf_pdrop', 0 <= args.clf_pdrop < 1, probability),
                           ('l2', 0 <= args.l2 < math.inf, 'finite and at least 0'),
                           ('lm_coef', 0 <= args.lm_coef < math.inf, 'finite and at least 0'),
                           ('b1', 0 <= args.b1 < 1, 'in [0, 1)'), ('b2', 0 <= args.b2 < 1, 'in [0, 1)'),
                           ('e', 0 < args.e < math.inf, 'a finite number above 0'),
                           ('seed', 0 <= args.seed < 2 ** 31, 'in [0, 2**31)'),
                           ('n_transfer', args.n_transfer >= -1, 'at least -1 (-1: load no pretrained weights)'),
                           ('n_ctx', args.n_ctx >= 6, 'at least 6: _start_, _delimiter_ and _classify_ and at least '
                                                      'one token of each text of an example')]:
        if not ok:
            raise InputError(f"--{flag} {getattr(args, flag)} is out of range: it must be {what}")
    check_desc(args.desc)


def check_device_memory(args):
    """InputError unless --device_memory is a size engine.memory.parse_size reads (8GB, 8GiB, 500MB)."""
    device_memory_bytes(args)


def device_memory_bytes(args):
    """--device_memory in bytes (None without the flag); InputError when it is not a size."""
    from engine.memory import parse_size
    if args.device_memory is None:
        return None
    try:
        return parse_size(args.device_memory)
    except ValueError as err:
        raise InputError(f'--device_memory: {err}') from None


def check_desc(desc):
    """InputError unless --desc is a name (not a path): it names the run's log and save folder."""
    if not desc or desc in ('.', '..') or '/' in desc or (os.altsep and os.altsep in desc) or '\0' in desc:
        raise InputError(f"--desc {desc!r} is not a name: it names the run's log and save folder inside --log_dir "
                         "and --save_dir; choose those folders with --log_dir and --save_dir")


def check_output_dir(flag, path):
    """InputError unless `path` is a folder, or can be made one, that the run can write in: checked before any
    work, so that a bad folder never leaves the other outputs half-written."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the output folder {path!r}: {probe!r} is not a writable folder; "
                         f"choose another {flag}")


def format_flags(args, width=112, cell=28):
    """The flags as `name value` cells, left to right on a grid of `cell` characters (a long cell takes several),
    lines at most `width` wide."""
    lines = ['']
    for name, value in vars(args).items():
        text = f'{name} {value}'
        text = text.ljust(-(-(len(text) + 2) // cell) * cell)
        if lines[-1] and len(lines[-1]) + len(text.rstrip()) > width:
            lines.append('')
        lines[-1] += text
    return '\n'.join(line.rstrip() for line in lines)
