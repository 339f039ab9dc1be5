"""Promises of the port's later stages that no test could fail before issue 32, each against the SPEC's rule
written out here: packing's choice of the row length of least work (SPEC.md "Packing"), and Figure 2 right's
normalisation by the SPEC's chance levels and states of the art ("Zero-shot")."""
import numpy as np
import pytest

from finetuning import inputs
from paper import results


def first_fit_rows(part, length):
    """Rows that first-fit decreasing needs for one part's sequence lengths: longest first (equal ones in their
    order), each into the first row with room for it."""
    space = []
    for n in sorted(part, reverse=True):
        for r, left in enumerate(space):
            if left >= n:
                space[r] -= n
                break
        else:
            space.append(length - n)
    return len(space)


def spec_work(rows, length, n_embd):
    """A layer's work over rows x length positions: 24 C^2 + 16 L C multiply-adds a position."""
    return rows * length * (24 * n_embd ** 2 + 16 * length * n_embd)


@pytest.mark.parametrize('n_embd', [8, 64, 768])
def test_packing_takes_the_row_length_whose_rows_cost_least(n_embd):
    """Of the row lengths from the longest sequence to 4 times it (multiples of 8, no longer than the fullest
    part), the one whose rows (those the part needing most needs) cost least; ties to the shorter."""
    rng = np.random.RandomState(n_embd)
    lengths = rng.randint(2, 16, size=(6, 10))
    packing = inputs.choose_packing(lengths, n_embd)
    longest, fullest = lengths.max(), lengths.sum(1).max()
    candidates = range(-(-longest // 8) * 8, -(-min(fullest, 4 * longest) // 8) * 8 + 1, 8)
    costs = {L: spec_work(max(first_fit_rows(part, L) for part in lengths), L, n_embd) for L in candidates}
    best = min(costs, key=lambda L: (costs[L], L))
    assert (packing.length, packing.rows) == (best, max(first_fit_rows(part, best) for part in lengths))


def test_packing_weighs_the_attention_as_the_spec_says_so_small_widths_prefer_shorter_rows():
    """The attention's 16 L C against the blocks' 24 C^2: for a narrow model the shortest rows win, for a wide
    one longer rows that waste fewer places."""
    lengths = np.array([[15, 9, 9, 8, 8, 7, 7, 3, 2, 2]])
    narrow, wide = inputs.choose_packing(lengths, 4), inputs.choose_packing(lengths, 768)
    assert narrow.length < wide.length
    for packing, n_embd in [(narrow, 4), (wide, 768)]:
        others = [spec_work(first_fit_rows(lengths[0], L), L, n_embd) for L in range(16, 64 + 1, 8)]
        assert spec_work(packing.rows, packing.length, n_embd) == min(others)


@pytest.mark.parametrize('n_embd', [8, 768])
def test_the_smaller_shapes_are_added_one_at_a_time_each_saving_the_most_work(n_embd):
    """The SPEC's rule for a run's several shapes: the shape of least work that holds every global batch, then,
    one at a time, the (rows, length) that some batch needs which saves the most work, each batch taking the
    cheapest shape it fits (ties: the shorter rows, then the fewer); three shapes at most."""
    rng = np.random.RandomState(n_embd + 1)
    n_batches, per_batch = 8, 2
    lengths = rng.randint(2, 16, size=(n_batches * per_batch, 6))
    packing = inputs.choose_packing(lengths, n_embd, n_shapes=3, per_batch=per_batch)
    longest, fullest = lengths.max(), lengths.sum(1).max()
    candidates = range(-(-longest // 8) * 8, -(-min(fullest, 4 * longest) // 8) * 8 + 1, 8)
    need = {L: [max(first_fit_rows(part, L) for part in lengths[b * per_batch:(b + 1) * per_batch])
                for b in range(n_batches)] for L in candidates}
    best = min(candidates, key=lambda L: (spec_work(max(need[L]), L, n_embd), L))
    chosen = [(max(need[best]), best)]

    def batch_work(shapes, b):
        return min(spec_work(R, L, n_embd) for R, L in shapes if need[L][b] <= R)

    for _ in range(2):
        saving = {(R, L): sum(batch_work(chosen, b) - batch_work(chosen + [(R, L)], b) for b in range(n_batches))
                  for L in candidates for R in need[L]}
        shape = max(saving, key=lambda s: (saving[s], -s[1], -s[0]))
        if saving[shape] <= 0:
            break
        chosen.append(shape)
    assert len(chosen) > 1 and packing.shapes[-1] == chosen[0] and set(packing.shapes) == set(chosen)


def test_figure_2_normalises_by_the_specs_chance_levels_and_states_of_the_art():
    random = {'sst2': 50, 'cola': 0, 'race': 25, 'dprd': 50}
    sota = {'sst2': 93.2, 'cola': 45.4, 'race': 59.0, 'dprd': 76.4}
    assert set(results.ZERO_SHOT_TASKS) == set(random)
    for task in random:
        for value in (random[task], 40.0, sota[task]):
            assert results.normalised(task, value) == pytest.approx((value - random[task]) / (sota[task] - random[task]))


def test_cola_cuts_the_sentence_at_its_end_to_n_ctx_tokens_and_scores_tokens_2_to_n():
    from paper import heuristics
    sentence = list(range(100, 110))
    for n_ctx in (1, 2, 4, 10, 12):
        ((context, (continuation,)),) = heuristics.cola([sentence], n_ctx)
        x = sentence[:n_ctx]   # SPEC: x = encode(sentence) cut to n_ctx; the score's tokens x_2 .. x_n
        assert context + continuation == x and continuation == x[1:]
