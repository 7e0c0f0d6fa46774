// Small DOM and formatting helpers shared by the dashboard's views. No framework: elements are built
// with h() and updated in place by the views that own them.

export const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
export const RETRYABLE = new Set(["failed", "cancelled", "timed_out"]);
export const JOB_STATUSES = ["queued", "running", "retrying", "completed", "failed", "cancelled", "timed_out"];

/** h("tr", {class: "x", onclick: f}, child, "text", [more]) -> Element. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

/** Replaces an element's children; like replaceChildren, but nested arrays and null/false are allowed. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An SVG element (charts and the workflow graph). */
export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  append(element, children);
  return element;
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status || "unknown"}`, dataset: { status: status || "" } }, status || "…");
}

export function progressBar(percentage, label) {
  const value = Math.max(0, Math.min(100, Number(percentage) || 0));
  const fill = h("div", { class: "bar-fill" });
  fill.style.width = `${value}%`;
  return h("div", {
    class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": String(Math.round(value)), "aria-label": label || "progress",
  }, fill);
}

export function setProgress(bar, percentage) {
  const value = Math.max(0, Math.min(100, Number(percentage) || 0));
  bar.firstChild.style.width = `${value}%`;
  bar.setAttribute("aria-valuenow", String(Math.round(value)));
}

/** The bar of a job: 100 once completed, else its last reported percentage. */
export function jobPercentage(status, progress) {
  if (status === "completed") return 100;
  return progress && typeof progress.percentage === "number" ? progress.percentage : 0;
}

export function time(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function ago(seconds) {
  if (seconds === undefined || seconds === null || Number.isNaN(seconds)) return "";
  if (seconds < 1) return "now";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

export function json(value) {
  return h("pre", { class: "json" }, value === undefined ? "" : JSON.stringify(value, null, 2));
}

/** A BatonError or any other error as one line for people. */
export function describeError(error) {
  if (error && error.status !== undefined) {
    const detail = typeof error.detail === "string" ? error.detail : JSON.stringify(error.detail ?? "");
    return `${error.status} ${error.error || ""}${detail ? `: ${detail}` : ""}`;
  }
  return error && error.message ? error.message : String(error);
}

/** A notice line (role=status) that views write outcomes and errors into. */
export function notice() {
  const box = h("p", { class: "notice", role: "status", "aria-live": "polite" });
  box.say = (text, kind = "info") => { box.textContent = text || ""; box.dataset.kind = kind; };
  box.fail = (error) => box.say(describeError(error), "error");
  return box;
}

export function table(headers, body, caption) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      body));
}

export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("small", {}, hint) : null);
}
