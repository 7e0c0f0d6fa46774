// Job detail: the record (payload, result or error with its traceback, attempts), the event timeline
// (the server's kept history, then live events), the child-task tree, and retry and cancel.

import {
  RETRYABLE, TERMINAL, fill, h, jobPercentage, json, notice, progressBar, setProgress, shortId, statusBadge,
  table, time,
} from "/static/dashboard-dom.js";

export function mountJob(app, container, jobId) {
  const say = notice();
  const timelineBody = h("tbody", { id: "timeline-body" });
  const seen = new Set();
  let lastSeq = 0;
  let job = null;
  let payload;  // asked for once: it never changes; null when the server no longer keeps it
  let watch = null;
  let filling = null;
  let refill = false;
  let closed = false;

  const header = h("div", { class: "job-header" });
  const overview = h("section", { class: "card", id: "job-overview" });
  const outcome = h("section", { class: "card", id: "job-outcome" });
  const tree = h("section", { class: "card", id: "job-tree" });

  container.append(
    h("p", {}, h("a", { href: "#/runs" }, "← Runs")),
    header, say, overview, outcome, tree,
    h("section", { class: "card" },
      h("h2", {}, "Timeline"),
      table(["Seq", "Time", "Event", "Job status", "Task", "Detail"], timelineBody, "the job's events in order")));

  function addEvent(event) {
    if (typeof event.seq !== "number" || seen.has(event.seq)) return;
    seen.add(event.seq);
    const data = event.data || {};
    const progress = data.progress;
    const detail = progress
      ? `${Math.round(Number(progress.percentage) || 0)}%${progress.message ? ` ${progress.message}` : ""}`
      : data.error ? `${data.error_type || "error"}: ${data.error}` : data.status || "";
    const tr = h("tr", { dataset: { seq: String(event.seq) } },
      h("td", { class: "num" }, String(event.seq)),
      h("td", { class: "time" }, time(event.timestamp)),
      h("td", {}, event.event),
      h("td", {}, statusBadge(event.job_status)),
      h("td", { class: "id" }, event.service ? `${event.service} ${shortId(event.task_id)}` : shortId(event.task_id)),
      h("td", { class: "detail" }, detail));
    // Kept in seq order whatever order they came in (history and live may interleave).
    const after = [...timelineBody.children].find((row) => Number(row.dataset.seq) > event.seq);
    timelineBody.insertBefore(tr, after || null);
    lastSeq = Math.max(lastSeq, event.seq);
  }

  // The seq after which the timeline may miss events: the end of its first run without a gap.
  function heldThrough() {
    const first = Math.min(...seen);
    let seq = seen.size ? first : 0;
    while (seen.has(seq + 1)) seq += 1;
    return seq;
  }

  // Reads the kept history after the first gap until it is all here (a page is at most the server's limit).
  async function fillFromHistory() {
    if (filling) {
      refill = true;  // events came in during this read: read again once it ends
      return filling;
    }
    filling = (async () => {
      try {
        for (let round = 0; round < 20 && !closed; round += 1) {
          refill = false;
          const since = heldThrough();
          const page = await app.baton.events(jobId, since);
          page.events.forEach(addEvent);
          if (!page.complete) say.say("Some of this job's events are no longer kept; the timeline shows the rest.", "info");
          const done = !page.events.length || heldThrough() === since || heldThrough() >= page.seq;
          if (done && !refill) break;
        }
      } catch (error) {
        say.fail(error);
      } finally {
        filling = null;
      }
    })();
    return filling;
  }

  function render() {
    const percentage = jobPercentage(job.status, job.progress);
    header.dataset.status = job.status;
    fill(header,
      h("h1", {}, "Job ", h("code", {}, job.job_id)),
      h("div", { class: "job-status-line" },
        statusBadge(job.status), progressBar(percentage, "job progress"),
        h("span", { class: "bar-message" }, (job.progress && job.progress.message) || "")),
      h("div", { class: "buttons" },
        !TERMINAL.has(job.status)
          ? h("button", { type: "button", id: "job-cancel", onclick: () => app.cancelJob(jobId, say) }, "Cancel")
          : null,
        RETRYABLE.has(job.status)
          ? h("button", { type: "button", id: "job-retry", onclick: () => app.retryJob(jobId, say, true) }, "Retry as a new job")
          : null));
    fill(overview,
      h("h2", {}, "Overview"),
      h("dl", { class: "facts" },
        fact("Type", job.type), fact("Service", job.service), fact("Priority", job.priority),
        fact("Attempts", job.attempt), fact("Session", job.session_id || "—"),
        fact("Created", time(job.created_at)), fact("Updated", time(job.updated_at)), fact("Seq", job.seq),
        job.retry_of ? fact("Retry of", h("a", { href: `#/jobs/${job.retry_of}` }, job.retry_of)) : null,
        job.parent ? fact("Parent job", h("a", { href: `#/jobs/${job.parent.job_id}` }, job.parent.job_id)) : null),
      payload === undefined ? null : [
        h("h3", {}, "Payload"),
        payload === null
          ? h("p", { class: "muted", id: "job-payload" }, "The payload is no longer kept.")
          : h("div", { id: "job-payload" }, json(payload)),
      ],
      job.context && Object.keys(job.context).length ? [h("h3", {}, "Context"), json(job.context)] : null);
    fill(outcome, ...outcomeOf(job));
    fill(tree, h("h2", {}, "Tasks"), taskTree(job));
  }

  async function reload() {
    try {
      if (payload === undefined) {
        job = await app.baton.get(jobId, { includePayload: true });
        payload = job.payload;
      } else {
        job = await app.baton.get(jobId);
      }
      render();
    } catch (error) {
      say.fail(error);
    }
  }

  let reloadTimer = null;
  function scheduleReload() {
    if (reloadTimer) return;
    reloadTimer = setTimeout(() => { reloadTimer = null; if (!closed) reload(); }, 250);
  }

  function onMessage(message) {
    if (message.type === "job_snapshot") {
      // A snapshot stands for events not delivered one by one: read them from the history.
      if (message.seq > lastSeq) fillFromHistory();
      scheduleReload();
      return;
    }
    const gap = message.seq > lastSeq + 1;
    addEvent(message);
    if (gap || TERMINAL.has(message.job_status)) fillFromHistory();
    if (job && message.job_status) {
      job.status = message.job_status;
      header.dataset.status = job.status;
      if (message.data && message.data.progress) job.progress = message.data.progress;
      const bar = header.querySelector(".bar");
      if (bar) setProgress(bar, jobPercentage(job.status, job.progress));
    }
    scheduleReload();
  }

  (async () => {
    await reload();
    if (!job || closed) return;
    await fillFromHistory();
    if (closed) return;
    watch = app.baton.watch(jobId, onMessage);
    if (watch.done && typeof watch.done.catch === "function") watch.done.catch(() => {});
  })();

  return () => {
    closed = true;
    clearTimeout(reloadTimer);
    if (watch) watch.close();
  };
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value === undefined || value === null ? "—" : value)];
}

function outcomeOf(job) {
  if (job.status === "completed") return [h("h2", {}, "Result"), json(job.result ?? null)];
  if (job.error) {
    const error = job.error;
    return [
      h("h2", {}, "Error"),
      h("p", { class: "error-line", id: "job-error" },
        h("strong", {}, error.error_type || error.type || "error"), ": ", error.error || error.message || ""),
      error.traceback
        ? h("details", { id: "job-traceback", open: true },
          h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, error.traceback))
        : null,
      h("details", {}, h("summary", {}, "Whole error record"), json({ ...error, traceback: undefined })),
    ];
  }
  return [h("h2", {}, "Result"), h("p", { class: "muted" }, TERMINAL.has(job.status) ? "No result." : "Not finished yet.")];
}

function taskTree(job) {
  // delegated_services lists the root task too: the tree shows it once, as the root.
  const children = (Array.isArray(job.delegated_services) ? job.delegated_services : [])
    .filter((child) => child.task_id !== job.root_task_id);
  const root = h("li", {},
    h("span", { class: "task" }, h("strong", {}, job.service || "?"), " ", h("code", {}, shortId(job.root_task_id)), " ",
      statusBadge(job.status)));
  if (children.length) {
    root.append(h("ul", {}, children.map((child) => h("li", {},
      h("span", { class: "task" }, h("strong", {}, child.service || "?"), " ", h("code", {}, shortId(child.task_id)), " ",
        statusBadge(child.status))))));
  }
  return h("ul", { class: "tree", id: "task-tree" }, root);
}
