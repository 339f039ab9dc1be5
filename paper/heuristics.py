"""The paper's zero-shot heuristics (Radford et al. 2018, section 5 and Figure 2 right): tasks done by the pretrained
language model alone, without fine-tuning, by the rules of SPEC.md "Zero-shot" (zeroshot.py runs them).

Every sequence holds text tokens only (the pretrained model never saw `_start_`, `_delimiter_` nor `_classify_`),
token t has position row t, and log p(x_i | x_<i) is the log-softmax over the n_vocab token rows of
h_{i-1} . we^T (model.lm_logprobs with n_rows = n_vocab). Most rules score continuations: an example is a context
(token ids) and k continuations, each read after the context alone; a continuation's score is the mean log-prob of
its tokens given the context and its own earlier tokens (a token with nothing before it is not scored, and a
continuation without a scored token scores 0).

    SST-2        x = sentence + `very`: positive (1) iff the logit of `positive` > that of `negative` after x
    CoLA         context = the sentence's first token, continuation = the rest: acceptable (1) iff its score > the
                 threshold chosen on train (cola_threshold)
    RACE         context = article + question (fit_context), continuations = the 4 options: the first best
    DPRD         per candidate, context = the text before the pronoun + the candidate, continuation = the text
                 after it: the first best candidate
    Story Cloze  context = the story (fit_context), continuations = the 2 endings: the first best

Scoring packs an example's continuations after one copy of its context (the forward's segments: each sees only
the context and itself, its positions its own), which gives the log-probs of scoring each context + continuation
sequence alone.
"""
import sys
from fractions import Fraction

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from datasets import pronoun_span
from model import lm_logits, lm_logprobs
from text_utils import Vocab
from utils import batches_of

# ------------------------------------------------------------------------------------------------ the scoring


def pack(batch, n_vocab):
    """The inputs for examples `batch` (a list of (context, continuations), each the same number k of
    continuations), one packed sequence each: X int32 (B, T, 2) token ids (0-padded) and position ids, seg int32
    (B, T) (0 the context, j + 1 continuation j, k + 1 padding, which no real token sees); and the tokens to score:
    at int32 (K, 2) (sequence, index of the hidden state that predicts the token), targets int32 (K,) and groups
    int64 (K,) (the example's place in the batch * k + j)."""
    vocab = Vocab(n_vocab)
    k = len(batch[0][1])
    T = max(1, max(len(context) + sum(map(len, conts)) for context, conts in batch))
    X = np.zeros((len(batch), T, 2), np.int32)
    X[..., 1] = vocab.position(0)
    seg = np.full((len(batch), T), k + 1, np.int32)
    at, targets, groups = [np.zeros((0, 2), np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for b, (context, conts) in enumerate(batch):
        n = len(context)
        X[b, :n, 0], X[b, :n, 1], seg[b, :n] = context, vocab.position(np.arange(n)), 0
        p = n
        for j, cont in enumerate(conts):
            m = len(cont)
            X[b, p:p + m, 0], X[b, p:p + m, 1], seg[b, p:p + m] = cont, vocab.position(n + np.arange(m)), j + 1
            predictors = np.concatenate([[n - 1], p + np.arange(m - 1)])[:m]   # token 0 follows the context
            keep = predictors >= 0
            at.append(np.stack([np.full(keep.sum(), b), predictors[keep]], 1))
            targets.append(np.asarray(cont, np.int64)[keep])
            groups.append(np.full(keep.sum(), b * k + j))
            p += m
    return (X, seg, np.concatenate(at).astype(np.int32), np.concatenate(targets).astype(np.int32),
            np.concatenate(groups))


def one_unit(seg):
    """pack's seg as the forward's segments (model.segment_mask): each row one unit whose parts are the context
    (part 0, which every continuation sees), the continuations and the padding -> (seg, n_parts)."""
    return seg + 1, tf.reduce_max(seg) + 1


def by_length(lengths, n_batch):
    """Batches of n_batch row indices, the rows in the order of their lengths (less padding), each row once."""
    return batches_of(np.argsort(np.asarray(lengths), kind='stable'), n_batch)


class Scorer:
    """The language model's scores of sequences, its two tf.functions traced once (a model whose weights are
    assigned again, as --checkpoints does, is scored without tracing again)."""

    def __init__(self, model, n_vocab):
        self.n_vocab = n_vocab
        specs = [tf.TensorSpec([None, None, 2], tf.int32), tf.TensorSpec([None, None], tf.int32)]

        @tf.function(input_signature=specs + [tf.TensorSpec([None, 2], tf.int32), tf.TensorSpec([None], tf.int32)])
        def token_logprobs(X, seg, at, targets):
            logp = lm_logprobs(model, X, at, n_vocab, *one_unit(seg))                  # (K, n_vocab)
            return tf.gather(logp, targets, batch_dims=1)                              # (K,)

        @tf.function(input_signature=specs + [tf.TensorSpec([None], tf.int32)])
        def last_logits(X, seg, last):
            at = tf.stack([tf.range(tf.shape(X)[0]), last], 1)
            return lm_logits(model, X, at, n_vocab, *one_unit(seg))                    # (B, n_vocab)

        self.token_logprobs, self.last_logits = token_logprobs, last_logits

    def continuations(self, examples, n_batch=8, desc=None):
        """Scores float64 (n, k) of `examples` (a list of n (context, k continuations), lists of ids): the mean of
        log p(token | everything before it in context + continuation) over each continuation's tokens (0 without
        a scored token); the log-probs over the n_vocab token rows. `desc` labels the progress bar."""
        k = len(examples[0][1]) if examples else 0
        sums, counts = np.zeros(len(examples) * k), np.zeros(len(examples) * k)
        lengths = [len(context) + sum(map(len, conts)) for context, conts in examples]
        with tqdm(total=len(examples), desc=desc, unit='ex', file=sys.stderr, ncols=80, leave=False) as bar:
            for rows in by_length(lengths, n_batch):
                X, seg, at, targets, groups = pack([examples[i] for i in rows], self.n_vocab)
                logp = self.token_logprobs(X, seg, at, targets).numpy().astype(np.float64)
                flat = rows[groups // k] * k + groups % k
                np.add.at(sums, flat, logp)
                np.add.at(counts, flat, 1)
                bar.update(len(rows))
        return (sums / np.maximum(counts, 1)).reshape(len(examples), k)

    def next_token_logits(self, seqs, token_ids, n_batch=8, desc=None):
        """Logits float32 (n, len(token_ids)) of the tokens `token_ids` after each sequence of `seqs` (lists of
        ids, at least one token each): h at the sequence's last token . we[token]."""
        logits = np.zeros((len(seqs), len(token_ids)), np.float32)
        with tqdm(total=len(seqs), desc=desc, unit='ex', file=sys.stderr, ncols=80, leave=False) as bar:
            for rows in by_length([len(s) for s in seqs], n_batch):
                X, seg, *_ = pack([(seqs[i], []) for i in rows], self.n_vocab)
                last = np.array([len(seqs[i]) - 1 for i in rows], np.int32)
                logits[rows] = self.last_logits(X, seg, last).numpy()[:, token_ids]
                bar.update(len(rows))
        return logits


# ------------------------------------------------------------------------------------------------ the rules


def sst2(sentences, very, n_ctx):
    """SST-2's sequences: each sentence (cut at its end to n_ctx - 1 tokens) followed by the id of `very`."""
    return [list(s[:n_ctx - 1]) + [very] for s in sentences]


def sst2_predictions(logits):
    """1 (positive) where the logit of `positive` (column 0) is greater than that of `negative` (column 1), else
    0."""
    return (logits[:, 0] > logits[:, 1]).astype(np.int32)


def cola(sentences, n_ctx):
    """CoLA's examples: each sentence (cut at its end to n_ctx tokens), its first token the context and the rest
    the one continuation: the score is the mean of log p(x_i | x_<i) over i = 2..n (0 for one token)."""
    return [(list(s[:1]), [list(s[1:n_ctx])]) for s in sentences]


def cola_threshold(scores, labels):
    """The threshold t among the train `scores` that maximises the Matthews correlation of "acceptable (1) iff
    score > t" against `labels` (0 when a margin is empty), the smallest such t on ties; the correlations are
    compared exactly (as the fraction sign(num) num^2 / den), not rounded."""
    scores, y = np.asarray(scores, np.float64), np.asarray(labels) == 1
    order = np.argsort(scores, kind='stable')
    s, y = scores[order], y[order]
    candidates = np.unique(s)                                            # ascending
    above = np.searchsorted(s, candidates, side='right')                 # s[above:] > candidate
    positives_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])     # positives_from[i] = sum(y[i:])
    n, p = len(s), int(y.sum())
    tp = positives_from[above]
    fp = n - above - tp
    fn, tn = p - tp, n - p - fp
    num = (tp * tn - fp * fn).tolist()
    den = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).tolist()
    keys = [Fraction(a * abs(a), d) if d else Fraction(0) for a, d in zip(num, den)]
    best = max(range(len(keys)), key=lambda i: (keys[i], -i))
    return float(candidates[best])


def fit_context(fields, conts, n_ctx):
    """A context of several fields (RACE's article and question; Story Cloze's story) and its continuations cut so
    that the context followed by any continuation fits n_ctx: each continuation to n_ctx // 2 tokens, then the
    fields kept whole from the last back, the first one reached that does not fit cut at its end (RACE: the
    article's end, so that the longest option fits). Returns (context, continuations)."""
    conts = [list(c[:n_ctx // 2]) for c in conts]
    left = n_ctx - max(map(len, conts), default=0)
    kept = []
    for field in reversed(fields):
        kept.insert(0, list(field[:max(left, 0)]))
        left -= len(kept[0])
    return [t for field in kept for t in field], conts


def dprd_texts(sentences, pronouns, candidates1, candidates2):
    """DPRD's texts, three lists: the text before the pronoun's first whole-word occurrence (datasets.pronoun_span)
    followed by candidate 1, the same followed by candidate 2, and the text after the pronoun."""
    spans = [pronoun_span(sentence, pronoun) for sentence, pronoun in zip(sentences, pronouns)]
    return ([s[:start] + c for s, (start, _), c in zip(sentences, spans, candidates1)],
            [s[:start] + c for s, (start, _), c in zip(sentences, spans, candidates2)],
            [s[end:] for s, (_, end) in zip(sentences, spans)])


def dprd(prefixes, after, n_ctx):
    """DPRD's examples: for each candidate's prefix (ids of the text before + the candidate), the prefix as the
    context and the text after as the continuation, the sequence cut at its end to n_ctx tokens."""
    return [(list(p[:n_ctx]), [list(after[:max(0, n_ctx - len(p))])]) for p in prefixes]


def first_best(scores):
    """The first continuation of each example with the highest score: int (n,) of scores (n, k)."""
    return np.argmax(scores, 1).astype(np.int32)
