"""tune_robust: Ray Tune sweeps for adversarial-robustness research.

Registries (cheap to import; nothing is built until asked): ``tune_robust.data.DATASETS``,
``tune_robust.models.MODELS``, ``tune_robust.attacks.ATTACKS``, ``tune_robust.training.METHODS``,
``tune_robust.sweeps.SWEEPS``.
"""

__version__ = "0.1.0"
