"""The report's stylesheet, inlined in its <head>: nothing is loaded, the fonts are the system's."""

from __future__ import annotations

from crawler.views.html.charts import ACCENT

CSS = """
:root { --accent: __ACCENT__; --ink: #1f2430; --soft: #5d6675; --line: #e3e6eb; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
header h1 { font-size: 24px; margin: 0 0 4px; letter-spacing: -0.01em; }
header .meta { color: var(--soft); margin: 0 0 18px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12.5px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin-bottom: 20px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.tile .n { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile .n small { font-size: 14px; font-weight: 400; color: var(--soft); }
.tile .k { color: var(--soft); font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px 14px;
  margin-bottom: 20px; }
section h2 { font-size: 16px; margin: 0 0 2px; }
section .note { color: var(--soft); margin: 0 0 10px; font-size: 13px; }
.empty { color: var(--soft); font-style: italic; padding: 18px 0; margin: 0; }
svg.chart { display: block; max-width: 100%; height: auto; overflow: visible; }
svg text { font-family: inherit; font-size: 12px; fill: var(--ink); }
svg .tick { fill: var(--soft); font-size: 11px; font-variant-numeric: tabular-nums; }
svg .tick.strong { fill: var(--ink); font-weight: 600; }
svg .value { font-size: 11px; fill: var(--ink); font-variant-numeric: tabular-nums; }
svg .label { fill: var(--soft); font-size: 12px; }
svg .label.strong { fill: var(--ink); font-weight: 600; }
svg .grid { stroke: #eef0f3; }
svg .axis { stroke: #b8bec8; }
svg .stripe { fill: #fafbfc; }
svg .bar:hover { opacity: 0.8; }
svg .line { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .point:hover { r: 5; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 0 0 6px; padding: 0; list-style: none;
  font-size: 13px; }
.legend .sub { color: var(--soft); margin-left: 2px; }
.legend i { display: inline-block; width: 14px; height: 3px; border-radius: 2px; vertical-align: middle;
  margin-right: 6px; }
.compare { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; }
.compare svg { flex: 0 0 auto; }
.compare .table-wrap { flex: 1 1 560px; overflow-x: auto; }
#runs-table { font-size: 13px; }
#runs-table td:first-child { min-width: 12em; }
#runs-table td:first-child strong { white-space: nowrap; }
#runs-table th { vertical-align: bottom; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 7px; border-bottom: 1px solid var(--line); vertical-align: baseline; }
th { font-size: 12px; color: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
td .sub { color: var(--soft); font-size: 12px; }
table.pages { table-layout: fixed; }
table.pages td.url { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
section h3 { font-size: 14px; margin: 18px 0 4px; }
#changes-counts { width: auto; margin-bottom: 4px; }
#changes-counts td, #changes-counts th { padding-right: 22px; }
#changes-counts td { font-size: 18px; font-weight: 600; }
footer { color: var(--soft); font-size: 12px; text-align: center; }
""".replace("__ACCENT__", ACCENT)
