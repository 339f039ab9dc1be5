"""Two worker processes on this machine under MultiWorkerMirroredStrategy (TF_CONFIG), one CPU each, make the
same updates as one process on the whole global batch."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from opt import Adam, warmup_linear
from tests.test_train import HP, assert_params_close, batches, new_model, random_arrays
from tests.fixtures import finetune_step, train_batches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', 'multiworker_worker.py')
TIMEOUT = 150  # seconds for the whole cluster (~30 s on a 2-core machine): a worker must never hang the tests


def free_ports(n):
    """n distinct ports free on 127.0.0.1 now (held open together, so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(('127.0.0.1', 0))
        return [s.getsockname()[1] for s in socks]


@contextlib.contextmanager
def workers(tmp_path, n_workers=2):
    """Start the workers; yield a function that waits for all of them (stopping at the first failure) and returns
    their saved results. Every worker still running on the way out, failure or timeout, is killed."""
    cluster = {'worker': [f'127.0.0.1:{p}' for p in free_ports(n_workers)]}
    procs, outs, logs = [], [], []
    try:
        for i in range(n_workers):
            env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT,
                       TF_CONFIG=json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': i}}))
            outs.append(tmp_path / f'worker{i}.npz')
            logs.append(tmp_path / f'worker{i}.log')
            with open(logs[i], 'w') as log:
                procs.append(subprocess.Popen([sys.executable, WORKER, str(outs[i])], cwd=ROOT, env=env,
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + TIMEOUT

        def wait():
            while any(proc.poll() is None for proc in procs):  # a worker whose peer died would wait for it
                failed = [i for i, proc in enumerate(procs) if proc.poll() not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    i = failed[0] if failed else next(i for i, proc in enumerate(procs) if proc.poll() is None)
                    why = f'exit status {procs[i].returncode}' if failed else f'still running after {TIMEOUT} s'
                    raise AssertionError(f'worker {i} failed ({why}):\n' + logs[i].read_text()[-4000:])
                time.sleep(0.2)
            for i, proc in enumerate(procs):
                assert proc.returncode == 0, f'worker {i} failed:\n' + logs[i].read_text()[-4000:]
            return [load(out) for out in outs]

        yield wait
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def load(path):
    with np.load(path) as z:
        n = len(z['names'])
        return dict(params=[z[f'arr_{k}'] for k in range(n)], names=list(z['names']), costs=z['costs'],
                    t=float(z['t']), replicas=int(z['replicas']), multi_worker=bool(z['multi_worker']),
                    devices=int(z['devices']))


def test_two_workers_give_the_numbers_of_one_process(tmp_path):
    with workers(tmp_path) as wait:
        # Meanwhile, one process, the default strategy, the same global batches.
        strategy = tf.distribute.get_strategy()
        with strategy.scope():
            model = new_model()
            opt = Adam(model.params, schedule=warmup_linear, **HP)
        arrays = random_arrays(model)
        model.assign(arrays)
        step = finetune_step(model, opt, strategy, lm_coef=0.5, seed=0)
        costs = [float(step(*b)[0]) for b in train_batches(strategy, *batches(3, 4), 4)]
        results = wait()

    for w in results:
        assert w['multi_worker']
        assert w['replicas'] == 2 and w['devices'] == 1 and w['t'] == 3
    # The all-reduce gives every worker the same averaged gradient: identical updates.
    for a, b, name in zip(results[0]['params'], results[1]['params'], results[0]['names']):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(results[0]['costs'], results[1]['costs'])

    assert results[0]['names'] == [p.name for p in model.params]
    np.testing.assert_allclose(results[0]['costs'], costs, rtol=1e-5)
    assert_params_close(model.params, results[0]['params'])
    assert max(np.abs(p.numpy() - a).max() for p, a in zip(model.params, arrays)) > 1e-4  # it did move
