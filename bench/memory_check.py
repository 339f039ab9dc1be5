"""Peak resident memory of one training update, measured, against engine.memory's estimate.

Each configuration runs in its own child process (resource's ru_maxrss is a process's peak so far, so one process
cannot tell several configurations apart). The child imports TensorFlow and the model (its RSS then: the process
baseline), builds the project's Model and opt.Adam, makes opt.make_update with the run's objective
(model.finetune_objective on packed rows, or model.pretrain_objective) along the default path, feeds synthetic
batches of the run's shapes (every position a token: the most the LM head computes) and runs `--updates`
updates; it prints its peaks on one line that the parent reads. The parent prints estimate, measured and ratio.

    python bench/memory_check.py                 # every configuration (the full-size ones take minutes and GBs)
    python bench/memory_check.py --only tiny     # one of them
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a script in bench/: the project's modules (model, opt, engine) are the folder above

MARK = 'MEMORY_CHECK '

# name -> the run's shapes. main: train.py's default ROCStories job (4 towers of 8 examples x 2 choices, each
# tower packed into 8 rows of 128 tokens, n_ctx 77, the LM head over every row of `we`); pretrain: pretrain.py
# at full size with --n_batch 2 --n_ctx 512 (the LM head over the 40,478 token rows); tiny: a small model.
CONFIGS = {
    'main': dict(kind='finetune', n_vocab=40478, n_special=3, n_ctx=77, n_embd=768, n_head=12, n_layer=12,
                 towers=4, rows=8, length=128, seqs_per_row=2),
    'pretrain': dict(kind='pretrain', n_vocab=40478, n_special=0, n_ctx=512, n_embd=768, n_head=12, n_layer=12,
                     towers=1, rows=2, length=512),
    'main_1_tower': dict(kind='finetune', n_vocab=40478, n_special=3, n_ctx=77, n_embd=768, n_head=12, n_layer=12,
                         towers=1, rows=8, length=128, seqs_per_row=2),
    'main_serial': dict(kind='finetune', n_vocab=40478, n_special=3, n_ctx=77, n_embd=768, n_head=12, n_layer=12,
                        towers=4, rows=8, length=128, seqs_per_row=2, serial=True),
    'small': dict(kind='finetune', n_vocab=40478, n_special=3, n_ctx=77, n_embd=384, n_head=6, n_layer=6,
                  towers=2, rows=4, length=128, seqs_per_row=2),
    'pretrain_256': dict(kind='pretrain', n_vocab=40478, n_special=0, n_ctx=256, n_embd=768, n_head=12, n_layer=12,
                         towers=1, rows=4, length=256),
    'mid_2_parts': dict(kind='pretrain', n_vocab=40478, n_special=0, n_ctx=256, n_embd=512, n_head=8, n_layer=6,
                        towers=2, rows=2, length=256),
    'tiny': dict(kind='pretrain', n_vocab=1000, n_special=0, n_ctx=64, n_embd=64, n_head=4, n_layer=2,
                 towers=1, rows=8, length=64),
}


def peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(name, n_updates):
    """Build, run n_updates updates, print the peaks (bytes) after import, after the setup and after the updates."""
    import numpy as np
    import tensorflow as tf
    from engine.kernels import DEFAULT
    from model import Config, Model, finetune_objective, pretrain_objective
    from opt import Adam, make_update, warmup_linear
    baseline = peak_bytes()
    c = CONFIGS[name]
    V, S, n_ctx, L, R, P = c['n_vocab'], c['n_special'], c['n_ctx'], c['length'], c['rows'], c['towers']
    rng = np.random.default_rng(0)
    model = Model(Config(V, n_ctx, n_special=S, n_embd=c['n_embd'], n_head=c['n_head'], n_layer=c['n_layer'],
                         **({} if c['kind'] == 'finetune' else {'head': None})))
    params = model.params
    opt = Adam(params, lr=6.25e-5, schedule=warmup_linear, t_total=100, l2=0.01, max_grad_norm=1, fused=True)
    if c['kind'] == 'finetune':
        k = c['seqs_per_row']
        n = R * k // 2                                    # examples of 2 choices per tower
        seq_len = L // k
        t = np.tile(np.arange(seq_len), k)                # positions restart at each sequence
        t = np.minimum(t, n_ctx - 1)
        X = np.zeros((P * R, L, 2), np.int32)
        X[..., 0] = rng.integers(0, V, (P * R, L))
        X[..., 1] = V + S + t
        seg = np.tile(np.repeat(np.arange(k), seq_len)[None], (R, 1)) + 1 + k * np.arange(R)[:, None]
        seg = np.tile(seg, (P, 1)).astype(np.int32)
        s = np.arange(2 * n)                              # sequence s of a tower: row s // k, slot s % k
        clf_at = ((s // k) * L + (s % k) * seq_len + seq_len - 1).reshape(n, 2)
        clf_at = np.tile(clf_at, (P, 1)).astype(np.int32)
        Y = rng.integers(0, 2, P * n).astype(np.int32)
        batch = (X, seg, clf_at, Y)
        objective = finetune_objective(model, 0.5, DEFAULT)
    else:
        X = np.stack([rng.integers(0, V, (P * R, L)), np.broadcast_to(V + np.arange(L), (P * R, L))], -1)
        batch = (X.astype(np.int32), np.ones((P * R, L), np.float32))
        objective = pretrain_objective(model, V, DEFAULT)
    strategy = tf.distribute.get_strategy()
    if c.get('serial'):
        step = serial_train_step(objective, params, opt, P)
    else:
        step = make_update(objective, params, opt, strategy, 42, accum_steps=1, n_towers=P if P > 1 else None)
    setup = peak_bytes()
    times, peaks = [], []
    for _ in range(n_updates):
        start = time.perf_counter()
        cost, _, _ = step(*(tf.constant(x) for x in batch))
        float(cost)
        times.append(time.perf_counter() - start)
        peaks.append(peak_bytes())
    print(MARK + json.dumps(dict(baseline=baseline, setup=setup, peak=peak_bytes(), seconds=times, peaks=peaks)),
          flush=True)


def serial_train_step(objective, params, opt, n_parts, seed=42):
    """opt.make_update's update on one replica (no loss scale), its loop over the parts run one iteration
    at a time (parallel_iterations 1): a diagnosis of how much the loop's default overlap of iterations adds."""
    import tensorflow as tf

    @tf.function
    def step(*batch):
        update_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(opt.t, tf.int32)])
        sizes = [tf.shape(x)[0] // n_parts for x in batch]
        grads, cost = [tf.zeros_like(p) for p in params], 0.
        for k in tf.range(n_parts):
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            part = tuple(x[k * n:(k + 1) * n] for x, n in zip(batch, sizes))
            with tf.GradientTape() as tape:
                loss, c = objective(part, tf.random.experimental.stateless_fold_in(update_seed, k))
            g = [tf.convert_to_tensor(g) for g in tape.gradient(loss, params)]
            grads, cost = [a + b / n_parts for a, b in zip(grads, g)], cost + c / n_parts
        norm = tf.linalg.global_norm(grads)
        return cost, opt.apply(grads, norm), norm
    return step


def measure(name, n_updates, timeout=3600):
    done = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', name, '--updates', str(n_updates)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2')))
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if not lines:
        raise SystemExit(f'{name}: the child failed (exit status {done.returncode}): {done.stderr[-2000:]}')
    return json.loads(lines[-1][len(MARK):])


def estimate_of(name):
    from engine import memory
    c = CONFIGS[name]
    V = c['n_vocab'] + c['n_special'] + c['n_ctx']
    n_params = memory.n_params(V, c['n_embd'], c['n_layer'], clf=c['kind'] == 'finetune')
    return memory.estimate(n_params, n_layer=c['n_layer'], n_embd=c['n_embd'], n_head=c['n_head'], rows=c['rows'],
                           length=c['length'], we_rows=V, lm_rows=V if c['kind'] == 'finetune' else c['n_vocab'],
                           n_parts=c['towers'], train=True, overlap=0 if c.get('serial') else memory.PART_OVERLAP)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='*', default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument('--updates', type=int, default=3)
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.updates)
    gb = 1e9
    print(f'{"config":10} {"baseline GB":>12} {"measured GB":>12} {"estimate GB":>12} {"ratio":>6}  s/update')
    for name in args.only:
        m = measure(name, args.updates)
        est = estimate_of(name)
        print(f'{name:10} {m["baseline"] / gb:12.2f} {m["peak"] / gb:12.2f} {est.total / gb:12.2f} '
              f'{est.total / m["peak"]:6.2f}  {min(m["seconds"]):.2f}', flush=True)
        print(f'           estimate parts (GB): ' + ', '.join(f'{k} {v / gb:.2f}' for k, v in est.parts().items()),
              flush=True)


if __name__ == '__main__':
    main()
