"""The decomposed two-modality classifier of FedCMI (docs/algorithm.md, 'The decomposed model').

Per modality slot m in {a, b}: an encoder E_m, a self projector P_mm, an
infiltration projector P_mn that maps m into the other slot, and one classifier
C_m shared by both of m's projections.  A concat fusion layer F joins the two
slots.  Slot names come from the dataset (audio/visual, image/text).

Forward paths (z_xy = P_xy(E_x(x))):
  multimodal      fused = F([z_aa ; z_bb]);  self_a = C_a(z_aa), infil_a = C_a(z_ab),
                  infil_b = C_b(z_ba), self_b = C_b(z_bb)
  a-only client   F([z_aa ; z_ab])      (the infiltration projection fills slot b)
  b-only client   F([z_ba ; z_bb])
  zero-filled     F([z_aa ; 0]), F([0 ; z_bb])   (evaluation, and FedAvg's unimodal path)
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import tensorflow as tf

from fedcmi_tff.data import modalities
from fedcmi_tff.models import encoders

# Roles of trainable variables; the client update uses them to know which
# parameters a loss touches (PyTorch skips parameters whose gradient is None).
ROLES = ('encoder_a', 'self_a', 'infil_a', 'head_a',
         'encoder_b', 'self_b', 'infil_b', 'head_b', 'fusion')
# Aggregation groups: slot a, slot b, fusion (docs/algorithm.md, 'The decomposed model').
GROUP_A, GROUP_B, GROUP_FUSION = 0, 1, 2
NUM_GROUPS = 3
_ROLE_GROUP = {r: (GROUP_A if r.endswith('_a') else GROUP_B if r.endswith('_b')
                   else GROUP_FUSION) for r in ROLES}


class MultimodalOutputs(NamedTuple):
  """Logits of the multimodal forward pass; `fused` first (TFF takes flatten()[0])."""

  fused: tf.Tensor
  self_a: tf.Tensor  # C_a(z_aa)
  infil_a: tf.Tensor  # C_a(z_ab): slot a's infiltration logits through a's head
  infil_b: tf.Tensor  # C_b(z_ba)
  self_b: tf.Tensor  # C_b(z_bb)
  embedding_a: tf.Tensor  # z_aa, slot a's input to the fusion layer
  embedding_b: tf.Tensor  # z_bb
  feature_a: tf.Tensor  # f_a = E_a(x_a)
  feature_b: tf.Tensor  # f_b


def _dense(units, name):
  return tf.keras.layers.Dense(units, kernel_initializer='glorot_normal',
                               bias_initializer='zeros', name=name)


def _projector(dim, kind, name):
  if kind == 'linear':
    return _dense(dim, name)
  if kind == 'mlp':
    return tf.keras.Sequential([
        _dense(dim, f'{name}_1'), tf.keras.layers.ReLU(),
        _dense(dim, f'{name}_2'), tf.keras.layers.ReLU(),
        _dense(dim, f'{name}_3')], name=name)
  raise ValueError(f"projector must be 'linear' or 'mlp', got {kind!r}")


class DecomposedModel(tf.keras.Model):
  """Two encoders, four projectors, two shared classifiers and a fusion layer.

  `call(x)` takes the pipeline's input dict {name_a, name_b, modality_mask} and
  returns the fused logits with absent slots zero-filled (the encoder of an absent
  modality is not run), which is what `tff.learning.models.from_keras_model` and
  TFF's own builders see.
  """

  def __init__(self, modality_names, input_shapes, num_classes, model_config,
               name='fedcmi_model', vocabulary_sizes=None):
    super().__init__(name=name)
    self.modality_names = tuple(modality_names)
    self.num_classes = int(num_classes)
    vocabulary_sizes = dict(vocabulary_sizes or {})

    def encoder(modality):
      is_text = len(input_shapes[modality]) == 1
      kind = model_config.text_encoder if is_text else model_config.encoder
      return encoders.build_encoder(
          input_shapes[modality], kind, f'{modality}_encoder',
          model_config.small_encoder_channels, vocabulary_size=vocabulary_sizes.get(modality),
          pretrained_path=model_config.text_encoder_path if is_text else None,
          feature_dim=model_config.feature_dim)

    name_a, name_b = self.modality_names
    self.encoder_a = encoder(name_a)
    self.encoder_b = encoder(name_b)
    dim_a = self.encoder_a.output_shape[-1]
    dim_b = self.encoder_b.output_shape[-1]
    self.feature_dim = dim_a
    if dim_a != dim_b:
      raise ValueError(f'encoders must produce equal feature sizes, got {dim_a} and {dim_b}; '
                       'set feature_dim to adapt both')
    kind = model_config.projector
    self.self_projector_a = _projector(dim_a, kind, f'{name_a}_self_projector')
    self.infil_projector_a = _projector(dim_a, kind, f'{name_a}_infiltration_projector')
    self.self_projector_b = _projector(dim_b, kind, f'{name_b}_self_projector')
    self.infil_projector_b = _projector(dim_b, kind, f'{name_b}_infiltration_projector')
    self.classifier_a = _dense(num_classes, f'{name_a}_classifier')
    self.classifier_b = _dense(num_classes, f'{name_b}_classifier')
    self.fusion = _dense(num_classes, 'fusion')
    self._input_shapes = {k: tuple(v) for k, v in input_shapes.items()}
    self(self.dummy_inputs(1), training=False)  # create every variable now
    for layer in (self.classifier_a, self.classifier_b):  # classifier inputs: projections
      layer(tf.zeros((1, dim_a)))
    self.infil_projector_a(tf.zeros((1, dim_a)))
    self.infil_projector_b(tf.zeros((1, dim_b)))

  def dummy_inputs(self, batch_size):
    x = collections.OrderedDict(
        (n, tf.zeros((batch_size,) + self._input_shapes[n])) for n in self.modality_names)
    x[modalities.MODALITY_MASK_KEY] = tf.ones((batch_size, 2))
    return x

  # -- forward paths ---------------------------------------------------------

  def _fuse(self, slot_a, slot_b):
    return self.fusion(tf.concat([slot_a, slot_b], axis=-1))

  def multimodal(self, x, training=False) -> MultimodalOutputs:
    f_a = self.encoder_a(x[self.modality_names[0]], training=training)
    f_b = self.encoder_b(x[self.modality_names[1]], training=training)
    z_aa, z_ab = self.self_projector_a(f_a), self.infil_projector_a(f_a)
    z_bb, z_ba = self.self_projector_b(f_b), self.infil_projector_b(f_b)
    return MultimodalOutputs(
        fused=self._fuse(z_aa, z_bb),
        self_a=self.classifier_a(z_aa), infil_a=self.classifier_a(z_ab),
        infil_b=self.classifier_b(z_ba), self_b=self.classifier_b(z_bb),
        embedding_a=z_aa, embedding_b=z_bb, feature_a=f_a, feature_b=f_b)

  def only_a(self, x, training=False) -> tf.Tensor:
    """Fused logits of an a-only client: F([z_aa ; z_ab])."""
    f_a = self.encoder_a(x[self.modality_names[0]], training=training)
    return self._fuse(self.self_projector_a(f_a), self.infil_projector_a(f_a))

  def only_b(self, x, training=False) -> tf.Tensor:
    """Fused logits of a b-only client: F([z_ba ; z_bb])."""
    f_b = self.encoder_b(x[self.modality_names[1]], training=training)
    return self._fuse(self.infil_projector_b(f_b), self.self_projector_b(f_b))

  def zero_filled_a(self, x, training=False) -> tf.Tensor:
    """F([z_aa ; 0]): slot a alone with an empty slot b."""
    z_aa = self.self_projector_a(self.encoder_a(x[self.modality_names[0]], training=training))
    return self._fuse(z_aa, tf.zeros_like(z_aa))

  def zero_filled_b(self, x, training=False) -> tf.Tensor:
    """F([0 ; z_bb])."""
    z_bb = self.self_projector_b(self.encoder_b(x[self.modality_names[1]], training=training))
    return self._fuse(tf.zeros_like(z_bb), z_bb)

  def evaluation_logits(self, x) -> collections.OrderedDict:
    """The five inference paths of docs/algorithm.md, 'Evaluation', in eval mode."""
    f_a = self.encoder_a(x[self.modality_names[0]], training=False)
    f_b = self.encoder_b(x[self.modality_names[1]], training=False)
    z_aa, z_ab = self.self_projector_a(f_a), self.infil_projector_a(f_a)
    z_bb, z_ba = self.self_projector_b(f_b), self.infil_projector_b(f_b)
    name_a, name_b = self.modality_names
    return collections.OrderedDict([
        ('fused', self._fuse(z_aa, z_bb)),
        (f'{name_a}_path', self._fuse(z_aa, z_ab)),
        (f'{name_b}_path', self._fuse(z_ba, z_bb)),
        (f'{name_a}_zero', self._fuse(z_aa, tf.zeros_like(z_bb))),
        (f'{name_b}_zero', self._fuse(tf.zeros_like(z_aa), z_bb)),
    ])

  def call(self, x, training=False):
    """Fused logits with absent slots zero-filled, by the batch's modality mask."""
    mask = tf.cast(x[modalities.MODALITY_MASK_KEY], tf.float32)
    batch = tf.shape(mask)[0]
    zeros = tf.zeros((batch, self.feature_dim))

    def slot(encoder, projector, inputs, present):
      return tf.cond(tf.reduce_max(present) > 0,
                     lambda: projector(encoder(inputs, training=training)) * present[:, None],
                     lambda: zeros)

    z_aa = slot(self.encoder_a, self.self_projector_a, x[self.modality_names[0]], mask[:, 0])
    z_bb = slot(self.encoder_b, self.self_projector_b, x[self.modality_names[1]], mask[:, 1])
    return self._fuse(z_aa, z_bb)

  # -- parameter bookkeeping -------------------------------------------------

  def _role_layers(self):
    return (('encoder_a', self.encoder_a), ('self_a', self.self_projector_a),
            ('infil_a', self.infil_projector_a), ('head_a', self.classifier_a),
            ('encoder_b', self.encoder_b), ('self_b', self.self_projector_b),
            ('infil_b', self.infil_projector_b), ('head_b', self.classifier_b),
            ('fusion', self.fusion))

  def variable_roles(self) -> list:
    """Role (see ROLES) of each entry of `self.trainable_variables`."""
    owner = {}
    for role, layer in self._role_layers():
      for v in layer.trainable_variables:
        owner[v.ref()] = role
    return [owner[v.ref()] for v in self.trainable_variables]

  def variable_groups(self) -> tuple:
    """Aggregation group of each trainable and each non-trainable variable.

    Non-trainable state (batch-norm moving statistics) belongs to the group of
    the encoder that owns it (project decision 5).
    """
    trainable = [_ROLE_GROUP[r] for r in self.variable_roles()]
    owner = {}
    for role, layer in self._role_layers():
      for v in layer.non_trainable_variables:
        owner[v.ref()] = _ROLE_GROUP[role]
    non_trainable = [owner[v.ref()] for v in self.non_trainable_variables]
    return trainable, non_trainable
