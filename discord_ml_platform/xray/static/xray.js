// X-Ray pages: token handling, auto-refresh of the list, delete with confirmation, notebooks, and a
// cluster's Ray jobs and logs (fetched with the token: the server never puts them into a page).
// Data from the server is only ever written with textContent / setAttribute, never as HTML.
(function () {
  "use strict";
  const TOKEN_KEY = "xray-token";
  const body = document.body;
  const writesEnabled = body.dataset.writesEnabled === "true";
  const refreshMs = Math.max(2, parseFloat(body.dataset.refreshS || "10")) * 1000;

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  function authHeaders() { const t = token(); return t ? { "Authorization": "Bearer " + t } : {}; }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function money(v) {
    if (v === null || v === undefined) return "-";
    return "$" + Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function flash(message, isError) {
    const box = document.getElementById("flash");
    box.textContent = message;
    box.className = "flash" + (isError ? " error" : "");
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => box.classList.add("hidden"), 8000);
  }
  async function problem(response) {
    try { const data = await response.json(); return data.detail ? String(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : response.statusText; }
    catch (e) { return response.status + " " + response.statusText; }
  }
  function apiPath(backend, namespace, name) {
    return "/api/clusters/" + [backend, namespace, name].map(encodeURIComponent).join("/");
  }

  // --- token ---------------------------------------------------------------------------------
  function showWriter(authorized) {
    document.querySelectorAll(".writer-only").forEach((n) => n.classList.toggle("hidden", !authorized));
    const state = document.getElementById("auth-state");
    if (state) state.textContent = authorized ? "actions unlocked" : "read-only";
    const form = document.getElementById("token-form");
    if (form) form.classList.toggle("hidden", authorized);
    const out = document.getElementById("sign-out");
    if (out) out.classList.toggle("hidden", !authorized);
    body.dataset.authorized = authorized ? "true" : "false";
  }
  async function checkToken() {
    if (!writesEnabled || !token()) { showWriter(false); return false; }
    const response = await fetch("/api/session", { headers: authHeaders() });
    const data = await response.json();
    if (!data.authorized) sessionStorage.removeItem(TOKEN_KEY);
    showWriter(Boolean(data.authorized));
    return Boolean(data.authorized);
  }
  function setupToken() {
    const form = document.getElementById("token-form");
    if (form) form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = document.getElementById("token-input");
      sessionStorage.setItem(TOKEN_KEY, input.value);
      input.value = "";
      if (!(await checkToken())) { flash("That token was not accepted.", true); return; }
      document.getElementById("flash").classList.add("hidden");
      if (body.dataset.page === "cluster") { refreshNotebook(); loadDetails(); }
    });
    const out = document.getElementById("sign-out");
    if (out) out.addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showWriter(false);
      if (body.dataset.page === "cluster") { showNotebook(null); clearDetails(); }
    });
  }

  // --- delete ----------------------------------------------------------------------------------
  function confirmDelete(name, where) {
    const dialog = document.getElementById("confirm-dialog");
    document.getElementById("confirm-name").textContent = name;
    document.getElementById("confirm-where").textContent = where;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
      dialog.showModal();
    });
  }
  async function deleteCluster(backend, namespace, name) {
    if (!(await confirmDelete(name, namespace + " (" + backend + ")"))) return false;
    flash("Deleting " + name + "…", false);
    const response = await fetch(apiPath(backend, namespace, name), { method: "DELETE", headers: authHeaders() });
    if (!response.ok) { flash("Delete failed: " + (await problem(response)), true); return false; }
    flash("Deleted " + name + ".", false);
    return true;
  }
  function onDeleteClick(event) {
    const button = event.target.closest(".delete-button");
    if (!button) return;
    const holder = button.closest("[data-key]");
    const { backend, namespace, name } = holder.dataset;
    deleteCluster(backend, namespace, name).then((done) => {
      if (!done) return;
      if (body.dataset.page === "cluster") window.location.assign("/");
      else { holder.remove(); refreshList(); }
    });
  }

  // --- list ------------------------------------------------------------------------------------
  function link(cls, href, text) {
    const a = el("a", cls, text);
    a.setAttribute("href", href);
    a.setAttribute("target", "_blank");
    a.setAttribute("rel", "noopener noreferrer");
    return a;
  }
  function row(c, authorized) {
    const tr = el("tr");
    tr.dataset.key = c.key; tr.dataset.name = c.name; tr.dataset.namespace = c.namespace; tr.dataset.backend = c.backend;
    const name = el("td", "name");
    const detail = el("a", null, c.name); detail.setAttribute("href", c.detail_url);
    name.append(detail, el("div", "muted", c.namespace + " · " + c.backend));
    const owner = el("td", "owner", c.owner || "-"); owner.append(el("div", "muted", c.team || "-"));
    const status = el("td", "status");
    status.append(el("span", "badge status-" + String(c.status).toLowerCase(), c.status), el("div", "muted", c.phase));
    const cost = el("td", "num cost", money(c.cost_so_far_usd)); cost.append(el("div", "muted", money(c.hourly_price_usd) + "/h"));
    const links = el("td", "links");
    if (c.dagster_run_url) links.append(link("run-link", c.dagster_run_url, "Dagster run"));
    if (c.dashboard_url) links.append(link("dashboard-link", c.dashboard_url, "Ray dashboard"));
    const actions = el("td", "actions");
    const del = el("button", "danger delete-button writer-only" + (authorized ? "" : " hidden"), "Delete");
    del.setAttribute("type", "button");
    actions.append(del);
    tr.append(name, owner, el("td", "machine", c.machine), status, el("td", "age", c.age),
      el("td", "expires" + (c.expired ? " expired" : ""), c.expires), cost, links, actions);
    return tr;
  }
  async function refreshList() {
    const response = await fetch("/api/clusters" + window.location.search);
    if (!response.ok) { flash("Refresh failed: " + (await problem(response)), true); return; }
    const data = await response.json();
    const authorized = body.dataset.authorized === "true";
    const rows = document.getElementById("cluster-rows");
    rows.replaceChildren(...data.clusters.map((c) => row(c, authorized)));
    document.getElementById("empty").classList.toggle("hidden", data.clusters.length > 0);
    document.getElementById("total-clusters").textContent = data.totals.clusters;
    document.getElementById("total-gpus").textContent = data.totals.gpus;
    document.getElementById("total-cost-hour").textContent = money(data.totals.cost_per_hour_usd);
    document.getElementById("total-cost-so-far").textContent = money(data.totals.cost_so_far_usd);
    const updated = document.getElementById("updated-at");
    updated.setAttribute("datetime", data.generated_at);
    updated.textContent = data.generated_at.substring(11, 19) + " UTC";
  }
  function setupList() {
    const filters = document.getElementById("filters");
    filters.querySelectorAll("select").forEach((select) => select.addEventListener("change", () => {
      // Empty selects are left out so the URL stays short and clean.
      filters.querySelectorAll("select").forEach((s) => { s.disabled = !s.value; });
      filters.submit();
    }));
    setInterval(() => { if (!document.hidden) refreshList().catch(() => {}); }, refreshMs);
  }

  // --- notebook ----------------------------------------------------------------------------------
  function clusterData() { return document.getElementById("cluster").dataset; }
  function showNotebook(view) {
    const box = document.getElementById("notebook");
    const anchor = document.getElementById("notebook-link");
    if (!view) { box.classList.add("hidden"); return; }
    box.classList.remove("hidden");
    document.getElementById("notebook-state").textContent = view.state;
    if (view.url) { anchor.setAttribute("href", view.url); anchor.classList.remove("hidden"); }
    else { anchor.setAttribute("href", "#"); anchor.classList.add("hidden"); }
  }
  async function refreshNotebook() {
    if (body.dataset.authorized !== "true") return null;  // notebooks are for token holders only
    const d = clusterData();
    const response = await fetch(apiPath(d.backend, d.namespace, d.name) + "/notebook", { headers: authHeaders() });
    if (response.status === 404) { showNotebook(null); return null; }
    if (!response.ok) return null;
    const view = await response.json();
    showNotebook(view);
    return view;
  }
  async function launchNotebook() {
    const d = clusterData();
    flash("Starting a notebook on " + d.name + "…", false);
    const response = await fetch(apiPath(d.backend, d.namespace, d.name) + "/notebook",
      { method: "POST", headers: authHeaders() });
    if (!response.ok) { flash("Notebook failed: " + (await problem(response)), true); return; }
    let view = await response.json();
    showNotebook(view);
    for (let i = 0; i < 120 && view && view.state !== "running" && view.state !== "stopped"; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      view = await refreshNotebook();
    }
    if (view && view.state === "running") flash("Notebook ready.", false);
  }
  async function stopNotebook() {
    const d = clusterData();
    const response = await fetch(apiPath(d.backend, d.namespace, d.name) + "/notebook",
      { method: "DELETE", headers: authHeaders() });
    if (!response.ok) { flash("Stop failed: " + (await problem(response)), true); return; }
    showNotebook(null);
    flash("Notebook stopped.", false);
  }
  function setupCluster() {
    document.getElementById("notebook-launch").addEventListener("click", () => launchNotebook());
    document.getElementById("notebook-stop").addEventListener("click", () => stopNotebook());
  }

  // --- jobs and logs (token holders only) ----------------------------------------------------------
  function toggle(id, shown) { document.getElementById(id).classList.toggle("hidden", !shown); }
  function clearDetails() {
    document.getElementById("job-rows").replaceChildren();
    document.getElementById("logs").textContent = "";
    document.getElementById("logs-source").textContent = "";
    ["jobs", "jobs-empty", "logs", "logs-empty"].forEach((id) => toggle(id, false));
    ["jobs-locked", "logs-locked"].forEach((id) => toggle(id, true));
  }
  function showJobs(data) {
    const jobs = data.jobs || [];
    document.getElementById("job-rows").replaceChildren(...jobs.map((j) => {
      const tr = el("tr");
      const entry = el("td"); entry.append(el("code", null, j.entrypoint || ""));
      tr.append(el("td", null, j.submission_id || j.job_id || ""), el("td", null, j.status), entry,
        el("td", null, j.start_time || ""), el("td", null, j.end_time || ""), el("td", null, j.message || ""));
      return tr;
    }));
    document.getElementById("jobs-empty").textContent = "No Ray jobs" + (data.error ? " (" + data.error + ")" : "") + ".";
    toggle("jobs-locked", false); toggle("jobs", jobs.length > 0); toggle("jobs-empty", jobs.length === 0);
  }
  function showLogs(data) {
    const lines = data.lines || [];
    document.getElementById("logs-source").textContent = data.source ? "(" + data.source + ")" : "";
    document.getElementById("logs").textContent = lines.join("\n");
    document.getElementById("logs-empty").textContent = data.error || "No log lines.";
    toggle("logs-locked", false); toggle("logs", lines.length > 0); toggle("logs-empty", lines.length === 0);
  }
  async function loadDetails() {
    if (body.dataset.authorized !== "true") { clearDetails(); return; }
    const d = clusterData();
    const base = apiPath(d.backend, d.namespace, d.name);
    const lines = document.getElementById("logs-section").dataset.lines || "200";
    const [jobs, logs] = await Promise.all([
      fetch(base + "/jobs", { headers: authHeaders() }),
      fetch(base + "/logs?lines=" + encodeURIComponent(lines), { headers: authHeaders() }),
    ]);
    if (jobs.ok) showJobs(await jobs.json()); else flash("Ray jobs: " + (await problem(jobs)), true);
    if (logs.ok) showLogs(await logs.json()); else flash("Logs: " + (await problem(logs)), true);
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupToken();
    document.addEventListener("click", onDeleteClick);
    if (body.dataset.page === "list") setupList();
    if (body.dataset.page === "cluster") setupCluster();
    checkToken().then(() => { if (body.dataset.page === "cluster") { refreshNotebook(); loadDetails(); } });
  });
})();
