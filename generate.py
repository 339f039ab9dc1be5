"""Text from the pretrained GPT-1 language model, and a zero-shot language-model baseline for Story Cloze:
    python generate.py --prompt "The cat sat on the mat." --n_tokens 40
    python generate.py --zero_shot --split valid
    python generate.py --restore save/rocstories/best_params.jl --prompt "The cat sat on the mat."

The LM head is h . we^T over every row of `we` (SPEC.md, "Model"); here the distribution over text is the
softmax over the n_vocab token rows only (Model.lm_logprobs): the special rows (`_start_`, `_delimiter_`,
`_classify_`) and the position rows are never sampled nor counted. As in fine-tuning, every sequence begins with
`_start_` (a fresh random row, drawn from numpy's generator seeded with --seed) and position t has the id of
position t (vocab.Vocab).

Zero-shot: each ending is scored by the log-likelihood of its tokens given `_start_ + story` (no delimiter: the
pretrained model never saw one); the prediction is the ending with the higher mean log-prob per ending token; the
total log-prob is reported too. This baseline is not from the paper: its zero-shot section (Figure 2) covers
sentiment, Winograd schemas, linguistic acceptability and question answering, not Story Cloze.
"""
import argparse
import os
import random
import sys

from flags import add_flags, bpe_paths
from utils import (HelpFormatter, InputError, check_weights_folder, download_command, exit_on_input_error,
                   tensorflow_start_up_hidden)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument('--prompt', type=str, help='text to continue')
    task.add_argument('--zero_shot', action='store_true', help='zero-shot Story Cloze accuracy of the LM')
    parser.add_argument('--n_tokens', type=int, default=40, help='tokens to generate (fewer if n_ctx is reached)')
    parser.add_argument('--temperature', type=float, default=1.0, help='0: greedy (argmax)')
    parser.add_argument('--top_k', type=int, default=40, help='sample among the k likeliest tokens; 0: all')
    add_flags(parser, ['seed'], seed=dict(help='seeds the special rows and the sampling'))
    parser.add_argument('--data_dir', type=str, default='data/', help='the two Story Cloze CSVs')
    parser.add_argument('--split', type=str, default='valid', choices=['valid', 'test'],
                        help="valid: the 374 stories of train.py's split; test: the test file with its labels")
    parser.add_argument('--n_batch', type=int, default=32, help='zero-shot examples scored at a time')
    add_flags(parser, ['n_ctx', 'n_embd', 'n_head', 'n_layer', 'model_dir'],
              n_ctx=dict(help='longest sequence (the pretrained model has 512)'),
              n_embd=dict(help='width of the pretrained model'))
    parser.add_argument('--restore', type=str,
                        help="a fine-tuned model: train.py's best_params.jl or best_params.safetensors (its n_ctx, "
                             "n_embd and n_layer are the file's) instead of the pretrained weights")
    add_flags(parser, ['encoder_path', 'bpe_path'])
    return bpe_paths(parser.parse_args(argv))


def check_args(args):
    for flag in ['n_ctx', 'n_embd', 'n_head', 'n_layer', 'n_batch']:
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

    from datasets import ROC_TEST, rocstories, rocstories_csv
    from model import Model
    from text_utils import TextEncoder
    from utils import batches_of
    from vocab import N_SPECIAL, Vocab
    from weights import LAYER_PARAMS, check_shapes, load_openai_params, load_params, transfer


# ------------------------------------------------------------------------------------------ the language model


def positions(model, T):
    """Position ids (T,) of a sequence."""
    return Vocab(model.n_vocab).position(np.arange(T, dtype=np.int32))


def make_next_logprobs(model, n_vocab):
    """A tf.function: X int32 (B, T, 2) -> log-probabilities (B, n_vocab) of the token after the last, over the
    token rows only."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, 2], tf.int32)])
    def next_logprobs(X):
        B, T = tf.shape(X)[0], tf.shape(X)[1]
        return model.lm_logprobs(X, at=tf.stack([tf.range(B), tf.fill([B], T - 1)], 1), n_rows=n_vocab)
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
    for _ in range(max(0, min(n_tokens, model.n_ctx - len(tokens)))):
        X = np.stack([np.asarray(tokens, np.int32), positions(model, len(tokens))], -1)[None]   # (1, T, 2)
        new.append(pick(next_logprobs(X)[0].numpy(), temperature, top_k, rng))
        tokens.append(new[-1])
    return new


def decode(decoder, ids):
    """Text of BPE ids: the pieces joined, each `</w>` (end of a word) becoming a space."""
    return ''.join(decoder[i] for i in ids).replace('</w>', ' ')


# ------------------------------------------------------------------------------------------ zero-shot scoring


def make_scorer(model, n_vocab):
    """A tf.function: X int32 (B, T, 2), W float32 (B, T) -> (B,) the sum over t >= 1 of
    W[:, t] * log p(X[:, t, 0] | X[:, :t]), the softmax over the n_vocab token rows; the LM head is computed only
    where W is 1."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, 2], tf.int32), tf.TensorSpec([None, None], tf.float32)])
    def score(X, W):
        idx = tf.where(W[:, 1:] > 0)                                                  # (K, 2): row, t - 1
        logp = model.lm_logprobs(X, at=tf.cast(idx, tf.int32), n_rows=n_vocab)         # (K, n_vocab)
        logp = tf.gather(logp, tf.gather_nd(X[:, 1:, 0], idx), batch_dims=1)           # (K,) of the targets
        return tf.math.unsorted_segment_sum(logp * tf.gather_nd(W[:, 1:], idx), idx[:, 0], tf.shape(X)[0])
    return score


def ending_logprobs(model, stories, endings, n_vocab, max_len, n_batch=32):
    """Log-likelihood of each ending given `_start_ + story`: stories and endings lists of id lists, each cut to
    max_len. Returns float64 (n, 2): column 0 the total log-prob of the ending's tokens, column 1 the mean per
    ending token (0 for an empty ending)."""
    start = Vocab(n_vocab).start
    seqs = [[start] + s[:max_len] + e[:max_len] for s, e in zip(stories, endings)]
    n_ending = np.array([len(e[:max_len]) for e in endings])
    if seqs and max(map(len, seqs)) > model.n_ctx:
        raise InputError(f"a story and its ending make {max(map(len, seqs))} tokens, more than the model's n_ctx "
                         f"{model.n_ctx}: raise --n_ctx (at most 512) or cut them shorter")
    score = make_scorer(model, n_vocab)
    totals = []
    for rows in batches_of(np.arange(len(seqs)), n_batch):
        batch, counts = [seqs[i] for i in rows], n_ending[rows]
        T = max(map(len, batch))
        X = np.zeros((len(batch), T, 2), np.int32)
        W = np.zeros((len(batch), T), np.float32)
        X[:, :, 1] = positions(model, T)
        for i, (seq, k) in enumerate(zip(batch, counts)):
            X[i, :len(seq), 0] = seq
            W[i, len(seq) - k:len(seq)] = 1
        totals.append(score(X, W).numpy().astype(np.float64))
    total = np.concatenate(totals) if totals else np.zeros(0)
    return np.stack([total, total / np.maximum(n_ending, 1)], 1)


def zero_shot_predictions(model, stories, endings1, endings2, n_vocab, max_len, n_batch=32):
    """Chosen ending (0 or 1, ties to 0) of each example by mean log-prob per ending token, and by total."""
    scores1 = ending_logprobs(model, stories, endings1, n_vocab, max_len, n_batch)
    scores2 = ending_logprobs(model, stories, endings2, n_vocab, max_len, n_batch)
    by_total, by_mean = (scores2 > scores1).astype(np.int32).T
    return by_mean, by_total


def zero_shot_accuracy(model, stories, endings1, endings2, labels, n_vocab, max_len, n_batch=32):
    """Percent of examples whose chosen ending is the label: (by mean log-prob per ending token, by total)."""
    by_mean, by_total = zero_shot_predictions(model, stories, endings1, endings2, n_vocab, max_len, n_batch)
    labels = np.asarray(labels)
    return float(np.mean(by_mean == labels) * 100.), float(np.mean(by_total == labels) * 100.)


# ------------------------------------------------------------------------------------------ the command


def pretrained_model(args, n_vocab):
    """Model(n_vocab, 3, n_ctx) holding the pretrained weights (every layer of --n_layer)."""
    model = Model(n_vocab, N_SPECIAL, args.n_ctx, Vocab(n_vocab).classify, n_embd=args.n_embd, n_head=args.n_head,
                  n_layer=args.n_layer, embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, clf_pdrop=0)
    model.assign(transfer(load_openai_params(args.model_dir, args.n_ctx, N_SPECIAL), args.n_layer))
    return model


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
    model = Model(n_vocab, N_SPECIAL, we.shape[0] - Vocab(n_vocab).rows(0), Vocab(n_vocab).classify, n_embd=we.shape[1],
                  n_head=args.n_head, n_layer=n_layer, embd_pdrop=0, attn_pdrop=0, resid_pdrop=0, clf_pdrop=0)
    check_shapes(args.restore, params, [p.shape for p in model.params])
    model.assign(params)
    return model


def story_cloze(args):
    """(stories, endings1, endings2, labels) of the chosen split, as text."""
    if args.split == 'valid':
        _, (stories, endings1, endings2, labels), _ = rocstories(args.data_dir)
        return stories, endings1, endings2, labels
    return rocstories_csv(os.path.join(args.data_dir, ROC_TEST))


def generate(args):
    check_args(args)
    random.seed(args.seed)
    np.random.seed(args.seed)   # the special rows, as in train.py
    tf.random.set_seed(args.seed)
    text_encoder = TextEncoder(args.encoder_path, args.bpe_path)
    n_vocab = len(text_encoder.encoder)
    if args.zero_shot:
        data = story_cloze(args)
        model = finetuned_model(args, n_vocab) if args.restore else pretrained_model(args, n_vocab)
        stories, endings1, endings2 = (text_encoder.encode(texts) for texts in data[:3])
        acc_mean, acc_total = zero_shot_accuracy(model, stories, endings1, endings2, data[3], n_vocab,
                                                 model.n_ctx // 2 - 2, args.n_batch)
        name = args.split.capitalize()
        print('ROCStories zero-shot %s Accuracy: %.2f (mean log-prob per ending token)' % (name, acc_mean))
        print('ROCStories zero-shot %s Accuracy: %.2f (total log-prob of the ending)' % (name, acc_total))
        return
    tokens = [Vocab(n_vocab).start] + text_encoder.encode([args.prompt], verbose=False)[0]
    if len(tokens) >= args.n_ctx and not args.restore:
        raise InputError(f"the prompt is {len(tokens) - 1} BPE tokens: with _start_ it fills the --n_ctx "
                         f"{args.n_ctx} positions and leaves none to generate: shorten it or raise --n_ctx (at most 512)")
    model = finetuned_model(args, n_vocab) if args.restore else pretrained_model(args, n_vocab)
    if len(tokens) >= model.n_ctx:
        raise InputError(f"the prompt is {len(tokens) - 1} BPE tokens: with _start_ it fills the {model.n_ctx} "
                         f"positions of the model in {args.restore!r} and leaves none to generate: shorten it")
    if len(tokens) + args.n_tokens > model.n_ctx:
        print(f"note: stopping at n_ctx {model.n_ctx}: {model.n_ctx - len(tokens)} tokens", file=sys.stderr)
    ids = sample(model, tokens, args.n_tokens, n_vocab, args.temperature, args.top_k, args.seed)
    print(args.prompt.strip(), decode(text_encoder.decoder, ids).rstrip())  # the prompt, then its continuation


def main(argv=None):
    args = parse_args(argv)
    with tensorflow_start_up_hidden(device_init=True):
        tf.config.list_logical_devices()  # the devices start here, without `failed call to cuInit` on a CPU machine
    exit_on_input_error(generate, args)


if __name__ == '__main__':
    main()
