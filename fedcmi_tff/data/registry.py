"""Dataset names the programs accept, and how each is loaded."""

from __future__ import annotations

from fedcmi_tff.data import prepared
from fedcmi_tff.data import synthetic_av

# Datasets read from a folder written by `python -m fedcmi_tff.prepare`.
PREPARED_DATASETS = ('crema_d', 'ave', 'crisismmd')
DATASET_NAMES = ('synthetic_av',) + PREPARED_DATASETS
# Modality slot names of each dataset, known without loading it (slot a first).
DATASET_MODALITIES = {
    'synthetic_av': synthetic_av.MODALITY_NAMES,
    'crema_d': ('audio', 'visual'),
    'ave': ('audio', 'visual'),
    'crisismmd': ('image', 'text'),
}


def load_dataset(name: str, *, data_dir: str | None = None, seed: int = 0,
                 synthetic_dominant: str = 'audio', synthetic_train_examples: int = 1800,
                 load_options: prepared.LoadOptions = prepared.LoadOptions()):
  """Loads a dataset's train and test splits.

  Args:
    name: one of DATASET_NAMES.
    data_dir: folder of a prepared dataset (unused by the embedded one).
    seed: seed of the embedded dataset's generator.
    synthetic_dominant: the dominant modality of the embedded dataset.
    synthetic_train_examples: the embedded dataset's training examples.
    load_options: frames and image size of a prepared dataset.

  Returns:
    A `synthetic_av.DatasetSplits` (in memory) or a `prepared.PreparedSplits`
    (streamed from disk).

  Raises:
    prepared.DataFormatError: one line naming the problem: no or an unprepared
      data_dir, other modalities, or (checked here, before any model is built)
      the first missing or damaged example file (`prepared.load_prepared`).
  """
  if name == 'synthetic_av':
    del data_dir
    return synthetic_av.make_synthetic_av(
        synthetic_av.SyntheticAVConfig(seed=seed, dominant=synthetic_dominant,
                                       train_examples=synthetic_train_examples))
  if name in PREPARED_DATASETS:
    if not data_dir:
      raise prepared.DataFormatError(f'--dataset={name} needs --data_dir: a folder written by '
                                     f'python -m fedcmi_tff.prepare --dataset={name}')
    splits = prepared.load_prepared(data_dir, name, load_options)
    if splits.modality_names != DATASET_MODALITIES[name]:
      raise prepared.DataFormatError(
          f'{data_dir}: modalities {splits.modality_names}, expected {DATASET_MODALITIES[name]}')
    return splits
  raise ValueError(f'unknown dataset {name!r}; expected one of {", ".join(DATASET_NAMES)}')
