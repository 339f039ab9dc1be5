"""generate.py's inputs (issue 32): what the model sees at each step of sampling is what a Model call on the same
tokens sees (SPEC.md "Data": position t has the id n_vocab + 3 + t; "Model": the LM head), checked against
tests/reference.py's NumPy forward pass, not against generate.py's own helpers; and the command feeds `_start_`
then the prompt's encoding."""
import numpy as np

import generate
from tests import reference
from tests.test_generate import N_CTX, N_HEAD, N_SPECIAL, N_VOCAB, START, random_model, run
from tests.test_generate import files  # noqa: F401  (a module fixture: the command's tiny files)
from text_utils import TextEncoder


def numpy_next_logprobs(arrays, tokens):
    """log p over the N_VOCAB token rows of the token after `tokens`, positions 0 .. T - 1 (ids N_VOCAB + 3 + t)."""
    X = np.stack([tokens, N_VOCAB + N_SPECIAL + np.arange(len(tokens))], -1)[None]
    logits = reference.hidden(arrays, X, N_HEAD)[0, -1] @ arrays[0][:N_VOCAB].astype(np.float64).T
    return reference.log_softmax(logits)


def test_the_position_ids_of_a_generated_sequence_are_those_of_tokens_0_to_t():
    model, _ = random_model()
    for T in (1, 5, N_CTX):
        np.testing.assert_array_equal(generate.positions(model, T), N_VOCAB + N_SPECIAL + np.arange(T))


def test_each_steps_log_probabilities_are_the_numpy_models_after_the_whole_sequence():
    model, arrays = random_model(3)
    next_logprobs = generate.make_next_logprobs(model, N_VOCAB)
    rng = np.random.RandomState(4)
    for T in (1, 2, 7, N_CTX):
        tokens = [START] + list(rng.randint(0, N_VOCAB, T - 1))
        X = np.stack([tokens, generate.positions(model, T)], -1)[None].astype(np.int32)
        np.testing.assert_allclose(next_logprobs(X)[0].numpy(), numpy_next_logprobs(arrays, tokens), rtol=0, atol=2e-5)


def test_a_temperature_sample_draws_each_token_from_the_numpy_models_distribution():
    """The same draws as a NumPy sampler reading the reference model's distribution after the sequence so far,
    with the RandomState of --seed: the model saw the tokens and positions the reference sees."""
    model, arrays = random_model(5)
    tokens, seed, temperature = [START, 5, 17, 3], 11, 2.0   # a high temperature: many tokens are likely
    rng = np.random.RandomState(seed)
    expected = list(tokens)
    for _ in range(12):
        p = reference.softmax(numpy_next_logprobs(arrays, expected) / temperature)
        expected.append(int(rng.choice(N_VOCAB, p=p / p.sum())))
    got = generate.sample(model, tokens, 12, N_VOCAB, temperature=temperature, top_k=0, seed=seed)
    assert got == expected[len(tokens):]


def test_the_command_feeds_start_then_the_prompts_encoding_and_prints_the_decoded_continuation(
        files, capsys, monkeypatch):
    seen = []
    sample = generate.sample

    def recording(model, tokens, *args, **kwargs):
        seen.append(list(tokens))
        return sample(model, tokens, *args, **kwargs)

    monkeypatch.setattr(generate, 'sample', recording)
    prompt = 'The cat sat on the mat.'
    out, _ = run(files, capsys, '--prompt', prompt, '--n_tokens', '5', '--temperature', '0')
    encoder = TextEncoder(files['encoder_path'], files['bpe_path'])
    n_vocab = len(encoder.encoder)
    assert seen == [[n_vocab] + encoder.encode([prompt], verbose=False)[0]]   # _start_ is the first id after the pieces
    assert out.startswith(prompt + ' ') and len(out.strip()) > len(prompt)

