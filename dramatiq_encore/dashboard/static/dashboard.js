// encore dashboard: auto-refresh. Data is written with textContent only, never as HTML.
"use strict";

(function () {
  const PERIOD_MS = 2000;
  const FINISHED = ["succeeded", "failed", "cancelled", "lost"];
  const KEY = "encore-dashboard-autorefresh";

  function autorefreshOn() {
    const box = document.getElementById("autorefresh");
    return box === null || box.checked;
  }

  function setupToggle() {
    const box = document.getElementById("autorefresh");
    if (box === null) return;
    box.checked = localStorage.getItem(KEY) !== "off";
    box.addEventListener("change", function () { localStorage.setItem(KEY, box.checked ? "on" : "off"); });
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function when(value) {
    if (!value) return "—";
    const d = new Date(value);
    return d.toISOString().replace("T", " ").replace("Z", " UTC");
  }

  function seconds(s) {
    if (s < 1) return s > 0 ? Math.round(s * 1000) + " ms" : "0 s";
    const num = function (v) { return v < 100 ? String(Number(v.toPrecision(3))) : Math.round(v).toLocaleString("en"); };
    if (s < 60) return num(s) + " s";
    if (s < 3600) return num(s / 60) + " min";
    if (s < 48 * 3600) return num(s / 3600) + " h";
    return num(s / 86400) + " d";
  }

  function row(item) {
    const tr = document.createElement("tr");
    const idCell = cell("", "id");
    const link = document.createElement("a");
    link.href = "/workflows/" + encodeURIComponent(item.workflow_id);
    link.textContent = item.workflow_id;
    idCell.appendChild(link);
    tr.appendChild(idCell);
    tr.appendChild(cell(item.type));
    const statusCell = cell("");
    const badge = document.createElement("span");
    badge.className = "badge s-" + item.status.replace(/[^a-z]/g, "");
    badge.textContent = item.status;
    statusCell.appendChild(badge);
    tr.appendChild(statusCell);
    tr.appendChild(cell(when(item.started_at), "time"));
    tr.appendChild(cell(when(item.finished_at), "time"));
    const end = item.finished_at ? new Date(item.finished_at) : new Date();
    tr.appendChild(cell(seconds(Math.max(0, (end - new Date(item.started_at)) / 1000)), "num"));
    return tr;
  }

  function refreshList(table) {
    const url = table.dataset.refresh;
    setInterval(async function () {
      if (!autorefreshOn() || document.hidden) return;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" } });
        if (!response.ok) return;
        const page = await response.json();
        const body = table.tBodies[0];
        if (page.items.length > 0) {
          body.replaceChildren(...page.items.map(row));
        } else {
          const empty = document.createElement("tr");
          empty.className = "empty";
          const td = cell("No workflows.");
          td.colSpan = 6;
          empty.appendChild(td);
          body.replaceChildren(empty);
        }
        const asOf = document.getElementById("as-of");
        if (asOf) asOf.textContent = "as of " + when(new Date().toISOString());
      } catch (err) { /* the next tick tries again */ }
    }, PERIOD_MS);
  }

  // A reload would lose what the user is typing (the cancel reason): wait until the field is empty.
  function typing() {
    const fields = Array.from(document.querySelectorAll("input[type=text], input[type=password]"));
    return fields.some(function (f) { return f === document.activeElement || f.value !== ""; });
  }

  function refreshWorkflow(root) {
    const url = root.dataset.describe;
    let last = null;
    let ticks = 0;
    setInterval(async function () {
      if (!autorefreshOn() || document.hidden || typing()) return;
      ticks += 1;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" } });
        if (!response.ok) return;
        const text = await response.text();
        const status = JSON.parse(text).status;
        const running = FINISHED.indexOf(status) < 0;
        const changed = last === null ? status !== root.dataset.status : text !== last;
        // Reload when anything changed, and every 10 s while it runs (its bars grow).
        if (changed || (running && ticks % 5 === 0)) {
          window.location.replace(window.location.pathname);
          return;
        }
        last = text;
      } catch (err) { /* the next tick tries again */ }
    }, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupToggle();
    const table = document.getElementById("workflows");
    if (table !== null && table.dataset.refresh) refreshList(table);
    const root = document.getElementById("workflow");
    if (root !== null && root.dataset.describe) refreshWorkflow(root);
  });
})();
