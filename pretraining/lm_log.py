"""What a pre-training run counts and logs (pretrain.py): the tokens it has read, its training loss since the last
line of its log, the lines themselves (n_updates, n_tokens, tr_cost, va_cost, va_ppl) and its progress bar's
text. Its own module because pretrain.py's corpus-encoding workers import pretrain.py without TensorFlow."""
import json
import math
import time

import tensorflow as tf
from tqdm import tqdm


class Progress(tf.train.experimental.PythonState):
    """What pre-training counts, saved in its checkpoints: the training tokens read so far, and the sum of the
    training loss times the tokens predicted and their count since the last log line (tr_cost is their ratio);
    and, not saved, the model folders written (folder -> n_updates) and where tokens/s starts."""

    def __init__(self):
        self.n_tokens, self.tr_sum, self.tr_count = 0, 0., 0.
        self.saved, self.start = {}, None

    def serialize(self):
        return json.dumps(dict(n_tokens=self.n_tokens, tr_sum=self.tr_sum, tr_count=self.tr_count))

    def deserialize(self, string_value):
        state = json.loads(string_value)
        self.n_tokens, self.tr_sum, self.tr_count = state['n_tokens'], state['tr_sum'], state['tr_count']

    def add(self, n_tokens, n_predicted, cost):
        """An update read n_tokens tokens and its cost is the mean loss of the n_predicted it predicted."""
        self.n_tokens += n_tokens
        self.tr_sum, self.tr_count = self.tr_sum + cost * n_predicted, self.tr_count + n_predicted
        self.start = self.start or (time.time(), self.n_tokens)  # after the first update (its tracing) of this process

    def postfix(self, costs):
        """The bar's text: the mean loss since the last log line and the tokens per second."""
        text = f'loss {self.tr_sum / self.tr_count if self.tr_count else costs[-1]:.3f}'
        if self.start and time.time() > self.start[0]:
            text += f' {(self.n_tokens - self.start[1]) / (time.time() - self.start[0]):,.0f} tokens/s'
        return text

    def logger(self, run, evaluate):
        """log(): one line of the log (n_updates, n_tokens, tr_cost, va_cost, va_ppl), printed and sent to
        TensorBoard; evaluate() the held-out cost (None: no held-out documents, va_cost null). A second call at the
        same update (an epoch's end at an evaluation's update) logs nothing."""
        state = run.state

        def log():
            records = run.logger.records
            if records and records[-1]['n_updates'] == state.n_updates:
                return
            va_cost = evaluate() if evaluate else None
            record = dict(n_updates=state.n_updates, n_tokens=self.n_tokens,
                          tr_cost=self.tr_sum / self.tr_count if self.tr_count else None, va_cost=va_cost,
                          va_ppl=None if va_cost is None else math.exp(min(va_cost, 700.)))
            run.logger.log(**record)
            state.n_logged += 1
            self.tr_sum, self.tr_count = 0., 0.
            tqdm.write(' '.join(f'{v:.4f}' if isinstance(v, float) else str(v) for v in record.values()))
            with run.summaries.as_default(step=state.n_updates):
                for name in ('tr_cost', 'va_cost', 'va_ppl'):
                    if record[name] is not None:
                        tf.summary.scalar('eval/' + name, record[name])
        return log
