"""Modality-masked group averaging (docs/algorithm.md, 'Server'), as pure TF maths.

Each variable belongs to a group (slot a, slot b, fusion).  A client's
contribution to a variable is weighted by its weight for that variable's group
(n_k if it holds the group's modality, else 0; n_k for the fusion group).  The
server divides the summed contributions by the summed weights of each group;
a group with total weight 0 gets a zero mean update, which keeps the previous
global values when updates are deltas.
"""

from __future__ import annotations

import tensorflow as tf


def weigh_by_group(values: list, groups: list, group_weights: tf.Tensor) -> list:
  """values[i] * group_weights[groups[i]] for every tensor."""
  return [v * tf.cast(group_weights[g], v.dtype) for v, g in zip(values, groups)]


def divide_by_group(sums: list, groups: list, group_totals: tf.Tensor) -> list:
  """sums[i] / group_totals[groups[i]], or zeros where that total is 0."""
  out = []
  for s, g in zip(sums, groups):
    total = tf.cast(group_totals[g], s.dtype)
    out.append(tf.where(total > 0, s / tf.where(total > 0, total, tf.ones_like(total)),
                        tf.zeros_like(s)))
  return out


def mask_by_group(values: list, groups: list, group_weights: tf.Tensor) -> list:
  """values[i] where the client holds group groups[i] (its weight > 0), else zeros.

  The differentially private mean's records: every client counts once, whatever its
  example count, so the clipped record bounds its influence.
  """
  held = tf.cast(group_weights > 0, tf.float32)
  return [v * tf.cast(held[g], v.dtype) for v, g in zip(values, groups)]


def divide_by_constants(sums: list, groups: list, denominators: tuple) -> list:
  """sums[i] / denominators[groups[i]] (Python constants), or zeros where that is 0."""
  return [s / tf.constant(denominators[g], s.dtype) if denominators[g] > 0 else tf.zeros_like(s)
          for s, g in zip(sums, groups)]


def bound_norm(values: list, bound: float) -> list:
  """values scaled by min(1, bound / ||values||), the L2 norm over all of them taken in
  float64.

  A float32 update can be finite while the sum of its squares overflows; the DP query's
  clip (`tf.clip_by_global_norm`) then returns NaN for the whole record, and the noisy
  sum with it.  Scaling such a record to a large `bound` first, in float64, keeps its
  direction, so clipping it to any C <= bound gives what clipping the original would.
  Records with norm <= bound come back unchanged, bit for bit.
  """
  wide = [tf.cast(v, tf.float64) for v in values]
  norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(w)) for w in wide]))
  scale = tf.minimum(tf.constant(1.0, tf.float64), bound / norm)  # norm 0: bound / 0 = inf
  return [tf.where(norm > bound, tf.cast(w * scale, v.dtype), v) for w, v in zip(wide, values)]
