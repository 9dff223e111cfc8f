// findface-grpc operator console: a hash-routed page over the HTTP API (see api.js). No build step.
import { api, ApiError, boxOfKey, onAuthLost, request, token } from "./api.js";
import { boxedPhoto, clear, confirmDialog, dropZone, formatBytes, formatDate, h, progressBar } from "./dom.js";
import { viewSightings } from "./sightings.js";

const main = document.getElementById("main");
const notice = document.getElementById("notice");
const nav = document.getElementById("nav");
const PAGE_SIZE = 24;
const PRESETS = ["strict", "medium", "low", "none"];
// Under about this quality the API's docs expect confidences well below those of the person's good photos.
const LOW_QUALITY = 0.3;

// ---- messages ----

function describe(error) {
  if (error instanceof ApiError) return error.text;
  return `unexpected error in the page: ${error?.message ?? error}`;
}

/** A message at the top of the page; errors stay until dismissed, other messages fade. */
function say(text, kind = "info") {
  const item = h(
    "div",
    { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, text),
    h("button", { class: "close", title: "Dismiss", onclick: () => item.remove() }, "×"),
  );
  notice.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 6000);
}

function sayError(error) {
  if (error instanceof ApiError && error.status === 401) return; // handled by onAuthLost
  say(describe(error), "error");
}

window.addEventListener("unhandledrejection", (event) => sayError(event.reason));
window.addEventListener("error", (event) => sayError(event.error ?? event.message));

onAuthLost((error) => {
  token.clear();
  go("login", { reason: `Your token was refused (${error.reason}). Log in again.` });
});

// ---- routing ----

const routes = {
  login: viewLogin,
  galleries: viewGalleries,
  gallery: viewGallery,
  add: viewAdd,
  search: viewSearch,
  compare: viewCompare,
  status: viewStatus,
  sightings: (page, param, current) => viewSightings(page, param, current, sayError),
};
let loginReason = "";
let renderCount = 0;

function go(name, { reason, param } = {}) {
  if (reason) loginReason = reason;
  const hash = `#/${name}${param ? `/${encodeURIComponent(param)}` : ""}`;
  if (location.hash === hash) render();
  else location.hash = hash;
}

function parseHash() {
  const [name = "", param] = location.hash.replace(/^#\/?/, "").split("/");
  return { name, param: param === undefined ? undefined : decodeURIComponent(param) };
}

async function render() {
  const { name, param } = parseHash();
  if (!token.get() && name !== "login") {
    location.replace("#/login");
    return;
  }
  if (!routes[name] || (name === "login" && token.get())) {
    location.replace("#/galleries");
    return;
  }
  const mine = ++renderCount;
  for (const link of nav.querySelectorAll("a[data-route]")) {
    link.classList.toggle("active", link.dataset.route === name || (name === "gallery" && link.dataset.route === "galleries"));
  }
  document.body.classList.toggle("logged-in", Boolean(token.get()));
  const page = h("section", { class: `page page-${name}`, id: `page-${name}` });
  clear(main).append(page);
  try {
    await routes[name](page, param, () => mine === renderCount);
  } catch (error) {
    sayError(error);
    if (!(error instanceof ApiError && error.status === 401)) {
      page.append(h("p", { class: "failed" }, `This page could not be shown: ${describe(error)}`));
    }
  }
}

window.addEventListener("hashchange", render);
document.getElementById("logout").addEventListener("click", () => {
  token.clear();
  go("login");
});

// ---- shared parts ----

async function gallerySelect(id, selected) {
  const galleries = await api.galleries();
  const select = h("select", { id, name: id });
  for (const g of galleries) {
    select.append(h("option", { value: g.name, selected: g.name === selected }, `${g.name} (${g.face_count})`));
  }
  return select;
}

function presetSelect(id, selected = "medium") {
  return h(
    "select",
    { id, name: id },
    PRESETS.map((p) => h("option", { value: p, selected: p === selected }, p === "none" ? "none (no decision)" : p)),
  );
}

function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "name" }, label), control, hint ? h("small", {}, hint) : null);
}

function faceCard(face, { confidence, actions } = {}) {
  const placeholder = (text, title) => h("div", { class: "no-thumb", title }, text);
  const picture = face.thumbnail
    ? h("img", { src: face.thumbnail, alt: `face ${face.id}`, loading: "lazy" })
    : placeholder("no thumbnail", "no photo store was configured when this face was enrolled");
  if (face.thumbnail) {
    picture.addEventListener("error", () =>
      picture.replaceWith(placeholder("thumbnail unavailable", `the photo store did not serve ${face.thumbnail}`)), { once: true });
  }
  return h(
    "article",
    { class: "face", dataset: { id: String(face.id) } },
    picture,
    confidence === undefined ? null : h("div", { class: "confidence" }, confidence.toFixed(3)),
    h("div", { class: "meta", title: face.meta }, face.meta || h("em", {}, "no meta")),
    h("div", { class: "id" }, `#${face.id}`),
    h("div", { class: "tags" }, face.galleries.map((g) => h("span", { class: "tag" }, g))),
    actions ? h("div", { class: "actions" }, actions) : null,
  );
}

const fileUrls = new WeakMap(); // one blob: URL per picked file, however often it is drawn

/** What a box label adds about a detected face's quality: {note: "q 0.82", className, hint}. */
function qualityMark(quality) {
  if (typeof quality !== "number") return {};
  const low = quality < LOW_QUALITY;
  return {
    note: `q ${quality.toFixed(2)}`,
    className: low ? "low-quality" : undefined,
    hint: low ? "low quality: its matches will be weaker" : `quality ${quality.toFixed(2)}`,
  };
}

/** A face's gender, age and most likely emotion as a short text ("female 34 happy"); "" when it has none. */
function attributesText(face) {
  return [face?.gender, face?.age, face?.emotions?.[0]].filter((v) => v !== undefined).join(" ");
}

/**
 * `call(true)`, which asks for the faces' attributes; where the server refuses them (no attribute model, or a
 * license without the feature: 400 naming the flag), `call(false)` without, so the page works all the same.
 */
async function withAttributes(call) {
  try {
    return await call(true);
  } catch (error) {
    if (error.status === 400 && ["gender", "age", "emotions"].includes(error.param)) return call(false);
    throw error;
  }
}

/** Intersection over union of two {x1, y1, x2, y2} boxes. */
function overlap(a, b) {
  const w = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const hgt = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const inter = w * hgt;
  const area = (r) => (r.x2 - r.x1) * (r.y2 - r.y1);
  return inter ? inter / (area(a) + area(b) - inter) : 0;
}

/** The answer's skipped face at this box, if any (the server found it again, in the same place). */
function skippedAt(skipped, box) {
  return (skipped ?? []).find((s) => overlap(s.bbox, box) > 0.5);
}

function objectUrl(file) {
  if (!fileUrls.has(file)) fileUrls.set(file, URL.createObjectURL(file));
  return fileUrls.get(file);
}

// ---- login ----

async function viewLogin(page) {
  const input = h("input", { type: "password", id: "token", autocomplete: "current-password", required: true });
  const status = h("p", { class: "form-error", id: "login-error" }, loginReason);
  loginReason = "";
  const form = h(
    "form",
    { class: "card login" },
    h("h2", {}, "Log in"),
    h("p", {}, "Use an API token, as created by ", h("code", {}, "findface-token create"), " (the cluster prints the first one)."),
    field("API token", input),
    status,
    h("button", { type: "submit", id: "login-button" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    status.textContent = "Checking…";
    try {
      await request("GET", "/galleries", { bearer: value });
      token.set(value);
      go("galleries");
    } catch (error) {
      status.textContent = error.status === 401 ? "That token is not valid (wrong, expired or revoked)." : describe(error);
    }
  });
  page.append(form);
  input.focus();
}

// ---- galleries ----

async function viewGalleries(page) {
  const listed = await api.galleryCounts();
  const galleries = listed.results;
  const nameInput = h("input", {
    id: "new-gallery", placeholder: "new gallery name", pattern: "[A-Za-z0-9_\\-]{1,48}", required: true,
    title: "1 to 48 of a-z A-Z 0-9 _ -",
  });
  const create = h("form", { class: "inline", id: "create-gallery" }, nameInput, h("button", { type: "submit" }, "Create gallery"));
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.createGallery(nameInput.value.trim());
      say(`Gallery ${nameInput.value.trim()} created.`);
      render();
    } catch (error) {
      sayError(error);
    }
  });
  const rows = galleries.map((g) =>
    h(
      "tr",
      { dataset: { gallery: g.name } },
      h("td", {}, h("a", { href: `#/gallery/${encodeURIComponent(g.name)}` }, g.name)),
      h("td", { class: "num faces" }, String(g.face_count)),
      h("td", {}, formatDate(g.timestamp)),
      h(
        "td",
        { class: "actions" },
        h("a", { class: "button secondary", href: `#/gallery/${encodeURIComponent(g.name)}` }, "Faces"),
        g.name === "default"
          ? null
          : h("button", {
              class: "danger delete-gallery",
              onclick: async () => {
                const ok = await confirmDialog(
                  `Delete gallery "${g.name}"?`,
                  `Its ${g.face_count} face(s) are deleted from the gallery, and faces in no other gallery are deleted for good.`,
                );
                if (!ok) return;
                try {
                  await api.deleteGallery(g.name);
                  say(`Gallery ${g.name} deleted.`);
                  render();
                } catch (error) {
                  sayError(error);
                }
              },
            }, "Delete"),
      ),
    ),
  );
  page.append(
    h("h2", {}, "Galleries"),
    create,
    h("p", { class: "skipped", id: "galleries-partial", hidden: !listed.partial },
      `Face counts from ${listed.shards_answered} of ${listed.shards_total} index shards: the others did not answer.`),
    h(
      "table",
      { class: "list", id: "galleries" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", { class: "num" }, "Faces"), h("th", {}, "Created"), h("th", {}, ""))),
      h("tbody", {}, rows),
    ),
  );
}

// ---- faces of one gallery ----

/** The max_id a page link of the API carries: 0 for the first page, null for no link. */
function maxIdOf(link) {
  return link ? Number(new URL(link, location.href).searchParams.get("max_id")) || 0 : null;
}

async function viewGallery(page, gallery, current, maxId = 0, pageNo = 1) {
  const data = await api.faces(gallery, maxId, PAGE_SIZE);
  if (!current()) return;
  const show = (nextMaxId, nextPageNo) => {
    clear(page);
    viewGallery(page, gallery, current, nextMaxId, nextPageNo).catch(sayError);
  };
  const grid = h("div", { class: "faces", id: "faces" });
  for (const face of data.results) {
    grid.append(
      faceCard(face, {
        actions: [
          h("button", { class: "secondary edit-face", onclick: () => editFace(face, () => show(maxId, pageNo)) }, "Edit"),
          h("button", {
            class: "danger delete-face",
            onclick: async () => {
              if (!(await confirmDialog(`Delete face #${face.id}?`, `It is removed from every gallery (${face.galleries.join(", ")}).`))) return;
              try {
                await api.deleteFace(face.id);
                say(`Face #${face.id} deleted.`);
                show(maxId, pageNo);
              } catch (error) {
                sayError(error);
              }
            },
          }, "Delete"),
        ],
      }),
    );
  }
  const older = maxIdOf(data.next_page);
  const newer = maxIdOf(data.prev_page);
  const pager = h(
    "div",
    { class: "pager" },
    h("button", { class: "secondary", id: "newer", disabled: newer === null, onclick: () => show(newer, pageNo - 1) },
      "← Newer"),
    h("span", {}, `page ${pageNo}`),
    h("button", { class: "secondary", id: "older", disabled: older === null, onclick: () => show(older, pageNo + 1) },
      "Older →"),
  );
  page.append(
    h("h2", {}, "Gallery ", h("span", { class: "gallery-name" }, gallery)),
    h("p", {}, h("a", { href: "#/add" }, "Add photos"), " · ", h("a", { href: "#/search" }, "Search")),
    data.results.length ? grid : h("p", { class: "empty" }, "No faces in this gallery yet."),
    pager,
  );
}

function editFace(face, done) {
  const meta = h("input", { id: "edit-meta", value: face.meta, maxlength: 4096 });
  const galleries = h("input", { id: "edit-galleries", value: face.galleries.join(", ") });
  const error = h("p", { class: "form-error" });
  const dialog = h(
    "dialog",
    { class: "edit" },
    h(
      "form",
      { method: "dialog" },
      h("h3", {}, `Face #${face.id}`),
      field("Meta", meta),
      field("Galleries", galleries, "comma-separated; every face is in default as well"),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { value: "cancel", class: "secondary", formnovalidate: true }, "Cancel"),
        h("button", { value: "save", id: "edit-save" }, "Save"),
      ),
    ),
  );
  dialog.querySelector("form").addEventListener("submit", async (event) => {
    if (event.submitter?.value !== "save") return;
    event.preventDefault();
    const names = galleries.value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      await api.updateFace(face.id, { meta: meta.value, galleries: { set: names } });
      dialog.close();
      say(`Face #${face.id} saved.`);
      done();
    } catch (err) {
      error.textContent = describe(err);
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// ---- add photos ----

async function viewAdd(page) {
  const gallery = await gallerySelect("add-gallery");
  const meta = h("input", { id: "add-meta", placeholder: "meta for every face (optional)" });
  const metaFromName = h("input", { type: "checkbox", id: "meta-from-name", checked: true });
  const overall = progressBar("overall");
  const overallText = h("span", { id: "overall-text" }, "");
  const list = h("div", { class: "uploads", id: "uploads" });
  const enrollButton = h("button", { id: "enroll", disabled: true }, "Enroll selected faces");
  const items = [];

  const refresh = () => {
    const ready = items.filter((it) => it.state === "detected" && it.boxes.some((b) => b.keep));
    const finished = items.filter((it) => ["enrolled", "failed", "no-faces"].includes(it.state)).length;
    enrollButton.disabled = ready.length === 0;
    const faces = ready.reduce((n, it) => n + it.boxes.filter((b) => b.keep).length, 0);
    enrollButton.textContent = faces ? `Enroll ${faces} face(s) from ${ready.length} photo(s)` : "Enroll selected faces";
    overall.set(items.length ? finished / items.length : 0);
    overallText.textContent = items.length ? `${finished} of ${items.length} photo(s) done` : "";
  };

  const addFiles = (files) => {
    for (const file of files) {
      const bar = progressBar();
      const status = h("span", { class: "status" }, "waiting");
      const photoSlot = h("div", { class: "photo-slot" });
      const card = h(
        "div",
        { class: "upload", dataset: { name: file.name } },
        h("div", { class: "head" }, h("strong", {}, file.name), h("small", {}, formatBytes(file.size)), status),
        bar,
        photoSlot,
      );
      const item = { file, card, bar, status, photoSlot, state: "waiting", boxes: [] };
      items.push(item);
      list.append(card);
      detectOne(item).finally(refresh);
    }
    refresh();
  };

  const setState = (item, state, text) => {
    item.state = state;
    item.card.dataset.state = state;
    item.status.textContent = text;
  };

  const boxTitle = (b) => {
    if (b.state === "done") return "enrolled";
    if (b.state === "refused") return `not enrolled: ${b.why}`;
    return b.keep ? "will be enrolled; click to skip" : "skipped; click to enroll";
  };

  const drawBoxes = (item) => {
    const boxes = item.boxes.map((b, i) => {
      const mark = qualityMark(b.quality);
      const attrs = attributesText(b);
      return { ...b, label: String(i + 1), note: mark.note, attrs, className: mark.className,
        state: b.state ?? (b.keep ? "keep" : "skip"),
        title: `${boxTitle(b)}${mark.hint ? ` (${mark.hint})` : ""}${attrs ? `; ${attrs}` : ""}` };
    });
    clear(item.photoSlot).append(
      boxedPhoto(item.url, boxes, {
        onBox: item.state === "detected"
          ? (index) => {
              item.boxes[index].keep = !item.boxes[index].keep;
              drawBoxes(item);
              refresh();
            }
          : undefined,
      }),
    );
  };

  const detectOne = async (item) => {
    setState(item, "detecting", "finding faces…");
    item.url = objectUrl(item.file);
    try {
      const faces = await withAttributes((attributes) => api.detect(item.file, (f) => item.bar.set(0.5 * f),
                                                                     attributes));
      item.bar.set(0.5);
      item.boxes = faces.map((b) => ({ ...b, keep: true }));
      if (!faces.length) setState(item, "no-faces", "no face found");
      else setState(item, "detected", `${faces.length} face(s) found: click a box to skip it`);
    } catch (error) {
      setState(item, "failed", describe(error));
      item.bar.classList.add("failed");
      if (error.status === 401) return;
    }
    drawBoxes(item);
  };

  const enrollOne = async (item) => {
    const keep = item.boxes.filter((b) => b.keep);
    const stem = item.file.name.replace(/\.[^.]*$/, "");
    const faceMeta = meta.value.trim() || (metaFromName.checked ? stem : "");
    setState(item, "enrolling", "enrolling…");
    try {
      // With every face kept, no boxes are sent: the server then enrolls the faces it can use and answers why it
      // left out the others (too small to recognise), where boxes would make one such face fail the whole photo.
      const every = keep.length === item.boxes.length;
      const { results: faces, skipped } = await api.enroll(item.file, every ? null : keep, gallery.value, faceMeta,
        (f) => item.bar.set(0.5 + 0.5 * f));
      item.bar.set(1);
      item.boxes = item.boxes.map((b) => {
        if (!b.keep) return { ...b, state: "skip" };
        const left = skippedAt(skipped, b);
        return left ? { ...b, state: "refused", why: left.message } : { ...b, state: "done" };
      });
      const refused = item.boxes.filter((b) => b.state === "refused");
      const ids = faces.map((f) => `#${f.id}`).join(", ");
      setState(item, "enrolled", refused.length
        ? `enrolled: ${ids}; not enrolled: ${refused.map((b) => b.why).join("; ")}`
        : `enrolled: ${ids}`);
      item.card.dataset.ids = faces.map((f) => f.id).join(",");
    } catch (error) {
      setState(item, "failed", describe(error));
      item.bar.classList.add("failed");
    }
    drawBoxes(item);
  };

  enrollButton.addEventListener("click", async () => {
    enrollButton.disabled = true;
    const ready = items.filter((it) => it.state === "detected" && it.boxes.some((b) => b.keep));
    // Two at a time: the extractor batches faces across requests, and the browser keeps its connections free.
    const queue = [...ready];
    const worker = async () => {
      while (queue.length) {
        await enrollOne(queue.shift());
        refresh();
      }
    };
    await Promise.all([worker(), worker()]);
    const enrolled = ready.filter((it) => it.state === "enrolled").length;
    say(`${enrolled} of ${ready.length} photo(s) enrolled into ${gallery.value}.`, enrolled === ready.length ? "info" : "error");
  });

  page.append(
    h("h2", {}, "Add photos"),
    h(
      "div",
      { class: "toolbar" },
      field("Gallery", gallery),
      field("Meta", meta),
      h("label", { class: "check" }, metaFromName, " file name as meta when empty"),
    ),
    dropZone("Drop photos here, or click to pick several (JPEG, PNG, WEBP, GIF, HEIC, AVIF)", addFiles,
      { multiple: true, id: "add-files" }),
    h("div", { class: "overall-row" }, overall, overallText, enrollButton),
    list,
  );
}

// ---- search ----

async function viewSearch(page, _param, current) {
  const gallery = await gallerySelect("search-gallery");
  if (!current()) return;
  const threshold = presetSelect("search-threshold", "low");
  const n = h("input", { id: "search-n", type: "number", min: 1, max: 100, value: 5 });
  const bar = progressBar();
  const results = h("div", { id: "search-results" });
  let photo = null;
  const picked = h("span", { class: "picked", id: "search-picked" }, "no photo yet");
  const button = h("button", { id: "search-run", disabled: true }, "Search");

  const run = async () => {
    if (!photo) return;
    button.disabled = true;
    clear(results).append(h("p", { class: "busy" }, "Searching…"));
    bar.set(0);
    try {
      const reply = await withAttributes((attributes) => api.identify(photo, gallery.value, threshold.value,
                                                                      Number(n.value) || 1, (f) => bar.set(f), attributes));
      bar.set(1);
      showResults(reply);
    } catch (error) {
      clear(results).append(h("p", { class: "form-error" }, describe(error)));
    } finally {
      button.disabled = false;
    }
  };

  const showResults = ({ results: byBox, skipped, live, attributes }) => {
    const keys = Object.keys(byBox);
    const boxes = [
      ...keys.map((key, i) => ({ ...boxOfKey(key), label: String(i + 1), attrs: attributesText(attributes[key]) })),
      ...skipped.map((s) => ({ ...s.bbox, state: "refused", title: `not searched: ${s.message}` })),
    ];
    const groups = keys.map((key, i) => {
      const matches = byBox[key];
      return h(
        "div",
        { class: "query-face", dataset: { face: String(i + 1) } },
        h("h3", {}, `Face ${i + 1}${attributes[key] ? ` (${attributesText(attributes[key])})` : ""}: `
          + (matches.length ? `${matches.length} match(es)` : "no match above the threshold")),
        h("div", { class: "faces matches" }, matches.map((m) => faceCard(m.face, { confidence: m.confidence }))),
      );
    });
    clear(results).append(
      h("p", { class: "live", id: "live-servers" }, `Shards answered: ${live ?? "?"}`),
      skipped.length
        ? h("p", { class: "skipped", id: "search-skipped" }, `Not searched: ${skipped.map((s) => s.message).join("; ")}`)
        : "", // Element.append writes null out as the text "null"
      h(
        "div",
        { class: "search-layout" },
        boxedPhoto(objectUrl(photo), boxes, { caption: photo.name, className: "query" }),
        h("div", { class: "groups" }, keys.length ? groups : h("p", { class: "empty" }, "No face found in this photo.")),
      ),
    );
  };

  button.addEventListener("click", run);
  page.append(
    h("h2", {}, "Search"),
    h(
      "div",
      { class: "toolbar" },
      field("Gallery", gallery),
      field("Threshold", threshold, "strict, medium, low: false accepts 1e-5, 1e-3, 1e-1"),
      field("Results per face", n),
    ),
    dropZone("Drop a photo here, or click to pick one", (files) => {
      photo = files[0];
      picked.textContent = photo.name;
      button.disabled = false;
      run();
    }, { id: "search-file" }),
    h("div", { class: "overall-row" }, picked, bar, button),
    results,
  );
}

// ---- compare ----

async function viewCompare(page) {
  const photos = [null, null];
  const threshold = presetSelect("compare-threshold", "medium");
  const result = h("div", { id: "compare-result" });
  const button = h("button", { id: "compare-run", disabled: true }, "Compare");
  const previews = [h("div", { class: "preview" }), h("div", { class: "preview" })];

  const zone = (i) =>
    dropZone(`Photo ${i + 1}: drop or click`, (files) => {
      photos[i] = files[0];
      clear(previews[i]).append(boxedPhoto(objectUrl(files[0]), [], { caption: files[0].name }));
      button.disabled = !(photos[0] && photos[1]);
    }, { id: `compare-file-${i + 1}` });

  button.addEventListener("click", async () => {
    button.disabled = true;
    clear(result).append(h("p", { class: "busy" }, "Comparing…"));
    try {
      const reply = await api.verify(photos[0], photos[1], threshold.value);
      const best = [...reply.results].sort((a, b) => b.confidence - a.confidence)[0];
      const decided = "verified" in reply;
      const verdict = !best
        ? h("p", { class: "verdict none" }, "No face found in one of the photos.")
        : h(
            "p",
            { class: `verdict ${decided ? (reply.verified ? "same" : "different") : "none"}`, id: "verdict" },
            decided ? (reply.verified ? "Same person" : "Different people") : "No decision (threshold none)",
            h("span", { class: "confidence", id: "compare-confidence" }, ` confidence ${best.confidence.toFixed(3)}`),
          );
      const boxes1 = best ? [{ ...best.bbox1, label: "1" }] : [];
      const boxes2 = best ? [{ ...best.bbox2, label: "1" }] : [];
      clear(previews[0]).append(boxedPhoto(objectUrl(photos[0]), boxes1, { caption: photos[0].name }));
      clear(previews[1]).append(boxedPhoto(objectUrl(photos[1]), boxes2, { caption: photos[1].name }));
      const skipped = [[1, reply.skipped1], [2, reply.skipped2]]
        .flatMap(([n, faces]) => (faces ?? []).map((s) => `photo ${n}: ${s.message}`));
      clear(result).append(
        verdict,
        skipped.length ? h("p", { class: "skipped", id: "compare-skipped" }, `Not compared: ${skipped.join("; ")}`) : null,
        reply.results.length > 1
          ? h(
              "table",
              { class: "list pairs" },
              h("thead", {}, h("tr", {}, h("th", {}, "Face in photo 1"), h("th", {}, "Face in photo 2"), h("th", { class: "num" }, "Confidence"), h("th", {}, "Match"))),
              h("tbody", {}, reply.results.map((p) =>
                h("tr", {},
                  h("td", {}, JSON.stringify([p.bbox1.x1, p.bbox1.y1, p.bbox1.x2, p.bbox1.y2])),
                  h("td", {}, JSON.stringify([p.bbox2.x1, p.bbox2.y1, p.bbox2.x2, p.bbox2.y2])),
                  h("td", { class: "num" }, p.confidence.toFixed(3)),
                  h("td", {}, p.verified === undefined ? "" : p.verified ? "yes" : "no")))),
            )
          : null,
      );
    } catch (error) {
      clear(result).append(h("p", { class: "form-error" }, describe(error)));
    } finally {
      button.disabled = false;
    }
  });

  page.append(
    h("h2", {}, "Compare two photos"),
    h("div", { class: "toolbar" }, field("Threshold", threshold), button),
    h("div", { class: "compare" }, zone(0), zone(1)),
    result,
    h("div", { class: "compare" }, previews[0], previews[1]),
  );
}

// ---- cluster status ----

// A gallery's fast index, per shard: building (with its progress), ready (faces in its lists and those searched
// exactly beside them until merged) or failed.
function fastIndexTable(shards) {
  const rows = shards.flatMap((s) => (s.fast_indexes ?? []).map((f) => ({ shard: s.shard_id || `#${s.index}`, ...f })));
  if (!rows.length) {
    return h("p", { id: "fast-indexes" }, "None: every search scans its whole gallery. A gallery gets one when it reaches the shards' fast_index_min_faces, or with findface-index build.");
  }
  const state = (f) => (f.state === "BUILDING" ? `building ${Math.round(f.progress * 100)}%` : f.state === "FAILED" ? `failed: ${f.error}` : "ready");
  return h(
    "table",
    { class: "list", id: "fast-indexes" },
    h("thead", {}, h("tr", {}, h("th", {}, "Shard"), h("th", {}, "Gallery"), h("th", {}, "State"), h("th", { class: "num" }, "Listed"), h("th", { class: "num" }, "Delta"), h("th", { class: "num" }, "Lists / probed"), h("th", { class: "num" }, "Memory"))),
    h("tbody", {}, rows.map((f) =>
      h("tr", {},
        h("td", {}, f.shard),
        h("td", {}, f.gallery),
        h("td", {}, state(f)),
        h("td", { class: "num" }, String(f.listed)),
        h("td", { class: "num" }, String(f.delta)),
        h("td", { class: "num" }, f.lists ? `${f.lists} / ${f.nprobe}` : "–"),
        h("td", { class: "num" }, f.bytes ? formatBytes(f.bytes) : "–")))),
  );
}

async function viewStatus(page, _param, current) {
  const status = await api.status();
  if (!current()) return;
  const shards = status.shards;
  const ex = status.extractor;
  const lic = status.license;
  const licenseBlock = () => {
    if (lic === null || lic === undefined) return h("p", {}, "No license server is configured for this HTTP gateway.");
    if (lic.error) return h("p", { class: "form-error" }, lic.error);
    const limit = (name) => lic.limits.find((l) => l.name === name);
    const end = limit("end");
    return h(
      "table",
      { class: "list", id: "license" },
      h("tbody", {},
        h("tr", {}, h("th", {}, "Mode"), h("td", {}, lic.type === "unlicensed" ? "unlicensed (no license file)" : "licensed")),
        h("tr", {}, h("th", {}, "Valid"), h("td", {}, lic.valid.value ? "yes" : `no: ${lic.valid.description}`)),
        lic.licensee ? h("tr", {}, h("th", {}, "Licensee"), h("td", {}, lic.licensee)) : null,
        h("tr", {}, h("th", {}, "Expires"), h("td", { id: "license-expiry" }, end ? formatDate(end.value) : "never")),
        ["faces", "shards", "extractors", "cameras"].map((name) => {
          const l = limit(name);
          return h("tr", {}, h("th", {}, `${name[0].toUpperCase()}${name.slice(1)}`),
            h("td", { id: `license-${name}` }, `${l?.current ?? 0} used of ${l?.value ?? "unlimited"}`));
        }),
      ),
    );
  };
  page.append(
    h("h2", {}, "Cluster status"),
    h("button", { class: "secondary", onclick: () => render() }, "Refresh"),
    h("h3", {}, "Index shards ", h("span", { id: "shards-live", class: shards.live === shards.total ? "ok" : "bad" }, `${shards.live}/${shards.total} live`)),
    h(
      "table",
      { class: "list", id: "shards" },
      h("thead", {}, h("tr", {}, h("th", {}, "Shard"), h("th", {}, "Address"), h("th", {}, "State"), h("th", { class: "num" }, "Faces"), h("th", {}, "Galleries"), h("th", {}, "Model"), h("th", { class: "num" }, "Index memory"))),
      h("tbody", {}, shards.items.map((s) =>
        h("tr", { class: s.live ? "" : "down" },
          h("td", {}, s.shard_id || `#${s.index}`),
          h("td", {}, s.address),
          h("td", {}, s.live ? "live" : `down: ${s.error}`),
          h("td", { class: "num" }, s.live ? String(s.face_count) : "–"),
          h("td", {}, Object.entries(s.galleries ?? {}).map(([g, c]) => `${g}: ${c}`).join(", ")),
          h("td", {}, s.model_id ? `${s.model_id} (${s.dim}-d)` : ""),
          h("td", { class: "num" }, s.live ? formatBytes(s.index_bytes) : "–")))),
    ),
    h("h3", {}, "Fast indexes"),
    fastIndexTable(shards.items),
    h("h3", {}, "Extractor"),
    h(
      "table",
      { class: "list", id: "extractor" },
      h("tbody", {},
        h("tr", {}, h("th", {}, "Address"), h("td", {}, ex.address)),
        h("tr", {}, h("th", {}, "State"), h("td", {}, ex.live ? "live" : `down: ${ex.error}`)),
        h("tr", {}, h("th", {}, "Model pack"), h("td", { id: "model-pack" }, ex.model_pack)),
        h("tr", {}, h("th", {}, "Models"), h("td", {}, `${ex.detector_model_id} + ${ex.embedder_model_id} (${ex.descriptor_dim}-d)`)),
        h("tr", {}, h("th", {}, "Version"), h("td", {}, ex.version))),
    ),
    h("h3", {}, "Faces"),
    h("p", { id: "face-total" }, `${status.faces} face(s) in ${status.galleries} galleries` +
      (status.shards.live < status.shards.total
        ? ` (on the ${status.shards.live} of ${status.shards.total} shards that answered)` : "")),
    h("h3", {}, "License"),
    licenseBlock(),
  );
}

render();
