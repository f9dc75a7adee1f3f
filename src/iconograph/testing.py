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


def save_owlvit(
    directory: str | Path,
    *,
    version: int = 1,
    image_size: int = 768,
    patch_size: int = 32,
    vision_width: int = 768,
    vision_layers: int = 12,
    vision_heads: int = 12,
    text_width: int = 512,
    text_layers: int = 12,
    text_heads: int = 8,
    max_text_length: int = 16,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised OWL-ViT (``version=1``; defaults: the B/32 architecture) or
    OWLv2 (``version=2``) detector with its CLIP tokenizer and image processor."""
    import torch
    import transformers as tf

    config_cls, model_cls, image_processor_cls, processor_cls = {
        1: (tf.OwlViTConfig, tf.OwlViTForObjectDetection, tf.OwlViTImageProcessor, tf.OwlViTProcessor),
        2: (tf.Owlv2Config, tf.Owlv2ForObjectDetection, tf.Owlv2ImageProcessor, tf.Owlv2Processor),
    }[version]
    directory = Path(directory)
    vocab, _ = clip_bpe_vocab_and_merges()
    config = config_cls(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=text_width,
            intermediate_size=text_width * 4,
            num_hidden_layers=text_layers,
            num_attention_heads=text_heads,
            max_position_embeddings=max_text_length,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=vision_width,
            intermediate_size=vision_width * 4,
            num_hidden_layers=vision_layers,
            num_attention_heads=vision_heads,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=text_width,  # the class head compares projected text with text-width patch embeddings
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    _spread_detection_heads(model)
    size = {"height": image_size, "width": image_size}
    image_processor = image_processor_cls(size=size, crop_size=size) if version == 1 else image_processor_cls(size=size)
    tokenizer = clip_tokenizer(max_text_length)
    tokenizer.pad_token = "!"  # OWL-ViT pads with token 0 ("!"): a query whose first token is 0 counts as padding
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def save_tiny_owlvit(directory: str | Path, *, version: int = 1, image_size: int = 64, seed: int = 0) -> Path:
    """An OWL-ViT (or OWLv2) small enough for tests: 64 px input, a 4x4 patch grid."""
    return save_owlvit(
        directory,
        version=version,
        image_size=image_size,
        patch_size=16,
        vision_width=32,
        vision_layers=2,
        vision_heads=2,
        text_width=32,
        text_layers=2,
        text_heads=2,
        seed=seed,
    )


def _spread_detection_heads(model) -> None:
    """Re-draw the box and class heads with std 1/sqrt(fan_in): transformers initialises them with
    std 1, which saturates every random box and score at 0 or 1 and makes comparisons meaningless."""
    import torch

    with torch.no_grad():
        for head in (model.box_head, model.class_head):
            for module in head.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(0.0, module.in_features**-0.5)
                    module.bias.zero_()


BLIP_TEST_WORDS = (  # the tiny BLIP vocabulary, besides special tokens and single letters
    "a an the of in on with and is are at by to from photo picture image close up view two three "
    "dog cat bird raccoon tree grass black white red blue green brown shoe shoes leather coin man woman "
    "sitting standing lying next front small large old new"
)


def blip_tokenizer(directory: str | Path):
    """A BERT-style (uncased WordPiece) tokenizer for BLIP, built from a small vocabulary written
    to ``directory/vocab.txt``: special tokens, BLIP's ``[DEC]`` start token, test words, letters."""
    from transformers import BertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", ".", ",", "!", "?"]
    words = BLIP_TEST_WORDS.split()
    tokens += words + [t for t in letters if t not in words] + [f"##{t}" for t in letters]
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    return BertTokenizer(str(vocab), do_lower_case=True, bos_token="[DEC]", model_max_length=64)


def save_tiny_blip(directory: str | Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A randomly initialised BLIP captioner (``BlipForConditionalGeneration``) small enough for
    tests, saved with its processor (image processor + WordPiece tokenizer)."""
    import tempfile

    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    directory = Path(directory)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = blip_tokenizer(scratch)
    vocab = tokenizer.get_vocab()
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=vocab["[DEC]"],
            eos_token_id=vocab["[SEP]"],
            sep_token_id=vocab["[SEP]"],
            pad_token_id=vocab["[PAD]"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8,
            initializer_range=0.02,  # BLIP's default (1e-10) makes every image look the same
        ),
        projection_dim=32,
        image_text_hidden_size=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():  # default init makes cross-attention so weak that every image gets the same caption
        for name, module in model.text_decoder.named_modules():
            if "crossattention" in name and isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, 2 * module.in_features**-0.5)
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
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


def save_tiny_sam(directory: str | Path, *, image_size: int = 64, seed: int = 0, full_size: bool = False) -> Path:
    """A SAM with its ``SamProcessor``: 64 px input, an 8x8 embedding grid, two-layer towers; or,
    with ``full_size``, the SAM-ViT-base architecture (1024 px, 12 layers) with random weights.

    The vision tower is drawn with std 0.02 (its config's default draws 1e-10, which makes every
    embedding, and so every mask, nearly the same); ``num_pos_feats`` is half the prompt
    encoder's width, which box prompts require."""
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    torch.manual_seed(seed)
    if full_size:
        config = SamConfig(vision_config={"initializer_range": 0.02})
        image_size = 1024
    else:
        config = SamConfig(
            vision_config=dict(
                hidden_size=32,
                output_channels=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=image_size,
                patch_size=8,
                window_size=4,
                global_attn_indexes=[1],
                num_pos_feats=16,
                mlp_dim=64,
                initializer_range=0.02,
            ),
            prompt_encoder_config=dict(hidden_size=32, image_size=image_size, patch_size=8, mask_input_channels=4),
            mask_decoder_config=dict(
                hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
            ),
        )
    model = SamModel(config).eval()
    processor = SamProcessor(
        SamImageProcessor(size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size})
    )
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def save_tiny_sam2(directory: str | Path, *, image_size: int = 64, seed: int = 0) -> Path:
    """A SAM2 (``Sam2Model``) with its ``Sam2Processor``: 64 px input, a four-stage Hiera of one or
    two blocks (feature maps of 16, 8 and 4 px), 32-wide prompt encoder and mask decoder.

    Every weight gets N(0, 0.2) noise on top of its initialisation (which leaves the mask logits
    within 1e-5 of zero and the predicted IoUs of the three masks alike, so the best mask and
    the binary masks would be decided by float noise)."""
    import torch
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    hidden = 32
    levels = [[image_size // stride] * 2 for stride in (4, 8, 16)]
    config = Sam2Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam2_hiera_det_model",
                hidden_size=8,
                image_size=[image_size, image_size],
                blocks_per_stage=[1, 1, 2, 1],
                embed_dim_per_stage=[8, 16, 32, 64],
                num_attention_heads_per_stage=[1, 1, 2, 2],
                window_size_per_stage=[4, 4, 4, 2],
                global_attention_blocks=[3],  # not a stage's first block (those pool their queries)
                window_positional_embedding_background_size=[2, 2],
            ),
            backbone_channel_list=[64, 32, 16, 8],
            backbone_feature_sizes=levels,
            fpn_hidden_size=hidden,
        ),
        prompt_encoder_config=dict(hidden_size=hidden, image_size=image_size, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
    torch.manual_seed(seed)
    model = Sam2Model(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    processor = Sam2Processor(Sam2ImageProcessor(size={"height": image_size, "width": image_size}))
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def save_tiny_clipseg(directory: str | Path, *, image_size: int = 64, seed: int = 0) -> Path:
    """A CLIPSeg (``CLIPSegForImageSegmentation``) with its ``CLIPSegProcessor``: 64 px input, 16 px
    patches, two-layer towers, a two-layer decoder; the offline CLIP tokenizer."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    vocab, _ = clip_bpe_vocab_and_merges()
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPSegConfig(
        text_config=dict(
            small,
            vocab_size=len(vocab),
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(small, image_size=image_size, patch_size=16),
        projection_dim=16,
        extract_layers=[0, 1],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        conditional_layer=0,
    )
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(config).eval()
    image_processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    directory = Path(directory)
    model.save_pretrained(directory)
    CLIPSegProcessor(image_processor=image_processor, tokenizer=clip_tokenizer()).save_pretrained(directory)
    return directory


def save_tiny_sam3(directory: str | Path, *, image_size: int = 56, seed: int = 0) -> Path:
    """A SAM3 (``Sam3Model``, promptable concept segmentation) with its ``Sam3Processor``: 56 px
    input, 14 px patches (a 4x4 grid), one- and two-layer towers, 10 queries; the offline CLIP
    tokenizer (32 tokens, as SAM3's processor pads to)."""
    import torch
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    hidden = 32
    small = dict(hidden_size=hidden, intermediate_size=64, num_attention_heads=2)
    grid = image_size // 14
    config = Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                small,
                model_type="sam3_vit_model",
                num_hidden_layers=2,
                image_size=image_size,
                patch_size=14,
                window_size=2,
                global_attn_indexes=[1],
                pretrain_image_size=image_size,
            ),
            fpn_hidden_size=hidden,
            backbone_feature_sizes=[[grid * 4, grid * 4], [grid * 2, grid * 2], [grid, grid]],
        ),
        text_config=dict(
            small, vocab_size=49408, projection_dim=hidden, num_hidden_layers=1, max_position_embeddings=32
        ),
        geometry_encoder_config=dict(small, num_layers=1),
        detr_encoder_config=dict(small, num_layers=1),
        detr_decoder_config=dict(small, num_layers=1, num_queries=10),
        mask_decoder_config=dict(hidden_size=hidden, num_attention_heads=2),
    )
    torch.manual_seed(seed)
    model = Sam3Model(config).eval()
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=clip_tokenizer(32),
    )
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


class SlowJob:
    """An image job that waits ``seconds`` before each batch of ``job`` and is otherwise ``job``.

    For fault tests: a run that would finish in a blink is still under way when a test kills one
    of its processes. It reaches Ray actors as ``job`` does (``for_worker``), plus the wait.
    """

    def __init__(self, job, seconds: float):
        self.job = job
        self.seconds = seconds

    def __getattr__(self, name: str):
        if name == "job":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.job, name)

    def run_batch(self, pixels, sizes):
        import time

        time.sleep(self.seconds)
        return self.job.run_batch(pixels, sizes)

    def for_worker(self):
        from functools import partial

        from iconograph.engine.ray_engine import worker_factory

        return partial(_slow_job, worker_factory(self.job), self.seconds)


def _slow_job(factory, seconds: float) -> SlowJob:
    return SlowJob(factory(), seconds)


class KillingJob(SlowJob):
    """An image job whose process dies (SIGKILL) on any batch holding an image of ``size``
    (width, height), as an actor killed by the out-of-memory killer on one huge image would.
    For fault tests; otherwise ``job``."""

    def __init__(self, job, size: tuple[int, int]):
        super().__init__(job, 0.0)
        self.size = tuple(size)

    def run_batch(self, pixels, sizes):
        import os
        import signal

        if self.size in [tuple(s) for s in sizes]:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.job.run_batch(pixels, sizes)

    def for_worker(self):
        from functools import partial

        from iconograph.engine.ray_engine import worker_factory

        return partial(_killing_job, worker_factory(self.job), self.size)


def _killing_job(factory, size) -> KillingJob:
    return KillingJob(factory(), size)
