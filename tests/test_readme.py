"""Every Python block of the README runs as written (from the repository root)."""

import os
import re

import pytest

from conftest import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


def test_the_readme_has_python_blocks():
    assert BLOCKS


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_python_block_runs(number, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(BLOCKS[number], f"README.md python block {number + 1}", "exec"), {"__name__": "__readme__"})
    assert os.getcwd() == str(ROOT)


def test_the_readme_lists_every_option_under_its_help_panel():
    """README's option list is checked against the one source, selectit.config: every option's flag is
    named under the panel `selectit score -h` shows it in."""
    import re

    from selectit.config import all_fields, flag_of

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    para = text[text.index("`selectit score -h` lists every option"):text.index("Each option is declared once")]
    marks = [(m.start(), m.group(1)) for m in re.finditer(r"\*\*([A-Za-z-]+)\*\*", para)]
    segments = {name: para[start:(marks[i + 1][0] if i + 1 < len(marks) else len(para))]
                for i, (start, name) in enumerate(marks)}
    missing = [(f.metadata["panel"], flag_of(f)) for _, f in all_fields()
               if not re.search(re.escape(flag_of(f)) + r"[`/ ]", segments.get(f.metadata["panel"], ""))]
    assert not missing, f"README's option list lacks (panel, flag): {missing}"
