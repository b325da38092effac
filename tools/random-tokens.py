#!/usr/bin/env python3
"""Writes a token file (runtime/io/TokenFile.h, version 1) of COUNT ids drawn
uniformly below VOCAB with Python's PRNG seeded with SEED (default 0), 2-byte
ids up to a vocabulary of 65536, else 4-byte:
    random-tokens.py PATH VOCAB COUNT [SEED]
For tests and benchmarks that need tokens of a given vocabulary."""
import random
import struct
import sys

path, vocab, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
width, code = (2, "H") if vocab <= 65536 else (4, "I")
ids = [rng.randrange(vocab) for _ in range(count)]
with open(path, "wb") as f:
    f.write(b"MTTOKENS" + struct.pack("<IIQQ", 1, width, vocab, count) + bytes(32))
    f.write(struct.pack(f"<{count}{code}", *ids))
