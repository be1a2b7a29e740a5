"""The generic client loop: local training of any client objective, as pure TensorFlow.

No TFF here: `build_client_update_fn` returns a `tf.function` that the TFF wiring
(`processes.py`) calls inside a `tff.tensorflow.computation`, and that unit tests
call directly.  What a method computes comes from its `algorithms.base.ClientObjective`;
this loop owns what every method shares (docs/algorithm.md, "Client update"):

* the model and, if the objective needs one, a frozen teacher are loaded with the
  global weights; the optimiser's momentum starts from zero every round;
* the objective's once-per-round pre-pass (e.g. FedCMI's class temperatures);
* E epochs over the client's data, shuffled with the round as seed, with the
  training-time augmentation seeded by (round, step); each batch's loss is the
  objective's loss for the client's kind (multimodal, only slot a, only slot b);
* the objective's optional gradient transform, then `masked_sgd.step`: SGD with
  momentum and coupled L2 weight decay, plus the proximal gradient mu (w - w_global);
  a parameter the batch's loss does not reach is not stepped (as in PyTorch);
* the non-finite guard: a client whose update is not finite sends a zero update
  with zero weight, and counts itself in `non_finite_clients`.

Every pass over the local data is an iterator loop by default (dataset_loops.py).
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import base
from fedcmi_tff.data import augment
from fedcmi_tff.data import modalities
from fedcmi_tff.learning import dataset_loops
from fedcmi_tff.learning import masked_sgd
from fedcmi_tff.losses import proximal
from fedcmi_tff.losses import schedule
from fedcmi_tff.models import fedcmi_model


def activity_matrix(objective: base.ClientObjective, roles: list) -> np.ndarray:
  """[NUM_CASES, len(roles)] float32: 1 where that variable is stepped in that case."""
  table = objective.active_roles()
  return np.array([[1.0 if r in table.get(c, ()) else 0.0 for r in roles]
                   for c in range(base.NUM_CASES)], np.float32)


class ClientOutput(NamedTuple):
  """What one client sends back.

  Attributes:
    update: (trainable, non_trainable) lists of initial - trained values (the sign
      TFF's finalizers expect).
    group_weights: float32 [3] = (n * has_a, n * has_b, n): the client's aggregation
      weight for slot a's group, slot b's group and the fusion layer (all 0 when
      the update was not finite).
    metrics: OrderedDict of sums, added up over clients by the server.
  """

  update: tuple
  group_weights: tf.Tensor
  metrics: collections.OrderedDict


def client_kind_of_batch(modality_mask: tf.Tensor) -> tf.Tensor:
  """ClientKind (int32) from a batch's [B, 2] modality mask (all rows agree)."""
  has_a = modality_mask[0, 0] > 0
  has_b = modality_mask[0, 1] > 0
  return tf.where(has_a & has_b, int(modalities.ClientKind.MULTIMODAL),
                  tf.where(has_a, int(modalities.ClientKind.ONLY_A),
                           int(modalities.ClientKind.ONLY_B)))


def _added(totals: collections.OrderedDict, **increments) -> collections.OrderedDict:
  """totals with each named increment added (same keys, same order)."""
  return collections.OrderedDict(
      (k, v + increments[k] if k in increments else v) for k, v in totals.items())


def _all_finite(tensors: list) -> tf.Tensor:
  return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def schedule_rounds(training: config_lib.LocalTrainingConfig, total_rounds: int | None) -> int:
  """T of the learning-rate decay; raises ValueError when a decaying schedule lacks it."""
  if total_rounds is None:
    if training.decays:
      raise ValueError(
          f'the learning rate decays from {training.learning_rate} to '
          f'{training.min_learning_rate}: pass total_rounds, the number of rounds of the run')
    return 1  # without decay the schedule is constant and T does not enter it
  if total_rounds <= 0:
    raise ValueError(f'total_rounds must be > 0, got {total_rounds}')
  return total_rounds


def build_client_update_fn(model: fedcmi_model.DecomposedModel,
                           teacher: fedcmi_model.DecomposedModel | None,
                           objective: base.ClientObjective,
                           training: config_lib.LocalTrainingConfig,
                           proximal_strength: float = 0.0,
                           loop: dataset_loops.LoopImplementation = (
                               dataset_loops.DATASET_ITERATOR), *,
                           total_rounds: int | None = None):
  """Returns `client_update(initial_weights, dataset, round_num) -> ClientOutput`.

  Args:
    model: the local model; its variables are overwritten on every call.
    teacher: a second instance holding the global weights, run in eval mode;
      required when `objective.needs_teacher`.
    objective: what the method computes (algorithms/).
    training: optimiser, schedule, local epochs, batch size, augmentation.
    proximal_strength: mu of (mu/2)||w - w_global||^2; 0 for none.
    loop: how the passes over the local data iterate (results do not depend on it).
    total_rounds: T of the learning-rate decay, the run's round count; may be None only
      when `training` does not decay the learning rate.

  The dataset holds single examples {x: {name_a, name_b, modality_mask}, y};
  the function shuffles (seeded by the round), batches and repeats it itself.
  """
  training.validate()
  total_rounds = schedule_rounds(training, total_rounds)
  if proximal_strength < 0:
    raise ValueError(f'proximal_strength must be >= 0, got {proximal_strength}')
  if objective.needs_teacher and teacher is None:
    raise ValueError(f'the {objective.name} objective needs a teacher model')
  variables = model.trainable_variables
  roles = model.variable_roles()
  activity = tf.constant(activity_matrix(objective, roles))
  optimizer = masked_sgd.MaskedSGD(variables, momentum=training.momentum,
                                   weight_decay=training.weight_decay)
  fold = lambda dataset, initial, step: dataset_loops.fold(dataset, initial, step, loop)

  @tf.function
  def client_update(initial_weights, dataset, round_num):
    initial_trainable, initial_non_trainable = initial_weights
    for v, w in zip(model.trainable_variables, initial_trainable):
      v.assign(w)
    for v, w in zip(model.non_trainable_variables, initial_non_trainable):
      v.assign(w)
    if objective.needs_teacher:
      for v, w in zip(teacher.trainable_variables, initial_trainable):
        v.assign(w)
      for v, w in zip(teacher.non_trainable_variables, initial_non_trainable):
        v.assign(w)
    optimizer.reset()

    round_num = tf.cast(round_num, tf.int32)
    counts = fold(dataset, tf.zeros([3]),
                  lambda acc, e: acc + tf.concat([tf.cast(e['x'][modalities.MODALITY_MASK_KEY],
                                                          tf.float32), [1.0]], 0))
    num_examples = counts[2]
    context = base.RoundContext(
        model=model, teacher=teacher if objective.needs_teacher else None,
        batches=dataset.batch(training.batch_size), round_num=round_num,
        is_multimodal=(counts[0] > 0) & (counts[1] > 0), fold=fold)
    state = objective.round_state(context)

    learning_rate = schedule.learning_rate_for_round(
        round_num, training.learning_rate, training.min_learning_rate,
        training.constant_lr_rounds, total_rounds)
    buffer_size = tf.maximum(tf.cast(num_examples, tf.int64), 1)
    if training.shuffle_buffer_size:
      buffer_size = tf.minimum(buffer_size, training.shuffle_buffer_size)
    shuffled = dataset.shuffle(
        buffer_size,
        seed=tf.cast(round_num, tf.int64), reshuffle_each_iteration=True)
    epochs = shuffled.batch(training.batch_size).repeat(training.local_epochs)

    totals = collections.OrderedDict(
        loss_sum=tf.constant(0.0), num_batches=tf.constant(0.0),
        examples_seen=tf.constant(0.0))
    for name in objective.part_names:
      totals[name] = tf.constant(0.0)
    for batch in (iter(epochs) if loop is dataset_loops.DATASET_ITERATOR else epochs):
      x, y = batch['x'], batch['y']
      step = tf.cast(totals['num_batches'], tf.int32)
      # Training-time augmentation, seeded by (round, step); the teacher sees the same batch.
      x = augment.augment_inputs(x, training.augmentation,
                                 tf.stack([round_num * 1_000_003 + step, -1]))
      kind = client_kind_of_batch(x[modalities.MODALITY_MASK_KEY])
      with tf.GradientTape() as tape:
        loss = tf.switch_case(kind, [
            lambda: objective.multimodal_loss(context, state, x, y),
            lambda: objective.only_a_loss(context, state, x, y),
            lambda: objective.only_b_loss(context, state, x, y)])
      grads = tape.gradient(loss.total, variables)
      grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
               for v, g in zip(variables, grads)]
      grads = objective.transform_gradients(context, grads, variables, roles, loss.aux, step)
      optimizer.step(grads, tf.unstack(tf.gather(activity, loss.case)), learning_rate,
                     extra_gradient=(
                         (lambda i, v: proximal.proximal_gradient(v, initial_trainable[i],
                                                                  proximal_strength))
                         if proximal_strength > 0 else None))
      # A new dict each step (AutoGraph carries it as one loop variable).
      totals = _added(totals, loss_sum=loss.total, num_batches=1.0,
                      examples_seen=tf.cast(tf.shape(y)[0], tf.float32), **loss.parts)

    update = ([w0 - v for w0, v in zip(initial_trainable, model.trainable_variables)],
              [w0 - v for w0, v in zip(initial_non_trainable, model.non_trainable_variables)])
    finite = _all_finite(update[0] + update[1])
    update = tf.nest.map_structure(lambda u: tf.where(finite, u, tf.zeros_like(u)), update)
    metrics = collections.OrderedDict(totals)
    metrics['proximal_term'] = proximal.proximal_term(
        model.trainable_variables, initial_trainable, proximal_strength)
    metrics['clients'] = tf.constant(1.0)
    metrics['multimodal_clients'] = tf.cast(context.is_multimodal, tf.float32)
    metrics.update(objective.round_metrics(context, state))
    # A dropped client's sums (NaN) would poison the round's totals: only its count stays.
    metrics = collections.OrderedDict(
        (k, v if k == 'clients' else tf.where(finite, v, tf.zeros_like(v)))
        for k, v in metrics.items())
    metrics['non_finite_clients'] = 1.0 - tf.cast(finite, tf.float32)
    group_weights = tf.where(finite, tf.stack([counts[0], counts[1], num_examples]),
                             tf.zeros([3]))
    return ClientOutput(update, group_weights, metrics)

  return client_update
