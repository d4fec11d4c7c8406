"""The status page as the node serves it, read from Sources/Node/StatusPage.swift.

StatusPage.html is a Swift raw multi-line string literal (#\"\"\" … \"\"\"#): its value is
the lines between the delimiters, each without the closing delimiter's indentation.
This module reproduces that, so the stand-in serves the very bytes the node serves,
and computes the Content-Security-Policy hashes of the inline script and style.
"""

import base64
import hashlib
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWIFT_SOURCE = os.path.join(REPO, "Sources", "Node", "StatusPage.swift")


def load_html(path=SWIFT_SOURCE):
    with open(path, encoding="utf-8") as f:
        source = f.read()
    opening = re.search(r'= #"""\n', source)
    closing = re.search(r'\n([ ]*)"""#', source)
    if not opening or not closing or closing.start() < opening.end():
        raise ValueError(f"{path}: no #\"\"\" … \"\"\"# literal found")
    indent = closing.group(1)
    body = source[opening.end():closing.start()]
    if "\\#" in body:
        raise ValueError(f"{path}: the page contains \\# (an escape in a Swift raw string)")
    lines = []
    for number, line in enumerate(body.split("\n"), start=1):
        if line.strip() == "":
            lines.append("")
        elif line.startswith(indent):
            lines.append(line[len(indent):])
        else:
            raise ValueError(f"{path}: page line {number} is indented less than the closing delimiter")
    return "\n".join(lines)


def _inline(html, tag):
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    if len(found) != 1:
        raise ValueError(f"expected exactly one inline <{tag}>, found {len(found)}")
    return found[0]


def sha256_source(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def csp_problems(html):
    """Why the page's own CSP would block its script or style (empty when it would not)."""
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    if not meta:
        return ["no Content-Security-Policy meta element"]
    policy = " ".join(meta.group(1).split())
    problems = []
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        try:
            want = sha256_source(_inline(html, tag))
        except ValueError as error:
            problems.append(str(error))
            continue
        have = re.search(rf"{directive} ([^;]*)", policy)
        if not have or want not in have.group(1).split():
            problems.append(f"{directive} must list {want} (the hash of the inline <{tag}>)")
    return problems


def csp_hashes(html):
    return {tag: sha256_source(_inline(html, tag)) for tag in ("script", "style")}
