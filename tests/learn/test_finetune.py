"""Fine-tuning on CIFAR-10 with tiny random backbones built in the test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from iconograph.backends import load_model
from iconograph.engine.store import Store
from iconograph.learning.finetune import FineTuneConfig, FineTuner
from iconograph.learning.heads import binarize
from iconograph.learning.train import labelled_items, prepare_split, train
from tests.learn.conftest import cifar_rows, write_truth


def fast_config(**overrides) -> FineTuneConfig:
    settings = {"epochs": 3, "batch_size": 32, "lr": 1e-3, "warmup_epochs": 0.5, "workers": 0, "patience": 5}
    return FineTuneConfig(**{**settings, **overrides})


def test_finetune_lowers_validation_loss_and_beats_chance(tiny_timm, cifar_truth, tmp_path):
    model = train(
        cifar_truth,
        head="finetune",
        backbone=str(tiny_timm),
        out=tmp_path / "model",
        val=0.2,
        test=0.2,
        finetune=fast_config(),
        store=Store(tmp_path / "store"),
        workers=0,
    )
    result = model.info["training"]["finetune"]["result"]
    history = result["history"]
    assert history[0]["epoch"] == 0  # validation before any training
    assert result["best_epoch"] > 0
    assert result["best_val_loss"] < history[0]["val_loss"] - 0.05
    assert max(r["val_metric"] for r in history[1:]) > 0.4  # 4 classes: chance is 0.25
    assert model.info["metrics"]["test"]["accuracy"] > 0.35
    assert model.backbone["embedded"] and (tmp_path / "model" / "backbone" / "model.safetensors").is_file()
    assert not (tmp_path / "model" / "checkpoints").exists()


def small_split(tmp_path, per_class=12):
    truth = write_truth(tmp_path / "truth.csv", cifar_rows(per_class=per_class))
    return prepare_split(labelled_items(truth), val=0.25, test=0.0)[0]


def test_resume_continues_an_interrupted_run_exactly(tiny_timm, tmp_path):
    split = small_split(tmp_path)
    classes = sorted({i.labels[0] for i in split.train})
    config = fast_config(epochs=2, batch_size=8)

    whole = FineTuner(load_model(str(tiny_timm)), classes, False, config)
    whole.fit(split.train, split.val, checkpoint_dir=tmp_path / "a")

    def interrupt(record):
        raise KeyboardInterrupt

    first = FineTuner(load_model(str(tiny_timm)), classes, False, config)
    with pytest.raises(KeyboardInterrupt):
        first.fit(split.train, split.val, checkpoint_dir=tmp_path / "b", on_epoch_end=interrupt)
    resumed = FineTuner(load_model(str(tiny_timm)), classes, False, config)
    messages = []
    result = resumed.fit(split.train, split.val, checkpoint_dir=tmp_path / "b", resume=True, log=messages.append)
    assert messages[0].startswith("resumed after epoch 1")
    assert [r.epoch for r in result.history] == [0, 1, 2]
    for name, value in whole.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[name], value, msg=name)

    changed = FineTuner(load_model(str(tiny_timm)), classes, False, fast_config(epochs=2, batch_size=8, lr=1e-2))
    with pytest.raises(ValueError, match=r"--lr 0\.\d+ \(now 0\.01\)"):
        changed.fit(split.train, split.val, checkpoint_dir=tmp_path / "b", resume=True)


def test_freezing_blocks_keeps_them_fixed(tiny_timm, tmp_path):
    split = small_split(tmp_path, per_class=6)
    classes = sorted({i.labels[0] for i in split.train})
    tuner = FineTuner(load_model(str(tiny_timm)), classes, False, fast_config(epochs=1, batch_size=8, freeze_blocks=2))
    groups = tuner.encoder.block_groups()
    before = [[p.detach().clone() for p in group] for group in groups]
    after = []  # the weights at the end of the epoch (fit then restores the best epoch's, maybe epoch 0)
    tuner.fit(
        split.train, split.val, on_epoch_end=lambda r: after.append([[p.detach().clone() for p in g] for g in groups])
    )
    for n, (group, old) in enumerate(zip(after[0], before)):
        changed = any(not torch.equal(p, q) for p, q in zip(group, old))
        assert changed == (n > 2), f"group {n}"  # stem + 2 blocks frozen


def test_multi_label_finetune_and_calibration_beat_the_fixed_threshold(tiled_truth, tmp_path):
    from iconograph.testing import save_tiny_timm

    backbone = save_tiny_timm(tmp_path / "vit64", image_size=64, patch_size=16)
    model = train(
        tiled_truth,
        head="finetune",
        backbone=str(backbone),
        out=tmp_path / "model",
        multi_label=True,
        val=0.25,
        test=0.2,
        finetune=fast_config(epochs=4),
        store=Store(tmp_path / "store"),
        workers=0,
    )
    assert model.multi_label
    history = model.info["training"]["finetune"]["result"]["history"]
    assert min(r["val_loss"] for r in history[1:]) < history[0]["val_loss"]
    split = prepare_split(labelled_items(tiled_truth), val=0.25, test=0.2, multi_label=True)[0]
    embedder = model.embedder(store=Store(tmp_path / "store"), workers=0)
    for part, name in ((split.val, "val"), (split.test, "test")):
        vectors = embedder.embed_images([i.path for i in part]).vectors
        truth = binarize([i.labels for i in part], model.labels)
        scores = model.head.predict_proba(vectors)
        fixed = f1_score(truth, scores >= 0.5, average="macro", zero_division=0)
        calibrated = f1_score(truth, scores >= model.head.thresholds_, average="macro", zero_division=0)
        everything = f1_score(truth, np.ones_like(truth), average="macro", zero_division=0)
        print(f"{name}: macro F1 at 0.5 = {fixed:.3f}, calibrated = {calibrated:.3f}, all labels = {everything:.3f}")
        if name == "val":
            assert calibrated > fixed + 0.05
    assert model.info["metrics"]["val"]["f1_macro"] == pytest.approx(
        f1_score(
            binarize([i.labels for i in split.val], model.labels),
            model.head.predict_proba(embedder.embed_images([i.path for i in split.val]).vectors)
            >= model.head.thresholds_,
            average="macro",
            zero_division=0,
        ),
        abs=1e-9,
    )


def test_finetune_a_clip_image_tower(tiny_clip, tmp_path):
    truth = write_truth(tmp_path / "truth.csv", cifar_rows(per_class=10))
    original = load_model(str(tiny_clip))
    text_before = {k: v.clone() for k, v in original.model.text_model.state_dict().items()}
    model = train(
        truth,
        head="finetune",
        backbone=str(tiny_clip),
        out=tmp_path / "model",
        val=0.25,
        test=0.0,
        finetune=fast_config(epochs=1, batch_size=8, freeze_blocks=1),
        store=Store(tmp_path / "store"),
        workers=0,
    )
    tuned = load_model(str(tmp_path / "model" / "backbone"))
    assert tuned.name == "transformers" and tuned.has_text
    for name, value in tuned.model.text_model.state_dict().items():
        torch.testing.assert_close(value, text_before[name])  # only the image tower trained
    predictions = model.predict(truth, store=Store(tmp_path / "store"), workers=0)
    assert len(predictions) == 40 and all(p.error is None and len(p.labels) == 4 for p in predictions)
    assert np.isclose(sum(ls.score for ls in predictions[0].labels), 1.0)
