"""embedding_viz parity: the frameworks' linear algebra against each other and scikit-learn's PCA,
the same picture on a rerun, the projector files TensorBoard reads.

- normalise, PCA (2-D, and the t-SNE input up to rotation: its pairwise distances) and cosine
  neighbours: JAX vs torch (F32); 2-D PCA vs sklearn.decomposition.PCA (same sign convention);
  neighbours vs WordVectors.nearest (numpy);
- a rerun with the same seed gives identical t-SNE coordinates (EXACT, on the CPU);
- projector_config.pbtxt parses as TensorBoard's ProjectorConfig and its files hold the points;
- `week1 run embedding_viz` in both frameworks (a word2vec file given, and a small model
  trained), with trustworthiness in [0, 1].
"""

import dataclasses

import numpy as np
import pytest

from labs import embedding_viz as spec
from week1.data import vectors
from week1.tolerances import EXACT, F32, TRAJECTORY, assert_close
from week1_jax import embedding_viz as jax_lab
from week1_torch import embedding_viz as torch_lab
from week1_torch.lib.embeddings import cpu_threads

CFG = spec.Config(background=100, max_iter=500, pretrained=False)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """torch, OpenBLAS and OpenMP on one thread: on a busy 2-core machine their spinning
    threads make these small problems tens of times slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def pretrained():
    return vectors.load_pretrained()


@pytest.fixture(scope="module")
def points(pretrained):
    return spec.choose_points(pretrained, spec.parse_groups(""), CFG, frequency_ordered=False)


def test_choose_points_takes_groups_then_seeded_background(pretrained, points):
    named = [w for w, g in zip(points.words, points.groups, strict=True) if g]
    assert "France" in named and "king" in named and len(named) > 40
    assert sum(1 for g in points.groups if not g) == CFG.background
    again = spec.choose_points(pretrained, spec.parse_groups(""), CFG, frequency_ordered=False)
    assert_close("points", "rows", again.rows, points.rows, EXACT)


def test_normalise_and_pca_agree_across_frameworks_and_with_sklearn(pretrained, points):
    from sklearn.decomposition import PCA

    rows = pretrained.vectors[points.rows]
    jax_unit, torch_unit = jax_lab.normalise(rows), torch_lab.normalise(rows)
    assert_close("normalise", "unit", np.asarray(jax_unit), torch_unit.numpy(), F32)
    jax_2d, torch_2d = np.asarray(jax_lab.pca(jax_unit, 2)), torch_lab.pca(torch_unit, 2).numpy()
    reference = PCA(2).fit_transform(torch_unit.numpy().astype(np.float64))
    assert_close("pca", "2-D jax vs torch", jax_2d, torch_2d, TRAJECTORY)
    assert_close("pca", "2-D torch vs sklearn", torch_2d, reference, TRAJECTORY)
    shares = spec.explained_variance(torch_unit.numpy(), torch_2d)  # the PCA panel's axis labels
    sklearn_shares = PCA(2).fit(torch_unit.numpy().astype(np.float64)).explained_variance_ratio_
    assert_close("pca", "explained variance vs sklearn", shares, sklearn_shares, TRAJECTORY)
    # The 50-D input of t-SNE: its axes 30-50 are nearly degenerate (any rotation among them is
    # as good), so compare what t-SNE uses, the distances between the points.
    jax_50, torch_50 = np.asarray(jax_lab.pca(jax_unit, 50)), torch_lab.pca(torch_unit, 50).numpy()
    distances = lambda x: np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    assert_close("pca", "50-D distances", distances(jax_50), distances(torch_50), TRAJECTORY)


def test_nearest_agrees_across_frameworks_and_with_numpy(pretrained):
    words = ["king", "France", "one", "father"]
    ours_jax, ours_torch = (
        jax_lab.nearest(pretrained, words, 5),
        torch_lab.nearest(pretrained, words, 5),
    )
    reference = pretrained.nearest(words, 5)
    for word in words:
        assert [w for w, _ in ours_jax[word]] == [w for w, _ in reference[word]]
        assert [w for w, _ in ours_torch[word]] == [w for w, _ in reference[word]]
        sims = lambda found: np.array([s for _, s in found[word]])
        assert_close("nearest", f"{word} jax", sims(ours_jax), sims(reference), F32)
        assert_close("nearest", f"{word} torch", sims(ours_torch), sims(reference), F32)


@pytest.fixture(scope="module")
def projected(pretrained, points):
    """Each framework's projection of the points, computed once for the tests below."""
    return {
        name: lab.project("pretrained", pretrained, points, CFG)
        for name, lab in (("jax", jax_lab), ("torch", torch_lab))
    }


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_same_seed_same_picture(pretrained, points, projected, name):
    lab = {"jax": jax_lab, "torch": torch_lab}[name]
    first, again = projected[name], lab.project("pretrained", pretrained, points, CFG)
    assert_close("rerun", "tsne", again.tsne, first.tsne, EXACT)
    assert_close("rerun", "pca", again.pca, first.pca, EXACT)
    assert 0 < first.trust_pca < first.trust_tsne <= 1


def test_the_picture_depends_on_perplexity(pretrained, points, projected):
    other = torch_lab.project(
        "pretrained", pretrained, points, dataclasses.replace(CFG, perplexity=10)
    )
    assert not np.array_equal(other.tsne, projected["torch"].tsne)


def test_projector_files_are_what_tensorboard_reads(tmp_path, projected):
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    class Folder:
        path = staticmethod(lambda name: tmp_path / name)

    p = projected["torch"]
    config_path = spec.export_projector(Folder, [p])
    config = text_format.Parse(config_path.read_text(), projector_config_pb2.ProjectorConfig())
    (entry,) = config.embeddings
    assert entry.tensor_name == "pretrained"
    loaded = np.loadtxt(config_path.parent / entry.tensor_path, delimiter="\t")
    assert_close("projector", "vectors", loaded, p.unit, F32)
    lines = (config_path.parent / entry.metadata_path).read_text().splitlines()
    assert lines[0] == "word\tgroup" and len(lines) == len(p.points.words) + 1
    assert lines[1].split("\t")[0] == p.points.words[0]


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_week1_run(tmp_path, pretrained, framework):
    from week1 import runs
    from week1.cli import main

    if framework == "jax":  # a word2vec file given (here: part of the pretrained vectors)
        words, rows = pretrained.words[:4000], pretrained.vectors[:4000]
        file = vectors.save_word2vec_format(tmp_path / "v.bin", words, rows, binary=True)
        settings = [f"--vectors={file}", "--pretrained=false"]
    else:  # a small model trained here, and the pretrained vectors
        settings = ["--corpus=wiki", "--epochs=1", "--min_count=20", "--vector_size=32"]
    settings += ["--background=100", "--max_iter=500"]
    runs_dir = tmp_path / "runs"
    command = ["run", "embedding_viz", "--framework", framework, "--runs-dir", str(runs_dir)]
    assert main([*command, *settings]) == 0
    (run_dir,) = runs_dir.iterdir()
    summary = runs.read_summary(run_dir)
    assert summary["status"] == "ok"
    for name in ("trained", "pretrained") if framework == "torch" else ("trained",):
        for method in ("pca", "tsne"):
            assert 0 < summary[f"{name}_trust_{method}"] <= 1
        assert (run_dir / "tb" / f"{name}_vectors.tsv").exists()
    assert (run_dir / "embeddings.png").stat().st_size > 0
    assert (run_dir / "tb" / "projector_config.pbtxt").exists()
