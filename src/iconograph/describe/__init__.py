"""Item texts from tags, captions and catalogue attributes: Jinja2 templates (English, German) or
an LLM behind any OpenAI-compatible chat-completions endpoint, with a word limit."""

from iconograph.describe.engines import DescribeError, LLMEngine, TemplateEngine, language_name
from iconograph.describe.facts import ItemFacts, gather_facts
from iconograph.describe.run import Describer, Description, describe, make_engine, write_descriptions
from iconograph.describe.words import count_words, limit_words

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
    "write_descriptions",
]
