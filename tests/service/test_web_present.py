"""Plain words on the practitioner pages (service/web/present.py)."""
from __future__ import annotations

from service.web.present import colour_reference


def test_the_results_page_says_what_set_the_colours():
    def doc(reference):
        return {"colour_correction": {"reference": reference}}
    assert colour_reference(doc("colour_card")) == "White balance and exposure set by the colour card in the photo"
    assert "eye whites" in colour_reference(doc("sclera"))
    assert "exposure as photographed" in colour_reference(doc("grey_world_non_skin"))
    assert colour_reference(doc("none")).startswith("No colour reference found")
    assert colour_reference(doc("future_reference")) == "Colour reference: future reference"
    assert colour_reference({}) is None
