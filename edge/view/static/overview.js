// edge-inspect live view: the overview, one tile per station (latest part, verdict, counts, health). A tile
// links to the station's own page. Endpoints nothing has been heard from yet show as waiting tiles.
import { cameraText, clock, connect, decode, drawPart, freshnessText, percent, setPill, verdictClass } from "./common.js";

const tiles = document.getElementById("tiles");
const edgeView = window.edgeView = { updates: 0, linked: false, stations: {} };
const latest = new Map();  // station -> newest update not drawn yet
const busy = new Set();

function tileFor(name) {
  let tile = document.getElementById(`tile-${name}`);
  if (tile) return tile;
  tile = document.createElement("a");
  tile.id = `tile-${name}`;
  tile.className = "tile panel";
  tile.href = `/station/${encodeURIComponent(name)}`;
  tile.innerHTML = `<h2><span class="name"></span><span class="pill fresh"></span></h2>
    <div class="viewer"><canvas class="f" width="320" height="320"></canvas><canvas class="h" width="64" height="64"
    style="opacity:.5"></canvas><canvas class="b" width="320" height="320"></canvas></div>
    <div class="verdict">–</div>
    <div class="line"><span>OK <b class="ok">0</b></span><span>NG <b class="ng">0</b></span>
    <span>errors <b class="errors">0</b></span><span>drops <b class="drops">0</b></span>
    <span>yield <b class="yield">–</b></span></div>
    <div class="line"><span class="pill cam"></span><span class="mono bundle muted"></span></div>`;
  tile.querySelector(".name").textContent = name;
  const after = [...tiles.children].find((el) => el.classList.contains("waiting") || el.id > tile.id);
  tiles.insertBefore(tile, after || null);  // stations by name, waiting endpoints last
  return tile;
}

async function draw(name) {
  if (busy.has(name)) return;
  busy.add(name);
  try {
    while (latest.has(name)) {
      const { header, frame, map } = latest.get(name);
      latest.delete(name);
      const state = header.state;
      edgeView.stations[name] = state;
      const tile = tileFor(name);
      const q = (selector) => tile.querySelector(selector);
      const [freshText, freshKind] = freshnessText(state);
      setPill(q(".fresh"), freshText, freshKind, state.freshness);
      const [camText, camKind] = cameraText(state.camera, state.freshness);
      setPill(q(".cam"), camText, camKind, state.camera.state);
      q(".bundle").textContent = state.bundle.id || "";
      for (const key of ["ok", "ng", "errors", "drops"]) q(`.${key}`).textContent = state.total[key];
      q(".yield").textContent = percent(state.total.yield);
      const part = state.latest;
      const box = q(".verdict");
      box.className = `verdict ${verdictClass(part)}`;
      box.textContent = part ? (part.error ? "NG" : part.verdict) : "–";
      const small = document.createElement("small");
      small.textContent = part ? `seq ${part.seq} · ${clock(part.t_capture)}${part.error ? ` · ${part.error}` : ""}` : "no part yet";
      box.appendChild(small);
      if (part) {
        const target = { viewer: q(".viewer"), frame: q(".f"), heat: q(".h"), boxes: q(".b") };
        drawPart(target, part, ...(await Promise.all([decode(frame, "image/jpeg"), decode(map, "image/png")])));
      }
    }
  } finally {
    busy.delete(name);
  }
}

function showHello(hello) {
  for (const old of tiles.querySelectorAll(".waiting")) old.remove();
  const silent = hello.endpoints.filter((e) => e.stations.length === 0);
  for (const endpoint of silent) {
    const tile = document.createElement("div");
    tile.className = "tile panel waiting";
    tile.innerHTML = '<h2><span class="name"></span><span class="pill">waiting</span></h2><p class="muted">nothing '
      + "received from this endpoint yet: is the daemon running, and does it publish there?</p>";
    tile.querySelector(".name").textContent = endpoint.address;
    tiles.appendChild(tile);
  }
  document.getElementById("summary").textContent = `${hello.stations.length} station(s) from `
    + `${hello.endpoints.length} endpoint(s)`;
}

connect(null, {
  onUpdate: (update) => {
    edgeView.updates += 1;
    const name = update.header.state.station;
    latest.set(name, update);
    draw(name);
  },
  onHello: showHello,
  onLink: (up) => { edgeView.linked = up; document.getElementById("link").hidden = up; },
});
