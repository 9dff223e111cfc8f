// The HTTP API as the pages use it: the token, requests with upload progress, and errors as readable text.
// Everything goes to the legacy API under /v1 on this same origin, with "Authorization: Token ...".

const TOKEN_KEY = "findface.token";

export class ApiError extends Error {
  constructor(status, code, reason, param) {
    super(reason);
    this.status = status; // HTTP status, 0 when the server could not be reached
    this.code = code; // the legacy error code: BAD_PARAM, AUTH_FAILED, ...
    this.reason = reason;
    this.param = param;
  }

  /** One line a person can act on. */
  get text() {
    const where = this.param ? ` (parameter "${this.param}")` : "";
    return `${this.reason}${where} [${this.code}${this.status ? `, HTTP ${this.status}` : ""}]`;
  }
}

/** The token lives in sessionStorage: closing the browser tab logs out. */
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let authLost = () => {};

/** fn(error) is called whenever the API refuses the stored token (401). */
export function onAuthLost(fn) {
  authLost = fn;
}

/**
 * One API call. `json` sends a JSON body, `form` a multipart form (File values become file parts).
 * `onProgress(fraction)` follows the upload. Resolves {status, body, header(name)}; rejects with ApiError.
 */
export function request(method, path, { json, form, onProgress, bearer } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, `/v1${path}`);
    const credential = bearer ?? token.get();
    if (credential) xhr.setRequestHeader("Authorization", `Token ${credential}`);
    if (onProgress) {
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
      };
    }
    xhr.onload = () => {
      let body = null;
      if (xhr.responseText) {
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve({ status: xhr.status, body, header: (name) => xhr.getResponseHeader(name) });
        return;
      }
      const error = new ApiError(
        xhr.status,
        body?.code ?? `HTTP_${xhr.status}`,
        body?.reason ?? (xhr.statusText || "the server gave no reason"),
        body?.param,
      );
      if (xhr.status === 401 && bearer === undefined) authLost(error);
      reject(error);
    };
    xhr.onerror = () =>
      reject(new ApiError(0, "NETWORK", "the server cannot be reached; is findface-http running?"));
    if (json !== undefined) {
      xhr.setRequestHeader("Content-Type", "application/json");
      xhr.send(JSON.stringify(json));
    } else if (form) {
      const data = new FormData();
      for (const [name, value] of Object.entries(form)) {
        if (value === undefined || value === null) continue;
        if (value instanceof File) data.append(name, value, value.name);
        else data.append(name, typeof value === "string" ? value : JSON.stringify(value));
      }
      xhr.send(data);
    } else {
      xhr.send();
    }
  });
}

// v1's flags asking for each face's gender, age and emotions.
const ATTRIBUTES = { gender: "true", age: "true", emotions: "true" };

export const api = {
  // counts=true: objects with face counts; the plain call answers the names only, as legacy clients expect.
  galleries: async () => (await request("GET", "/galleries?counts=true")).body.results,
  // The same with how many index shards answered: a shard that did not leaves its faces out of the counts.
  galleryCounts: async () => (await request("GET", "/galleries?counts=true")).body,
  createGallery: (name) => request("POST", `/galleries/${encodeURIComponent(name)}`),
  deleteGallery: (name) => request("DELETE", `/galleries/${encodeURIComponent(name)}`),
  faces: async (gallery, maxId, limit) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (maxId) query.set("max_id", String(maxId));
    return (await request("GET", `/faces/gallery/${encodeURIComponent(gallery)}?${query}`)).body;
  },
  updateFace: async (id, change) => (await request("PUT", `/face/id/${id}`, { json: change })).body,
  deleteFace: (id) => request("DELETE", `/face/id/${id}`),
  /** `attributes`: also each face's gender, age and emotions (v1's flags). */
  detect: async (photo, onProgress, attributes = false) =>
    (await request("POST", "/detect", { form: { photo, ...(attributes ? ATTRIBUTES : {}) }, onProgress })).body.faces,
  /**
   * {results: faces enrolled, skipped: faces found but not enrolled}. `boxes` null: every face the server can use
   * (mf_selector all), the rest skipped with the reason; with boxes, a face in one that cannot be used fails it all.
   */
  enroll: async (photo, boxes, gallery, meta, onProgress) =>
    (await request("POST", "/face", {
      form: {
        photo,
        bbox: boxes?.map((b) => [b.x1, b.y1, b.x2, b.y2]),
        mf_selector: boxes ? undefined : "all",
        galleries: [gallery],
        meta,
      },
      onProgress,
    })).body,
  identify: async (photo, gallery, threshold, n, onProgress, attributes = false) => {
    const reply = await request("POST", `/faces/gallery/${encodeURIComponent(gallery)}/identify`, {
      form: { photo, threshold, n: String(n), mf_selector: "all", ...(attributes ? ATTRIBUTES : {}) },
      onProgress,
    });
    return { results: reply.body.results, skipped: reply.body.skipped ?? [], live: reply.header("X-Live-Servers"),
      attributes: reply.body.attributes ?? {} };
  },
  verify: async (photo1, photo2, threshold) =>
    (await request("POST", "/verify", { form: { photo1, photo2, threshold, mf_selector: "all" } })).body,
  status: async () => (await request("GET", "/status")).body,
};

/** An identify result key "[x1, y1, x2, y2]" as a box. */
export function boxOfKey(key) {
  const [x1, y1, x2, y2] = JSON.parse(key);
  return { x1, y1, x2, y2 };
}
