#!/usr/bin/env python3
"""Writes models/demo-chat/tokenizer.json and tokenizer_config.json: a small
byte-level BPE tokenizer in Qwen2/Qwen3's format, trained here on the
repository's own demo text (models/data: Persuasion, public domain, and the
CC0 chat demos), with the special tokens of LLaMA-Factory's qwen3 and
qwen3_nothink templates. Deterministic: the same inputs give the same bytes.

Usage: python3 models/demo-chat/make_tokenizer.py   (from anywhere; no network)

Vocabulary: 256 byte tokens (ids 0-255, GPT-2's byte-to-unicode order),
MERGES learned merges (ids 256-506), then the added tokens (507-511): 512
ids, the vocab_size of config.json.
"""
import json
import os
import re
from collections import Counter

MERGES = 251
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = SPECIAL + ["<think>", "</think>"]  # qwen3's reasoning markers (not special)
# Qwen2's pre-tokenizer split (tokenizer.json's Split regex, as the models ship it).
SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# The same split for training in Python's re (no \p{..}): letters [^\W\d_], numbers \d.
TRAIN_SPLIT = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|(?:[^\r\n\w]|_)?[^\W\d_]+|\d"
                         r"| ?(?:[^\s\w]|_)+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    """GPT-2's map of the 256 bytes to printable characters (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


def training_text(data):
    texts = [open(os.path.join(data, "demo-corpus.txt"), encoding="utf-8").read()]
    for sample in json.load(open(os.path.join(data, "demo_alpaca.json"), encoding="utf-8")):
        texts += [v for v in sample.values() if isinstance(v, str)]
    for line in open(os.path.join(data, "demo_sharegpt.jsonl"), encoding="utf-8"):
        if line.strip():
            texts += [m["value"] for m in json.loads(line)["conversations"]]
    return texts


def learn_merges(texts, byte_char):
    words = Counter()
    for text in texts:
        for piece in TRAIN_SPLIT.findall(text):
            words[tuple(byte_char[b] for b in piece.encode("utf-8"))] += 1
    words = {w: n for w, n in words.items() if w}
    merges = []
    for _ in range(MERGES):
        pairs = Counter()
        for w, n in words.items():
            for pair in zip(w, w[1:]):
                pairs[pair] += n
        # The most frequent pair; ties broken by the pair itself (deterministic).
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        merged = {}
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + n
        words = merged
    return merges


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.join(here, "..", "data")
    table = bytes_to_unicode()
    byte_char = dict(table)
    merges = learn_merges(training_text(data), byte_char)
    vocab = {c: i for i, (_, c) in enumerate(table)}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    assert len(vocab) == 256 + MERGES, "a merge repeated a token"
    added = [{"id": len(vocab) + i, "content": t, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": t in SPECIAL}
             for i, t in enumerate(ADDED)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                  "use_regex": False}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT}, "behavior": "Isolated",
             "invert": False}, byte_level]},
        "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                  "merges": [[l, r] for l, r in merges]},
    }
    config = {
        "add_bos_token": False, "add_prefix_space": False, "bos_token": None,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "additional_special_tokens": SPECIAL[1:], "clean_up_tokenization_spaces": False,
        "errors": "replace", "model_max_length": 1024, "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                 for a in added},
    }
    for name, value in (("tokenizer.json", tokenizer), ("tokenizer_config.json", config)):
        with open(os.path.join(here, name), "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False, indent=1)
            f.write("\n")
    print(f"{here}: vocabulary {len(vocab) + len(added)} ({MERGES} merges)")


if __name__ == "__main__":
    main()
