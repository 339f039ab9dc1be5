"""Files the pre-training tests make: a character-level BPE vocabulary (with the paragraph break `\\n</w>`) and
small corpora of generated text, and the command line of a tiny pretrain.py run on them."""
import json
import os

import numpy as np

SYMBOLS = sorted(set('abcdefghijklmnopqrstuvwxyz.'))
PIECES = SYMBOLS + [s + '</w>' for s in SYMBOLS] + ['\n</w>']
N_VOCAB = len(PIECES)
WORDS = 'abcdefghij'  # one-letter words: each is one token, `x</w>`


def write_vocab(folder):
    """A character vocabulary and an empty list of merges (each letter a piece, each word its letters); returns
    (encoder_path, bpe_path)."""
    os.makedirs(folder, exist_ok=True)
    encoder_path, bpe_path = os.path.join(folder, 'encoder.json'), os.path.join(folder, 'vocab.bpe')
    with open(encoder_path, 'w') as f:
        json.dump({piece: i for i, piece in enumerate(PIECES)}, f)
    with open(bpe_path, 'w') as f:
        f.write('#version: 0.2\n\n')
    return encoder_path, bpe_path


def token(word):
    """The id of a one-letter word."""
    return PIECES.index(word + '</w>')


def cycle_text(rng, n_words, step=3):
    """A document of one-letter words that follow each other in a fixed cycle (word k + 1 is `step` letters after
    word k, modulo 10) from a random first word: each word but the first is determined by the one before."""
    first = rng.randint(len(WORDS))
    return ' '.join(WORDS[(first + step * k) % len(WORDS)] for k in range(n_words))


def write_corpus(folder, n_docs=24, seed=0, n_words=(20, 60)):
    """n_docs .txt documents of cycle_text in `folder` (half of them in a subfolder); returns their texts in the
    corpus's order (sorted paths)."""
    rng = np.random.RandomState(seed)
    paths = {}
    for d in range(n_docs):
        path = os.path.join(folder, 'part' if d % 2 else '', f'doc{d:03d}.txt')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        paths[path] = cycle_text(rng, rng.randint(*n_words))
        with open(path, 'w', encoding='utf-8') as f:
            f.write(paths[path])
    return [paths[p] for p in sorted(paths)]


def argv(root, corpus, **flags):
    """pretrain.py's arguments: a tiny model on `corpus` with the vocabulary in root/vocab (write_vocab), outputs
    in root/out, the cache in root/cache; `flags` add to or replace them (True: a switch; None: left out)."""
    encoder_path, bpe_path = os.path.join(root, 'vocab', 'encoder.json'), os.path.join(root, 'vocab', 'vocab.bpe')
    args = dict(desc='tiny', n_embd=16, n_head=2, n_layer=2, n_ctx=12, n_batch=4, n_iter=2, warmup_updates=2,
                lr=0.01, valid_fraction=0.25, eval_every=2, encoder_path=encoder_path, bpe_path=bpe_path,
                log_dir=os.path.join(root, 'out', 'log'), save_dir=os.path.join(root, 'out', 'save'),
                cache_dir=os.path.join(root, 'cache'))
    args.update(flags)
    line = ['--corpus'] + ([str(c) for c in corpus] if isinstance(corpus, (list, tuple)) else [str(corpus)])
    for flag, value in args.items():
        if value is True:
            line.append(f'--{flag}')
        elif value is not None and value is not False:
            line += [f'--{flag}', str(value)]
    return line
