"""The files a benchmark or a test runs on: the real ones where this machine has them (the Story Cloze CSVs, the
BPE files), else stand-ins written on the spot: Story Cloze CSVs in the real format, random weights in the
original's layout, a character-level BPE vocabulary. No TensorFlow; the benchmarks (bench*.py) and tests/fixtures.py
use it.

Where the real files are looked for, in order: $GPT1_DATA_DIR / $GPT1_MODEL_DIR (the folders holding them), the
project's data/ and model/, then ../shared/data/rocstories and ../shared/model beside the project.
"""
import json
import os

import numpy as np

from datasets import ROC_HEADER, ROC_TEST, ROC_VAL

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project's top folder
REAL_FILES = {'data': (ROC_VAL, ROC_TEST), 'model': ('encoder_bpe_40000.json', 'vocab_40000.bpe')}
REAL_FILES_HINT = ('the real files are not present: put the Story Cloze CSVs in data/ and run `python download.py` '
                   '(or set GPT1_DATA_DIR and GPT1_MODEL_DIR to the folders holding them)')


# ------------------------------------------------------------------------------------------- the real files

def real_folders(kind):
    """Where the real files of `kind` are looked for, in order: 'data' (the Story Cloze CSVs): $GPT1_DATA_DIR,
    the project's data/, ../shared/data/rocstories; 'model' (the BPE files, params_shapes.json, the shards):
    $GPT1_MODEL_DIR, the project's model/, ../shared/model."""
    shared = os.path.join(os.path.dirname(PROJECT), 'shared', kind, 'rocstories' if kind == 'data' else '')
    env = os.environ.get(f'GPT1_{kind.upper()}_DIR')
    return ([env] if env else []) + [os.path.join(PROJECT, kind), shared]


def real_path(kind, name=None):
    """The first folder of real_folders(kind) holding REAL_FILES[kind] (name None), or the path of the file
    `name` in the first folder holding it; None when there is none (a test then skips with REAL_FILES_HINT)."""
    for folder in real_folders(kind):
        if name is None and all(os.path.isfile(os.path.join(folder, f)) for f in REAL_FILES[kind]):
            return folder
        if name is not None and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def bpe_files(model_dir, folder):
    """(encoder_path, bpe_path, where they come from): the real BPE files of `model_dir` or else real_path('model'),
    else a character-level vocabulary written to `folder` (char_level_encoder)."""
    for where in [model_dir, real_path('model')]:
        paths = [os.path.join(where, name) for name in REAL_FILES['model']] if where else []
        if paths and all(os.path.isfile(p) for p in paths):
            return (*paths, f'{where} (real BPE)')
    return (*char_level_encoder(folder), 'character-level (generated)')


def story_cloze_folder(data_dir, folder, n=1871):
    """(the folder of the Story Cloze CSVs, where they come from): `data_dir` when given, else real_path('data'),
    else n + n generated examples written to folder/data (write_rocstories)."""
    if data_dir:
        return data_dir, data_dir
    if real_path('data'):
        return real_path('data'), f"{real_path('data')} (real)"
    write_rocstories(os.path.join(folder, 'data'), n_val=n, n_test=n)
    return os.path.join(folder, 'data'), f'generated (sample_files.write_rocstories, {n} + {n})'


# ------------------------------------------------------------------------------------------------ stand-ins

def write_random_weights(model_dir, shapes, n_shards=10, seed=0, std=0.02):
    """Write params_shapes.json (`shapes`, e.g. weights.openai_shapes) and n_shards flat float32 shards, split at
    uneven random points, holding N(0, std) values; return the arrays in shape order."""
    os.makedirs(model_dir, exist_ok=True)
    rng = np.random.RandomState(seed)
    arrays = [(rng.randn(*shape) * std).astype(np.float32) for shape in shapes]
    flat = np.concatenate([a.ravel() for a in arrays])
    if len(flat) <= 10 ** 7:
        cuts = np.sort(rng.choice(np.arange(1, len(flat)), n_shards - 1, replace=False))
    else:  # full size: choice without replacement would shuffle all the positions (tens of seconds)
        cuts = set()
        while len(cuts) < n_shards - 1:
            cuts.add(int(rng.randint(1, len(flat))))
        cuts = sorted(cuts)
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


def char_level_encoder(folder):
    """A character-level BPE vocabulary (each letter and '.', alone or word-final; no merges) written to `folder`
    as enc.json and vocab.bpe, for the generated text; their paths."""
    symbols = sorted(set('abcdefghijklmnopqrstuvwxyz.'))
    encoder_path, bpe_path = os.path.join(folder, 'enc.json'), os.path.join(folder, 'vocab.bpe')
    os.makedirs(folder, exist_ok=True)
    with open(encoder_path, 'w') as f:
        json.dump({s: i for i, s in enumerate(symbols + [s + '</w>' for s in symbols])}, f)
    with open(bpe_path, 'w') as f:
        f.write('#version: 0.2\n\n')
    return encoder_path, bpe_path
