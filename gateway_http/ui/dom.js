// Small DOM helpers. Text from the server (meta, names, reasons) only ever goes in as text nodes, never as HTML.

/** h("div", {class: "x", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/**
 * A photo with face boxes drawn on it. `boxes`: [{x1, y1, x2, y2, label?, note?, attrs?, state?, className?}] in the
 * photo's own pixels (EXIF orientation applied, as the API reports them and as the browser shows the image);
 * `note` and `attrs` (the face's gender, age and emotion) are shown after the label in a lighter face.
 * `onBox(index, el)`: makes boxes clickable. Returns the figure.
 */
export function boxedPhoto(src, boxes, { onBox, caption, className = "" } = {}) {
  const frame = h("div", { class: "frame" });
  const img = h("img", { src, alt: caption ?? "photo" });
  const figure = h("figure", { class: `boxed ${className}` }, frame, caption ? h("figcaption", {}, caption) : null);
  frame.append(img);
  const place = () => {
    const w = img.naturalWidth;
    const hgt = img.naturalHeight;
    if (!w || !hgt) return;
    boxes.forEach((box, index) => {
      const el = h(
        "div",
        {
          class: ["box", box.state, box.className].filter(Boolean).join(" "),
          dataset: { index: String(index) },
          title: box.title ?? null,
          style: {
            left: `${(100 * Math.max(0, box.x1)) / w}%`,
            top: `${(100 * Math.max(0, box.y1)) / hgt}%`,
            width: `${(100 * (Math.min(w, box.x2) - Math.max(0, box.x1))) / w}%`,
            height: `${(100 * (Math.min(hgt, box.y2) - Math.max(0, box.y1))) / hgt}%`,
          },
        },
        box.label
          ? h("span", { class: "label" }, box.label, box.note ? h("span", { class: "note" }, box.note) : null,
            box.attrs ? h("span", { class: "attrs" }, box.attrs) : null)
          : null,
      );
      if (onBox) {
        el.classList.add("clickable");
        el.addEventListener("click", () => onBox(index, el));
      }
      frame.append(el);
    });
    figure.dataset.boxes = String(boxes.length);
    figure.classList.add("ready");
  };
  if (img.complete && img.naturalWidth) place();
  else img.addEventListener("load", place, { once: true });
  img.addEventListener("error", () => figure.classList.add("broken"), { once: true });
  return figure;
}

// The photo formats the server takes (findface_grpc/photo_formats.py). The extensions too: browsers on Linux and
// Windows give HEIC and HEIF files no media type.
const PHOTO_TYPES = "image/jpeg,image/png,image/webp,image/gif,image/heic,image/heif,image/avif,.heic,.heif,.avif";
const PHOTO_EXTENSION = /\.(jpe?g|png|webp|gif|heic|heif|avif)$/i;

/** A drop zone with a file picker: onFiles(File[]) for images dropped or picked. */
export function dropZone(label, onFiles, { multiple = false, id } = {}) {
  const input = h("input", { type: "file", accept: PHOTO_TYPES, multiple, id });
  const zone = h("label", { class: "drop" }, input, h("span", {}, label));
  input.addEventListener("change", () => {
    if (input.files.length) onFiles([...input.files]);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = [...event.dataTransfer.files]
      .filter((f) => f.type.startsWith("image/") || PHOTO_EXTENSION.test(f.name));
    if (files.length) onFiles(multiple ? files : files.slice(0, 1));
  });
  return zone;
}

/** A modal question; resolves true when confirmed. */
export function confirmDialog(title, text, confirmLabel = "Delete") {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm" },
      h("h3", {}, title),
      h("p", {}, text),
      h(
        "form",
        { method: "dialog", class: "actions" },
        h("button", { value: "cancel", class: "secondary" }, "Cancel"),
        h("button", { value: "ok", class: "danger", id: "confirm-ok" }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function progressBar(className = "") {
  const bar = h("div", { class: "fill" });
  const el = h("div", { class: `progress ${className}`, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, bar);
  el.set = (fraction) => {
    const pct = Math.round(100 * Math.max(0, Math.min(1, fraction)));
    bar.style.width = `${pct}%`;
    el.setAttribute("aria-valuenow", String(pct));
  };
  el.set(0);
  return el;
}

export function formatBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KB", "MB", "GB", "TB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function formatDate(value) {
  if (!value) return "";
  const seconds = typeof value === "number" ? value : Date.parse(`${value}Z`) / 1000;
  if (!Number.isFinite(seconds)) return String(value);
  return new Date(seconds * 1000).toLocaleString();
}
