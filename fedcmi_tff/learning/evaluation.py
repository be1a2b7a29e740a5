"""Evaluation of the global model on the test split (pure TensorFlow).

Reports the five inference paths of docs/algorithm.md, 'Evaluation' (fused, each
modality's own unimodal path, each modality zero-filled) and, per project
decision 6, per-class accuracy with macro, worst-class and spread.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from fedcmi_tff.learning import dataset_loops


def build_confusion_fn(model):
  """Returns f(batched_dataset) -> {path: (correct[K], count[K]) as numpy}."""
  num_classes = model.num_classes

  @tf.function
  def counts(dataset):
    zeros = tf.zeros([num_classes])
    paths = list(model.evaluation_logits(model.dummy_inputs(1)).keys())
    init = collections.OrderedDict((p, (zeros, zeros)) for p in paths)

    def accumulate(acc, batch):
      labels = tf.cast(batch['y'], tf.int32)
      ones = tf.ones_like(labels, tf.float32)
      out = collections.OrderedDict()
      for path, logits in model.evaluation_logits(batch['x']).items():
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                          tf.float32)
        out[path] = (acc[path][0] + tf.math.unsorted_segment_sum(correct, labels, num_classes),
                     acc[path][1] + tf.math.unsorted_segment_sum(ones, labels, num_classes))
      return out

    return dataset_loops.fold(dataset, init, accumulate)

  def run(dataset):
    return {p: (c.numpy(), n.numpy()) for p, (c, n) in counts(dataset).items()}

  return run


def per_class_accuracy(correct: np.ndarray, count: np.ndarray) -> np.ndarray:
  """correct / count per class, NaN for classes with no example."""
  return np.where(count > 0, correct / np.maximum(count, 1.0), np.nan)


def accuracy_metrics(path_counts: dict, class_names) -> tuple:
  """Accuracies from per-path, per-class counts.

  Returns:
    (metrics, per_class): `metrics` is a flat OrderedDict: acc_<path> (micro
    accuracy) for every path, then acc_macro, acc_worst_class, acc_class_spread
    (max - min) and acc_class_<name> of the fused path.  `per_class` maps each
    path to its [K] per-class accuracy (NaN for classes absent from the data).
  """
  metrics = collections.OrderedDict()
  per_class = collections.OrderedDict()
  for path, (correct, count) in path_counts.items():
    metrics[f'acc_{path}'] = float(correct.sum() / max(count.sum(), 1.0))
    per_class[path] = per_class_accuracy(correct, count)
  fused = per_class['fused']
  valid = fused[~np.isnan(fused)]
  metrics['acc_macro'] = float(valid.mean()) if valid.size else float('nan')
  metrics['acc_worst_class'] = float(valid.min()) if valid.size else float('nan')
  metrics['acc_class_spread'] = float(valid.max() - valid.min()) if valid.size else float('nan')
  for name, value in zip(class_names, fused):
    metrics[f'acc_class_{name}'] = float(value)
  return metrics, per_class
