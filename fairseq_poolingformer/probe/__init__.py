"""The long-range probe: does a model *learn* to use level 2? (see ``task`` for the design).

``task``: the synthetic task and its geometry; ``model``: small classifiers on the project's
encoder and the ablation variants; ``train``: CPU training with accuracy against steps.
``benchmarks/probe.py`` runs the grid and writes the reports.
"""

from .model import ProbeClassifier, ProbeModelConfig, Variant, build_probe_model, paper_variants, pf_config
from .geometry import default_reach, probe_task
from .task import ProbeTask, Reach, probe_bands, stack_reach
from .train import TrainConfig, accuracy, train_probe

__all__ = [
    "ProbeClassifier", "ProbeModelConfig", "ProbeTask", "Reach", "TrainConfig", "Variant", "accuracy",
    "build_probe_model", "default_reach", "probe_task", "paper_variants", "pf_config", "probe_bands", "stack_reach", "train_probe",
]
