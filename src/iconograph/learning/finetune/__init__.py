"""Fine-tuning a backbone's image tower (PyTorch): ``FineTuner(backend, classes, multi_label, config).fit(...)``."""

from iconograph.learning.finetune.trainer import EpochRecord, FineTuneConfig, FineTuner, FineTuneResult

__all__ = ["EpochRecord", "FineTuneConfig", "FineTuneResult", "FineTuner"]
