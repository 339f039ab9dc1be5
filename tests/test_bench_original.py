"""bench.py's baseline, the original's TF1 graph (bench_original.py): it computes SPEC's numbers (the NumPy
reference's forward, gradient and Adam, over n_gpu towers), the port's padded path gives the same, and its dropout
is TensorFlow 1.4's (kept values scaled by 1 / keep)."""
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))  # bench_original.py lives in bench/

from bench_original import OriginalGraph, dropout, v1  # noqa: E402
from opt import Adam, warmup_linear  # noqa: E402
from tests import reference  # noqa: E402
from tests.fixtures import finetune_step  # noqa: E402
from tests.test_train import (CLF, HP, N_CTX, N_EMBD, N_HEAD, N_LAYER, N_VOCAB,  # noqa: E402
                              assert_params_close, batches, new_model, random_arrays)

N_GPU, N_BATCH = 2, 2


def original_graph(pdrop=0.):
    return OriginalGraph(n_vocab=N_VOCAB, n_ctx=N_CTX, clf_token=CLF, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER,
                         n_batch=N_BATCH, n_gpu=N_GPU, embd_pdrop=pdrop, attn_pdrop=pdrop, resid_pdrop=pdrop,
                         clf_pdrop=pdrop, **HP)


class Params:
    """OriginalGraph's parameters in the form assert_params_close reads (name, numpy())."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def numpy(self):
        return self.value


def test_original_graph_computes_the_numpy_reference():
    arrays = random_arrays(new_model())
    X, M, Y = batches(n_steps=3, n=N_GPU * N_BATCH)
    graph = original_graph()
    graph.load(arrays)
    n = N_GPU * N_BATCH
    clf_losses, lm_losses = graph.losses(X[:n], M[:n], Y[:n])
    _, want_clf, want_lm = reference.forward(arrays, X[:n], M[:n], Y[:n], N_HEAD, CLF)
    np.testing.assert_allclose(clf_losses, want_clf, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lm_losses, want_lm, rtol=1e-5, atol=1e-6)

    params, m, v = list(arrays), [np.zeros_like(a) for a in arrays], [np.zeros_like(a) for a in arrays]
    for k, i in enumerate(range(0, len(X), n), start=1):
        rows = slice(i, i + n)  # the mean over equal towers is the mean over the global batch
        _, clf_loss, grads = reference.loss_and_gradients(params, X[rows], M[rows], Y[rows], N_HEAD, CLF, 0.5)
        cost = graph.train(X[rows], M[rows], Y[rows])
        np.testing.assert_allclose(cost, clf_loss, rtol=1e-5)
        params, m, v, _ = reference.adam_step(params, grads, m, v, k, schedule=reference.warmup_linear, **HP)
    assert_params_close([Params(p.name, a) for p, a in zip(graph.params, graph.values())], params)
    graph.close()


def test_port_padded_path_gives_the_original_graphs_numbers():
    """What bench.py's agreement table rests on: the same weights and batches, dropout off, 3 updates."""
    arrays = random_arrays(new_model())
    X, M, Y = batches(n_steps=3, n=N_GPU * N_BATCH)
    graph = original_graph()
    graph.load(arrays)
    model = new_model()
    model.assign(arrays)
    opt = Adam(model.params, schedule=warmup_linear, fused=False, **HP)
    step = finetune_step(model, opt, tf.distribute.get_strategy(), lm_coef=0.5, seed=0, n_towers=N_GPU)
    n = N_GPU * N_BATCH
    for i in range(0, len(X), n):
        want = graph.train(X[i:i + n], M[i:i + n], Y[i:i + n])
        np.testing.assert_allclose(float(step(X[i:i + n], M[i:i + n], Y[i:i + n])[0]), want, rtol=1e-6)
    assert_params_close(model.params, graph.values())
    graph.close()


def test_original_dropout_keeps_with_probability_keep_and_scales_by_its_inverse():
    with tf.Graph().as_default():
        x = tf.ones([200, 500])
        y = v1.Session().run(dropout(x, 0.1, train=True))
        same = v1.Session().run(dropout(x, 0.1, train=False))
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.9, rtol=1e-6)
    assert abs(kept.mean() - 0.9) < 0.005  # 100k draws: the standard error is 0.001
    assert (same == 1).all()


def test_original_graph_trains_with_dropout_on():
    """With dropout on the cost differs from the dropout-off graph's at the same weights (the masks are drawn)."""
    arrays = random_arrays(new_model())
    X, M, Y = batches(n_steps=1, n=N_GPU * N_BATCH)
    costs = []
    for pdrop in [0., 0.3]:
        graph = original_graph(pdrop)
        graph.load(arrays)
        costs.append(graph.train(X, M, Y))
        graph.close()
    assert abs(costs[0] - costs[1]) > 1e-4
