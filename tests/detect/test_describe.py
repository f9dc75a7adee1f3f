"""Item texts: templates in German and English within the word limit; the LLM engine against a real
HTTP server on 127.0.0.1 (request contents, word limit, timeouts, HTTP errors, resuming)."""

from __future__ import annotations

import csv
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import RACCOON, run_cli

EXAMPLE_TEXT = "Zeitlos elegant: Diese Pumps aus feinem Veloursleder setzen Akzente. Ein Klassiker für jeden Anlass."
ITEMS = [
    {
        "path": "raccoon-1.jpg",
        "title": "Slingpumps",
        "marke": "Elegantia",
        "farbe": "schwarz",
        "obermaterial": "Leder",
        "absatzhöhe": "7 cm",
        "tags": "elegant;spitz",
    },
    {
        "path": "raccoon-2.jpg",
        "title": "Sneaker LONG",
        "marke": "Laufwerk",
        "farbe": "weiß",
        "obermaterial": "Textil",
        "absatzhöhe": "",
        "tags": "sportlich",
    },
    {
        "path": "raccoon-3.jpg",
        "title": "Stiefel SLOW",
        "marke": "Nordweg",
        "farbe": "braun",
        "obermaterial": "Nubuk",
        "absatzhöhe": "3 cm",
        "tags": "",
    },
    {
        "path": "raccoon-4.jpg",
        "title": "Sandalette BROKEN",
        "marke": "",
        "farbe": "rot",
        "obermaterial": "Lack",
        "absatzhöhe": "",
        "tags": "",
    },
    {
        "path": "raccoon-5.jpg",
        "title": "Loafer FLAKY",
        "marke": "Hafen",
        "farbe": "blau",
        "obermaterial": "Wildleder",
        "absatzhöhe": "",
        "tags": "",
    },
    {
        "path": "raccoon-6.jpg",
        "title": "Ballerina",
        "marke": "Tanz",
        "farbe": "rosa",
        "obermaterial": "Satin",
        "absatzhöhe": "",
        "tags": "festlich",
    },
]


@pytest.fixture
def items_csv(tmp_path):
    path = tmp_path / "items.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ITEMS[0]))
        writer.writeheader()
        for item in ITEMS:
            writer.writerow({**item, "path": str(RACCOON / "images" / item["path"])})
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize(
    "language, words",
    [
        (
            "de",
            ["Slingpumps von Elegantia in schwarz", "Material: Leder", "Merkmale: elegant, spitz", "Absatzhöhe: 7 cm"],
        ),
        ("en", ["Slingpumps by Elegantia in schwarz", "Made of Leder", "Features: elegant, spitz", "Absatzhöhe: 7 cm"]),
    ],
)
def test_template_texts_in_german_and_english(items_csv, tmp_path, language, words):
    out = tmp_path / f"{language}.jsonl"
    run_cli("describe", items_csv, "--attributes", items_csv, "--language", language, "--out", out, check=True)
    full = read_jsonl(out)
    assert [r["path"] for r in full] == [str(RACCOON / "images" / i["path"]) for i in ITEMS]
    assert all(r["error"] is None and r["language"] == language and r["engine"] == "template" for r in full)
    assert all(phrase in full[0]["text"] for phrase in words) and not full[0]["truncated"]
    assert all(r["words"] == len(r["text"].split()) <= 120 for r in full)

    result = run_cli(
        "describe",
        items_csv,
        "--attributes",
        items_csv,
        "--language",
        language,
        "--max-words",
        "9",
        "--out",
        out,
        check=True,
    )
    short = read_jsonl(out)
    assert all(r["words"] == len(r["text"].split()) <= 9 for r in short)
    first = short[0]
    assert first["truncated"] and full[0]["text"].startswith(first["text"]) and first["text"].endswith(".")
    assert first["note"] == f"cut from {full[0]['words']} to {first['words']} words at a sentence end"
    assert "cut to the word limit" in result.stderr


def test_template_from_folder_source_with_tags_and_captions(items_csv, tmp_path):
    tags = tmp_path / "tags.jsonl"
    tags.write_text(
        json.dumps(
            {
                "path": str(RACCOON / "images" / "raccoon-1.jpg"),
                "labels": [{"label": "pump", "score": 0.9}, {"label": "boot", "score": 0.1}],
                "error": None,
            }
        )
        + "\n"
    )
    captions = tmp_path / "captions.jsonl"
    captions.write_text(
        json.dumps(
            {
                "path": str(RACCOON / "images" / "raccoon-1.jpg"),
                "caption": "a black shoe on a white floor",
                "error": None,
            }
        )
        + "\n"
    )
    images = tmp_path / "images"
    images.mkdir()
    for name in ("raccoon-1.jpg", "raccoon-7.jpg"):
        (images / name).symlink_to(RACCOON / "images" / name)
    out = tmp_path / "d.jsonl"
    run_cli(
        "describe",
        images,
        "--attributes",
        items_csv,
        "--tags",
        tags,
        "--min-tag-score",
        "0.5",
        "--captions",
        captions,
        "--out",
        out,
        check=True,
    )
    described, unknown = read_jsonl(out)
    assert (
        "Features: elegant, spitz, pump." not in described["text"]
        and "pump" in described["text"]
        and "boot" not in described["text"]
    )
    assert "The photo shows a black shoe on a white floor." in described["text"]
    assert unknown["text"] is None and "no attributes, tags or caption" in unknown["error"]


def test_unknown_template_language_is_a_usage_error(items_csv):
    result = run_cli("describe", items_csv, "--attributes", items_csv, "--language", "fr")
    assert result.returncode == 2 and "no template for language 'fr'" in result.stderr


# ---- the LLM engine against a small OpenAI-compatible server --------------------------------------


class ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.requests: list[tuple[dict, dict]] = []
        self.flaky_failed = False
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append((dict(self.headers), body))
        user = body["messages"][-1]["content"]
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": f"no route {self.path}"}})
        if "SLOW" in user:
            time.sleep(3)
        if "BROKEN" in user:
            return self.reply(500, {"error": {"message": "model overloaded"}})
        if "FLAKY" in user:
            with self.server.lock:
                failed_before, self.server.flaky_failed = self.server.flaky_failed, True
            if not failed_before:
                return self.reply(503, {"error": {"message": "try again"}})
        if "LONG" in user:
            text = " ".join(f"Satz {i} beschreibt den Schuh ausführlich mit vielen Worten." for i in range(30))
        else:
            material = next(line.split(": ", 1)[1] for line in user.splitlines() if line.startswith("- obermaterial"))
            text = f"Ein schöner Schuh aus {material}. Bequem und vielseitig."
        self.reply(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            },
        )

    def reply(self, status: int, payload: dict):
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)


@pytest.fixture
def chat_server():
    server = ChatServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_llm_engine_over_http(items_csv, chat_server, tmp_path):
    example = tmp_path / "example.txt"
    example.write_text(EXAMPLE_TEXT, encoding="utf-8")
    out = tmp_path / "texts.jsonl"
    args = [
        "describe",
        items_csv,
        "--attributes",
        items_csv,
        "--engine",
        "llm",
        "--llm-url",
        chat_server.url,
        "--llm-model",
        "tiny-chat",
        "--example-text",
        example,
        "--language",
        "de",
        "--max-words",
        "40",
        "--timeout",
        "1",
        "--retries",
        "1",
        "--store",
        tmp_path / "store",
        "--out",
        out,
    ]
    result = run_cli(*args, env={"ICONOGRAPH_LLM_API_KEY": "sekret"})
    assert result.returncode == 0, result.stderr
    records = {r["path"].rsplit("/", 1)[1]: r for r in read_jsonl(out)}
    assert list(records) == [i["path"] for i in ITEMS]  # every item, in input order

    ok = records["raccoon-1.jpg"]
    assert (
        ok["text"] == "Ein schöner Schuh aus Leder. Bequem und vielseitig."
        and ok["error"] is None
        and ok["engine"] == "llm"
    )
    long = records["raccoon-2.jpg"]
    assert long["truncated"] and long["words"] <= 40 and long["text"].endswith(".")
    assert long["note"] == f"cut from 270 to {long['words']} words at a sentence end"
    slow = records["raccoon-3.jpg"]
    assert (
        slow["text"] is None
        and slow["error"].startswith("LLM request timed out after 1 s")
        and "after 2 attempts" in slow["error"]
    )
    broken = records["raccoon-4.jpg"]
    assert (
        broken["text"] is None
        and broken["error"] == "LLM endpoint returned HTTP 500: model overloaded (after 2 attempts)"
    )
    assert records["raccoon-5.jpg"]["text"].startswith("Ein schöner Schuh aus Wildleder")  # succeeded on the retry
    assert records["raccoon-6.jpg"]["error"] is None
    assert "6 items: 4 described, 2 failed, 1 cut to the word limit" in result.stderr

    headers, body = next((h, b) for h, b in chat_server.requests if "Slingpumps" in b["messages"][-1]["content"])
    assert headers["Authorization"] == "Bearer sekret" and body["model"] == "tiny-chat"
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert EXAMPLE_TEXT in system and "German" in system and "at most 40 words" in system
    for fact in (
        "- marke: Elegantia",
        "- farbe: schwarz",
        "- obermaterial: Leder",
        "- absatzhöhe: 7 cm",
        "- tags: elegant, spitz",
    ):
        assert fact in user
    assert "at most 40 words" in user

    # a second run asks again only for what failed; the rest comes from the cache
    before = len(chat_server.requests)
    rerun = run_cli(*args, env={"ICONOGRAPH_LLM_API_KEY": "sekret"})
    assert rerun.returncode == 0
    asked = [b["messages"][-1]["content"] for _, b in chat_server.requests[before:]]
    assert len(asked) == 4 and all("SLOW" in a or "BROKEN" in a for a in asked)
    again = {r["path"].rsplit("/", 1)[1]: r for r in read_jsonl(out)}
    assert {k: v["text"] for k, v in again.items()} == {k: v["text"] for k, v in records.items()}


def test_unreachable_endpoint_fails_each_item_with_one_line(items_csv, tmp_path):
    result = run_cli(
        "describe",
        items_csv,
        "--attributes",
        items_csv,
        "--engine",
        "llm",
        "--llm-url",
        "http://127.0.0.1:9/v1",
        "--llm-model",
        "m",
        "--retries",
        "0",
        "--out",
        tmp_path / "t.jsonl",
    )
    assert result.returncode == 0
    records = read_jsonl(tmp_path / "t.jsonl")
    assert len(records) == len(ITEMS)
    assert all(r["text"] is None and r["error"].startswith("cannot reach the LLM endpoint") for r in records)
    assert run_cli("describe", items_csv, "--engine", "llm", "--llm-model", "m").returncode == 2  # no --llm-url


# ---- texts read as written by a person -------------------------------------------------------------

CATALOGUE = [
    {
        "path": "coin.jpg",
        "titel": "Tetradrachme.",
        "hersteller": "Münzstätte Athen",
        "farbe": "silbern.",
        "material": "Silber.",
        "datierung": "um 450 v. Chr.",
        "motiv": "Zeus, entführend..",
        "frage": "Echt?",
        "zustand": "sehr schön!",
        "provenienz": "Sammlung Müller ...",
        "zitat": "Er sagte „Ja.“",
        "tags": "antik.;Eule",
    },
    {"path": "vase.jpg", "titel": "Vase", "hersteller": None, "farbe": "", "material": "  ", "motiv": ".", "tags": ""},
    {"path": "bowl.jpg", "titel": None, "kategorie": "Schale", "hersteller": "Acme Inc.", "datierung": None},
]
WRITTEN = {
    "de": "Tetradrachme von Münzstätte Athen in silbern. Material: Silber. Datierung: um 450 v. Chr. "
    "Motiv: Zeus, entführend. Frage: Echt? Zustand: sehr schön! Provenienz: Sammlung Müller… "
    "Zitat: Er sagte „Ja.“ Merkmale: antik, Eule.",
    "en": "Tetradrachme by Münzstätte Athen in silbern. Made of Silber. Datierung: um 450 v. Chr. "
    "Motiv: Zeus, entführend. Frage: Echt? Zustand: sehr schön! Provenienz: Sammlung Müller… "
    "Zitat: Er sagte „Ja.“ Features: antik, Eule.",
}


@pytest.mark.parametrize("language", ["de", "en"])
def test_template_punctuation_reads_as_written(tmp_path, language):
    table = tmp_path / "catalogue.jsonl"
    table.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in CATALOGUE), encoding="utf-8")
    out = tmp_path / "texts.jsonl"
    run_cli("describe", table, "--attributes", table, "--language", language, "--out", out, check=True)
    texts = [record["text"] for record in read_jsonl(out)]
    assert texts[0] == WRITTEN[language]
    assert texts[1] == "Vase."
    assert texts[2] == {"de": "Schale von Acme Inc.", "en": "Schale by Acme Inc."}[language]
    for text in texts:
        assert "None" not in text and ".." not in text and "  " not in text
        assert not re.search(r"\s[.,;:!?…]", text), text  # no space before punctuation
        assert not re.search(r":\s*([.!?…]|$)", text), text  # no "label: ." for an empty field
        assert not re.search(r"[.!?…]{2}", text), text  # exactly one terminal mark per sentence
        assert re.search(r"[.!?…][“”»«\"')]*$", text), text


def test_say_joins_values_into_one_sentence():
    from iconograph.description.engines import full_sentence, say

    assert say("Datierung:", "300 v. Chr.") == "Datierung: 300 v. Chr."
    assert say("Stil:", "entführend..") == "Stil: entführend."
    assert say("Frage:", "echt ?") == "Frage: echt?"
    assert say("Ende:", "und dann...") == say("Ende:", "und dann . . .") == "Ende: und dann…"
    assert say("Material:", None) == say("Material:", " ") == say("Material:", ".") == ""
    assert full_sentence("iPhone-Hülle  in  rot") == "iPhone-Hülle in rot."
