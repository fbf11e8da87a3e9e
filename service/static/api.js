// Calls to the spanqa HTTP API with the signed-in token.
//
// The token lives in sessionStorage (this tab only) and goes out as `Authorization: Bearer`; no
// cookies are ever sent or set, so a cross-site page cannot make requests on the user's behalf.

const TOKEN_KEY = "spanqa.token";

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.clear();
}

export class ApiError extends Error {
  constructor(status, code, detail, retryAfter = null) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }

  get mustSignIn() {
    return this.status === 401;
  }

  get retryable() {
    return this.status === 429 || this.status === 503 || this.status === 0;
  }
}

function detailText(detail) {
  if (typeof detail === "string") {
    return detail;
  }
  try {
    return JSON.stringify(detail);
  } catch {
    return String(detail);
  }
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let detail = response.statusText || `the server answered ${response.status}`;
  try {
    const body = await response.json();
    if (body && typeof body === "object" && "error" in body) {
      code = String(body.error);
      detail = detailText(body.detail);
    }
  } catch {
    // Not the API's JSON error shape (a proxy's page, say): keep the HTTP status text.
  }
  const retry = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return new ApiError(response.status, code, detail, Number.isFinite(retry) ? retry : null);
}

// The response body as JSON (or the Response itself with raw: true); an ApiError for any 4xx/5xx.
// `token` overrides the stored one (signing in checks a token before keeping it). `cache: "default"`
// lets the browser reuse what the server allows it to keep (page images: private, a few minutes).
export async function api(path, { method = "GET", json, body, raw = false, token, cache = "no-store" } = {}) {
  const headers = { Accept: raw ? "*/*" : "application/json" };
  const bearer = token === undefined ? storedToken() : token;
  if (bearer) {
    headers.Authorization = `Bearer ${bearer}`;
  }
  let payload = body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: "omit", cache });
  } catch {
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  if (!response.ok) {
    throw await errorFrom(response);
  }
  return raw ? response : response.json();
}

// Path segments the server chose (file ids, job ids) still go through encodeURIComponent.
export const seg = (value) => encodeURIComponent(String(value));
