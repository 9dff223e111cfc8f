// The live sightings page: per camera, the faces it posted, newest first, with their best match. It loads the
// recent history, then long-polls GET /v1/events (fed by the gateway's WatchEvents) for as long as it is shown.
import { request, token } from "./api.js";
import { formatDate, h } from "./dom.js";

const PER_CAMERA = 12;
const RECENT = 100;
const POLL_WAIT_S = 20;
const RETRY_MS = 3000;

/** A screenshot needs the token, which an <img src> cannot send: fetched, then shown from a blob: URL. */
async function screenshot(img, path) {
  try {
    const reply = await fetch(path, { headers: { Authorization: `Token ${token.get()}` } });
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    img.src = URL.createObjectURL(await reply.blob());
  } catch {
    img.replaceWith(h("div", { class: "no-thumb" }, "screenshot unavailable"));
  }
}

function sightingCard(event) {
  const img = h("img", { alt: `sighting ${event.id}` });
  screenshot(img, event.screenshot);
  const match = event.match;
  return h(
    "article",
    { class: "face sighting", dataset: { event: String(event.id) } },
    img,
    h("div", { class: "when", title: `received ${formatDate(event.received)}` }, formatDate(event.timestamp)),
    match
      ? h("div", { class: "match" },
        match.face.thumbnail ? h("img", { class: "matched", src: match.face.thumbnail, alt: `face ${match.face.id}` }) : null,
        h("span", { class: "meta", title: match.face.meta }, match.face.meta || `face #${match.face.id}`),
        " ",
        h("span", { class: "confidence" }, match.confidence.toFixed(3)))
      : h("div", { class: "match none" }, "no match"),
    event.person_id ? h("div", { class: "id" }, `person ${event.person_id}`) : null,
  );
}

export async function viewSightings(page, _param, current, sayError) {
  const cameras = (await request("GET", "/camera")).body;
  const recent = (await request("POST", `/history/search?limit=${RECENT}`, { json: {} })).body.results;
  if (!current()) return;
  const columns = new Map();
  const board = h("div", { class: "cameras", id: "cameras" });
  const column = (id, meta) => {
    if (!columns.has(id)) {
      const list = h("div", { class: "faces sightings" });
      const section = h("section", { class: "camera", dataset: { camera: id } },
        h("h3", {}, meta || h("em", {}, "no meta"), " ", h("small", { class: "id" }, id)), list);
      columns.set(id, list);
      board.append(section);
    }
    return columns.get(id);
  };
  for (const camera of cameras) column(camera.id, camera.meta);
  const show = (event, atTop) => {
    const list = column(event.cam_id, "");
    if (list.querySelector(`[data-event="${event.id}"]`)) return;
    const card = sightingCard(event);
    if (atTop) list.prepend(card);
    else list.append(card);
    while (list.children.length > PER_CAMERA) list.lastChild.remove();
  };
  for (const event of recent) show(event, false);
  const state = h("p", { class: "live-state", id: "live-state" }, "live");
  page.append(h("h2", {}, "Live sightings"), state);
  if (!cameras.length) page.append(h("p", {}, "No cameras yet: create them with POST /v1/camera (see the API docs)."));
  page.append(board);

  let last = recent.length ? recent[0].id : 0;
  let failing = false;
  while (current()) {
    try {
      const reply = (await request("GET", `/events?after=${last}&wait=${POLL_WAIT_S}`)).body;
      if (!current()) return;
      for (const event of reply.results) show(event, true);
      last = reply.last_id;
      state.textContent = "live";
      failing = false;
      if (reply.retry_after) await new Promise((done) => setTimeout(done, reply.retry_after * 1000));
    } catch (error) {
      if (!current() || error.status === 401) return;
      state.textContent = "reconnecting…";
      if (!failing) sayError(error); // once per outage, not once per retry
      failing = true;
      await new Promise((done) => setTimeout(done, RETRY_MS));
    }
  }
}
