"""The report's HTML: one self-contained page (inline CSS, inline JS, plotly.js embedded once, no links out).

The all-records table is embedded as JSON and paged, sorted and filtered in the browser by the small
script below, so a 50k-record run does not put 50k rows in the DOM.
"""

from __future__ import annotations

import html
import json

CSS = """
:root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --accent:#2b6cb0; --warn:#c53030; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1f2933; color:#fff; padding:18px 28px; }
header h1 { margin:0; font-size:20px; font-weight:600; }
header p { margin:4px 0 0; color:#cbd2d9; font-size:13px; }
main { max-width:1280px; margin:0 auto; padding:8px 28px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px; margin:18px 0; }
h2 { font-size:16px; margin:0 0 12px; }
h3 { font-size:14px; margin:14px 0 8px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(170px,1fr)); gap:10px; }
.card { border:1px solid var(--line); border-radius:6px; padding:8px 12px; }
.card .v { font-size:18px; font-weight:600; }
.card .k { color:var(--muted); font-size:12px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:12px; }
@media (max-width: 900px) { .grid2 { grid-template-columns:1fr; } }
.fig { min-width:0; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f0f4f8; font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td { white-space:nowrap; }
td.text { white-space:normal; min-width:220px; max-width:480px; overflow-wrap:anywhere; }
.muted { color:var(--muted); }
.warn { color:var(--warn); }
.note { background:#fffbea; border:1px solid #f7d070; border-radius:6px; padding:8px 12px; margin:8px 0; }
.pill { display:inline-block; padding:0 6px; border-radius:9px; background:#ebf8ff; color:var(--accent); font-size:12px; }
.pill.low { background:#fff5f5; color:var(--warn); }
pre { background:#f5f7fa; padding:10px; border-radius:6px; overflow:auto; max-height:420px; font-size:12px; }
#records-controls { display:flex; gap:10px; align-items:center; margin-bottom:8px; flex-wrap:wrap; }
#records-search { flex:1; min-width:220px; padding:6px 10px; border:1px solid #bcccdc; border-radius:6px; font-size:14px; }
#records-controls button { padding:5px 10px; border:1px solid #bcccdc; background:#fff; border-radius:6px; cursor:pointer; }
#records-controls button:disabled { opacity:.4; cursor:default; }
#records-table th { cursor:pointer; user-select:none; }
#records-table th.sorted-asc::after { content:" \\25B2"; }
#records-table th.sorted-desc::after { content:" \\25BC"; }
#records-table tr.selected td:first-child { border-left:3px solid var(--accent); }
"""

# Column order of the embedded rows; the script reads the names from the JSON.
TABLE_JS = """
(function () {
  var data = JSON.parse(document.getElementById("records-data").textContent);
  var cols = data.columns, rows = data.rows, PAGE = 50;
  var textCols = data.text, numCols = data.numeric;
  var hay = null, view = rows, page = 0, sortCol = 0, sortDir = 1;
  var search = document.getElementById("records-search");
  var body = document.querySelector("#records-table tbody");
  var info = document.getElementById("records-count");
  var prev = document.getElementById("records-prev"), next = document.getElementById("records-next");
  var head = document.querySelectorAll("#records-table th");

  function haystack() {
    if (!hay) hay = rows.map(function (r) { return textCols.map(function (c) { return String(r[c]); }).join("\\u0001").toLowerCase(); });
    return hay;
  }
  function apply() {
    var q = search.value.trim().toLowerCase();
    if (q) { var h = haystack(); view = rows.filter(function (r, i) { return h[i].indexOf(q) !== -1; }); }
    else view = rows.slice();
    var c = sortCol, d = sortDir, num = numCols.indexOf(c) !== -1;
    view.sort(function (a, b) {
      var x = a[c], y = b[c];
      if (num) { x = (x === null ? -Infinity : x); y = (y === null ? -Infinity : y); return d * (x - y) || a[0] - b[0]; }
      x = String(x); y = String(y); return d * (x < y ? -1 : x > y ? 1 : 0) || a[0] - b[0];
    });
    page = 0; render();
  }
  function cell(tr, v, cls) {
    var td = document.createElement("td"); if (cls) td.className = cls;
    td.textContent = (v === null ? "\\u2013" : v); tr.appendChild(td);
  }
  function render() {
    var pages = Math.max(1, Math.ceil(view.length / PAGE));
    page = Math.min(page, pages - 1);
    var start = page * PAGE, part = view.slice(start, start + PAGE);
    var frag = document.createDocumentFragment();
    part.forEach(function (r) {
      var tr = document.createElement("tr");
      if (r[data.selectedCol]) tr.className = "selected";
      cols.forEach(function (name, c) {
        var v = r[c];
        if (c === data.selectedCol) v = v ? "yes" : "";
        else if (typeof v === "number" && !Number.isInteger(v)) v = v.toFixed(4);
        cell(tr, v, numCols.indexOf(c) !== -1 ? "num" : (data.wide.indexOf(c) !== -1 ? "text" : ""));
      });
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
    info.dataset.count = view.length;
    info.textContent = view.length ? ("Records " + (start + 1) + "\\u2013" + (start + part.length) + " of " + view.length +
      (view.length !== rows.length ? " (filtered from " + rows.length + ")" : "") + ", page " + (page + 1) + " of " + pages)
      : "No record matches.";
    prev.disabled = page === 0; next.disabled = page >= pages - 1;
    head.forEach(function (th, c) {
      th.className = (numCols.indexOf(c) !== -1 ? "num " : "") + (c === sortCol ? (sortDir > 0 ? "sorted-asc" : "sorted-desc") : "");
    });
  }
  var timer = null;
  search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
  prev.addEventListener("click", function () { page--; render(); });
  next.addEventListener("click", function () { page++; render(); });
  head.forEach(function (th, c) {
    th.addEventListener("click", function () {
      if (sortCol === c) sortDir = -sortDir; else { sortCol = c; sortDir = numCols.indexOf(c) !== -1 && c > 0 ? -1 : 1; }
      apply();
    });
  });
  apply();
})();
"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def script_json(obj) -> str:
    """JSON safe inside a <script> element: no '<' at all, so no '</script>' or '<!--' can end it early."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def cards(items: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>' for k, v in items
    ) + "</div>"


def table(head: list[str], rows: list[list], numeric: set[int] = frozenset(), raw: set[int] = frozenset(),
          wide: set[int] = frozenset()) -> str:
    """An HTML table; cells are escaped unless their column is in ``raw`` (already HTML); ``wide``
    columns hold running text."""
    def cls(i):
        return ' class="num"' if i in numeric else ' class="text"' if i in wide else ""

    out = ["<table><thead><tr>", "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(head)), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{v if i in raw else esc(v)}</td>" for i, v in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def records_table(columns: list[str], rows: list[list], *, text: list[int], numeric: list[int],
                  wide: list[int], selected_col: int) -> str:
    """The all-records table: its controls, an empty table the script fills, and the rows as JSON.
    text: columns the search looks in; numeric: sorted as numbers; wide: running text."""
    data = {"columns": columns, "rows": rows, "text": text, "numeric": numeric, "wide": wide,
            "selectedCol": selected_col}
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    return (
        '<div id="records-controls"><input id="records-search" type="search" '
        'placeholder="Search id, task type, instruction, response..." aria-label="Search records">'
        '<button id="records-prev" type="button">&larr; Prev</button>'
        '<button id="records-next" type="button">Next &rarr;</button></div>'
        '<p id="records-count" class="muted"></p>'
        f'<div style="overflow-x:auto"><table id="records-table"><thead><tr>{head}</tr></thead><tbody></tbody></table></div>'
        f'<script type="application/json" id="records-data">{script_json(data)}</script>'
        f"<script>{TABLE_JS}</script>"
    )


def document(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole page. sections: (anchor id, heading, inner HTML)."""
    nav = " &middot; ".join(f'<a href="#{esc(a)}" style="color:#cbd2d9">{esc(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{inner}</section>' for a, h, inner in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p><p style=\"font-size:12px\">{nav}</p></header>"
        f"<main>{body}</main></body></html>\n"
    )
