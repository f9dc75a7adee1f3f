"""Describing images in words: captions (BLIP-class models, cached image jobs) and item texts from
tags, captions and catalogue attributes, by Jinja2 templates (English, German) or an LLM behind any
OpenAI-compatible chat-completions endpoint, with a word limit."""

from iconograph.description.describe import (
    Describer,
    Description,
    describe,
    make_engine,
    run_describe,
    write_descriptions,
)
from iconograph.description.engines import DescribeError, LLMEngine, TemplateEngine, language_name
from iconograph.description.facts import ItemFacts, gather_facts
from iconograph.description.words import count_words, limit_words

__all__ = [
    "DescribeError",
    "Describer",
    "Description",
    "ItemFacts",
    "LLMEngine",
    "TemplateEngine",
    "count_words",
    "describe",
    "gather_facts",
    "language_name",
    "limit_words",
    "make_engine",
    "run_describe",
    "write_descriptions",
]
