"""Every file the project names is in the project (issue 20, item 7).

Reads the given files (docs, scripts, tool sources, help texts), finds the
repository paths they name (docs/..., bench/..., models/..., tools/...,
test/...) and paths that reach outside the checkout (../something), and
prints each path that does not exist or points outside; exits 1 if any.
"""
import os, re, sys

root, files = sys.argv[1], sys.argv[2:]
top = r"(?:docs|bench|models|tools|test|runtime|compiler|passes|dialects)"
named = re.compile(r"(?<![\w./-])(" + top + r"/[\w./-]*\w)")
outside = re.compile(r"(?<![\w.])(\.\./[\w./-]+)")
bad = []
for path in files:
    text = open(path, encoding="utf-8").read()
    for m in named.finditer(text):
        ref = m.group(1)
        if "*" in ref or not os.path.exists(os.path.join(root, ref)):
            bad.append(f"{path}: names {ref}, which is not in the repository")
    for m in outside.finditer(text):
        bad.append(f"{path}: names {m.group(1)}, outside the repository")
print("\n".join(bad) if bad else f"ok: {len(files)} files")
sys.exit(1 if bad else 0)
