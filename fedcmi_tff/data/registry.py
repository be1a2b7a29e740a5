"""Dataset names the programs accept, and how each is loaded."""

from __future__ import annotations

from fedcmi_tff.data import synthetic_av

DATASET_NAMES = ('synthetic_av',)
# Modality slot names of each dataset, known without loading it.
DATASET_MODALITIES = {'synthetic_av': synthetic_av.MODALITY_NAMES}


def load_dataset(name: str, *, data_dir: str | None = None, seed: int = 0,
                 synthetic_dominant: str = 'audio') -> synthetic_av.DatasetSplits:
  """Loads a dataset's train and test splits.

  Args:
    name: one of DATASET_NAMES.
    data_dir: folder of a prepared dataset (unused by the embedded one).
    seed: seed of the embedded dataset's generator.
    synthetic_dominant: the dominant modality of the embedded dataset.
  """
  if name == 'synthetic_av':
    del data_dir
    return synthetic_av.make_synthetic_av(
        synthetic_av.SyntheticAVConfig(seed=seed, dominant=synthetic_dominant))
  raise ValueError(f'unknown dataset {name!r}; expected one of {", ".join(DATASET_NAMES)}')
