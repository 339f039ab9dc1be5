"""Tests of opt.py (SPEC "Optimiser"): the learning-rate schedules and Adam with the decoupled weight-decay fix.

The NumPy reference below is written from SPEC's words, independently of opt.py, and computes in float32 in the
order of the original's graph: lrt = lr * sqrt(1 - b2**k) / (1 - b1**k), then lrt *= schedule(k / t_total), with
b1, b2 and k float32 (so 1 - b2**k cancels in float32: the measured 1.758366e-5, not 1.758378e-5).
"""
import functools
import math

import numpy as np
import pytest
import tensorflow as tf

import opt

F = np.float32


# ---------------------------------------------------------------------------------------------------------------
# NumPy reference (float32, from SPEC)
# ---------------------------------------------------------------------------------------------------------------
def np_warmup_linear(x, warmup=0.002):
    x, w = F(x), F(warmup)
    s = F(1) if x <= w else F(0)
    return (s * (x / w) + (F(1) - s)) * (F(1) - x)


def np_warmup_cosine(x, warmup=0.002):
    x, w = F(x), F(warmup)
    s = F(1) if x <= w else F(0)
    return s * (x / w) + (F(1) - s) * (F(0.5) * (F(1) + np.cos(F(math.pi) * x)))


def np_warmup_constant(x, warmup=0.002):
    x, w = F(x), F(warmup)
    s = F(1) if x <= w else F(0)
    return s * (x / w) + (F(1) - s) * F(1)


NP_SCHEDULES = {'warmup_linear': np_warmup_linear, 'warmup_cosine': np_warmup_cosine,
                'warmup_constant': np_warmup_constant}


def np_lrt(k, lr, np_schedule, t_total, b1=0.9, b2=0.999):
    k = F(k)
    lrt = F(lr) * np.sqrt(F(1) - F(b2) ** k) / (F(1) - F(b1) ** k)
    return F(lrt * np_schedule(k / F(t_total)))


def np_adam_step(params, grads, m, v, k, lr, np_schedule, t_total, b1=0.9, b2=0.999, e=1e-8, l2=0.,
                 vector_l2=False, max_grad_norm=-1):
    """One update number k (counted from 1). Returns (new params, new m, new v, lrt); inputs are not modified."""
    grads = [np.asarray(g, F) for g in grads]
    if max_grad_norm > 0:
        c = F(max_grad_norm)
        norm = F(np.sqrt(sum(np.sum(np.square(g.astype(np.float64))) for g in grads)))
        grads = [g * c / max(norm, c) for g in grads]
    lrt = np_lrt(k, lr, np_schedule, t_total, b1, b2)
    # the moments' constants are Python floats turned into float32 constants: 1 - b2 is computed in double
    # (0.001), not in float32 (1 - float32(0.999) = 0.000999987); only the bias corrections of lrt raise the
    # float32 b1, b2 to the float32 counter.
    c1, c2 = F(1 - b1), F(1 - b2)
    b1, b2, e, l2 = F(b1), F(b2), F(e), F(l2)
    new_p, new_m, new_v = [], [], []
    for p, g, mi, vi in zip(params, grads, m, v):
        p = np.asarray(p, F)
        mt = b1 * mi + c1 * g
        vt = b2 * vi + c2 * g * g
        if p.ndim > 1 or vector_l2:
            pt = p - lrt * (mt / (np.sqrt(vt) + e) + l2 * p)
        else:
            pt = p - lrt * (mt / (np.sqrt(vt) + e))
        new_p.append(pt.astype(F))
        new_m.append(mt.astype(F))
        new_v.append(vt.astype(F))
    return new_p, new_m, new_v, lrt


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
SHAPES = [(4, 3), (1, 3, 5), (5,), (3,)]  # a matrix, a conv weight (1, nx, nf), two vectors


def make_problem(seed=0, n_steps=3, grad_scale=1.0):
    rng = np.random.RandomState(seed)
    init = [rng.randn(*s).astype(F) for s in SHAPES]
    grads = [[(rng.randn(*s) * grad_scale).astype(F) for s in SHAPES] for _ in range(n_steps)]
    return init, grads


def global_norm(gs):
    return float(np.sqrt(sum(np.sum(np.square(g.astype(np.float64))) for g in gs)))


def run_port(init, grads_per_step, lr, schedule_name, warmup, t_total, **kw):
    params = [tf.Variable(p) for p in init]
    adam = opt.Adam(params, lr, functools.partial(opt.schedules[schedule_name], warmup=warmup), t_total, **kw)
    history = []
    for gs in grads_per_step:
        lrt = adam.apply([tf.constant(g) for g in gs])
        history.append(([p.numpy() for p in params], [x.numpy() for x in adam.m], [x.numpy() for x in adam.v],
                        np.asarray(lrt)))
    return adam, history


def run_reference(init, grads_per_step, lr, schedule_name, warmup, t_total, **kw):
    p = [x.copy() for x in init]
    m = [np.zeros_like(x) for x in init]
    v = [np.zeros_like(x) for x in init]
    sched = functools.partial(NP_SCHEDULES[schedule_name], warmup=warmup)
    history = []
    for k, gs in enumerate(grads_per_step, start=1):
        p, m, v, lrt = np_adam_step(p, gs, m, v, k, lr, sched, t_total, **kw)
        history.append((p, m, v, lrt))
    return history


def assert_history_close(port, ref, rtol=1e-6, atol=1e-7):
    assert len(port) == len(ref)
    for step, ((pp, pm, pv, plr), (rp, rm, rv, rlr)) in enumerate(zip(port, ref), start=1):
        np.testing.assert_allclose(plr, rlr, rtol=rtol, atol=0, err_msg=f'lrt at update {step}')
        for i, (a, b) in enumerate(zip(pm, rm)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f'm[{i}] at update {step}')
        for i, (a, b) in enumerate(zip(pv, rv)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * 1e-3, err_msg=f'v[{i}] at update {step}')
        for i, (a, b) in enumerate(zip(pp, rp)):
            assert a.shape == b.shape and a.dtype == np.float32, (i, a.shape, a.dtype)
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f'param {i} at update {step}')


# ---------------------------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------------------------
XS = [0.0, 0.001, 0.002, 0.0021, 0.5, 1.0]


def closed_form(name, x, warmup):
    """float64 closed forms of SPEC: s = 1 if x <= warmup else 0."""
    s = 1.0 if x <= warmup else 0.0
    if name == 'warmup_linear':
        return (s * x / warmup + (1 - s)) * (1 - x)
    if name == 'warmup_cosine':
        return s * x / warmup + (1 - s) * 0.5 * (1 + math.cos(math.pi * x))
    return s * x / warmup + (1 - s)


@pytest.mark.parametrize('warmup', [0.002, 0.1])
@pytest.mark.parametrize('name', ['warmup_linear', 'warmup_cosine', 'warmup_constant'])
def test_schedule_matches_closed_form(name, warmup):
    fn = getattr(opt, name)
    assert opt.schedules[name] is fn
    for x in XS:
        want = closed_form(name, x, warmup)
        for arg in (x, tf.constant(x, tf.float32)):
            got = fn(arg, warmup=warmup)
            assert tf.is_tensor(got) and got.dtype == tf.float32, (name, x, type(got))
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7, err_msg=f'{name}({x}, {warmup})')
            np.testing.assert_allclose(got.numpy(), NP_SCHEDULES[name](x, warmup), rtol=1e-6, atol=1e-7)


def test_schedule_default_warmup_is_0_002():
    for name in ['warmup_linear', 'warmup_cosine', 'warmup_constant']:
        fn = getattr(opt, name)
        for x in XS:
            np.testing.assert_allclose(fn(x).numpy(), closed_form(name, x, 0.002), rtol=1e-6, atol=1e-7)


def test_schedule_boundary_x_equal_warmup_uses_warmup_branch():
    # at x == warmup, s = 1: warmup_cosine gives exactly 1 (the other branch would give 0.99998...)
    assert opt.warmup_cosine(0.002, warmup=0.002).numpy() == 1.0
    assert opt.warmup_constant(0.002, warmup=0.002).numpy() == 1.0
    assert opt.warmup_cosine(0.0021, warmup=0.002).numpy() < 1.0


# ---------------------------------------------------------------------------------------------------------------
# Adam, one and several updates vs NumPy
# ---------------------------------------------------------------------------------------------------------------
LR, T_TOTAL, WARMUP = 0.01, 10, 0.2  # x = 0.1, 0.2 in the warmup (0.2 is the boundary), x = 0.3 after it


@pytest.mark.parametrize('vector_l2', [False, True])
def test_adam_three_updates_with_l2_and_active_clipping_match_numpy(vector_l2):
    init, grads = make_problem(seed=1, grad_scale=3.0)
    assert all(global_norm(gs) > 1.0 for gs in grads)  # clipping is active at every update
    kw = dict(l2=0.5, vector_l2=vector_l2, max_grad_norm=1)
    _, port = run_port(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, **kw)
    ref = run_reference(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, **kw)
    assert_history_close(port, ref)
    # the test discriminates: without clipping, or with the other l2 rule, the results differ
    no_clip = run_reference(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, l2=0.5, vector_l2=vector_l2)
    assert not np.allclose(no_clip[0][1][0], ref[0][1][0], rtol=1e-3)  # m after update 1
    other = run_reference(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, l2=0.5, vector_l2=not vector_l2,
                          max_grad_norm=1)
    for i in (0, 1):  # matrices decay either way
        np.testing.assert_array_equal(other[-1][0][i], ref[-1][0][i])
    for i in (2, 3):  # vectors decay only with vector_l2
        assert not np.allclose(other[-1][0][i], ref[-1][0][i], rtol=1e-4, atol=0)


def test_adam_l2_default_decays_matrices_and_conv_weights_only():
    init, grads = make_problem(seed=2)
    _, port = run_port(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, l2=0.5)
    ref = run_reference(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, l2=0.5)
    assert_history_close(port, ref)
    no_l2 = run_reference(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL)
    for i in (0, 1):
        assert not np.allclose(no_l2[-1][0][i], ref[-1][0][i], rtol=1e-4, atol=0)
    for i in (2, 3):
        np.testing.assert_array_equal(no_l2[-1][0][i], ref[-1][0][i])


def test_adam_clipping_inactive_with_max_grad_norm_minus_one():
    init, grads = make_problem(seed=3, grad_scale=5.0)
    assert all(global_norm(gs) > 1.0 for gs in grads)
    _, port = run_port(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, l2=0.01, max_grad_norm=-1)
    ref = run_reference(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, l2=0.01, max_grad_norm=-1)
    assert_history_close(port, ref)
    # m after update 1 is (1 - b1) * g: unclipped
    np.testing.assert_allclose(port[0][1][0], 0.1 * grads[0][0], rtol=1e-6)


def test_adam_clipping_leaves_gradients_below_the_norm_unchanged():
    init, grads = make_problem(seed=4, grad_scale=0.05)
    assert all(global_norm(gs) < 1.0 for gs in grads)
    _, port = run_port(init, grads, LR, 'warmup_cosine', WARMUP, T_TOTAL, l2=0.01, max_grad_norm=1)
    ref = run_reference(init, grads, LR, 'warmup_cosine', WARMUP, T_TOTAL, l2=0.01, max_grad_norm=-1)
    assert_history_close(port, ref)


def test_adam_clipping_scales_by_global_norm_not_per_tensor():
    init, grads = make_problem(seed=5, n_steps=1)
    grads[0][2] = grads[0][2] * 100  # one tensor dominates the global norm
    norm = global_norm(grads[0])
    adam, port = run_port(init, grads, LR, 'warmup_constant', WARMUP, T_TOTAL, max_grad_norm=1)
    for i, g in enumerate(grads[0]):  # m = (1 - b1) * g / norm for every tensor
        np.testing.assert_allclose(port[0][1][i], 0.1 * g / norm, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize('schedule_name', ['warmup_linear', 'warmup_cosine', 'warmup_constant'])
def test_adam_uses_each_schedule_with_k_counted_from_one(schedule_name):
    init, grads = make_problem(seed=6, n_steps=4)
    # t_total 20, warmup 0.1: x = 0.05, 0.1 (boundary), 0.15, 0.2
    _, port = run_port(init, grads, LR, schedule_name, 0.1, 20, l2=0.01, max_grad_norm=1)
    ref = run_reference(init, grads, LR, schedule_name, 0.1, 20, l2=0.01, max_grad_norm=1)
    assert_history_close(port, ref)


def test_adam_defaults_b1_b2_e_l2_vector_l2_max_grad_norm():
    init, grads = make_problem(seed=7, grad_scale=4.0)
    _, port = run_port(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL)
    ref = run_reference(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL,
                        b1=0.9, b2=0.999, e=1e-8, l2=0., vector_l2=False, max_grad_norm=-1)
    assert_history_close(port, ref)


def test_adam_nondefault_b1_b2_e():
    init, grads = make_problem(seed=8)
    grads[1][3] = np.zeros_like(grads[1][3])  # a zero gradient, so e matters for that vector
    kw = dict(b1=0.8, b2=0.99, e=1e-3, l2=0.1, vector_l2=True, max_grad_norm=2)
    _, port = run_port(init, grads, LR, 'warmup_cosine', WARMUP, T_TOTAL, **kw)
    ref = run_reference(init, grads, LR, 'warmup_cosine', WARMUP, T_TOTAL, **kw)
    assert_history_close(port, ref)


def test_adam_densifies_indexed_slices_gradients():
    # the embedding gradient is dense: every row gets moments and weight decay every step
    init = [np.random.RandomState(9).randn(6, 4).astype(F)]
    p = tf.Variable(init[0])
    adam = opt.Adam([p], LR, functools.partial(opt.warmup_constant, warmup=WARMUP), T_TOTAL, l2=0.5)
    vals = np.random.RandomState(10).randn(2, 4).astype(F)
    g = tf.IndexedSlices(tf.constant(vals), tf.constant([1, 4]), tf.constant([6, 4]))
    adam.apply([g])
    dense = np.zeros((6, 4), F)
    dense[[1, 4]] = vals
    rp, rm, rv, _ = np_adam_step(init, [dense], [np.zeros((6, 4), F)], [np.zeros((6, 4), F)], 1, LR,
                                 functools.partial(np_warmup_constant, warmup=WARMUP), T_TOTAL, l2=0.5)
    np.testing.assert_allclose(adam.m[0].numpy(), rm[0], rtol=1e-6)
    np.testing.assert_allclose(p.numpy(), rp[0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(p.numpy()[0], init[0][0])  # a row without gradient still decays


# ---------------------------------------------------------------------------------------------------------------
# the measured learning rates of the original
# ---------------------------------------------------------------------------------------------------------------
ORIG_LR, ORIG_T_TOTAL = 6.25e-5, (1497 // 8) * 3  # 561: 1,497 train examples, n_batch 8, one tower, 3 epochs
ORIG_LRT = [1.758366e-5, 1.465472e-5, 1.255810e-5]  # printed to 7 significant digits


def test_original_measured_learning_rates():
    assert ORIG_T_TOTAL == 561
    p = tf.Variable(np.ones((2, 3), F))
    adam = opt.Adam([p], ORIG_LR, functools.partial(opt.warmup_linear, warmup=0.002), ORIG_T_TOTAL)
    for k, want in enumerate(ORIG_LRT, start=1):
        got = adam.apply([tf.zeros((2, 3))])
        assert tf.convert_to_tensor(got).dtype == tf.float32
        got = float(np.asarray(got))
        # the measured value to the digits it was printed with, and ~2e-7 relative (1 - 2 ulp)
        assert f'{got:.6e}' == f'{want:.6e}', (k, got, want)
        assert abs(got - want) / want < 3e-7, (k, got, want)  # the printed digits' rounding is up to 2.8e-7
        np.testing.assert_allclose(got, np_lrt(k, ORIG_LR, np_warmup_linear, ORIG_T_TOTAL), rtol=2e-7)
        np.testing.assert_allclose(float(np.asarray(adam.learning_rate(k))), got, rtol=2e-7)
    # float64 arithmetic would give 1.758378e-5 at update 1: the port computes in float32
    x = 1 / 561
    f64 = 6.25e-5 * math.sqrt(1 - 0.999 ** 1) / (1 - 0.9 ** 1) * (x / 0.002) * (1 - x)
    assert f'{f64:.6e}' == '1.758378e-05'
    first = float(np.asarray(adam.learning_rate(1)))
    assert abs(first - f64) / f64 > 5e-6, (first, f64)


def test_learning_rate_accepts_tensor_and_int_update_numbers():
    p = tf.Variable(np.ones((3,), F))
    adam = opt.Adam([p], ORIG_LR, functools.partial(opt.warmup_linear, warmup=0.002), ORIG_T_TOTAL)
    a = adam.learning_rate(2)
    b = adam.learning_rate(tf.constant(2.0))
    assert tf.convert_to_tensor(a).dtype == tf.float32
    assert float(np.asarray(a)) == float(np.asarray(b))
    assert f'{float(np.asarray(a)):.6e}' == '1.465472e-05'
    assert float(adam.t.numpy()) == 0.0  # learning_rate does not update


# ---------------------------------------------------------------------------------------------------------------
# the last update moves nothing (x = 1)
# ---------------------------------------------------------------------------------------------------------------
def test_last_update_with_warmup_linear_has_zero_lr_but_moments_change():
    init, grads = make_problem(seed=11, n_steps=3)
    t_total = 3
    _, port = run_port(init, grads, LR, 'warmup_linear', 0.002, t_total, l2=0.5, vector_l2=True, max_grad_norm=1)
    ref = run_reference(init, grads, LR, 'warmup_linear', 0.002, t_total, l2=0.5, vector_l2=True, max_grad_norm=1)
    assert_history_close(port, ref)
    (p2, m2, v2, lr2), (p3, m3, v3, lr3) = port[1], port[2]
    assert float(lr2) > 0
    assert float(lr3) == 0.0
    for i in range(len(SHAPES)):
        np.testing.assert_array_equal(p3[i], p2[i])  # parameters do not move (not even weight decay)
        assert not np.allclose(m3[i], m2[i])
        assert not np.allclose(v3[i], v2[i])


def test_last_update_of_the_original_run_has_zero_lr():
    p = tf.Variable(np.ones((3,), F))
    lin = opt.Adam([p], ORIG_LR, functools.partial(opt.warmup_linear, warmup=0.002), ORIG_T_TOTAL)
    assert float(np.asarray(lin.learning_rate(ORIG_T_TOTAL))) == 0.0
    assert float(np.asarray(lin.learning_rate(ORIG_T_TOTAL - 1))) > 0.0
    cos = opt.Adam([p], ORIG_LR, functools.partial(opt.warmup_cosine, warmup=0.002), ORIG_T_TOTAL)
    assert abs(float(np.asarray(cos.learning_rate(ORIG_T_TOTAL)))) < 1e-15
    const = opt.Adam([p], ORIG_LR, functools.partial(opt.warmup_constant, warmup=0.002), ORIG_T_TOTAL)
    assert float(np.asarray(const.learning_rate(ORIG_T_TOTAL))) > 0.0


# ---------------------------------------------------------------------------------------------------------------
# tf.function and the counter
# ---------------------------------------------------------------------------------------------------------------
def test_apply_inside_tf_function_matches_eager():
    init, grads = make_problem(seed=12, n_steps=2, grad_scale=2.0)
    kw = dict(l2=0.01, max_grad_norm=1)
    params = [tf.Variable(p) for p in init]
    adam = opt.Adam(params, LR, functools.partial(opt.warmup_linear, warmup=WARMUP), T_TOTAL, **kw)
    step = tf.function(adam.apply)
    lrts = [step([tf.constant(g) for g in gs]) for gs in grads]
    assert float(adam.t.numpy()) == 2.0
    _, eager = run_port(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, **kw)
    ref = run_reference(init, grads, LR, 'warmup_linear', WARMUP, T_TOTAL, **kw)
    for k in range(2):
        np.testing.assert_allclose(np.asarray(lrts[k]), eager[k][3], rtol=1e-7)
    for i, p in enumerate(params):
        np.testing.assert_allclose(p.numpy(), eager[-1][0][i], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(p.numpy(), ref[-1][0][i], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(adam.m[i].numpy(), eager[-1][1][i], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(adam.v[i].numpy(), eager[-1][2][i], rtol=1e-6, atol=1e-10)


def test_apply_inside_a_user_tf_function_with_gradient_tape():
    init, _ = make_problem(seed=13, n_steps=0)
    params = [tf.Variable(p) for p in init]
    adam = opt.Adam(params, LR, functools.partial(opt.warmup_linear, warmup=WARMUP), T_TOTAL, l2=0.01,
                    max_grad_norm=1)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_sum(tf.square(p)) for p in params])
        return adam.apply(tape.gradient(loss, params))

    p = [x.copy() for x in init]
    m = [np.zeros_like(x) for x in init]
    v = [np.zeros_like(x) for x in init]
    for k in (1, 2):
        train_step()
        p, m, v, _ = np_adam_step(p, [2 * x for x in p], m, v, k, LR,
                                  functools.partial(np_warmup_linear, warmup=WARMUP), T_TOTAL, l2=0.01,
                                  max_grad_norm=1)
    assert float(adam.t.numpy()) == 2.0
    for i, var in enumerate(params):
        np.testing.assert_allclose(var.numpy(), p[i], rtol=1e-6, atol=1e-7)


def test_counter_starts_at_zero_and_counts_updates():
    init, grads = make_problem(seed=14, n_steps=3)
    params = [tf.Variable(p) for p in init]
    adam = opt.Adam(params, LR, functools.partial(opt.warmup_linear, warmup=WARMUP), T_TOTAL)
    assert isinstance(adam, tf.Module)
    assert isinstance(adam.t, tf.Variable) and adam.t.dtype == tf.float32
    assert float(adam.t.numpy()) == 0.0
    assert len(adam.m) == len(adam.v) == len(params)
    for mi, vi, p in zip(adam.m, adam.v, params):
        assert isinstance(mi, tf.Variable) and isinstance(vi, tf.Variable)
        assert mi.shape == p.shape and vi.shape == p.shape and mi.dtype == vi.dtype == tf.float32
        assert not np.any(mi.numpy()) and not np.any(vi.numpy())
    for k, gs in enumerate(grads, start=1):
        lrt = adam.apply([tf.constant(g) for g in gs])
        assert float(adam.t.numpy()) == float(k)
        # apply returns the learning rate of update k (counted from 1)
        assert float(np.asarray(lrt)) == float(np.asarray(adam.learning_rate(k)))
