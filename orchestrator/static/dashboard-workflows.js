// Workflows: the tenant's definitions and executions; an execution's steps laid out by dependency
// (one column per depth) with their live statuses, refreshed on each of the execution's events.

import { fill, describeError, field, h, notice, progressBar, shortId, statusBadge, table, time } from "/static/dashboard-dom.js";

export function mountWorkflows(app, container) {
  const say = notice();
  const definitions = h("tbody", { id: "workflow-defs" });
  const executions = h("tbody", { id: "executions-body" });
  const choice = h("select", { id: "start-workflow" });
  const data = h("textarea", { id: "start-data", rows: "3", spellcheck: "false" }, "{}");
  const mode = h("select", { id: "start-mode" }, h("option", { value: "automatic" }, "automatic"), h("option", { value: "manual" }, "manual"));
  let timer = null;
  let closed = false;

  const start = h("form", {
    class: "submit-form", "aria-label": "start a workflow",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const input = JSON.parse(data.value || "{}");
        const accepted = await app.baton.startWorkflow(choice.value, input, { mode: mode.value });
        app.navigate(`#/executions/${accepted.execution_id}`);
      } catch (error) {
        say.say(describeError(error), "error");
      }
    },
  }, field("Workflow", choice), field("Input (JSON)", data), field("Mode", mode),
  h("div", { class: "field buttons" }, h("button", { type: "submit", id: "start-execution" }, "Start")));

  container.append(
    h("h1", {}, "Workflows"), say,
    h("section", { class: "card" }, h("h2", {}, "Definitions"),
      table(["Workflow", "Name", "Steps", "Updated"], definitions, "workflow definitions")),
    h("details", { class: "card" }, h("summary", {}, "Start an execution"), start),
    h("section", { class: "card" }, h("h2", {}, "Executions"),
      table(["Execution", "Workflow", "Status", "Progress", "Created", "Finished"], executions, "executions, newest first")));

  async function load() {
    try {
      const [defs, runs] = await Promise.all([
        app.baton.request("GET", "/workflows"),
        app.baton.request("GET", "/executions?limit=50"),
      ]);
      if (closed) return;
      fill(definitions, ...defs.workflows.map((wf) => h("tr", {},
        h("td", {}, h("code", {}, wf.workflow_id)), h("td", {}, wf.name),
        h("td", {}, wf.steps.map((s) => s.name).join(" → ")), h("td", { class: "time" }, time(wf.updated_at)))));
      if (!defs.workflows.length) definitions.append(h("tr", {}, h("td", { colspan: "4", class: "empty" }, "No workflow definitions.")));
      const selected = choice.value;
      fill(choice, ...defs.workflows.map((wf) => h("option", { value: wf.workflow_id }, wf.workflow_id)));
      if (selected) choice.value = selected;
      fill(executions, ...runs.executions.map((run) => h("tr", { dataset: { executionId: run.execution_id } },
        h("td", { class: "id" }, h("a", { href: `#/executions/${run.execution_id}` }, shortId(run.execution_id))),
        h("td", {}, run.workflow_id), h("td", {}, statusBadge(run.status)),
        h("td", { class: "progress" }, progressBar(run.progress.percentage, `progress of ${run.execution_id}`)),
        h("td", { class: "time" }, time(run.created_at)), h("td", { class: "time" }, time(run.finished_at)))));
      if (!runs.executions.length) executions.append(h("tr", {}, h("td", { colspan: "6", class: "empty" }, "No executions yet.")));
    } catch (error) {
      say.fail(error);
    }
    if (!closed) timer = setTimeout(load, 5000);
  }

  load();
  return () => { closed = true; clearTimeout(timer); };
}

export function mountExecution(app, container, executionId) {
  const say = notice();
  const head = h("div", { class: "job-header" });
  const graph = h("div", { class: "step-graph", id: "step-graph", role: "list", "aria-label": "steps by dependency" });
  let follow = null;
  let timer = null;
  let closed = false;

  container.append(h("p", {}, h("a", { href: "#/workflows" }, "← Workflows")), head, say,
    h("section", { class: "card" }, h("h2", {}, "Steps"), graph));

  async function load() {
    try {
      const steps = await app.baton.request("GET", `/executions/${executionId}/steps`);
      if (closed) return;
      fill(head,
        h("h1", {}, "Execution ", h("code", {}, executionId)),
        h("p", {}, "Workflow ", h("code", {}, steps.workflow_id), " ", statusBadge(steps.status), " ",
          h("a", { href: `#/jobs/${executionId}` }, "its job and timeline")));
      fill(graph, ...columns(steps.steps).map((column, depth) => h("div", { class: "step-column" },
        h("h3", {}, depth === 0 ? "Start" : `Then (${depth})`),
        column.map((step) => h("div", { class: "step", role: "listitem", dataset: { step: step.name, status: step.status } },
          h("div", { class: "step-name" }, h("strong", {}, step.name), " ", statusBadge(step.status)),
          h("div", { class: "muted" }, `${step.type} · attempt ${step.attempt}`),
          step.after.length ? h("div", { class: "muted" }, `after ${step.after.join(", ")}`) : null,
          step.progress ? progressBar(step.progress.percentage, `progress of step ${step.name}`) : null,
          step.error ? h("div", { class: "error-line" }, step.error) : null,
          step.skip_reason ? h("div", { class: "muted" }, `skipped: ${step.skip_reason}`) : null)))));
    } catch (error) {
      say.fail(error);
    }
  }

  function scheduleLoad() {
    if (timer || closed) return;
    timer = setTimeout(() => { timer = null; load(); }, 200);
  }

  load().then(() => {
    if (closed) return;
    follow = app.baton.followWorkflow(executionId, scheduleLoad);
    if (follow && follow.done && typeof follow.done.catch === "function") follow.done.catch(() => {});
  });
  return () => { closed = true; clearTimeout(timer); if (follow) follow.close(); };
}

/** Steps grouped by depth: a step sits one column right of the deepest step it waits for. */
export function columns(steps) {
  const byName = new Map(steps.map((step) => [step.name, step]));
  const depth = new Map();
  const depthOf = (step, trail = new Set()) => {
    if (depth.has(step.name)) return depth.get(step.name);
    if (trail.has(step.name)) return 0;  // a cycle cannot be stored; stay safe anyway
    trail.add(step.name);
    const parents = (step.after || []).map((name) => byName.get(name)).filter(Boolean);
    const value = parents.length ? 1 + Math.max(...parents.map((p) => depthOf(p, trail))) : 0;
    depth.set(step.name, value);
    return value;
  };
  const grouped = [];
  for (const step of steps) {
    const d = depthOf(step);
    (grouped[d] ||= []).push(step);
  }
  return grouped.filter(Boolean);
}
