"""Bad input to the BPE trainers, the tokenizer.json loader and encode/decode: the library raises
ValueError (bad values) or TypeError (bad types) with one clear line; the CLI prints that line."""

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from week1.config import UsageError
from week1.tokenization import train as reference
from week1.tokenization.model import BPE


def trainers_under_test():
    out = {"reference": reference.train, "naive": reference.train_naive}
    for name in ("week1_jax", "week1_torch"):
        module = pytest.importorskip(f"{name}.bpe")
        out[name] = module.train
    return out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(texts=["abc"], vocab_size=100), "vocab_size=100"),
        (dict(texts=["abc"], vocab_size=257, special_tokens=("<a>", "<b>")), "vocab_size=257"),
        (dict(texts=[], vocab_size=300), "empty corpus"),
        (dict(texts=["", ""], vocab_size=300), "empty corpus"),
        (dict(texts=["ok", 3], vocab_size=300), "texts[1] is int"),
        (dict(texts=["abc"], vocab_size=300, special_tokens=("",)), "special token ''"),
        (dict(texts=["abc"], vocab_size=300, special_tokens=("<s>", "<s>")), "duplicates"),
        (dict(texts=["abc"], vocab_size=300, min_frequency=-1), "min_frequency=-1"),
    ],
)
def test_bad_training_input(kwargs, message):
    for train in trainers_under_test().values():
        with pytest.raises(
            (ValueError, TypeError), match=message.replace("[", r"\[").replace("]", r"\]")
        ):
            train(**kwargs)


def test_corrupt_and_foreign_tokenizer_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable tokenizer.json"):
        BPE.load(bad)
    with pytest.raises(ValueError, match="not a readable"):
        BPE.load(tmp_path / "missing.json")
    # A real tokenizer.json, but WordPiece: foreign to a byte-level BPE loader.
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.Whitespace()
    wp.train_from_iterator(
        ["hello world"] * 3, trainers.WordPieceTrainer(vocab_size=50, show_progress=False)
    )
    wp.save(str(tmp_path / "wp.json"))
    with pytest.raises(ValueError, match="model type 'WordPiece'"):
        BPE.load(tmp_path / "wp.json")
    # Ours, damaged: a merge of tokens that are not in the vocabulary.
    ok = reference.train(["hello hello world"], 260)
    spec = ok.to_json()
    spec["model"]["merges"].append(["no-such", "token"])
    (tmp_path / "damaged.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="merge"):
        BPE.load(tmp_path / "damaged.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="no 'model'"):
        BPE.load(tmp_path / "list.json")


def test_one_str_instead_of_a_list_is_a_type_error():
    for train in trainers_under_test().values():
        with pytest.raises(TypeError, match="iterable of str"):
            train("just one string", 300)


@pytest.mark.parametrize(
    "ids, error, message",
    [
        ([9999], ValueError, "id 9999 is not in the vocabulary"),
        ([104, 1.5], TypeError, "id 1.5 is float"),
        (["104"], TypeError, "id '104' is str"),
        ([True], TypeError, "id True is bool"),
    ],
)
def test_decode_refuses_what_is_not_an_id(ids, error, message):
    tok = reference.train(["hello"], 258)
    with pytest.raises(error, match=message):
        tok.decode(ids)


def test_encode_refuses_what_is_not_text():
    tok = reference.train(["hello"], 258)
    with pytest.raises(TypeError, match="expected str, got bytes"):
        tok.encode(b"hello")
    with pytest.raises(ValueError, match="lone surrogate"):
        tok.encode("ok \ud800 no")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda v: v.update({"x": v["a"]}), "same id to several tokens"),
        (lambda v: v.update({"x": "7"}), "str -> int"),
        (lambda v: v.update({"x": 1.0}), "str -> int"),
        (lambda v: v.update({"x": -3}), "str -> int >= 0"),
    ],
)
def test_malformed_vocabularies_are_refused(tmp_path, damage, message):
    spec = reference.train(["hello hello world"], 260).to_json()
    damage(spec["model"]["vocab"])
    (tmp_path / "t.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message):
        BPE.load(tmp_path / "t.json")


def test_the_cli_turns_a_library_error_into_one_line(tmp_path, capsys, monkeypatch):
    from week1 import cli

    def refuse(*args, **kwargs):
        raise ValueError("tokenizer.json: vocab must map str -> int >= 0")

    monkeypatch.setattr(cli, "cmd_list", refuse)
    assert cli.main(["list"]) == 2
    assert capsys.readouterr().err == (
        "week1: error: ValueError: tokenizer.json: vocab must map str -> int >= 0\n"
    )


def test_tokenizers_compare_vocab_smaller_than_the_alphabet():
    from labs import tokenizers_compare

    with pytest.raises(UsageError, match="vocab_size=300"):
        tokenizers_compare.train_all(
            ["abc", "日本語のテキスト", "другой текст"] * 50
            + [chr(0x4E00 + i) for i in range(400)],
            300,
        )
