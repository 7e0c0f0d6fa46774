// The API key: taken once from the URL (?token= or #token=), kept in localStorage, then removed from the
// address bar so that it is not bookmarked, shared in a screenshot or sent as a Referer.

const STORAGE_KEY = "baton.dashboard.key";

/** The key from the URL if there is one (kept, and the URL cleaned), else the kept one, else null. */
export function takeKey(win = window) {
  const url = new URL(win.location.href);
  let fromUrl = url.searchParams.get("token");
  if (fromUrl !== null) url.searchParams.delete("token");
  const hash = url.hash.replace(/^#/, "");
  if (fromUrl === null && hash.startsWith("token=")) {
    fromUrl = decodeURIComponent(hash.slice("token=".length).split("&")[0]);
    url.hash = "";
  }
  if (fromUrl !== null) {
    if (fromUrl.trim()) keepKey(fromUrl.trim(), win);
    win.history.replaceState(win.history.state, "", url.pathname + url.search + url.hash);
  }
  return win.localStorage.getItem(STORAGE_KEY);
}

export function keepKey(key, win = window) {
  win.localStorage.setItem(STORAGE_KEY, key);
}

export function forgetKey(win = window) {
  win.localStorage.removeItem(STORAGE_KEY);
}
