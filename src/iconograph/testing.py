"""Build small, randomly initialised models on disk, offline.

Tests and benchmarks need real model directories without a model hub. Everything here writes
ordinary ``save_pretrained`` folders that enter iconograph through the same ``--model DIR``
path a user takes; nothing is special-cased for them.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def clip_bpe_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """OpenAI's CLIP BPE vocabulary, rebuilt from the merges file that open_clip's wheel ships.

    Same order as open_clip's ``SimpleTokenizer``: the byte alphabet, the byte alphabet with
    ``</w>``, one token per merge, then the two special tokens (49,408 entries).
    """
    import open_clip.tokenizer as oc_tok

    with gzip.open(oc_tok.default_bpe(), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    alphabet = list(oc_tok.bytes_to_unicode().values())
    tokens = alphabet + [t + "</w>" for t in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def clip_tokenizer(max_length: int = 77):
    """A transformers ``CLIPTokenizer`` equivalent to OpenAI's, built without any download."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=max_length)


def save_clip(
    directory: str | Path,
    *,
    image_size: int = 224,
    patch_size: int = 32,
    vision_width: int = 768,
    vision_layers: int = 12,
    vision_heads: int = 12,
    text_width: int = 512,
    text_layers: int = 12,
    text_heads: int = 8,
    projection_dim: int = 512,
    max_text_length: int = 77,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised CLIP (defaults: the ViT-B/32 architecture) with its
    tokenizer and image processor, as ``save_pretrained`` would for a hub model."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    directory = Path(directory)
    vocab, _ = clip_bpe_vocab_and_merges()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=text_width,
            intermediate_size=text_width * 4,
            num_hidden_layers=text_layers,
            num_attention_heads=text_heads,
            max_position_embeddings=max_text_length,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=vision_width,
            intermediate_size=vision_width * 4,
            num_hidden_layers=vision_layers,
            num_attention_heads=vision_heads,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer(max_text_length))
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def save_tiny_clip(directory: str | Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A CLIP small enough to run in milliseconds: for tests."""
    return save_clip(
        directory,
        image_size=image_size,
        patch_size=8,
        vision_width=32,
        vision_layers=2,
        vision_heads=2,
        text_width=32,
        text_layers=2,
        text_heads=2,
        projection_dim=16,
        seed=seed,
    )


def save_tiny_siglip(directory: str | Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny randomly initialised SigLIP (sigmoid scoring) with the offline CLIP tokenizer."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    directory = Path(directory)
    vocab, _ = clip_bpe_vocab_and_merges()
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = SiglipConfig(
        text_config=dict(small, vocab_size=len(vocab), max_position_embeddings=64, pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(small, image_size=image_size, patch_size=8),
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    SiglipProcessor(image_processor=image_processor, tokenizer=clip_tokenizer(64)).save_pretrained(directory)
    model.save_pretrained(directory)
    return directory


def save_tiny_open_clip(directory: str | Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny open_clip model in open_clip's own folder format (``open_clip_config.json`` + weights)."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**model_cfg)
    preprocess_cfg = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}
    (directory / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / "open_clip_model.safetensors")
    return directory


def save_tiny_timm(
    directory: str | Path,
    *,
    architecture: str = "test_vit",
    image_size: int = 32,
    seed: int = 0,
    **model_args,
) -> Path:
    """Save a randomly initialised timm backbone (timm's tiny ``test_*`` architectures) as a
    ``save_for_hf`` folder whose preprocessing takes ``image_size`` pixels without cropping.
    ``test_vit`` gets ``img_size=image_size`` and 8-pixel patches unless ``model_args`` say otherwise."""
    import timm
    import torch
    from timm.models import save_for_hf

    directory = Path(directory)
    torch.manual_seed(seed)
    if "vit" in architecture:
        model_args = {"img_size": image_size, "patch_size": 8, **model_args}
    model = timm.create_model(architecture, pretrained=False, num_classes=0, **model_args).eval()
    data_config = {"input_size": (3, image_size, image_size), "crop_pct": 1.0}
    save_for_hf(model, str(directory), safe_serialization=True, data_config=data_config)
    return directory
