"""The metrics the paper reports (Radford et al. 2018, Tables 2-4), in NumPy: accuracy, Matthews correlation, F1 of
the positive class, Pearson and Spearman correlation. Each takes predictions and gold labels (1-D, same length)
and returns a fraction (or a correlation in [-1, 1]); the paper prints them times 100."""
import numpy as np


def accuracy(pred, y):
    """Fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(pred) == np.asarray(y)))


def confusion(pred, y):
    """(tp, fp, fn, tn) of binary predictions against binary labels (1 is the positive class), as floats."""
    pred, y = np.asarray(pred) == 1, np.asarray(y) == 1
    return (float(np.sum(pred & y)), float(np.sum(pred & ~y)), float(np.sum(~pred & y)), float(np.sum(~pred & ~y)))


def matthews_corrcoef(pred, y):
    """Matthews correlation of binary predictions (CoLA's metric): (tp tn - fp fn) / sqrt of the four margins'
    product; 0 when a margin is empty (all predictions, or all labels, one class)."""
    tp, fp, fn, tn = confusion(pred, y)
    denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return (tp * tn - fp * fn) / np.sqrt(denominator) if denominator else 0.0


def f1(pred, y):
    """F1 of the positive class 1 (MRPC's and QQP's metric): 2 tp / (2 tp + fp + fn); 0 with no positive
    prediction or label."""
    tp, fp, fn, _ = confusion(pred, y)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def pearson(x, y):
    """Pearson correlation of two real vectors (STS-B's metric); 0 when either is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator else 0.0


def average_ranks(x):
    """1-based ranks of x's values, tied values sharing the mean of the ranks they span."""
    x = np.asarray(x)
    order = np.argsort(x, kind='stable')
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])  # first position of each run of ties
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)  # mean of starts+1 .. ends
    return ranks


def spearman(x, y):
    """Spearman correlation: the Pearson correlation of the average ranks."""
    return pearson(average_ranks(x), average_ranks(y))
