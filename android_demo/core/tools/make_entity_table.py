"""Writes the HTML5 named character reference table used by org.clipkit.core.TextCleaner.

Source: Python's html.entities.html5 (the table html.unescape and ftfy use). Deterministic.
Run: python android_demo/core/tools/make_entity_table.py
Output: src/main/resources/org/clipkit/core/html5_entities.tsv, one entity a line:
    <name as in html5, with or without trailing ';'> TAB <code points, hex, space separated>
"""
import html.entities
import pathlib
import sys

out = pathlib.Path(__file__).resolve().parents[1] / "src/main/resources/org/clipkit/core/html5_entities.tsv"
lines = [f"# html.entities.html5 from Python {sys.version.split()[0]}; {len(html.entities.html5)} entries"]
for name in sorted(html.entities.html5):
    value = html.entities.html5[name]
    lines.append(name + "\t" + " ".join(f"{ord(c):X}" for c in value))
out.write_text("\n".join(lines) + "\n", encoding="ascii")
print(out, len(lines) - 1)
