"""The rows GPT-1 adds after the n_vocab pieces of the BPE vocabulary (SPEC.md, "Text encoding" and "The model"):
the three special tokens `_start_`, `_delimiter_`, `_classify_` (the paper's extract token), then one row per
position. Every token id and position id of the project is made here."""
from typing import NamedTuple

N_SPECIAL = 3


class Vocab(NamedTuple):
    """The ids of a vocabulary of n_vocab BPE pieces (40,478 for GPT-1's): pieces 0 .. n_vocab - 1, then the
    n_special special tokens, then the positions; `we` has rows(n_ctx) rows. Fine-tuning has the 3 special tokens;
    pre-training none (n_special 0: the published files' token rows, then the positions)."""
    n_vocab: int
    n_special: int = N_SPECIAL

    @property
    def start(self):
        return self.n_vocab

    @property
    def delimiter(self):
        return self.n_vocab + 1

    @property
    def classify(self):
        return self.n_vocab + 2

    def position(self, t):
        """The id of position t (an int or an int array), counted from 0."""
        return self.n_vocab + self.n_special + t

    def rows(self, n_ctx):
        """Rows of `we` for a context of n_ctx positions: the pieces, the special tokens, the positions."""
        return self.n_vocab + self.n_special + n_ctx
