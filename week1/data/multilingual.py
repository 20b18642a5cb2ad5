"""Multilingual text: the conversation corpora of PyPI `chatterbot-corpus` (28 languages).

The package ships YAML files `data/<language>/<topic>.yml` whose `conversations` are
lists of short utterances; we read the files only (the package itself would import
chatterbot), with PyYAML.
"""

from __future__ import annotations

import yaml

from week1.data import package_dir


def _strings(item) -> list[str]:
    if isinstance(item, str):
        return [item]
    if isinstance(item, list):
        return [s for x in item for s in _strings(x)]
    return []


def load_texts() -> dict[str, list[str]]:
    """language -> its utterances, in sorted file order (files that do not parse are skipped)."""
    root = package_dir("chatterbot_corpus", "chatterbot-corpus") / "data"
    out = {}
    for lang_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        texts = []
        for path in sorted(lang_dir.glob("*.yml")):
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            if isinstance(doc, dict):
                texts += _strings(doc.get("conversations", []))
        if texts:
            out[lang_dir.name] = texts
    return out
