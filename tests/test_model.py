"""The TF2 model against SPEC "The model": an independent NumPy reference (tests/reference.py) on a small random
network, plus behavioural checks (causality, padding, dropout, parameter layout, assign)."""
import numpy as np
import pytest
import tensorflow as tf

from model import Config, Model, finetune_losses
from tests import reference
from utils import InputError

N_VOCAB, N_SPECIAL, N_CTX, N_EMBD, N_HEAD, N_LAYER = 300, 3, 16, 32, 4, 2
START, DELIMITER, CLF_TOKEN = N_VOCAB, N_VOCAB + 1, N_VOCAB + 2
N_ROWS = N_VOCAB + N_SPECIAL + N_CTX
LAYER_NAMES = ['attn/c_attn/w', 'attn/c_attn/b', 'attn/c_proj/w', 'attn/c_proj/b', 'ln_1/g', 'ln_1/b',
               'mlp/c_fc/w', 'mlp/c_fc/b', 'mlp/c_proj/w', 'mlp/c_proj/b', 'ln_2/g', 'ln_2/b']
TOL = dict(rtol=1e-5, atol=1e-5)
ACTS = ['gelu', 'relu', 'swish']


def shapes(n_layer=N_LAYER, n_embd=N_EMBD, n_rows=N_ROWS):
    c = n_embd
    layer = [(1, c, 3 * c), (3 * c,), (1, c, c), (c,), (c,), (c,), (1, c, 4 * c), (4 * c,), (1, 4 * c, c), (c,),
             (c,), (c,)]
    return [(n_rows, c)] + layer * n_layer + [(c, 1), (1,)]


def random_params(seed=0):
    """Random arrays large enough that every parameter matters: LN gains around 1, everything else ~0.1-0.5."""
    rng = np.random.RandomState(seed)
    params = []
    names = ['we'] + LAYER_NAMES * N_LAYER + ['clf/w', 'clf/b']
    for name, shape in zip(names, shapes()):
        if name.endswith('/g'):
            a = 1 + 0.3 * rng.randn(*shape)
        elif name == 'we':
            a = 0.5 * rng.randn(*shape)
        elif name.endswith('/w'):
            a = 0.3 * rng.randn(*shape)
        else:
            a = 0.2 * rng.randn(*shape)
        params.append(a.astype(np.float32))
    return params


def make_model(params=None, afn='gelu', pdrop=0., **kw):
    kw = {**dict(embd_pdrop=pdrop, attn_pdrop=pdrop, resid_pdrop=pdrop, clf_pdrop=pdrop), **kw}
    model = Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER, afn=afn, **kw))
    model.assign(random_params() if params is None else params)
    return model


def make_batch(examples, T=N_CTX, pad_token=0):
    """SPEC's layout: [_start_] + story + [_delimiter_] + ending + [_classify_], padded to T with `pad_token`,
    positions n_vocab + n_special + t in X[..., 1]; M is 1 on the real tokens."""
    X = np.full((len(examples), 2, T, 2), pad_token, np.int32)
    M = np.zeros((len(examples), 2, T), np.float32)
    for i, (story, end1, end2) in enumerate(examples):
        for j, end in enumerate((end1, end2)):
            x = [START] + story + [DELIMITER] + end + [CLF_TOKEN]
            X[i, j, :len(x), 0] = x
            M[i, j, :len(x)] = 1
    X[..., 1] = N_VOCAB + N_SPECIAL + np.arange(T)
    return X, M


def random_examples(seed=1, n=3):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        ls = rng.randint(2, 7)
        l1, l2 = rng.randint(1, 5, size=2)
        out.append([list(rng.randint(0, N_VOCAB, size=k)) for k in (ls, l1, l2)])
    out[0] = [list(rng.randint(0, N_VOCAB, size=8)), [5, 6, 7, 8], [9]]   # one sequence fills all 16 slots
    return out


def run(model, X, M, Y, **kw):
    return [t.numpy() for t in finetune_losses(model, (tf.constant(X), tf.constant(M), tf.constant(Y)), **kw)]


X0, M0 = make_batch(random_examples())
Y0 = np.array([0, 1, 1], np.int32)


@pytest.fixture(scope='module')
def model():
    return make_model()


@pytest.mark.parametrize('afn', ACTS)
def test_forward_matches_numpy_reference(afn):
    params = random_params()
    got = run(make_model(params, afn=afn), X0, M0, Y0)
    want = reference.forward(params, X0, M0, Y0, N_HEAD, CLF_TOKEN, afn=afn)
    for name, g, w in zip(['clf_logits', 'clf_losses', 'lm_losses'], got, want):
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g, w, **TOL, err_msg=name)
    # the random network is far from trivial: logits differ between choices and losses are spread out
    assert np.abs(want[0][:, 0] - want[0][:, 1]).min() > 1e-2
    assert want[2].std() > 1e-2


def test_layer_norm_epsilon_matters_for_small_activations(monkeypatch):
    # embeddings and the attention output ~1e-3: the first LayerNorm's variance is near its 1e-5 epsilon,
    # so the epsilon (and the two-pass variance) shows in every output
    params = random_params()
    params[0] = params[0] * 0.005
    params[3], params[4] = params[3] * 0.01, params[4] * 0.01            # h0/attn/c_proj w, b
    got = run(make_model(params), X0, M0, Y0)
    want = reference.forward(params, X0, M0, Y0, N_HEAD, CLF_TOKEN)
    for name, g, w in zip(['clf_logits', 'clf_losses', 'lm_losses'], got, want):
        np.testing.assert_allclose(g, w, **TOL, err_msg=name)
    h = reference.hidden(params, X0, N_HEAD)
    layer_norm = reference.layer_norm                                    # a 1e-6 epsilon would be visible
    monkeypatch.setattr(reference, 'layer_norm', lambda x, g, b, e=1e-5: layer_norm(x, g, b, 1e-6))
    assert np.abs(h - reference.hidden(params, X0, N_HEAD)).max() > 1e-2


def test_activations_differ_so_afn_is_pinned():
    params = random_params()
    outs = {afn: reference.forward(params, X0, M0, Y0, N_HEAD, CLF_TOKEN, afn=afn)[0] for afn in ACTS}
    assert not np.allclose(outs['gelu'], outs['relu'], **TOL)
    assert not np.allclose(outs['gelu'], outs['swish'], **TOL)


def test_causal_mask_hides_future_tokens(model):
    # a _classify_ in the middle of a fully real sequence: tokens after it must not reach its hidden state, and
    # an LM loss restricted (through M) to the positions up to it must not see them either
    rng = np.random.RandomState(3)
    X = np.zeros((1, 2, N_CTX, 2), np.int32)
    X[..., 0] = rng.randint(0, N_VOCAB, size=(1, 2, N_CTX))
    X[..., 1] = N_VOCAB + N_SPECIAL + np.arange(N_CTX)
    p = 7
    X[:, :, 0, 0], X[:, :, p, 0] = START, CLF_TOKEN
    M = np.zeros((1, 2, N_CTX), np.float32)
    M[..., :p + 1] = 1
    Y = np.array([1], np.int32)
    later = X.copy()
    later[:, :, p + 1:, 0] = rng.randint(0, N_VOCAB, size=(1, 2, N_CTX - p - 1))
    earlier = X.copy()
    earlier[:, :, p - 2, 0] = (X[:, :, p - 2, 0] + 1) % N_VOCAB

    base, after_later, after_earlier = run(model, X, M, Y), run(model, later, M, Y), run(model, earlier, M, Y)
    np.testing.assert_allclose(after_later[0], base[0], rtol=1e-6, atol=1e-6)     # clf_logits
    np.testing.assert_allclose(after_later[2], base[2], rtol=1e-6, atol=1e-6)     # lm_losses
    assert np.abs(after_earlier[0] - base[0]).max() > 1e-3                      # the past does matter
    assert np.abs(after_earlier[2] - base[2]).max() > 1e-3
    # without the causal mask the same change would have reached the classify position
    params = random_params()
    h, h_later = (reference.hidden(params, x, N_HEAD, causal=False) for x in (X, later))
    assert np.abs(h[:, p] - h_later[:, p]).max() > 1e-3


def test_padding_does_not_change_clf_logits(model):
    # padding is not masked in attention, only the future is: any pad content after _classify_ is invisible
    base = run(model, X0, M0, Y0)
    X = X0.copy()
    rng = np.random.RandomState(4)
    pad = M0 == 0
    X[..., 0][pad] = rng.randint(0, N_VOCAB + N_SPECIAL, size=pad.sum())
    X[..., 0][pad & (rng.rand(*pad.shape) < 0.3)] = CLF_TOKEN    # later _classify_ tokens do not move the pool
    got = run(model, X, M0, Y0)
    for g, b in zip(got, base):
        np.testing.assert_allclose(g, b, rtol=1e-6, atol=1e-6)


def test_trimmed_input_gives_the_same_outputs(model):
    # X[:, :, :T'] with T' >= the longest real sequence (positions kept) gives the n_ctx results
    short = [[[1, 2], [3], [4, 5]], [[6, 7, 8], [9, 10], [11]]]
    X, M = make_batch(short)
    Y = np.array([1, 0], np.int32)
    longest = int(M.sum(-1).max())
    full = run(model, X, M, Y)
    for T in (longest, longest + 3):
        got = run(model, X[:, :, :T], M[:, :, :T], Y)
        for name, g, f in zip(['clf_logits', 'clf_losses', 'lm_losses'], got, full):
            np.testing.assert_allclose(g, f, rtol=1e-5, atol=1e-6, err_msg=f'{name}, T={T}')
    # and the reference agrees at that length: the LM softmax still spans all n_ctx position rows
    params = random_params()
    want = reference.forward(params, X[:, :, :longest], M[:, :, :longest], Y, N_HEAD, CLF_TOKEN)
    for g, w in zip(run(model, X[:, :, :longest], M[:, :, :longest], Y), want):
        np.testing.assert_allclose(g, w, **TOL)


def test_lm_loss_uses_every_row_of_we():
    params = random_params()
    T = 10                       # position rows T..n_ctx-1 never appear in the input, yet are LM classes
    examples = [[[1, 2, 3], [4], [5, 6]], [[7], [8, 9], [10]]]
    X, M = make_batch(examples, T=T)
    Y = np.array([0, 1], np.int32)
    model = make_model(params)
    base = run(model, X, M, Y)
    h = reference.hidden(params, X, N_HEAD)
    all_rows = reference.lm_losses_from_hidden(h, params[0], X, M)
    no_positions = reference.lm_losses_from_hidden(h, params[0][:N_VOCAB + N_SPECIAL], X, M)
    np.testing.assert_allclose(base[2], all_rows, **TOL)
    assert np.abs(base[2] - no_positions).min() > 1e-3
    # raising one unused position row (n_ctx - 1) changes the LM losses but not the classifier
    bumped = [p.copy() for p in params]
    bumped[0][N_ROWS - 1] += 2.0
    model.assign(bumped)
    got = run(model, X, M, Y)
    np.testing.assert_allclose(got[0], base[0], rtol=1e-6, atol=1e-6)
    assert np.abs(got[2] - base[2]).min() > 1e-4
    np.testing.assert_allclose(got[2], reference.forward(bumped, X, M, Y, N_HEAD, CLF_TOKEN)[2], **TOL)


def test_dropout_same_seed_same_masks_different_seed_different_outputs():
    model = make_model(pdrop=0.1)
    s1, s2 = tf.constant([1, 2], tf.int32), tf.constant([3, 4], tf.int32)
    a, b, c = (run(model, X0, M0, Y0, train=True, seed=s) for s in (s1, s1, s2))
    ev = run(model, X0, M0, Y0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, y, e in zip(a, c, ev):
        assert np.abs(x - y).max() > 1e-4
        assert np.abs(x - e).max() > 1e-4
    # and evaluation ignores a seed: dropout only in training
    for x, e in zip(run(model, X0, M0, Y0, train=False, seed=s1), ev):
        np.testing.assert_array_equal(x, e)


def test_dropout_with_zero_pdrop_equals_eval(model):
    ev = run(model, X0, M0, Y0)
    tr = run(model, X0, M0, Y0, train=True, seed=tf.constant([5, 6], tf.int32))
    for t, e in zip(tr, ev):
        np.testing.assert_allclose(t, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('name', ['embd_pdrop', 'attn_pdrop', 'resid_pdrop', 'clf_pdrop'])
def test_each_dropout_flag_acts_in_training(name):
    model = make_model(**{name: 0.3})
    ev = run(model, X0, M0, Y0)
    tr = run(model, X0, M0, Y0, train=True, seed=tf.constant([7, 8], tf.int32))
    assert np.abs(tr[0] - ev[0]).max() > 1e-4                     # every dropout reaches the classifier
    if name == 'clf_pdrop':
        np.testing.assert_allclose(tr[2], ev[2], rtol=1e-6, atol=1e-6)   # clf dropout is after the LM head
    else:
        assert np.abs(tr[2] - ev[2]).max() > 1e-4


def test_clf_dropout_mask_is_shared_by_the_two_choices():
    # both choices identical: a shared mask keeps their logits equal; independent masks would not
    model = make_model(clf_pdrop=0.5)
    examples = [[[1, 2, 3], [4, 5], [4, 5]], [[6, 7], [8], [8]], [[9], [10, 11, 12], [10, 11, 12]]]
    X, M = make_batch(examples)
    for s in range(5):
        logits = run(model, X, M, np.zeros(3, np.int32), train=True, seed=tf.constant([s, 11], tf.int32))[0]
        np.testing.assert_array_equal(logits[:, 0], logits[:, 1])


def test_clf_dropout_is_inverted_with_drop_probability():
    # logit = clf_h * mask / (1 - p) . w + b: the mean over many masks is the eval logit, and its variance is
    # sum((h w)^2) * p / (1 - p); a keep probability in place of p would give a variance 16 times larger at p 0.2
    p, n = 0.2, 1024
    params = random_params()
    model = make_model(params, clf_pdrop=p)
    X, M = make_batch([[[1, 2, 3], [4, 5], [6]]] * n, T=8)
    Y = np.zeros(n, np.int32)
    logits = run(model, X, M, Y, train=True, seed=tf.constant([21, 22], tf.int32))[0][:, 0]
    pool = list(X[0, 0, :, 0]).index(CLF_TOKEN)
    h = reference.hidden(params, X[:1], N_HEAD)[0, pool]            # the _classify_ position of choice 0
    hw = h * params[-2][:, 0]
    mean, var = hw.sum() + params[-1][0], (hw ** 2).sum() * p / (1 - p)
    assert abs(logits.mean() - mean) < 5 * np.sqrt(var / n)
    assert 0.8 < logits.var() / var < 1.25


def test_params_order_names_and_shapes(model):
    names = ['model/we:0'] + [f'model/h{l}/{k}:0' for l in range(N_LAYER) for k in LAYER_NAMES] + \
            ['model/clf/w:0', 'model/clf/b:0']
    assert [p.name for p in model.params] == names
    assert [tuple(p.shape) for p in model.params] == shapes()
    assert all(p.dtype == tf.float32 for p in model.params)
    assert len({id(p) for p in model.params}) == len(model.params)
    assert {id(v) for v in model.trainable_variables} == {id(p) for p in model.params}


def test_new_variables_start_as_spec_says():
    tf.random.set_seed(0)
    model = Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER))
    for p in model.params:
        a, name = p.numpy(), p.name
        if name.endswith('/g:0'):
            np.testing.assert_array_equal(a, 1)
        elif name.endswith('/b:0'):
            np.testing.assert_array_equal(a, 0)
        else:                                                  # we, conv and clf weights: N(0, 0.02)
            assert abs(a.mean()) < 0.005 and 0.015 < a.std() < 0.025, name


def test_assign_sets_the_first_arrays_only():
    model = make_model()
    before = [p.numpy() for p in model.params]
    new = [a + 1 for a in random_params(seed=5)[:13]]
    model.assign(new)
    for i, p in enumerate(model.params):
        np.testing.assert_array_equal(p.numpy(), new[i] if i < 13 else before[i])


def test_assign_rejects_wrong_shape_with_clear_message():
    model = make_model()
    arrays = random_params()
    arrays[1] = np.zeros((1, N_EMBD, 3 * N_EMBD - 1), np.float32)
    with pytest.raises(InputError) as err:
        model.assign(arrays)
    msg = str(err.value)
    assert 'h0/attn/c_attn/w' in msg
    assert str(3 * N_EMBD - 1) in msg and str(3 * N_EMBD) in msg
    arrays = random_params()
    arrays[0] = np.zeros((N_ROWS + 1, N_EMBD), np.float32)    # an n_ctx mismatch shows in we
    with pytest.raises(InputError, match='we'):
        model.assign(arrays)
