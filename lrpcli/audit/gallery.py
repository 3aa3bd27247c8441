"""``index.html``: a static gallery of an ``lrp explain`` run (``--html``) or of an ``lrp audit``.

One self-contained page: the styles, the script and the data (JSON) are inside it; pictures are
the run's own PNGs and the input images, linked by relative paths, so the page works from
``file://`` without a server or a network and keeps working when the folders are moved together.
For a run: thumbnails of image, heatmap and overlay with the predicted and explained class, the
share of f(x) at the pixels, the ledger's closure and warnings; filter by class, status and name,
sort by input order, pixel share, class or probability; with ``--target topK`` one card per map,
and a contrast named "A rather than B". For an audit: one section per class with its eigengap,
its clusters (mean heatmap, size, where the relevance lies) and their prototypes.

Long because the page's styles and script (about 230 lines, from :func:`_page` on) are one
string here, beside the Python that builds the data they render (about 220 lines).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lrpcli.audit.analyse import Audit
from lrpcli.audit.document import cluster_map_path
from lrpcli.audit.maps import ExplainedImage, RunRecord, as_number, explained_image, read_run
from lrpcli.io.files import atomic_write
from lrpcli.run.report import json_safe

__all__ = ["GALLERY_NAME", "audit_gallery", "explain_gallery", "write_gallery", "write_run_gallery"]

GALLERY_NAME = "index.html"
_SHOWN_BY_BROWSERS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
_SKIPPED_SHOWN = 12  # images shown for a class too small to cluster


def _url(target: Path, base: Path) -> str:
    """``target`` as a relative URL from the folder ``base`` (percent-encoded)."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(base))
    return quote(rel.replace(os.sep, "/"), safe="/")


def _input_url(name: str, base: Path) -> str | None:
    """The input image as a URL from ``base``, if it is still there and a browser can show it."""
    path = Path(name)
    if path.suffix.lower() not in _SHOWN_BY_BROWSERS:
        return None
    try:
        if not path.is_file():
            return None
    except OSError:
        return None
    return _url(path, base)


def _output_url(rel: str | None, run: Path, base: Path) -> str | None:
    if not rel or not (run / rel).is_file():
        return None
    return _url(run / rel, base)


def _image_row(image: ExplainedImage, run: Path, base: Path) -> dict[str, Any]:
    return {
        "n": image.index,
        "name": image.input,
        "status": "ok",
        "error": None,
        "warnings": list(image.warnings),
        "cls": image.label,
        "ci": image.class_index,
        "pred": image.predicted,
        "p": image.probability,
        "share": image.pixel_share,
        "closure": image.closure,
        "img": _input_url(image.input, base),
        "heat": _output_url(image.heatmap, run, base),
        "over": _output_url(image.overlay, run, base),
    }


def _class_words(m: dict[str, Any]) -> str | None:
    """A map's class for its card: ``tabby``, or ``tabby rather than tiger cat`` (``--contrast``)."""
    target = (m.get("target") or {}).get("label")
    contrast = (m.get("contrast") or {}).get("label")
    return target if contrast is None else f"{target} rather than {contrast}"


def _more_row(first: dict[str, Any], m: dict[str, Any], run: Path) -> dict[str, Any]:
    """The card of one further map of an image (``more[]`` of its entry), beside its first map's."""
    outputs = m.get("outputs") or {}
    return {
        **first,
        "cls": _class_words(m),
        "ci": (m.get("target") or {}).get("index"),
        "p": as_number((m.get("target") or {}).get("probability")),
        "share": as_number((m.get("conservation") or {}).get("pixel_share")),
        "closure": as_number((m.get("ledger") or {}).get("relative_closure_error")),
        "heat": _output_url(outputs.get("heatmap"), run, run),
        "over": _output_url(outputs.get("overlay"), run, run),
    }


def explain_gallery(record: RunRecord) -> str:
    """The gallery of a run, to be written into its folder."""
    rows = []
    for entry in record.entries():
        image = explained_image(entry)
        if image is not None:
            rows.append(_image_row(image, record.folder, record.folder))
            result = entry.result
            assert result is not None  # explained_image gives None otherwise
            rows[-1]["cls"] = _class_words(result.map_dict())
            for more in result.more or []:  # --target topK
                rows.append(_more_row(rows[-1], more, record.folder))
        else:
            rows.append(
                {
                    "n": entry.index,
                    "name": entry.input,
                    "status": "error",
                    "error": entry.error,
                    "warnings": list(entry.warnings),
                    **dict.fromkeys(("cls", "ci", "pred", "p", "share", "closure", "img", "heat", "over")),
                }
            )
    summary = record.summary
    data = {
        "kind": "explain",
        "title": f"lrp explain: {record.folder.as_posix()}",
        "facts": _run_facts(record)
        + [f"{summary.get('ok', 0)} of {summary.get('inputs', len(rows))} images explained"]
        + ([f"{summary['failed']} failed"] if summary.get("failed") else []),
        "images": rows,
        "unit": " maps" if len(rows) > len({row["n"] for row in rows}) else " images",  # --target topK
    }
    return _page(data)


def _run_facts(record: RunRecord) -> list[str]:
    model = record.run.get("model") or {}
    composite = record.run.get("composite") or {}
    facts = []
    if model.get("name"):
        facts.append(f"model {model['name']} ({model.get('source')})")
    if composite.get("name"):
        facts.append(f"rules {composite['name']}")
    if record.run.get("started_at"):
        facts.append(f"run {record.run['started_at']}")
    return facts


def audit_gallery(audit: Audit, doc: dict[str, Any], record: RunRecord, out: Path) -> str:
    """The gallery of an audit (``doc`` is its ``audit.json``), to be written into ``out``."""
    classes = []
    for c, entry in zip(audit.classes, doc["classes"]):
        row: dict[str, Any] = {
            "index": c.index,
            "label": c.label,
            "images": len(c.members),
            "status": entry["status"],
            "reason": entry["reason"],
            "where": c.where,
        }
        if c.spray is None:
            row["shown"] = [
                {**_image_ref(audit, i, record, out), "border": audit.images[i].where.get("border")}
                for i in c.members[:_SKIPPED_SHOWN]
            ]
        else:
            row["suggested"] = c.spray.suggested
            row["eigenvalues"] = [float(v) for v in c.spray.eigenvalues[:9]]
            row["clusters"] = [
                {
                    "cluster": cluster.index,
                    "size": len(cluster.members),
                    "share": len(cluster.members) / len(c.members),
                    "where": cluster.where,
                    "map": _url(out / cluster_map_path(c, cluster), out),
                    "prototypes": [_image_ref(audit, i, record, out) for i in cluster.prototypes],
                }
                for cluster in c.clusters
            ]
        classes.append(row)
    summary = doc["summary"]
    run_page = record.folder / GALLERY_NAME
    data = {
        "kind": "audit",
        "title": f"lrp audit: {record.folder.as_posix()}",
        "facts": _run_facts(record)
        + [
            f"{summary['images']} maps",
            f"{summary['classes']} classes, {summary['clustered_classes']} clustered",
            f"{summary['clusters']} clusters",
        ],
        "run_page": _url(run_page, out) if run_page.is_file() else None,
        "classes": classes,
    }
    return _page(data)


def _image_ref(audit: Audit, i: int, record: RunRecord, out: Path) -> dict[str, Any]:
    image = audit.images[i].image
    return {
        "name": image.input,
        "over": _output_url(image.overlay, record.folder, out),
        "img": _input_url(image.input, out),
    }


def write_gallery(path: Path, html: str) -> None:
    """Write the page atomically."""
    atomic_write(path, lambda handle: handle.write(html.encode("utf-8")))


def write_run_gallery(folder: Path) -> Path:
    """Write ``index.html`` into the folder of an ``lrp explain`` run (from its report); returns its path."""
    path = Path(folder) / GALLERY_NAME
    write_gallery(path, explain_gallery(read_run(folder)))
    return path


def _script_json(data: Any) -> str:
    """``data`` as JSON that cannot end or confuse the ``<script>`` element holding it."""
    text = json.dumps(json_safe(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _page(data: dict[str, Any]) -> str:
    title = str(data["title"]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<link rel=\"icon\" href=\"data:,\">\n"
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        "<header><h1 id=\"title\"></h1><p id=\"facts\"></p><div id=\"controls\"></div></header>\n"
        "<main id=\"app\"><noscript>This gallery needs JavaScript.</noscript></main>\n"
        f"<script type=\"application/json\" id=\"data\">{_script_json(data)}</script>\n"
        f"<script>{_JS}</script>\n</body>\n</html>\n"
    )


_CSS = """
:root { --ink: #1d2430; --muted: #5d6878; --line: #d9dee6; --bg: #f5f7fa; --card: #fff;
  --warn: #9a6100; --bad: #b3261e; --accent: #b8322a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--bg); }
header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
  padding: 12px 20px 10px; }
h1 { font-size: 18px; margin: 0 0 2px; font-weight: 600; word-break: break-all; }
#facts { margin: 0 0 8px; color: var(--muted); }
#controls { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: center; }
#controls label { color: var(--muted); display: flex; gap: 6px; align-items: center; }
select, input[type=search] { font: inherit; padding: 3px 6px; border: 1px solid var(--line);
  border-radius: 4px; background: #fff; color: var(--ink); }
main { padding: 16px 20px 40px; }
#count { color: var(--muted); margin: 0 0 10px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr)); gap: 14px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
.card.error { border-color: #e7b4b0; }
.thumbs { display: grid; grid-template-columns: repeat(3, 1fr); gap: 6px; }
.thumbs a, .thumb { display: block; aspect-ratio: 4 / 3; background: #eef1f5; border-radius: 3px;
  overflow: hidden; }
.thumbs img, .protos img { width: 100%; height: 100%; object-fit: contain; display: block; }
.thumb.none { display: flex; align-items: center; justify-content: center; color: var(--muted); }
.cap { margin-top: 6px; }
.name { font-weight: 600; overflow-wrap: anywhere; }
.meta { color: var(--muted); }
.num { font-variant-numeric: tabular-nums; }
.warn { color: var(--warn); }
.err { color: var(--bad); }
.more { margin: 16px 0; font: inherit; padding: 6px 14px; border: 1px solid var(--line);
  border-radius: 4px; background: #fff; cursor: pointer; }
section.cls { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
  padding: 12px 14px; margin: 0 0 16px; }
section.cls h2 { font-size: 16px; margin: 0 0 4px; }
.clusters { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px;
  margin-top: 10px; }
.cluster { border: 1px solid var(--line); border-radius: 6px; padding: 10px; display: grid;
  grid-template-columns: 132px 1fr; gap: 10px; }
.cluster.hot { border-color: var(--accent); box-shadow: 0 0 0 1px var(--accent) inset; }
.cluster .map { width: 128px; height: 128px; image-rendering: pixelated; border: 1px solid var(--line); }
.cluster h3 { margin: 0 0 4px; font-size: 14px; }
.where { border-collapse: collapse; margin: 2px 0 6px; }
.where td { padding: 1px 8px 1px 0; }
.bar { display: inline-block; height: 8px; background: var(--accent); border-radius: 2px;
  vertical-align: middle; margin-left: 4px; }
.protos { display: grid; grid-template-columns: repeat(6, 1fr); gap: 4px; grid-column: 1 / -1; }
.protos a { display: block; aspect-ratio: 1; background: #eef1f5; border-radius: 3px; overflow: hidden; }
.skipped { display: grid; grid-template-columns: minmax(0, 1fr) 260px; gap: 16px; margin-top: 8px; }
.small { display: grid; grid-template-columns: repeat(auto-fill, minmax(120px, 1fr)); gap: 8px; }
.small figure { margin: 0; }
.small a { display: block; aspect-ratio: 1; background: #eef1f5; border-radius: 3px; overflow: hidden; }
.small img { width: 100%; height: 100%; object-fit: contain; display: block; }
.small figcaption { color: var(--muted); font-size: 12px; overflow-wrap: anywhere; }
"""

_JS = r"""
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const PAGE = 120;
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = v;
    else if (k === "cls") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid) e.append(kid);
  return e;
}
function pct(v) {
  if (v === null || v === undefined) return "n/a";
  const p = 100 * v;
  return (Math.abs(p) >= 9.5 || p === 0 ? p.toFixed(0) : p.toPrecision(2)) + " %";
}
function base(name) { return name.split("/").pop(); }
function picture(src, alt, label) {
  if (!src) return el("div", {cls: "thumb none", text: label || "\u2014", title: alt});
  return el("a", {href: src, title: alt}, el("img", {src: src, alt: alt, loading: "lazy"}));
}
function select(id, label, options, onchange) {
  const s = el("select", {id: id});
  for (const [value, text] of options) s.append(el("option", {value: value, text: text}));
  s.addEventListener("change", onchange);
  document.getElementById("controls").append(el("label", {"for": id}, document.createTextNode(label), s));
  return s;
}
function byCount(values) {
  const counts = new Map();
  for (const v of values) counts.set(v, (counts.get(v) || 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
}

function explainPage(app) {
  const rows = data.images;
  let shown = PAGE;
  const classes = byCount(rows.filter(r => r.cls !== null).map(r => r.cls));
  const cls = select("class", "class", [["", "all classes"], ...classes.map(([c, n]) => [c, c + " (" + n + ")"])], reset);
  const status = select("status", "status", [["", "all"], ["ok", "explained"], ["error", "failed"], ["warnings", "with warnings"]], reset);
  const sort = select("sort", "sort by", [["order", "input order"], ["share-desc", "pixel share, high first"],
    ["share-asc", "pixel share, low first"], ["class", "class"], ["prob-desc", "probability, high first"]], reset);
  const search = el("input", {type: "search", id: "search", placeholder: "name contains\u2026"});
  search.addEventListener("input", reset);
  document.getElementById("controls").append(search);
  const count = el("p", {id: "count"});
  const list = el("div", {id: "cards", cls: "cards"});
  const more = el("button", {id: "more", cls: "more", type: "button", text: "show more"});
  more.addEventListener("click", () => { shown += PAGE; render(); });
  app.append(count, list, more);
  function reset() { shown = PAGE; render(); }
  function chosen() {
    const needle = search.value.trim().toLowerCase();
    let out = rows.filter(r =>
      (!cls.value || r.cls === cls.value) &&
      (!status.value || (status.value === "warnings" ? r.warnings.length > 0 : r.status === status.value)) &&
      (!needle || r.name.toLowerCase().includes(needle)));
    const key = sort.value;
    const share = r => (r.share === null ? -Infinity : r.share);
    if (key === "share-desc") out = out.slice().sort((a, b) => share(b) - share(a) || a.n - b.n);
    else if (key === "share-asc") out = out.slice().sort((a, b) => share(a) - share(b) || a.n - b.n);
    else if (key === "class") out = out.slice().sort((a, b) => String(a.cls).localeCompare(String(b.cls)) || a.n - b.n);
    else if (key === "prob-desc") out = out.slice().sort((a, b) => (b.p || 0) - (a.p || 0) || a.n - b.n);
    return out;
  }
  function card(r) {
    const c = el("article", {cls: "card" + (r.status === "ok" ? "" : " error"), "data-class": r.cls,
      "data-status": r.status, "data-share": r.share === null ? "" : String(r.share)});
    c.append(el("div", {cls: "thumbs"}, picture(r.img, "image: " + r.name, "image"),
      picture(r.heat, "heatmap: " + r.name, "no heatmap"), picture(r.over, "overlay: " + r.name, "no overlay")));
    const cap = el("div", {cls: "cap"}, el("div", {cls: "name", text: r.name}));
    if (r.status === "ok") {
      const pred = r.pred === r.cls ? "" : " \u00b7 predicted " + r.pred;
      cap.append(el("div", {text: "explained " + r.cls + " (" + pct(r.p) + ")" + pred}));
      cap.append(el("div", {cls: "meta num", text: pct(r.share) + " of f(x) reaches the pixels \u00b7 ledger closes to " +
        (r.closure === null ? "n/a" : Math.abs(r.closure).toExponential(1))}));
    } else {
      cap.append(el("div", {cls: "err", text: "error: " + r.error}));
    }
    for (const w of r.warnings) cap.append(el("div", {cls: "warn", text: "warning: " + w}));
    c.append(cap);
    return c;
  }
  function render() {
    const out = chosen();
    list.replaceChildren(...out.slice(0, shown).map(card));
    count.textContent = out.length + " of " + rows.length + (data.unit || " images") + (out.length > shown ? ", first " + shown + " shown" : "");
    more.hidden = out.length <= shown;
  }
  render();
}

const REGIONS = [["border", "border"], ["top_left", "top-left"], ["top_right", "top-right"],
  ["bottom_left", "bottom-left"], ["bottom_right", "bottom-right"], ["outside_box", "outside box"]];
function whereTable(where) {
  const t = el("table", {cls: "where num"});
  for (const [key, name] of REGIONS) {
    const v = where[key];
    if (v === null || v === undefined) continue;
    t.append(el("tr", {}, el("td", {text: name}), el("td", {text: pct(v)},
      el("span", {cls: "bar", style: "width:" + Math.round(60 * Math.max(0, Math.min(1, v))) + "px"}))));
  }
  return t;
}
function auditPage(app) {
  const only = select("class", "class", [["", "all classes"], ...data.classes.map(c => [c.label, c.label + " (" + c.images + ")"])], render);
  const which = select("status", "show", [["", "all classes"], ["clustered", "clustered classes"], ["skipped", "skipped classes"]], render);
  const sort = select("sort", "clusters by", [["size", "size"], ["border", "border share"], ["outside_box", "outside-box share"]], render);
  if (data.run_page) document.getElementById("controls").append(el("a", {href: data.run_page, text: "all images of the run"}));
  const count = el("p", {id: "count"});
  const list = el("div", {id: "sections"});
  app.append(count, list);
  function cluster(c, k) {
    const hot = (k.where.border || 0) >= 0.5 || (k.where.outside_box || 0) >= 0.5;
    const box = el("div", {cls: "cluster" + (hot ? " hot" : ""), "data-cluster": String(k.cluster), "data-size": String(k.size)});
    box.append(el("img", {cls: "map", src: k.map, alt: "mean heatmap of cluster " + k.cluster}));
    box.append(el("div", {}, el("h3", {text: "cluster " + k.cluster + ": " + k.size + " images (" + pct(k.share) + ")"}),
      whereTable(k.where), el("div", {cls: "meta", text: hot ? "most relevance lies at the border or outside the object: a possible shortcut" : "mean heatmap (left); prototypes: the images whose maps are closest to that mean"})));
    const protos = el("div", {cls: "protos"});
    for (const p of k.prototypes) protos.append(picture(p.over || p.img, p.name, base(p.name)));
    box.append(protos);
    return box;
  }
  function section(c) {
    const s = el("section", {cls: "cls", "data-class": c.label, "data-status": c.status});
    s.append(el("h2", {text: c.label + " \u00b7 class " + c.index + " \u00b7 " + c.images + " image" + (c.images === 1 ? "" : "s")}));
    if (c.status === "clustered") {
      s.append(el("div", {cls: "meta num", text: "eigengap suggests " + c.suggested + " strateg" + (c.suggested === 1 ? "y" : "ies") +
        " \u00b7 smallest Laplacian eigenvalues " + c.eigenvalues.map(v => v.toFixed(3)).join(", ")}));
      const key = sort.value;
      const ks = c.clusters.slice();
      if (key !== "size") ks.sort((a, b) => (b.where[key] || 0) - (a.where[key] || 0) || a.cluster - b.cluster);
      s.append(el("div", {cls: "clusters"}, ...ks.map(k => cluster(c, k))));
    } else {
      s.append(el("div", {cls: "warn", text: "not clustered: " + c.reason}));
      const small = el("div", {cls: "small"});
      for (const im of c.shown) small.append(el("figure", {}, picture(im.over || im.img, im.name, base(im.name)),
        el("figcaption", {text: base(im.name)})));
      const side = el("div", {cls: "meta"}, document.createTextNode(c.images === 1 ? "where its positive relevance lies:" :
        "where the positive relevance lies (mean over its images):"), whereTable(c.where));
      s.append(el("div", {cls: "skipped"}, small, side));
    }
    return s;
  }
  function render() {
    const out = data.classes.filter(c => (!only.value || c.label === only.value) && (!which.value || c.status === which.value));
    list.replaceChildren(...out.map(section));
    count.textContent = out.length + " of " + data.classes.length + " classes";
  }
  render();
}

document.getElementById("title").textContent = data.title;
document.getElementById("facts").textContent = data.facts.join(" \u00b7 ");
const app = document.getElementById("app");
app.replaceChildren();
if (data.kind === "audit") auditPage(app); else explainPage(app);
"""
