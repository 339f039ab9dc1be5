"""Packed training (engine.kernels.Path.packed_train): each tower's sequences end to end in rows of one shape per
run, and evaluation at one shape per split. The layout against the sequences it packs, the attention mask against
the sequences' spans, the outputs and the gradient against tests/reference.py's NumPy model on the padded arrays,
empty rows, the plan of a run's shape, and the dropout masks as the towers' are tested (sites, rates, scaling, one
`we` mask per tower, independence)."""
import numpy as np
import pytest
import tensorflow as tf
from sklearn.utils import shuffle

from engine import loop
from engine.kernels import DEFAULT, PADDED, XLA
from engine.loop import make_eval_step
from finetuning import inputs
from finetuning.inputs import Packing, first_fit, packing_plan, sequences
from finetuning.tasks import TASKS
from model import finetune_losses, finetune_objective, segment_mask
from opt import Adam, make_update, warmup_linear
from text_utils import Ragged
from utils import batches_of
from tests import reference
from tests.test_heads import CLF, HEADS, N_HEAD, N_VOCAB, POS, make_model, random_labels, random_texts

TOL = dict(rtol=1e-5, atol=1e-5)
UNMASKED = DEFAULT._replace(masked_lm=False)  # the LM head at every position, weighted (as under --xla)


def split_of(task, n, seed=0, n_ctx=16, longest=12, first_long=False):
    """A Split of n random examples of `task` (inputs.sequences, cut to n_ctx) and its labels; first_long: every
    text of example 0 of 12 tokens (its sequences the longest n_ctx allows)."""
    rng = np.random.RandomState(seed)
    texts = random_texts(task, n, rng, longest)
    if first_long:
        texts = tuple(Ragged.from_lists([rng.randint(0, N_VOCAB, 12).tolist()] + f.tolist()[1:]) for f in texts)
    return inputs.Split(None, random_labels(task, n, rng), sequences(task, texts, N_VOCAB, n_ctx))


def tight_packing(task, split, rows, n_parts, length, extra=0):
    """The Packing of just enough rows for these parts (first_fit), plus `extra` empty ones."""
    lengths = split.seqs.lengths.reshape(-1, task.n_seq)[rows].reshape(n_parts, -1)
    return Packing(int(first_fit(lengths, length)[0].max()) + 1 + extra, length)


def spans(seg, n_parts, n_seqs):
    """(part, sequence) -> (row in the batch, first position, length) read off seg alone, checking that each
    sequence's positions are one run in one row."""
    R = len(seg) // n_parts
    out = {}
    for p in range(n_parts):
        for s in range(n_seqs):
            r, t = np.nonzero(seg[p * R:(p + 1) * R] == s + 1)
            assert len(set(r)) == 1 and (np.diff(t) == 1).all(), (p, s)
            out[p, s] = (p * R + r[0], t[0], len(t))
    return out


def packed_outputs(model, batch, n_parts, path, **kw):
    """finetune_losses on each part of a packed batch (X, seg, clf_at, Y), the parts' outputs concatenated."""
    outs = []
    for p in range(n_parts):
        part = [x[p * (len(x) // n_parts):(p + 1) * (len(x) // n_parts)] for x in batch]
        outs.append([t.numpy() for t in finetune_losses(model, part, path=path, **kw)])
    return [np.concatenate(o) for o in zip(*outs)]


# ------------------------------------------------------------------------------------------------ the layout

def test_first_fit_puts_the_longest_first_into_the_first_row_with_room():
    row, start = first_fit(np.array([[5, 3, 4, 2, 6], [8, 1, 1, 1, 1]]), 8)
    # longest first: 6 -> row 0, 5 -> row 1, 4 -> row 2, 3 -> row 1 after the 5, 2 -> row 0 after the 6
    assert row.tolist() == [[1, 1, 2, 0, 0], [0, 1, 1, 1, 1]]
    assert start.tolist() == [[0, 5, 0, 6, 0], [0, 0, 1, 2, 3]]  # the 8 fills its row alone


@pytest.mark.parametrize('name', ['rocstories', 'race', 'sst2'])
def test_each_sequence_lies_whole_in_one_row_with_its_positions_restarting(name):
    task, n, n_parts = TASKS[name], 6, 2
    split = split_of(task, n)
    packing = Packing(rows=task.n_seq * 3, length=20)
    rows = np.array([4, 1, 3, 0, 5, 2])
    X, seg, clf_at, Y = inputs.packed_train_batch(task, split, rows, N_VOCAB, n_parts, packing)
    assert X.shape == (n_parts * packing.rows, 20, 2) and seg.shape == X.shape[:2] and clf_at.shape == (n, task.n_seq)
    assert X.dtype == seg.dtype == clf_at.dtype == np.int32 and (Y == split.Y[rows]).all()
    n_part = n // n_parts
    where = spans(seg, n_parts, n_part * task.n_seq)
    for i, example in enumerate(rows):
        for j in range(task.n_seq):
            p, s = i // n_part, (i % n_part) * task.n_seq + j
            r, t, length = where[p, s]
            want = split.seqs[example * task.n_seq + j]
            assert length == len(want) and X[r, t:t + length, 0].tolist() == want.tolist()
            assert (X[r, t:t + length, 1] - POS).tolist() == list(range(length))   # positions restart
            assert clf_at[i, j] == (r - p * packing.rows) * 20 + t + length - 1      # the extract: its last token
            assert want[-1] == CLF and CLF not in want[:-1].tolist()
    empty = seg == 0
    assert (X[..., 0][empty] == 0).all() and (X[..., 1][empty] == POS).all()
    assert empty.sum() == X[..., 0].size - sum(len(split.seqs[e * task.n_seq + j]) for e in rows
                                               for j in range(task.n_seq))


def test_a_sequence_as_long_as_the_row_fills_it_alone():
    task = TASKS['sst2']
    split = split_of(task, 4, seed=3)
    L = int(split.seqs.lengths.max())
    X, seg, _, _ = inputs.packed_train_batch(task, split, np.arange(4), N_VOCAB, 1, Packing(4, L))
    longest = int(np.argmax(split.seqs.lengths))
    (r, t, length), = [v for (p, s), v in spans(seg, 1, 4).items() if s == longest]
    assert (t, length) == (0, L) and set(seg[r]) == {longest + 1}


def test_a_part_that_does_not_fit_the_packing_is_refused():
    task = TASKS['rocstories']
    split = split_of(task, 4)
    with pytest.raises(ValueError, match='more than the packing'):
        inputs.packed_train_batch(task, split, np.arange(4), N_VOCAB, 2, Packing(1, 20))


def test_a_sequence_longer_than_a_shapes_rows_takes_a_longer_shape_or_is_refused():
    """Many rows of 8 would hold these short sequences' tokens, but not the longest sequence: the batch takes the
    rows of 20; with no shape long enough it is refused."""
    task = TASKS['sst2']
    split = split_of(task, 4, seed=3)
    L = int(split.seqs.lengths.max())
    assert L > 8
    X, _, _, _ = inputs.packed_train_batch(task, split, np.arange(4), N_VOCAB, 1, Packing(4, 20, smaller=((64, 8),)))
    assert X.shape[:2] == (4, 20)
    with pytest.raises(ValueError, match=f'a sequence longer than {L - 1} tokens, more than the packing'):
        inputs.packed_train_batch(task, split, np.arange(4), N_VOCAB, 1, Packing(64, L - 1, smaller=((64, 8),)))


# --------------------------------------------------------------------------------------------- the run's plan

def test_epoch_orders_are_the_runs_draws_and_leave_numpys_generator_alone():
    np.random.seed(5)
    state = np.random.get_state()
    ahead = inputs.epoch_orders(30, 3, state)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # not moved
    drawn = [shuffle(np.arange(30), random_state=np.random.mtrand._rand) for _ in range(3)]  # as train.epochs
    assert [a.tolist() for a in ahead] == [d.tolist() for d in drawn] and (drawn[0] != drawn[1]).any()


def test_the_plans_rows_fit_every_part_of_the_epochs_and_one_row_less_does_not():
    task, n, n_gpu = TASKS['rocstories'], 40, 2
    split, packing, cheaper, global_batches = planned(task, n, n_gpu=n_gpu, seed=1, n_ctx=32, longest=15)
    assert cheaper and packing.length % 8 == 0 and packing.length >= split.seqs.lengths.max()
    for rows in global_batches:
        inputs.packed_train_batch(task, split, rows, N_VOCAB, n_gpu, packing)
    tight = packing._replace(rows=packing.rows - 1)
    failed = 0
    for rows in global_batches:
        try:
            inputs.packed_train_batch(task, split, rows, N_VOCAB, n_gpu, tight)
        except ValueError:
            failed += 1
    assert failed > 0
    tokens = split.seqs.lengths.reshape(n, 2)[np.concatenate(global_batches)].sum()
    positions = sum(taken_shape(task, split, rows, n_gpu, packing)[2] for rows in global_batches)
    assert packing.real == pytest.approx(tokens / positions)


def taken_shape(task, split, rows, n_parts, packing):
    """The shape a global batch takes, found by trying each of packing.shapes alone, cheapest first: (rows,
    length, positions of the batch) of the first one that holds every part."""
    for R, L in packing.shapes:
        try:
            X = inputs.packed_train_batch(task, split, rows, N_VOCAB, n_parts, Packing(R, L))[0]
        except ValueError:
            continue
        return R, L, X.shape[0] * X.shape[1]
    raise AssertionError('no shape of the packing holds this batch')


def planned(task, n=40, n_batch=4, n_gpu=2, seed=0, n_ctx=16, longest=6):
    """A split of n random examples (split_of's), its plan over 2 epochs (packing_plan at n_embd 768) and the global
    batches of those epochs: (split, packing, whether it packs, global batches)."""
    split = split_of(task, n, seed=seed, n_ctx=n_ctx, longest=longest)
    orders = inputs.epoch_orders(n, 2, np.random.RandomState(0).get_state())
    packing, cheaper = packing_plan(split.seqs, orders, task.n_seq, n_batch, n_gpu, 768, 1, n_ctx)
    global_batches = [order[i:i + n_batch * n_gpu] for order in orders
                      for i in range(0, n - n_batch * n_gpu + 1, n_batch * n_gpu)]
    return split, packing, cheaper, global_batches


def several_shapes(task):
    """planned's split of sequences of mixed lengths, its plan and its global batches: a plan of several shapes,
    each taken by some batch."""
    split, packing, _, global_batches = planned(task)
    return split, packing, global_batches


def test_each_batch_takes_the_cheapest_of_the_plans_shapes_that_holds_it():
    """Several shapes: each global batch is packed in the first (cheapest) one that holds every part; each smaller
    shape is cheaper than the one that holds every batch, and each is taken; one row less in it holds some batch
    no more."""
    task, n_gpu = TASKS['rocstories'], 2
    split, packing, global_batches = several_shapes(task)
    assert len(packing.shapes) == inputs.N_SHAPES and len(set(L for _, L in packing.shapes)) > 1
    costs = [inputs.work(R * L, L, 768) for R, L in packing.shapes]
    assert costs == sorted(costs) and costs[-2] < costs[-1]
    taken = []
    for rows in global_batches:
        X, seg, _, _ = inputs.packed_train_batch(task, split, rows, N_VOCAB, n_gpu, packing)
        R, L, positions = taken_shape(task, split, rows, n_gpu, packing)
        assert X.shape[:2] == seg.shape == (n_gpu * R, L) and X.shape[0] * X.shape[1] == positions
        taken.append((R, L))
    assert set(taken) == set(packing.shapes)
    for k, (R, L) in enumerate(packing.shapes):
        tight = Packing(R - 1, L) if R > 1 else Packing(R, L - 1)
        held = [rows for rows, shape in zip(global_batches, taken) if shape == (R, L)]
        with pytest.raises(ValueError, match='more than the packing'):
            for rows in held:
                inputs.packed_train_batch(task, split, rows, N_VOCAB, n_gpu, tight)


@pytest.mark.parametrize('path', [DEFAULT, UNMASKED], ids=['masked_lm', 'unmasked'])
def test_every_shape_of_a_plan_gives_the_references_outputs_and_keeps_sequences_apart(path):
    """For a batch of each of the plan's shapes: each sequence lies whole in one row, sees only its own earlier
    positions (the mask against its span), and the packed outputs equal the NumPy reference's on the original's
    padded arrays."""
    task, n_gpu = TASKS['rocstories'], 2
    split, packing, global_batches = several_shapes(task)
    model, params = make_model('rocstories')
    done = set()
    for rows in global_batches:
        R, L, _ = taken_shape(task, split, rows, n_gpu, packing)
        if (R, L) in done:
            continue
        done.add((R, L))
        batch = inputs.packed_train_batch(task, split, rows, N_VOCAB, n_gpu, packing)
        seg = batch[1]
        b = segment_mask(tf.constant(seg)).numpy()[:, 0]
        for r, t, length in spans(seg, n_gpu, len(rows) // n_gpu * task.n_seq).values():
            assert (b[r, t:t + length, t:t + length] == np.tril(np.ones((length, length)))).all()
            assert b[r, t:t + length].sum() == length * (length + 1) // 2  # nothing outside its own span
        got = packed_outputs(model, batch, n_gpu, path)
        X, M = inputs.pad_batch(split.seqs, rows, task.n_seq, N_VOCAB, n_ctx=16, multiple=16)
        want = reference.forward(params, X, M, split.Y[rows], N_HEAD, CLF, **HEADS['rocstories'])
        for what, g, w in zip(['clf_logits', 'clf_losses', 'lm_losses'], got, want):
            np.testing.assert_allclose(g, w, **TOL, err_msg=f'{what} in rows of {L}')
    assert done == set(packing.shapes)


def test_batches_of_equal_lengths_are_not_packed():
    """Every sequence as long as the longest: cutting each batch to its longest leaves no padding, and packing's
    empty places and longer rows would only add work."""
    seqs = Ragged.from_lists([[1] * 15] * 32)
    orders = inputs.epoch_orders(16, 2, np.random.RandomState(0).get_state())
    packing, cheaper = packing_plan(seqs, orders, 2, 4, 2, 8, 1, 15)
    assert not cheaper and packing.trimmed == 1 and packing.real < 1


# ------------------------------------------------------------------------------------------------- the model

def test_a_sequence_attends_only_to_its_own_earlier_positions():
    task = TASKS['rocstories']
    split = split_of(task, 4)
    X, seg, _, _ = inputs.packed_train_batch(task, split, np.arange(4), N_VOCAB, 2, Packing(4, 24))
    b = segment_mask(tf.constant(seg)).numpy()[:, 0]                                   # (rows, L, L)
    want = np.zeros_like(b)
    for r, t, length in spans(seg, 2, 4).values():
        want[r, t:t + length, t:t + length] = np.tril(np.ones((length, length)))
    for r in range(len(seg)):  # the empty places see only the empty places before them
        empty = np.nonzero(seg[r] == 0)[0]
        want[r][np.ix_(empty, empty)] = np.tril(np.ones((len(empty), len(empty))))
    np.testing.assert_array_equal(b, want)
    assert (seg > 0).sum(1).max() > max(length for _, _, length in spans(seg, 2, 4).values())  # rows shared


@pytest.mark.parametrize('name', sorted(HEADS))
@pytest.mark.parametrize('path', [DEFAULT, UNMASKED], ids=['masked_lm', 'unmasked'])
def test_packed_rows_give_the_references_outputs_on_the_padded_arrays(name, path, monkeypatch):
    """clf_logits, clf_losses and each sequence's LM loss (a position predicts the next token only within its
    sequence) of the packed parts equal the NumPy reference's on the original's padded arrays; rows as long as
    the longest sequence, which fills its row alone, and others shared."""
    task, n, n_parts = TASKS[name], 6, 2
    split = split_of(task, n, seed=2, longest=5, first_long=True)
    model, params = make_model(name)
    L = int(split.seqs.lengths.max())
    packing = tight_packing(task, split, np.arange(n), n_parts, L, extra=1)
    batch = inputs.packed_train_batch(task, split, np.arange(n), N_VOCAB, n_parts, packing)
    n_in_row = [len(set(r) - {0}) for r in batch[1]]
    assert 0 in n_in_row and 1 in n_in_row and max(n_in_row) > 1  # empty rows, rows alone, rows shared
    got = packed_outputs(model, batch, n_parts, path)
    X, M = inputs.pad_batch(split.seqs, np.arange(n), task.n_seq, N_VOCAB, n_ctx=16, multiple=16)
    want = reference.forward(params, X, M, split.Y, N_HEAD, CLF, **HEADS[name])
    for what, g, w in zip(['clf_logits', 'clf_losses', 'lm_losses'], got, want):
        np.testing.assert_allclose(g, w, **TOL, err_msg=what)
    # a mask letting a position see the other sequences of its row (causal only) would not match
    import model as model_module
    monkeypatch.setattr(model_module, 'segment_mask', lambda seg, n_parts=1: model_module.causal_mask(tf.shape(seg)[1]))
    bad = packed_outputs(model, batch, n_parts, path)
    assert np.abs(bad[2] - want[2]).max() > 1e-3


def test_packed_gradient_is_the_references_and_empty_rows_and_places_add_nothing():
    task, n = TASKS['rocstories'], 4
    split = split_of(task, n, seed=4)
    model, params = make_model('rocstories')

    def loss_and_grads(batch):
        with tf.GradientTape() as tape:
            _, clf_losses, lm_losses = finetune_losses(model, batch, path=DEFAULT)
            loss = tf.reduce_mean(clf_losses) + 0.5 * tf.reduce_mean(lm_losses)
        return float(loss), [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.params)]

    batch = inputs.packed_train_batch(task, split, np.arange(n), N_VOCAB, 1, Packing(4, 32))
    loss, grads = loss_and_grads(batch)
    X, M = inputs.pad_batch(split.seqs, np.arange(n), 2, N_VOCAB)
    want_loss, _, want = reference.loss_and_gradients(params, X, M, split.Y, N_HEAD, CLF, 0.5)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    for p, g, w in zip(model.params, grads, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=p.name)
    # two more empty rows, and junk tokens and positions on every empty place: the same loss and gradient
    X, seg, clf_at, Y = batch
    X, seg = np.concatenate([X, np.zeros_like(X[:2])]), np.concatenate([seg, np.zeros_like(seg[:2])])
    junk = np.random.RandomState(0).randint(0, N_VOCAB + 3 + 16, X.shape)
    X = np.where((seg == 0)[..., None], junk, X)
    assert (seg == 0).sum() > 2 * 32
    loss2, grads2 = loss_and_grads((X, seg, clf_at, Y))
    assert loss2 == pytest.approx(loss, rel=1e-6)
    for p, g, g2 in zip(model.params, grads, grads2):
        np.testing.assert_allclose(g2, g, rtol=1e-5, atol=1e-7, err_msg=p.name)


def numpy_updates(params, X, M, Y, n_global, hp, lm_coef=0.5):
    """The NumPy run's parameters after one update per global batch of n_global examples (padded arrays): the
    float64 gradient of mean clf + lm_coef mean LM loss over the global batch, then the reference Adam."""
    m, v = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    for k, i in enumerate(range(0, len(Y), n_global), start=1):
        rows = slice(i, i + n_global)
        _, _, grads = reference.loss_and_gradients(params, X[rows], M[rows], Y[rows], N_HEAD, CLF, lm_coef)
        params, m, v, _ = reference.adam_step(params, [g.astype(np.float32) for g in grads], m, v, k,
                                              schedule=reference.warmup_linear, **hp)
    return params


@pytest.mark.parametrize('n_replicas, accum_steps', [(1, 1), (2, 2)])
def test_packed_updates_are_the_numpy_runs_on_one_device_or_two(n_replicas, accum_steps):
    """Two updates of 2 towers of 4 examples, packed per part, through opt.make_update: the NumPy run's."""
    from tests.test_train import HP, assert_params_close
    task, n_gpu, n_batch = TASKS['rocstories'], 2, 4
    split = split_of(task, 16, seed=5)
    strategy = (tf.distribute.get_strategy() if n_replicas == 1
                else tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))
    with strategy.scope():
        model, params = make_model('rocstories')
        opt = Adam(model.params, schedule=warmup_linear, **HP)
    step = make_update(finetune_objective(model, 0.5, DEFAULT), model.params, opt, strategy, 0,
                                accum_steps=accum_steps, n_towers=n_gpu)
    packing = tight_packing(task, split, np.arange(16), 2 * n_gpu * accum_steps, 24)
    assert packing.rows > 1
    batches = (inputs.packed_train_batch(task, split, rows, N_VOCAB, n_gpu * accum_steps, packing)
               for rows in np.arange(16).reshape(2, 8))
    for batch in batches:
        step(*loop.distribute(strategy, batch))
    X, M = inputs.pad_batch(split.seqs, np.arange(16), 2, N_VOCAB)
    assert opt.t.numpy() == 2 and strategy.num_replicas_in_sync == n_replicas
    assert_params_close(model.params, numpy_updates(params, X, M, split.Y, n_gpu * n_batch, HP))


def test_updates_on_batches_of_every_shape_are_the_numpy_runs_with_one_trace_a_shape_at_most():
    """A run's updates whose batches take the plan's several shapes, through opt.make_update: the NumPy run's
    parameters, the update traced no more times than there are shapes."""
    from tests.test_train import HP, assert_params_close
    task, n_gpu, n_batch = TASKS['rocstories'], 2, 4
    split, packing, global_batches = several_shapes(task)
    first = {}  # the first batch of each shape, then one more of the first shape
    for rows in global_batches:
        first.setdefault(taken_shape(task, split, rows, n_gpu, packing)[:2], rows)
    global_batches = list(first.values()) + [global_batches[-1]]
    assert len(first) == len(packing.shapes)
    model, params = make_model('rocstories')
    opt = Adam(model.params, schedule=warmup_linear, **HP)
    strategy = tf.distribute.get_strategy()
    step = make_update(finetune_objective(model, 0.5, DEFAULT), model.params, opt, strategy, 0, n_towers=n_gpu)
    for rows in global_batches:
        step(*loop.distribute(strategy, inputs.packed_train_batch(task, split, rows, N_VOCAB, n_gpu, packing)))
    assert step.experimental_get_tracing_count() <= len(packing.shapes)
    order = np.concatenate(global_batches)
    X, M = inputs.pad_batch(split.seqs, order, 2, N_VOCAB)
    assert_params_close(model.params, numpy_updates(params, X, M, split.Y[order], n_gpu * n_batch, HP))


# ------------------------------------------------------------------------------------------------ dropout

def test_packed_and_padded_paths_drop_out_alike_in_distribution_not_in_value(monkeypatch):
    """With dropout on, the packed rows draw masks at the padded path's sites, in the same order, with the same
    keep rate (over the weights and units that matter) and 1 / (1 - p) scaling; `we` takes the same mask (same
    shape, same seed), the classifier one mask per example; the attention and residual masks have the rows'
    shapes, so the values differ."""
    from tests.test_towers import recorded_dropout
    pdrops = dict(embd_pdrop=0.1, attn_pdrop=0.2, resid_pdrop=0.3, clf_pdrop=0.4)
    task, n = TASKS['rocstories'], 24
    split = split_of(task, n, seed=6)
    model, _ = make_model('rocstories', **pdrops)
    seed = tf.constant([3, 0], tf.int32)
    X, M = inputs.pad_batch(split.seqs, np.arange(n), 2, N_VOCAB, n_ctx=16, multiple=16)
    batch = inputs.packed_train_batch(task, split, np.arange(n), N_VOCAB, 1, Packing(20, 32))
    records = {}
    for name, call in [('padded', lambda: finetune_losses(model, (X, M, split.Y), train=True, seed=seed, path=PADDED)),
                       ('packed', lambda: finetune_losses(model, batch, train=True, seed=seed, path=DEFAULT))]:
        calls = recorded_dropout(monkeypatch)
        records[name] = (calls, [t.numpy() for t in call()])
        monkeypatch.undo()
    (padded, padded_out), (packed, packed_out) = records['padded'], records['packed']
    kinds = [0.1] + [0.2, 0.3, 0.3] * 2 + [0.4]
    assert [c['pdrop'] for c in padded] == [c['pdrop'] for c in packed] == kinds
    assert packed[1]['shape'] == (20, N_HEAD, 32, 32) and packed[2]['shape'] == (20, 32, 16)  # the rows' shapes
    np.testing.assert_array_equal(padded[0]['mult'], packed[0]['mult'])
    for p in sorted(set(kinds)):
        mult = np.concatenate([c['mult'] for c in packed if c['pdrop'] == p])
        kept = mult != 0
        np.testing.assert_allclose(mult[kept], 1 / (1 - p), rtol=1e-5)
        assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / len(mult)), (p, kept.mean(), len(mult))
    clf = packed[-1]['out']
    np.testing.assert_array_equal(clf[:, 0] == 0, clf[:, 1] == 0)
    assert np.abs(padded_out[2] - packed_out[2]).max() > 1e-3


def test_sequences_sharing_a_row_draw_their_own_attention_and_residual_masks():
    """Examples 0 and 1 identical, their sequences in the same rows: with dropout off their outputs are equal;
    with attention and residual dropout on, each weight and unit is its own draw, so they differ."""
    task = TASKS['rocstories']
    split = split_of(task, 4, seed=7)
    ids = split.seqs.tolist()
    split = split._replace(seqs=Ragged.from_lists(ids[:2] * 2 + ids[4:]))
    batch = inputs.packed_train_batch(task, split, np.arange(4), N_VOCAB, 1, Packing(4, 32))
    assert len({r for r, _, _ in spans(batch[1], 1, 8).values()}) < 8  # some rows hold two sequences
    for pdrop, differ in [(0., False), (0.3, True)]:
        model, _ = make_model('rocstories', attn_pdrop=pdrop, resid_pdrop=pdrop)
        _, _, lm = finetune_losses(model, batch, train=True, seed=tf.constant([1, 2], tf.int32), path=DEFAULT)
        lm = lm.numpy()
        assert (np.abs(lm[:2] - lm[2:4]).min() > 1e-4) == differ, lm


@pytest.mark.parametrize('n_replicas, accum_steps', [(1, 1), (2, 2)])
def test_each_packed_tower_draws_its_own_we_mask_on_any_number_of_devices(n_replicas, accum_steps):
    """test_towers' expectation (each tower part's gradient with its own mask of `we`, the mean, the NumPy Adam)
    met by the packed path: the same masks, on one device or two, with accumulated parts."""
    from tests import test_towers
    from tests.test_train import assert_params_close, random_arrays
    X, M, Y = test_towers.batches(n_steps=2, n=test_towers.N_GPU * test_towers.N_BATCH)
    seqs = Ragged.from_lists([x[:int(m.sum())].tolist() for x, m in zip(X[..., 0].reshape(-1, X.shape[2]),
                                                                         M.reshape(-1, M.shape[2]))])
    split = inputs.Split(None, Y, seqs)
    strategy = (tf.distribute.get_strategy() if n_replicas == 1
                else tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))
    with strategy.scope():
        model = test_towers.embd_dropout_model(test_towers.EMBD_PDROP)
        opt = Adam(model.params, schedule=warmup_linear, **test_towers.HP)
    arrays = random_arrays(model)
    model.assign(arrays)
    step = make_update(finetune_objective(model, 0.5, DEFAULT), model.params, opt, strategy,
                                test_towers.SEED, accum_steps=accum_steps, n_towers=test_towers.N_GPU)
    n_parts, n_global = test_towers.N_GPU * accum_steps, test_towers.N_GPU * test_towers.N_BATCH
    batches = (inputs.packed_train_batch(TASKS['rocstories'], split, rows, test_towers.N_VOCAB, n_parts,
                                         Packing(4, 16)) for rows in np.arange(len(Y)).reshape(-1, n_global))
    for batch in batches:
        step(*loop.distribute(strategy, batch))
    assert_params_close(model.params, test_towers.expected_params(arrays, X, M, Y, accum_steps))


# ---------------------------------------------------------------------------------------------- evaluation

@pytest.mark.parametrize('name', ['rocstories', 'race', 'mrpc', 'sst2'])
def test_evaluation_in_rows_of_one_shape_scores_as_the_trimmed_batches(name):
    """eval_batch: every batch of the split at one shape (eval_packing's; the last one filled with copies, whose
    outputs iter_apply drops), several examples a row, each whole (a multiple-choice example's context and its
    answers), with the same logits and mean loss as batches cut to their longest."""
    task, n, n_batch = TASKS[name], 11, 4
    rng = np.random.RandomState(8)
    texts = random_texts(task, n, rng, longest=12)
    packed = task.shape == 'multiple_choice'
    split = inputs.Split(None, random_labels(task, n, rng), sequences(task, texts, N_VOCAB, 16),
                         inputs.pack_choices(task, texts, N_VOCAB, 16) if packed else None)
    model, params = make_model(name)
    packing = inputs.eval_packing(task, split, n_batch, 768)
    shapes, shared = [], []

    def rows_batch(rows):
        batch = inputs.eval_batch(task, split, rows, N_VOCAB, n_batch, packing)
        shapes.append(tuple(x.shape for x in batch))
        shared.append(max(len(set(r) - {0}) for r in batch[1]))
        return len(rows), batch

    def batches():
        return (rows_batch(rows) for rows in batches_of(np.arange(n), n_batch))

    n_parts = 1 + task.n_seq if packed else 1
    logits, cost = loop.iter_apply(make_eval_step(model, n_parts, fused=True, rows=True), batches(), n)
    assert len(shapes) == 3 and len(set(shapes)) == 1 and shapes[0][2] == (n_batch, task.n_seq)
    assert max(shared) > (1 + task.n_seq if packed else 1)  # rows hold several examples (or sequences)
    X, M = inputs.pad_batch(split.seqs, np.arange(n), task.n_seq, N_VOCAB)
    want_logits, want_losses, _ = reference.forward(params, X, M, split.Y, N_HEAD, CLF, **HEADS[name])
    np.testing.assert_allclose(logits, want_logits, **TOL)
    assert cost == pytest.approx(want_losses.mean(), rel=1e-5)
    if packed:  # an answer that saw the answers before it, or another example's, would not match
        bad = make_eval_step(model, 1, fused=True, rows=True)  # every part its own unit
        bad_logits, _ = loop.iter_apply(bad, batches(), n)
        assert np.abs(bad_logits - want_logits).max() > 1e-3


# ------------------------------------------------------------------------------------------------- a whole run

def write_mixed_stories(data_dir, seed):
    """Story Cloze CSVs of test_run_level's words where every other story is four one-word sentences and the
    others four of eight words (sequences of about 30 and 100 tokens: packing pairs them)."""
    import csv
    from datasets import ROC_HEADER, ROC_TEST, ROC_VAL
    from tests.test_run_level import N_TEST, N_TRAIN, N_VALID, WORDS
    rng = np.random.RandomState(seed)

    def sentence(n_words):
        return ' '.join(rng.choice(WORDS, n_words)).capitalize() + '.'

    def row(i):
        endings = [sentence(rng.randint(1, 4)), sentence(rng.randint(1, 4))]
        while endings[0].split()[0] == endings[1].split()[0]:  # no tied logits for rounding to break
            endings[1] = sentence(rng.randint(1, 4))
        return [f'id{i}'] + [sentence(rng.randint(1, 9)) for _ in range(4)] + endings + [str(rng.randint(1, 3))]

    for name, n in [(ROC_VAL, N_TRAIN + N_VALID), (ROC_TEST, N_TEST)]:
        with open(f'{data_dir}/{name}', 'w', newline='', encoding='utf-8') as f:
            csv.writer(f).writerows([ROC_HEADER] + [row(i) for i in range(n)])


def test_a_packed_run_logs_the_numpy_runs_numbers(tmp_path, monkeypatch, capsys):
    """test_run_level's run (every number-changing flag off its default, 2 towers, dropout off) on stories of
    mixed lengths, packed: each evaluation's costs and accuracies and each update's cost are the NumPy run's
    (SPEC's computation on the original's padded arrays, float64 gradients)."""
    import joblib
    from tests import test_run_level as rl
    flags, _ = rl.write_files(str(tmp_path))        # the vocabulary; the CSVs and parameters replaced below
    write_mixed_stories(str(tmp_path / 'data'), seed=7)  # no logit difference near a tie
    monkeypatch.setattr(rl, 'N_CTX', 200)           # max_len 98: read_split as train.py with --n_ctx 200
    data, n_ctx = rl.read_split(str(tmp_path / 'data'))
    C, rng = rl.N_EMBD, np.random.RandomState(0)  # test_run_level's 1-layer model, for this data's n_ctx
    shapes = [(rl.N_VOCAB + 3 + n_ctx, C), (1, C, 3 * C), (3 * C,), (1, C, C), (C,), (C,), (C,), (1, C, 4 * C),
              (4 * C,), (1, 4 * C, C), (C,), (C,), (C,), (C, 1), (1,)]
    params = [(rng.randn(*s) * (1. if i == 0 else 0.3) + (1 if i in (5, 11) else 0)).astype(np.float32)
              for i, s in enumerate(shapes)]  # LayerNorm gains near 1
    joblib.dump(params, str(tmp_path / 'init.jl'))
    flags[flags.index('--n_ctx') + 1] = '200'
    # this tiny model's attention (n_embd 8, rows of ~100) would outweigh its matmuls and keep the batches trimmed:
    # the work of a large one, where the positions count, makes train.py pack
    monkeypatch.setattr(inputs, 'work', lambda positions, length, n_embd: positions)
    out = rl.run(str(tmp_path), 'packed', flags, *rl.hp_flags(), '--vector_l2', *rl.NO_DROPOUT)
    printed = capsys.readouterr().out
    assert 'training batches: the 8 sequences of each tower packed into' in printed
    updates, evaluations = rl.numpy_run(params, data, dict(rl.HP, vector_l2=True))
    for got, want in zip(rl.read_log(out), evaluations):
        for k in ['tr_cost', 'va_cost']:
            np.testing.assert_allclose(got[k], want[k], **rl.COST, err_msg=k)
        assert (got['tr_acc'], got['va_acc']) == pytest.approx((want['tr_acc'], want['va_acc']), abs=1e-9)
        assert want['margin'] > 1e-4
    np.testing.assert_allclose(rl.read_scalars(out)['train/clf_cost'], [u[0] for u in updates], **rl.COST)
