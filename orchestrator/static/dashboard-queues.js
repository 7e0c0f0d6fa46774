// Queues and workers: per service the ready depth, consumers, dead letters and rates of the last minute,
// and its live workers with in-flight tasks and heartbeat age; read again every few seconds.

import { fill, ago, h, notice, table } from "/static/dashboard-dom.js";

export const QUEUES_REFRESH_MS = 3000;

function rate(value) {
  return typeof value === "number" ? value.toFixed(2) : "—";
}

export function mountQueues(app, container) {
  const say = notice();
  const body = h("tbody", { id: "queues-body" });
  const stamp = h("span", { class: "muted", id: "queues-stamp" });
  let timer = null;
  let closed = false;

  container.append(h("h1", {}, "Queues and workers"),
    h("p", { class: "muted" }, app.role === "admin"
      ? "Every service, every tenant's figures. "
      : "Your lanes and dead letters; consumers and workers are shared by every tenant. ",
    `Refreshed every ${QUEUES_REFRESH_MS / 1000} s. `, stamp),
    say,
    h("section", { class: "card" }, table(
      ["Service", "Ready", "Consumers", "Dead letters", "Published/s", "Completed/s", "Failed/s", "Workers"],
      body, "queues by service")));

  async function load() {
    try {
      const answer = await app.baton.request("GET", "/queues");
      if (closed) return;
      const services = Array.isArray(answer) ? answer : answer.services || answer.queues || [];
      app.knownServices = services.map((s) => s.service);
      fill(body, ...services.map((service) => h("tr", { dataset: { service: service.service } },
        h("th", { scope: "row" }, service.service),
        h("td", { class: "num" }, String(service.depth ?? "—")),
        h("td", { class: "num" }, String(service.consumers ?? "—")),
        h("td", { class: "num" }, service.dead_letters
          ? h("a", { href: `#/dead-letters/${service.service}` }, String(service.dead_letters))
          : String(service.dead_letters ?? "—")),
        h("td", { class: "num" }, rate(service.rates && service.rates.published_per_second)),
        h("td", { class: "num" }, rate(service.rates && service.rates.completed_per_second)),
        h("td", { class: "num" }, rate(service.rates && service.rates.failed_per_second)),
        h("td", {}, workers(service.workers || [])))));
      if (!services.length) body.append(h("tr", {}, h("td", { colspan: "8", class: "empty" }, "No services.")));
      stamp.textContent = `Last read ${new Date().toLocaleTimeString()}.`;
      say.say("");
    } catch (error) {
      say.fail(error);
    }
    if (!closed) timer = setTimeout(load, QUEUES_REFRESH_MS);
  }

  load();
  return () => { closed = true; clearTimeout(timer); };
}

function workers(list) {
  if (!list.length) return h("span", { class: "muted" }, "none live");
  return h("ul", { class: "workers" }, list.map((worker) => h("li", { dataset: { workerId: worker.worker_id } },
    h("code", {}, worker.worker_id),
    worker.host ? ` on ${worker.host}${worker.pid ? `:${worker.pid}` : ""}` : "",
    ` · ${worker.in_flight ?? "?"}/${worker.concurrency ?? "?"} in flight`,
    ` · heartbeat ${ago(worker.age_seconds)}`)));
}
