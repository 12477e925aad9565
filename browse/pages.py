"""The two pages of `ifa browse`, rendered on the server: the grid (its facets and cards are
filled in by static/browse.js from the JSON API) and one image's page."""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote, urlencode

from ..curation.ledger.browse import dedup_cluster, noise_flags, review_answers
from ..curation.show import describe
from ..curation.workspace import Workspace
from ..taxonomy import Taxonomy

NO_PHOTO_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="224" height="224" viewBox="0 0 224 224">'
                '<rect width="224" height="224" fill="#eee"/><text x="112" y="118" font-family="sans-serif" '
                'font-size="14" text-anchor="middle" fill="#888">no local photo</text></svg>')


def _head(title: str, token: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/static/browse.css?token={quote(token)}"></head>')


def _labels_json(taxonomy: Taxonomy) -> str:
    labels = [{"id": lab.id, "name": lab.name, "group": lab.group} for lab in taxonomy.labels.values()]
    return json.dumps({"labels": labels, "groups": list(taxonomy.group_names)}).replace("</", "<\\/")


def grid(token: str, taxonomy: Taxonomy, rounds: list[str]) -> str:
    """The grid page: facets on the left, thumbnails of the slice on the right."""
    config = json.dumps({"token": token, "rounds": rounds}).replace("</", "<\\/")
    return (_head("ifa browse", token) + '<body class="grid-page">'
            '<header><a class="home" href="/?token=' + quote(token) + '">ifa browse</a>'
            '<span id="summary"></span></header><main><aside id="facets">'
            '<label class="typeahead">Label <input id="label-input" list="label-names" '
            'placeholder="type a label name" autocomplete="off"></label><datalist id="label-names"></datalist>'
            '<div id="chosen"></div><div id="facet-lists"></div>'
            '<details id="review"><summary>Send this selection to a review round</summary>'
            '<label>Annotators <input id="review-annotators" placeholder="a@x.com b@x.com"></label>'
            '<label>Tie-breaker <input id="review-tiebreaker" placeholder="lead@x.com"></label>'
            '<label>Round name <input id="review-name" placeholder="optional"></label>'
            '<button id="review-send">Create round</button><div id="review-result"></div></details>'
            '</aside><section><div id="grid"></div><button id="more" hidden>More</button>'
            '<p id="status"></p></section></main>'
            f'<script id="taxonomy" type="application/json">{_labels_json(taxonomy)}</script>'
            f'<script id="config" type="application/json">{config}</script>'
            f'<script src="/static/browse.js?token={quote(token)}"></script></body></html>')


def _link(path: str, token: str, **query) -> str:
    return escape(f"{path}?{urlencode({**query, 'token': token})}")


def image(ws: Workspace, taxonomy: Taxonomy, image_id: str, token: str) -> str:
    """One image's page: the photo, labels by group with source and status, actions,
    flags, review answers, its dedup cluster and its whole history (`ifa show`).
    Raises IfaError for an unknown image."""
    info = describe(ws.ledger, taxonomy, image_id)
    iid = info["image_id"]
    status = escape(info["status"]) + (f" ({escape(info['status_reason'])})" if info["status_reason"] else "")
    parts = [_head(f"{iid} · ifa browse", token), f'<body class="image-page" data-image="{escape(iid)}">',
             f'<header><a class="home" href="{_link("/", token)}">ifa browse</a><span>image <b id="image-id">'
             f'{escape(iid)}</b> · split {escape(info["split"])} · status <b id="image-status">{status}</b></span>'
             '</header><main class="image-main"><div class="photo">'
             f'<img id="photo" src="{_link("/file/" + quote(iid, safe=""), token)}" alt="{escape(iid)}"></div>'
             '<div class="about">', _actions(info), _labels_table(info), _flags(ws, taxonomy, iid),
             _answers(ws, taxonomy, iid), _cluster(ws, iid, token), _history(info), '</div></main>',
             f'<script id="taxonomy" type="application/json">{_labels_json(taxonomy)}</script>',
             f'<script id="config" type="application/json">{json.dumps({"token": token, "image": iid})}</script>',
             f'<script src="{_link("/static/browse.js", token)}"></script></body></html>']
    return "".join(parts)


def _actions(info: dict) -> str:
    problem = info["file_problem"]
    note = (f'<p class="problem">file unreadable: {escape(problem["reason"])} {escape(problem["detail"] or "")}</p>'
            if problem else "")
    toggle = ('<button id="restore">Restore</button>' if info["status"] == "set_aside" else
              '<button id="set-aside">Set aside</button>')
    return (f'{note}<div class="actions"><input id="reason" placeholder="reason (optional)">{toggle}'
            '<input id="add-label" list="label-names" placeholder="add a label" autocomplete="off">'
            '<button id="add">Add label</button><datalist id="label-names"></datalist>'
            '<span id="action-result"></span></div>')


def _table(title: str, head: list[str], rows: list[list[str]], table_id: str) -> str:
    """A titled HTML table; cells are HTML already escaped by the caller."""
    if not rows:
        return f'<h2>{escape(title)}</h2><p class="none" id="{table_id}">none</p>'
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<h2>{escape(title)}</h2><table id="{table_id}"><tr>{th}</tr>{body}</table>'


def _labels_table(info: dict) -> str:
    rows = []
    for lab in info["labels"]:
        button = (f'<button class="drop" data-label="{lab["label_id"]}">drop</button>'
                  if lab["status"] == "active" and lab["label_id"] is not None else
                  f'<button class="readd" data-label="{lab["label_id"]}">restore</button>' if lab["label_id"] is not None
                  else "")
        status = escape(lab["status"]) + (f" ({escape(lab['status_reason'])})" if lab["status_reason"] else "")
        rows.append([escape(lab["group"]), f'<span class="{escape(lab["status"])}">{escape(lab["label"])}</span>',
                     escape(lab["source"]), status, button])
    return _table("Labels", ["group", "label", "source", "status", ""], rows, "labels")


def _flags(ws: Workspace, taxonomy: Taxonomy, image_id: str) -> str:
    rows = [[escape(taxonomy.labels[f.label_id].name if f.label_id in taxonomy.labels else "(image)"),
             escape(f.status), escape(f.reason)] for f in noise_flags(ws.ledger, image_id)]
    return _table("Flagged by flag-noise", ["label", "status", "score and reason"], rows, "flags")


def _answers(ws: Workspace, taxonomy: Taxonomy, image_id: str) -> str:
    rows = []
    for a in review_answers(ws.ledger, image_id):
        names = ", ".join(taxonomy.labels[i].name if i in taxonomy.labels else str(i) for i in json.loads(a.labels))
        rows.append([escape(a.round), escape(a.role), escape(a.annotator),
                     escape("discard" if a.discard else names), escape(a.time or "")])
    return _table("Review answers", ["round", "role", "annotator", "labels", "time"], rows, "answers")


def _cluster(ws: Workspace, image_id: str, token: str) -> str:
    members = dedup_cluster(ws.ledger, image_id)
    if not members:
        return '<h2>Dedup cluster</h2><p class="none" id="cluster">in none</p>'
    cards = "".join(
        f'<a class="card{" current" if m.image_id == image_id else ""}" '
        f'href="{_link("/image/" + quote(m.image_id, safe=""), token)}">'
        f'<img src="{_link("/thumb/" + quote(m.image_id, safe=""), token)}" alt="{escape(m.image_id)}">'
        f'<span>{escape(m.image_id)} · {escape(m.split)} · {"kept" if m.kept else escape(m.status)}</span></a>'
        for m in members)
    return f'<h2>Dedup cluster</h2><div class="cluster" id="cluster">{cards}</div>'


def _history(info: dict) -> str:
    rows = [[escape(e["time"]), escape(e["command"]), escape(e["kind"]), escape(e.get("label") or ""),
             escape(e["reason"] or ""), escape(e["rule"] or "")] for e in info["events"]]
    return _table("History", ["time", "command", "change", "label", "reason", "rule"], rows, "history")
