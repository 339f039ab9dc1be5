"""Loading the pretrained weights (SPEC "Loading the pretrained weights" and "Files the original reads"): random
shards in the original layout, n_transfer, the special rows, and the errors a user can meet."""
import json
import os

import numpy as np
import pytest

from model import Config, Model
from formats.weights import load_openai_params, transfer
from tests.fixtures import REAL_FILES_HINT, real_path
from utils import InputError

N_VOCAB, N_SPECIAL, N_EMBD, N_LAYER, N_POS = 50, 3, 32, 2, 512
LAYER_SHAPES = [(1, N_EMBD, 3 * N_EMBD), (3 * N_EMBD,), (1, N_EMBD, N_EMBD), (N_EMBD,), (N_EMBD,), (N_EMBD,),
                (1, N_EMBD, 4 * N_EMBD), (4 * N_EMBD,), (1, 4 * N_EMBD, N_EMBD), (N_EMBD,), (N_EMBD,), (N_EMBD,)]
SHAPES = [(N_POS, N_EMBD), (N_VOCAB, N_EMBD)] + LAYER_SHAPES * N_LAYER


def write_weights(folder, n_shards, seed=0):
    """The original layout: params_shapes.json and params_{i}.npy, flat float32 pieces of the concatenation of
    every array, cut at odd points. Returns the arrays written."""
    rng = np.random.RandomState(seed)
    arrays = [rng.randn(*s).astype(np.float32) for s in SHAPES]
    flat = np.concatenate([a.ravel() for a in arrays])
    cuts = np.sort(rng.choice(np.arange(1, len(flat)), size=n_shards - 1, replace=False))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'params_shapes.json'), 'w') as f:
        json.dump([list(s) for s in SHAPES], f)
    for i, piece in enumerate(np.split(flat, cuts)):
        np.save(os.path.join(folder, f'params_{i}.npy'), piece)
    return arrays


def specials(seed):
    np.random.seed(seed)
    return (np.random.randn(N_SPECIAL, N_EMBD) * 0.02).astype(np.float32)


@pytest.fixture
def weights(tmp_path):
    folder = str(tmp_path / 'model')
    return folder, write_weights(folder, 7)


@pytest.mark.parametrize('n_shards', [1, 3, 7, 12])   # 12: params_10 sorts before params_2 as text
def test_shards_load_to_exactly_the_arrays_written(tmp_path, n_shards):
    folder = str(tmp_path / 'model')
    arrays = write_weights(folder, n_shards)
    n_ctx = 16
    np.random.seed(42)
    params = load_openai_params(folder, n_ctx, N_SPECIAL)
    assert len(params) == 1 + 12 * N_LAYER
    assert all(p.dtype == np.float32 for p in params)
    positions, tokens = arrays[0], arrays[1]
    we = params[0]
    assert we.shape == (N_VOCAB + N_SPECIAL + n_ctx, N_EMBD)
    np.testing.assert_array_equal(we[:N_VOCAB], tokens)
    np.testing.assert_array_equal(we[N_VOCAB:N_VOCAB + N_SPECIAL], specials(42))
    np.testing.assert_array_equal(we[N_VOCAB + N_SPECIAL:], positions[:n_ctx])
    for got, want in zip(params[1:], arrays[2:]):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_special_rows_come_from_numpys_global_generator(weights):
    folder, _ = weights
    np.random.seed(42)
    we = load_openai_params(folder, 8, N_SPECIAL)[0]
    want = specials(42)
    np.testing.assert_array_equal(we[N_VOCAB:N_VOCAB + N_SPECIAL], want)
    np.random.seed(43)
    assert not np.array_equal(load_openai_params(folder, 8, N_SPECIAL)[0][N_VOCAB:N_VOCAB + N_SPECIAL], want)
    # the loader draws exactly n_special * n_embd normals: the generator is where a fresh draw would leave it
    np.random.seed(42)
    load_openai_params(folder, 8, N_SPECIAL)
    after = np.random.randn()
    np.random.seed(42)
    np.random.randn(N_SPECIAL, N_EMBD)
    assert after == np.random.randn()


def test_positions_are_cut_to_n_ctx(weights):
    folder, arrays = weights
    for n_ctx in (1, 77, N_POS):
        we = load_openai_params(folder, n_ctx, N_SPECIAL)[0]
        assert we.shape == (N_VOCAB + N_SPECIAL + n_ctx, N_EMBD)
        np.testing.assert_array_equal(we[N_VOCAB + N_SPECIAL:], arrays[0][:n_ctx])


def test_loaded_arrays_fit_the_model(weights):
    folder, _ = weights
    n_ctx = 10
    params = load_openai_params(folder, n_ctx, N_SPECIAL)
    model = Model(Config(N_VOCAB, n_ctx, n_embd=N_EMBD, n_head=4, n_layer=N_LAYER))
    clf = [p.numpy() for p in model.params[-2:]]
    model.assign(transfer(params, N_LAYER))
    for p, a in zip(model.params, params):
        np.testing.assert_array_equal(p.numpy(), a)
    for p, a in zip(model.params[-2:], clf):          # the classifier is never loaded
        np.testing.assert_array_equal(p.numpy(), a)


def test_n_transfer_selects_we_then_whole_layers(weights):
    folder, _ = weights
    params = load_openai_params(folder, 16, N_SPECIAL)
    assert transfer(params, -1) == []
    for n in range(N_LAYER + 1):
        got = transfer(params, n)
        assert len(got) == 1 + 12 * n
        assert all(g is p for g, p in zip(got, params))


def test_n_transfer_partial_leaves_later_layers_and_clf_fresh(weights):
    folder, _ = weights
    params = load_openai_params(folder, 16, N_SPECIAL)
    model = Model(Config(N_VOCAB, 16, n_embd=N_EMBD, n_head=4, n_layer=N_LAYER))
    before = [p.numpy() for p in model.params]
    model.assign(transfer(params, 1))
    for i, p in enumerate(model.params):
        np.testing.assert_array_equal(p.numpy(), params[i] if i < 13 else before[i])


def test_missing_folder_is_an_input_error(tmp_path):
    folder = str(tmp_path / 'nowhere')
    with pytest.raises(InputError, match='nowhere'):
        load_openai_params(folder, 16, N_SPECIAL)


def test_missing_shapes_file_is_an_input_error(weights):
    folder, _ = weights
    os.remove(os.path.join(folder, 'params_shapes.json'))
    with pytest.raises(InputError, match='params_shapes.json'):
        load_openai_params(folder, 16, N_SPECIAL)


def test_no_shard_is_an_input_error(tmp_path):
    folder = str(tmp_path / 'model')
    write_weights(folder, 3)
    for i in range(3):
        os.remove(os.path.join(folder, f'params_{i}.npy'))
    with pytest.raises(InputError, match='params_0'):
        load_openai_params(folder, 16, N_SPECIAL)


@pytest.mark.parametrize('gap', [0, 3])
def test_gap_in_shard_numbering_is_an_input_error(weights, gap):
    folder, _ = weights
    os.remove(os.path.join(folder, f'params_{gap}.npy'))
    with pytest.raises(InputError, match=f'params_{gap}'):
        load_openai_params(folder, 16, N_SPECIAL)


def test_missing_last_shard_is_an_input_error(weights):
    # nothing after it reveals the gap: the total size does
    folder, _ = weights
    os.remove(os.path.join(folder, 'params_6.npy'))
    with pytest.raises(InputError):
        load_openai_params(folder, 16, N_SPECIAL)


def test_extra_values_are_an_input_error(weights):
    folder, _ = weights
    np.save(os.path.join(folder, 'params_7.npy'), np.zeros(5, np.float32))
    with pytest.raises(InputError):
        load_openai_params(folder, 16, N_SPECIAL)


def test_truncated_shard_is_an_input_error(weights):
    folder, _ = weights
    path = os.path.join(folder, 'params_2.npy')
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size - 100)
    with pytest.raises(InputError, match='params_2.npy'):
        load_openai_params(folder, 16, N_SPECIAL)


def test_shard_that_is_not_npy_is_an_input_error(weights):
    folder, _ = weights
    with open(os.path.join(folder, 'params_1.npy'), 'w') as f:
        f.write('<html>404 Not Found</html>')
    with pytest.raises(InputError, match='params_1.npy'):
        load_openai_params(folder, 16, N_SPECIAL)


@pytest.mark.parametrize('bad', ['float64', '2-D'])
def test_shard_of_wrong_kind_is_an_input_error(weights, bad):
    folder, _ = weights
    path = os.path.join(folder, 'params_4.npy')
    a = np.load(path)
    np.save(path, a.astype(np.float64) if bad == 'float64' else a[:len(a) // 2 * 2].reshape(2, -1))
    with pytest.raises(InputError, match='params_4.npy'):
        load_openai_params(folder, 16, N_SPECIAL)


def test_n_ctx_larger_than_the_positions_is_an_input_error(weights):
    folder, _ = weights
    with pytest.raises(InputError, match=str(N_POS)):
        load_openai_params(folder, N_POS + 1, N_SPECIAL)


def test_n_transfer_beyond_the_layers_is_an_input_error(weights):
    folder, _ = weights
    params = load_openai_params(folder, 16, N_SPECIAL)
    with pytest.raises(InputError):
        transfer(params, N_LAYER + 1)


def test_real_shapes_file_has_the_published_layout():
    path = real_path('model', 'params_shapes.json')
    if path is None:
        pytest.skip(REAL_FILES_HINT)
    with open(path) as f:
        shapes = [tuple(s) for s in json.load(f)]
    assert len(shapes) == 146
    assert sum(int(np.prod(s)) for s in shapes) == 116_534_784
    c = 768
    layer = [(1, c, 3 * c), (3 * c,), (1, c, c), (c,), (c,), (c,), (1, c, 4 * c), (4 * c,), (1, 4 * c, c), (c,),
             (c,), (c,)]
    assert shapes == [(512, c), (40478, c)] + layer * 12
