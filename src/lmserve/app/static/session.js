// The app's credential: `lmserve app` opens the page at …/#token=<session token>. The page
// keeps it for this tab and sends it as a Bearer key, which the app port asks for when
// API keys are on. The fragment is dropped from the address bar once read.
const KEY = "lmserve-app-token";
const given = new URLSearchParams(location.hash.slice(1)).get("token");
if (given) {
  sessionStorage.setItem(KEY, given);
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem(KEY);

export function withCredential(headers = {}) {
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

// One JSON call to the app origin with the credential; an error envelope becomes an Error.
export async function call(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: withCredential(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error ? data.error.message : r.statusText);
  return data;
}
