import numpy as np
import pytest

from iconograph.backends import Scoring
from iconograph.classification.decisions import l2_normalize
from iconograph.classification.zeroshot import LabelError, ZeroShotClassifier, load_templates


class FakeEmbedder:
    """Deterministic text vectors, to check the ensemble and scoring arithmetic by hand."""

    def __init__(self, scoring):
        self._scoring = scoring
        self.vectors = {}

    def scoring(self):
        return self._scoring

    def embed_texts(self, texts):
        rng = np.random.default_rng(0)
        return np.stack([self.vectors.setdefault(t, rng.normal(size=8) * (1 + len(t))) for t in texts])


def test_builtin_template_sets_and_files(tmp_path):
    assert len(load_templates("openai")) == 80
    assert load_templates("photo") == ["This is a photo of {}."]
    assert "a photo of a {}." in load_templates("default")
    (tmp_path / "t.txt").write_text("# comment\na coin showing {}\n\n{} on a coin\n")
    assert load_templates(str(tmp_path / "t.txt")) == ["a coin showing {}", "{} on a coin"]
    with pytest.raises(LabelError):
        load_templates(["no placeholder"])


def test_ensemble_is_the_renormalised_mean_of_normalised_prompt_embeddings():
    embedder = FakeEmbedder(Scoring(100.0))
    clf = ZeroShotClassifier(["zeus", "eagle"], templates=["a {}", "the {} coin"]).prepare(embedder)
    v = embedder.vectors
    expected = l2_normalize(
        np.stack(
            [
                l2_normalize(v["a zeus"]) + l2_normalize(v["the zeus coin"]),
                l2_normalize(v["a eagle"]) + l2_normalize(v["the eagle coin"]),
            ]
        )
    )
    np.testing.assert_allclose(clf.label_embeddings_, expected, atol=1e-12)

    image = np.random.default_rng(1).normal(size=(3, 8))
    logits = 100.0 * l2_normalize(image) @ expected.T
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(image), softmax / softmax.sum(1, keepdims=True), atol=1e-9)


def test_clip_multi_label_scores_each_label_against_the_neutral_prompt():
    embedder = FakeEmbedder(Scoring(50.0))
    clf = ZeroShotClassifier(["zeus", "eagle"], templates=["{}"], multi_label=True, neutral="object").prepare(embedder)
    image = np.random.default_rng(2).normal(size=(4, 8))
    cos = l2_normalize(image) @ l2_normalize(np.stack([embedder.vectors["zeus"], embedder.vectors["eagle"]])).T
    cos_neutral = l2_normalize(image) @ l2_normalize(embedder.vectors["object"])
    expected = 1 / (1 + np.exp(-50.0 * (cos - cos_neutral[:, None])))
    np.testing.assert_allclose(clf.predict_proba(image), expected, atol=1e-9)


def test_sigmoid_models_use_their_own_bias_and_thresholds_pick_labels():
    embedder = FakeEmbedder(Scoring(10.0, -2.0))
    clf = ZeroShotClassifier(
        ["a", "b", "c"], templates=["{}"], multi_label=True, threshold={"a": 0.0, "b": 1.0}
    ).prepare(embedder)
    image = np.random.default_rng(3).normal(size=(2, 8))
    cos = l2_normalize(image) @ l2_normalize(np.stack([embedder.vectors[t] for t in "abc"])).T
    np.testing.assert_allclose(clf.predict_proba(image), 1 / (1 + np.exp(-(10 * cos - 2))), atol=1e-9)
    for labels in clf.predict(image):
        names = [ls.label for ls in labels]
        assert "a" in names and "b" not in names
        assert [ls.score for ls in labels] == sorted((ls.score for ls in labels), reverse=True)
    with pytest.raises(LabelError, match="not classified"):
        ZeroShotClassifier(["a"], threshold={"z": 0.3})
