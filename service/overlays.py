"""Overlay PNGs re-rendered from the stored photo, with two caches.

An overlay is a pure function of the stored photo bytes (content-addressed: ``photo.sha256``),
the pipeline version, the layer and the region, so rendered PNGs are cached on disk under that
key (``<data dir>/cache/overlays``), shared by every worker and clinic (access is checked on
the analysis row before the cache is read), bounded in size (oldest files go first), and
removed when a patient is erased. Rendering needs the pipeline's arrays, so the last few
re-analysed photos are also kept in memory: the layers of one photo cost one analysis.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import cv2

from pipelines import PIPELINE_VERSION

_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


class OverlayCache:
    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _path(self, sha: str, version: str, layer: str, region: str | None) -> Path:
        parts = (sha, version, *layer.split(":"), region or "all")
        if not all(_SAFE.match(p) for p in parts):
            raise ValueError(f"unsafe overlay cache key {parts!r}")
        return self.root / sha[:2] / ("_".join(parts) + ".png")

    def get(self, sha: str, version: str, layer: str, region: str | None) -> bytes | None:
        if not self.enabled:
            return None
        try:
            return self._path(sha, version, layer, region).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, sha: str, version: str, layer: str, region: str | None, data: bytes) -> None:
        if not self.enabled or len(data) > self.max_bytes:
            return
        path = self._path(sha, version, layer, region)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._prune()

    def evict_photo(self, sha: str) -> int:
        """Delete every cached overlay of the photo with this content hash (erasure)."""
        if not _SAFE.match(sha):
            return 0
        n = 0
        for p in (self.root / sha[:2]).glob(f"{sha}_*.png"):
            try:
                p.unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    def _prune(self) -> None:
        with self._lock:
            files = []
            total = 0
            for p in self.root.glob("*/*.png"):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime, st.st_size, p))
                total += st.st_size
            if total <= self.max_bytes:
                return
            for _mtime, size, p in sorted(files):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
                total -= size
                if total <= self.max_bytes * 0.8:
                    break


class _RecentAnalyses:
    """The last few pipeline results (with their arrays), keyed by photo hash."""

    def __init__(self, size: int = 2):
        self.size = size
        self._items: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str):
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def discard_photo(self, sha: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k.startswith(sha + ":")]:
                del self._items[key]


recent = _RecentAnalyses()


def forget_photo(cache: OverlayCache, sha: str) -> None:
    """Drop every rendered overlay and in-memory analysis of a photo (erasure)."""
    cache.evict_photo(sha)
    recent.discard_photo(sha)


def encode_png(rgb) -> bytes:
    ok, buf = cv2.imencode(".png", rgb[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:   # pragma: no cover - OpenCV always encodes uint8 RGB
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def overlay_png(cache: OverlayCache, analyzer, photo_sha: str, load_bytes, layer: str,
                region: str | None, size: int = 1536) -> tuple[bytes, bool]:
    """The PNG of ``layer`` for the photo ``photo_sha``; returns (png, from_cache).

    ``load_bytes()`` returns the stored photo; it is called only when the overlay must be
    rendered and the photo's analysis is not in memory. Raises ``InvalidInput`` for a layer
    or region the pipeline does not know or has no map for."""
    from pipelines.overlay import render_overlay

    key_layer = f"{layer}:{int(size)}"
    cached = cache.get(photo_sha, PIPELINE_VERSION, key_layer, region)
    if cached is not None:
        return cached, True
    key = f"{photo_sha}:{PIPELINE_VERSION}"
    analysis = recent.get(key)
    if analysis is None:
        analysis = analyzer.analyze(load_bytes())
        recent.put(key, analysis)
    png = encode_png(render_overlay(analysis, layer, region=region, max_side=int(size)))
    cache.put(photo_sha, PIPELINE_VERSION, key_layer, region, png)
    return png, False
