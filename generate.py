"""Text from the pretrained GPT-1 language model:
    python generate.py --prompt "The cat sat on the mat." --n_tokens 40
    python generate.py --restore save/rocstories/best_params.jl --prompt "The cat sat on the mat."

The LM head is h . we^T over every row of `we` (SPEC.md, "Model"); here the distribution over text is the
softmax over the n_vocab token rows only (model.lm_logprobs): the special rows (`_start_`, `_delimiter_`,
`_classify_`) and the position rows are never sampled nor counted. As in fine-tuning, every sequence begins with
`_start_` (a fresh random row, drawn from numpy's generator seeded with --seed) and position t has the id of
position t (text_utils.Vocab). The zero-shot figures of the language model (the paper's Figure 2, and Story Cloze)
are zeroshot.py's.
"""
import argparse
import os
import random
import sys

from engine.flags import add_flags, bpe_paths
from utils import (HelpFormatter, InputError, check_weights_folder, download_command, exit_on_input_error,
                   tensorflow_start_up_hidden)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--prompt', type=str, required=True, help='text to continue')
    parser.add_argument('--n_tokens', type=int, default=40, help='tokens to generate (fewer if n_ctx is reached)')
    parser.add_argument('--temperature', type=float, default=1.0, help='0: greedy (argmax)')
    parser.add_argument('--top_k', type=int, default=40, help='sample among the k likeliest tokens; 0: all')
    add_flags(parser, ['seed'], seed=dict(help='seeds the special rows and the sampling'))
    add_flags(parser, ['n_ctx', 'n_embd', 'n_head', 'n_layer', 'model_dir'],
              n_ctx=dict(help='longest sequence (the pretrained model has 512)'),
              n_embd=dict(help='width of the pretrained model'))
    parser.add_argument('--restore', type=str,
                        help="a fine-tuned model: train.py's best_params.jl or best_params.safetensors (its n_ctx, "
                             "n_embd and n_layer are the file's) instead of the pretrained weights")
    add_flags(parser, ['encoder_path', 'bpe_path'])
    return bpe_paths(parser.parse_args(argv))


def check_args(args):
    for flag in ['n_ctx', 'n_embd', 'n_head', 'n_layer']:
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.n_tokens < 0:
        raise InputError(f"--n_tokens must be 0 or more, got {args.n_tokens}")
    if args.top_k < 0:
        raise InputError(f"--top_k must be 0 (no truncation) or more, got {args.top_k}")
    if not args.temperature >= 0:
        raise InputError(f"--temperature must be 0 (greedy) or more, got {args.temperature}")
    if not 0 <= args.seed < 2 ** 32:
        raise InputError(f"--seed must be in [0, 2**32), got {args.seed}")
    for path in [args.encoder_path, args.bpe_path]:
        if not os.path.isfile(path):
            raise InputError(f"BPE file {path!r} not found: run `{download_command(os.path.dirname(path), 'bpe')}`")
    if args.restore and not os.path.isfile(args.restore):
        raise InputError(f"--restore {args.restore!r} not found: give the path of a best_params.jl")
    if not args.restore:
        check_weights_folder(args.model_dir)


if __name__ == '__main__':  # --help, a bad flag and a missing file answer now, before the imports below
    exit_on_input_error(check_args, parse_args())

with tensorflow_start_up_hidden():
    import numpy as np
    import tensorflow as tf

    from formats.language_model import language_model, load_language_model
    from formats.weights import LAYER_PARAMS, check_shapes, load_params
    from model import Config, Model, lm_logprobs
    from text_utils import TextEncoder, Vocab


# ------------------------------------------------------------------------------------------ the language model


def positions(model, T):
    """Position ids (T,) of a sequence."""
    return Vocab(model.cfg.n_vocab).position(np.arange(T, dtype=np.int32))


def make_next_logprobs(model, n_vocab):
    """A tf.function: X int32 (B, T, 2) -> log-probabilities (B, n_vocab) of the token after the last, over the
    token rows only."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, 2], tf.int32)])
    def next_logprobs(X):
        B, T = tf.shape(X)[0], tf.shape(X)[1]
        return lm_logprobs(model, X, at=tf.stack([tf.range(B), tf.fill([B], T - 1)], 1), n_rows=n_vocab)
    return next_logprobs


def pick(logits, temperature, top_k, rng):
    """One id from logits (V,) (or log-probabilities: the same softmax): argmax when temperature is 0, else a draw
    from softmax(logits / temperature) restricted to the top_k likeliest (top_k 0: all)."""
    if temperature == 0:
        return int(np.argmax(logits))
    logits = np.asarray(logits, np.float64) / temperature
    if 0 < top_k < len(logits):
        keep = np.argpartition(-logits, top_k - 1)[:top_k]
        truncated = np.full_like(logits, -np.inf)
        truncated[keep] = logits[keep]
        logits = truncated
    p = np.exp(logits - logits.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def sample(model, tokens, n_tokens, n_vocab, temperature=1.0, top_k=40, seed=42):
    """Ids of up to n_tokens tokens continuing `tokens` (which should begin with `_start_`), one at a time, among
    the n_vocab token rows; it stops when the sequence fills the model's n_ctx positions."""
    next_logprobs = make_next_logprobs(model, n_vocab)
    rng = np.random.RandomState(seed)
    tokens = list(tokens)
    new = []
    for _ in range(max(0, min(n_tokens, model.cfg.n_ctx - len(tokens)))):
        X = np.stack([np.asarray(tokens, np.int32), positions(model, len(tokens))], -1)[None]   # (1, T, 2)
        new.append(pick(next_logprobs(X)[0].numpy(), temperature, top_k, rng))
        tokens.append(new[-1])
    return new


def decode(decoder, ids):
    """Text of BPE ids: the pieces joined, each `</w>` (end of a word) becoming a space."""
    return ''.join(decoder[i] for i in ids).replace('</w>', ' ')


# ------------------------------------------------------------------------------------------ the command


def pretrained_model(args, n_vocab):
    """Model(n_vocab, 3, n_ctx) holding the pretrained weights of --model_dir (every layer)."""
    return load_language_model(language_model(n_vocab, args.n_ctx, args.n_embd, args.n_head, args.n_layer),
                               args.model_dir)


def finetuned_model(args, n_vocab):
    """Model holding the parameters of the best_params.jl --restore (read without running code), built with
    the file's n_ctx, n_embd and n_layer: we is (n_vocab + 3 + n_ctx, n_embd), then 12 arrays per layer, then the
    classifier's 2."""
    params = load_params(args.restore)
    we = params[0]
    n_layer, rest = divmod(len(params) - 3, len(LAYER_PARAMS))
    if rest or n_layer < 1 or we.ndim != 2 or we.shape[0] <= Vocab(n_vocab).rows(0):
        raise InputError(f"{args.restore!r} holds {len(params)} arrays, the first of shape {we.shape}: not the "
                         f"parameters of a model with this vocabulary of {n_vocab} pieces (--encoder_path)")
    model = Model(Config(n_vocab, we.shape[0] - Vocab(n_vocab).rows(0), n_embd=we.shape[1], n_head=args.n_head,
                         n_layer=n_layer).without_dropout())
    check_shapes(args.restore, params, [p.shape for p in model.params])
    model.assign(params)
    return model


def generate(args):
    check_args(args)
    random.seed(args.seed)
    np.random.seed(args.seed)   # the special rows, as in train.py
    tf.random.set_seed(args.seed)
    text_encoder = TextEncoder(args.encoder_path, args.bpe_path)
    n_vocab = len(text_encoder.encoder)
    tokens = [Vocab(n_vocab).start] + text_encoder.encode([args.prompt], verbose=False)[0]
    if len(tokens) >= args.n_ctx and not args.restore:
        raise InputError(f"the prompt is {len(tokens) - 1} BPE tokens: with _start_ it fills the --n_ctx "
                         f"{args.n_ctx} positions and leaves none to generate: shorten it or raise --n_ctx (at most 512)")
    model = finetuned_model(args, n_vocab) if args.restore else pretrained_model(args, n_vocab)
    if len(tokens) >= model.cfg.n_ctx:
        raise InputError(f"the prompt is {len(tokens) - 1} BPE tokens: with _start_ it fills the {model.cfg.n_ctx} "
                         f"positions of the model in {args.restore!r} and leaves none to generate: shorten it")
    if len(tokens) + args.n_tokens > model.cfg.n_ctx:
        print(f"note: stopping at n_ctx {model.cfg.n_ctx}: {model.cfg.n_ctx - len(tokens)} tokens", file=sys.stderr)
    ids = sample(model, tokens, args.n_tokens, n_vocab, args.temperature, args.top_k, args.seed)
    print(args.prompt.strip(), decode(text_encoder.decoder, ids).rstrip())  # the prompt, then its continuation


def main(argv=None):
    args = parse_args(argv)
    with tensorflow_start_up_hidden(device_init=True):
        tf.config.list_logical_devices()  # the devices start here, without `failed call to cuInit` on a CPU machine
    exit_on_input_error(generate, args)


if __name__ == '__main__':
    main()
