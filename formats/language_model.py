"""The pretrained language model alone (generate.py, zeroshot.py): model.py's network without dropout and without
a classifier, holding the original's files of a model folder."""
from formats.weights import LAYER_PARAMS, load_openai_params, transfer
from model import Config, Model
from utils import InputError


def language_model(n_vocab, n_ctx, n_embd=768, n_head=12, n_layer=12):
    """The network without dropout and without a classifier, with 3 special rows (as fine-tuning's)."""
    return Model(Config(n_vocab, n_ctx, n_embd=n_embd, n_head=n_head, n_layer=n_layer, head=None).without_dropout())


def load_language_model(model, model_dir):
    """Assign the original's files in model_dir (params_shapes.json, params_*.npy) to `model`'s `we` and every
    block, as fine-tuning loads them (the special rows drawn from numpy's generator, the positions cut to the
    model's n_ctx). InputError when the files hold another number of layers than the model."""
    arrays = load_openai_params(model_dir, model.cfg.n_ctx, model.cfg.n_special)
    n_layer = (len(arrays) - 1) // len(LAYER_PARAMS)
    if n_layer != model.cfg.n_layer:
        raise InputError(f"the weights in {model_dir!r} have {n_layer} layers but the model {model.cfg.n_layer}: "
                         f"pass --n_layer {n_layer} (and the --n_embd, --n_head of the model that wrote them)")
    model.assign(transfer(arrays, n_layer))
    return model
