/* mesoscan practitioner pages: the few things that need a script. Plain modern JS, no build.
 * Writes go to the JSON API (/api/v1) with the session cookie and the X-CSRF-Token header.
 * Every failure is shown as a message from the problem+json "detail", never as raw output. */
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function csrfToken() {
  const meta = $('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** A message for a failed API call: the problem's detail, in words a practitioner can act on. */
function problemText(status, problem, fallback) {
  if (status === 401) return "Your session has ended. Log in again (reload the page).";
  if (status === 403 && problem && problem.code === "csrf_failed") return "This page has expired. Reload it and try again.";
  if (status === 0) return "The server could not be reached. Check the connection and try again.";
  if (problem && problem.detail) {
    return status >= 500 && problem.request_id ? `${problem.detail} Request id: ${problem.request_id}.` : problem.detail;
  }
  if (status === 413) return "The file is too large.";
  return fallback || `The request failed (status ${status}).`;
}

class ApiFailure extends Error {
  constructor(status, problem) {
    super(problemText(status, problem));
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, url, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(url, { method, headers, credentials: "same-origin",
                              body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiFailure(0, null);
  }
  let data = null;
  try { data = await resp.json(); } catch (err) { data = null; }
  if (!resp.ok) throw new ApiFailure(resp.status, data);
  return data;
}

function showMessage(el, text) {
  if (!el) return;
  el.textContent = text || "";
  el.hidden = !text;
}

/* --- quality words (upload page) ------------------------------------------------------- */

function qualityWords() {
  const el = $("#quality-words");
  try { return el ? JSON.parse(el.textContent) : {}; } catch (err) { return {}; }
}

function phrase(words, code, fallback) {
  return (words[code] && words[code].words) || fallback || (code || "").replace(/_/g, " ");
}

function capital(text) { return text ? text[0].toUpperCase() + text.slice(1) : text; }

/** Fill the verdict box: headline plus one line per issue with its advice. */
function renderVerdict(box, status, headline, items, detail) {
  box.className = `verdict verdict-${status}`;
  box.replaceChildren();
  const head = document.createElement("p");
  head.className = "verdict-head";
  const badge = document.createElement("span");
  badge.className = `badge badge-${status}`;
  badge.textContent = { ok: "Photo OK", warn: "Warnings", reject: "Retake", error: "Not uploaded" }[status] || status;
  head.append(badge, " ", headline);
  box.append(head);
  if (items.length) {
    const ul = document.createElement("ul");
    ul.className = "verdict-items";
    for (const item of items) {
      const li = document.createElement("li");
      const b = document.createElement("b");
      b.textContent = capital(item.words);
      li.append(b);
      if (item.advice) li.append(`: ${item.advice}`);
      ul.append(li);
    }
    box.append(ul);
  }
  if (detail) {
    const p = document.createElement("p");
    p.className = "retake-detail";
    p.textContent = `Details: ${detail}`;
    box.append(p);
  }
  box.hidden = false;
}

function issuesOf(words, quality) {
  return ((quality && quality.issues) || []).map((i) => ({
    code: i.code, severity: i.severity,
    words: phrase(words, i.code, i.message),
    advice: words[i.code] ? words[i.code].advice : "",
  }));
}

/* --- upload page ------------------------------------------------------------------------- */

function initUpload() {
  const form = $("#upload-form");
  if (!form) return;
  const words = qualityWords();
  const input = $("#photo");
  const preview = $("#photo-preview");
  const button = $("#upload-button");
  const bar = $("#upload-progress");
  const state = $("#upload-state");
  const box = $("#upload-verdict");
  const visitSelect = $("#visit");
  let previewUrl = null;

  input.addEventListener("change", () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    const file = input.files[0];
    box.hidden = true;
    if (file && file.type.startsWith("image/") && !/hei[cf]/i.test(file.type)) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;
      preview.hidden = false;
      $("#preview-empty").hidden = true;
    } else {
      preview.hidden = true;
      $("#preview-empty").hidden = false;
    }
  });

  const fail = (status, headline, items, detail) => {
    bar.hidden = true;
    state.textContent = "";
    renderVerdict(box, status, headline, items, detail);
    button.disabled = false;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = input.files[0];
    if (!file) {
      fail("error", "Choose a photo first.", [], "");
      input.focus();
      return;
    }
    button.disabled = true;
    box.hidden = true;
    let visit = visitSelect.value;
    if (visit === "new") {   // the visit is made first, so a retake goes to the same visit
      state.textContent = "Recording today's visit…";
      try {
        const v = await api("POST", `/api/v1/patients/${form.dataset.patientId}/visits`, { date: form.dataset.today });
        visit = String(v.id);
        const option = new Option(`Visit of ${v.date}`, visit, true, true);
        visitSelect.querySelector('option[value="new"]').replaceWith(option);
      } catch (err) {
        fail("error", "The visit could not be recorded.", [], err.message);
        return;
      }
    }
    const data = new FormData();
    data.append("image", file);
    data.append("patient", form.dataset.patientCode);
    if (visit) data.append("visit", visit);

    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/analyses");
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "text";
    bar.hidden = false;
    bar.value = 0;
    state.textContent = "Uploading… 0 %";
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const pct = Math.round((100 * e.loaded) / e.total);
      bar.value = pct;
      state.textContent = `Uploading… ${pct} %`;
    });
    xhr.upload.addEventListener("load", () => {
      bar.removeAttribute("value");   // indeterminate while the server analyses
      state.textContent = "Uploaded. Analysing the photo…";
    });
    xhr.addEventListener("error", () => fail("error", "The upload failed.", [], problemText(0)));
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if ((xhr.status === 200 || xhr.status === 201) && body && body.record) {
        const q = body.quality || {};
        const items = issuesOf(words, q);
        const headline = q.status === "warn"
          ? "Usable, with warnings: " + items.map((i) => i.words).join("; ")
          : "Good photo";
        bar.hidden = true;
        state.textContent = xhr.status === 200 ? "This photo was analysed before. Opening the results…"
                                               : "Analysed. Opening the results…";
        renderVerdict(box, q.status || "ok", headline, items, "");
        window.location.assign(form.dataset.results.replace(/\/0$/, `/${body.record.id}`));
        return;
      }
      const problem = body || {};
      if (problem.retake || xhr.status === 422) {
        const code = problem.code || "";
        const rejects = issuesOf(words, problem.quality).filter((i) => i.severity === "reject");
        const main = problem.quality ? rejects : [];
        if (!main.length && code) {
          main.push({ code, words: phrase(words, code, problem.title), advice: words[code] ? words[code].advice : "" });
        }
        const headline = problem.retake
          ? "Retake: " + (main.length ? main.map((i) => i.words).join("; ") : phrase(words, code, "photo rejected"))
          : "The photo could not be analysed.";
        fail("reject", headline, main, problem.detail || "");
        return;
      }
      const code = problem.code || "";
      const known = words[code];
      fail("error", known ? capital(known.words) + "." : "The upload failed.",
           [], known ? `${known.advice} ${problem.detail || ""}`.trim() : problemText(xhr.status, problem));
    });
    xhr.send(data);
  });
}

/* --- results page: overlay toggles --------------------------------------------------------- */

const LAYER_CAPTIONS = {
  regions: "Regions: face box, landmarks and the measured regions.",
  spots: "Spots: brown spots from the melanin map (pigmentation).",
  redness: "Redness: red areas from the haemoglobin map (pigmentation).",
  pores: "Pores: dark blobs 0.1-0.5 mm across (texture).",
  wrinkles: "Wrinkles: line (valley) strength with each region's orientation (wrinkles).",
};

function initOverlay() {
  const controls = $("#overlay-controls");
  if (!controls) return;
  const img = $("#overlay-img");
  const frame = $("#overlay-frame");
  const loading = $("#overlay-loading");
  const error = $("#overlay-error");
  const caption = $("#overlay-caption");
  const region = $("#overlay-region");
  const zoom = $("#overlay-zoom");
  let boxes = {};
  try { boxes = JSON.parse($("#view-boxes").textContent) || {}; } catch (err) { boxes = {}; }
  let pending = null;

  const current = () => {
    const layer = ($('input[name="layer"]:checked', controls) || {}).value || "regions";
    return { layer, region: region.value };
  };
  /** The box to zoom to (photo px), or null for the whole photo. */
  const zoomBox = (sel) => {
    if (!zoom.checked || !boxes.size) return null;
    return (sel.region && boxes.regions && boxes.regions[sel.region]) || boxes.face || null;
  };
  /** Longest side of the PNG: enough pixels for the zoomed box, 1024-2048. */
  const sizeFor = (box) => {
    if (!box) return 1024;
    const need = 1024 * Math.max(...boxes.size) / Math.max(box[2], box[3]);
    return Math.min(2048, Math.max(1024, Math.ceil(need / 256) * 256));
  };
  const urlFor = (sel) => {
    const params = new URLSearchParams({ size: String(sizeFor(zoomBox(sel))) });
    if (sel.region) params.set("region", sel.region);
    return controls.dataset.base.replace("LAYER", encodeURIComponent(sel.layer)) + "?" + params;
  };
  const label = (sel) => {
    const layerLabel = $(`input[name="layer"][value="${sel.layer}"]`, controls).nextElementSibling.textContent;
    const regionLabel = sel.region ? region.selectedOptions[0].textContent : "all regions";
    return `${layerLabel} overlay on the photo, ${regionLabel}`;
  };
  /* Zoom with CSS only: the frame takes the box's aspect ratio and the image is scaled and
     shifted so the box fills it (percentages of the frame, so it follows any screen width). */
  const applyZoom = () => {
    const box = zoomBox(current());
    const [W, H] = boxes.size || [0, 0];
    const natural = img.naturalWidth && img.naturalHeight ? img.naturalWidth / img.naturalHeight : W / H;
    if (!box || !W || !H || Math.abs(natural - W / H) > 0.02 * (W / H)) {
      frame.classList.remove("zoomed");
      for (const k of ["aspectRatio", "width"]) frame.style[k] = "";
      for (const k of ["width", "left", "top"]) img.style[k] = "";
      return;
    }
    const [x, y, w, h] = box;
    frame.classList.add("zoomed");
    frame.style.aspectRatio = `${w} / ${h}`;
    frame.style.width = `min(100%, calc(70vh * ${(w / h).toFixed(4)}))`;
    img.style.width = `${(100 * W / w).toFixed(3)}%`;
    img.style.left = `${(-100 * x / w).toFixed(3)}%`;
    img.style.top = `${(-100 * y / h).toFixed(3)}%`;
  };

  const update = () => {
    const sel = current();
    const url = urlFor(sel);
    pending = url;
    showMessage(error, "");
    frame.classList.add("loading");
    loading.hidden = false;
    img.dataset.layer = sel.layer;
    img.dataset.region = sel.region;
    img.alt = label(sel);
    caption.textContent = LAYER_CAPTIONS[sel.layer] || "";
    applyZoom();
    if (img.getAttribute("src") !== url) img.src = url;
    else { frame.classList.remove("loading"); loading.hidden = true; }
    $$("#scores-table tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.region === sel.region));
  };

  img.addEventListener("load", () => {
    frame.classList.remove("loading");
    loading.hidden = true;
    img.hidden = false;
    applyZoom();
  });
  img.addEventListener("error", async () => {
    const url = pending;
    frame.classList.remove("loading");
    loading.hidden = true;
    if (!url) return;
    let text = "The overlay could not be loaded.";
    try {
      const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!resp.ok) {
        let problem = null;
        try { problem = await resp.json(); } catch (err) { problem = null; }
        text = problemText(resp.status, problem, text);
      }
    } catch (err) { text = problemText(0); }
    if (url !== pending) return;   // a newer choice is already loading
    img.hidden = true;
    showMessage(error, text);
  });

  controls.addEventListener("change", update);
  $$(".region-btn").forEach((btn) => btn.addEventListener("click", () => {
    region.value = btn.dataset.region;
    update();
    if (window.innerWidth <= 900) frame.scrollIntoView({ behavior: "smooth", block: "center" });
  }));
  update();   // the first image at the zoomed size
}

/* --- patient page: visits, progress chart, before/after ------------------------------------ */

function initVisitForm() {
  const form = $("#visit-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("#visit-error");
    showMessage(error, "");
    const body = {
      date: form.elements.date.value,
      ingredients: $$('input[name="ingredients"]:checked', form).map((i) => i.value),
      device: form.elements.device.value || null,
      notes: form.elements.notes.value.trim() || null,
    };
    if (!body.date) { showMessage(error, "Choose the date of the visit."); return; }
    const button = $('button[type="submit"]', form);
    button.disabled = true;
    try {
      await api("POST", `/api/v1/patients/${form.dataset.patient}/visits`, body);
      window.location.reload();
    } catch (err) {
      showMessage(error, err.message);
      button.disabled = false;
    }
  });
}

/** The problem's detail for a URL an <img> failed to load (the image tag cannot read it). */
async function imageProblem(url, fallback) {
  try {
    const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (resp.ok) return fallback;
    let problem = null;
    try { problem = await resp.json(); } catch (err) { problem = null; }
    return problemText(resp.status, problem, fallback);
  } catch (err) {
    return problemText(0);
  }
}

const VERDICTS = { improved: ["ok", "improved"], worsened: ["bad", "worsened"], no_real_change: ["sev", "no real change"] };

async function loadSummaries(section) {
  const box = $("#progress-summaries");
  if (!box || !section.dataset.progressUrl) return;
  let doc;
  try {
    doc = await api("GET", section.dataset.progressUrl);
  } catch (err) {
    showMessage($("#progress-error"), err.message);
    return;
  }
  const list = document.createElement("ul");
  list.className = "summaries-list";
  for (const s of (doc.summaries || []).slice(0, 12)) {
    const li = document.createElement("li");
    const verdict = (s.change && s.change.verdict) || s.verdict;
    if (VERDICTS[verdict]) {
      const badge = document.createElement("span");
      badge.className = `badge badge-${VERDICTS[verdict][0]}`;
      badge.textContent = VERDICTS[verdict][1];
      li.append(badge, " ");
    }
    li.append(s.text || "");
    list.append(li);
  }
  box.replaceChildren();
  const FIRST = 4;   // the whole-face lines; the regions' behind "more"
  if (list.children.length > FIRST + 1) {
    const more = document.createElement("details");
    const summary = document.createElement("summary");
    summary.className = "linkish";
    summary.textContent = `${list.children.length - FIRST} more, per region`;
    const rest = document.createElement("ul");
    rest.className = "summaries-list";
    while (list.children.length > FIRST) rest.prepend(list.lastElementChild);
    more.append(summary, rest);
    box.append(list, more);
  } else if (list.children.length) box.append(list);
  for (const note of doc.notes || []) {
    const p = document.createElement("p");
    p.className = "muted small";
    p.textContent = `Note: ${note}`;
    box.append(p);
  }
}

function initProgress() {
  const section = $("#progress");
  if (!section || section.dataset.available !== "yes") return;
  const chart = $("#progress-chart");
  if (chart) {
    const failed = async () => {
      chart.hidden = true;
      showMessage($("#progress-error"), await imageProblem(chart.src, "The progress chart could not be loaded."));
    };
    chart.addEventListener("error", failed);
    if (chart.complete && chart.naturalWidth === 0 && chart.getAttribute("src")) failed();
    loadSummaries(section);
  }
  initBeforeAfter(section);
}

function initBeforeAfter(section) {
  const box = $("#before-after");
  if (!box) return;
  const slider = $("#ba-slider");
  const bottom = $("#ba-img-before");
  const top = $("#ba-img-after");
  const line = $("#ba-line");
  const error = $("#ba-error");
  const setClip = () => {
    const v = Number(slider.value);
    top.style.clipPath = `inset(0 0 0 ${v}%)`;
    line.style.left = `${v}%`;
    slider.setAttribute("aria-valuetext", `divider at ${v} %: before on the left, after on the right`);
  };
  slider.addEventListener("input", setClip);
  setClip();
  let choices = [];
  try { choices = JSON.parse(section.dataset.compareChoices || "[]"); } catch (err) { choices = []; }
  if (choices.length < 2) return;
  const before = $("#ba-before");
  const after = $("#ba-after");
  for (const c of choices) {
    before.append(new Option(c.label, c.value));
    after.append(new Option(c.label, c.value));
  }
  before.value = String(choices[0].value);
  after.value = String(choices[choices.length - 1].value);
  let current = "";
  const urlOf = (template) => template.replace("BEFORE", encodeURIComponent(before.value))
                                      .replace("AFTER", encodeURIComponent(after.value));
  const load = () => {
    showMessage(error, "");
    if (before.value === after.value) { showMessage(error, "Choose two different visits."); return; }
    const urls = [urlOf(section.dataset.compareBefore), urlOf(section.dataset.compareAfter)];
    current = urls.join(" ");
    const stage = $("#ba-stage");
    stage.classList.add("loading");
    let done = 0;
    const settled = () => { if (++done === 2) stage.classList.remove("loading"); };
    const failed = async (img) => {
      settled();
      const mine = current;
      const text = await imageProblem(img.src, "The before/after images could not be made for these visits.");
      if (mine === current) { stage.hidden = true; showMessage(error, text); }
    };
    bottom.onload = settled; top.onload = settled;
    bottom.onerror = () => failed(bottom); top.onerror = () => failed(top);
    stage.hidden = false;
    bottom.alt = `Before: the photo of ${before.selectedOptions[0].textContent}`;
    top.alt = `After: the photo of ${after.selectedOptions[0].textContent}, aligned onto the before photo`;
    bottom.src = urls[0];
    top.src = urls[1];
  };
  before.addEventListener("change", load);
  after.addEventListener("change", load);
  box.hidden = false;
  load();
}

/* --- plan page: intake form and checklists ------------------------------------------------- */

function slug(text) {
  return text.trim().toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^[^a-z]+|_+$/g, "");
}

function initIntake() {
  const form = $("#intake-form");
  if (!form) return;
  const error = $("#intake-error");
  const stateEl = $("#intake-state");
  const allergyBox = $("#allergy-list");
  const meds = $("#medications");
  const sync = () => {
    allergyBox.disabled = (form.elements.allergies_asked.value !== "some");
    meds.disabled = (form.elements.medications_asked.value !== "some");
  };
  form.addEventListener("change", sync);
  sync();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showMessage(error, "");
    const intake = { schema: "mesoscan.intake/1" };
    for (const fs of $$("fieldset.tri[data-field]", form)) {
      const v = form.elements[fs.dataset.field].value;
      intake[fs.dataset.field] = v === "yes" ? true : v === "no" ? false : null;
    }
    const asked = form.elements.allergies_asked.value;
    if (asked === "none") intake.allergies = [];
    else if (asked === "some") {
      const ids = $$('input[name="allergy"]:checked', form).map((i) => i.value);
      for (const other of form.elements.allergy_other.value.split(",")) {
        const id = slug(other);
        if (id && !ids.includes(id)) ids.push(id);
      }
      if (!ids.length) { showMessage(error, "Tick the ingredients the patient is allergic to, or choose “None”."); return; }
      intake.allergies = ids;
    } else intake.allergies = null;
    const medsAsked = form.elements.medications_asked.value;
    if (medsAsked === "none") intake.medications = [];
    else if (medsAsked === "some") {
      const list = meds.value.split("\n").map((s) => s.trim()).filter(Boolean);
      if (!list.length) { showMessage(error, "List the medications, one per line, or choose “None”."); return; }
      intake.medications = list;
    } else intake.medications = null;
    const year = form.elements.birth_year.value.trim();
    intake.birth_year = year ? Number(year) : null;
    if (year && !Number.isInteger(intake.birth_year)) { showMessage(error, "The birth year must be a whole number."); return; }
    intake.sex = form.elements.sex.value || null;
    intake.skin_type = form.elements.skin_type.value || null;

    const button = $("#intake-submit");
    button.disabled = true;
    const patient = form.dataset.patient;
    try {
      stateEl.textContent = "Saving the intake…";
      await api("PUT", `/api/v1/patients/${patient}/intake`, intake);
      if (form.dataset.canPlan === "yes") {
        stateEl.textContent = "Making the plan…";
        const body = { template: form.elements.template.value };
        if (form.elements.start.value) body.start = form.elements.start.value;
        await api("POST", `/api/v1/patients/${patient}/plan`, body);
      }
      stateEl.textContent = "Saved.";
      window.location.hash = "plan";
      window.location.reload();
    } catch (err) {
      const field = err.problem && err.problem.field;
      showMessage(error, err.message + (field && !err.message.includes(field) ? ` (field: ${field})` : ""));
      stateEl.textContent = "";
      button.disabled = false;
      error.scrollIntoView({ block: "center" });
    }
  });
}

function initChecklists() {
  const plan = $("#plan[data-plan]");
  if (!plan) return;
  const key = `mesoscan:plan:${plan.dataset.plan}`;
  let saved = {};
  try { saved = JSON.parse(window.localStorage.getItem(key) || "{}"); } catch (err) { saved = {}; }
  for (const box of $$("input[data-check]", plan)) {
    box.checked = Boolean(saved[box.dataset.check]);
    box.addEventListener("change", () => {
      saved[box.dataset.check] = box.checked;
      try { window.localStorage.setItem(key, JSON.stringify(saved)); } catch (err) { /* private mode */ }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  initUpload();
  initOverlay();
  initVisitForm();
  initProgress();
  initIntake();
  initChecklists();
});
