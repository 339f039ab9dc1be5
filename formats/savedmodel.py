"""GPT-1 as a TensorFlow SavedModel (convert.py --to_savedmodel; SPEC.md "SavedModel", docs/conversions.md): a
tf.Module holding model.py's Model, whose one signature `serving_default` runs the model's one forward (Model.__call__,
no dropout, float32) and then its heads, so that the numbers are the port's padded path's. The SavedModel loads
without this project (tf.saved_model.load, saved_model_cli, TF Serving): the graph holds no Python. The text pipeline
(ftfy, spaCy, BPE: text_utils.py) stays outside the graph; the signatures take the port's token ids.

    fine-tuned model   input_ids int32 (batch, n_seq, length) -> logits, probabilities float32 (batch, n_logits)
                       (STS-B: score float32 (batch,))
    language model     input_ids int32 (batch, length), lengths int32 (batch,) -> log_probs float32
                       (batch, length, n_vocab), last_log_probs float32 (batch, n_vocab)
"""
import tensorflow as tf

from model import Config, Head, Model, lm_logprobs, rows_of
from text_utils import N_SPECIAL, Vocab

SIGNATURE = 'serving_default'


def positions(model, input_ids):
    """input_ids int32 (..., T) -> X int32 (..., T, 2): each token with its position's id, positions 0 .. T - 1 of
    Vocab (as inputs.pad_batch)."""
    T = tf.shape(input_ids)[-1]
    first = Vocab(model.cfg.n_vocab, model.cfg.n_special).position(0)
    return tf.stack([input_ids, tf.broadcast_to(first + tf.range(T), tf.shape(input_ids))], -1)


def check_length(model, input_ids):
    return tf.debugging.assert_less_equal(
        tf.shape(input_ids)[-1], model.cfg.n_ctx,
        message=f"input_ids is longer than the model's {model.cfg.n_ctx} positions (n_ctx)")


class FineTuned(tf.Module):
    """A fine-tuned model's signature: `input_ids` int32 (batch, n_seq, length), each sequence as inputs.sequences
    builds it ([start] ... [extract]), padded after its extract token with any id (causal attention: what follows
    the first `_classify_` changes nothing; 0 as inputs.pad_batch). Its extract token is its first `_classify_`
    (rows_of). Returns {'logits', 'probabilities'} (batch, head.n_logits), or {'score'} (batch,) for a regression."""

    def __init__(self, model):
        super().__init__(name='gpt1_finetuned')
        self.model = model
        head = model.cfg.head
        spec = tf.TensorSpec([None, head.n_seq, None], tf.int32, name='input_ids')
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, input_ids):
        model, clf = self.model, self.model.clf_token
        has_clf = tf.reduce_all(tf.reduce_any(tf.equal(input_ids, clf), -1))
        checks = [check_length(model, input_ids),
                  tf.debugging.assert_equal(has_clf, True, message=f"a sequence of input_ids has no _classify_ "
                                            f"token ({clf}): end each sequence with it, as inputs.sequences does")]
        with tf.control_dependencies(checks):
            X = positions(model, input_ids)                                          # (n, n_seq, T, 2)
        X, _, _, clf_at, _ = rows_of((X, tf.zeros(tf.shape(input_ids)), None), clf)
        h, _ = model(X)
        logits = model.clf_head(h, clf_at)
        if model.cfg.head.loss == 'squared':
            return {'score': logits[:, 0]}
        return {'logits': logits, 'probabilities': tf.nn.softmax(logits)}


class LanguageModel(tf.Module):
    """The language model's signature: `input_ids` int32 (batch, length) of BPE pieces (ids < n_vocab), `lengths`
    int32 (batch,) each row's real tokens (1 .. length; what follows is padding). Returns `log_probs` (batch, length,
    n_vocab), row t the log-probabilities of the token after t, and `last_log_probs` (batch, n_vocab), those after
    each row's last real token: lm_logprobs over the n_vocab token rows (generation's and zero-shot's)."""

    def __init__(self, model):
        super().__init__(name='gpt1_language_model')
        self.model = model
        ids = tf.TensorSpec([None, None], tf.int32, name='input_ids')
        lengths = tf.TensorSpec([None], tf.int32, name='lengths')
        self.serve = tf.function(self._serve, input_signature=[ids, lengths])

    def _serve(self, input_ids, lengths):
        model = self.model
        checks = [check_length(model, input_ids),
                  tf.debugging.assert_equal(tf.shape(lengths)[0], tf.shape(input_ids)[0],
                                            message="lengths has another batch size than input_ids"),
                  tf.debugging.assert_positive(lengths, message="a length is 0: each row needs a token"),
                  tf.debugging.assert_less_equal(lengths, tf.shape(input_ids)[1],
                                                 message="a length is larger than input_ids' length")]
        with tf.control_dependencies(checks):
            X = positions(model, input_ids)
        log_probs = lm_logprobs(model, X, n_rows=model.cfg.n_vocab)
        return {'log_probs': log_probs, 'last_log_probs': tf.gather(log_probs, lengths - 1, batch_dims=1)}


def finetuned_model(params, n_vocab, head, n_head, afn):
    """The Model of best parameters `params` (numpy, the original's order: we, 12 per layer, clf/w, clf/b) of a
    task whose head is `head` (Task.head's dict), without dropout. Model.assign checks every shape."""
    we = params[0]
    n_layer = (len(params) - 3) // 12
    cfg = Config(n_vocab, len(we) - n_vocab - N_SPECIAL, n_embd=we.shape[1], n_head=n_head, n_layer=n_layer,
                 afn=afn, head=Head(**head)).without_dropout()
    model = Model(cfg)
    model.assign(params)
    return model


def language_model(tokens, positions_, layers, n_head, afn):
    """The Model of a model folder's arrays (tokens (n_vocab, C), positions (n_pos, C), 12 per layer): no special
    rows (the language model reads pieces only), its n_ctx every stored position, without dropout."""
    import numpy as np
    n_vocab, n_embd = tokens.shape
    cfg = Config(n_vocab, len(positions_), n_special=0, n_embd=n_embd, n_head=n_head,
                 n_layer=len(layers) // 12, afn=afn, head=None).without_dropout()
    model = Model(cfg)
    model.assign([np.concatenate([tokens, positions_], 0)] + list(layers))
    return model


def save(module, folder):
    """Write `module` (FineTuned or LanguageModel) as a SavedModel in `folder`, its signature serving_default."""
    tf.saved_model.save(module, folder, signatures={SIGNATURE: module.serve})
