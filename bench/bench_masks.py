"""The cost of the full-size embedding-dropout masks of an update: drawing and applying one mask of `we` (40,478 +
3 + 77 rows of 768: every row, as the LM head reads them all), forward and forward + backward, as a graph and
under XLA, in four ways (the RNG alone, model.dropout as the port draws it, and two other formulations); then the
n_gpu masks of an update (one per tower) against the update they belong to. A few seconds.

    python bench/bench_masks.py [--n_gpu 4] [--update_s 7.4]
    (python bench/bench.py --masks ... hands over to this program)
"""
import argparse
import os
import sys
import time

# The project's modules live in the repository root, one folder up from this program's bench/ (bench_harness is
# found here, in the script's own folder).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.flags import add_flags  # noqa: E402
from utils import HelpFormatter, tensorflow_start_up_hidden  # noqa: E402

GPT1_VOCAB, N_CTX_ROC = 40478, 77  # the full-size we: GPT-1's vocabulary and ROCStories' context


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_flags(p, ['n_gpu'], n_gpu=dict(default=1, help="the original's towers: an update draws one mask each"))
    p.add_argument('--update_s', type=float, default=7.4,
                   help="seconds of one tower's update of 8 examples to compare with (default: this machine's "
                        "default-path figure in the README)")
    return p.parse_args(argv)


if __name__ == '__main__':  # --help and a bad flag answer before TensorFlow is imported
    ARGS = parse_args(sys.argv[1:])

with tensorflow_start_up_hidden():
    import tensorflow as tf

    from bench_harness import table
    from model import dropout
    from text_utils import Vocab


def mask_methods(p):
    """Ways to draw one dropout mask of a matrix and apply it (keep an element with probability 1 - p, to 2^-23,
    and scale it by 1 / (1 - p)): name -> (f(x, seed), differentiable)."""
    threshold = tf.constant(min(round(p * 2 ** 32), 2 ** 32 - 1), tf.uint32)
    return {
        'RNG alone: Philox uniform float32': (
            lambda x, s: tf.random.stateless_uniform(tf.shape(x), s, alg='philox'), False),
        'model.dropout (the port): uniform >= p, x * mask / (1 - p)': (
            lambda x, s: dropout(x, p, lambda: s), True),
        'the same mask built by one tf.where(uniform >= p, 1 / (1 - p), 0)': (
            lambda x, s: x * tf.where(tf.random.stateless_uniform(tf.shape(x), s, alg='philox') >= p, 1 / (1 - p), 0.),
            True),
        'Philox uint32 >= p * 2^32, tf.where(keep, x / (1 - p), 0)': (
            lambda x, s: tf.where(tf.random.stateless_uniform(tf.shape(x), s, minval=None, maxval=None,
                                                              dtype=tf.uint32, alg='philox') >= threshold,
                                  x * (1 / (1 - p)), tf.zeros_like(x)), True),
    }


def fastest(call, n_runs):
    """(wall, process CPU) seconds of the fastest of n_runs - 2 calls after 2 warm-up; call(i) waits for its
    result."""
    times = []
    for i in range(n_runs):
        t0, c0 = time.perf_counter(), time.process_time()
        call(i)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(times[2:])


def method_row(name, f, differentiable, we, dy, n_runs):
    """The table row of one method: 'wall ms / CPU ms' of forward and forward + backward, as a graph and under
    XLA ('n/a' for a backward that has no gradient)."""
    def forward(s):
        return tf.reduce_sum(f(we, s))

    def backward(s):  # the dropped-out matrix and its gradient, as in a training step
        with tf.GradientTape() as tape:
            y = f(we, s)
        return tf.reduce_sum(y) + tf.reduce_sum(tape.gradient(y, we, output_gradients=dy))

    row = [name]
    for jit in [False, True]:
        for g in [forward, backward]:
            if g is backward and not differentiable:
                row.append('n/a')
                continue
            call = tf.function(g, jit_compile=jit)
            row.append('%.0f / %.0f' % tuple(1e3 * t for t in fastest(
                lambda i, call=call: call(tf.constant([42, i], tf.int32)).numpy(), n_runs)))
    return row


def main(args):
    shape, p, n_runs = (Vocab(GPT1_VOCAB).rows(N_CTX_ROC), 768), 0.1, 5
    we = tf.Variable(tf.random.normal(shape))
    dy = tf.random.normal(shape)
    print(f'EMBEDDING-DROPOUT MASKS (TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, load average '
          f'{os.getloadavg()[0]:.1f}): one mask of we {shape[0]} x {shape[1]} = {shape[0] * shape[1] / 1e6:.1f}M '
          f'elements, p {p}; the fastest of {n_runs - 2} calls after 2 warm-up (wall ms / process CPU ms: the '
          'machine may be shared); each call ends with a reduce_sum of its outputs')
    rows = [method_row(name, f, differentiable, we, dy, n_runs)
            for name, (f, differentiable) in mask_methods(p).items()]
    table(['method', 'fwd ms', 'fwd+bwd ms', 'xla fwd ms', 'xla fwd+bwd ms'], rows)
    port_s = float(rows[1][2].split(' / ')[0]) / 1e3  # model.dropout, forward + backward, wall
    masks_s = args.n_gpu * port_s
    update_s = args.n_gpu * args.update_s
    print(f"An update of n_gpu {args.n_gpu} towers draws {args.n_gpu} masks: {masks_s:.2f} s (model.dropout, "
          f"forward + backward) against ~{update_s:.1f} s for the update ({args.n_gpu} x --update_s {args.update_s}, "
          f"one tower's update of 8 examples on the default path), {100 * masks_s / update_s:.1f}%;")
    print(f"one mask per update instead would save {(args.n_gpu - 1) * port_s:.2f} s. The mask is "
          "needed in full: the LM head reads every row of we.")


if __name__ == '__main__':
    main(ARGS)
