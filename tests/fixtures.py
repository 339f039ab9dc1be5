"""Files the tests make: random weights in the original's layout, small BPE vocabularies, small ROCStories CSVs."""
import json
import os

import numpy as np

from datasets import ROC_HEADER, ROC_TEST, ROC_VAL
from weights import openai_shapes  # noqa: F401 (the tests' layout of random weights)

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_FILES = {'data': (ROC_VAL, ROC_TEST), 'model': ('encoder_bpe_40000.json', 'vocab_40000.bpe')}
REAL_FILES_HINT = ('the real files are not present: put the Story Cloze CSVs in data/ and run `python download.py` '
                   '(or set GPT1_DATA_DIR and GPT1_MODEL_DIR to the folders holding them)')


def real_folders(kind):
    """Where tests look for the real files of `kind`, in order: 'data' (the Story Cloze CSVs): $GPT1_DATA_DIR,
    the project's data/, ../shared/data/rocstories; 'model' (the BPE files, params_shapes.json, the shards):
    $GPT1_MODEL_DIR, the project's model/, ../shared/model."""
    shared = os.path.join(os.path.dirname(PROJECT), 'shared', kind, 'rocstories' if kind == 'data' else '')
    env = os.environ.get(f'GPT1_{kind.upper()}_DIR')
    return ([env] if env else []) + [os.path.join(PROJECT, kind), shared]


def real_path(kind, name=None):
    """The first folder of real_folders(kind) holding REAL_FILES[kind] (name None), or the path of the file
    `name` in the first folder holding it; None when there is none: the test then skips with REAL_FILES_HINT."""
    for folder in real_folders(kind):
        if name is None and all(os.path.isfile(os.path.join(folder, f)) for f in REAL_FILES[kind]):
            return folder
        if name is not None and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def write_random_weights(model_dir, shapes, n_shards=10, seed=0, std=0.02):
    """Write params_shapes.json and n_shards flat float32 shards (split at uneven points) holding random values;
    return the arrays in shape order."""
    os.makedirs(model_dir, exist_ok=True)
    rng = np.random.RandomState(seed)
    arrays = [(rng.randn(*shape) * std).astype(np.float32) for shape in shapes]
    flat = np.concatenate([a.ravel() for a in arrays])
    cuts = np.sort(rng.choice(np.arange(1, len(flat)), n_shards - 1, replace=False))
    for i, part in enumerate(np.split(flat, cuts)):
        np.save(os.path.join(model_dir, f'params_{i}.npy'), part)
    with open(os.path.join(model_dir, 'params_shapes.json'), 'w') as f:
        json.dump(shapes, f)
    return arrays


def write_rocstories(data_dir, n_val=40, n_test=12, seed=0):
    """Two small Story Cloze CSVs in the real format, built from a few words so that a tiny BPE covers them."""
    rng = np.random.RandomState(seed)
    words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran', 'home', 'and', 'was', 'happy', 'sad', 'it', 'rained']
    os.makedirs(data_dir, exist_ok=True)

    def sentence():
        return ' '.join(rng.choice(words, rng.randint(3, 8))).capitalize() + '.'

    for name, n in [(ROC_VAL, n_val), (ROC_TEST, n_test)]:
        rows = [','.join(ROC_HEADER)]
        for i in range(n):
            rows.append(','.join([f'id{i}'] + [sentence() for _ in range(6)] + [str(rng.randint(1, 3))]))
        with open(os.path.join(data_dir, name), 'w', encoding='utf-8') as f:
            f.write('\n'.join(rows) + '\n')


# ------------------------------------------------------------------- the original's padded arrays through the steps

def finetune_step(model, opt, strategy, lm_coef, seed, masked_lm=False, fused=False, **kwargs):
    """train.py's update (loop.make_train_step of the fine-tuning objective) along the padded path with its
    masked LM head and XLA kernels switched by masked_lm and fused; kwargs: make_train_step's (jit_compile,
    accum_steps, loss_scale, n_towers)."""
    import loop
    from model import PADDED, finetune_objective
    path = PADDED._replace(masked_lm=masked_lm, fused=fused)
    return loop.make_train_step(finetune_objective(model, lm_coef, path), model.params, opt, strategy, seed, **kwargs)


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
    import loop
    batches = ((X[i:i + n_batch_train], M[i:i + n_batch_train], Y[i:i + n_batch_train])
               for i in range(0, len(Y) - n_batch_train + 1, n_batch_train))
    return loop.distribute(strategy, (trim(*b, multiple) if trimmed else b for b in batches))
