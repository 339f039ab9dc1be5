"""The task heads of the paper's section 3.3 (classification, entailment, similarity with both orders summed, STS-B's
regression, multiple choice) against the float64 NumPy reference (tests/reference.py), on inputs that
inputs.sequences and inputs.pad_batch build; and multiple choice's packed evaluation (inputs.pack_choices) against
the sequences it packs."""
import numpy as np
import pytest
import tensorflow as tf

from finetuning.inputs import pack_choices, packed_batch, pad_batch, sequences
from text_utils import Ragged
from model import Config, Head, Model, evaluate_batch, finetune_losses
from finetuning.tasks import TASKS
from tests import reference

N_VOCAB, N_SPECIAL, N_CTX, N_EMBD, N_HEAD, N_LAYER = 20, 3, 16, 16, 2, 2
START, DELIM, CLF = N_VOCAB, N_VOCAB + 1, N_VOCAB + 2
POS = N_VOCAB + N_SPECIAL  # the first position id
TOL = dict(rtol=1e-5, atol=1e-5)

HEADS = {  # the head each shape takes, in the paper's words (reference.head's arguments)
    'sst2': dict(n_seq=1, n_out=2, pool='sum', loss='softmax'),      # classification, 2 classes
    'mnli': dict(n_seq=1, n_out=3, pool='sum', loss='softmax'),      # entailment, 3 classes
    'mrpc': dict(n_seq=2, n_out=2, pool='sum', loss='softmax'),      # similarity: the two orders added
    'stsb': dict(n_seq=2, n_out=1, pool='sum', loss='squared'),      # similarity, a regression on 0-5
    'race': dict(n_seq=4, n_out=1, pool='choices', loss='softmax'),  # multiple choice, 4 answers
    'rocstories': dict(n_seq=2, n_out=1, pool='choices', loss='softmax'),
}


def random_texts(task, n, rng, longest=8):
    """One split's Ragged fields of n examples of random ids, 1 to `longest` - 1 tokens each."""
    n_fields = {'classification': 1, 'entailment': 2, 'similarity': 2}.get(task.shape, task.n_context + task.n_choices)
    return tuple(Ragged.from_lists([rng.randint(0, N_VOCAB, rng.randint(1, longest)).tolist() for _ in range(n)])
                 for _ in range(n_fields))


def random_labels(task, n, rng):
    if task.labels is None:
        return rng.uniform(0, 5, n).astype(np.float32)  # STS-B's scores
    return rng.randint(0, task.n_seq if task.shape == 'multiple_choice' else len(task.labels), n).astype(np.int32)


def inputs(name, n=4, seed=0, n_ctx=N_CTX, longest=8):
    """X, M, Y of n random examples of task `name`, built by inputs.sequences and inputs.pad_batch."""
    rng = np.random.RandomState(seed)
    task = TASKS[name]
    X, M = pad_batch(sequences(task, random_texts(task, n, rng, longest), N_VOCAB, n_ctx), np.arange(n),
                     task.n_seq, N_VOCAB)
    return X, M, random_labels(task, n, rng)


def random_params(model, seed=0):
    """Random arrays of the model's shapes, large enough that every parameter matters (clf/b too)."""
    rng = np.random.RandomState(seed)
    params = []
    for p in model.params:
        name, shape = p.name[len('model/'):-2], tuple(p.shape)
        scale = {'we': 0.5, 'w': 0.3}.get(name if name == 'we' else name.split('/')[-1], 0.2)
        params.append((1 + 0.3 * rng.randn(*shape) if name.endswith('/g') else scale * rng.randn(*shape))
                      .astype(np.float32))
    return params


def make_model(name, **kw):
    """The tiny model with task `name`'s head and random params (dropout off unless kw says otherwise)."""
    kw = {**dict(embd_pdrop=0., attn_pdrop=0., resid_pdrop=0., clf_pdrop=0.), **kw}
    model = Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER,
                         head=Head(**TASKS[name].head), **kw))
    params = random_params(model)
    model.assign(params)
    return model, params


def run(model, X, M, Y, **kw):
    return [t.numpy() for t in finetune_losses(model, (tf.constant(X), tf.constant(M), tf.constant(Y)), **kw)]


# ------------------------------------------------------------------------------------------------- the heads

@pytest.mark.parametrize('name', sorted(HEADS))
def test_registry_gives_each_shape_its_head_and_clf_params_last(name):
    assert TASKS[name].head == HEADS[name]
    model, _ = make_model(name)
    n_out = HEADS[name]['n_out']
    assert [p.name for p in model.params[-2:]] == ['model/clf/w:0', 'model/clf/b:0']
    assert [tuple(p.shape) for p in model.params[-2:]] == [(N_EMBD, n_out), (n_out,)]
    assert len(model.params) == 1 + 12 * N_LAYER + 2


@pytest.mark.parametrize('name', sorted(HEADS))
def test_head_outputs_match_the_reference(name):
    X, M, Y = inputs(name)
    model, params = make_model(name)
    got = run(model, X, M, Y)
    want = reference.forward(params, X, M, Y, N_HEAD, CLF, **HEADS[name])
    n, n_seq = len(Y), HEADS[name]['n_seq']
    n_logits = n_seq if HEADS[name]['pool'] == 'choices' else HEADS[name]['n_out']
    assert [g.shape for g in got] == [(n, n_logits), (n,), (n * n_seq,)]
    for what, g, w in zip(['clf_logits', 'clf_losses', 'lm_losses'], got, want):
        np.testing.assert_allclose(g, w, **TOL, err_msg=what)
    assert want[0].std() > 0.1 and want[1].std() > 0.01  # the random network is far from trivial


def ab_and_ba_states(name='mrpc', seed=0):
    """A similarity batch, the model on it and the reference's extract-token states (n, 2, C) of its two orders."""
    X, M, Y = inputs(name, seed=seed)
    model, params = make_model(name)
    clf_h = reference.extract(reference.hidden(params, X, N_HEAD), X, CLF).reshape(len(Y), 2, N_EMBD)
    return X, M, Y, model, params, clf_h


@pytest.mark.parametrize('name', ['mrpc', 'stsb'])
def test_similarity_adds_the_two_orders_and_other_poolings_would_not_match(name):
    X, M, Y, model, params, clf_h = ab_and_ba_states(name)
    logits = run(model, X, M, Y)[0]
    w, b = params[-2].astype(np.float64), params[-1].astype(np.float64)
    np.testing.assert_allclose(logits, (clf_h[:, 0] + clf_h[:, 1]) @ w + b, **TOL)
    assert np.abs(clf_h[:, 0] - clf_h[:, 1]).max() > 0.1  # the orders' states differ: each one matters
    mutations = {'a;b only, twice': 2 * clf_h[:, 0] @ w + b, 'b;a only': clf_h[:, 1] @ w + b,
                 'mean of the orders': clf_h.mean(1) @ w + b, 'bias per order': (clf_h @ w + b).sum(1),
                 'concatenated (b;a weights zero)': np.concatenate([clf_h[:, 0], clf_h[:, 1]], 1)
                 @ np.concatenate([w, np.zeros_like(w)]) + b}
    for what, wrong in mutations.items():
        assert np.abs(logits - wrong).max() > 1e-2, what


def test_regression_loss_is_the_squared_error_of_the_one_output():
    X, M, Y = inputs('stsb')
    model, params = make_model('stsb')
    logits, losses, _ = run(model, X, M, Y)
    assert Y.dtype == np.float32 and logits.shape == (len(Y), 1)
    np.testing.assert_allclose(losses, (logits[:, 0].astype(np.float64) - Y) ** 2, **TOL)
    err = np.abs(logits[:, 0] - Y)
    assert np.abs(err - 1).min() > 1e-2 and np.abs(losses - err).max() > 1e-2  # not the absolute error


def test_clf_dropout_mask_is_shared_by_the_two_orders():
    """With dropout on the classifier only, each example's logits are those of one mask on the sum of its two
    orders' states: found among all 2^n_embd masks. Independent masks per order would not be."""
    p = 0.5
    X, M, Y = inputs('mrpc')
    model, params = make_model('mrpc', clf_pdrop=p)
    _, _, _, _, _, clf_h = ab_and_ba_states('mrpc')
    w, b = params[-2].astype(np.float64), params[-1].astype(np.float64)
    masks = (np.arange(2 ** N_EMBD)[:, None] >> np.arange(N_EMBD) & 1) / (1 - p)  # (2^C, C)

    def distance_to_a_shared_mask(logits):  # (n,): how far each example's logits are from the nearest shared mask
        return np.array([np.abs((masks * s) @ w + b - l).max(1).min() for s, l in zip(clf_h.sum(1), logits)])

    for seed in range(2):
        logits = run(model, X, M, Y, train=True, seed=tf.constant([seed, 7], tf.int32))[0]
        assert distance_to_a_shared_mask(logits).max() < 1e-4
    rng = np.random.RandomState(0)
    independent = (rng.rand(len(Y), 2, N_EMBD) >= p) / (1 - p)
    assert distance_to_a_shared_mask((independent * clf_h).sum(1) @ w + b).min() > 1e-3


@pytest.mark.parametrize('name', sorted(HEADS))
def test_gradient_of_task_and_lm_loss_matches_the_reference(name):
    lm_coef = 0.5
    X, M, Y = inputs(name)
    model, params = make_model(name)
    with tf.GradientTape() as tape:
        _, clf_losses, lm_losses = finetune_losses(model, (tf.constant(X), tf.constant(M), tf.constant(Y)))
        loss = tf.reduce_mean(clf_losses) + lm_coef * tf.reduce_mean(lm_losses)
    grads = tape.gradient(loss, model.params)
    want_loss, _, want = reference.loss_and_gradients(params, X, M, Y, N_HEAD, CLF, lm_coef, **HEADS[name])
    assert float(loss) == pytest.approx(want_loss, rel=1e-5)
    for p, g, w in zip(model.params, grads, want):
        np.testing.assert_allclose(tf.convert_to_tensor(g), w, rtol=1e-4, atol=1e-5, err_msg=p.name)
    assert np.abs(want[-2]).max() > 1e-2
    if HEADS[name]['pool'] == 'sum':  # a softmax over the choices does not see their shared bias
        assert np.abs(want[-1]).max() > 1e-2


@pytest.mark.parametrize('name', ['mrpc', 'stsb', 'race', 'sst2'])
def test_reference_gradient_of_each_head_is_the_finite_difference_gradient(name, h=1e-6):
    """The reference's hand-written backprop of the general head against central differences of its forward, in
    float64, at a few elements of every parameter."""
    lm_coef = 0.5
    X, M, Y = inputs(name, n=3, seed=1, longest=5)
    _, params = make_model(name)
    params = [p.astype(np.float64) for p in params]

    def loss(params):
        _, clf_losses, lm_losses = reference.forward(params, X, M, Y, N_HEAD, CLF, **HEADS[name])
        return clf_losses.mean() + lm_coef * lm_losses.mean()

    _, _, grads = reference.loss_and_gradients(params, X, M, Y, N_HEAD, CLF, lm_coef, **HEADS[name])
    rng = np.random.RandomState(0)
    got, want = [], []
    for j, p in enumerate(params):
        flat = p.reshape(-1)
        for i in rng.choice(p.size, min(p.size, 3), replace=False):
            x = flat[i]
            flat[i] = x + h
            up = loss(params)
            flat[i] = x - h
            down = loss(params)
            flat[i] = x
            want.append((up - down) / (2 * h))
            got.append(grads[j].reshape(-1)[i])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    assert np.abs(want).max() > 1e-2


# ------------------------------------------------------------------------------------ packed multiple choice

def roc_lists(rng, n):
    return [rng.randint(0, N_VOCAB, rng.randint(0, 12)).tolist() for _ in range(n)]


@pytest.mark.parametrize('n_ctx', [512, 16])
def test_packed_rocstories_is_pack_roc(n_ctx):
    rng = np.random.RandomState(0)
    X1, X2, X3 = roc_lists(rng, 20), roc_lists(rng, 20), roc_lists(rng, 20)
    packed = pack_choices(TASKS['rocstories'], tuple(Ragged.from_lists(x) for x in (X1, X2, X3)), N_VOCAB, n_ctx)
    want = reference.pack_roc(X1, X2, X3, N_VOCAB, max_len=n_ctx // 2 - 2)
    got = packed_batch(packed, np.arange(20))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == np.int32 and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def test_packed_race_example_token_by_token():
    # n_ctx 12 leaves 9 tokens: the longest answer takes 3, the question 2, the article its first 4
    article, question = Ragged.from_lists([[1, 2, 3, 4, 5, 6]]), Ragged.from_lists([[7, 8]])
    answers = [Ragged.from_lists([a]) for a in ([9], [10, 11], [12, 13, 14], [])]
    packed = pack_choices(TASKS['race'], (article, question, *answers), N_VOCAB, n_ctx=12)
    X, seg, clf_idx = packed_batch(packed, [0], multiple=8)
    tokens = [START, 1, 2, 3, 4, 7, 8, DELIM, 9, CLF, 10, 11, CLF, 12, 13, 14, CLF, CLF]
    assert X.shape == (1, 24, 2) and X[0, :, 0].tolist() == tokens + [0] * 6
    prefix = list(range(8))
    positions = prefix + [8, 9] + [8, 9, 10] + [8, 9, 10, 11] + [8] + [0] * 6
    assert (X[0, :, 1] - POS).tolist() == positions
    assert seg[0].tolist() == [0] * 8 + [1] * 2 + [2] * 3 + [3] * 4 + [4] + [5] * 6
    assert clf_idx.tolist() == [[9, 12, 16, 17]] and clf_idx.dtype == np.int32
    # each answer's span is the rest of its sequence, after the same context, at the same positions
    seqs = sequences(TASKS['race'], (article, question, *answers), N_VOCAB, n_ctx=12).tolist()
    for c, (a, b) in enumerate(zip([8, *clf_idx[0, :-1] + 1], clf_idx[0] + 1)):
        assert seqs[c] == tokens[:8] + tokens[a:b]
        assert (X[0, a:b, 1] - POS).tolist() == list(range(8, 8 + b - a))


def score_whole(model, X, seg, clf_idx, Y):
    """evaluate_batch of packed_batch's rows, one example a row: seg's 0 (the context), c + 1 (answer c) and k + 1
    (padding) are the parts of the row's one unit (segment_mask's 1 + part, n_parts k + 2)."""
    k = clf_idx.shape[1]
    clf_at = np.arange(len(X))[:, None] * X.shape[1] + clf_idx
    return evaluate_batch(model, (X, seg + 1, clf_at.astype(np.int32), Y), n_parts=k + 2)


@pytest.mark.parametrize('multiple', [1, 8])
def test_packed_race_scores_equal_the_four_sequences(multiple):
    """Each example whole in one row (pack_choices, packed_batch: the context, then each answer with its positions
    restarting), scored by evaluate_batch with the answers as the parts of one unit, gives the padded batch's
    logits and losses on inputs.sequences' batch, with the article cut (n_ctx 16), on all examples and on a subset
    padded further."""
    task, n, n_ctx = TASKS['race'], 6, N_CTX
    rng = np.random.RandomState(2)
    texts = random_texts(task, n, rng, longest=12)
    Y = random_labels(task, n, rng)
    seqs = sequences(task, texts, N_VOCAB, n_ctx)
    assert (seqs.lengths.reshape(n, 4).max(1) == n_ctx).any()  # some articles are cut
    packed = pack_choices(task, texts, N_VOCAB, n_ctx)
    model, params = make_model('race')
    for rows in (np.arange(n), np.array([4, 1, 3])):
        X, M = pad_batch(seqs, rows, task.n_seq, N_VOCAB)
        want = run(model, X, M, Y[rows])
        Xp, seg, clf_idx = packed_batch(packed, rows, multiple)
        assert Xp.shape[1] % multiple == 0 and Xp.shape[1] > n_ctx  # longer than n_ctx: positions restart
        got = [t.numpy() for t in score_whole(model, Xp, seg, clf_idx, Y[rows])]
        for what, g, w in zip(['clf_logits', 'clf_losses'], got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=what)
        np.testing.assert_allclose(got[0], reference.forward(params, X, M, Y[rows], N_HEAD, CLF, **HEADS['race'])[0],
                                   **TOL)
    # a mask that let an answer see the answers before it would not match
    bad = score_whole(model, Xp, np.where(seg <= 4, 0, seg), clf_idx, Y[rows])[0].numpy()
    assert np.abs(bad - want[0])[:, 1:].min() > 1e-4
