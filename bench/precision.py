"""What TF32, bf16 and fp16 change against fp32, measured on the CPU (TF32 emulated: no GPU here).

TF32 is emulated by rounding both inputs of every matmul of model.py (its conv1d, attention's two and the LM and
classifier heads) to a 10-bit mantissa (engine.devices.tf32_round), forward and backward (the gradient's matmuls
round their inputs too, as a TF32 tensor core does; the rounding itself is passed straight through), accumulating
in float32. bf16 and fp16 are the project's --precision (mixed precision; fp16 with its loss scale).

1. Losses: 5 updates of the same 4 batches of generated tokens at a reduced main job (8 examples x 2 endings of 77
   positions, padded: the main job's n_ctx; 4 layers, n_embd 384, 6 heads, the real vocabulary's 40,478 rows in
   the LM head; random N(0, 0.02) weights, dropout off, lr 6.25e-5 without warmup, lm_coef 0.5), each precision
   from the same weights; the cost after each update against fp32's.
2. Accuracy: train.py on the real Story Cloze files (--data_dir, the 1,497 training stories of the valid file,
   374 held out) with the real BPE vocabulary, a tiny model from random weights (--n_transfer -1, 2 layers,
   n_embd 32, 4 heads, --n_gpu 1, --n_batch 8: 187 updates, --n_iter 1, seed 42), each precision; its va_acc and
   va_cost against fp32's.

    python bench/precision.py [--data_dir ../shared/data/rocstories] [--model_dir ../shared/model] [--skip_runs]
"""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a script in bench/: the project's modules are the folder above

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import model as model_module  # noqa: E402
from engine import devices  # noqa: E402
from engine.kernels import PADDED  # noqa: E402
from model import Config, Model, finetune_objective  # noqa: E402
from opt import Adam, LossScale, make_update, warmup_linear  # noqa: E402

PRECISIONS = ['fp32', 'tf32 (emulated)', 'bf16', 'fp16']


def _emulated(transpose_b):
    R = devices.tf32_round

    @tf.custom_gradient
    def matmul(a, b):
        ra, rb = R(a), R(b)

        def grad(dy):
            rdy = R(dy)
            if transpose_b:  # y = a b^T: da = dy b, db = dy^T a
                return tf.matmul(rdy, rb), tf.matmul(rdy, ra, transpose_a=True)
            return tf.matmul(rdy, rb, transpose_b=True), tf.matmul(ra, rdy, transpose_a=True)
        return tf.matmul(ra, rb, transpose_b=transpose_b), grad
    return matmul


class TF32Emulated:
    """model.py's `tf` with matmul of float32 inputs as a TF32 tensor core computes it (inputs rounded)."""
    _mm = {False: _emulated(False), True: _emulated(True)}

    def __getattr__(self, name):
        return getattr(tf, name)

    def matmul(self, a, b, transpose_b=False, **kwargs):
        if kwargs or a.dtype != tf.float32:
            return tf.matmul(a, b, transpose_b=transpose_b, **kwargs)
        return self._mm[transpose_b](a, b)


class emulating_tf32:
    def __init__(self, on):
        self.on = on

    def __enter__(self):
        if self.on:
            model_module.tf = TF32Emulated()

    def __exit__(self, *exc):
        model_module.tf = tf


def flag_of(name):
    return 'fp32' if name.startswith('tf32') else name


def batches(n_vocab, n_ctx, n=4, n_examples=8, seed=0):
    """n padded batches (X (8, 2, n_ctx, 2), M, Y) of generated stories: random tokens, each sequence of 40 to
    n_ctx positions ending in _classify_."""
    rng = np.random.RandomState(seed)
    clf = n_vocab + 2  # text_utils.Vocab: _start_, _delimiter_, _classify_ after the tokens
    out = []
    for _ in range(n):
        X = np.zeros((n_examples, 2, n_ctx, 2), np.int32)
        M = np.zeros((n_examples, 2, n_ctx), np.float32)
        X[..., 1] = n_vocab + 3 + np.arange(n_ctx)
        for i in range(n_examples):
            for j in range(2):
                length = rng.randint(40, n_ctx + 1)
                X[i, j, :length, 0] = rng.randint(0, n_vocab, length)
                X[i, j, 0, 0], X[i, j, length - 1, 0] = n_vocab, clf
                M[i, j, :length] = 1
        out.append((X, M, rng.randint(0, 2, n_examples).astype(np.int32)))
    return out


def losses(n_updates=5, n_vocab=40478, n_ctx=77, n_embd=384, n_head=6, n_layer=4):
    data = batches(n_vocab, n_ctx)
    weights = None
    out = {}
    for name in PRECISIONS:
        tf.random.set_seed(0)
        cfg = Config(n_vocab, n_ctx, n_embd=n_embd, n_head=n_head, n_layer=n_layer, embd_pdrop=0, attn_pdrop=0,
                     resid_pdrop=0, clf_pdrop=0, precision=flag_of(name))
        m = Model(cfg)
        if weights is None:
            weights = [p.numpy() for p in m.params]
        m.assign(weights)
        adam = Adam(m.params, lr=6.25e-5, schedule=lambda x: warmup_linear(x, warmup=1e-9), t_total=1000,
                    max_grad_norm=1, l2=0.01)
        scale = LossScale() if name == 'fp16' else None
        start = time.time()
        with emulating_tf32(name.startswith('tf32')):
            update = make_update(finetune_objective(m, 0.5, PADDED), m.params, adam, tf.distribute.get_strategy(),
                                 seed=0, loss_scale=scale, n_towers=1)
            costs = []
            for k in range(n_updates):
                X, M, Y = data[k % len(data)]
                cost, _, _ = update(tf.constant(X), tf.constant(M), tf.constant(Y))
                costs.append(float(cost))
        out[name] = costs
        print(f'{name}: costs {" ".join(f"{c:.6f}" for c in costs)} ({time.time() - start:.0f} s)', flush=True)
    return out


def run_train(argv):
    """train.py run as a program (runpy, as `python train.py ARGV`) in this process, where model.py's matmuls may
    be emulated."""
    import runpy
    saved = sys.argv
    sys.argv = [os.path.join(ROOT, 'train.py')] + argv
    try:
        runpy.run_path(sys.argv[0], run_name='__main__')
    finally:
        sys.argv = saved


def accuracy_runs(data_dir, model_dir):
    out = {}
    with tempfile.TemporaryDirectory(prefix='precision-') as tmp:
        for name in PRECISIONS:
            log_dir = os.path.join(tmp, name.split()[0], 'log')
            start = time.time()
            with emulating_tf32(name.startswith('tf32')):
                run_train(['--desc', 'p', '--data_dir', data_dir, '--model_dir', model_dir, '--n_transfer', '-1',
                            '--n_layer', '2', '--n_embd', '32', '--n_head', '4', '--n_gpu', '1', '--n_batch', '8',
                            '--n_iter', '1', '--precision', flag_of(name), '--log_dir', log_dir,
                            '--save_dir', os.path.join(tmp, name.split()[0], 'save'),
                            '--cache_dir', os.path.join(tmp, 'cache')])
            with open(os.path.join(log_dir, 'p.jsonl')) as f:
                last = [json.loads(line) for line in f][-1]
            out[name] = last
            print(f"{name}: va_acc {last['va_acc']:.2f} va_cost {last['va_cost']:.4f} tr_cost {last['tr_cost']:.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data_dir', default=os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'rocstories'))
    parser.add_argument('--model_dir', default=os.path.join(os.path.dirname(ROOT), 'shared', 'model'))
    parser.add_argument('--skip_runs', action='store_true', help='the losses only')
    args = parser.parse_args()
    print(f'load average {os.getloadavg()[0]:.2f}, {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, '
          f'TensorFlow {tf.__version__}', flush=True)
    costs = losses()
    print('\ncost after each update against fp32: max |difference|, max relative difference')
    for name in PRECISIONS[1:]:
        d = np.abs(np.array(costs[name]) - np.array(costs['fp32']))
        print(f"  {name:16s} {d.max():.2e}  {(d / np.abs(costs['fp32'])).max():.2e}")
    if not args.skip_runs:
        runs = accuracy_runs(args.data_dir, args.model_dir)
        print('\nvalidation after 187 updates against fp32: va_acc (points), va_cost')
        for name in PRECISIONS[1:]:
            print(f"  {name:16s} {runs[name]['va_acc'] - runs['fp32']['va_acc']:+.2f}  "
                  f"{runs[name]['va_cost'] - runs['fp32']['va_cost']:+.2e}")
    print(f'load average at the end {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
