// edge-inspect live view: what the station page and the overview share. Plain ES modules, no build step,
// nothing fetched from outside the view process.
//
// An update from the server is one binary WebSocket message: u32 length + UTF-8 JSON header, u32 length + the
// latest part's frame JPEG, u32 length + its anomaly map PNG (big-endian lengths; 0 = absent). The map is
// scaled so that the pixel threshold is mid-grey; it covers the whole frame.

export const FRESHNESS = {
  waiting: ["waiting for the station", ""],
  live: ["live", "good"],
  idle: ["idle: no parts (heartbeats arrive)", "info"],
  stale: ["STALE: station silent", "bad"],
  stopped: ["stopped", "warn"],
};

export function parseUpdate(buffer) {
  const view = new DataView(buffer);
  const chunks = [];
  let offset = 0;
  for (let i = 0; i < 3; i += 1) {
    const length = view.getUint32(offset);
    chunks.push(new Uint8Array(buffer, offset + 4, length));
    offset += 4 + length;
  }
  const header = JSON.parse(new TextDecoder().decode(chunks[0]));
  return { header, frame: chunks[1].length ? chunks[1] : null, map: chunks[2].length ? chunks[2] : null };
}

// One WebSocket with reconnection; onUpdate(parsed) for binary updates, onHello(json) for the hello message.
export function connect(station, { onUpdate, onHello, onLink }) {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (station) url.searchParams.set("station", station);
  let delay = 500;
  const open = () => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { delay = 500; onLink(true); };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") onHello(JSON.parse(event.data));
      else onUpdate(parseUpdate(event.data));
    };
    ws.onclose = () => { onLink(false); setTimeout(open, delay); delay = Math.min(delay * 2, 5000); };
  };
  open();
}

export function decode(bytes, type) {
  return bytes ? createImageBitmap(new Blob([bytes], { type })) : Promise.resolve(null);
}

export async function fetchBitmap(url) {
  const response = await fetch(url);
  if (!response.ok) return null;
  return createImageBitmap(await response.blob());
}

// The picture edge/ops/overlay.py draws for the archive and the reports, so that a colour or a box means the same
// everywhere: the JET colour map of the normalised map (0.5 = the pixel threshold), invisible below FADE_FROM,
// fading in to full weight at the threshold; the weight is then scaled by the opacity slider (the heat canvas's
// CSS opacity; draw_overlay's alpha, 0.5 by default). Boxes in BOX_COLOR, inside the region's pixels.
const FADE_FROM = 0.3;
export const BOX_COLOR = "#ff00ff";
const LUT = (() => {
  const lut = new Uint8ClampedArray(256 * 4);
  const clamp = (x) => Math.max(0, Math.min(1, x));
  for (let v = 0; v < 256; v += 1) {
    const t = v / 255;
    lut.set([255 * clamp(1.5 - Math.abs(4 * t - 3)), 255 * clamp(1.5 - Math.abs(4 * t - 2)),
      255 * clamp(1.5 - Math.abs(4 * t - 1)), 255 * clamp((t - FADE_FROM) / (0.5 - FADE_FROM))], v * 4);
  }
  return lut;
})();

// Draw a part into three stacked canvases {frame, heat, boxes, viewer}: the frame (or a placeholder when the
// daemon sends none), the coloured map, the NG region boxes (regions are in the frame's own pixels). The map covers
// exactly the frame whatever the bundle's resize rule (letterbox padding cropped, tiles stitched: edge/model/layout.py
// cover_frame), so the heat canvas is simply stretched over the frame.
export function drawPart(target, part, frame, map) {
  const width = frame ? frame.width : Math.min(640, part.image_width || 640);
  const height = frame ? frame.height : Math.round(width * ((part.image_height || 480) / (part.image_width || 640)));
  for (const canvas of [target.frame, target.boxes]) {
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  }
  const aspect = `${width / height}`;
  if (target.viewer.style.getPropertyValue("--aspect") !== aspect) target.viewer.style.setProperty("--aspect", aspect);
  const fc = target.frame.getContext("2d");
  if (frame) {
    fc.drawImage(frame, 0, 0);
  } else {
    fc.fillStyle = "#222831"; fc.fillRect(0, 0, width, height);
    fc.fillStyle = "#97a2b0"; fc.font = `${Math.round(width / 28)}px sans-serif`; fc.textAlign = "center";
    fc.fillText("no frame image (the daemon's publish.send_image is off)", width / 2, height / 2);
  }
  const hc = target.heat.getContext("2d", { willReadFrequently: true });
  if (map) {
    if (target.heat.width !== map.width || target.heat.height !== map.height) {
      target.heat.width = map.width; target.heat.height = map.height;
    }
    hc.clearRect(0, 0, map.width, map.height);
    hc.drawImage(map, 0, 0);
    const pixels = hc.getImageData(0, 0, map.width, map.height);
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const v = data[i] * 4;
      data[i] = LUT[v]; data[i + 1] = LUT[v + 1]; data[i + 2] = LUT[v + 2]; data[i + 3] = LUT[v + 3];
    }
    hc.putImageData(pixels, 0, 0);
  } else {
    hc.clearRect(0, 0, target.heat.width, target.heat.height);
  }
  const bc = target.boxes.getContext("2d");
  bc.clearRect(0, 0, width, height);
  const sx = width / (part.image_width || width);
  const sy = height / (part.image_height || height);
  const line = Math.max(1, Math.round(Math.min(width, height) / 200));  // as draw_overlay's thickness
  bc.strokeStyle = BOX_COLOR;
  bc.lineWidth = line;
  bc.fillStyle = BOX_COLOR;
  bc.font = `bold ${Math.max(12, Math.round(width / 30))}px sans-serif`;
  part.regions.forEach((r, index) => {
    const x = Math.round(r.x * sx);
    const y = Math.round(r.y * sy);  // the stroke lies inside the box's pixels, crisp, like cv2.rectangle
    bc.strokeRect(x + line / 2, y + line / 2, Math.max(line, Math.round(r.w * sx) - line),
      Math.max(line, Math.round(r.h * sy) - line));
    bc.fillText(String(index + 1), x + 3, Math.max(14, y - 4));
  });
  target.boxes.dataset.boxes = String(part.regions.length);
  target.frame.dataset.part = String(part.part);
  target.frame.dataset.seq = String(part.seq);
}

export function imageUrl(station, part, kind, viewId) {
  return `/img/${encodeURIComponent(station)}/${part.part}/${kind}?v=${viewId}`;
}

export async function drawStored(target, station, part, viewId) {
  const [frame, map] = await Promise.all([
    part.has_frame ? fetchBitmap(imageUrl(station, part, "frame.jpg", viewId)) : null,
    part.has_map ? fetchBitmap(imageUrl(station, part, "map.png", viewId)) : null]);
  drawPart(target, part, frame, map);
}

export function verdictClass(part) {
  if (!part) return "";
  return part.error ? "ERR" : part.verdict;
}

export function clock(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleTimeString([], { hour12: false }) : "–";
}

export function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)} %`;
}

export function cameraText(camera, freshness) {
  if (freshness === "stale") return ["camera ? (no news from the station)", ""];
  switch (camera.state) {
    case "up": return ["camera up", "good"];
    case "down": return [`camera down${camera.reason ? `: ${camera.reason}` : ""}`, "bad"];
    case "reconnecting":
      return [`camera reconnecting (attempt ${camera.attempt}${camera.next_retry_s ? `, next in ${camera.next_retry_s.toFixed(0)} s` : ""})`, "warn"];
    case "gave_up": return ["camera gave up", "bad"];
    default: return ["camera ?", ""];
  }
}

export function setPill(element, text, kind, state) {
  if (element.textContent !== text) element.textContent = text;
  if (element.className !== `pill ${kind}`) element.className = `pill ${kind}`;
  if (element.dataset.state !== state) element.dataset.state = state;
}

export function freshnessText(state) {
  const [text, kind] = FRESHNESS[state.freshness] || [state.freshness, ""];
  if (state.freshness === "stale") return [`${text} for ${Math.round(state.age_s)} s`, kind];
  if (state.freshness === "stopped" && state.stopped_failure) return [`stopped: ${state.stopped_failure}`, "bad"];
  if (state.paused && state.freshness !== "stale") return ["paused", "warn"];
  return [text, kind];
}
