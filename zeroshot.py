"""Zero-shot figures of the pretrained language model on the paper's tasks, with no fine-tuning (Radford et al. 2018,
section 5, Figure 2 right), by the heuristics of SPEC.md "Zero-shot" (paper/heuristics.py):
    python zeroshot.py --task sst2                       # SST-2 dev accuracy
    python zeroshot.py --task cola --json cola.json      # CoLA dev Matthews corr. x 100 (threshold from train)
    python zeroshot.py --task race                       # RACE dev accuracy (all, RACE-m, RACE-h)
    python zeroshot.py --task dprd                       # DPRD test accuracy (data/DPRD: train.c.txt, test.c.txt)
    python zeroshot.py --task rocstories                 # Story Cloze valid accuracy (train.py's split)
    python zeroshot.py --checkpoints save/books          # Figure 2 right: every model a pre-training run saved

Each task reads its publisher's files as train.py does (--data_dir, default under --data_root: data/SST-2,
data/CoLA, data/RACE, data/DPRD, and data/ for the Story Cloze CSVs) and prints one line with its metric; --json
writes the figure and one prediction per example. --checkpoints scores every save/{desc}/updates/<n_updates>/
model folder on each task (default the four of Figure 2) and writes the curve: a JSON and a PNG beside it, each
task's metric against the updates, raw and as the paper normalises it, (metric - random) / (state of the art -
random) (results.py says where each comes from). It resumes: the updates already in the JSON are not scored again.
"""
import argparse
import json
import os
import sys

from engine.flags import add_flags, check_output_dir
from utils import HelpFormatter, InputError, download_command, exit_on_input_error, tensorflow_start_up_hidden

TASKS = ('sst2', 'cola', 'race', 'dprd', 'rocstories')
FIGURE2 = ('sst2', 'cola', 'race', 'dprd')  # results.ZERO_SHOT_TASKS, here so that --help needs no import
FOLDERS = {'sst2': 'SST-2', 'cola': 'CoLA', 'race': 'RACE', 'dprd': 'DPRD', 'rocstories': ''}  # under --data_root
SPLITS = {'sst2': ('dev', 'train'), 'cola': ('dev', 'train'), 'race': ('dev', 'test', 'train'),
          'dprd': ('test', 'train'), 'rocstories': ('valid', 'test', 'train')}  # labelled splits, the default first
TITLES = {'sst2': 'SST-2', 'cola': 'CoLA', 'race': 'RACE', 'dprd': 'DPRD', 'rocstories': 'ROCStories'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--task', nargs='+', choices=TASKS, metavar='TASK',
                        help=f"one of {', '.join(TASKS)}; with --checkpoints one or more (default there: "
                             f"{' '.join(FIGURE2)})")
    parser.add_argument('--data_dir', help="the task's files as their publisher unpacks them (default: "
                                           "DATA_ROOT/<its folder>, as train.py's defaults)")
    parser.add_argument('--data_root', default='data/',
                        help="the folder holding each task's folder: SST-2, CoLA, RACE, DPRD (the Story Cloze CSVs "
                             "in it directly)")
    parser.add_argument('--split', help="the split scored: SST-2, CoLA, RACE dev, DPRD test, ROCStories valid "
                                        "(train.py's split) by default")
    parser.add_argument('--json', metavar='PATH',
                        help='write the figure and the predictions here (with --checkpoints: the curve, by '
                             'default CHECKPOINTS/zeroshot.json, and its plot beside it, .png)')
    parser.add_argument('--checkpoints', metavar='DIR',
                        help="a pre-training run's folder (save/{desc}): score every model it saved in "
                             "DIR/updates/<n_updates>/ on each --task and write the curve")
    parser.add_argument('--n_batch', type=int, default=8, help='examples scored at a time')
    add_flags(parser, ['model_dir', 'n_ctx', 'n_embd', 'n_head', 'n_layer', 'encoder_path', 'bpe_path'],
              model_dir=dict(help='the pretrained weights and BPE files'),
              n_ctx=dict(help='longest sequence (the pretrained model has 512 positions)'),
              n_embd=dict(help='width of the pretrained model'),
              encoder_path=dict(help='the BPE vocabulary (default: MODEL_DIR/, or CHECKPOINTS/, '
                                     'encoder_bpe_40000.json)'),
              bpe_path=dict(help='the BPE merges (default: MODEL_DIR/, or CHECKPOINTS/, vocab_40000.bpe)'))
    args = parser.parse_args(argv)
    bpe_dir = args.checkpoints or args.model_dir
    args.encoder_path = args.encoder_path or os.path.join(bpe_dir, 'encoder_bpe_40000.json')
    args.bpe_path = args.bpe_path or os.path.join(bpe_dir, 'vocab_40000.bpe')
    return args


def check_args(args):
    """InputError for flags that cannot run, and missing inputs, before the heavy imports; sets the tasks, the
    split and the data folder of each (args.data_dirs)."""
    if args.task is None and not args.checkpoints:
        raise InputError("give --task (one of " + ', '.join(TASKS) + ") or --checkpoints save/{desc}")
    args.task = args.task or list(FIGURE2)
    if len(args.task) > 1 and not args.checkpoints:
        raise InputError(f"--task takes one task, got {' '.join(args.task)}: several go with --checkpoints")
    if len(set(args.task)) < len(args.task):
        raise InputError(f"--task names a task twice: {' '.join(args.task)}")
    for flag in ['--data_dir', '--split']:
        if getattr(args, flag[2:]) and len(args.task) > 1:
            raise InputError(f"{flag} applies to one task, but --task is {' '.join(args.task)}: run one task at a "
                             f"time, or put each task's folder under --data_root")
    for task in args.task:
        if args.split and args.split not in SPLITS[task]:
            raise InputError(f"--split {args.split!r}: {task} has the labelled splits {', '.join(SPLITS[task])}")
    for flag, least in [('n_batch', 1), ('n_ctx', 2), ('n_embd', 1), ('n_head', 1), ('n_layer', 1)]:
        if getattr(args, flag) < least:
            raise InputError(f"--{flag} must be at least {least}, got {getattr(args, flag)}")
    args.data_dirs = {task: args.data_dir or os.path.join(args.data_root, FOLDERS[task]) for task in args.task}
    for task, folder in args.data_dirs.items():
        if not os.path.isdir(folder):
            raise InputError(f"{task}: the data folder {folder!r} not found: give the folder of its files as its "
                             f"publisher unpacks them with --data_dir (see README.md)")
    for path in [args.encoder_path, args.bpe_path]:
        if not os.path.isfile(path):
            raise InputError(f"BPE file {path!r} not found: run `{download_command(os.path.dirname(path), 'bpe')}` "
                             "or give --encoder_path and --bpe_path")
    if args.checkpoints:
        args.folders = checkpoint_folders(args.checkpoints)
        args.json = args.json or os.path.join(args.checkpoints, 'zeroshot.json')
    elif not os.path.isdir(args.model_dir):
        raise InputError(f"weights folder {args.model_dir!r} not found: run `{download_command(args.model_dir)}`")
    if args.json:
        check_output_dir('--json', os.path.dirname(args.json) or '.')


def checkpoint_folders(root):
    """[(n_updates, folder)] of the model folders a pre-training run saved in root/updates/<n_updates>/, in
    order of n_updates; InputError when there is none."""
    updates = os.path.join(root, 'updates')
    found = sorted((int(name), os.path.join(updates, name)) for name in
                   (os.listdir(updates) if os.path.isdir(updates) else [])
                   if name.isdigit() and os.path.isfile(os.path.join(updates, name, 'params_shapes.json')))
    if not found:
        raise InputError(f"no saved model in {updates!r} (its folders <n_updates>/ holding params_shapes.json and "
                         f"params_*.npy): give the save/{{desc}} folder of a pre-training run (pretrain.py)")
    return found


if __name__ == '__main__':  # --help and a bad flag answer now, before the imports below
    ARGS = parse_args()
    exit_on_input_error(check_args, ARGS)

with tensorflow_start_up_hidden():
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from datasets import dprd
    from finetuning import metrics
    from finetuning.tasks import TASKS as REGISTRY, score
    from formats.language_model import language_model, load_language_model
    from paper import heuristics, results
    from paper.runs import save_png
    from text_utils import TextEncoder, encode_examples
    from utils import atomic_write


# ------------------------------------------------------------------------------------------ one task's figure


def load_split(task, data_dir, split):
    """(the scored split, the train split) of `task`'s files, as Examples of text."""
    splits = dprd(data_dir) if task == 'dprd' else REGISTRY[task].load(data_dir)
    return splits[split], splits['train']


def token_id(encoder, piece):
    """The id of a BPE piece (`very</w>`) that a rule needs; InputError when the vocabulary has none."""
    if piece not in encoder:
        raise InputError(f"the BPE vocabulary has no {piece!r}, which the SST-2 rule needs: give GPT-1's "
                         f"encoder_bpe_40000.json (--encoder_path)")
    return encoder[piece]


def prepare(task, examples, train, text_encoder, n_ctx):
    """The model's inputs of the labelled `examples` (and, for CoLA, of the `train` split that sets the
    threshold): {'examples': the inputs of the split (heuristics' rule), 'train': CoLA's}, the texts encoded one
    at a time (text_utils.encode_examples)."""
    if task != 'dprd':
        fields = [field.tolist() for field in encode_examples(text_encoder, examples, f'encoding {task}').texts]
    if task == 'sst2':
        ids = {w: token_id(text_encoder.encoder, w + '</w>') for w in ('very', 'positive', 'negative')}
        return dict(examples=heuristics.sst2(fields[0], ids['very'], n_ctx), ids=[ids['positive'], ids['negative']])
    if task == 'cola':
        train_ids = encode_examples(text_encoder, train, 'encoding cola train').texts[0].tolist()
        return dict(examples=heuristics.cola(fields[0], n_ctx), train=heuristics.cola(train_ids, n_ctx),
                    train_y=np.asarray(train.y))
    if task in ('race', 'rocstories'):
        n_context = 2 if task == 'race' else 1
        return dict(examples=[heuristics.fit_context(row[:n_context], row[n_context:], n_ctx)
                              for row in zip(*fields)])
    texts = heuristics.dprd_texts(*examples.texts)  # (before + candidate 1, before + candidate 2, after)
    prefix1, prefix2, after = (field.tolist() for field in
                               encode_examples(text_encoder, examples._replace(texts=texts), 'encoding dprd').texts)
    return dict(examples=[e for i in range(len(after)) for e in heuristics.dprd([prefix1[i], prefix2[i]], after[i],
                                                                                n_ctx)])


def evaluate(task, inputs, examples, scorer, n_batch):
    """(predictions int32 (n,), {metric name: value in the paper's units}, extra {name: value}) of one task by the
    model of `scorer` (heuristics.Scorer)."""
    desc = f'scoring {task}'
    if task == 'sst2':
        logits = scorer.next_token_logits(inputs['examples'], inputs['ids'], n_batch, desc)
        predictions, extra = heuristics.sst2_predictions(logits), {}
    elif task == 'cola':
        train = scorer.continuations(inputs['train'], n_batch, 'scoring cola train')[:, 0]
        threshold = heuristics.cola_threshold(train, inputs['train_y'])
        scores = scorer.continuations(inputs['examples'], n_batch, desc)[:, 0]
        predictions, extra = (scores > threshold).astype(np.int32), {'threshold': threshold}
    else:
        scores = scorer.continuations(inputs['examples'], n_batch, desc)
        predictions, extra = heuristics.first_best(scores.reshape(len(examples.y), -1)), {}
    if task == 'dprd':
        return predictions, {'acc': 100.0 * metrics.accuracy(predictions, examples.y)}, extra
    return predictions, score(REGISTRY[task], predictions, examples), extra


def file_order(task, examples):
    """The examples' order in their files: RACE's passages in sorted path order (each one's questions in file
    order), the others as read (ROCStories' valid split: train.py's split order)."""
    if task != 'race':
        return np.arange(len(examples.ids))
    return np.array(sorted(range(len(examples.ids)), key=lambda i: examples.ids[i].rsplit(':', 1)[0]), dtype=int)


def summary(task, split, scores, extra):
    """The line that a task's figure prints."""
    metric = REGISTRY[task].metrics[0] if task != 'dprd' else None
    title = metric.title if metric else 'Accuracy'
    line = f"{TITLES[task]} zero-shot {split.title()} {title}: {first(scores):.2f}"
    if task == 'race':
        line += f" (RACE-m {scores['RACE-m']:.2f}, RACE-h {scores['RACE-h']:.2f})"
    if task == 'cola':
        line += f" (threshold {extra['threshold']:.6g}, chosen on train)"
    return line


def first(scores):
    """The task's metric, the first of its `scores` (SST-2, ROCStories, DPRD accuracy; CoLA Matthews corr.; RACE
    all)."""
    return next(iter(scores.values()))


def zero_shot(args):
    """One task: its figure printed, and with --json written with the predictions."""
    task, split = args.task[0], args.split or SPLITS[args.task[0]][0]
    text_encoder = TextEncoder(args.encoder_path, args.bpe_path)
    n_vocab = len(text_encoder.encoder)
    examples, train = load_split(task, args.data_dirs[task], split)
    inputs = prepare(task, examples, train, text_encoder, args.n_ctx)
    model = load_language_model(language_model(n_vocab, args.n_ctx, args.n_embd, args.n_head, args.n_layer),
                                args.model_dir)
    predictions, scores, extra = evaluate(task, inputs, examples, heuristics.Scorer(model, n_vocab), args.n_batch)
    print(summary(task, split, scores, extra))
    if args.json:
        order = file_order(task, examples)
        with atomic_write(args.json) as f:
            json.dump({'task': task, 'split': split, 'score': first(scores),
                       'predictions': predictions[order].tolist(), 'ids': [examples.ids[i] for i in order],
                       'scores': scores, **extra}, f)
            f.write('\n')


# ------------------------------------------------------------------------------------------ Figure 2 right


def curve(args):
    """Every saved model of --checkpoints scored on each task; the JSON rewritten after each model, the PNG at
    the end. Models already in the JSON (same tasks, splits and n_ctx) are not scored again."""
    text_encoder = TextEncoder(args.encoder_path, args.bpe_path)
    n_vocab = len(text_encoder.encoder)
    splits = {task: args.split or SPLITS[task][0] for task in args.task}
    data = {}
    for task in args.task:
        examples, train = load_split(task, args.data_dirs[task], splits[task])
        data[task] = (examples, prepare(task, examples, train, text_encoder, args.n_ctx))
    settings = {'checkpoints': args.checkpoints, 'tasks': args.task, 'splits': splits, 'n_ctx': args.n_ctx}
    points = previous_points(args.json, settings)
    done = {p['n_updates'] for p in points}
    model = language_model(n_vocab, args.n_ctx, args.n_embd, args.n_head, args.n_layer)
    scorer = heuristics.Scorer(model, n_vocab)
    todo = [(n, folder) for n, folder in args.folders if n not in done]
    if done:
        print(f"{len(done)} of the {len(args.folders)} saved models already scored in {args.json}")
    for n_updates, folder in tqdm(todo, desc='saved models', unit='model', file=sys.stderr, ncols=80):
        load_language_model(model, folder)
        scores = {task: first(evaluate(task, inputs, examples, scorer, args.n_batch)[1])
                  for task, (examples, inputs) in data.items()}
        points = sorted(points + [{'n_updates': n_updates, 'folder': folder, 'scores': scores,
                                   'normalised': {t: results.normalised(t, v) for t, v in scores.items()
                                                  if t in results.RANDOM}}], key=lambda p: p['n_updates'])
        write_curve(args.json, settings, points)
        tqdm.write(f"{n_updates} updates: " + '  '.join(f'{TITLES[t]} {v:.2f}' for t, v in scores.items()))
    write_curve(args.json, settings, points)
    png = os.path.splitext(args.json)[0] + '.png'
    plot_curve(points, args.task, png)
    print(f"written:\n  curve  {args.json}\n  plot   {png}")


def previous_points(path, settings):
    """The points of an earlier --checkpoints JSON at `path` made with the same settings, else none."""
    try:
        with open(path) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        return []
    same = isinstance(previous, dict) and all(previous.get(k) == v for k, v in settings.items())
    return list(previous.get('points', [])) if same else []


def write_curve(path, settings, points):
    """The curve's JSON: the settings, the paper's chance levels and states of the art, and one point per model."""
    tasks = [t for t in settings['tasks'] if t in results.RANDOM]
    with atomic_write(path) as f:
        json.dump({**settings, 'random': {t: results.RANDOM[t] for t in tasks},
                   'sota': {t: results.SOTA[t] for t in tasks}, 'sota_sources': {t: results.SOTA_SOURCES[t] for t in tasks},
                   'points': points}, f, indent=1)
        f.write('\n')


def plot_curve(points, tasks, out_path):
    """Figure 2 right as a PNG: each task's metric (left panel) and the paper's normalised form (right panel)
    against the pre-training updates (a log axis when none is 0)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), dpi=100, layout='constrained')
    axes = fig.subplots(1, 2)
    x = [p['n_updates'] for p in points]
    for i, task in enumerate(tasks):
        axes[0].plot(x, [p['scores'][task] for p in points], color=f'C{i}', marker='o', markersize=3,
                     label=TITLES[task])
        if task in results.RANDOM:
            axes[1].plot(x, [p['normalised'][task] for p in points], color=f'C{i}', marker='o', markersize=3,
                         label=TITLES[task])
    for ax, ylabel in zip(axes, ['zero-shot metric (accuracy %, Matthews corr. x 100)',
                                 '(metric - random) / (state of the art - random)']):
        if x and min(x) > 0:
            ax.set_xscale('log')
        ax.set_xlabel('pre-training updates')
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small')
    save_png(fig, out_path)


def run(args):
    """The checked `args` run: --checkpoints' curve, or one task's figure."""
    with tensorflow_start_up_hidden(device_init=True):
        tf.config.list_logical_devices()  # the devices start here, without `failed call to cuInit` on a CPU machine
    exit_on_input_error(curve if args.checkpoints else zero_shot, args)


def main(argv=None):
    """The command line `argv` (default sys.argv[1:]) parsed, checked and run."""
    args = parse_args(argv)
    exit_on_input_error(check_args, args)
    run(args)


if __name__ == '__main__':
    run(ARGS)
