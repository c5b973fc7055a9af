"""The practitioner's path through the web pages, in real headless Chromium (Playwright).

Log in, create a patient, upload the sample photo, read the quality verdict and the scores, see
the overlay load and switch layers and regions, fill the intake and get the plan with its
checklists, see the progress chart and the before/after slider; a blurred photo is refused with
retake advice. The app runs on 127.0.0.1 (werkzeug, background thread) on a temporary SQLite
database, the browser at a 1024x768 tablet size.

Set MESOSCAN_SCREENSHOTS=DIR to save a screenshot of every page into DIR.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from browser_helpers import EMAIL, PASSWORD, SAMPLE, blurred_photo, missing_reason, variant_photo

_reason = missing_reason()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

SHOTS = os.environ.get("MESOSCAN_SCREENSHOTS")


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def log_in(page: Page) -> None:
    page.goto("/patients")
    expect(page).to_have_url(re.compile(r"/login\?next=/patients$"))
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/patients$"))


def create_patient(page: Page, code: str, name: str = "") -> int:
    page.goto("/patients")
    page.get_by_role("textbox", name=re.compile(r"^Code")).fill(code)
    if name:
        page.get_by_role("textbox", name=re.compile(r"^Name")).fill(name)
    page.get_by_role("button", name="Create patient").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(code)
    return int(re.search(r"/patients/(\d+)$", page.url).group(1))


def upload_and_open_results(page: Page) -> None:
    """Press upload; the results page opens (or the test fails with the upload page's message)."""
    page.get_by_role("button", name="Upload and analyse").click()
    outcome = page.locator("#quality-verdict, #upload-verdict.verdict-reject, #upload-verdict.verdict-error")
    expect(outcome).to_be_visible(timeout=60_000)
    if not re.search(r"/analyses/\d+$", page.url):
        text = " ".join(page.locator("#upload-verdict").inner_text().split())
        pytest.fail(f"the upload was refused: {text}")


def natural_width(page: Page, selector: str) -> int:
    """Wait for the image to finish loading; its natural width (0 when it failed)."""
    page.wait_for_function("""(sel) => { const img = document.querySelector(sel);
        return img && img.complete && img.getAttribute('src'); }""", arg=selector)
    return page.eval_on_selector(selector, "img => img.naturalWidth")


def test_login_page_refuses_a_wrong_password(page: Page):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    shot(page, "01-login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    expect(page.get_by_label("Email")).to_have_value(EMAIL)


def test_practitioner_flow(page: Page, live):
    log_in(page)

    # patients: create one, find it by searching
    patient_id = create_patient(page, "P-0001", "Ada Example")
    expect(page.get_by_role("status").first).to_contain_text("Patient P-0001 created")
    create_patient(page, "P-0002", "Bob Other")
    page.goto("/patients")
    page.get_by_label("Search patients by code or name").fill("ada")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("P-0001")
    shot(page, "02-patients")
    rows.first.get_by_role("link", name="P-0001").click()
    expect(page).to_have_url(re.compile(rf"/patients/{patient_id}$"))
    expect(page.get_by_text("No photo analysed yet.")).to_be_visible()

    # upload the sample photo: progress, then the results page
    page.get_by_role("link", name="Upload photo").click()
    expect(page.get_by_label("Visit")).to_have_value("new")
    page.get_by_label("Face photo").set_input_files(str(SAMPLE))
    expect(page.get_by_role("img", name="Preview of the chosen photo")).to_be_visible()
    shot(page, "03-upload")
    upload_and_open_results(page)

    # the quality verdict in plain words, and the scores
    verdict = page.locator("#quality-verdict")
    expect(verdict).to_contain_text("Usable, with warnings: low resolution")
    expect(verdict).to_contain_text("Move closer")
    expect(page.locator("#colour-reference")).to_have_text("White balance and exposure set by the eye whites")
    face_bars = page.locator(".face-bar")
    expect(face_bars).to_have_count(4)
    for label in ("Pigmentation", "Texture", "Wrinkles", "Overall"):
        value = page.locator(".face-bar", has_text=label).locator(".face-bar-value").inner_text()
        assert 0 <= float(value) <= 100, (label, value)
    table_rows = page.locator("#scores-table tbody tr")
    expect(table_rows).to_have_count(12)   # whole face + 11 regions
    expect(table_rows.nth(0)).to_contain_text("Whole face")
    expect(page.locator("#scores-table")).to_contain_text("Left cheek")
    bar = page.get_by_role("img", name=re.compile(r"^Pigmentation, whole face: \d+ of 100$"))
    expect(bar).to_be_visible()

    # the overlay loads, zoomed to the face; switching the layer and the region re-requests the PNG
    assert natural_width(page, "#overlay-img") > 0
    expect(page.locator("#overlay-frame")).to_have_class(re.compile("zoomed"))
    shot(page, "04-results")
    page.get_by_label("Zoom to face/region").uncheck()   # the whole photo (and smaller PNGs from here on)
    expect(page.locator("#overlay-frame")).not_to_have_class(re.compile("zoomed"))
    expect(page.locator("#overlay-img")).to_have_attribute("src", re.compile(r"/overlays/regions\.png\?size=1024$"))
    assert natural_width(page, "#overlay-img") > 0
    page.locator(".segmented label", has_text="Spots").click()
    expect(page.locator("#overlay-img")).to_have_attribute("src", re.compile(r"/overlays/spots\.png\?size=\d+$"))
    assert natural_width(page, "#overlay-img") > 0
    expect(page.locator("#overlay-img")).to_have_attribute("alt", "Spots overlay on the photo, all regions")
    page.get_by_label("Region", exact=True).select_option("cheek_left")
    expect(page.locator("#overlay-img")).to_have_attribute("src", re.compile(r"/overlays/spots\.png\?size=\d+&region=cheek_left$"))
    assert natural_width(page, "#overlay-img") > 0
    page.locator("#scores-table").get_by_role("button", name="Forehead").click()
    expect(page.get_by_label("Region", exact=True)).to_have_value("forehead")
    expect(page.locator('#scores-table tr[data-region="forehead"]')).to_have_class(re.compile("selected"))
    page.locator(".segmented label", has_text="Wrinkles").click()
    expect(page.locator("#overlay-img")).to_have_attribute("src", re.compile(r"/overlays/wrinkles\.png\?size=\d+&region=forehead$"))
    assert natural_width(page, "#overlay-img") > 0
    page.locator(".segmented label", has_text="Pores").click()
    assert natural_width(page, "#overlay-img") > 0
    # an overlay the server refuses (here: as for a photo with no map of that layer) is a
    # message from the problem's detail, not a broken image
    page.route("**/overlays/redness.png*", lambda route: route.fulfill(
        status=404, content_type="application/problem+json",
        body='{"status": 404, "code": "layer_unavailable", "retake": false, '
             '"detail": "layer \'redness\' is not available for this analysis"}'))
    page.locator(".segmented label", has_text="Redness").click()
    expect(page.locator("#overlay-error")).to_have_text("layer 'redness' is not available for this analysis")
    expect(page.locator("#overlay-img")).to_be_hidden()
    page.unroute("**/overlays/redness.png*")
    page.locator(".segmented label", has_text="Regions").click()
    assert natural_width(page, "#overlay-img") > 0
    expect(page.locator("#overlay-error")).to_be_hidden()

    # intake -> plan with its checklists
    page.get_by_role("link", name="Intake & plan").first.click()
    expect(page.get_by_text("No plan yet.")).to_be_visible()
    intake = page.locator("#intake-form")
    for label in ("Pregnancy", "Breastfeeding", "Cancer", "Diabetes treated with insulin",
                  "Blood coagulation disorder", "History of paralysis", "Cardiac disease", "Urticaria"):
        intake.get_by_role("group", name=label, exact=True).get_by_role("radio", name="No", exact=True).check()
    intake.get_by_role("group", name="Allergies to ingredients").get_by_role("radio", name="Allergic to…").check()
    intake.get_by_label("Glutathione").check()
    intake.get_by_role("group", name="Medications and supplements").get_by_role("radio", name="Takes…").check()
    intake.get_by_label("One per line").fill("Aspirin 100 mg")
    intake.get_by_label("Birth year").fill("1984")
    intake.get_by_label("Sex").select_option("female")
    intake.get_by_label("Skin type (Fitzpatrick)").select_option("III")
    intake.get_by_label("First session").fill("2025-03-03")
    shot(page, "05-intake")
    intake.get_by_role("button", name="Save intake and make plan").click()
    plan = page.locator("#plan")
    expect(plan.locator(".plan-status .badge")).to_have_text(re.compile("Needs review|Eligible"))
    expect(plan).to_contain_text("Suggested ingredients")
    expect(plan.locator(".excluded")).to_contain_text("Glutathione")
    expect(plan.locator(".excluded")).to_contain_text("Allergy")
    expect(plan.get_by_role("heading", name="Before the session")).to_be_visible()
    expect(plan).to_contain_text("WARNING, blood thinning: the patient takes Aspirin 100 mg")
    expect(plan.get_by_role("heading", name="After the session")).to_be_visible()
    expect(plan).to_contain_text("Patch test on 2025-03-02")
    expect(plan.locator(".calendar li")).to_have_count(8)
    expect(plan.locator(".calendar")).to_contain_text("2025-03-17")
    suggestions = plan.locator(".suggestions li")
    assert suggestions.count() >= 1
    expect(suggestions.first.locator(".reason")).not_to_be_empty()
    # checklists are ticked and remembered on this device
    first_pre = plan.locator('input[data-check^="pre:"]').first
    first_pre.check()
    page.reload()
    expect(page.locator('#plan input[data-check^="pre:"]').first).to_be_checked()
    # the saved intake is shown again in the form
    expect(page.locator('#intake-form input[name="pregnant"][value="no"]')).to_be_checked()
    expect(page.locator('#intake-form input[name="allergy"][value="glutathione"]')).to_be_checked()
    shot(page, "06-plan")

    # the patient page lists the visit, the analysis and the plan status
    page.goto(f"/patients/{patient_id}")
    expect(page.locator("#analyses-title + .table-wrap tbody tr")).to_have_count(1)
    expect(page.locator("section", has=page.locator("#visits-title")).locator("tbody tr")).to_have_count(1)
    expect(page.locator(".summary")).to_contain_text(re.compile("Needs review|Eligible"))
    shot(page, "07-patient")


def test_blurred_photo_shows_retake_advice(page: Page, live, tmp_path):
    log_in(page)
    create_patient(page, "P-BLUR")
    page.get_by_role("link", name="Upload photo").click()
    page.get_by_label("Face photo").set_input_files(str(blurred_photo(tmp_path / "blurred.jpg")))
    page.evaluate("""() => { window.__states = [];
        new MutationObserver(() => window.__states.push(document.querySelector('#upload-state').textContent))
          .observe(document.querySelector('#upload-state'), {childList: true, characterData: true, subtree: true}); }""")
    page.get_by_role("button", name="Upload and analyse").click()
    verdict = page.locator("#upload-verdict")
    expect(verdict).to_be_visible(timeout=60_000)
    expect(verdict).to_contain_text("Retake: photo blurred")
    expect(verdict).to_contain_text("Hold the camera steady")
    expect(verdict).to_have_class(re.compile("verdict-reject"))
    states = page.evaluate("window.__states")
    assert any(s.startswith("Uploading") for s in states), states
    assert any("Analysing" in s for s in states), states
    assert "Traceback" not in page.content()
    # nothing was stored; the visit made for the upload is kept for the retake
    expect(page.get_by_label("Visit")).to_have_value(re.compile(r"^\d+$"))
    expect(page.get_by_role("button", name="Upload and analyse")).to_be_enabled()
    shot(page, "08-retake")
    page.get_by_role("link", name="P-BLUR").click()
    expect(page.get_by_text("No photo analysed yet.")).to_be_visible()


def test_not_a_photo_is_a_message(page: Page, tmp_path):
    log_in(page)
    create_patient(page, "P-TXT")
    page.get_by_role("link", name="Upload photo").click()
    page.get_by_label("Visit").select_option("")
    text = tmp_path / "notes.jpg"
    text.write_text("these are notes, not a photo")
    page.get_by_label("Face photo").set_input_files(str(text))
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator("#upload-verdict")).to_contain_text("The file is not a photo")
    expect(page.locator("#upload-verdict")).to_contain_text("Not uploaded")
    expect(page.locator("#upload-verdict")).not_to_contain_text("Retake")


def test_errors_are_pages_not_tracebacks(page: Page):
    log_in(page)
    page.goto("/patients/987654")
    expect(page.get_by_role("heading", level=1)).to_have_text("Patient not found")
    expect(page.get_by_role("alert")).to_contain_text("No patient with this id in your clinic.")
    page.goto("/analyses/987654")
    expect(page.get_by_role("heading", level=1)).to_have_text("Analysis not found")
    # a duplicate code is a message on the form
    create_patient(page, "P-DUP")
    page.goto("/patients")
    page.get_by_role("textbox", name=re.compile(r"^Code")).fill("P-DUP")
    page.get_by_role("button", name="Create patient").click()
    expect(page.get_by_role("alert")).to_contain_text("already exists")
    # logging out ends the session
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_contain_text("You are logged out.")
    page.goto("/patients")
    expect(page).to_have_url(re.compile(r"/login"))


def test_progress_chart_and_before_after(page: Page, live, tmp_path):
    assert live.has_endpoint("progress."), "the progress API (service/api/progress.py) is not registered"
    log_in(page)
    patient_id = create_patient(page, "P-PROG")
    # two visits a month apart, one photo each
    page.locator(".add-visit summary").click()
    page.get_by_label("Date").fill("2025-01-06")
    page.get_by_role("button", name="Save visit").click()
    expect(page.locator("section", has=page.locator("#visits-title")).locator("tbody tr")).to_have_count(1)
    # (other files than the flow test's: a photo belongs to one patient of the clinic)
    for visit_label, photo in (("Visit of 2025-01-06", variant_photo(tmp_path / "earlier.jpg", 2)),
                               (None, variant_photo(tmp_path / "later.jpg", 8))):
        page.goto(f"/patients/{patient_id}/upload")
        if visit_label:
            page.get_by_label("Visit").select_option(label=visit_label)
        page.get_by_label("Face photo").set_input_files(str(photo))
        upload_and_open_results(page)
    page.goto(f"/patients/{patient_id}")
    assert natural_width(page, "#progress-chart") > 0
    expect(page.locator("#progress-summaries li").first).to_contain_text("whole face")
    expect(page.get_by_role("link", name=re.compile(r"^Report of 2025-01-06"))).to_have_attribute(
        "href", re.compile(r"/api/v1/visits/\d+/report\.html$"))
    expect(page.locator("#before-after")).to_be_visible()
    assert natural_width(page, "#ba-img-before") > 0
    assert natural_width(page, "#ba-img-after") > 0
    page.get_by_label(re.compile("Slide to compare")).fill("20")
    clip = page.eval_on_selector("#ba-img-after", "img => img.style.clipPath")
    assert clip == "inset(0px 0px 0px 20%)", clip
    shot(page, "09-progress")
