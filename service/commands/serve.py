"""``mesoscan serve [--host 127.0.0.1] [--port 8000] [--demo] [--threads 4]``: the HTTP service
on the waitress development server.

With ``--demo``, or when the database has no clinic yet, a demo clinic and practitioner are set
up with a fresh random password and API token, printed with the URL, so a newcomer is using
mesoscan within a minute. Production runs gunicorn instead (see README.md, section "The HTTP service").
"""
from __future__ import annotations

import argparse
import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run the HTTP service (development server)",
        description="Serve the web pages and the JSON API with waitress. Configuration comes from the "
                    "environment (MESOSCAN_DATA_DIR, DATABASE_URL, ...; see README.md, section 'The HTTP service'). "
                    "For production use gunicorn -c service/gunicorn.conf.py 'service.app:create_app()'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--demo", action="store_true",
                   help="set up (or reset) the demo clinic, practitioner and API token, and print them")
    p.add_argument("--threads", type=int, default=4, help="request threads (default 4)")
    p.set_defaults(func=run)


def _banner(url: str, demo) -> str:
    lines = [
        "",
        "mesoscan is running",
        f"  web:      {url}/",
        f"  API docs: {url}/api/v1/docs",
    ]
    if demo is not None:
        lines += [
            "",
            f"demo clinic {demo.clinic.name!r} ({'created' if demo.created else 'password and token renewed'}):",
            f"  email:     {demo.user.email}",
            f"  password:  {demo.password}",
            f"  API token: {demo.token}",
            "",
            "try:",
            f"  curl -H 'Authorization: Bearer {demo.token}' -F image=@sample_images/astronaut_render.jpg "
            f"{url}/api/v1/analyses",
        ]
    lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from waitress import serve

    from service.admin import clinic_count, ensure_demo
    from service.app import create_app
    from service.extensions import state
    from service.malloc import keep_freed_memory

    keep_freed_memory()        # request threads analyse photo after photo (service/malloc.py)

    overrides = {}
    if os.environ.get("MESOSCAN_COOKIE_SECURE") is None:
        overrides["COOKIE_SECURE"] = False   # the development server speaks plain HTTP
    print("loading the face model and opening the database ...", file=sys.stderr, flush=True)
    app = create_app(overrides)
    demo = None
    with app.app_context():
        st = state()
        with st.storage.session() as s:
            if args.demo or clinic_count(s) == 0:
                demo = ensure_demo(s, st.hasher)
    host = f"[{args.host}]" if ":" in args.host else args.host
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else host
    print(_banner(f"http://{shown}:{args.port}", demo), flush=True)
    max_body = int(app.config["MAX_CONTENT_LENGTH"]) + 2**20
    try:
        serve(app, host=args.host, port=args.port, threads=max(1, args.threads), max_request_body_size=max_body,
              channel_timeout=120, ident="mesoscan")
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0
