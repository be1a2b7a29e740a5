"""Modality slots, client kinds and the element layout every pipeline produces.

The model, losses and aggregation speak of two modality slots, a and b, whose
names come from the dataset (audio/visual, image/text): project decision 4.
"""

from __future__ import annotations

import enum

MODALITY_MASK_KEY = 'modality_mask'  # float32 [2]: which slots the example's client holds.
INPUTS_KEY = 'x'
LABEL_KEY = 'y'


class ClientKind(enum.IntEnum):
  """What a client holds.  The integer is also the value carried in the data."""

  MULTIMODAL = 0
  ONLY_A = 1
  ONLY_B = 2

  def modality_mask(self) -> tuple[float, float]:
    return {ClientKind.MULTIMODAL: (1.0, 1.0), ClientKind.ONLY_A: (1.0, 0.0),
            ClientKind.ONLY_B: (0.0, 1.0)}[self]

  def describe(self, modality_names: tuple[str, str]) -> str:
    if self is ClientKind.MULTIMODAL:
      return 'multimodal'
    return f'{modality_names[self.value - 1]}-only'
