"""Story Cloze test accuracy of a submission, and the valid accuracy of the run's best evaluation."""
import json
import os

import numpy as np
import pandas as pd

from datasets import ROC_TEST, rocstories_csv


def rocstories(data_dir, pred_path, log_path):
    """Print the va_acc of the first best evaluation in `log_path` and the accuracy of `pred_path` on the test
    labels; return both (percent)."""
    preds = pd.read_csv(pred_path, delimiter='\t')['prediction'].values.tolist()
    _, _, _, labels = rocstories_csv(os.path.join(data_dir, ROC_TEST))
    test_accuracy = np.mean(np.array(labels) == np.array(preds)) * 100.
    with open(log_path) as f:
        logs = [json.loads(line) for line in f][1:]
    valid_accuracy = logs[int(np.argmax([log['va_acc'] for log in logs]))]['va_acc']
    print('ROCStories Valid Accuracy: %.2f' % valid_accuracy)
    print('ROCStories Test Accuracy:  %.2f' % test_accuracy)
    return valid_accuracy, test_accuracy
