"""Trains one method on one dataset: `python -m fedcmi_tff.train --flagfile=configs/...`.

--method takes any name of algorithms/registry.py: an algorithm (fedcmi, fedavg, ...),
an ablation (fedcmi_no_proximal, ...), unimodal_<modality> or centralised.

Writes metrics.csv, per_class.csv, summary.json, config.json, a checkpoint and
TensorBoard summaries to --output_dir, with one progress line per round.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fedcmi_tff.algorithms import registry as method_registry  # noqa: E402
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.programs import flag_config  # noqa: E402
from fedcmi_tff.programs import experiment  # noqa: E402
from fedcmi_tff.programs import outcomes  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

flags.mark_flag_as_required('output_dir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    method, config = flag_config.method_and_config()
    config.validate(registry.DATASET_NAMES, method_registry.algorithm_names())
    flag_config.check_runtime_flags()
  except ValueError as e:
    print(f'train: error: {e}', file=sys.stderr)
    return 2
  stops = outcomes.StopRequests('train').install()

  def body() -> int:
    context = flag_config.configure_runtime('train')
    print(f'train: {method} on {config.dataset}; TFF runtime: {context}', flush=True)
    result = experiment.run_experiment(config, flag_config.OUTPUT_DIR.value,
                                       overwrite=flag_config.OVERWRITE.value,
                                       resume=flag_config.RESUME.value, method=method,
                                       log=lambda line: print(line, flush=True),
                                       stop_requested=stops.requested)
    final, best = result.summary['final'], result.summary['best']
    print(f'train: done; final fused {final["acc_fused"]:.4f}, best fused '
          f'{best["acc_fused"]:.4f} (round {result.summary["best_round"]}, chosen on the '
          f'{result.summary["selected_on"]} split); results in {result.output_dir}')
    return 0

  return outcomes.run_guarded('train', body, stops)


if __name__ == '__main__':
  runtime.run_program(main)
