"""Practitioner web pages: server-rendered HTML (Jinja2) over the same storage as the JSON API,
with a little plain JavaScript for what needs it (upload progress, overlay toggles, intake and
plan, the before/after slider). Registered by ``service.app`` as the blueprint ``bp``.

    GET  /                        -> the patient list (or the login page)
    GET  /login, POST /login      log in with email and password (a form with a CSRF token)
    POST /logout                  log out
    GET  /patients?q=             patients, searched in code and name; POST creates one
    GET  /patients/{id}           visits, analyses, progress chart, before/after
    GET  /patients/{id}/upload    upload a photo (progress bar, quality verdict in plain words)
    GET  /analyses/{id}           results: scores per family (face and regions), overlays
    GET  /patients/{id}/plan      intake form and the latest plan with its checklists

Reads are rendered on the server from the repository (scoped to the session's clinic, like the
API). Writes from JavaScript go to the JSON API with the session cookie and the
``X-CSRF-Token`` header (the token is in a ``<meta>`` tag); the login, logout and create-patient
forms post here with a ``csrf_token`` field. Errors are shown as messages on an HTML page, never
as a traceback. Pages send a strict Content-Security-Policy: scripts and styles come only from
``/web/static`` (no CDN, no build step).
"""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/web/static")

from service.web import views  # noqa: E402,F401  (registers the routes on bp)
