"""The original's text pipeline: ftfy, standardisation, spaCy's rule-based English tokenizer, lower-cased BPE."""
import json
import os
import re

import ftfy
import spacy
from tqdm import tqdm

from utils import InputError, download_command


def get_pairs(word):
    """Set of adjacent symbol pairs of `word` (a tuple of symbols)."""
    return set(zip(word[:-1], word[1:]))


# Runs of one repeated character among - ~ ! " ; ? + , ) ( / * [ ] } { | _ get a space on each side. The original
# wrote this as an alternation of runs, (-+|~+|!+|...), in a non-raw string where its `\\+` (meant as "runs of
# backslashes") became `\+`, a single plus that `\++` already covers: the backslash is not in the list, and
# neither are `.` and `'`. One character class and a back-reference match the same runs, four times faster.
_PUNCT_RUN = re.compile(r'([-~!";?+,)(/*\[\]}{|_])\1*')


def text_standardize(text):
    """Normalise dashes, ellipses and accents, isolate punctuation runs and collapse whitespace (SPEC step 1)."""
    text = text.replace('—', '-')
    text = text.replace('–', '-')
    text = text.replace('―', '-')
    text = text.replace('…', '...')
    text = text.replace('´', "'")
    text = _PUNCT_RUN.sub(r' \g<0> ', text)
    text = re.sub(r'\s*\n\s*', ' \n ', text)
    text = re.sub(r'[^\S\n]+', ' ', text)
    return text.strip()


_PLAIN = re.compile(r'[\x20-\x25\x27-\x7e\t\n]*')


def fix_text(text):
    """ftfy.fix_text, skipped for plain text that it leaves unchanged: printable ASCII, tabs and newlines
    without `&` (which could start an HTML entity); everything ftfy repairs needs another character."""
    return text if _PLAIN.fullmatch(text) else ftfy.fix_text(text)


def fetch(path):
    """How to replace the damaged BPE file `path`: the download.py command for its folder."""
    return f"run `{download_command(os.path.dirname(path), 'bpe')}` to fetch the original's BPE files"


def read_encoder(path):
    """encoder_bpe_40000.json: a JSON object mapping each BPE piece to its id; InputError when it is not."""
    try:
        with open(path, encoding='utf-8') as f:
            encoder = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path!r} is not a JSON file ({err}): {fetch(path)}") from err
    if not (isinstance(encoder, dict) and encoder and all(type(i) is int for i in encoder.values())
            and set(encoder.values()) == set(range(len(encoder)))):
        raise InputError(f"{path!r} is not a BPE vocabulary, a JSON object mapping its n pieces to the ids 0 to n - 1: "
                         f"{fetch(path)}")
    return encoder


def read_merges(path):
    """vocab_40000.bpe: a version line, then one merge per line (two pieces and a space), ending with a newline;
    the merges in order of rank. InputError when it is not such a text."""
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().split('\n')[1:-1]
    except UnicodeDecodeError as err:
        raise InputError(f"{path!r} is not a text file ({err}): {fetch(path)}") from err
    merges = [tuple(line.split()) for line in lines]
    for i, merge in enumerate(merges, start=2):
        if len(merge) not in (0, 2):  # an empty line (the tests' files end with one) merges nothing
            raise InputError(f"{path}, line {i}: a merge is two BPE pieces separated by a space, found "
                             f"{lines[i - 2][:80]!r}: {fetch(path)}")
    return merges


class TextEncoder:
    """Maps text to the original's BPE ids; `encoder` is token -> id, `decoder` id -> token."""

    def __init__(self, encoder_path, bpe_path):
        self.nlp = spacy.blank('en')
        # Token texts do not depend on lexical attributes (like_num, shape, ...): not computing them for each new
        # word halves the tokenizer's time.
        self.nlp.vocab.lex_attr_getters = {}
        self.encoder = read_encoder(encoder_path)
        self.decoder = {v: k for k, v in self.encoder.items()}
        merges = read_merges(bpe_path)
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {}
        self.piece_cache = {}

    def bpe(self, token):
        """BPE pieces of one token, space-separated, the last ending in `</w>`."""
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + '</w>',)
        pairs = get_pairs(word)
        if not pairs:
            return token + '</w>'
        while True:
            ranked = [(self.bpe_ranks[pair], pair) for pair in pairs if pair in self.bpe_ranks]
            if not ranked:
                break
            first, second = min(ranked)[1]  # the pair of lowest rank (ranks are distinct)
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = ' '.join(word)
        if word == '\n  </w>':
            word = '\n</w>'
        self.cache[token] = word
        return word

    def encode(self, texts, verbose=True, desc=None):
        """List of id lists, one per text; pieces missing from the vocabulary map to 0. verbose: a bar labelled
        `desc`."""
        texts_tokens = []
        for text in tqdm(texts, desc=desc, ncols=80, leave=False, disable=not verbose):
            text_tokens = []
            text = text_standardize(fix_text(text))
            for piece in text.split(' ') if text else []:
                if piece not in self.piece_cache:
                    self.piece_cache[piece] = self.encode_piece(piece)
                text_tokens.extend(self.piece_cache[piece])
            texts_tokens.append(text_tokens)
        return texts_tokens

    def encode_piece(self, piece):
        """Ids of one space-separated piece of a standardised text. spaCy's tokenizer splits a text at single
        spaces and tokenizes each piece on its own (a piece's tokens do not depend on its neighbours), so a piece
        followed by its space is tokenized as in the whole text: `\\n ` stays one token, as in the original."""
        ids = []
        for token in self.nlp.tokenizer(piece + ' '):
            ids.extend(self.encoder.get(t, 0) for t in self.bpe(token.text.lower()).split(' '))
        return ids
