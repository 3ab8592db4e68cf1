// The review page: viewer controls, the report form, live validation, save and sign.
// Everything shown is set with textContent or attributes, never innerHTML.
"use strict";

(function () {
  const root = document.getElementById("page");
  const page = JSON.parse(root.dataset.page);
  const csrf = root.dataset.csrf;
  const lang = page.lang;
  let version = page.version;
  let signed = page.status === "signed";
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- viewer -------------------------------------------------------------------
  const sequences = Object.keys(page.sequences);
  if (!sequences.length) {
    $("no-images").hidden = false;
    $("slice-image").hidden = true;
  }
  for (const name of sequences) $("sequence").appendChild(el("option", { value: name }, name));
  function setSliceRange() {
    const n = page.sequences[$("sequence").value] || 1;
    $("slice").max = String(n - 1);
    if (+$("slice").value > n - 1) $("slice").value = String(Math.floor(n / 2));
  }
  function showSlice() {
    if (!sequences.length) return;
    const params = new URLSearchParams({
      seq: $("sequence").value,
      z: $("slice").value,
      overlay: $("overlay").checked ? "true" : "false",
    });
    if ($("level").value !== "") params.set("level", $("level").value);
    if ($("width").value !== "") params.set("width", $("width").value);
    $("slice-number").textContent = $("slice").value;
    $("slice-image").src = `/drafts/${page.draft_id}/slice.png?${params}`;
  }
  if (sequences.length) {
    $("slice").value = String(Math.floor((page.sequences[sequences[0]] || 1) / 2));
    setSliceRange();
    showSlice();
  }
  $("sequence").addEventListener("change", () => { setSliceRange(); showSlice(); });
  for (const id of ["slice", "level", "width", "overlay"]) $(id).addEventListener("input", showSlice);

  // -- the form -------------------------------------------------------------------
  function control(spec, value, idPrefix, checks) {
    const note = checks ? checks[spec.id] : undefined;
    const label = el("label", note ? { "data-field": spec.id, class: "check" } : { "data-field": spec.id });
    const text = spec.label + (spec.unit ? ` (${spec.unit})` : "") + (spec.required ? " *" : "");
    label.appendChild(el("span", {}, text));
    let input;
    const id = `${idPrefix}${spec.id}`;
    if (spec.type === "enum") {
      input = el("select", { id, name: spec.id });
      input.appendChild(el("option", { value: "" }, "—"));
      for (const [val, lab] of spec.options) input.appendChild(el("option", { value: val }, lab));
      input.value = value === undefined || value === null ? "" : String(value);
    } else if (spec.type === "number") {
      input = el("input", { id, name: spec.id, type: "number", step: String(spec.step) });
      if (spec.minimum !== null) input.min = String(spec.minimum);
      if (spec.maximum !== null) input.max = String(spec.maximum);
      input.value = value === undefined || value === null ? "" : String(value);
    } else if (spec.type === "bool") {
      // three states: an optional finding left unstated must stay unstated, not become "no"
      input = el("select", { id, name: spec.id });
      input.appendChild(el("option", { value: "" }, "—"));
      input.appendChild(el("option", { value: "true" }, page.yes_no[0]));
      input.appendChild(el("option", { value: "false" }, page.yes_no[1]));
      input.value = value === true ? "true" : value === false ? "false" : "";
    } else {
      input = el("input", { id, name: spec.id, type: "text", maxlength: "500" });
      input.value = value || "";
    }
    input.dataset.type = spec.type;
    input.addEventListener("change", schedulePreview);
    label.appendChild(input);
    if (note) label.appendChild(el("span", { class: "check-note" }, note));  // the model was unsure
    return label;
  }

  function readValues(container) {
    const out = {};
    for (const input of container.querySelectorAll("[data-type]")) {
      if (input.dataset.type === "bool") { if (input.value !== "") out[input.name] = input.value === "true"; }
      else if (input.value !== "") out[input.name] = input.dataset.type === "number" ? Number(input.value) : input.value;
    }
    return out;
  }

  const reportFields = $("report-fields");
  for (const spec of page.report_controls) reportFields.appendChild(control(spec, page.values.fields[spec.id], "field-", page.checks.fields));

  function addFinding(values, checks) {
    const box = el("fieldset", { class: "finding" });
    const legend = el("legend");
    box.appendChild(legend);
    for (const spec of page.finding_controls) box.appendChild(control(spec, values[spec.id], "finding-", checks));
    const remove = el("button", { type: "button", class: "remove-finding" }, "Remove finding");
    remove.addEventListener("click", () => { box.remove(); numberFindings(); schedulePreview(); });
    box.appendChild(remove);
    box.appendChild(el("p", { class: "hint finding-derived" }));
    $("findings").appendChild(box);
    numberFindings();
  }
  function numberFindings() {
    const boxes = $("findings").querySelectorAll("fieldset.finding");
    boxes.forEach((box, i) => {
      box.querySelector("legend").textContent = `Finding ${i + 1}`;
      box.id = `finding-${i + 1}`;
      for (const input of box.querySelectorAll("[data-type]")) input.id = `finding-${i + 1}-${input.name}`;
    });
    $("add-finding").disabled = boxes.length >= page.finding_max;
    // a template's mandatory findings (FIGO's primary tumour) cannot be removed
    for (const button of $("findings").querySelectorAll(".remove-finding")) button.disabled = boxes.length <= page.finding_min;
  }
  page.values.findings.forEach((f, i) => addFinding(f, (page.checks.findings || [])[i]));
  $("add-finding").addEventListener("click", () => { addFinding({}); schedulePreview(); });
  $("comment").value = page.values.comment || "";
  $("comment").addEventListener("change", schedulePreview);
  $("indication").value = page.values.indication || "";
  $("indication").addEventListener("change", schedulePreview);

  function formReport() {
    return {
      fields: readValues(reportFields),
      findings: [...$("findings").querySelectorAll("fieldset.finding")].map(readValues),
      comment: $("comment").value,
      indication: $("indication").value,
    };
  }

  // -- server calls -----------------------------------------------------------------
  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = { error: `HTTP ${response.status}` }; }
    return { ok: response.ok, status: response.status, data };
  }

  // -- asking the draft a closed-ended question (answered from the stored draft) --------
  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = $("ask-question").value.trim();
    if (!question) return;
    const response = await fetch(
      `/api/drafts/${page.draft_id}/ask?lang=${lang}&q=${encodeURIComponent(question)}`,
      { credentials: "same-origin" },
    );
    let data = {};
    try { data = await response.json(); } catch (e) { data = { error: `HTTP ${response.status}` }; }
    if (!response.ok) { $("ask-answer").textContent = data.error || data.detail || "question refused"; return; }
    const parts = [data.text];
    if (data.probability !== null) parts.push(`probability ${data.probability.toFixed(2)}`);
    if (data.field_id) parts.push(`field ${data.field_id}`);
    for (const e of data.evidence) parts.push(`finding ${e.finding}`);
    parts.push(`from ${data.answered_from}`);
    $("ask-answer").textContent = parts.join(" · ");  // text, never HTML
  });

  function say(text, kind) {
    $("message").textContent = text;
    $("message").className = kind || "";
  }

  let timer = null;
  let asked = 0;  // previews answer out of order: only the latest one's answer is shown
  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(preview, 250);
  }
  async function preview() {
    const mine = ++asked;
    const { ok, data } = await post(`/api/drafts/${page.draft_id}/preview?lang=${lang}`, { report: formReport() });
    if (mine !== asked) return;  // a later edit's preview is on its way
    if (!ok) { say(data.error || "preview failed", "error"); return; }
    const derived = $("derived");
    derived.replaceChildren();
    for (const [k, v] of Object.entries(data.derived)) {
      derived.appendChild(el("dt", {}, k));
      derived.appendChild(el("dd", { id: `derived-${k}`, "data-value": String(v) }, data.labels[v] || String(v)));
    }
    const boxes = $("findings").querySelectorAll("fieldset.finding");
    data.finding_derived.forEach((d, i) => {
      if (boxes[i]) boxes[i].querySelector(".finding-derived").textContent =
        Object.entries(d).map(([k, v]) => `${k}: ${data.labels[v] || v}`).join("; ");
    });
    const problems = $("problems");
    problems.replaceChildren();
    for (const p of data.problems) problems.appendChild(el("li", { class: p.severity }, `${p.where}: ${p.message}`));
    if (!data.problems.length) problems.appendChild(el("li", {}, "no problems"));
    $("replacements").textContent = data.replacements.length
      ? "Preferred terms used: " + data.replacements.map((r) => `“${r.found}” → “${r.preferred}”`).join(", ")
      : "";
    $("narrative").textContent = data.narrative;
  }

  // Save and Sign are never disabled by the live validation: a click between an edit and
  // its preview was once swallowed by a button still disabled from the value before. The
  // server checks every write and says why it refuses; only a write in flight (no double
  // submission) and a signed report disable them.
  let writing = false;
  function setButtons() { $("save").disabled = $("sign").disabled = signed || writing; }
  async function write(kind) {
    const path = `/api/drafts/${page.draft_id}/${kind === "sign" ? "sign" : "revisions"}?lang=${lang}`;
    writing = true;
    setButtons();
    let answer;
    try { answer = await post(path, { version, report: formReport() }); }
    finally { writing = false; setButtons(); }
    const { ok, status, data } = answer;
    if (ok) {
      version = data.version;
      $("status").textContent = data.status;
      if (kind === "sign") { signed = true; setButtons(); }
      say(kind === "sign" ? `Signed (version ${version}).` : `Saved (version ${version}).`, "ok");
    } else if (status === 409) {
      say(`Not saved: ${data.error}`, "conflict");
    } else {
      say(`Not saved: ${data.error}`, "error");
    }
  }
  $("save").addEventListener("click", () => write("save"));
  $("sign").addEventListener("click", () => { if (window.confirm(page.attestation)) write("sign"); });
  setButtons();
  preview();
})();
