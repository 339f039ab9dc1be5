"""The benchmarks' shared pieces (bench_harness, bench_setup) and the programs' command lines: the FLOP counts
against the model's matmuls listed one by one, the interleaved rounds' order and their second pass, a failure kept
as a result, the comparison's batches against the original's arrays (tests/reference.py), and bench.py handing
--masks and --mnli_pipeline over to their programs before TensorFlow is imported. Nothing here is timed."""
import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'bench'))  # the benchmarks' modules import each other by name from bench/

import bench_harness  # noqa: E402
import bench_setup  # noqa: E402
from bench_harness import Failures, batch_flops, forward_flops, interleaved  # noqa: E402
from engine.kernels import DEFAULT, PADDED, TRIMMED, XLA  # noqa: E402
from tests.fixtures import write_rocstories  # noqa: E402
from tests.reference import context_length, pack_roc, transform_roc  # noqa: E402
from tests.test_newcomer import imported, run_script  # noqa: E402
from text_utils import Vocab  # noqa: E402
from utils import round_up  # noqa: E402


def matmul_flops(T, n_layer, n_embd, n_head, lm_positions, n_lm):
    """2 m k n summed over every matmul of the forward pass of one sequence of T tokens, listed as the model
    computes them (model.attn, model.mlp), plus the LM head's h . we^T at lm_positions positions."""
    C, d = n_embd, n_embd // n_head
    per_layer = [(T, C, 3 * C),                    # c_attn
                 *[(T, d, T)] * n_head,            # q k^T, one head at a time
                 *[(T, T, d)] * n_head,            # w v
                 (T, C, C),                        # c_proj
                 (T, C, 4 * C), (T, 4 * C, C)]     # c_fc, mlp's c_proj
    return n_layer * sum(2 * m * k * n for m, k, n in per_layer) + 2 * lm_positions * C * n_lm


def test_forward_flops_count_every_matmul_of_the_model():
    n_layer, n_embd, n_head, n_lm = 3, 16, 4, 50
    lengths = [5, 9, 2]
    want = sum(matmul_flops(T, n_layer, n_embd, n_head, 0, n_lm) for T in lengths) + 2 * 7 * n_embd * n_lm
    assert forward_flops(lengths, None, 7, n_layer, n_embd, n_lm) == want
    want = len(lengths) * matmul_flops(12, n_layer, n_embd, n_head, 0, n_lm) + 2 * 30 * n_embd * n_lm
    assert forward_flops(lengths, 12, 30, n_layer, n_embd, n_lm) == want


def test_batch_flops_count_the_padding_as_executed_and_the_real_tokens_as_useful():
    n_layer, n_embd, n_head, n_lm = 2, 8, 2, 30
    lengths = np.array([[4, 6], [3, 2]])                                   # 2 examples of 2 sequences
    M = (np.arange(7) < lengths[..., None]).astype(np.float32)             # (2, 2, 7)
    useful = 3 * sum(matmul_flops(L, n_layer, n_embd, n_head, L - 1, n_lm) for L in lengths.ravel())
    masked = 3 * sum(matmul_flops(7, n_layer, n_embd, n_head, L - 1, n_lm) for L in lengths.ravel())
    padded = 3 * 4 * matmul_flops(7, n_layer, n_embd, n_head, 6, n_lm)     # the LM head at every position
    assert batch_flops(M, True, (n_layer, n_embd, n_lm)) == (7, 15., useful, masked)
    assert batch_flops(M, False, (n_layer, n_embd, n_lm)) == (7, 15., useful, padded)


def test_packed_batch_flops_count_every_row_as_executed_and_each_sequence_as_useful():
    n_layer, n_embd, n_head, n_lm = 2, 8, 2, 30
    seg = np.array([[1] * 4 + [2] * 6 + [0] * 2, [3] * 3 + [0] * 9, [0] * 12])  # rows of 12: 4 + 6, 3, empty
    useful = 3 * sum(matmul_flops(L, n_layer, n_embd, n_head, L - 1, n_lm) for L in (4, 6, 3))
    masked = 3 * (3 * matmul_flops(12, n_layer, n_embd, n_head, 0, n_lm) + 2 * (3 + 5 + 2) * n_embd * n_lm)
    every = 3 * 3 * matmul_flops(12, n_layer, n_embd, n_head, 11, n_lm)   # the LM head at every position
    assert bench_harness.packed_batch_flops(seg, True, (n_layer, n_embd, n_lm)) == ('3x12', 13., useful, masked)
    assert bench_harness.packed_batch_flops(seg, False, (n_layer, n_embd, n_lm)) == ('3x12', 13., useful, every)


def fake_jobs(calls):
    """Four jobs recording (name, batch) in `calls`: 'a' traces again on its first timed batch, 'b' never, 'c' asks
    for a second pass, 'd' raises on its first timed batch."""
    traces = {'a': 1}

    def call(name):
        def run(i):
            calls.append((name, i))
            if name == 'a' and i == bench_harness.N_WARMUP:
                traces['a'] += 1
            if name == 'd' and i == bench_harness.N_WARMUP:
                raise ValueError('no such batch')
        return run

    jobs = {n: dict(call=call(n)) for n in 'abcd'}
    jobs['a']['traces'] = lambda: traces['a']
    jobs['b']['traces'] = lambda: 1
    jobs['c']['always_again'] = True
    return jobs


def test_interleaved_rotates_the_order_and_times_the_retraced_jobs_again(capsys):
    calls, failures = [], Failures()
    jobs = fake_jobs(calls)
    n_steps, w = 2, bench_harness.N_WARMUP
    out = interleaved(jobs, n_steps, 'train', 0., failures)
    order = ['abcd', 'bcda', 'cdab', 'dabc', 'abcd', 'bcda'][:w + n_steps]
    want = [(n, r) for r, names in enumerate(order) for n in names if not (n == 'd' and r > w)]
    again = [(n, r) for r in range(w, w + n_steps) for n in (['a', 'c'] if r % 2 == 0 else ['c', 'a'])]
    assert calls == want + again
    assert out['a']['traces'] == 1 and out['b']['traces'] == 0
    assert len(out['a']['first']) == len(out['a']['seen']) == len(out['c']['seen']) == n_steps
    assert len(out['b']['warm']) == w and out['b']['seen'] is out['b']['first']
    assert out['d'] == 'failed: ValueError: no such batch'
    assert [what for what, _ in failures.items] == ['train d'] and 'no such batch' in failures.items[0][1]
    failures.report()
    assert '# error in train d:' in capsys.readouterr().out


def test_the_comparisons_batches_are_the_originals_arrays(tmp_path):
    """bench_setup's batches, through the registry and finetuning/inputs.py: padded to n_ctx for the original graph
    and --padded (transform_roc's arrays, n_ctx the longest input of any split), cut to the batch's longest on the
    trimmed paths, each tower packed into one of the run's shapes on the packed ones (the same tokens); for evaluation
    padded or cut likewise (transform_roc's arrays of the valid split), or on the fixed_eval paths each example
    packed whole (pack_roc's tokens: the story once, then both endings) into rows of the split's one shape."""
    write_rocstories(str(tmp_path / 'data'), n_val=380, n_test=12)  # the original keeps 374 for validation
    args = argparse.Namespace(data_dir=str(tmp_path / 'data'), model_dir=None, quick=True, n_layer=None, n_batch=2,
                              n_gpu=1, steps=1)
    s, model = bench_setup.setup(args, str(tmp_path), bench_harness.Phases())
    fields = {name: [f.tolist() for f in split.examples.texts] for name, split in [('tr', s.train), ('va', s.valid)]}
    max_len = 512 // 2 - 2
    assert s.n_ctx >= context_length(*fields['tr'], max_len) and s.n_ctx >= context_length(*fields['va'], max_len)
    assert s.hp()['clf_token'] == Vocab(s.n_vocab).classify and s.n_lm == model.we.shape[0]
    X, M = transform_roc(*fields['tr'], s.n_vocab, s.n_ctx, max_len)
    for i in range(s.n_need):
        rows = slice(i * s.nbt, (i + 1) * s.nbt)
        got = s.batch(s.train, PADDED, i)
        np.testing.assert_array_equal(got[0], X[rows])
        np.testing.assert_array_equal(got[1], M[rows])
        np.testing.assert_array_equal(got[2], s.train.Y[rows])
        T = int(M[rows].sum(-1).max())
        for path in [TRIMMED, XLA._replace(packed_train=False)]:
            got = s.batch(s.train, path, i)
            assert got[0].shape[2] == min(round_up(T, path.multiple), s.n_ctx)
            np.testing.assert_array_equal(got[0], X[rows, :, :got[0].shape[2]])
        for path in [DEFAULT, XLA]:
            Xk, seg, clf_at, Y = s.batch(s.train, path, i)
            assert (Xk.shape[0] // s.n_gpu, Xk.shape[1]) in s.packing.shapes and Xk.shape[0] % s.n_gpu == 0
            assert (Y == s.train.Y[rows]).all()
            np.testing.assert_array_equal(np.sort(Xk[..., 0][seg > 0]), np.sort(X[rows][..., 0][M[rows] > 0]))
            np.testing.assert_array_equal(Xk.reshape(-1, 2)[clf_at.ravel(), 0], Vocab(s.n_vocab).classify)
    Xv, Mv = transform_roc(*fields['va'], s.n_vocab, s.n_ctx, max_len)
    Xp, seg, clf_idx = pack_roc(*fields['va'], s.n_vocab, max_len)
    for i in range(s.n_need):
        rows = slice(i * s.nbt, (i + 1) * s.nbt)
        T = int(Mv[rows].sum(-1).max())
        for path, length in [(PADDED, s.n_ctx), (TRIMMED, T), (TRIMMED._replace(multiple=8), round_up(T, 8))]:
            got = s.batch(s.valid, path, i)  # the evaluation's padded arrays, to n_ctx or cut
            assert got[0].shape[2] == min(length, s.n_ctx)
            np.testing.assert_array_equal(got[0], Xv[rows, :, :got[0].shape[2]])
            np.testing.assert_array_equal(got[1], Mv[rows, :, :got[0].shape[2]])
            np.testing.assert_array_equal(got[2], s.valid.Y[rows])
        for path in [DEFAULT, XLA]:  # the examples whole, several a row, in the split's one shape
            Xr, seg_r, clf_at, _ = s.batch(s.valid_packed, path, i)
            packing = s.eval_packings[id(s.valid_packed)]
            assert Xr.shape == (packing.rows, packing.length, 2)
            np.testing.assert_array_equal(np.sort(Xr[..., 0][seg_r > 0]), np.sort(Xp[rows][..., 0][seg[rows] < 3]))
            np.testing.assert_array_equal(Xr.reshape(-1, 2)[clf_at.ravel(), 0], Vocab(s.n_vocab).classify)


@pytest.mark.parametrize('argv, program, flag', [(['bench/bench.py', '--masks', '--help'], 'bench_masks.py',
                                                  '--update_s'),
                                                 (['bench/bench.py', '--help', '--mnli_pipeline'], 'bench_pipeline.py',
                                                  '--quick'),
                                                 (['bench/bench.py', '--help'], 'bench.py', '--ablation')])
def test_bench_hands_masks_and_the_pipeline_over_to_their_programs_before_tensorflow(argv, program, flag):
    result = run_script(*argv)
    modules, _ = imported(result.stderr)
    assert result.returncode == 0 and f'usage: {program}' in result.stdout and flag in result.stdout
    assert 'argparse' in modules and 'tensorflow' not in modules
    if program == 'bench.py':  # its --help names the programs it hands over to
        assert 'bench_masks.py' in result.stdout and 'bench_pipeline.py' in result.stdout


def test_bench_refuses_a_flag_of_neither_program_and_two_hand_overs():
    result = run_script('bench/bench.py', '--masks', '--n_batch', '4')
    assert result.returncode == 2 and 'bench_masks.py: error: unrecognized arguments: --n_batch 4' in result.stderr
    result = run_script('bench/bench.py', '--masks', '--mnli_pipeline')
    assert result.returncode == 2 and result.stderr.splitlines()[-1].startswith('error: --masks and --mnli_pipeline')
