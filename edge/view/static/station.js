// edge-inspect live view: one station's page. Draws the latest part (or the NG held until acknowledged), the
// verdict, score against threshold, counts, latency, camera and freshness, and the strip of recent parts.
// window.edgeView exposes what the page drew, for tests and the bench: the publish-to-screen latency of every
// part drawn is measured here (Date.now() against the verdict's t_publish, once the canvases are drawn).
import {
  cameraText, clock, connect, decode, drawPart, drawStored, fetchBitmap, freshnessText, imageUrl, percent, setPill,
  verdictClass,
} from "./common.js";

const station = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const $ = (id) => document.getElementById(id);
const main = { viewer: $("viewer"), frame: $("frame"), heat: $("heat"), boxes: $("boxes") };
const zoom = { viewer: $("zoom-viewer"), frame: $("zoom-frame"), heat: $("zoom-heat"), boxes: $("zoom-boxes") };
const edgeView = window.edgeView = {
  station, updates: 0, drawn: 0, skippedParts: 0, lastDrawnPart: 0, latencies: [], linked: false, state: null,
};
let viewId = "";
let pending = null;  // the newest update not drawn yet (latest-only on the page too)
let drawing = false;
let held = null;  // the NG part held on screen, with hold on NG
let acknowledgedUpTo = 0;  // NG parts up to this view number were acknowledged
let lastState = null;
let shownHours = "";
let shownHistory = "";

// Write a DOM property only when it changes: at 20 updates a second, unchanged writes still cost style and
// layout work in the browser.
function set(target, property, value) {
  const text = typeof value === "boolean" ? value : String(value);
  if (target[property] !== text) target[property] = text;
}

$("station").textContent = station;
document.title = `edge-inspect · ${station}`;

const opacity = $("opacity");
opacity.value = localStorage.getItem("edge-view-opacity") || opacity.value;
const applyOpacity = () => {
  for (const heat of [main.heat, zoom.heat]) heat.style.opacity = String(opacity.value / 100);
  $("opacity-value").textContent = `${opacity.value} %`;
  localStorage.setItem("edge-view-opacity", opacity.value);
};
opacity.addEventListener("input", applyOpacity);
applyOpacity();

const hold = $("hold");
hold.checked = localStorage.getItem("edge-view-hold") === "1";
hold.addEventListener("change", () => {
  localStorage.setItem("edge-view-hold", hold.checked ? "1" : "0");
  acknowledgedUpTo = lastState && lastState.last_ng ? lastState.last_ng.part : 0;  // from now on
  if (!hold.checked) release();
});
$("ack").addEventListener("click", () => {
  acknowledgedUpTo = Math.max(acknowledgedUpTo, lastState && lastState.last_ng ? lastState.last_ng.part : 0);
  release();
});

function release() {
  held = null;
  $("held").hidden = true;
  const latest = lastState && lastState.latest;
  if (!latest) return;
  showVerdict(latest);
  edgeView.lastDrawnPart = latest.part;
  drawStored(main, station, latest, viewId).catch(() => {});
}

function showVerdict(part) {
  const box = $("verdict");
  set(box, "className", `verdict ${verdictClass(part)}`);
  set(box.firstChild, "textContent", part ? (part.error ? "NG" : part.verdict) : "–");
  set($("verdict-detail"), "textContent", part
    ? `seq ${part.seq} · ${clock(part.t_capture)}${part.error ? ` · ${part.error}` : ""}` : "no part yet");
  set($("score"), "textContent", part && part.score !== null ? part.score.toFixed(3) : "–");
  set($("threshold"), "textContent", part && part.threshold !== null ? part.threshold.toFixed(3) : "–");
  const fill = $("score-fill");
  const normalized = part && part.normalized_score !== null ? part.normalized_score : 0;
  set(fill.style, "width", `${(100 * normalized).toFixed(1)}%`);
  set(fill, "className", `fill${normalized > 0.5 ? " over" : ""}`);
  set($("part-info"), "textContent", part ? `${part.source || ""} · ${part.regions.length} region(s)` : "");
}

function showPanels(state) {
  setPill($("freshness"), ...freshnessText(state), state.freshness);
  const [cameraLabel, cameraKind] = cameraText(state.camera, state.freshness);
  setPill($("camera"), cameraLabel, cameraKind, state.camera.state);
  set($("bundle-id"), "textContent", state.bundle.id || "?");
  set($("bundle-loaded"), "textContent", state.bundle.loaded_at
    ? `· loaded ${clock(state.bundle.loaded_at)} (${state.bundle.how})` : "· loaded before the view started");
  const total = state.total;
  set($("count-ok"), "textContent", total.ok);
  set($("count-ng"), "textContent", total.ng);
  set($("count-errors"), "textContent", total.errors);
  set($("count-drops"), "textContent", total.drops);
  set($("count-yield"), "textContent", percent(total.yield));
  set($("missed"), "hidden", !total.missed);
  set($("missed"), "textContent", `${total.missed} verdict(s) never reached the view (seq gaps): counts are short by that`);
  const lat = state.latency_ms;
  set($("lat-p50"), "textContent", lat.n ? lat.total.p50.toFixed(1) : "–");
  set($("lat-p95"), "textContent", lat.n ? lat.total.p95.toFixed(1) : "–");
  set($("inf-p95"), "textContent", lat.n ? lat.inference.p95.toFixed(1) : "–");
  const hours = state.hours.slice().reverse().map((h) => `<tr><td>${clock(h.start).slice(0, 5)}</td>`
    + `<td>${h.ok}</td><td>${h.ng}</td><td>${h.errors}</td><td>${h.drops}</td><td>${percent(h.yield)}</td></tr>`).join("");
  if (hours !== shownHours) { $("hours").tBodies[0].innerHTML = hours; shownHours = hours; }
  const event = state.last_event;
  const banner = $("event");
  set(banner, "hidden", !(event && event.event === "reload_refused"));
  if (!banner.hidden) set(banner, "textContent", `reload refused at ${clock(event.t)}: ${event.reason}`);
}

// Thumbnails are small canvases at their displayed size, filled once from the frame the page already decoded to
// draw the part (a part the page skipped is fetched once by HTTP): an <img> of the full frame would be decoded
// again and scaled down on every repaint of the strip, which costs a software-rendering browser more than the
// whole rest of an update.
const THUMB_CSS_PX = 86;
const thumbs = new Map();  // part number -> its canvas, for the parts in the strip

function thumbCanvas(part) {
  const scale = Math.max(1, Math.round(window.devicePixelRatio || 1));
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = THUMB_CSS_PX * scale;
  canvas.dataset.part = String(part.part);
  return canvas;
}

// Draw ``bitmap`` into a thumbnail canvas, cropped to the centre square (as object-fit: cover).
function fillThumb(canvas, bitmap) {
  if (!bitmap) return;
  const side = Math.min(bitmap.width, bitmap.height);
  canvas.getContext("2d").drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side,
    0, 0, canvas.width, canvas.height);
  canvas.dataset.filled = "1";
}

function rememberThumb(part, bitmap) {
  if (!bitmap || thumbs.has(part.part)) return;
  const canvas = thumbCanvas(part);
  fillThumb(canvas, bitmap);
  thumbs.set(part.part, canvas);
}

function showHistory(history) {
  const key = history.map((p) => p.part).join(",");
  if (key === shownHistory) return;  // the same parts: leave the strip alone (no layout work at 20 Hz)
  shownHistory = key;
  const strip = $("history");
  const wanted = history.slice().reverse();
  const keep = new Set(wanted.map((p) => p.part));
  for (const number of thumbs.keys()) if (!keep.has(number)) thumbs.delete(number);
  const existing = new Map([...strip.children].map((el) => [el.dataset.part, el]));
  const children = wanted.map((part) => {
    let el = existing.get(String(part.part));
    if (!el) {
      el = document.createElement("button");
      el.type = "button";
      el.className = `thumb ${part.error ? "NG" : part.verdict}`;
      el.dataset.part = String(part.part);
      el.title = `seq ${part.seq} ${part.verdict}${part.error ? ` (${part.error})` : ""} · ${clock(part.t_capture)}`;
      let picture = thumbs.get(part.part);
      if (!picture && (part.has_frame || part.has_map)) {
        picture = thumbCanvas(part);
        thumbs.set(part.part, picture);
        const url = imageUrl(station, part, part.has_frame ? "frame.jpg" : "map.png", viewId);
        fetchBitmap(url).then((bitmap) => fillThumb(picture, bitmap)).catch(() => {});
      }
      if (picture) {
        picture.className = "pic";
        el.append(picture);
      } else {
        el.insertAdjacentHTML("beforeend", '<div class="noimg"></div>');
      }
      el.insertAdjacentHTML("beforeend", `<span class="tag">${part.error ? "NG" : part.verdict} ${part.seq}</span>`);
      el.addEventListener("click", () => openZoom(part));
    }
    return el;
  });
  strip.replaceChildren(...children);
}

async function openZoom(part) {
  $("zoom-text").textContent = `seq ${part.seq} · ${part.verdict}${part.error ? ` (${part.error})` : ""} · score `
    + `${part.score === null ? "–" : part.score.toFixed(3)} / ${part.threshold === null ? "–" : part.threshold.toFixed(3)}`
    + ` · ${part.regions.length} region(s) · ${clock(part.t_capture)} · ${part.source || ""}`;
  $("zoom").showModal();
  await drawStored(zoom, station, part, viewId).catch(() => {});
}

async function drawLoop() {
  if (drawing) return;
  drawing = true;
  try {
    while (pending) {
      const update = pending;
      pending = null;
      await drawUpdate(update);
    }
  } finally {
    drawing = false;
  }
}

async function drawUpdate({ header, frame, map }) {
  const state = header.state;
  lastState = state;
  edgeView.state = state;
  showPanels(state);
  const ng = state.last_ng;
  if (hold.checked && !held && ng && ng.part > acknowledgedUpTo) {
    held = ng;
    $("held").hidden = false;
    showVerdict(ng);
    if (state.latest && state.latest.part === ng.part) {
      const [frameBitmap, mapBitmap] = await Promise.all([decode(frame, "image/jpeg"), decode(map, "image/png")]);
      drawPart(main, ng, frameBitmap, mapBitmap);
      rememberThumb(ng, frameBitmap);
    } else {
      await drawStored(main, station, ng, viewId);  // the NG itself was skipped on the way: fetch it
    }
  }
  if (held) {
    showHistory(state.history);
    const more = ng ? state.history.filter((p) => p.verdict === "NG" && p.part > held.part).length : 0;
    $("held-text").textContent = `holding NG seq ${held.seq} (${clock(held.t_capture)})`
      + `${more ? ` · ${more} more NG since` : ""}`;
    return;
  }
  const part = state.latest;
  if (!part || part.part === edgeView.lastDrawnPart) {
    showHistory(state.history);
    return;
  }
  const [frameBitmap, mapBitmap] = await Promise.all([decode(frame, "image/jpeg"), decode(map, "image/png")]);
  rememberThumb(part, frameBitmap);
  showHistory(state.history);
  if (held) return;  // held while decoding
  drawPart(main, part, frameBitmap, mapBitmap);
  showVerdict(part);
  if (edgeView.lastDrawnPart && part.part > edgeView.lastDrawnPart + 1) {
    edgeView.skippedParts += part.part - edgeView.lastDrawnPart - 1;
  }
  edgeView.lastDrawnPart = part.part;
  requestAnimationFrame(() => {
    edgeView.drawn += 1;
    if (edgeView.latencies.length < 100000) edgeView.latencies.push(Date.now() / 1000 - part.t_publish);
  });
}

connect(station, {
  onUpdate: (update) => {
    if (update.header.state.station !== station) return;
    edgeView.updates += 1;
    pending = update;
    drawLoop();
  },
  onHello: (hello) => { viewId = hello.view_id; },
  onLink: (up) => { edgeView.linked = up; $("link").hidden = up; },
});
