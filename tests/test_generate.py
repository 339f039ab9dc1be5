"""model.lm_logits and generate.py: the LM logits and sampling against NumPy (tests/reference.py) on tiny random
models, models with weights set by hand so that the answer is known, and the command end to end. (The zero-shot
Story Cloze baseline is zeroshot.py's: tests/test_zeroshot.py.)"""
import re

import numpy as np
import pytest

import generate
from model import Config, Model, lm_logits
from tests import reference
from tests.test_train import tiny_run_files

N_VOCAB, N_SPECIAL, N_CTX, N_EMBD, N_HEAD, N_LAYER = 50, 3, 32, 16, 2, 2
START = N_VOCAB


def new_model():
    return Model(Config(N_VOCAB, N_CTX, n_embd=N_EMBD, n_head=N_HEAD, n_layer=N_LAYER, embd_pdrop=0, attn_pdrop=0,
                        resid_pdrop=0, clf_pdrop=0))


def random_model(seed=0):
    """A tiny model with random weights (LayerNorm gains near 1) and those weights as NumPy arrays."""
    model = new_model()
    rng = np.random.RandomState(seed)
    arrays = [(rng.randn(*p.shape) * 0.3 + (1 if 'ln_' in p.name and p.name.endswith('g:0') else 0)).astype(np.float32)
              for p in model.params]
    model.assign(arrays)
    return model, arrays


def constant_model(token_rows, other_rows=10.):
    """A model whose last LayerNorm has gain 0 and bias v, so that h = v at every position whatever the input and
    the logits are we . v: token_rows (N_VOCAB,) sets the logit of each token (we[i] = token_rows[i] * v, |v| = 1)
    and every special and position row gets the logit other_rows."""
    model, arrays = random_model()
    v = np.random.RandomState(1).randn(N_EMBD)
    v /= np.linalg.norm(v)
    we = arrays[0]
    we[:N_VOCAB] = np.asarray(token_rows)[:, None] * v
    we[N_VOCAB:] = other_rows * v
    last = 1 + 12 * (N_LAYER - 1)
    arrays[last + 10] = np.zeros(N_EMBD, np.float32)   # ln_2/g
    arrays[last + 11] = v.astype(np.float32)           # ln_2/b
    model.assign([a.astype(np.float32) for a in arrays])
    return model


def inputs(tokens):
    """X int32 (1, T, 2) of one sequence of token ids, with its position ids."""
    return np.stack([tokens, N_VOCAB + N_SPECIAL + np.arange(len(tokens))], -1)[None].astype(np.int32)


def numpy_logits(arrays, X):
    """(B, T, rows of we) from the reference's hidden states times we^T."""
    return reference.hidden(arrays, X, N_HEAD) @ arrays[0].astype(np.float64).T


# ------------------------------------------------------------------------------------------ logits and sampling


def test_lm_logits_are_the_hidden_states_times_every_row_of_we():
    model, arrays = random_model()
    rng = np.random.RandomState(2)
    X = np.zeros((3, 9, 2), np.int32)
    X[..., 0] = rng.randint(0, N_VOCAB + N_SPECIAL, (3, 9))
    X[..., 1] = N_VOCAB + N_SPECIAL + np.arange(9)
    logits = lm_logits(model, X).numpy()
    assert logits.shape == (3, 9, N_VOCAB + N_SPECIAL + N_CTX)
    np.testing.assert_allclose(logits, numpy_logits(arrays, X), rtol=0, atol=1e-5)


def test_greedy_sampling_takes_the_argmax_of_the_token_rows_at_each_step():
    model, arrays = random_model()
    tokens = [START, 5, 17, 3]
    expected = list(tokens)
    for _ in range(3):
        logits = numpy_logits(arrays, inputs(expected))[0, -1, :N_VOCAB]
        expected.append(int(np.argmax(logits)))
    assert generate.sample(model, tokens, 3, N_VOCAB, temperature=0, top_k=40, seed=0) == expected[len(tokens):]


def test_top_k_1_is_greedy():
    model, _ = random_model()
    tokens = [START, 5, 17, 3]
    greedy = generate.sample(model, tokens, 6, N_VOCAB, temperature=0, top_k=0, seed=0)
    assert generate.sample(model, tokens, 6, N_VOCAB, temperature=1.0, top_k=1, seed=3) == greedy


def test_sampling_never_emits_special_or_position_ids():
    model = constant_model(np.random.RandomState(0).randn(N_VOCAB) * 0.01, other_rows=10.)
    logits = lm_logits(model, inputs([START, 1, 2])).numpy()
    assert np.all(np.argmax(logits, -1) >= N_VOCAB)   # the model much prefers those rows: the test can fail
    for temperature, top_k in [(1.0, 0), (1.0, 40), (0, 0), (5.0, 0)]:
        ids = generate.sample(model, [START], 20, N_VOCAB, temperature=temperature, top_k=top_k, seed=0)
        assert len(ids) == 20 and all(0 <= i < N_VOCAB for i in ids)


def test_top_k_keeps_only_the_k_likeliest_tokens():
    token_rows = np.random.RandomState(0).randn(N_VOCAB) * 0.1
    model = constant_model(token_rows)
    top3 = set(np.argsort(-token_rows)[:3])
    assert set(generate.sample(model, [START], 25, N_VOCAB, 1.0, top_k=3, seed=0)) <= top3
    assert not set(generate.sample(model, [START], 25, N_VOCAB, 1.0, top_k=0, seed=0)) <= top3


def test_same_seed_same_sample_and_different_seeds_differ():
    model = constant_model(np.random.RandomState(0).randn(N_VOCAB) * 0.01)   # nearly flat logits
    a = generate.sample(model, [START, 4], 12, N_VOCAB, temperature=1.0, top_k=0, seed=7)
    assert generate.sample(model, [START, 4], 12, N_VOCAB, temperature=1.0, top_k=0, seed=7) == a
    assert generate.sample(model, [START, 4], 12, N_VOCAB, temperature=1.0, top_k=0, seed=8) != a


def test_sampling_stops_when_the_sequence_fills_n_ctx():
    model, _ = random_model()
    assert len(generate.sample(model, [START] + [1] * (N_CTX - 3), 10, N_VOCAB, temperature=0, top_k=0)) == 2


def test_decode_joins_pieces_and_ends_words_at_end_of_word_marks():
    decoder = {0: 'he', 1: 'llo</w>', 2: 'world</w>', 3: '.</w>'}
    assert generate.decode(decoder, [0, 1, 2, 3]) == 'hello world . '


# ------------------------------------------------------------------------------------------ the command


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """BPE files (the real ones where fixtures.real_path finds them) and random weights, 2 layers of 32."""
    tmp = tmp_path_factory.mktemp('generate')
    data_dir, encoder_path, bpe_path, *_ = tiny_run_files(tmp)
    return dict(data_dir=data_dir, encoder_path=encoder_path, bpe_path=bpe_path, model_dir=str(tmp / 'model'))


def run(files, capsys, *flags, **paths):
    """stdout and stderr of generate.main on the tiny weights."""
    argv = ['--n_embd', '32', '--n_head', '4', '--n_layer', '2'] + list(flags)  # flags may override those
    for name, path in {**{k: files[k] for k in ['model_dir', 'encoder_path', 'bpe_path']}, **paths}.items():
        argv += [f'--{name}', str(path)]
    generate.main(argv)
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_cli_prompt_prints_a_continuation(files, capsys):
    out, _ = run(files, capsys, '--prompt', 'The cat sat on the mat.', '--n_tokens', '8', '--seed', '1')
    assert len(out.splitlines()) == 1 and out.strip()
    assert run(files, capsys, '--prompt', 'The cat sat on the mat.', '--n_tokens', '8', '--seed', '1')[0] == out
    assert run(files, capsys, '--prompt', 'The cat sat on the mat.', '--n_tokens', '8', '--seed', '2')[0] != out


def expect_error(files, capsys, match, *flags, **paths):
    with pytest.raises(SystemExit) as exit_info:
        run(files, capsys, *flags, **paths)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith('error: ') and 'Traceback' not in err
    assert re.search(match, err), err


def test_cli_missing_weights_folder(files, capsys, tmp_path):
    expect_error(files, capsys, r"weights folder .*nowhere.* does not exist: run `python download.py",
                 '--prompt', 'Hello.', model_dir=tmp_path / 'nowhere')


@pytest.mark.parametrize('flag, value, message', [('--temperature', '-1', 'temperature must be 0'),
                                                  ('--top_k', '-2', 'top_k must be 0'),
                                                  ('--n_ctx', '600', 'larger than the 512 positions'),
                                                  ('--n_layer', '3', 'have 2 layers but the model 3')])
def test_cli_bad_flag(files, capsys, flag, value, message):
    expect_error(files, capsys, message, '--prompt', 'Hello.', flag, value)


@pytest.mark.parametrize('temperature', [0.5, 2.0])
def test_sampling_draws_from_the_softmax_of_the_logits_over_the_temperature(temperature):
    logits = np.array([0., 1., 2., 3.])
    rng = np.random.RandomState(0)
    draws = [generate.pick(logits, temperature, 0, rng) for _ in range(5000)]
    expected = reference.softmax(logits / temperature)
    # 5000 draws: a frequency's standard deviation is at most 0.007; temperature 1 would be 0.1 or more away
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 5000, expected, rtol=0, atol=0.03)
