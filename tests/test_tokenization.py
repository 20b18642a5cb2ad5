"""The framework-free BPE pieces: the naive loop agrees with the incremental trainer, the flat
layout."""

import numpy as np

from labs import bpe
from week1.data import shakespeare
from week1.tokenization import bytelevel
from week1.tokenization import train as reference


def test_naive_loop_equals_incremental_trainer():
    texts = shakespeare.load_text()[:20_000].splitlines(keepends=True)
    naive = reference.train_naive(texts, 400, min_frequency=2, special_tokens=("<s>",))
    fast = reference.train(texts, 400, min_frequency=2, special_tokens=("<s>",))
    assert naive.merges == fast.merges and naive.vocab == fast.vocab


def test_byte_table_is_a_bijection_of_printable_characters():
    assert sorted(bytelevel.BYTE_TO_CHAR) == list(range(256))
    assert len(set(bytelevel.BYTE_TO_CHAR.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in bytelevel.ALPHABET)
    assert bytelevel.to_symbols(" hi\n") == "ĠhiĊ"


def test_flat_words_layout():
    sym, weight = bpe.flat_words([[5, 6], [7]], [3, 2])
    np.testing.assert_array_equal(sym, [-1, 5, 6, -1, 7, -1, -1])
    np.testing.assert_array_equal(weight, [0, 3, 3, 0, 2, 0, 0])


def test_code_corpus_is_the_stdlib_without_site_packages():
    from week1.data import code

    paths = code.files()
    assert paths == sorted(paths) and len(paths) > 500
    assert not any("site-packages" in p.parts for p in paths)
    texts = code.load_texts(50_000)
    assert sum(map(len, texts)) >= 50_000 and all(isinstance(t, str) for t in texts)


def test_multilingual_corpus_reads_the_yaml_files():
    from week1.data import multilingual

    texts = multilingual.load_texts()
    assert {"english", "chinese", "russian", "hindi"} <= set(texts) and len(texts) >= 20
    assert all(isinstance(t, str) and t for lang in texts.values() for t in lang)
