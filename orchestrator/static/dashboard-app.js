// The dashboard's shell: the key, the one Baton client, the connection indicator, hash routing to the
// views, and the actions every view shares (submit, cancel, retry). Every call to the server goes
// through the Baton client.

import { Baton } from "/static/baton.js";
import { TERMINAL, describeError, fill, h, notice } from "/static/dashboard-dom.js";
import { forgetKey, keepKey, takeKey } from "/static/dashboard-key.js";
import { mountRuns } from "/static/dashboard-runs.js";
import { mountJob } from "/static/dashboard-job.js";
import { mountExecution, mountWorkflows } from "/static/dashboard-workflows.js";
import { mountQueues } from "/static/dashboard-queues.js";
import { mountDeadLetters } from "/static/dashboard-dead.js";
import { mountCharts } from "/static/dashboard-charts.js";

const NAV = [
  { hash: "#/runs", label: "Runs", tenant: true },
  { hash: "#/workflows", label: "Workflows", tenant: true },
  { hash: "#/queues", label: "Queues" },
  { hash: "#/dead-letters", label: "Dead letters" },
  { hash: "#/charts", label: "Charts" },
];

const STATE_TEXT = {
  connecting: "connecting…", open: "live", reconnecting: "reconnecting…", polling: "polling", closed: "offline",
};

/** What reached the page, for tests and the watch benchmark: the seqs of every event per job, and the jobs
 * an event said had ended, the connection's states. */
const counters = { events: 0, snapshots: 0, seqs: new Map(), ended: new Set(), states: [] };
window.batonDashboard = counters;

class Dashboard {
  constructor(root) {
    this.root = root;
    this.baton = null;
    this.role = null;
    this.submitted = new Map();  // job_id -> {type, created_at}: rows get their type before the list says it
    this.listeners = new Set();
    this.unmount = null;
    this.watchAll = null;
    this.knownServices = null;
  }

  async start() {
    if (!this.listening) {
      // A #token= typed into the address bar of an open page changes only the fragment: sign in with it.
      window.addEventListener("hashchange", () => {
        if (location.hash.startsWith("#token=")) {
          this.stop();
          this.start();
        } else if (this.baton && this.role) {
          this.route();
        }
      });
      this.listening = true;
    }
    const key = takeKey();
    if (!key) {
      this.askForKey();
      return;
    }
    this.baton = new Baton({ token: key });
    this.role = await this.whoAmI();
    if (!this.role) return;
    this.renderShell();
    if (this.role === "tenant") {
      this.watchAll = this.baton.watchAll((message) => this.dispatch(message));
    }
    this.route();
  }

  /** "tenant" or "admin", as GET /whoami says; null on a refused key or a service token (no view is theirs). */
  async whoAmI() {
    let problem;
    try {
      const { role } = await this.baton.whoami();
      if (role === "tenant" || role === "admin") return role;
      forgetKey();
      problem = "That is a service token: sign in with a tenant's key or the admin key.";
    } catch (error) {
      if (error.status === 401) forgetKey();
      problem = error.status === 401 ? "That key was refused (401)." : describeError(error);
    }
    this.baton.close();
    this.baton = null;
    this.askForKey(problem);
    return null;
  }

  askForKey(problem, kind = "error") {
    const input = h("input", { id: "key-input", type: "password", autocomplete: "off", required: true });
    const say = notice();
    if (problem) say.say(problem, kind);
    fill(this.root, h("main", { class: "signin" },
      h("h1", {}, "Baton dashboard"),
      h("form", {
        class: "card", "aria-label": "sign in",
        onsubmit: (event) => {
          event.preventDefault();
          if (!input.value.trim()) return;
          keepKey(input.value.trim());
          this.start();
        },
      },
      h("label", { for: "key-input" }, "API key"), input,
      h("p", { class: "muted" }, "A tenant key shows that tenant's runs; the admin key shows every queue and dead letter. ",
        "The key is kept in this browser (localStorage) until you sign out. You can also open the page as ",
        h("code", {}, "/?token=KEY"), "."),
      say,
      h("button", { type: "submit", id: "key-submit" }, "Sign in"))));
    input.focus();
  }

  renderShell() {
    this.indicator = h("span", { class: "conn", id: "conn", role: "status", "aria-live": "polite", dataset: { state: "connecting" } }, "connecting…");
    this.nav = h("nav", { class: "tabs", "aria-label": "views" },
      NAV.filter((item) => !item.tenant || this.role === "tenant").map((item) => h("a", { href: item.hash, dataset: { view: item.hash } }, item.label)));
    this.main = h("main", { id: "view", tabindex: "-1" });
    fill(this.root,
      h("a", { class: "skip", href: "#view", onclick: (e) => { e.preventDefault(); this.main.focus(); } }, "Skip to content"),
      h("header", { class: "top" },
        h("span", { class: "brand" }, "Baton"),
        this.nav,
        h("span", { class: "spacer" }),
        h("span", { class: `role role-${this.role}`, id: "role" }, this.role === "admin" ? "admin key" : "tenant key"),
        this.role === "tenant" ? this.indicator : null,
        h("button", { type: "button", class: "ghost small", id: "sign-out", onclick: () => this.signOut() }, "Sign out")),
      this.main);
    this.baton.onState((state) => {
      counters.states.push(state);
      this.indicator.dataset.state = state;
      this.indicator.textContent = STATE_TEXT[state] || state;
    });
  }

  stop() {
    if (this.unmount) this.unmount();
    if (this.watchAll) this.watchAll.close();
    if (this.baton) this.baton.close();
    this.unmount = this.watchAll = this.baton = this.role = null;
  }

  signOut() {
    this.stop();
    forgetKey();
    this.askForKey("Signed out.", "info");
  }

  navigate(hash) {
    if (location.hash === hash) this.route();
    else location.hash = hash;
  }

  route() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || "");
    const fallback = this.role === "tenant" ? "runs" : "queues";
    const view = parts[0] || fallback;
    if (this.unmount) this.unmount();
    this.unmount = null;
    fill(this.main);
    for (const link of this.nav.querySelectorAll("a")) {
      const current = link.dataset.view === `#/${view}` || (view === "jobs" && link.dataset.view === "#/runs")
        || (view === "executions" && link.dataset.view === "#/workflows");
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const tenantOnly = ["runs", "jobs", "workflows", "executions"];
    if (tenantOnly.includes(view) && this.role !== "tenant") {
      this.main.append(h("h1", {}, "Not for the admin key"),
        h("p", {}, "Runs and workflows belong to a tenant: sign in with a tenant's key to see them."));
      return;
    }
    const mounts = {
      runs: () => mountRuns(this, this.main, params),
      jobs: () => (parts[1] ? mountJob(this, this.main, parts[1]) : mountRuns(this, this.main, params)),
      workflows: () => mountWorkflows(this, this.main),
      executions: () => (parts[1] ? mountExecution(this, this.main, parts[1]) : mountWorkflows(this, this.main)),
      queues: () => mountQueues(this, this.main),
      "dead-letters": () => mountDeadLetters(this, this.main, parts[1]),
      charts: () => mountCharts(this, this.main, params),
    };
    const mount = mounts[view];
    if (!mount) {
      this.main.append(h("h1", {}, "Not found"), h("p", {}, "No such view. ", h("a", { href: `#/${fallback}` }, "Go back.")));
      return;
    }
    this.unmount = mount();
    document.title = `Baton · ${view}`;
  }

  dispatch(message) {
    if (message.type === "job_snapshot") counters.snapshots += 1;
    else if (typeof message.seq === "number") {
      counters.events += 1;
      const jobId = message.global_task_id || message.job_id;
      if (!counters.seqs.has(jobId)) counters.seqs.set(jobId, []);
      counters.seqs.get(jobId).push(message.seq);
      if (TERMINAL.has(message.job_status)) counters.ended.add(jobId);
    }
    for (const listener of this.listeners) {
      try {
        listener(message);
      } catch (error) {
        // A view's bug must not stop the others from updating; it is still reported.
        setTimeout(() => { throw error; });
      }
    }
  }

  onJobMessage(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async services() {
    if (this.knownServices) return this.knownServices;
    try {
      const answer = await this.baton.request("GET", "/queues");
      const services = Array.isArray(answer) ? answer : answer.services || answer.queues || [];
      this.knownServices = services.map((s) => s.service);
    } catch {
      this.knownServices = [];
    }
    return this.knownServices;
  }

  /** Tells the views about jobs this page created, so that their rows show a type at once. */
  announce(jobId, known) {
    this.submitted.set(jobId, known);
    for (const listener of this.listeners) listener({ type: "job_submitted", job_id: jobId, job: known });
  }

  async submitJobs(type, payload, options, count) {
    if (count === 1) {
      const accepted = await this.baton.submit(type, payload, options);
      this.announce(accepted.job_id, { type, status: accepted.status, created_at: accepted.created_at });
      return [accepted.job_id];
    }
    const items = Array.from({ length: count }, () => ({
      type, payload, priority: options.priority, sessionId: options.sessionId,
    }));
    const answer = await this.baton.batch(items);
    const entries = answer.jobs;
    const ids = entries.filter((entry) => entry.job_id).map((entry) => entry.job_id);
    for (const entry of entries) if (entry.job_id) this.announce(entry.job_id, { type, status: entry.status });
    const failed = entries.filter((entry) => !entry.job_id);
    if (failed.length) throw new Error(`${failed.length} of ${count} refused: ${JSON.stringify(failed[0])}`);
    return ids;
  }

  async cancelJob(jobId, say) {
    try {
      await this.baton.cancel(jobId);
      say.say(`cancelled ${jobId}`, "ok");
    } catch (error) {
      say.say(describeError(error), "error");
    }
  }

  async retryJob(jobId, say, open = false) {
    try {
      const accepted = await this.baton.retry(jobId);
      this.announce(accepted.job_id, { status: accepted.status, created_at: accepted.created_at });
      say.say(`retried as ${accepted.job_id}`, "ok");
      if (open) this.navigate(`#/jobs/${accepted.job_id}`);
    } catch (error) {
      say.say(describeError(error), "error");
    }
  }
}

new Dashboard(document.getElementById("app")).start();
