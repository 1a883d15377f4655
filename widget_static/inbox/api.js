/* REST calls under /api with the session cookie, and the page's <meta name="csrf-token"> as
 * X-CSRFToken on every unsafe call; errors as ApiError with the server's code and message. */

const CSRF = document.querySelector('meta[name="csrf-token"]').getAttribute("content");

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function api(path, options = {}) {
  const method = options.method || "GET";
  const headers = { Accept: "application/json" };
  let payload = options.body;
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = CSRF;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(options.json);
  }
  return fetch(path, { method, headers, body: payload, credentials: "same-origin" }).then(
    (resp) => {
      if (resp.status === 401) {
        window.location.assign("/auth/login?next=/inbox");
        throw new ApiError("Your session ended; please sign in again.", 401, "not_authenticated");
      }
      const type = resp.headers.get("Content-Type") || "";
      const parsed = type.indexOf("application/json") >= 0 ? resp.json() : Promise.resolve(null);
      return parsed.then((data) => {
        if (!resp.ok) {
          const err = (data && data.error) || {};
          throw new ApiError(
            err.message || resp.statusText || "Request failed.",
            resp.status,
            err.code,
          );
        }
        return data;
      });
    },
  );
}
