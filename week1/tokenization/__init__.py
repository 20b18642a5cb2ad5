"""Byte-level BPE from scratch, read in this order (each file builds on the last):

1. `bytelevel.py`  text -> words: GPT-2's pre-tokenization regex and the byte <-> printable
                   character table, the word-frequency table every trainer starts from.
2. `train.py`      the reference trainer (pure Python): count pairs once, then repeatedly
                   merge the most frequent pair, updating counts only in the words it touches.
3. `model.py`      the trained tokenizer: merges + vocab, encode, decode, save/load as a
                   `tokenizer.json` that HF `tokenizers` loads.
4. `hf.py`         the same jobs done by HF `tokenizers` (the reference we match).

The JAX and torch trainers (week1_jax/bpe.py, week1_torch/bpe.py) replace step 2's loop
with array operations and return the same `model.BPE`.

The other two subword algorithms, each one self-contained file (trainer, encoder, decoder):
- `wordpiece.py`   BERT's: merges scored count(ab) / (count(a) count(b)), greedy
                   longest-match-first encoding with '##' continuations.
- `unigram.py`     SentencePiece's default: EM over a seed vocabulary, pruning by the
                   likelihood lost, Viterbi segmentation.
"""
