"""Fine-tune a backbone's image tower with a linear classifier on top.

* single-label: cross-entropy; multi-label: BCE with logits, optional per-class ``pos_weight``
  (negatives / positives, capped at 100) for imbalance;
* AdamW (no weight decay on biases and norms) with linear warm-up then cosine decay, per step;
* freeze the stem and the first N blocks, or train all;
* validation loss after every epoch (and once before training, as epoch 0); early stopping
  after ``patience`` epochs without improvement; the best epoch's weights are kept;
* a checkpoint every epoch (``last.pt``, written atomically) so ``resume=True`` continues an
  interrupted run exactly: every epoch reseeds its randomness from ``seed + epoch``;
* augmentation: timm's RandomResizedCrop, flip, colour jitter, random grayscale;
* CPU or CUDA; mixed precision (bfloat16, else float16 with gradient scaling) on CUDA;
* data-parallel under ``torchrun --nproc-per-node N`` or in Ray Train workers (``--engine ray``,
  :mod:`.ray_train`), the same code either way (:mod:`.distributed`): ``batch_size`` is
  the global batch, each process takes its share of every step, gradients are all-reduced, and
  rank 0 writes the checkpoints; augmentation is seeded per image, so N processes train on the
  same pixels as one.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from iconograph.backends.base import Backend, resolve_device, set_torch_threads
from iconograph.engine.files import atomic_open
from iconograph.engine.progress import progress_bar
from iconograph.errors import OptionError
from iconograph.learning.finetune.data import ImageDataset, collate_skipping_failures, training_transform
from iconograph.learning.finetune.distributed import (
    current_ranks,
    join_process_group,
    leave_process_group,
    per_rank_batch,
    summed,
    wrap,
)
from iconograph.learning.finetune.encoder import TrainableEncoder, count_trainable, trainable_encoder

CHECKPOINT = "last.pt"
BEST = "best.pt"


@dataclass
class FineTuneConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4  # backbone
    head_lr: float | None = None  # default: 10 x lr (the classifier starts from scratch)
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    freeze_blocks: int = 0
    patience: int = 3
    pos_weight: bool = False
    label_smoothing: float = 0.0
    scale: tuple[float, float] = (0.25, 1.0)
    hflip: float = 0.5
    color_jitter: float = 0.4
    grayscale_prob: float = 0.0
    amp: bool | None = None  # None: on CUDA only
    device: str | None = None
    workers: int | None = None
    seed: int = 0


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float | None
    val_loss: float
    val_metric: float
    lr: float
    skipped_images: int = 0


@dataclass
class FineTuneResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return {
            "history": [asdict(r) for r in self.history],
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early,
        }


class Classifier(nn.Module):
    def __init__(self, encoder: TrainableEncoder, features: int, classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(features, classes)

    def forward(self, pixels):
        return self.head(self.encoder(pixels).float())


class FineTuner:
    """``FineTuner(backend, classes, multi_label, config).fit(train_items, val_items)``."""

    def __init__(self, backend: Backend, classes: Sequence[str], multi_label: bool, config: FineTuneConfig):
        self.backend = backend
        self.classes = list(classes)
        self.multi_label = multi_label
        self.config = config
        self.ranks = current_ranks()
        self.batch_size = per_rank_batch(config.batch_size, self.ranks)
        self.device = resolve_device(config.device)
        if self.ranks.distributed:
            self.device = join_process_group(self.ranks, self.device)
        set_torch_threads()
        torch.manual_seed(config.seed)
        self.encoder = trainable_encoder(backend)
        self.encoder.freeze(config.freeze_blocks)
        self.data_config = self.encoder.data_config()
        self.network = Classifier(self.encoder, self._feature_dim(), len(self.classes)).to(self.device)
        self.model = wrap(self.network, self.ranks, self.device)  # what the training steps call
        amp = config.amp if config.amp is not None else self.device.startswith("cuda")
        self.amp_dtype = None
        if amp and self.device.startswith("cuda"):
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _feature_dim(self) -> int:
        self.encoder.eval()
        with torch.no_grad():
            probe = torch.zeros(1, *self.data_config["input_size"], device=self.backend.device)
            return int(self.encoder(probe).shape[-1])

    # ---- data -------------------------------------------------------------------------

    def _targets(self, label_sets: Sequence[Sequence[str]]) -> np.ndarray:
        from iconograph.learning.heads.base import binarize, class_indices

        if self.multi_label:
            return binarize(label_sets, self.classes).astype(np.float32)
        return class_indices(label_sets, self.classes)

    def _loader(self, items, transform, shuffle: bool, epoch: int = 0):
        """Training (``shuffle``): this rank's share of the epoch's permutation, with per-image
        seeded augmentation. Evaluation: this rank's share of ``items``, in order."""
        from torch.utils.data import DataLoader, DistributedSampler

        from iconograph.engine.jobs import default_workers

        workers = default_workers() if self.config.workers is None else self.config.workers
        sampler = None
        if not shuffle:
            items = items[self.ranks.rank :: self.ranks.world_size]
        seed = self.config.seed + epoch if shuffle else None
        dataset = ImageDataset([i.path for i in items], self._targets([i.labels for i in items]), transform, seed)
        if shuffle:  # the same permutation (seed + epoch) in a world of one as in a world of N
            sampler = DistributedSampler(
                dataset, self.ranks.world_size, self.ranks.rank, shuffle=True, seed=self.config.seed, drop_last=True
            )
            sampler.set_epoch(epoch)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_skipping_failures,
            generator=torch.Generator().manual_seed(self.config.seed + epoch),
            drop_last=shuffle and len(items) > self.config.batch_size,
            pin_memory=self.device.startswith("cuda"),
        )

    def _criterion(self, train_targets: np.ndarray):
        if not self.multi_label:
            return nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)
        weight = None
        if self.config.pos_weight:
            positives = train_targets.sum(axis=0)
            ratio = (len(train_targets) - positives) / np.maximum(positives, 1)
            weight = torch.as_tensor(np.clip(ratio, 1.0, 100.0), dtype=torch.float32, device=self.device)
        return nn.BCEWithLogitsLoss(pos_weight=weight)

    # ---- optimisation -----------------------------------------------------------------

    def _optimizer(self):
        config = self.config
        decay, no_decay, head = [], [], []
        for name, parameter in self.network.named_parameters():
            if not parameter.requires_grad:
                continue
            if name.startswith("head."):
                head.append(parameter)
            elif parameter.ndim <= 1:
                no_decay.append(parameter)
            else:
                decay.append(parameter)
        groups = [
            {"params": decay, "weight_decay": config.weight_decay, "lr": config.lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": config.lr},
            {"params": head, "weight_decay": config.weight_decay, "lr": config.head_lr or 10 * config.lr},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]])

    def _scheduler(self, optimizer, steps_per_epoch: int):
        from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

        total = max(1, self.config.epochs * steps_per_epoch)
        warmup = min(total - 1, int(round(self.config.warmup_epochs * steps_per_epoch)))
        cosine = CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
        if warmup <= 0:
            return cosine
        ramp = LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup)
        return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(device_type="cpu", enabled=False)
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    # ---- the loop ---------------------------------------------------------------------

    def fit(
        self,
        train_items,
        val_items,
        *,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        on_epoch_end: Callable[[EpochRecord], None] | None = None,
        log: Callable[[str], None] | None = None,
        progress: bool | None = None,
    ) -> FineTuneResult:
        config = self.config
        log = log if log and self.ranks.main else (lambda message: None)
        progress = progress if self.ranks.main else False
        checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        writes = checkpoint_dir if self.ranks.main else None  # where this process writes checkpoints
        train_transform = training_transform(
            self.data_config,
            scale=config.scale,
            hflip=config.hflip,
            color_jitter=config.color_jitter,
            grayscale_prob=config.grayscale_prob,
        )
        eval_transform = self.backend.make_preprocess()
        criterion = self._criterion(self._targets([i.labels for i in train_items]))
        steps_per_epoch = len(self._loader(train_items, train_transform, shuffle=True))
        optimizer = self._optimizer()
        scheduler = self._scheduler(optimizer, steps_per_epoch)
        val_loader = self._loader(val_items, eval_transform, shuffle=False)
        result = FineTuneResult()
        best_state = None
        start_epoch = 1
        if resume and checkpoint_dir and (checkpoint_dir / CHECKPOINT).is_file():
            start_epoch, result, best_state = self._restore(checkpoint_dir, optimizer, scheduler)
            log(f"resumed after epoch {start_epoch - 1} (best so far: epoch {result.best_epoch})")
        else:
            loss, metric = self._evaluate(val_loader, criterion)
            record = EpochRecord(0, None, loss, metric, 0.0)
            result.history.append(record)
            result.best_val_loss, best_state = loss, copy.deepcopy(self.network.state_dict())
            if writes:
                _atomic_torch_save(best_state, writes / BEST)
            log(f"epoch 0 (before training): val loss {loss:.4f}, val {self._metric_name} {metric:.4f}")
        processes = f" x {self.ranks.world_size} processes" if self.ranks.distributed else ""
        log(f"{count_trainable(self.network):,} trainable parameters on {self.device}{processes}")
        bad_epochs = self._bad_epochs(result)
        for epoch in range(start_epoch, config.epochs + 1):
            if bad_epochs >= config.patience:
                result.stopped_early = True
                break
            train_loss, skipped = self._train_epoch(
                epoch, train_items, train_transform, criterion, optimizer, scheduler, progress
            )
            loss, metric = self._evaluate(val_loader, criterion)
            record = EpochRecord(epoch, train_loss, loss, metric, optimizer.param_groups[0]["lr"], skipped)
            result.history.append(record)
            if loss < result.best_val_loss:
                result.best_val_loss, result.best_epoch = loss, epoch
                best_state = copy.deepcopy(self.network.state_dict())
                if writes:
                    _atomic_torch_save(best_state, writes / BEST)
            bad_epochs = self._bad_epochs(result)
            log(
                f"epoch {epoch}/{config.epochs}: train loss {train_loss:.4f}, val loss {loss:.4f}, "
                f"val {self._metric_name} {metric:.4f}" + (f", {skipped} unreadable images skipped" if skipped else "")
            )
            if writes:
                self._checkpoint(writes, epoch, optimizer, scheduler, result)
            if on_epoch_end:
                on_epoch_end(record)
        leave_process_group(self.ranks)  # training is over: what follows is rank 0's alone
        self.network.load_state_dict(best_state)
        self.network.eval()
        return result

    @property
    def _metric_name(self) -> str:
        return "micro-F1@0.5" if self.multi_label else "accuracy"

    @staticmethod
    def _bad_epochs(result: FineTuneResult) -> int:
        return result.history[-1].epoch - result.best_epoch

    def _train_epoch(self, epoch, items, transform, criterion, optimizer, scheduler, progress) -> tuple[float, int]:
        seed = self.config.seed + epoch
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self.network.train()
        total, count, skipped = 0.0, 0, 0
        loader = self._loader(items, transform, shuffle=True, epoch=epoch)
        with progress_bar(len(loader), f"epoch {epoch}", progress) as advance:
            for pixels, targets, failed in loader:
                skipped += failed
                advance(1)
                if pixels is None and not self.ranks.distributed:
                    continue
                if pixels is None:  # every image of this rank's share failed: join the all-reduce with zeros
                    probe = torch.zeros(1, *self.data_config["input_size"], device=self.device)
                    loss = self.model(probe).sum() * 0.0
                else:
                    pixels, targets = pixels.to(self.device, non_blocking=True), targets.to(self.device)
                    with self._autocast():
                        loss = criterion(self.model(pixels), targets)
                optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(optimizer)
                self.scaler.update()
                scheduler.step()
                if pixels is not None:
                    total += float(loss.detach()) * len(pixels)
                    count += len(pixels)
        total, count, skipped = summed([total, count, skipped], self.ranks, self.device)
        return total / max(count, 1), int(skipped)

    @torch.no_grad()
    def _evaluate(self, loader, criterion) -> tuple[float, float]:
        self.network.eval()
        total, count, correct, f1_parts = 0.0, 0, 0, np.zeros(3)
        for pixels, targets, _ in loader:
            if pixels is None:
                continue
            pixels, targets = pixels.to(self.device), targets.to(self.device)
            with self._autocast():
                logits = self.network(pixels).float()
            total += float(criterion(logits, targets)) * len(pixels)
            count += len(pixels)
            if self.multi_label:
                predicted, truth = (logits > 0).cpu().numpy(), targets.cpu().numpy() > 0.5
                f1_parts += [(predicted & truth).sum(), predicted.sum(), truth.sum()]
            else:
                correct += int((logits.argmax(dim=1) == targets).sum())
        total, count, correct, *parts = summed([total, count, correct, *f1_parts], self.ranks, self.device)
        f1_parts = np.array(parts)
        metric = 2 * f1_parts[0] / max(f1_parts[1] + f1_parts[2], 1) if self.multi_label else correct / max(count, 1)
        return total / max(count, 1), float(metric)

    # ---- checkpoints ------------------------------------------------------------------

    def _checkpoint(self, directory: Path, epoch: int, optimizer, scheduler, result: FineTuneResult) -> None:
        state = {
            "epoch": epoch,
            "classes": self.classes,
            "config": _plain(asdict(self.config)),
            "model": self.network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "result": _plain(result.to_dict()),
        }
        _atomic_torch_save(state, directory / CHECKPOINT)

    def _restore(self, directory: Path, optimizer, scheduler):
        state = torch.load(directory / CHECKPOINT, map_location=self.device, weights_only=True)
        if state["classes"] != self.classes:
            raise OptionError(f"{directory / CHECKPOINT} was trained on other classes; cannot resume")
        changed = changed_settings(state["config"], _plain(asdict(self.config)))
        if changed:
            raise OptionError(
                f"cannot resume {directory / CHECKPOINT}: it was trained with {', '.join(changed)}; "
                "resume with the same settings, or start again without --resume"
            )
        self.network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        saved = state["result"]
        result = FineTuneResult(
            [EpochRecord(**r) for r in saved["history"]], saved["best_epoch"], saved["best_val_loss"]
        )
        best = torch.load(directory / BEST, map_location=self.device, weights_only=True)
        return state["epoch"] + 1, result, best

    # ---- results ----------------------------------------------------------------------

    def classifier_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            self.network.head.weight.detach().float().cpu().numpy(),
            self.network.head.bias.detach().float().cpu().numpy(),
        )

    def save_backbone(self, directory: str | Path) -> Path:
        return self.encoder.save(Path(directory))


# Settings that may differ on resume: where and how fast it runs, and when to stop early.
# Everything else (learning rates, schedule length, augmentation, seed) shapes the run itself.
RESUMABLE_CHANGES = ("device", "workers", "patience")


def changed_settings(saved: dict, current: dict) -> list[str]:
    """``--lr 0.0001 (now 0.001)`` for every setting that differs from the checkpoint's."""
    return [
        f"--{name.replace('_', '-')} {saved.get(name)} (now {value})"
        for name, value in current.items()
        if name not in RESUMABLE_CHANGES and saved.get(name) != value
    ]


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def _plain(value):
    """Checkpoint metadata as plain types, so ``torch.load(weights_only=True)`` accepts it."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return 1e300
    return value
