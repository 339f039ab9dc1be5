"""Pre-training the language model: the corpus, its windows, and its log."""
