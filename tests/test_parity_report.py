"""`week1 parity`'s report: headroom from the tier's own tolerance, families, 80 columns, files.

Most cases feed recorded comparisons straight in (no parity run); one runs a small
subset of the real suite through the command, end to end.
"""

import dataclasses
import json

import numpy as np
import pytest
from rich.console import Console

from week1.cli import main
from week1.commands import parity
from week1.tolerances import BF16, EXACT, F32, REPORT_ENV, Tier, assert_close, measure

REF = np.array([1.0, -2.0, 3.0, 0.0])
OURS = REF + np.array([3e-6, -1e-6, 2e-5, 5e-7])


def test_headroom_is_the_tiers_own_comparison_as_a_ratio():
    d = measure(OURS, REF, F32)
    by_hand = np.abs(OURS - REF) / (F32.atol + F32.rtol * np.abs(REF))
    assert d.headroom == pytest.approx(by_hand.max(), rel=1e-12)
    assert d.ok == (d.headroom <= 1)
    # A deliberately loosened comparison (10x rtol and atol) has 10x the headroom to spare.
    loose = Tier("F32_LOOSE", 10 * F32.rtol, 10 * F32.atol)
    assert measure(OURS, REF, loose).headroom == pytest.approx(d.headroom / 10, rel=1e-12)
    # Only atol loosened: the element with b = 0 (allowed atol alone) eases 10x, the rest less.
    atol_only = measure(OURS, REF, dataclasses.replace(F32, atol=10 * F32.atol))
    assert atol_only.headroom < d.headroom


def test_headroom_at_the_edges():
    at_limit = REF + (F32.atol + F32.rtol * np.abs(REF))
    assert measure(at_limit, REF, F32).headroom == pytest.approx(1.0)
    assert measure(at_limit * (1 + 1e-3), REF, F32).ok is False
    assert measure(np.array([np.nan]), np.array([1.0]), F32).headroom == np.inf
    assert measure(np.array([1, 2]), np.array([1, 2]), EXACT).headroom == 0.0
    assert measure(np.array([1, 2]), np.array([1, 3]), EXACT).headroom == np.inf
    assert measure(np.array([2.0]), np.array([4.0]), EXACT).max_rel == 0.5  # not max_abs
    inf = np.array([np.inf, 1.0])
    assert measure(inf, inf, EXACT).headroom == 0.0  # equal infinities are equal


def test_records_carry_lab_test_and_the_tiers_limits(tmp_path, monkeypatch):
    path = tmp_path / "report.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(path))
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "parity_tests/test_adamw.py::test_x[a] (call)")
    assert_close("adamw jax vs torch", "w", OURS, REF, F32)
    loose = Tier("F32_LOOSE", 10 * F32.rtol, 10 * F32.atol)
    assert_close("adamw jax vs torch", "w", OURS, REF, loose)
    tight, wide = (json.loads(line) for line in path.read_text().splitlines())
    assert tight["lab"] == "adamw" and tight["test"] == "parity_tests/test_adamw.py::test_x[a]"
    assert (tight["rtol"], tight["atol"]) == (F32.rtol, F32.atol)
    # The report's headroom follows the tier the comparison ran under.
    fam_tight, fam_wide = sorted(parity.families([tight, wide]), key=lambda f: -f.headroom)
    assert fam_tight.headroom == pytest.approx(10 * fam_wide.headroom, rel=1e-12)


def record(lab, check, tensor, tier, a, b):
    """One comparison as assert_close records it."""
    return {**dataclasses.asdict(measure(a, b, tier, check, tensor)), "lab": lab, "test": ""}


def doc_of(comparisons, device="CPU"):
    torch_device = "cpu" if device == "CPU" else device
    return parity.document(comparisons, {"torch": torch_device}, "week1 parity", "2025-01-01", 0)


# A suite in miniature: steps that differ only in numbers, equality checks, a BF16 family at
# 0.98 of its limit, a failure, and lab and check names as long as the catalogue's.
ONE = np.array([1.0])
SUITE = [
    *(
        record("adamw", f"adamw jax ours vs optax.adamw step {s}", "w", F32, ONE * (1 + e), ONE)
        for s, e in ((1, 1e-7), (51, 4e-6), (100, 2e-7))
    ),
    record("bpe", "bpe shakespeare-300", "merges", EXACT, np.arange(3), np.arange(3)),
    record("bpe", "bpe code-1000", "ids", EXACT, np.arange(3), np.arange(3)),
    record("mixed_precision", "mixed_precision bf16 grads", "w", BF16, [0.00098], [0.0]),
    record(
        "pretrained_embeddings",
        "pretrained_embeddings MiniLM sentence embeddings ours vs transformers BertModel",
        "encoder.layer.5.attention.output.dense.weight",
        Tier("BF16_FINAL_LOSS", 1e-2, 0.0),
        ONE * 1.001,
        ONE,
    ),
    record("tokenizers_compare", "tokenizers_compare WordPiece", "ids", EXACT, [1, 2], [1, 3]),
]


def test_families_group_numbers_strip_the_lab_and_fold_equality():
    fams = {(f.lab, f.compared): f for f in parity.families(SUITE)}
    steps = fams[("adamw", "jax ours vs optax.adamw step N")]
    assert steps.n == 3 and steps.max_abs == pytest.approx(4e-6)
    assert fams[("bpe", "equal: shakespeare/code-N")].n == 2
    failed = fams[("tokenizers_compare", "WordPiece")]
    assert failed.failed == 1 and failed.headroom == np.inf  # a failed EXACT check keeps its row


def test_families_name_their_alternatives_within_one_test():
    def rec(check, test):
        return {**record("rnn", check, "h", F32, ONE, ONE), "test": f"p.py::{test}[x]"}

    cells = [f"{cell}-{n}layer-{d}" for cell in "abcd" for n in (1, 3) for d in "uv"]
    cases = [f"rnn {cell} T=5 jax vs torch.nn" for cell in cells]
    records = [rec(c, "test_layers") for c in cases]
    records += [rec("rnn lstm hx, no lengths jax", "test_hx")]
    records += [rec("rnn gru hx, no lengths torch", "test_hx")]
    records.append(rec("rnn lstm-1layer-u jax", "test_other"))  # another test: its own row
    records += [rec(f"rnn pair ({a}, {b})", "test_pairs") for a, b in ((3, 40), (5, 6))]
    # Same shape, nothing in common: two checks, not one parametrised check.
    records += [rec("rnn jax vs torch norm", "test_n"), rec("rnn ratio jax vs torch", "test_n")]
    labels = sorted(f.compared for f in parity.families(records))
    assert labels == [
        "*-1layer/3layer-u/v T=5 jax vs torch.nn",
        "jax vs torch norm",
        "lstm-1layer-u jax",
        "lstm/gru hx, no lengths jax/torch",
        "pair (N, N)",
        "ratio jax vs torch",
    ]


def test_a_shape_mismatch_is_recorded_as_a_failure(tmp_path, monkeypatch):
    path = tmp_path / "report.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(path))
    with pytest.raises(AssertionError, match="shape"):
        assert_close("rnn resume", "loss", np.zeros(4), np.zeros(0), F32)
    (rec,) = (json.loads(line) for line in path.read_text().splitlines())
    assert rec["ok"] is False and rec["headroom"] == np.inf


def test_closest_to_failing_first():
    rows = parity.merge(parity.families(SUITE), [])
    order = [r.any.lab for r in rows]
    assert order[0] == "tokenizers_compare"  # failed (inf)
    assert order[1] == "mixed_precision"  # 0.98 of its limit: the next line, in bold red
    assert rows[1].cpu.headroom == pytest.approx(0.98)
    assert parity.style(rows[1].cpu.headroom) == "bold red"


def rendered(rows, doc, gpu, width):
    console = Console(width=width, record=True, color_system=None)
    parity.print_summary(doc, rows, gpu, console=console)
    return console.export_text().splitlines()


@pytest.mark.parametrize("with_gpu", [False, True])
def test_summary_fits_80_columns_without_wrapping(with_gpu):
    doc = doc_of(SUITE)
    gpu = None
    if with_gpu:  # the same suite on a GPU, plus a family only the GPU ran
        extra = record("gpu_basics", "gpu_basics matmul cuda", "bf16", BF16, [1.0], [1.0])
        gpu = doc_of([*SUITE, extra], device="NVIDIA H200")
    rows = parity.merge(
        parity.families(doc["comparisons"]), parity.families(gpu["comparisons"]) if gpu else []
    )
    narrow, wide = rendered(rows, doc, gpu, 80), rendered(rows, doc, gpu, 200)
    assert max(len(line) for line in narrow) <= 80
    assert len(narrow) == len(wide)  # no row wrapped onto a second line
    text = "\n".join(narrow)
    assert ("GPU" in text and "H200" in text) if with_gpu else ("no GPU" in text)
    if with_gpu:
        assert any("matmul cuda" in line for line in narrow)
        # The GPU headroom sits in the row of the same family: the BF16 one at 0.98.
        assert any("bf16 grads" in line and line.count("0.98") == 2 for line in narrow)


def test_detail_fits_80_columns_without_wrapping():
    def lines(width):
        console = Console(width=width, record=True, color_system=None)
        parity.print_detail(doc_of(SUITE), None, console=console)
        return console.export_text().splitlines()

    narrow = lines(80)
    assert max(len(line) for line in narrow) <= 80 and len(narrow) == len(lines(200))


def test_json_markdown_and_png_from_a_saved_run(tmp_path, capsys):
    saved = tmp_path / "cpu.json"
    saved.write_text(json.dumps(doc_of(SUITE)))
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps(doc_of(SUITE, device="NVIDIA H200")))
    md = tmp_path / "docs" / "parity.md"
    code = main(["parity", "--from", str(saved), "--gpu", str(gpu), "--markdown", str(md)])
    assert code == 0
    text = md.read_text()
    for provenance in ("week1 parity", "2025-01-01", "versions:", "machine:", "H200"):
        assert provenance in text
    assert "**0.98**" in text and "inf FAIL" in text
    assert (tmp_path / "docs" / "parity_headroom.png").stat().st_size > 1000
    assert "parity_headroom.png" in text
    out = tmp_path / "again.json"
    assert main(["parity", "--from", str(saved), "--json", str(out)]) == 0
    assert (
        json.loads(out.read_text())["comparisons"] == json.loads(saved.read_text())["comparisons"]
    )
    capsys.readouterr()
    assert main(["parity", "--from", str(saved), "--detail", "adamw"]) == 0
    detail = capsys.readouterr().out
    assert "step 100" in detail and "shakespeare" not in detail  # per tensor, one lab


def test_not_a_parity_document_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert main(["parity", "--from", str(bad)]) == 2
    assert "not a week1-parity/1 document" in capsys.readouterr().err


def test_end_to_end_on_a_small_subset(tmp_path):
    """The real command over one parity test file: records, devices, the document."""
    out = tmp_path / "parity.json"
    # Options before LAB when pytest arguments follow `--` (argparse places positionals once).
    assert main(["parity", "--json", str(out), "lr_schedules", "--", "-k", "optax_builtins"]) == 0
    doc = json.loads(out.read_text())
    assert doc["device"] == "CPU" and doc["devices"]["torch"] == "cpu"
    assert doc["comparisons"] and all(c["lab"] == "lr_schedules" for c in doc["comparisons"])
    assert all(c["headroom"] <= 1 and c["ok"] for c in doc["comparisons"])
