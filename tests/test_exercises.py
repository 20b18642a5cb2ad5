"""Learner mode (week1/exercises.py, week1/commands/exercise.py): every lab's exercises exist,
stub and import; stubs are "not started" through the real grading path (only
NotImplementedError, in both frameworks: a sample of labs here, every lab in a slow test);
seeded wrong answers fail with a one-line diagnosis naming the function and the difference; the
reference passes `week1 check` (one lab here, every lab in a slow test).

The grading runs are pytest subprocesses over parity tests (the jax and torch imports cost
most of it): the labs are graded in a few batched runs, each stub failing at its first call."""

from __future__ import annotations

import ast
import concurrent.futures
import importlib.util
import re
import shutil
import sys
import threading
import time

import pytest

from week1 import catalog, exercises
from week1.cli import main
from week1.commands import exercise as cmd

LABS = [lab.id for lab in catalog.LABS if lab.implemented]
PARTS = [(lab, fw) for lab in LABS for fw in exercises.FRAMEWORKS]


def _parts(lab, framework):
    return [(e, e.part(framework)) for e in exercises.of_lab(lab) if e.part(framework)]


@pytest.mark.parametrize("lab", LABS)
def test_every_lab_has_exercises_with_hints_and_existing_tests(lab):
    found = exercises.of_lab(lab)
    assert found, f"{lab}: no EXERCISES"
    assert len({e.name for e in found}) == len(found), f"{lab}: two exercises share a name"
    for e in found:
        assert 1 <= len(e.hints) <= 3 and all(h.strip() for h in e.hints), (lab, e.name)
        assert e.jax or e.torch, (lab, e.name)
        for part in filter(None, (e.jax, e.torch)):
            source = exercises.reference_source(part)
            assert exercises.function_source(source, part.qualname)
            assert part.tests, (lab, e.name)
            for selector in part.tests:
                file, _, test = selector.partition("::")
                text = (catalog.ROOT / "parity_tests" / file).read_text(encoding="utf-8")
                name = re.split(r"[\[:]", test)[0]
                assert re.search(rf"^def {name}\(", text, re.M), f"{lab}: no test {selector}"
    for framework in exercises.FRAMEWORKS:  # a test grades the first exercise naming it
        seen = []
        for e, part in _parts(lab, framework):
            for s in part.tests:
                shadow = [t for t in seen if exercises.matches("parity_tests/" + s, t)]
                assert not shadow, f"{lab} {e.name}: {s} is graded by an earlier exercise"
            seen += part.tests


@pytest.mark.parametrize(("lab", "framework"), PARTS)
def test_stubs_keep_signature_and_docstring_and_import(lab, framework, tmp_path, monkeypatch):
    """The generated module parses, each exercise is its signature, docstring and one raise,
    every other line is the reference's, and the module imports."""
    if not _parts(lab, framework):
        pytest.skip(f"{lab} has no {framework} exercise")
    for path, text in exercises.stubbed_files(lab, framework).items():
        reference = (catalog.ROOT / path).read_text(encoding="utf-8")
        tree, ref_tree = ast.parse(text), ast.parse(reference)
        names = [p.qualname for e, p in _parts(lab, framework) if p.path == path]
        for qualname in names:
            node, ref = exercises._locate(tree, qualname), exercises._locate(ref_tree, qualname)
            assert ast.dump(node.args) == ast.dump(ref.args), qualname
            assert ast.get_docstring(node) == ast.get_docstring(ref), qualname
            raised = node.body[-1]
            assert isinstance(raised, ast.Raise), qualname
            message = f"week1 exercise {lab}: {qualname}"
            assert ast.literal_eval(raised.exc.args[0]) == message
        kept = set(reference.splitlines()) - set(text.splitlines())
        for qualname in names:  # what went is inside the stubbed bodies
            body = exercises.function_source(reference, qualname).splitlines()
            kept -= set(body)
        assert not kept, f"{path}: lines outside the exercises changed: {sorted(kept)[:3]}"
        file = tmp_path / path.replace("/", "_")
        file.write_text(text, encoding="utf-8")
        name = f"stub_{lab}_{framework}_{exercises.module_name(path).replace('.', '_')}"
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
        spec.loader.exec_module(module)


def test_exercise_hint_list_and_reset_from_the_command_line(tmp_path, capsys):
    root = str(tmp_path / "ex")
    assert main(["exercise", "adamw", "--framework", "jax", "--dir", root]) == 0
    mine = tmp_path / "ex" / "adamw" / "week1_jax" / "lib" / "optim.py"
    assert "NotImplementedError" in mine.read_text(encoding="utf-8")
    # Writing again would overwrite the learner's work: refused in one line, exit 2.
    assert main(["exercise", "adamw", "--framework", "jax", "--dir", root]) == 2
    assert "exists" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["hint", "adamw", "--dir", root]) == 0
    first = capsys.readouterr().out
    assert "hint 1/" in first and "hint 2/" not in first
    assert main(["hint", "adamw", "--dir", root]) == 0
    assert "hint 2/" in capsys.readouterr().out
    # Solve it (the reference body), then --reset stubs that function again.
    mine.write_text((catalog.ROOT / "week1_jax/lib/optim.py").read_text(), encoding="utf-8")
    assert main(["exercise", "adamw", "--reset", "adamw_update", "--dir", root]) == 0
    assert "week1 exercise adamw: adamw.update_fn" in mine.read_text(encoding="utf-8")
    assert main(["exercise", "--list", "--dir", root]) == 0
    listing = capsys.readouterr().out
    assert all(lab in listing for lab in ("adamw", "bpe", "rnn"))
    assert main(["hint", "adamw", "nothing_such", "--dir", root]) == 2
    assert main(["check", "adamw", "--framework", "torch", "--dir", root]) == 2  # no stubs yet


# ------------------------------------------------------------------ the real grading path

SEEDED = {  # (lab, framework, file): (reference text, wrong text): the wrong answers
    ("adamw", "jax", "week1_jax/lib/optim.py"): [  # AdamW without bias correction
        ("m / (1 - b1 ** count.astype(m.dtype))", "m"),
        ("v / (1 - b2 ** count.astype(v.dtype))", "v"),
    ],
    ("rnn", "torch", "week1_torch/lib/recurrent.py"): [  # GRU with b_hn outside the reset gate
        (
            "n = torch.tanh(x_n + r * h_n)",
            "n = torch.tanh(x_n + r * (h_n - bias_hh.chunk(3)[2]) + bias_hh.chunk(3)[2])",
        ),
    ],
    ("bpe", "jax", "week1_jax/bpe.py"): [  # ties broken to the largest pair, not the smallest
        (
            "key = jnp.min(jnp.where(p.count == top, p.key, NONE))",
            "key = jnp.max(jnp.where(p.count == top, p.key, -1))",
        ),
    ],
    ("word2vec", "torch", "week1_torch/lib/embeddings.py"): [  # the negatives' sign flipped
        (
            "g = out_weights * (labels - torch.sigmoid(f))",
            "g = out_weights * torch.where(labels > 0, 1 - torch.sigmoid(f), torch.sigmoid(f))",
        ),
    ],
}
WRONG = {  # lab: the function the wrong answer is in, and the one test graded here
    "adamw": ("adamw.update_fn", "test_adamw.py::test_jax_adamw_matches_optax"),
    "rnn": ("gru_cell", "test_rnn.py::test_layer_matches_torch_nn[gru-1layer-uni]"),
    "bpe": ("best", "test_bpe.py::test_same_as_hf[min_frequency-specials-jax]"),  # has ties
    "word2vec": (
        "negative_sampling_update",
        "test_word2vec.py::test_negative_sampling_update_is_sgd_on_its_loss[sgns]",
    ),
}


def _plan(lab, framework, only=None):
    plan = cmd.plan_for(lab, framework)
    return [p for p in plan if only is None or p["function"] == only]


def _batches(framework, labs=LABS):
    """`labs` with an exercise in `framework`, in batches that stub no module twice (two labs
    may hold exercises in one module: lib/charlm.py), each graded in one pytest run."""
    batches = []  # [(labs, their modules)]
    for lab in labs:
        modules = {part.module for _, part in _parts(lab, framework)}
        if not modules:
            continue
        free = next((b for b in batches if not b[1] & modules), None)
        if free is None:
            batches.append(([lab], modules))
        else:
            free[0].append(lab)
            free[1].update(modules)
    return [labs for labs, _ in batches]


def _jobs(root, framework, files_of, labs=LABS):
    """The exercises of `labs` in `framework` as one grading job per batch: (plan entries with
    their "lab", files_of(lab, framework, root): module -> file in place of the package's)."""
    jobs = []
    for batch, batch_labs in enumerate(_batches(framework, labs)):
        plan, files = [], {}
        for lab in batch_labs:
            files |= files_of(lab, framework, root)
            plan += [{**p, "lab": lab, "framework": framework, "batch": batch}
                     for p in _plan(lab, framework)]  # fmt: skip
        jobs.append((plan, files))
    return jobs


def _grade(jobs):
    """[(plan entry, result)] of every job, each graded in one pytest run (no stop)."""
    return [
        graded
        for plan, files in jobs
        for graded in zip(plan, cmd.grade(plan, files, stop=False), strict=True)
    ]


def _grade_every_lab(root, framework, files_of):
    return _grade(_jobs(root, framework, files_of))


def _stubs(lab, framework, root):
    cmd.write(lab, framework, str(root))
    return exercises.overrides(lab, framework, root)


def _references(lab, framework, root):
    """The reference modules, copied where a learner's files go (the path `week1 check` takes)."""
    for path in exercises.stubbed_files(lab, framework):
        (root / lab / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(catalog.ROOT / path, root / lab / path)
    return exercises.overrides(lab, framework, root)


def _stub_and_grade(root, labs):
    """The stubs of `labs` in each framework, graded (no stop): one pytest run per batch, the two
    frameworks' runs side by side (each is a child pytest that spends much of its time starting
    up and waiting on its own torchrun ranks: two of them keep two cores busy). The stubs are
    written first, in this thread: Python 3.11's ast.parse is not thread-safe."""
    jobs = {fw: _jobs(root / f"stubs_{fw}", fw, _stubs, labs) for fw in exercises.FRAMEWORKS}
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        return dict(zip(jobs, pool.map(_grade, jobs.values()), strict=True))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The SEEDED wrong answers (each in its lab's module, the rest of the package the
    reference), graded in one pytest run, each exercise reported (no stop)."""
    tmp = tmp_path_factory.mktemp("wrong")
    files, wrong = {}, []
    for (lab, framework, path), edits in SEEDED.items():
        text = (catalog.ROOT / path).read_text(encoding="utf-8")
        for right, bad in edits:
            assert text.count(right) == 1, (path, right)
            text = text.replace(right, bad)
        wrong_file = tmp / lab / path
        wrong_file.parent.mkdir(parents=True, exist_ok=True)
        wrong_file.write_text(text, encoding="utf-8")
        files[exercises.module_name(path)] = str(wrong_file)
        function, test = WRONG[lab]
        (graded,) = _plan(lab, framework, only=function)
        assert test in graded["tests"], (lab, test)
        wrong.append({**graded, "tests": [test]})
    return list(zip(wrong, cmd.grade(wrong, files, stop=False), strict=True))


# CI grades the stubs of one lab of each kind (an optimizer in lib/, a recurrent cell, a
# tokenizer on arrays, torchrun ranks, a lab whose tests call another lab's code); every lab's
# take minutes (the child runs reach each lab's fixtures), so they run with the slow cases.
SAMPLE = ("adamw", "rnn", "bpe", "data_parallel", "environment")


@pytest.mark.parametrize(
    "labs", [pytest.param(SAMPLE, id="sample"),
             pytest.param(LABS, id="every-lab", marks=pytest.mark.slow)],
)  # fmt: skip
def test_stubs_fail_only_with_not_implemented(labs, tmp_path):
    """Every exercise of `labs`, stubbed, is "not started" in both frameworks: its tests fail only
    with the NotImplementedError of a stub (nothing else breaks on the way: the imports, the
    fixtures, the torchrun ranks): one of its own lab at or before it, or of another lab stubbed
    in the same run whose code its tests call (environment's encoder is pretrained_embeddings')."""
    for framework, stubbed in _stub_and_grade(tmp_path, labs).items():
        plan = [p for p, _ in stubbed]
        assert {p["lab"] for p in plan} == {lab for lab in labs if _parts(lab, framework)}
        for i, (p, r) in enumerate(stubbed):
            assert r["status"] == "not started", f"{p['lab']}: {cmd.line(1, r)}"
            allowed = {(q["lab"], q["function"]) for q in plan if q["batch"] == p["batch"]}
            allowed -= {(q["lab"], q["function"]) for q in plan[i + 1 :] if q["lab"] == p["lab"]}
            for message in r["messages"]:
                stub = re.fullmatch(r"NotImplementedError: week1 exercise (\S+): (\S+)", message)
                assert stub and stub.groups() in allowed, (p["lab"], message)


@pytest.mark.slow
@pytest.mark.parametrize("framework", exercises.FRAMEWORKS)
def test_every_lab_s_reference_passes_the_grading_path(framework, tmp_path):
    """Every lab's reference modules, put where a learner's files go, pass every exercise (the
    whole grading path of `week1 check`, batched: minutes, so slow)."""
    for p, r in _grade_every_lab(tmp_path, framework, _references):
        assert r["status"] == "passed", f"{p['lab']}: {cmd.line(1, r)}"


def test_wrong_answers_fail_with_a_one_line_diagnosis(graded):
    for p, r in graded:
        line = cmd.line(1, r)
        assert r["status"] == "failing", line
        diagnosis = line.splitlines()[-1]
        assert p["function"] in line and "NotImplementedError" not in diagnosis
        # After the exception's name, what differs: numbers (max abs, a merge's index, ...).
        assert re.search(r"Error: .*\d", diagnosis), diagnosis


def test_reference_passes_week1_check(tmp_path, capsys):
    """The reference through the very path a learner's file takes: `week1 check` on a copy."""
    root = tmp_path / "ref"
    cmd.write("lr_schedules", "torch", str(root))
    for path in exercises.stubbed_files("lr_schedules", "torch"):
        shutil.copy(catalog.ROOT / path, root / "lr_schedules" / path)
    assert main(["check", "lr_schedules", "--framework", "torch", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.count(" passed ") == len(_plan("lr_schedules", "torch")), out
    assert "every exercise passes" in out


def test_watch_wakes_on_a_save(tmp_path):
    """--watch's wait returns once a watched file changes (watchfiles, or polling without it)."""
    mine = tmp_path / "optim.py"
    mine.write_text("x = 1\n", encoding="utf-8")
    saved = threading.Timer(0.3, lambda: mine.write_text("x = 2\n", encoding="utf-8"))
    saved.start()
    started = time.monotonic()
    cmd._wait_for_change([str(mine)])
    assert mine.read_text(encoding="utf-8") == "x = 2\n" and time.monotonic() - started < 30
