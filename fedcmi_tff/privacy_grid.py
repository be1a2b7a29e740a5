"""Accuracy against privacy and bytes: `python -m fedcmi_tff.privacy_grid --flagfile=configs/privacy.flags`.

Runs methods x aggregation settings x seeds on the label split and modality mix the
flags describe: the plain group mean, user-level DP at each of --noise_multipliers
(clip, adaptive clipping and delta from the --dp_* flags) and quantised updates at each of
--quantization_bit_levels, then writes report.md, report.csv and two figures (accuracy
against epsilon, against bytes per client per round) to --output_dir
(programs/privacy_report.py; docs/privacy.md says how to read them).

Resumable and shardable as the grid (--num_shards / --shard_index): finished runs are
skipped, half-finished ones continue from their checkpoints.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fedcmi_tff import files  # noqa: E402
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.programs import flag_config  # noqa: E402
from fedcmi_tff.programs import grid_runner  # noqa: E402
from fedcmi_tff.privacy import accounting  # noqa: E402
from fedcmi_tff.programs import privacy_report  # noqa: E402
from fedcmi_tff.programs import report  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

_NOISE = flags.DEFINE_list('noise_multipliers', ['0.5', '1.0', '2.0'],
                           'DP settings: one per noise multiplier z.')
_BITS = flags.DEFINE_list('quantization_bit_levels', ['8', '4'],
                          'Compressed settings: one per quantisation bit width.')
flags.mark_flag_as_required('output_dir')


def preamble(base, delta: float) -> str:
  f, a = base.federation, base.aggregation
  clip = (f'adaptive clipping from C = {a.clip_norm:g} towards the '
          f'{a.target_unclipped_quantile:g} quantile of update norms' if a.adaptive_clipping
          else f'fixed clip C = {a.clip_norm:g}')
  data = (f'{base.dataset}, {base.synthetic_dominant} dominant' if base.dataset == 'synthetic_av'
          else base.dataset)
  return (f'# Privacy and communication report\n\n{data}; {f.num_clients} clients, '
          f'{f.clients_per_round} sampled per round without '
          f'replacement, {f.rounds} rounds, dirichlet_alpha = {f.dirichlet_alpha:g}, '
          f'multi_ratio = {f.multi_ratio:g}.  DP settings: user-level, {clip}, Gaussian noise '
          f'z * C per coordinate, each group divided by its expected number of sampled '
          f'holders; epsilon by the RDP accountant at delta = {delta:.1e}.  Training metrics '
          'are aggregated without noise and are not covered.\n\n')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    base = flag_config.validated_base_config()
    names = registry.DATASET_MODALITIES[base.dataset]
    noise = [float(z) for z in _NOISE.value]
    bits = [int(b) for b in _BITS.value]
    seeds = [int(s) for s in flag_config.SEEDS.value]
    if not (seeds and flag_config.METHODS.value):
      raise ValueError('--methods and --seeds must be non-empty')
    out_dir = flag_config.OUTPUT_DIR.value
    setting_list = privacy_report.settings(base.aggregation, noise, bits)
    cells = privacy_report.privacy_cells(base, flag_config.METHODS.value, setting_list,
                                         seeds, names, out_dir)
    shard = flag_config.check_cells(cells)
  except ValueError as e:
    print(f'privacy_grid: error: {e}', file=sys.stderr)
    return 2

  def finish(started: float) -> None:
    finals = privacy_report.load(cells)
    weak = ([m for m in names if m != base.synthetic_dominant][0]
            if base.dataset == 'synthetic_av' else report.weak_modality(finals, names))
    delta = (base.aggregation.privacy_delta or
             accounting.default_delta(base.federation.num_clients))
    written = privacy_report.write_privacy_report(finals, weak, out_dir, files.write_text,
                                                  preamble=preamble(base, delta))
    with open(os.path.join(out_dir, 'report.md')) as f:
      print('\n' + f.read())
    print(f'privacy_grid: report written: {", ".join(os.path.basename(p) for p in written)} '
          f'({grid_runner.duration(time.time() - started)})')

  return grid_runner.run_then_finish('privacy_grid', 'runs', cells, shard,
                                     lambda: flag_config.configure_runtime('privacy_grid'),
                                     finish)


if __name__ == '__main__':
  runtime.run_program(main)
