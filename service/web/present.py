"""What the pages show, in plain words: quality verdicts, score tables, labels.

Pure functions of the stored documents (schema ``mesoscan.analysis/1`` and ``mesoscan.plan/1``)
and the knowledge base, so the templates stay dumb and the wording lives in one place. The
upload page's JavaScript gets :data:`QUALITY_WORDS` as JSON, so a rejected photo is described
with the same words as a stored one.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping

FAMILIES = ("pigmentation", "texture", "wrinkles", "overall")
FAMILY_LABELS = {"pigmentation": "Pigmentation", "texture": "Texture", "wrinkles": "Wrinkles",
                 "overall": "Overall"}

# Overlay layers (pipelines.overlay.LAYERS) with their label and the score family they show.
LAYERS = (
    ("regions", "Regions", None),
    ("spots", "Spots", "pigmentation"),
    ("redness", "Redness", "pigmentation"),
    ("roughness", "Roughness", "texture"),
    ("pores", "Pores", "texture"),
    ("wrinkles", "Wrinkles", "wrinkles"),
)

# Reason codes (README, Quality codes; decode refusals) -> (what is wrong, what to do).
QUALITY_WORDS: dict[str, tuple[str, str]] = {
    "no_face": ("no face found", "Frame the whole face, facing the camera."),
    "face_too_small": ("face too small in the photo", "Move closer so the face fills most of the frame."),
    "low_resolution": ("low resolution", "Pores and fine lines may not be measured. Move closer, or use "
                       "the rear camera at full resolution."),
    "blurred": ("photo blurred", "Hold the camera steady, tap to focus on the face and retake."),
    "slightly_blurred": ("photo slightly blurred", "Hold the camera steady and focus on the face."),
    "too_dark": ("photo too dark", "Add light in front of the face."),
    "overexposed": ("photo overexposed", "Bright areas lost their detail. Avoid direct light or flash on the face."),
    "shadows_clipped": ("shadows too dark", "Dark areas lost their detail. Light the face evenly from the front."),
    "colour_cast": ("colour cast", "The light is not neutral. Use the clinic's daylight lamp, no coloured light."),
    "head_rolled": ("head tilted sideways", "Keep the eyes level."),
    "head_turned": ("head turned", "Face the camera straight on."),
    "head_pitched": ("head tilted up or down", "Keep the chin level."),
    "region_occluded": ("part of the face is hidden", "Move hair, glasses and hands away from the face."),
    "face_occluded": ("most of the face is hidden", "Move hair, glasses and hands away from the face."),
    "multiple_faces": ("more than one face in the photo", "Only the patient should be in the frame."),
    "low_face_confidence": ("the face is hard to find", "Frame the face clearly, facing the camera."),
    "orientation_corrected": ("the photo was turned upright", "Check the camera's orientation setting."),
    "empty_file": ("the file is empty", "Choose the photo again."),
    "file_too_large": ("the file is too large", "Send a smaller photo."),
    "payload_too_large": ("the file is too large", "Send a smaller photo."),
    "not_an_image": ("the file is not a photo", "Choose a JPEG, PNG, TIFF, WebP or HEIC photo."),
    "unsupported_format": ("this image format is not supported", "Choose a JPEG, PNG, TIFF, WebP or HEIC photo."),
    "corrupt_image": ("the file is damaged", "Export the photo again."),
    "truncated_image": ("the file is incomplete", "Export or copy the photo again."),
    "too_many_pixels": ("the image has too many pixels", "Send the photo at camera resolution."),
    "image_too_small": ("the image is too small", "Send the photo at camera resolution."),
    "grayscale_image": ("black-and-white photo: colour is needed", "Take a colour photo."),
}

STATUS_WORDS = {"ok": "Good photo", "warn": "Usable, with warnings", "reject": "Retake the photo"}

PLAN_STATUS = {
    "eligible": ("Eligible", "ok"),
    "needs_review": ("Needs review", "warn"),
    "not_a_candidate": ("Not a candidate", "bad"),
}


def quality_phrase(code: str, message: str | None = None) -> str:
    words = QUALITY_WORDS.get(code)
    if words:
        return words[0]
    return message or code.replace("_", " ")


def quality_verdict(quality: Mapping[str, Any] | None) -> dict:
    """``{"status", "headline", "items": [{"code", "severity", "words", "advice", "message"}]}``."""
    quality = quality or {}
    status = quality.get("status") or "ok"
    items = []
    for issue in quality.get("issues") or []:
        code = issue.get("code", "")
        words, advice = QUALITY_WORDS.get(code, (None, None))
        items.append({"code": code, "severity": issue.get("severity", "warn"),
                      "words": words or issue.get("message") or code.replace("_", " "),
                      "advice": advice, "message": issue.get("message")})
    headline = STATUS_WORDS.get(status, status)
    # the headline names what is wrong in a few words; the list below gives the advice
    rejects = [i for i in items if i["severity"] == "reject"]
    if status == "reject" and rejects:
        headline = "Retake: " + "; ".join(i["words"] for i in rejects)
    elif status == "warn" and items:
        headline = "Usable, with warnings: " + "; ".join(i["words"] for i in items)
    return {"status": status, "headline": headline, "items": items}


# colour_correction.reference -> what set the photo's colours, in plain words
COLOUR_REFERENCES = {
    "colour_card": "White balance and exposure set by the colour card in the photo",
    "sclera": "White balance and exposure set by the eye whites",
    "grey_world_non_skin": "White balance set by the neutral background; exposure as photographed",
    "none": "No colour reference found: colours as the camera recorded them",
}


def colour_reference(document: Mapping[str, Any]) -> str | None:
    """What set the analysis' white balance, for the results page (None for documents without)."""
    reference = (document.get("colour_correction") or {}).get("reference")
    if not reference:
        return None
    return COLOUR_REFERENCES.get(reference, "Colour reference: " + str(reference).replace("_", " "))


@functools.lru_cache(maxsize=1)
def _knowledge():
    from pipelines.knowledge.loader import load_knowledge

    return load_knowledge()


def region_label(name: str) -> str:
    try:
        label = _knowledge().region_label(name)
    except (KeyError, ValueError):   # a region the knowledge base does not label: its id in words
        label = None
    label = label or name.replace("_", " ")
    return label[:1].upper() + label[1:]


def severity_band(value: float | None) -> str:
    if value is None:
        return "none"
    return "low" if value < 34 else ("mid" if value < 67 else "high")


def score_rows(document: Mapping[str, Any]) -> list[dict]:
    """The whole face then each region (in the document's order): label, measurable, and per
    family ``{"value", "band"}`` (value None when not measured)."""
    def cells(scores: Mapping[str, Any] | None) -> dict:
        scores = scores or {}
        out = {}
        for f in FAMILIES:
            v = scores.get(f)
            v = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            out[f] = {"value": v, "band": severity_band(v)}
        return out

    rows = [{"key": "face", "label": "Whole face", "measurable": True, "scores": cells(document.get("scores"))}]
    for name, region in (document.get("regions") or {}).items():
        measurable = bool(region.get("measurable", True))
        rows.append({"key": name, "label": region_label(name), "measurable": measurable,
                     "scores": cells(region.get("scores") if measurable else None)})
    return rows


def view_boxes(document: Mapping[str, Any], margin: float = 0.3) -> dict:
    """Where the overlay should zoom, in photo pixels: the face box and each region's bounding
    box, widened by ``margin`` of their size (clamped to the photo), and the photo's size."""
    image = document.get("image") or {}
    width, height = image.get("width"), image.get("height")
    if not width or not height:
        return {}

    def widen(x0: float, y0: float, x1: float, y1: float, k: float) -> list[float]:
        mx, my = (x1 - x0) * k, (y1 - y0) * k
        x0, y0 = max(0.0, x0 - mx), max(0.0, y0 - my)
        x1, y1 = min(float(width), x1 + mx), min(float(height), y1 + my)
        return [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)]

    out: dict[str, Any] = {"size": [width, height], "regions": {}}
    box = (document.get("face") or {}).get("box")
    if box and len(box) == 4:
        x, y, w, h = (float(v) for v in box)
        out["face"] = widen(x, y, x + w, y + h, margin)
        out["face_size"] = overlay_size(out["size"], out["face"])
    for name, region in (document.get("regions") or {}).items():
        poly = region.get("polygon") or []
        if len(poly) >= 3:
            xs, ys = [float(p[0]) for p in poly], [float(p[1]) for p in poly]
            out["regions"][name] = widen(min(xs), min(ys), max(xs), max(ys), 0.6)
    return out


def overlay_size(size: list, box: list | None) -> int:
    """Longest side of the overlay PNG to ask for so that ``box`` gets about 1024 px (1024-2048,
    a multiple of 256). The page's script computes the same."""
    if not box:
        return 1024
    need = 1024 * max(size) / max(box[2], box[3], 1)
    return int(min(2048, max(1024, math.ceil(need / 256) * 256)))


def region_names(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(name, region_label(name)) for name in (document.get("regions") or {})]


# --- the intake form -----------------------------------------------------------------------


def intake_fields() -> dict:
    """What the intake form asks, from the knowledge base: the contraindication booleans (with
    their labels), the ingredients an allergy may name, courses and devices."""
    kb = _knowledge()
    booleans = [(c.id, c.label) for c in kb.contraindications.contraindications if c.effect == "not_a_candidate"]
    ingredients = [(i.id, i.name) for i in kb.ingredients.ingredients]
    courses = [(cid, c.label, c.description) for cid, c in kb.courses.templates.items()]
    devices = [(d.id, f"{d.id}: {d.name}") for d in kb.devices.devices]
    return {"booleans": booleans, "ingredients": ingredients, "courses": courses, "devices": devices}


def ingredient_names() -> dict[str, str]:
    return {i.id: i.name for i in _knowledge().ingredients.ingredients}


def tri_state(document: Mapping[str, Any] | None, field: str) -> str:
    """"yes" / "no" / "" (not asked) for a boolean intake field."""
    v = (document or {}).get(field)
    return "yes" if v is True else ("no" if v is False else "")
