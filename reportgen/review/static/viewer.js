// The review page's image viewer: NiiVue (static/vendor/niivue.umd.js, bundled; nothing
// is fetched from outside this server). Two panes side by side with linked cursors, each
// in three linked planes or one; scroll, zoom and pan, window/level by right-drag, a
// calliper; the early subtraction, its MIP and the dynamic series' curve at the cursor
// for breast MRI; each finding's box and heat map on top. Radiological convention: the
// patient's right on the screen's left, with the orientation letters on every plane.
// Without WebGL2 the page keeps its server-rendered slices (review.js).
"use strict";

window.reportgenViewer = (function () {
  const $ = (id) => document.getElementById(id);
  const root = $("page");
  if (!root || typeof niivue === "undefined") return null;
  const page = JSON.parse(root.dataset.page);
  const viewer = page.viewer || { volumes: [], findings: [] };
  const images = viewer.volumes.filter((v) => v.kind !== "overlay");
  const overlays = new Set(viewer.volumes.filter((v) => v.kind === "overlay").map((v) => v.name));
  const webgl2 = !!document.createElement("canvas").getContext("webgl2");
  if (!images.length || !webgl2) return null;

  // mouse: the tool on the left button (shift: calliper, ctrl: cursor), window/level on
  // the right, pan on the middle; the wheel scrolls slices (NiiVue's DRAG_MODE numbers)
  const TOOLS = { cursor: 8, window: 9, calliper: 2, pan: 3 };
  const LAYOUTS = { planes: 3, axial: 0, coronal: 1, sagittal: 2 };
  const url = (name) => `/drafts/${page.draft_id}/volumes/${name}.nii.gz`;
  const panes = {};

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function defaultRight() {
    for (const name of ["SUB", "DCE_1", "DWI", "ADC"]) {
      if (images.some((v) => v.name === name)) return name;
    }
    return images[Math.min(1, images.length - 1)].name;
  }

  function setTool(nv) {
    nv.setMouseEventConfig({
      leftButton: { primary: TOOLS[$("viewer-tool").value], withShift: 2, withCtrl: 8 },
      rightButton: 9,
      centerButton: 3,
    });
  }

  function setLayout(nv, name) {
    // a projection has one slice: it is only ever shown as the axial plane
    nv.setSliceType(name === "MIP" ? 0 : LAYOUTS[$("viewer-layout").value]);
  }

  async function load(side) {
    const nv = panes[side];
    const name = $(`viewer-${side}`).value;
    const shown = images.find((v) => v.name === name);
    const base = { url: url(name), name: `${name}.nii.gz` };
    if (shown && shown.window) [base.cal_min, base.cal_max] = shown.window; // a CT window (HU)
    const list = [base];
    if ($("viewer-evidence").checked && name !== "MIP") {
      if (overlays.has("heat")) {
        list.push({ url: url("heat"), name: "heat.nii.gz", colormap: "warm", opacity: 0.45, cal_min: 0.5, cal_max: 1 });
      }
      if (overlays.has("boxes")) {
        list.push({ url: url("boxes"), name: "boxes.nii.gz", colormap: "green", opacity: 1, cal_min: 0.5, cal_max: 1 });
      }
    }
    const dynamic = shown?.kind === "dynamic";
    nv.graph.opacity = dynamic ? 1 : 0;
    nv.graph.autoSizeMultiplanar = true;
    await nv.loadVolumes(list);
    if (dynamic && nv.volumes[0].nFrame4D > 1) nv.setFrame4D(nv.volumes[0].id, 1); // early phase
    setLayout(nv, name);
    const other = panes[side === "left" ? "right" : "left"];
    if (other && other.volumes.length) {
      nv.scene.crosshairPos = nv.mm2frac(other.frac2mm(other.scene.crosshairPos));
      nv.drawScene();
    }
  }

  function goTo(centre) {
    for (const nv of Object.values(panes)) {
      if (!nv.volumes.length) continue;
      nv.scene.crosshairPos = nv.mm2frac(centre);
      nv.drawScene();
    }
  }

  async function start() {
    const selectors = { left: images[0].name, right: defaultRight() };
    for (const [side, chosen] of Object.entries(selectors)) {
      const select = $(`viewer-${side}`);
      for (const v of images) select.appendChild(el("option", { value: v.name }, v.label));
      select.value = chosen;
      const nv = new niivue.Niivue({
        isRadiologicalConvention: true,
        isOrientationTextVisible: true,
        multiplanarShowRender: 0,
        multiplanarLayout: 2, // a 2 x 2 grid: the fourth tile holds the curve of a 4D series
        dragAndDropEnabled: false,
        show3Dcrosshair: false,
        backColor: [0, 0, 0, 1],
        crosshairColor: [1, 0.85, 0, 1],
      });
      await nv.attachToCanvas($(`viewer-${side}-canvas`));
      setTool(nv);
      panes[side] = nv;
    }
    panes.left.broadcastTo([panes.right], { "2d": true, "3d": true });
    panes.right.broadcastTo([panes.left], { "2d": true, "3d": true });
    panes.left.onLocationChange = (data) => { $("viewer-cursor").textContent = data.string || ""; };
    await load("left");
    await load("right");
    const buttons = $("viewer-findings");
    for (const finding of viewer.findings) {
      const button = el("button", { type: "button", "data-finding": String(finding.number) }, `Finding ${finding.number}`);
      button.addEventListener("click", () => goTo(finding.centre_mm));
      buttons.appendChild(button);
    }
    if (viewer.findings.length) goTo(viewer.findings[0].centre_mm);
    for (const side of ["left", "right"]) $(`viewer-${side}`).addEventListener("change", () => load(side));
    $("viewer-evidence").addEventListener("change", async () => { await load("left"); await load("right"); });
    $("viewer-layout").addEventListener("change", () => {
      for (const side of ["left", "right"]) setLayout(panes[side], $(`viewer-${side}`).value);
    });
    $("viewer-tool").addEventListener("change", () => Object.values(panes).forEach(setTool));
  }

  $("volume-viewer").hidden = false;
  $("slice-viewer").hidden = true;
  const ready = start().catch((error) => {
    // the server-rendered slices are still there: show them, and say why
    $("volume-viewer").hidden = true;
    $("slice-viewer").hidden = false;
    $("viewer-error").textContent = `Browser viewer unavailable (slices shown instead): ${error.message || error}`;
    throw error;
  });
  return { panes, ready, goTo };
})();
