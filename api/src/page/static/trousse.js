// trousse's page: the copy buttons (no external script; CSP script-src 'self').
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy)?.textContent ?? "";
  try {
    await navigator.clipboard.writeText(text);
    const label = button.textContent;
    button.textContent = button.dataset.done;
    setTimeout(() => { button.textContent = label; }, 2000);
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents(document.getElementById(button.dataset.copy));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
});

// The package search: the API's answers as a list of "Add" buttons.
const search = document.querySelector(".search");
if (search) {
  search.hidden = false;
  const input = search.querySelector("#search");
  const list = search.querySelector("#found");
  const count = search.querySelector("#found-count");
  const packages = document.getElementById("packages");
  let timer;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = input.value.trim();
      list.replaceChildren();
      if (!q) { count.textContent = ""; return; }
      const answer = await fetch(`${search.dataset.api}?q=${encodeURIComponent(q)}&limit=10`, { credentials: "same-origin" });
      if (!answer.ok) return;
      const { packages: found } = await answer.json();
      count.textContent = `${found.length} ${search.dataset.results}`;
      for (const p of found) {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = `${search.dataset.add} ${p.name}`;
        button.addEventListener("click", () => {
          const lines = packages.value.split("\n").map((l) => l.trim()).filter(Boolean);
          if (!lines.includes(p.name)) lines.push(p.name);
          packages.value = lines.join("\n") + "\n";
          input.focus();
        });
        const versions = document.createElement("span");
        versions.textContent = p.versions.join(", ");
        const summary = document.createElement("span");
        summary.className = "summary";
        summary.textContent = p.summary ?? "";
        item.append(button, versions, summary);
        list.append(item);
      }
    }, 200);
  });
}

// The live build log: the build's server-sent events, as lines.
const log = document.getElementById("log");
if (log) {
  const status = document.getElementById("status");
  const words = JSON.parse(log.dataset.words);
  const source = new EventSource(log.dataset.events);
  const line = (text) => {
    if (log.firstElementChild && !log.dataset.started) { log.replaceChildren(); log.dataset.started = "1"; }
    const item = document.createElement("li");
    item.textContent = text;
    log.append(item);
    log.scrollTop = log.scrollHeight;
  };
  source.addEventListener("status", (e) => { const d = JSON.parse(e.data); status.textContent = words[d.status] ?? d.status; });
  source.addEventListener("stage_started", (e) => { const d = JSON.parse(e.data); line(`${d.stage}: ${d.total}`); });
  source.addEventListener("progress", (e) => { const d = JSON.parse(e.data); line(`  ${d.item}${d.cached ? " (cache)" : ""}`); });
  source.addEventListener("stage_finished", (e) => { const d = JSON.parse(e.data); line(`${d.stage}: ${d.seconds.toFixed(2)} s`); });
  source.addEventListener("done", (e) => {
    const d = JSON.parse(e.data);
    status.textContent = words[d.status] ?? d.status;
    status.className = `status ${d.status}`;
    if (d.error) { const error = document.getElementById("error"); error.textContent = d.error; error.hidden = false; }
    line(d.status);
    source.close();
    // a page shown while building is shown again once built: its versions and actions
    if (["queued", "building"].includes(log.dataset.initial)) setTimeout(() => location.reload(), 1500);
  });
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) return; };
}
