// Runs: the tenant's jobs newest first, filtered and paged, updated live in place from watchAll, with a
// form that submits test jobs. A row's status is the event's `job_status` (the job's own), never the
// status of the task the event is about.

import {
  JOB_STATUSES, RETRYABLE, TERMINAL, describeError, field, fill, h, jobPercentage, notice, progressBar,
  setProgress, shortId, statusBadge, table, time,
} from "/static/dashboard-dom.js";

const PAGE_SIZES = [25, 50, 100];

/** The filters and page of a #/runs?... route; `toQuery` writes them back. */
export function readFilters(params) {
  const size = Number(params.get("limit"));
  return {
    status: params.get("status") || "",
    type: params.get("type") || "",
    session: params.get("session") || "",
    after: params.get("after") || "",
    before: params.get("before") || "",
    offset: Math.max(0, Number(params.get("offset")) || 0),
    limit: PAGE_SIZES.includes(size) ? size : PAGE_SIZES[0],
  };
}

function toQuery(filters) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) {
    if (value !== "" && value !== 0 && !(name === "limit" && value === PAGE_SIZES[0])) params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `#/runs?${text}` : "#/runs";
}

function isoOrUndefined(localValue) {
  if (!localValue) return undefined;
  const date = new Date(localValue);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

export function mountRuns(app, container, params) {
  const filters = readFilters(params);
  const rows = new Map();  // job_id -> {job, tr, cells}
  let order = [];
  let total = 0;
  let refreshTimer = null;
  const say = notice();
  const body = h("tbody", { id: "runs-body" });
  const pageInfo = h("span", { class: "page-info", id: "page-info" });

  // A job is shown live at the top only when the page is the first one and the filters can be judged
  // from an event (status); any other filter waits for the server's answer.
  const liveInsert = filters.offset === 0 && !filters.type && !filters.session && !filters.before;

  function merge(jobId, change) {
    const row = rows.get(jobId);
    const job = row.job;
    const newer = change.seq === undefined || job.seq === undefined || change.seq >= job.seq;
    for (const [name, value] of Object.entries(change)) {
      if (value === undefined) continue;
      if (!newer && ["status", "progress", "seq", "updated_at"].includes(name)) continue;
      job[name] = value;
    }
    paint(row);
  }

  function paint(row) {
    const { job, cells } = row;
    cells.type.textContent = job.type || "…";
    fill(cells.status, statusBadge(job.status));
    setProgress(cells.bar, jobPercentage(job.status, job.progress));
    cells.message.textContent = (job.progress && job.progress.message) || "";
    cells.created.textContent = time(job.created_at);
    cells.updated.textContent = time(job.updated_at);
    row.tr.dataset.status = job.status || "";
    fill(cells.actions, ...actions(job));
  }

  function actions(job) {
    const buttons = [];
    if (job.status && !TERMINAL.has(job.status)) {
      buttons.push(h("button", {
        type: "button", class: "ghost small", "aria-label": `cancel job ${job.job_id}`,
        onclick: () => app.cancelJob(job.job_id, say),
      }, "Cancel"));
    }
    if (RETRYABLE.has(job.status)) {
      buttons.push(h("button", {
        type: "button", class: "ghost small", "aria-label": `retry job ${job.job_id}`,
        onclick: () => app.retryJob(job.job_id, say),
      }, "Retry"));
    }
    return buttons;
  }

  function makeRow(job) {
    const cells = {
      type: h("td", { class: "type" }),
      status: h("td", { class: "status-cell" }),
      bar: progressBar(0, `progress of ${job.job_id}`),
      message: h("span", { class: "bar-message" }),
      created: h("td", { class: "time" }),
      updated: h("td", { class: "time" }),
      actions: h("td", { class: "actions" }),
    };
    const tr = h("tr", { dataset: { jobId: job.job_id } },
      h("td", { class: "id" }, h("a", { href: `#/jobs/${job.job_id}`, title: job.job_id }, shortId(job.job_id))),
      cells.type, cells.status, h("td", { class: "progress" }, cells.bar, cells.message),
      cells.created, cells.updated, cells.actions);
    const row = { job: { ...job }, tr, cells };
    rows.set(job.job_id, row);
    paint(row);
    return row;
  }

  function renderOrder() {
    for (const jobId of order.slice(filters.limit)) rows.delete(jobId);
    order = order.slice(0, filters.limit);
    fill(body, ...order.map((jobId) => rows.get(jobId).tr));
    if (!order.length) body.append(h("tr", {}, h("td", { colspan: "7", class: "empty" }, "No jobs match.")));
    const first = total ? filters.offset + 1 : 0;
    pageInfo.textContent = `${first}-${filters.offset + order.length} of ${total}`;
    prev.disabled = filters.offset === 0;
    next.disabled = filters.offset + filters.limit >= total;
  }

  async function load() {
    try {
      const page = await app.baton.list({
        status: filters.status || undefined,
        type: filters.type || undefined,
        sessionId: filters.session || undefined,
        createdAfter: isoOrUndefined(filters.after),
        createdBefore: isoOrUndefined(filters.before),
        offset: filters.offset,
        limit: filters.limit,
      });
      total = page.total;
      order = page.jobs.map((job) => {
        if (rows.has(job.job_id)) merge(job.job_id, job);
        else makeRow(job);
        return job.job_id;
      });
      // Jobs seen live but not yet in the server's page (created since) stay on top.
      const live = [...rows.keys()].filter((id) => !order.includes(id) && rows.get(id).live);
      order = [...live, ...order];
      renderOrder();
    } catch (error) {
      say.fail(error);
    }
  }

  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; load(); }, 500);
  }

  function onMessage(message) {
    const jobId = message.type === "job_snapshot" ? message.job_id : message.global_task_id || message.job_id;
    if (!jobId) return;
    if (message.type === "job_submitted") {
      // What this page knows from its own request: the type, never a status newer than the events'.
      if (rows.has(jobId)) merge(jobId, { type: message.job.type, created_at: message.job.created_at, seq: -1 });
      else if (liveInsert && !filters.status) insertLive(jobId, { status: message.job.status, ...message.job });
      return;
    }
    const change = message.type === "job_snapshot"
      ? { ...message.job, seq: message.seq }
      : {
        status: message.job_status,
        seq: message.seq,
        updated_at: message.timestamp,
        progress: message.data && message.data.progress ? message.data.progress : undefined,
      };
    if (rows.has(jobId)) {
      merge(jobId, change);
      return;
    }
    if (!liveInsert) {
      scheduleRefresh();
      return;
    }
    if (filters.status && change.status !== filters.status) return;
    const known = app.submitted.get(jobId) || {};
    insertLive(jobId, { ...known, ...change, created_at: known.created_at || change.updated_at });
  }

  function insertLive(jobId, job) {
    const row = makeRow({ job_id: jobId, ...job });
    row.live = true;
    order.unshift(jobId);
    total += 1;
    renderOrder();
    if (!row.job.type) scheduleRefresh();
  }

  // Filters form.
  const status = h("select", { id: "filter-status" },
    h("option", { value: "" }, "any"), JOB_STATUSES.map((s) => h("option", { value: s }, s)));
  status.value = filters.status;
  const type = h("input", { id: "filter-type", value: filters.type, placeholder: "e.g. llm_request" });
  const session = h("input", { id: "filter-session", value: filters.session });
  const after = h("input", { id: "filter-after", type: "datetime-local", value: filters.after });
  const before = h("input", { id: "filter-before", type: "datetime-local", value: filters.before });
  const size = h("select", { id: "filter-limit" }, PAGE_SIZES.map((n) => h("option", { value: String(n) }, String(n))));
  size.value = String(filters.limit);
  const filterForm = h("form", {
    class: "filters", "aria-label": "filters",
    onsubmit: (event) => {
      event.preventDefault();
      app.navigate(toQuery({
        status: status.value, type: type.value.trim(), session: session.value.trim(),
        after: after.value, before: before.value, offset: 0, limit: Number(size.value),
      }));
    },
  },
  field("Status", status), field("Type", type), field("Session", session),
  field("Created after", after), field("Created before", before), field("Per page", size),
  h("div", { class: "field buttons" },
    h("button", { type: "submit", id: "apply-filters" }, "Apply"),
    h("a", { class: "button ghost", href: "#/runs" }, "Clear")));

  const prev = h("button", {
    type: "button", class: "ghost", id: "page-prev",
    onclick: () => app.navigate(toQuery({ ...filters, offset: Math.max(0, filters.offset - filters.limit) })),
  }, "← Newer");
  const next = h("button", {
    type: "button", class: "ghost", id: "page-next",
    onclick: () => app.navigate(toQuery({ ...filters, offset: filters.offset + filters.limit })),
  }, "Older →");

  container.append(
    h("h1", {}, "Runs"),
    submitForm(app, say),
    h("section", { class: "card" },
      filterForm,
      say,
      table(["Job", "Type", "Status", "Progress", "Created", "Updated", ""], body, "jobs, newest first"),
      h("nav", { class: "pager", "aria-label": "pages" }, prev, pageInfo, next)));

  const unsubscribe = app.onJobMessage(onMessage);
  load();
  return () => {
    unsubscribe();
    clearTimeout(refreshTimer);
  };
}

function submitForm(app, say) {
  const type = h("input", { id: "submit-type", required: true, value: localStorage.getItem("baton.dashboard.type") || "" });
  const payload = h("textarea", { id: "submit-payload", rows: "3", spellcheck: "false" }, "{}");
  const priority = h("select", { id: "submit-priority" },
    ["medium", "high", "low"].map((p) => h("option", { value: p }, p)));
  const session = h("input", { id: "submit-session", placeholder: "optional" });
  const count = h("input", { id: "submit-count", type: "number", min: "1", max: "1000", value: "1" });
  const form = h("form", {
    class: "submit-form", "aria-label": "submit a test job",
    onsubmit: async (event) => {
      event.preventDefault();
      let body;
      try {
        body = JSON.parse(payload.value || "{}");
      } catch (error) {
        say.say(`payload is not JSON: ${error.message}`, "error");
        return;
      }
      const jobType = type.value.trim();
      const n = Math.max(1, Math.min(1000, Number(count.value) || 1));
      localStorage.setItem("baton.dashboard.type", jobType);
      try {
        const ids = await app.submitJobs(jobType, body, { priority: priority.value, sessionId: session.value.trim() || undefined }, n);
        say.say(n === 1 ? `submitted ${ids[0]}` : `submitted ${ids.length} jobs`, "ok");
      } catch (error) {
        say.say(describeError(error), "error");
      }
    },
  },
  field("Job type", type), field("Payload (JSON)", payload), field("Priority", priority),
  field("Session", session), field("How many", count),
  h("div", { class: "field buttons" }, h("button", { type: "submit", id: "submit-job" }, "Submit")));
  return h("details", { class: "card", open: true }, h("summary", {}, "Submit test jobs"), form);
}
