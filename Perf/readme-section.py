#!/usr/bin/env python3
"""Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in a markdown file
with stdin (appends the marked section when the markers are missing).

Usage: readme-section.py README.md NAME < section.md
Used by the Perf/ scripts, so that re-running one replaces only its own table.
"""
import sys

path, name = sys.argv[1], sys.argv[2]
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
body = sys.stdin.read().rstrip("\n")
try:
    with open(path) as file:
        text = file.read()
except FileNotFoundError:
    text = ""
block = f"{begin}\n{body}\n{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = head + block + tail
else:
    text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
with open(path, "w") as file:
    file.write(text)
