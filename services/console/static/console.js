// facestream console: plain browser JavaScript, no build step, no third-party code.
// Every string from the server is put in the page with textContent (never as markup), and the
// Content-Security-Policy forbids inline scripts: a name like <img src=x onerror=...> is text.
"use strict";

const state = { csrf: null, page: null, timers: [], stream: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") Object.assign(node.style, value); // CSSOM: allowed by the CSP
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
  if (init.method && init.method !== "GET") init.headers["X-CSRF-Token"] = state.csrf || "";
  const response = await fetch(path, init);
  if (response.status === 401) {
    showLogin();
    throw new Error("logged out");
  }
  return response;
}

async function json(path, options) {
  const response = await api(path, options);
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body && body.detail ? `${body.reason || response.status}: ${detail(body)}` : String(response.status));
  return body;
}

function detail(body) {
  return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
}

// --- login --------------------------------------------------------------------------------

async function login(token) {
  const response = await fetch("/console/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  if (!response.ok) return false;
  state.csrf = (await response.json()).csrf;
  return true;
}

function showLogin() {
  stopPage();
  $("nav").hidden = true;
  for (const page of document.querySelectorAll(".page")) page.hidden = true;
  $("login").hidden = false;
}

async function boot() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    if (await login($("token").value)) {
      $("token").value = "";
      start();
    } else {
      $("login-error").textContent = "Wrong token.";
    }
  });
  $("logout").addEventListener("click", async () => {
    await api("/console/logout", { method: "POST" }).catch(() => {});
    state.csrf = null;
    showLogin();
  });
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("login")) {
    const ok = await login(fragment.get("login"));
    history.replaceState(null, "", "#live");
    if (ok) return start();
  }
  const response = await fetch("/console/session", { credentials: "same-origin" });
  if (response.ok) {
    state.csrf = (await response.json()).csrf;
    start();
  } else {
    showLogin();
  }
}

function start() {
  $("login").hidden = true;
  $("nav").hidden = false;
  window.addEventListener("hashchange", route);
  route();
}

function route() {
  const name = (location.hash.slice(1) || "live").split("?")[0];
  const pages = { live: livePage, events: eventsPage, people: peoplePage, cameras: camerasPage, system: systemPage };
  const show = pages[name] ? name : "live";
  stopPage();
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== `page-${show}`;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.page === show);
  state.page = show;
  pages[show]().catch((error) => console.warn(error));
}

function stopPage() {
  for (const timer of state.timers) clearInterval(timer);
  state.timers = [];
  if (state.stream) state.stream.close();
  state.stream = null;
}

function every(ms, fn) {
  fn();
  state.timers.push(setInterval(fn, ms));
}

// --- Live ---------------------------------------------------------------------------------

async function livePage() {
  const grid = $("grid");
  grid.replaceChildren();
  const tiles = new Map();
  const tile = (camera) => {
    if (!tiles.has(camera.camera_id)) {
      tiles.set(camera.camera_id, liveTile(camera));
      grid.append(tiles.get(camera.camera_id).node);
    }
    return tiles.get(camera.camera_id);
  };
  every(3000, async () => {
    for (const camera of await json("/v1/live")) tile(camera).status(camera);
  });
  // Frames and boxes are pushed (<= 5 frames/s per camera, only when they change): one
  // connection for every camera, no polling.
  state.stream = new EventSource("/v1/live/stream");
  state.stream.addEventListener("view", (message) => {
    const view = JSON.parse(message.data);
    tile(view).show(view);
  });
}

function liveTile(camera) {
  const id = encodeURIComponent(camera.camera_id);
  const image = el("img", { alt: `camera ${camera.camera_id}` });
  const boxes = el("div", { class: "boxes" });
  const caption = el("figcaption", {}, el("strong", { text: camera.camera_id }), " ", el("span", { class: "status" }));
  const styled = el("img", { class: "styled", alt: `camera ${camera.camera_id}, styled`, hidden: "" });
  const node = el("figure", { class: "tile", "data-camera": camera.camera_id }, el("div", { class: "view" }, image, boxes), styled, caption);
  let styledAt = 0;
  let drawn = Promise.resolve();
  function show(view) {
    drawn = drawn.then(() => render(view)).catch((error) => console.warn(error)); // in order: boxes on their own frame
  }
  async function render(view) {
    if (view.jpeg) {
      image.src = `data:image/jpeg;base64,${view.jpeg}`;
      await image.decode().catch(() => {});
    }
    drawBoxes(boxes, image, view);
    if (view.styled && Date.now() - styledAt > 1000) {
      styledAt = Date.now();
      const painted = await api(`/v1/live/${id}/frame.jpg?styled=true`);
      if (painted.ok) {
        if (styled.src) URL.revokeObjectURL(styled.src);
        styled.src = URL.createObjectURL(await painted.blob());
        styled.hidden = false;
      }
    }
  }
  function status(info) {
    const s = info.status || {};
    const parts = [s.state || "?", `${s.fps || 0} fps`];
    if (s.last_error && s.state !== "streaming") parts.push(`last error: ${s.last_error}`);
    if (info.style) parts.push(`style ${info.style}`);
    caption.querySelector(".status").textContent = parts.join(" · ");
  }
  return { node, show, status };
}

function drawBoxes(layer, image, view) {
  const scale = image.naturalWidth && view.frame_width ? image.clientWidth / view.frame_width : image.clientWidth / (image.naturalWidth || 1);
  layer.replaceChildren(
    ...view.faces.map((face) =>
      el(
        "div",
        {
          class: `box ${face.kind}`,
          style: { left: `${face.box.x * scale}px`, top: `${face.box.y * scale}px`, width: `${face.box.w * scale}px`, height: `${face.box.h * scale}px` },
        },
        el("span", { class: "label", text: face.label }),
      ),
    ),
  );
}

// --- Events -------------------------------------------------------------------------------

async function eventsPage() {
  const form = $("event-filters");
  form.onsubmit = (event) => {
    event.preventDefault();
    eventsPage();
  };
  if (state.stream) state.stream.close();
  const query = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) query.set(key, value);
  const timeline = $("timeline");
  timeline.replaceChildren();
  for (const event of await json(`/v1/events?${query}&limit=200`)) addEvent(timeline, event);
  const stream = new EventSource(`/v1/events/stream?${query}`);
  state.stream = stream;
  stream.onopen = () => ($("stream-state").textContent = "live");
  stream.onerror = () => ($("stream-state").textContent = "reconnecting…");
  for (const type of ["started", "identified", "unknown", "spoof", "ended", "withdrawn"]) {
    stream.addEventListener(type, (message) => addEvent(timeline, JSON.parse(message.data)));
  }
  stream.addEventListener("snapshot", (message) => {
    const snap = JSON.parse(message.data);
    const card = timeline.querySelector(`li[data-event="${CSS.escape(snap.refers_to || "")}"]`);
    if (card) card.attach(snap.snapshot_id);
  });
}

function addEvent(timeline, event) {
  if (event.type === "snapshot" || event.type === "continued") return; // not cards of their own
  const when = new Date(event.ts * 1000).toLocaleTimeString();
  const who = event.person_name || (event.type === "unknown" ? "unknown face" : "");
  const pictures = el("div", { class: "pictures" });
  const actions = el("div", { class: "actions" });
  const card = el(
    "li",
    { class: `event ${event.type}`, "data-event": event.event_id },
    pictures,
    el(
      "div",
      {},
      el("span", { class: `badge ${event.type}`, text: event.type }),
      " ",
      el("strong", { class: "who", text: who }),
      el("div", { class: "muted", text: `${when} · camera ${event.camera_id} · track ${event.track_id}` + (event.distance != null ? ` · distance ${event.distance.toFixed(3)}` : "") }),
      actions,
    ),
  );
  card.attach = (snapshotId) => {
    if (!snapshotId || pictures.childElementCount) return;
    pictures.append(
      el("img", { class: "face", alt: "face snapshot", src: `/v1/snapshots/${snapshotId}/face.jpg` }),
      el("img", { class: "thumb", alt: "frame", src: `/v1/snapshots/${snapshotId}/frame.jpg`, onerror: (e) => e.target.remove() }),
    );
    if (event.type === "unknown" || event.type === "identified") actions.append(enrollFromSnapshot(snapshotId));
  };
  card.attach(event.snapshot_id);
  timeline.prepend(card);
}

function enrollFromSnapshot(snapshotId) {
  const input = el("input", { placeholder: "name (new or existing)", required: "", maxlength: "200" });
  const result = el("span", { class: "muted" });
  const form = el("form", { class: "this-is" }, el("label", {}, "This is ", input), el("button", { type: "submit", text: "Enroll" }), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new FormData();
    body.set("name", input.value);
    try {
      const enrolled = await json(`/v1/snapshots/${snapshotId}/enroll`, { method: "POST", body });
      result.textContent = `enrolled as ${enrolled.name}`;
    } catch (error) {
      result.textContent = error.message;
    }
  });
  return form;
}

// --- People -------------------------------------------------------------------------------

async function peoplePage() {
  $("enroll-form").onsubmit = enrollUpload;
  await listPeople();
}

async function listPeople() {
  const rows = (await json("/v1/console/people")).map((person) => {
    const id = encodeURIComponent(person.id);
    const photo = person.photo ? el("img", { class: "face", alt: `photo of ${person.name}`, src: `/v1/people/${id}/photos/${encodeURIComponent(person.photo)}.jpg` }) : "";
    const remove = el("button", { type: "button", class: "danger", text: "Delete" });
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete ${person.name}, every photo, encoding and snapshot of them?`)) return;
      await json(`/v1/people/${id}`, { method: "DELETE" });
      await listPeople();
    });
    return el(
      "tr",
      { "data-person": person.id },
      el("td", {}, photo),
      el("td", { class: "name", text: person.name }),
      el("td", { text: person.encoders.join(", ") }),
      el("td", { text: String(person.encodings) }),
      el("td", { text: String(person.snapshots) }),
      el("td", {}, remove),
    );
  });
  $("people").replaceChildren(...rows);
}

async function enrollUpload(event) {
  event.preventDefault();
  const name = $("enroll-name").value;
  const results = $("enroll-results");
  results.replaceChildren();
  for (const file of $("enroll-files").files) {
    const body = new FormData();
    body.set("name", name);
    body.set("image", file);
    let text;
    try {
      await json("/v1/people", { method: "POST", body });
      text = `${file.name}: enrolled`;
    } catch (error) {
      text = `${file.name}: ${error.message}`;
    }
    results.append(el("li", { text }));
  }
  await listPeople();
}

// --- Cameras ------------------------------------------------------------------------------

async function camerasPage() {
  const select = $("style-select");
  if (select.options.length === 1) {
    for (const style of await json("/v1/styles")) select.append(el("option", { value: style, text: style }));
  }
  $("camera-form").onsubmit = addCamera;
  every(3000, listCameras);
}

async function listCameras() {
  const live = new Map((await json("/v1/live")).map((c) => [c.camera_id, c.status]));
  const rows = (await json("/v1/cameras")).map((camera) => {
    const remove = el("button", { type: "button", class: "danger", text: "Remove" });
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Remove camera ${camera.id}?`)) return;
      await json(`/v1/cameras/${encodeURIComponent(camera.id)}`, { method: "DELETE" });
      await listCameras();
    });
    const status = live.get(camera.id) || {};
    return el(
      "tr",
      { "data-camera": camera.id },
      el("td", { text: camera.id }),
      el("td", { text: camera.url }),
      el("td", { text: camera.fps == null ? "" : String(camera.fps) }),
      el("td", { text: camera.style || "" }),
      el("td", { text: [status.state, status.fps ? `${status.fps} fps` : "", status.last_error || ""].filter(Boolean).join(" · ") }),
      el("td", {}, remove),
    );
  });
  $("cameras").replaceChildren(...rows);
}

async function addCamera(event) {
  event.preventDefault();
  const data = new FormData(event.target);
  const result = $("camera-result");
  result.textContent = "testing the connection…";
  const spec = { id: data.get("id"), url: data.get("url"), loop: data.get("loop") === "on" };
  if (data.get("fps")) spec.fps = Number(data.get("fps"));
  if (data.get("max_width")) spec.max_width = Number(data.get("max_width"));
  if (data.get("style")) spec.style = data.get("style");
  try {
    await json("/v1/cameras/test", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ url: spec.url }) });
    await json(`/v1/cameras/${encodeURIComponent(spec.id)}`, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(spec) });
    result.textContent = `added ${spec.id}`;
    event.target.reset();
  } catch (error) {
    result.textContent = `not added: ${error.message}`;
  }
  await listCameras();
}

// --- System -------------------------------------------------------------------------------

async function systemPage() {
  every(5000, async () => {
    const system = await json("/v1/system");
    const rows = Object.entries(system.health).map(([name, ok]) => el("tr", {}, el("td", { text: name }), el("td", { class: ok ? "ok" : "bad", text: ok ? "healthy" : "unhealthy" })));
    rows.push(el("tr", {}, el("td", { text: "console (reading the bus)" }), el("td", { class: system.console.reading_bus ? "ok" : "bad", text: system.console.reading_bus ? "healthy" : "unhealthy" })));
    rows.push(el("tr", {}, el("td", { text: "people enrolled" }), el("td", { text: String(system.people) })));
    $("health").replaceChildren(...rows);
    const links = [];
    for (const [name, url] of [["Prometheus", system.prometheus], ["Grafana", system.grafana]]) {
      if (url && /^https?:\/\//.test(url)) links.push(el("a", { href: url, rel: "noopener", text: name }), " ");
    }
    $("system-links").replaceChildren(...(links.length ? links : ["Charts from this process's own metrics (no Prometheus configured)."]));
    const series = await json("/v1/system/series");
    const titles = {
      frames_per_s: "frames/s per camera",
      detection_latency_s: "detection latency (s per message)",
      recognition_latency_s: "recognition latency (s per message)",
      consumer_lag: "consumer lag (messages) per service",
      events_per_min: "events per minute",
      dead_letters_per_min: "dead letters per minute",
    };
    $("charts").replaceChildren(...Object.entries(titles).map(([key, title]) => chart(title, series.series[key] || {})));
  });
}

const COLORS = ["#0b7285", "#e8590c", "#5f3dc4", "#2b8a3e", "#c2255c", "#495057"];

function chart(title, lines) {
  // A small SVG line chart: one polyline per label, shared axes.
  const ns = "http://www.w3.org/2000/svg";
  const width = 360, height = 140, pad = 30;
  const points = Object.values(lines).flat();
  const figure = el("figure", { class: "chart" }, el("figcaption", { text: title }));
  if (!points.length) {
    figure.append(el("p", { class: "muted", text: "no data yet" }));
    return figure;
  }
  const [t0, t1] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
  const vmax = Math.max(1e-9, ...points.map((p) => p[1]));
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (width - pad - 5);
  const y = (v) => height - 15 - (v / vmax) * (height - 25);
  const axis = document.createElementNS(ns, "text");
  axis.setAttribute("x", "2");
  axis.setAttribute("y", "12");
  axis.textContent = vmax < 1e-6 ? "0" : vmax.toPrecision(3);
  svg.append(axis);
  const legend = el("div", { class: "legend" });
  Object.entries(lines).forEach(([label, values], i) => {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[i % COLORS.length]);
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("points", values.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
    svg.append(line);
    if (label) legend.append(el("span", { class: "key", style: { color: COLORS[i % COLORS.length] }, text: label }));
  });
  figure.append(svg, legend);
  return figure;
}

boot();
