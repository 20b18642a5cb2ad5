"""docs/history.md and the handouts' `History:` lines: every link lands on an entry, every lab
has a line, every lab an entry names exists; `week1 list --history` prints the page."""

import re

from week1 import catalog, report
from week1.cli import main

HISTORY = catalog.ROOT / "docs" / "history.md"
LINE = re.compile(r"^History: docs/history\.md(#[a-z0-9-]+(?:, #[a-z0-9-]+)*)$", re.M)


def anchors() -> list[str]:
    return re.findall(r'^<a id="([a-z0-9-]+)"></a>$', HISTORY.read_text(encoding="utf-8"), re.M)


def test_anchors_are_unique_and_each_starts_an_entry():
    text = HISTORY.read_text(encoding="utf-8")
    assert len(anchors()) == len(set(anchors())) > 20
    for anchor in anchors():  # the line after an anchor is the entry: **year · authors ...**
        assert re.search(rf'<a id="{anchor}"></a>\n\*\*(19|20)\d\d', text), anchor


def test_every_lab_links_to_entries_that_exist():
    targets = set(anchors())
    for lab in catalog.LABS:
        path = catalog.ROOT / "labs" / f"{lab.id}.py"
        if not path.exists():
            continue  # listed, not written yet
        found = LINE.findall(path.read_text(encoding="utf-8"))
        assert len(found) == 1, f"{path.name}: {len(found)} 'History: docs/history.md#...' lines"
        links = [a.strip().removeprefix("#") for a in found[0].split(",")]
        assert set(links) <= targets, f"{path.name}: no entry {sorted(set(links) - targets)}"


def test_every_lab_an_entry_names_exists():
    ids = {lab.id for lab in catalog.LABS}
    named = re.findall(r"Labs:\s*([a-z_, \n]+)\.", HISTORY.read_text(encoding="utf-8"))
    assert named
    for labs in named:
        for lab in (s.strip() for s in labs.split(",")):
            assert lab in ids, lab


def test_list_history_prints_the_timeline():
    with report.console.capture() as captured:
        assert main(["list", "--history"]) == 0
    out = captured.get()
    assert "Bengio" in out and "BERT" in out and "<a id=" not in out
