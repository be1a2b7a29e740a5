"""What a method is to the client loop: a pure-TF client objective (no TFF here).

One generic client loop (`learning/client_update.py`) owns everything methods
share: loading the global weights, iterating over the local data, augmentation,
the optimiser (SGD with momentum and coupled weight decay, reset every round),
the proximal term, the non-finite guard and the metrics.  A method only says what
it computes, through a `ClientObjective`:

  round_state(context)            optional once-per-round pre-pass over the local
                                  data with the model in eval mode (FedCMI's class
                                  temperatures, PMR's prototypes)
  multimodal_loss / only_a_loss /  the batch loss of each client kind, returning a
  only_b_loss                     `BatchLoss`: the total to differentiate, named
                                  parts summed into the round metrics, the "case"
                                  (which parameters the loss reaches) and optional
                                  auxiliary values for the gradient transform
  transform_gradients             optional (OGM-GE's modulation and noise)
  active_roles                    per case, the model roles whose parameters are
                                  stepped (a parameter the loss does not reach gets
                                  no decay or momentum step, as in PyTorch)

Every tensor an objective returns keeps its structure from batch to batch and
between the three client kinds (they are the branches of one `tf.switch_case`).
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import tensorflow as tf

# Which parameters a batch's loss reaches (the index of a row of the activity table).
CASE_MULTIMODAL = 0  # a multimodal batch without infiltration (warm-up, or fused-only)
CASE_A_TEACHES = 1  # FedCMI: slot a dominates, b's infiltration projection learns
CASE_B_TEACHES = 2  # FedCMI: slot b dominates, a's infiltration projection learns
CASE_ONLY_A = 3
CASE_ONLY_B = 4
NUM_CASES = 5

MULTIMODAL_ROLES = frozenset({'encoder_a', 'self_a', 'head_a', 'encoder_b', 'self_b', 'head_b',
                              'fusion'})


class BatchLoss(NamedTuple):
  """One batch's loss.

  Attributes:
    total: the scalar the client differentiates.
    parts: OrderedDict of named scalars, each summed over the round's batches into
      the client's metric of the same name (same keys for every client kind).
    case: int32 scalar, one of the CASE_* values.
    aux: values the objective's `transform_gradients` needs (a fixed structure).
  """

  total: tf.Tensor
  parts: collections.OrderedDict
  case: tf.Tensor
  aux: Any = ()


class RoundContext(NamedTuple):
  """What an objective may use for its once-per-round pre-pass and its batch losses.

  Attributes:
    model: the local model (its variables hold the global weights at pre-pass time).
    teacher: a frozen copy of the global model, or None if the objective needs none.
    batches: the client's data batched, unshuffled (for eval-mode pre-passes).
    round_num: int32 scalar, the round (0-based).
    is_multimodal: bool scalar, the client holds both modalities.
    fold: `dataset_loops.fold` bound to the loop implementation in use.
  """

  model: Any
  teacher: Any
  batches: tf.data.Dataset
  round_num: tf.Tensor
  is_multimodal: tf.Tensor
  fold: Any


class ClientObjective:
  """Base class: override what the method computes; the defaults are FedAvg-like."""

  #: the method family's name (recorded in metrics and configurations)
  name = 'objective'
  #: True if `teacher` (a frozen global model) is needed
  needs_teacher = False
  #: names of the per-batch loss parts, in order
  part_names: tuple = ()

  def active_roles(self) -> dict:
    """{case: frozenset of roles stepped in that case}, for every case the losses return."""
    raise NotImplementedError

  def round_state(self, context: RoundContext):
    """Once-per-round values (a structure of tensors); default: none."""
    del context
    return ()

  def round_metrics(self, context: RoundContext, state) -> collections.OrderedDict:
    """Per-client metrics of the round state, summed over clients; default: none."""
    del context, state
    return collections.OrderedDict()

  def multimodal_loss(self, context: RoundContext, state, x, y) -> BatchLoss:
    raise NotImplementedError

  def only_a_loss(self, context: RoundContext, state, x, y) -> BatchLoss:
    raise NotImplementedError

  def only_b_loss(self, context: RoundContext, state, x, y) -> BatchLoss:
    raise NotImplementedError

  def transform_gradients(self, context: RoundContext, gradients: list, variables: list,
                          roles: list, aux, step: tf.Tensor) -> list:
    """Gradients after the method's modulation (before decay and proximal term)."""
    del context, variables, roles, aux, step
    return gradients

  def batch_loss(self, total, case, aux=(), **parts) -> BatchLoss:
    """A `BatchLoss` with every part of `part_names` (zero where not given)."""
    unknown = set(parts) - set(self.part_names)
    if unknown:
      raise ValueError(f'{self.name}: unknown loss parts {sorted(unknown)}')
    return BatchLoss(total, collections.OrderedDict(
        (name, tf.convert_to_tensor(parts.get(name, 0.0), tf.float32))
        for name in self.part_names), tf.convert_to_tensor(case, tf.int32), aux)


def cross_entropy(labels, logits) -> tf.Tensor:
  """Mean sparse softmax cross-entropy."""
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=logits))
