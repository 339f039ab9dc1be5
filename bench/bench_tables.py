"""bench.py's tables: the training updates, the op profile, the agreement with the original graph, the evaluation
batches and the memory, each with the lines that say how to read it. The first of the `names` given to a table is
the original graph's row, the baseline of its ratios (the second, the padded path's, is the training table's
other baseline)."""
import os
import statistics
import time

import numpy as np

from bench_harness import N_WARMUP, fmt, profile_table, ratio, table


def training_table(s, args, names, timings, mm_rate, mm_rows):
    """The training updates' table (timings: bench.training_rounds'); mm_rate: the GFLOP/s of the model's matmuls
    alone at mm_rows rows and of the 2048x2048 matmul, a pair."""
    med = statistics.median
    original, padded = names[:2]
    firsts = {n: med(timings[n]['first']) for n in names if isinstance(timings.get(n), dict)}
    seens = {n: med(timings[n]['seen']) for n in names if isinstance(timings.get(n), dict)}
    rows = []
    for name in names:
        r = timings[name]
        if isinstance(r, str):
            rows.append([name, r])
            continue
        first, seen = firsts[name], seens[name]
        executed = med([f / t for f, t in zip(r['executed'], r['seen'])]) / 1e9
        useful = med([f / t for f, t in zip(r['useful'], r['first'])]) / 1e9
        rows.append([name, f'{first:.2f}', ratio(firsts.get(original), first), ratio(firsts.get(padded), first),
                     f"{med(r['cpu_first']):.2f}", f"{med([t / f for t, f in zip(r['tok'], r['first'])]):.0f}",
                     f'{seen:.2f}', ratio(seens.get(original), seen), ratio(seens.get(padded), seen),
                     f"{r['warm'][0]:.1f}", str(r['traces']), ','.join(str(T) for T in r['Ts']),
                     f'{useful:.1f}', fmt(mm_rate[0] and 100 * useful / mm_rate[0], '.0f') + '%', f'{executed:.1f}',
                     fmt(mm_rate[0] and 100 * executed / mm_rate[0], '.0f') + '%'])
    print(f'TRAINING UPDATE (global batch {s.nbt} = {args.n_gpu} towers of {args.n_batch}; dropout on; median over '
          f'{args.steps} updates after {N_WARMUP} warm-up; the variants interleaved)')
    table(['variant', 's/update', 'vs orig', 'vs padded', 'CPU s', 'real tok/s', 's/upd seen', 'vs orig',
           'vs padded', '1st upd s', 'retraces', 'T (RxL packed)', 'useful GF/s', 'of matmul', 'exec GF/s',
           'of matmul'], rows)
    print(f"{original}: the original's train graph (bench_original.py: its model, towers and adam under "
          "tf.compat.v1, in a Session), fed")
    print("  the same weights and padded batches. vs orig, vs padded: speed-up over it and over --padded (time "
          "ratio).")
    print("s/update: median wall time of the timed updates, each batch seen for the first time (a new shape's "
          "trace/compile included).")
    print("CPU s: process CPU time (all threads) of the same updates: less sensitive than wall time to other "
          "processes' load.")
    print("retraces: new traces of the train step during the timed updates; 's/upd seen' times the same batches "
          "again once their")
    print("  shapes are traced (equals s/update when nothing was retraced; always run for xla, which compiles each "
          "new shape")
    print("  without a retrace). 1st upd s: the first warm-up update (trace + compile).")
    print("Rounds: update r of every variant runs before update r + 1 of any (order rotated), so outside load "
          "falls on all alike.")
    print("real tok/s: real tokens / s. useful GF/s: FLOPs of the real tokens only (each sequence at its own "
          "length, the LM head on")
    print("  its predicted tokens) / 's/update'; exec GF/s: FLOPs of the shapes computed (padding and empty rows "
          "included; LM head on")
    print("  every position unless masked) / 's/upd seen'. 3x forward, forward = 24 L C^2 + 4 L T C per token + 2 C "
          "V per predicted")
    print("  token (T: the row's length). of matmul: over the rate below. Packed: each tower's sequences in R rows "
          "of L (inputs.Packing;")
    print(f"  this run's: {s.packing.in_words()}, {100 * s.packing.real:.0f}% real tokens over "
          f"train.py's 3 epochs, trimmed batches {100 * s.packing.trimmed:.0f}%).")
    print(f"matmul rate, timed in the same rounds (median): {fmt(mm_rate[0], '.1f')} GFLOP/s for a block's "
          f"training matmuls at {mm_rows} rows")
    print(f"  ((R, C) x (C, 3C), (C, C), (C, 4C), (4C, C), each forward, dy W^T and x^T dy; R = the positions "
          f"the default computes per update), {fmt(mm_rate[1], '.1f')} GFLOP/s at 2048x2048.")
    print()


def profile_section(profiles):
    """The op profile of one update of each path (profiles: name -> bench_harness.op_profile's result)."""
    print(f'PROFILE OF ONE UPDATE (batch {N_WARMUP + 1} again, after the timed rounds; TensorFlow\'s profiler)')
    profile_table(profiles)
    print("Seconds of the ops of each type (count in brackets), summed over the threads that ran them. "
          "A function's ops are")
    print("counted, not the call; an XLA program (the default's gelu, LayerNorm and Adam kernels; --xla's "
          "whole step) counts as one op.")
    print("Under a gradient scope: TF2's 'gradient_tape/...', TF1's 'gradients/...'.")
    print()


def agreement_table(names, checks):
    """The dropout-off agreement of each variant with the original graph (checks: bench.agreement_checks')."""
    ref = checks[names[0]] if isinstance(checks.get(names[0]), dict) else None
    rows = []
    for name in names:
        r = checks.get(name)
        if isinstance(r, str):
            rows.append([name, r])
        elif name == names[0]:
            rows.append([name, str(r['T']), f"{r['cost']:.6f}", 'reference', '', '', '', ''])
        elif ref is None:
            rows.append([name, str(r['T']), f"{r['cost']:.6f}", 'no reference'])
        else:
            rows.append([name, str(r['T']), f"{r['cost']:.6f}", f"{r['d_clf']:.2e}", f"{r['d_lm']:.2e}",
                         f"{r['d_cost']:.2e}", f"{r['d_p']:.2e}", str(r['n_flip'])])
    print("AGREEMENT WITH THE ORIGINAL GRAPH (batch 0, same weights, dropout off: every pdrop 0)")
    table(['variant', 'T', 'clf cost', 'max|dclf_loss|', 'max|dlm_loss|', '|dcost|', 'max|dp| 1 upd',
           '#p off>upd/2'], rows)
    print("dclf_loss, dlm_loss: the forward losses (train=False; the variant's masked_lm / XLA) at the loaded "
          "weights; dcost, dp: the")
    print("variant's train step from the same weights and a fresh Adam, one update."
          + (f" One update of the original moves a parameter by up to {ref['upd']:.2e};" if ref else ''))
    print("Adam's first update is about lr * sign(g), so a gradient near 0 whose sign flips by rounding moves its "
          "parameter by up to")
    print("twice that: '#p off>upd/2' counts parameters that differ by more than half the largest update.")
    if ref:
        print(f"Scale: the original's clf_losses lie in [{ref['clf'].min():.6f}, {ref['clf'].max():.6f}], its "
              f"lm_losses in [{ref['lm'].min():.4f}, {ref['lm'].max():.4f}].")
    print()


def evaluation_table(s, args, names, results):
    """The evaluation batches' table (results: bench.evaluation_rounds')."""
    med = statistics.median
    original = names[0]
    eref = results.get(original) if isinstance(results.get(original), dict) else None
    first = {n: med(results[n]['first']) for n in names if isinstance(results.get(n), dict)}
    seen = {n: med(results[n]['seen']) for n in names if isinstance(results.get(n), dict)}
    rows = []
    for name in names:
        r = results.get(name, 'not run')
        if isinstance(r, str):
            rows.append([name, r])
            continue
        d = float(np.max(np.abs(r['logits'] - eref['logits']))) if eref else None
        rows.append([name, f'{first[name]:.3f}', ratio(first.get(original), first[name]),
                     f"{med(r['cpu_first']):.3f}", f'{seen[name]:.3f}', ratio(seen.get(original), seen[name]),
                     f"{med(r['cpu_seen']):.3f}", f"{r['warm'][0]:.1f}",
                     'reference' if name == original else fmt(d, '.2e')])
    print(f'EVALUATION BATCH ({s.nbt} examples of the valid split, no dropout; median over {args.steps} batches '
          f'after {N_WARMUP} warm-up; interleaved)')
    table(['variant', 's/batch', 'vs orig', 'CPU s', 's/batch 2nd', 'vs orig', 'CPU s', '1st batch s',
           'max|dclf_logits|'], rows)
    print(f"{original}: the original's mgpu_predict graph, fetching the logits and the mean classifier loss as "
          "its evaluation did.")
    pk = s.eval_packings[id(s.valid_packed)]
    print(f'padded: inputs.pad_batch padded to n_ctx ({s.nbt} x 2 sequences of n_ctx {s.n_ctx}, the original\'s '
          'arrays); trimmed: the same arrays cut to the batch\'s longest sequence;')
    print(f'one shape: inputs.eval_batch (each example packed whole as one unit, the story then both endings, '
          f'several a row, in the split\'s one shape: {pk.rows} rows of {pk.length}).')
    print("max|dclf_logits| over all the batches scored, against the original graph. 's/batch 2nd': "
          "the same batches again.")
    if eref:
        lg = eref['logits']
        print(f"Scale: the reference logits have max |clf_logits| {np.max(np.abs(lg)):.3e} and max |logit 1 - logit 2| "
              f"{np.max(np.abs(lg[:, 0] - lg[:, 1])):.3e}.")
    print()


def memory_table(s, phases, t_start):
    """Peak RSS and load average after each phase (phases: bench_harness.Phases), and the total time."""
    n_params = sum(a.size for a in s.init)
    table(['after phase', 'peak RSS GB', 'load avg 1/5 min'],
          [[name, fmt(rss, '.2f') if rss is not None else '', '%.1f / %.1f' % load[:2] if load else '']
           for name, rss, load in phases.rows])
    print("peak RSS: resource.getrusage(RUSAGE_SELF).ru_maxrss, cumulative (the largest so far, not the phase's "
          "own). Training holds")
    print(f"one dropout model and one Adam per variant ({n_params / 1e6:.1f}M parameters: {n_params * 4 / 1e9:.2f} GB "
          f"a model, {n_params * 8 / 1e9:.2f} GB an Adam) plus the initial arrays;")
    print("the original graph holds its own copy and Adam; the checks a dropout-off model and the original's "
          "parameters after one update. Load average: "
          f"os.getloadavg() on {os.cpu_count()} CPUs.")
    print()
    print(f'total time {time.perf_counter() - t_start:.0f} s')



def targets_table(timings, evaluations, mm_rate, rss, original, default, eval_default, trimmed, packs):
    """Issue 23's targets against this run's figures: the default's training update and evaluation batch against
    the original graph (first pass), its useful GFLOP/s against the matmul rate of the same rounds, and its
    updates' peak RSS against the trimmed path's (the default before packing)."""
    med = statistics.median

    def speedup(results, name):
        ok = isinstance(results.get(original), dict) and isinstance(results.get(name), dict)
        return med(results[original]['first']) / med(results[name]['first']) if ok else None

    r = timings.get(default)
    useful = (med([f / t for f, t in zip(r['useful'], r['first'])]) / 1e9 if isinstance(r, dict) else None)
    share = useful and mm_rate[0] and useful / mm_rate[0]
    peak = {n: rss[n]['peak'] if isinstance(rss.get(n), dict) else None for n in (default, trimmed)}
    train_x, eval_x = speedup(timings, default), speedup(evaluations, eval_default)
    rows = [['training update vs the original graph', '>= 1.50x', fmt(train_x, '.2f') + 'x'],
            ['evaluation batch vs the original graph', '>= 2.00x', fmt(eval_x, '.2f') + 'x'],
            ['useful GFLOP/s of the matmul rate', '>= 75%', fmt(share and 100 * share, '.0f') + '%'],
            ['peak RSS of the updates (GB)', f"<= {fmt(peak[trimmed], '.2f')} (trimmed)", fmt(peak[default], '.2f')]]
    met = [None if x is None else x >= t for x, t in [(train_x, 1.5), (eval_x, 2.), (share, .75)]]
    met.append(None if None in peak.values() else peak[default] <= peak[trimmed])
    print(f"ISSUE 23'S TARGETS (the default: '{default}' and '{eval_default}'; first pass)")
    table(['target', 'wanted', 'measured', 'met'], [row + ['n/a' if m is None else 'yes' if m else 'no']
                                                    for row, m in zip(rows, met)])
    if not packs:
        print("This run's batches: train.py would not pack them (cutting each to its longest computes less, "
              "inputs.packing_plan); the default row above is the packed path all the same.")
        print()
