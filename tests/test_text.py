"""Markdown escaping of data-borne text (perfsuite.text)."""

import re

from perfsuite.text import md_cell, md_code, md_fence, md_text


def test_md_text_escapes_markup():
    assert md_text("<script>alert(1)</script> & <img onerror=x>") == (
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img onerror=x&gt;")


def test_md_cell_escapes_pipes_and_newlines():
    cell = md_cell("a | b\nc")
    assert "\n" not in cell
    assert re.search(r"(?<!\\)\|", cell) is None


def test_md_fence_outlasts_inner_backticks():
    body = "perfsuite run x.yaml\n```\n<script>\n````"
    block = md_fence(body, "bash")
    fence = block.split("\n", 1)[0].removesuffix("bash")
    assert set(fence) == {"`"} and len(fence) == 5
    # the body's own fences are shorter than the closing one, so the block closes only at its end
    assert block.endswith("\n" + fence)
    assert block.count(fence) == 2


def test_md_code_outlasts_inner_backticks():
    assert md_code("a`b") == "``a`b``"
    assert md_code("`x") == "`` `x ``"
    assert md_code("plain") == "`plain`"
