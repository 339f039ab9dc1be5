"""engine/memory.py: the parameter count, the memory estimate's formula, the smallest --accum_steps that fits, the
size parser, the FLOP count and the GPU table, each against a hand computation written out here."""
import pytest

from engine import memory
from engine.memory import Estimate


def test_n_params_of_gpt1():
    # GPT-1 as published: 40,478 token rows + 512 positions, 768 wide, 12 blocks: the paper's "117M"
    assert memory.n_params(40478 + 512, 768, 12, clf=False) == 116_534_784
    # by hand for C = 2, one block: we 5 x 2, c_attn 2x6 + 6, c_proj 2x2 + 2, c_fc 2x8 + 8, c_proj 8x2 + 2, 2 LNs 8
    assert memory.n_params(5, 2, 1, clf=False) == 10 + 18 + 6 + 24 + 18 + 8
    assert memory.n_params(5, 2, 1, n_out=3) == 10 + 18 + 6 + 24 + 18 + 8 + 2 * 3 + 3


# A small configuration computed by hand: P 1000 parameters, C 8, H 2, rows 2 of length 4 (N 8), one block,
# `we` 20 rows, the LM head over 16 rows on every position (K 8), float32.
P, C, H, R, L, N, W, V = 1000, 8, 2, 2, 4, 8, 20, 16
KIB = 4


def test_estimate_one_part_by_hand():
    e = memory.estimate(P, n_layer=1, n_embd=C, n_head=H, rows=R, length=L, we_rows=W, lm_rows=V, baseline=7)
    assert e.baseline == 7
    assert e.weights == 4000 and e.adam == 8000
    # the backward's start: the block's arrays: 16 of N x C (8 x 8 = 64 floats) and 4 of R x H x L x L (64 floats)
    block = 16 * 64 * 4 + 4 * 64 * 4
    lm = 3 * 8 * 16 * 4            # logits, the cross-entropy's gradient, the logits' gradient: 3 of K x V
    we = 3 * 20 * 8 * 4            # `we`'s dropout mask and dropped copy, and its dense gradient: 3 of W x C
    activation_phase = block + lm + we
    update_phase = 2 * 4000        # the gradients and their clipped copy
    assert e.activations == block and e.lm_head == lm and e.embedding == we
    assert e.grads == 0 and activation_phase > update_phase
    assert e.total == 7 + 4000 + 8000 + activation_phase == 7 + 4000 + 8000 + 8576
    assert memory.estimate(P, 1, C, H, R, L, W, V).baseline == memory.TF_BASELINE_BYTES + memory.TRACE_BYTES


def test_estimate_update_phase_when_it_is_larger():
    big = 10 ** 8
    e = memory.estimate(big, n_layer=1, n_embd=C, n_head=H, rows=R, length=L, we_rows=W, lm_rows=V, baseline=0)
    assert e.total == 3 * 4 * big + 2 * 4 * big  # weights, Adam; the gradients and their clipped copy
    assert e.grads == 2 * 4 * big and e.activations == e.lm_head == e.embedding == 0
    no_clip = memory.estimate(big, n_layer=1, n_embd=C, n_head=H, rows=R, length=L, we_rows=W, lm_rows=V,
                              baseline=0, clip=False)
    assert no_clip.total == 3 * 4 * big + 4 * big
    parts = memory.estimate(big, 1, C, H, R, L, W, V, n_parts=2, baseline=0)
    assert parts.total == 3 * 4 * big + 3 * 4 * big  # and the running sum over the parts


def test_estimate_parts_overlap_in_the_loop():
    one = memory.estimate(P, 1, C, H, R, L, W, V, n_parts=1, baseline=0)
    two = memory.estimate(P, 1, C, H, R, L, W, V, n_parts=2, baseline=0)
    four = memory.estimate(P, 1, C, H, R, L, W, V, n_parts=4, baseline=0)
    part = one.activations + one.lm_head + one.embedding
    # several parts: the gradients' running sum (P) and the next part's arrays started while one part ends
    assert part == 8576 and one.total == 4000 + 8000 + 8576
    assert two.total - one.total == 2 * 4 * P + memory.PART_OVERLAP * part
    assert four.total == two.total
    serial = memory.estimate(P, 1, C, H, R, L, W, V, n_parts=4, baseline=0, overlap=0)
    assert serial.total == one.total + 2 * 4 * P


def test_estimate_evaluation():
    e = memory.estimate(P, 1, C, H, R, L, W, V, train=False, baseline=0)
    assert e.adam == 0 and e.grads == 0 and e.embedding == 0
    assert e.activations == 2 * 64 * 4 + 2 * 64 * 4 and e.lm_head == 8 * 16 * 4


def test_line_and_parts():
    e = Estimate(1e9, 2e9, 0, 0, 0, 0, 0)
    assert e.total == 3e9 and e.parts()['weights'] == 2e9
    assert e.line().startswith('estimated peak memory per device 3.0 GB (baseline 1.00, weights 2.00 GB)')


def test_smallest_accum_steps():
    sizes = {1: 100, 2: 60, 4: 40, 8: 30}
    assert memory.smallest_accum_steps(100, 8, lambda d: Estimate(sizes[d], 0, 0, 0, 0, 0, 0)) == 1
    assert memory.smallest_accum_steps(59, 8, lambda d: Estimate(sizes[d], 0, 0, 0, 0, 0, 0)) == 4
    assert memory.smallest_accum_steps(29, 8, lambda d: Estimate(sizes[d], 0, 0, 0, 0, 0, 0)) is None
    assert memory.divisors(12) == [1, 2, 3, 4, 6, 12]
    seen = []
    memory.smallest_accum_steps(1, 6, lambda d: seen.append(d) or Estimate(10, 0, 0, 0, 0, 0, 0))
    assert seen == [1, 2, 3, 6]  # only divisors of n_batch


@pytest.mark.parametrize('text, n', [('8GB', 8 * 10 ** 9), ('8GiB', 8 * 2 ** 30), ('500MB', 500 * 10 ** 6),
                                     ('1.5 GB', 1_500_000_000), ('512mib', 512 * 2 ** 20), ('123', 123),
                                     (' 2 TB ', 2 * 10 ** 12), ('.5GB', 500_000_000)])
def test_parse_size(text, n):
    assert memory.parse_size(text) == n


@pytest.mark.parametrize('text', ['', 'GB', '8 gigs', '-1GB', '0GB', '8GB8', '1e9', 'eight GB', '8 G B', None])
def test_parse_size_bad_input(text):
    with pytest.raises(ValueError, match='8GB'):
        memory.parse_size(text)


def test_update_flops_by_hand():
    # one block of C 2 over 3 positions in rows of length 3, the LM head over 5 rows on 2 positions:
    # forward 2 * 12 * 4 * 3 (block matmuls) + 2 * 2 * 3 * 2 * 3 (scores and weighted sum) + 2 * 5 * 2 * 2 (LM)
    forward = 288 + 72 + 40
    assert memory.update_flops(1, 2, 3, 3, 2, 5, train=False) == forward
    assert memory.update_flops(1, 2, 3, 3, 2, 5) == 3 * forward
    # GPT-1 pre-training, 64 x 512 tokens: about 6 x 117M x 32,768 plus attention
    f = memory.update_flops(12, 768, 512, 64 * 512, 64 * 512, 40478)
    assert 6 * 116.5e6 * 32768 < f < 1.1 * 6 * 116.5e6 * 32768
    assert memory.update_seconds(2e12, 1e12) == 2


def test_gpu_peak_table():
    tflops, source = memory.gpu_peak('NVIDIA A100-SXM4-80GB')
    assert tflops == 19.5 and 'spec' in source and 'not measured' in source
    assert memory.gpu_peak('NVIDIA A100-SXM4-80GB', 'tf32')[0] == 156.0
    assert memory.gpu_peak('NVIDIA H100 PCIe')[0] == 51.0 and memory.gpu_peak('NVIDIA H100 80GB HBM3')[0] == 67.0
    assert memory.gpu_peak('NVIDIA A10')[0] == 31.2 and memory.gpu_peak('NVIDIA L40') is None  # whole words
    assert memory.gpu_peak('NVIDIA L4')[0] == 30.3 and memory.gpu_peak('NVIDIA L40S')[0] == 91.6
    assert memory.gpu_peak('Tesla V100-SXM2-16GB', 'bf16') is None
    assert memory.gpu_peak('Some Future GPU') is None


def test_update_time():
    seconds, what = memory.update_time(38e9)
    assert seconds == pytest.approx(1.0) and 'measured' in what
    seconds, what = memory.update_time(19.5e12, 'NVIDIA A100-PCIE-40GB')
    assert seconds == pytest.approx(1.0) and what.startswith('at least') and 'spec figure' in what
    assert memory.update_time(1e12, 'NVIDIA A100-PCIE-40GB', 'tf32')[0] == pytest.approx(1e12 / 156e12)
    seconds, what = memory.update_time(120e9, cpu_rate=60e9)
    assert seconds == 2 and what == 'at least: at the 60 GFLOP/s of a matmul on this CPU now (measured)'
    assert memory.measure_cpu_rate(64, 64, 64, repeats=2) > 1e6
    assert memory.update_time(1e12, 'Unknown GPU') == (None, 'no peak rate known for Unknown GPU at --precision fp32')


def test_run_figures_match_the_measured_configurations():
    """The shapes bench/memory_check.py measured, through the run-level functions."""
    main = memory.finetune_figures(40478, 3, 77, 768, 12, 12, rows=8, length=128, n_towers=4)
    assert main.estimate.total == memory.estimate(memory.n_params(40558, 768, 12), 12, 768, 12, 8, 128, 40558,
                                                  40558, n_parts=4).total
    assert main.flops == memory.update_flops(12, 768, 128, 4 * 1024, 4 * 1024, 40558)
    two_gpus = memory.finetune_figures(40478, 3, 77, 768, 12, 12, 8, 128, n_towers=4, n_devices=4, baseline=0)
    assert two_gpus.estimate.baseline == 0 and two_gpus.estimate.grads == 0  # one tower each: one part
    pre = memory.pretrain_figures(40478, 512, 768, 12, 12, n_batch=2)
    assert pre.estimate.total == memory.estimate(116_534_784, 12, 768, 12, 2, 512, 40990, 40478,
                                                 lm_positions=2 * 511).total


def test_dry_run_lines():
    figures = memory.RunFigures(Estimate(0, 10 * 10 ** 9, 0, 0, 0, 0, 0), 38e9)
    lines = memory.dry_run_lines(figures)
    assert lines[0].startswith('estimated peak memory per device 10.0 GB')
    assert lines[1] == 'an update: 0.04 TFLOP, 1 s at the 38 GFLOP/s an update reached on a 2-core CPU here (measured)'
    assert len(memory.dry_run_lines(figures, memory_bytes=20e9)) == 2
    at = {1: 10e9, 2: 9e9, 4: 7e9, 8: 6e9}
    lines = memory.dry_run_lines(figures, memory_bytes=8e9, n_batch=8,
                                 figures_at=lambda d: memory.RunFigures(Estimate(at[d], 0, 0, 0, 0, 0, 0), 1))
    assert lines[2] == 'more than the 8.0 GB available: --accum_steps 4 fits (estimated)'
    lines = memory.dry_run_lines(figures, memory_bytes=1e9, n_batch=8,
                                 figures_at=lambda d: memory.RunFigures(Estimate(at[d], 0, 0, 0, 0, 0, 0), 1))
    assert 'at every --accum_steps' in lines[2]
    assert 'no peak rate known' in memory.dry_run_lines(figures, 'Mystery GPU')[1]
