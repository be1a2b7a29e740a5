"""fedcmi_tff: FedCMI (arXiv 2401.00894) on TensorFlow Federated.

Layers (lower never imports higher):
  config, data.modalities          plain Python / numpy
  data, models, losses             TensorFlow maths and input pipelines
  learning                         client update (pure TF) and TFF processes
  programs, train, compare         drivers: flags, files, execution contexts
"""
