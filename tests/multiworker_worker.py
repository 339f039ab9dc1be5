"""One worker of the two-process MultiWorkerMirroredStrategy test (tests/test_multiworker.py); run as
    TF_CONFIG=... CUDA_VISIBLE_DEVICES= python tests/multiworker_worker.py OUT.npz
It builds the tiny model of tests/test_train.py with the same parameters, runs 3 updates of opt.make_update
over train.train_batches (global batch 4, split over the replicas of all workers) and saves the parameters, the
update counter and the number of replicas in OUT.npz. A fresh process: it does not import conftest, so it sees one
CPU device."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ['CUDA_VISIBLE_DEVICES'] = ''

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from engine import loop  # noqa: E402
from opt import Adam, warmup_linear  # noqa: E402
from tests.test_train import HP, batches, new_model, random_arrays  # noqa: E402
from tests.fixtures import finetune_step, train_batches  # noqa: E402

N_STEPS, N_BATCH = 3, 4


def main(out_path):
    if 'TF_CONFIG' not in os.environ:
        sys.exit('error: TF_CONFIG is not set: this script is one worker of a cluster')
    strategy = loop.make_strategy()  # first: it starts this worker's server before any other TensorFlow work
    with strategy.scope():
        model = new_model()
        opt = Adam(model.params, schedule=warmup_linear, **HP)
    model.assign(random_arrays(model))
    step = finetune_step(model, opt, strategy, lm_coef=0.5, seed=0)
    costs = [float(step(*batch)[0]) for batch in train_batches(strategy, *batches(N_STEPS, N_BATCH), N_BATCH)]
    np.savez(out_path, *[p.numpy() for p in model.params], names=np.array([p.name for p in model.params]),
             costs=np.array(costs), t=opt.t.numpy(), replicas=strategy.num_replicas_in_sync,
             multi_worker=isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
             devices=len(strategy.extended.worker_devices))  # this worker's own replicas


if __name__ == '__main__':
    main(sys.argv[1])
