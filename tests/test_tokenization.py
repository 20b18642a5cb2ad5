"""The framework-free BPE pieces: the naive loop agrees with the incremental trainer, the flat layout."""
import numpy as np

from labs import bpe
from labs.data import shakespeare
from labs.tokenization import bytelevel
from labs.tokenization import train as reference


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
