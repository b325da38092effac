#!/usr/bin/env python3
"""Writes a token file (runtime/io/TokenFile.h, version 1) of COUNT ids drawn
uniformly below VOCAB with Python's PRNG seeded with SEED (default 0):
tokens.py PATH VOCAB COUNT [SEED]."""
import random
import struct
import sys

path, vocab, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
ids = [random.randrange(vocab) for _ in range(count)]
with open(path, "wb") as f:
    f.write(b"MTTOKENS" + struct.pack("<IIQQ", 1, 2, vocab, count) + bytes(32))
    f.write(struct.pack(f"<{count}H", *ids))
