#!/usr/bin/python3
"""speedscope_shot.py: opens a profile in speedscope's page with headless chromium, takes a
screenshot and says whether the page rendered it without complaint.

  speedscope_shot.py INDEX_HTML PROFILE PNG [--size WxH] [--view VIEW] [--track N]

Loads PROFILE the way speedscope's own command line does (a script calling
speedscope.loadFileFromBase64, named in the page's #localProfilePath; VIEW is speedscope's
time-ordered, left-heavy or sandwich; N > 0 moves to the Nth next track, as the key "n"
does), with Debian's
chromium, headless, in a fresh profile directory. Fails (status 1, with the reason) when
chromium logs an uncaught error or a warning of speedscope's importer, when the page shows
its error message or is still the empty start page, or when the screenshot is blank: nearly
one colour. Standard library only (the PNG is decoded here).
"""
import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import zlib

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000"]
# What speedscope's importer says when it must guess (console.warn), and script errors.
COMPLAINTS = re.compile(r"Uncaught|Tried to end|still open|Ignoring|Failed to load|Unrecognized format|Error")


def fail(why):
    print("FAIL:", why)
    sys.exit(1)


def chromium(args, scratch):
    run = subprocess.run(["chromium", *FLAGS, "--user-data-dir=" + os.path.join(scratch, "profile"), *args],
                         capture_output=True, text=True, timeout=120)
    console = [l for l in run.stderr.splitlines() if ":CONSOLE" in l]
    return run.stdout, console


def png_pixels(path):
    """(width, height, rows of RGB(A) byte strings) of an 8-bit, non-interlaced PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("%s is not a PNG" % path)
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big")
            depth, colour = body[8], body[9]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if depth != 8 or colour not in (2, 6):
        fail("unexpected PNG format: depth %d, colour type %d" % (depth, colour))
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def main():
    args = argparse.ArgumentParser()
    for name in ("index", "profile", "png"):
        args.add_argument(name)
    args.add_argument("--size", default="1200x700")
    args.add_argument("--view")
    args.add_argument("--track", type=int, default=0)
    a = args.parse_args()
    index, profile, png = a.index, a.profile, a.png
    width, height = a.size.split("x")
    view = "&view=" + a.view if a.view else ""
    # Key presses, one at a time: each moves from the track the previous one showed.
    keys = "" if a.track == 0 else (
        ";[...Array(%d).keys()].forEach(i => setTimeout(() => window.dispatchEvent("
        "new KeyboardEvent('keypress', {key: 'n'})), 1000 + 300 * i))" % a.track)
    with tempfile.TemporaryDirectory() as scratch:
        loader = os.path.join(scratch, "load.js")
        with open(profile, "rb") as f:
            encoded = base64.b64encode(f.read()).decode()
        with open(loader, "w") as f:
            f.write("speedscope.loadFileFromBase64(%s, %s)%s" % (json.dumps(os.path.basename(profile)), json.dumps(encoded), keys))
        url = "file://%s#localProfilePath=%s%s" % (os.path.abspath(index), loader, view)
        dom, console = chromium(["--dump-dom", url], scratch)
        _, shot_console = chromium(["--window-size=%s,%s" % (width, height), "--screenshot=" + os.path.abspath(png), url], scratch)
    complaints = [l for l in console + shot_console if COMPLAINTS.search(l)]
    if complaints:
        fail("the page complained:\n  " + "\n  ".join(complaints[:10]))
    if not any("Importing as" in l for l in console):
        fail("speedscope never imported the profile; console:\n  " + "\n  ".join(console[:10]))
    if "Something went wrong" in dom:
        fail("speedscope shows its error message")
    if "Drag and drop" in dom:
        fail("speedscope still shows its start page")
    w, h, bpp, rows = png_pixels(png)
    colours = {}
    for row in rows[::4]:
        for x in range(0, w * bpp, 4 * bpp):
            colours[row[x:x + 3]] = colours.get(row[x:x + 3], 0) + 1
    samples = sum(colours.values())
    commonest = max(colours.values())
    if len(colours) < 8 or commonest > 0.97 * samples:
        fail("the screenshot is blank: %d colours, the commonest on %.0f%% of it" % (len(colours), 100 * commonest / samples))
    print("%s: rendered %dx%d, %d colours, the commonest on %.0f%%; %d console lines, no complaint"
          % (os.path.basename(profile), w, h, len(colours), 100 * commonest / samples, len(console)))


if __name__ == "__main__":
    main()
