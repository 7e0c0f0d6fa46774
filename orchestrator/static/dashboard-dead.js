// Dead letters per service: the parked tasks (a tenant's own, or every tenant's for the admin key), with
// a Replay button per task and bulk replay of the selected ones or of all.

import { fill, describeError, field, h, notice, shortId, table, time } from "/static/dashboard-dom.js";

const SERVICE_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,99}$/i;

export function mountDeadLetters(app, container, service) {
  const say = notice();
  const body = h("tbody", { id: "dead-body" });
  const chooser = h("input", { id: "dead-service", value: service || "", list: "dead-services", placeholder: "service" });
  const options = h("datalist", { id: "dead-services" });
  const selectAll = h("input", { type: "checkbox", id: "dead-select-all", "aria-label": "select every parked task" });
  const replaySelected = h("button", { type: "button", id: "replay-selected", disabled: true }, "Replay selected");
  const replayAll = h("button", { type: "button", id: "replay-all", class: "danger", disabled: !service }, "Replay all");
  let closed = false;

  container.append(h("h1", {}, "Dead letters"),
    h("form", {
      class: "filters", "aria-label": "choose a service",
      onsubmit: (event) => { event.preventDefault(); app.navigate(`#/dead-letters/${chooser.value.trim()}`); },
    }, field("Service", chooser), options,
    h("div", { class: "field buttons" }, h("button", { type: "submit", id: "dead-show" }, "Show"))),
    say);

  app.services().then((names) => {
    fill(options, ...names.map((name) => h("option", { value: name })));
  });

  if (!service) {
    container.append(h("p", { class: "muted" }, "Choose a service to see its parked tasks."));
    return () => { closed = true; };
  }
  if (!SERVICE_PATTERN.test(service)) {
    say.say(`"${service}" is not a service name`, "error");
    return () => { closed = true; };
  }

  container.append(h("section", { class: "card" },
    h("div", { class: "buttons" }, replaySelected, replayAll),
    table([selectAll, "Task", "Job", "Type", "Reason", "Error", "Attempts", "Parked", ""], body, `parked tasks of ${service}`)));

  const checked = () => [...body.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
  const syncButtons = () => { replaySelected.disabled = checked().length === 0; };
  selectAll.addEventListener("change", () => {
    body.querySelectorAll("input[type=checkbox]:not(:disabled)").forEach((box) => { box.checked = selectAll.checked; });
    syncButtons();
  });

  async function replay(selection) {
    try {
      const answer = await app.baton.request("POST", `/dead-letters/${service}/replay`, selection);
      const errors = answer.errors.length ? `; ${answer.errors.length} not replayed: ${answer.errors.map((e) => e.error || e.detail || JSON.stringify(e)).join(", ")}` : "";
      say.say(`replayed ${answer.replayed.length}${errors}`, answer.errors.length ? "error" : "ok");
    } catch (error) {
      say.say(describeError(error), "error");
    }
    await load();
  }
  replaySelected.addEventListener("click", () => replay({ task_ids: checked() }));
  replayAll.addEventListener("click", () => replay({ all: true }));

  async function load() {
    try {
      const page = await app.baton.request("GET", `/dead-letters/${service}?limit=200`);
      if (closed) return;
      fill(body, ...page.entries.map((entry) => h("tr", { dataset: { taskId: entry.task_id || "" } },
        h("td", {}, h("input", {
          type: "checkbox", value: entry.task_id || "", disabled: !entry.decodable || !entry.task_id,
          "aria-label": `select task ${entry.task_id}`, onchange: syncButtons,
        })),
        h("td", { class: "id" }, shortId(entry.task_id)),
        h("td", { class: "id" }, entry.job_id && app.role === "tenant"
          ? h("a", { href: `#/jobs/${entry.job_id}` }, shortId(entry.job_id)) : shortId(entry.job_id)),
        h("td", {}, entry.type || "—"),
        h("td", {}, entry.reason || "—"),
        h("td", { class: "detail" }, entry.error ? `${entry.error_type || "error"}: ${entry.error}` : entry.decode_error || ""),
        h("td", { class: "num" }, String(entry.attempts ?? "—")),
        h("td", { class: "time" }, time(entry.dead_at)),
        h("td", {}, entry.decodable && entry.task_id
          ? h("button", {
            type: "button", class: "ghost small", "aria-label": `replay task ${entry.task_id}`,
            onclick: () => replay({ task_ids: [entry.task_id] }),
          }, "Replay")
          : null))));
      if (!page.entries.length) body.append(h("tr", {}, h("td", { colspan: "9", class: "empty" }, "Nothing parked.")));
      if (page.truncated) say.say(`Showing the first ${page.entries.length}; more may be parked.`, "info");
      replayAll.disabled = !page.entries.length;
      selectAll.checked = false;
      syncButtons();
    } catch (error) {
      say.fail(error);
    }
  }

  load();
  return () => { closed = true; };
}
