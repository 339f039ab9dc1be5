"""What the tests share: the real files' folders and the stand-ins (sample_files, which the benchmarks use too),
the tests' layout of random weights (weights.openai_shapes), and the original's padded arrays through the steps."""
from formats.sample_files import (REAL_FILES, REAL_FILES_HINT, real_folders, real_path,  # noqa: F401 (tests' names)
                                  write_random_weights, write_rocstories)
from formats.weights import openai_shapes  # noqa: F401 (the tests' layout of random weights)


# ------------------------------------------------------------------- the original's padded arrays through the steps

def finetune_step(model, opt, strategy, lm_coef, seed, masked_lm=False, fused=False, **kwargs):
    """train.py's update (opt.make_update of the fine-tuning objective) along the padded path with its masked LM
    head and XLA kernels switched by masked_lm and fused; kwargs: make_update's (jit_compile, accum_steps,
    loss_scale, n_towers)."""
    from engine.kernels import PADDED
    from model import finetune_objective
    from opt import make_update
    path = PADDED._replace(masked_lm=masked_lm, fused=fused)
    return make_update(finetune_objective(model, lm_coef, path), model.params, opt, strategy, seed, **kwargs)


def trim(X, M, Y, multiple=1):
    """A batch of arrays cut to its longest sequence (rounded up to a multiple of `multiple`, at most its length):
    with causal attention the positions after the last real token change nothing."""
    import tensorflow as tf
    T = tf.cast(tf.reduce_max(tf.reduce_sum(M, -1)), tf.int32)
    T = tf.minimum((T + multiple - 1) // multiple * multiple, tf.shape(M)[-1])
    return X[:, :, :T], M[:, :, :T], Y


def train_batches(strategy, X, M, Y, n_batch_train, trimmed=False, multiple=1):
    """The full batches of arrays X (n, n_seq, T, 2), M, Y in order, each split over the replicas
    (loop.distribute); trimmed: each cut to its longest sequence."""
    from engine import loop
    batches = ((X[i:i + n_batch_train], M[i:i + n_batch_train], Y[i:i + n_batch_train])
               for i in range(0, len(Y) - n_batch_train + 1, n_batch_train))
    return (loop.distribute(strategy, trim(*b, multiple) if trimmed else b) for b in batches)
