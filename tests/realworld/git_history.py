#!/usr/bin/env python3
"""Writes a `git fast-import` stream to stdout: COMMITS commits over FILES text files, each
commit rewriting a third of them a little, so that pack-objects finds deltas to compute.
Deterministic: the same arguments give the same history (and commit ids).

    git_history.py FILES COMMITS | git fast-import
"""
import random
import sys

files, commits = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(42)
words = [f"w{n:04d}" for n in range(5000)]
contents = {f: [" ".join(rng.choices(words, k=12)) for _ in range(40)] for f in range(files)}
out = sys.stdout.buffer
for c in range(commits):
    changed = range(files) if c == 0 else rng.sample(range(files), files // 3)
    ops = []
    for f in changed:
        lines = contents[f]
        for _ in range(3):
            lines[rng.randrange(len(lines))] = " ".join(rng.choices(words, k=12))
        data = ("\n".join(lines) + "\n").encode()
        ops.append(b"M 644 inline dir%02d/file%05d.txt\ndata %d\n%s\n" % (f % 50, f, len(data), data))
    message = b"commit %d" % c
    out.write(b"commit refs/heads/main\n")
    out.write(b"committer Test <test@example.com> %d +0000\n" % (1700000000 + c * 60))
    out.write(b"data %d\n%s\n" % (len(message), message))
    out.writelines(ops)
    out.write(b"\n")
