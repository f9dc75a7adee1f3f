"""Two ways from facts to an item text: Jinja2 templates (deterministic) and an LLM behind any
OpenAI-compatible chat-completions endpoint (httpx). Both return plain text; the word limit is
enforced by the caller (:func:`iconograph.description.words.limit_words`)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from iconograph.description.facts import ItemFacts
from iconograph.engine.fingerprint import digest
from iconograph.errors import OptionError, UserError

LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "it": "Italian",
    "es": "Spanish",
    "nl": "Dutch",
    "pl": "Polish",
    "da": "Danish",
    "sv": "Swedish",
}
API_KEY_VARIABLES = ("ICONOGRAPH_LLM_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class DescribeError(UserError):
    """One item that could not be described; ``str(error)`` is one line."""


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code.lower(), code)


# ---- templates ----------------------------------------------------------------------------------


class TemplateEngine:
    """Renders ``description/templates/<language>.txt.j2`` (shipped: ``en``, ``de``) or a template file.

    The template sees ``item`` (:class:`ItemFacts`: ``title``, ``category``, ``brand``,
    ``colour``, ``material``, ``details``, ``tags``, ``caption``, ``attributes``), ``language`` and
    ``max_words``. Whitespace in the result is collapsed to single spaces.
    """

    name = "template"

    def __init__(self, template: str | Path | None = None):
        self.template = Path(template) if template else None

    @cached_property
    def _environment(self):
        from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined

        loaders = [PackageLoader("iconograph", "description/templates")]
        if self.template is not None:
            loaders.insert(0, FileSystemLoader(str(self.template.parent)))
        environment = Environment(loader=ChoiceLoader(loaders), autoescape=False, undefined=StrictUndefined)
        environment.filters["sentence"] = _sentence
        environment.filters["clause"] = _clause
        environment.filters["full_sentence"] = full_sentence
        environment.globals["say"] = say
        return environment

    def available_languages(self) -> list[str]:
        names = self._environment.list_templates(filter_func=lambda n: n.endswith(".txt.j2"))
        return sorted(n.removesuffix(".txt.j2") for n in names)

    def describe(self, facts: ItemFacts, language: str, max_words: int) -> str:
        from jinja2 import TemplateError, TemplateNotFound

        name = self.template.name if self.template else f"{language}.txt.j2"
        try:
            template = self._environment.get_template(name)
        except TemplateNotFound:
            raise DescribeError(
                f"no template for language '{language}' (shipped: {', '.join(self.available_languages())}); "
                f"pass --template FILE.j2 or use --engine llm"
            ) from None
        try:
            text = template.render(item=facts, language=language, max_words=max_words)
        except TemplateError as exc:
            raise DescribeError(f"template {name} failed: {' '.join(str(exc).split())}") from None
        return " ".join(text.split())

    def settings(self) -> dict:
        return {"engine": self.name, "template": str(self.template) if self.template else None}


TERMINAL_MARKS = "?!…."
QUOTED_END = re.compile(r"[.!?…][\"'»«“”‘’)\]]+$")
# A full stop that belongs to an abbreviation ("300 v. Chr.", "Acme Inc.", "J. S. Bach") stays
# inside a sentence and also serves as the sentence's own full stop.
ABBREVIATIONS = {
    "chr", "jh", "jhd", "jhdt", "ca", "bzw", "usw", "etc", "ggf", "evtl", "inkl", "zzgl", "vgl",
    "hrsg", "nr", "str", "st", "dr", "prof", "inc", "ltd", "co", "corp", "vs", "approx",
}  # fmt: skip


def _blank(value) -> bool:
    return value is None or not str(value).strip().rstrip(TERMINAL_MARKS).strip()


def _is_abbreviation(text: str) -> bool:
    word = text.split()[-1] if text.split() else ""
    stem = word.rstrip(".")
    return word.endswith(".") and (len(stem) == 1 or "." in stem or stem.lower() in ABBREVIATIONS)


def _clause(value) -> str:
    """A value placed inside a sentence: trimmed, without a sentence's full stop (an abbreviation's stays)."""
    text = "" if value is None else " ".join(str(value).split())
    while text.endswith(".") and not text.endswith("...") and not _is_abbreviation(text):
        text = text[:-1].rstrip()
    return text


def _capital(text: str) -> str:
    """First letter upper-case, unless the first word is cased on purpose ("iPhone", "eBay")."""
    first = text.split(" ", 1)[0]
    return text if any(c.isupper() for c in first[1:]) else text[:1].upper() + text[1:]


def _sentence(value) -> str:
    """First letter upper-case, no trailing full stop (for templates that add their own)."""
    return _capital(_clause(value))


def full_sentence(text) -> str:
    """``text`` as one sentence as a person writes it: single spaces, none before punctuation, a capital
    first letter and exactly one terminal mark ("v. Chr." and "Echt?" keep theirs, "... ." becomes "…").
    Empty for a blank text."""
    if _blank(text):
        return ""
    text = re.sub(r"\s+([,;:.!?…])", r"\1", " ".join(str(text).split()))
    if QUOTED_END.search(text):  # „Ja.“ ends on its own mark
        return _capital(text)
    body = text.rstrip(TERMINAL_MARKS + " ")
    marks = text[len(body) :].replace("...", "…")
    return _capital(body) + next((mark for mark in "?!…" if mark in marks), ".")


def say(*parts) -> str:
    """``parts`` joined into one sentence (see :func:`full_sentence`); nothing when any part is blank,
    so an empty field never leaves a "Material: ." behind."""
    if any(_blank(part) for part in parts):
        return ""
    return full_sentence(" ".join(str(part) for part in parts))


# ---- LLM ------------------------------------------------------------------------------------------


class LLMEngine:
    """Chat completions at ``url`` (a base URL such as ``https://api.openai.com/v1``, or the full
    ``.../chat/completions`` address). The API key comes from ``api_key`` or the first set of
    ``ICONOGRAPH_LLM_API_KEY``, ``OPENAI_API_KEY`` (none is sent when none is set, as local
    servers expect). Timeouts, connection errors, HTTP 429 and 5xx are retried ``retries`` times
    with exponential back-off; then the item fails with a one-line reason."""

    name = "llm"

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: Sequence[str] = API_KEY_VARIABLES,
        example_text: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 1.0,
        temperature: float | None = 0.2,
    ):
        if not url:
            raise OptionError("--engine llm needs --llm-url (an OpenAI-compatible endpoint)")
        if not model:
            raise OptionError("--engine llm needs --llm-model")
        self.url = url.rstrip("/")
        self.endpoint = self.url if self.url.endswith("/chat/completions") else self.url + "/chat/completions"
        self.model = model
        self.api_key = api_key or next((os.environ[v] for v in api_key_env if os.environ.get(v)), None)
        self.example_text = example_text.strip() if example_text else None
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.temperature = temperature

    @cached_property
    def client(self):
        try:
            import httpx
        except ImportError:
            raise OptionError("the llm engine needs httpx: pip install 'iconograph[describe]'") from None

        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return httpx.Client(timeout=self.timeout, headers=headers)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def messages(self, facts: ItemFacts, language: str, max_words: int) -> list[dict]:
        name = language_name(language)
        system = (
            "You write item descriptions for a catalogue or online shop. "
            f"Write in {name} (language code '{language}'). Use at most {max_words} words. "
            "Use only the facts given; do not invent materials, brands, sizes or features. "
            "Return only the description as running text: no title, no list, no quotation marks."
        )
        if self.example_text:
            system += (
                "\n\nMatch the tone, length and structure of this example description. It is a style guide "
                f"only; its facts do not belong to the item:\n<example>\n{self.example_text}\n</example>"
            )
        lines = ["Facts about the item:"]
        lines += [f"- {key}: {value}" for key, value in facts.attributes.items()]
        if facts.tags:
            lines.append(f"- tags: {', '.join(facts.tags)}")
        if facts.caption:
            lines.append(f"- what the photo shows (automatic caption, in English): {facts.caption}")
        lines.append(f"\nWrite the description in {name}, at most {max_words} words.")
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]

    def request_body(self, facts: ItemFacts, language: str, max_words: int) -> dict:
        body = {"model": self.model, "messages": self.messages(facts, language, max_words)}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def request_key(self, body: dict) -> str:
        return digest(self.endpoint, body)

    def describe(self, facts: ItemFacts, language: str, max_words: int) -> str:
        return self.complete(self.request_body(facts, language, max_words))

    def complete(self, body: dict) -> str:
        import httpx

        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.post(self.endpoint, json=body)
            except httpx.TimeoutException:
                reason = f"LLM request timed out after {self.timeout:g} s ({self.endpoint})"
                continue
            except httpx.TransportError as exc:
                reason = (
                    f"cannot reach the LLM endpoint {self.endpoint}: {' '.join(str(exc).split()) or type(exc).__name__}"
                )
                continue
            if response.status_code < 400:
                return _content(response)
            reason = f"LLM endpoint returned HTTP {response.status_code}: {_short(response.text)}"
            if response.status_code not in RETRY_STATUS:
                raise DescribeError(reason)
        raise DescribeError(reason + (f" (after {self.retries + 1} attempts)" if self.retries else ""))

    def settings(self) -> dict:
        return {"engine": self.name, "endpoint": self.endpoint, "model": self.model, "temperature": self.temperature}


def _content(response) -> str:
    try:
        data = response.json()
        text = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise DescribeError(
            f"LLM response is not a chat completion (no choices[0].message.content): {_short(response.text)}"
        ) from None
    if not isinstance(text, str) or not text.strip():
        raise DescribeError("LLM returned an empty description")
    return text.strip()


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    try:
        message = json.loads(text).get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            text = str(message)
    except (ValueError, AttributeError):
        pass
    return text[:limit] or "(empty body)"
