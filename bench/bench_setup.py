"""What bench.py's comparison runs on: ROCStories read, encoded and made into the model's inputs as train.py makes
them (finetuning.tasks.TASKS['rocstories'], finetuning/inputs.py), the weights in the original's layout (random, or
--model_dir's) loaded as train.py loads them, the strategy and the batches; and the setup table of what that took."""
import json
import os
import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

import text_utils
from bench_harness import N_WARMUP, progress, table
from engine import loop
from finetuning import inputs, tasks
from formats.sample_files import bpe_files, story_cloze_folder, write_random_weights
from formats.weights import LAYER_PARAMS, load_openai_params, openai_shapes, transfer
from model import Config, Model
from text_utils import N_SPECIAL, TextEncoder, Vocab
from utils import InputError

GPT1_VOCAB = 40478


class Setup(NamedTuple):
    """What every measurement runs on: ROCStories' train and valid splits (inputs.Split; the valid one also with
    its multiple-choice units, valid_packed, which inputs.eval_batch packs whole on a fixed_eval path)
    for a model of n_vocab, n_ctx, n_embd, n_layer, n_head whose LM head has n_lm rows; the initial parameters
    `init` (numpy, the original's order: loaded weights and a fresh classifier); the strategy, the global batch
    nbt, the n_need batches of each job, t_total (the schedule's updates); the packing of the training towers that
    train.py would choose for this run (3 epochs, seed 42) and whether it would pack; what was used (`about`) and
    the setup table's rows."""
    task: object
    train: object
    valid: object
    valid_packed: object
    n_vocab: int
    n_ctx: int
    n_embd: int
    n_layer: int
    n_head: int
    n_lm: int
    init: list
    strategy: object
    n_gpu: int
    nbt: int
    n_need: int
    t_total: int
    about: dict
    rows: list
    packing: object = None
    packs: bool = True
    eval_packings: dict = None

    @property
    def dims(self):
        return self.n_layer, self.n_embd, self.n_lm

    def batch(self, split, path, i):
        """Batch i (rows i * nbt onwards) of `split` as `path` makes it, as numpy arrays, as train.py does: the
        train split packed by tower (inputs.train_batch with the run's Packing: packed_train_batch's (X, seg,
        clf_at, Y)) on a packed_train path, an evaluated split in rows of its one shape (inputs.eval_batch's (X,
        seg, clf_at, Y), filled up to nbt examples) on a fixed_eval path, else padded (inputs.train_batch's (X, M,
        Y): to n_ctx, or to the batch's longest rounded up to the path's multiple)."""
        rows = np.arange(i * self.nbt, min((i + 1) * self.nbt, len(split.Y)))
        if path.packed_train and split is self.train:
            return inputs.train_batch(self.task, split, rows, self.n_vocab, self.n_ctx, path, self.n_gpu,
                                      self.packing)
        if path.fixed_eval and split is not self.train:
            return inputs.eval_batch(self.task, split, rows, self.n_vocab, self.nbt, self.eval_packings[id(split)])
        return inputs.train_batch(self.task, split, rows, self.n_vocab, self.n_ctx, path, self.n_gpu)

    def hp(self, **changes):
        """OriginalGraph's arguments for this model and batch."""
        return dict(n_vocab=self.n_vocab, n_ctx=self.n_ctx, clf_token=Vocab(self.n_vocab).classify,
                    n_embd=self.n_embd, n_head=self.n_head, n_layer=self.n_layer, n_batch=self.nbt // self.n_gpu,
                    n_gpu=self.n_gpu, t_total=self.t_total, **changes)

    def new_model(self, dropout=True, precision='fp32'):
        """A fresh Model of this size with ROCStories' head (the default Head) under the strategy (dropout off:
        every pdrop 0)."""
        cfg = Config(self.n_vocab, self.n_ctx, n_embd=self.n_embd, n_head=self.n_head, n_layer=self.n_layer,
                     precision=precision)
        with self.strategy.scope():
            return Model(cfg if dropout else cfg.without_dropout())


def timed(fn):
    """fn()'s result and its seconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def encoded_story_cloze(args, tmp, rows):
    """ROCStories read and encoded as train.py does (finetuning.tasks.TASKS['rocstories'],
    text_utils.encode_splits), then text_utils.encoded_dataset's second start timed (the first writes the cache);
    the encoded splits, the text encoder and what was used."""
    task = tasks.TASKS['rocstories']
    data_dir, data_src = story_cloze_folder(args.data_dir, tmp)
    encoder_path, bpe_path, enc_src = bpe_files(args.model_dir, tmp)
    text_encoder, t_init = timed(lambda: TextEncoder(encoder_path, bpe_path))
    splits, t_read = timed(lambda: task.load(data_dir))
    encoded, t_encode = timed(lambda: text_utils.encode_splits(text_encoder, splits, task.name))
    cache_dir = os.path.join(tmp, 'cache')
    text_utils.encoded_dataset(task, data_dir, cache_dir, text_encoder)[1]()  # a first start: encodes, writes the cache
    t_cached = timed(lambda: text_utils.encoded_dataset(task, data_dir, cache_dir, text_encoder))[1]
    n_texts = sum(len(field) for ex in splits.values() for field in ex.texts)
    n_distinct = sum(len({t for field in ex.texts for t in field}) for ex in splits.values())  # encoded once each
    n_bpe = sum(len(field.ids) for ex in encoded.values() for field in ex.texts)
    rows += [['TextEncoder init', f'{t_init:.2f}', 'vocabulary and BPE merges'],
             ['read + split CSVs', f'{t_read:.2f}', "finetuning.tasks.TASKS['rocstories'].load"],
             ['encode whole data set', f'{t_encode:.2f}', f'{n_texts} texts ({n_distinct} distinct) -> {n_bpe} BPE '
                                                          f'tokens ({n_texts / t_encode:.0f} texts/s)'],
             ['encoded set from the cache', f'{t_cached:.2f}', "train.py's second start (--cache_dir)"]]
    return task, encoded, text_encoder, dict(data=data_src, encoder=enc_src)


def model_size(args, tmp, text_encoder, enc_src):
    """(n_vocab, n_embd, n_layer, n_head, the weights' folder, where they come from): --model_dir's, or random
    weights in the original's layout written to tmp (the real vocabulary's size, or GPT-1's)."""
    if args.model_dir:
        with open(os.path.join(args.model_dir, 'params_shapes.json')) as f:
            shapes = json.load(f)
        n_vocab, n_embd = shapes[1]
        return n_vocab, n_embd, (len(shapes) - 2) // len(LAYER_PARAMS), 12, args.model_dir, args.model_dir
    n_vocab = len(text_encoder.encoder) if 'real' in enc_src else GPT1_VOCAB
    n_embd, n_layer, n_head = (64, 2, 4) if args.quick else (768, args.n_layer or 12, 12)
    weights_dir = os.path.join(tmp, 'model')
    progress(f'writing random weights ({n_layer} layers, n_embd {n_embd}) in the original layout to {weights_dir}')
    t0 = time.perf_counter()
    write_random_weights(weights_dir, openai_shapes(n_vocab, n_embd, n_layer), n_shards=10, seed=0)
    src = (f'random (formats.sample_files.write_random_weights, 10 shards, written in '
           f'{time.perf_counter() - t0:.1f} s), '
           'loaded; then LayerNorm g = 1, b = 0 (random LN gains make the output independent of the input)')
    return n_vocab, n_embd, n_layer, n_head, weights_dir, src


def unit_layer_norms(init, n_layer):
    """write_random_weights draws the LayerNorm gains and biases N(0, 0.02) too: after 12 such layers the hidden
    state no longer depends on the input (the two choices' _classify_ states agree to ~1e-8), which would make the
    agreement checks vacuous. Give the LayerNorms a fresh model's g = 1, b = 0 (the timing is unaffected)."""
    for layer in range(n_layer):
        for k in ('ln_1/g', 'ln_2/g', 'ln_1/b', 'ln_2/b'):
            i = 1 + len(LAYER_PARAMS) * layer + LAYER_PARAMS.index(k)
            init[i] = np.full_like(init[i], 1. if k.endswith('/g') else 0.)


def setup(args, tmp, phases):
    """The data encoded and ready, the weights written (random) and loaded into a first model (dropout on): the
    Setup and that model."""
    rows = []
    progress('reading and encoding the data set')
    task, encoded, text_encoder, about = encoded_story_cloze(args, tmp, rows)
    phases.mark('data encoded', load=False)
    n_vocab, n_embd, n_layer, n_head, weights_dir, about['weights'] = model_size(args, tmp, text_encoder,
                                                                                  about['encoder'])
    splits = {name: inputs.ready(task, encoded[name], n_vocab, 512, packed=False) for name in encoded}
    n_ctx = max(int(split.seqs.lengths.max()) for split in splits.values())  # the longest of any split, <= 512
    valid_packed = inputs.ready(task, encoded[task.valid], n_vocab, 512, packed=True)  # fixed_eval: MC units whole

    np.random.seed(42)  # the special rows of we (load_openai_params) and, below, the variables' initial values
    tf.random.set_seed(42)
    strategy = loop.make_strategy(args.n_gpu)
    nbt = args.n_batch * args.n_gpu
    loop.check_replicas(args.n_batch, args.n_gpu, strategy.num_replicas_in_sync)
    n_need, n_train, n_valid = N_WARMUP + args.steps, len(splits['train'].Y), len(splits[task.valid].Y)
    if n_train // nbt < n_need or -(-n_valid // nbt) < n_need:
        raise InputError(f'{n_need} batches of {nbt} needed, the data has {n_train} train and {n_valid} valid '
                         'examples: lower --steps, --n_batch or --n_gpu')
    s = Setup(task, splits['train'], splits[task.valid], valid_packed, n_vocab, n_ctx, n_embd, n_layer, n_head,
              Vocab(n_vocab).rows(n_ctx), None, strategy, args.n_gpu, nbt, n_need, (n_train // nbt) * 3, about, rows)

    progress('building the models and loading the weights')
    model, t_build = timed(s.new_model)
    arrays, t_load = timed(lambda: transfer(load_openai_params(weights_dir, n_ctx, N_SPECIAL), n_layer))
    t_assign = timed(lambda: model.assign(arrays))[1]
    arrays = None  # the loaded copy: the model holds the weights now
    rows += [['build Model', f'{t_build:.2f}', 'random init of every variable'],
             ['load weights', f'{t_load:.2f}', 'load_openai_params + transfer (10 .npy shards)'],
             ['Model.assign', f'{t_assign:.2f}', ''], ['load + assign', f'{t_load + t_assign:.2f}', '']]
    init = [p.numpy() for p in model.params]  # loaded weights plus the fresh classifier: every variant starts here
    if not args.model_dir:
        unit_layer_norms(init, n_layer)
    orders = inputs.epoch_orders(n_train, 3, np.random.get_state())  # as train.py, after the special rows
    (packing, packs), t_plan = timed(lambda: inputs.packing_plan(s.train.seqs, orders, task.n_seq, args.n_batch,
                                                                args.n_gpu, n_embd, 1, n_ctx))
    rows += [['packing plan', f'{t_plan:.2f}', f'{packing.in_words()} per tower, '
                                              f'{100 * packing.real:.0f}% real tokens (trimmed batches: '
                                              f'{100 * packing.trimmed:.0f}%) over the 3 epochs'
                                              + ('' if packs else "; train.py would not pack")]]
    eval_packings = {id(split): inputs.eval_packing(task, split, nbt, n_embd) for split in (s.valid, valid_packed)}
    pk = eval_packings[id(valid_packed)]
    rows.append(['evaluation packing', '', f'{pk.rows} rows of {pk.length} per batch of {nbt} (packed valid split)'])
    phases.mark('weights loaded (1 model)')
    return s._replace(init=init, packing=packing, packs=packs, eval_packings=eval_packings), model


def print_setup(s, args):
    """What the comparison runs on, and the setup table."""
    n_params = sum(a.size for a in s.init)
    print(f'GPT-1 fine-tuning benchmark  (TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, '
          f'devices: {", ".join(d.name for d in tf.config.list_logical_devices())})')
    print(f'model: n_embd {s.n_embd}, n_layer {s.n_layer}, n_head {s.n_head}, n_vocab {s.n_vocab}, n_ctx {s.n_ctx}, '
          f'{n_params / 1e6:.1f}M parameters, LM head over {s.n_lm} rows')
    print(f"weights: {s.about['weights']}")
    print(f"data: {s.about['data']}; text encoder: {s.about['encoder']}")
    print(f'batches: global {s.nbt} examples (n_batch {args.n_batch} x n_gpu {args.n_gpu}, '
          f'{s.strategy.num_replicas_in_sync} replica), first {s.n_need} full batches of the train split in split '
          f'order; {N_WARMUP} warm-up + {args.steps} timed')
    print()
    table(['setup', 'seconds', 'detail'], s.rows)

