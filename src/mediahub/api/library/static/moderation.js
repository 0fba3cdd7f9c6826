/* The moderation queue: one item at a time, decided from the keyboard, each decision a call to the API.

   The page carries the queue's first page (the API's JSON); more is fetched from the queue endpoint as the
   moderator nears the end of what is loaded. Decided items stay in the list, marked, so `k` goes back to
   them; the counter counts what is still waiting on the server. */
(function () {
  "use strict";

  const { api, announce, watchThumbnails, formatBytes } = window.MediaHub;
  const root = document.getElementById("queue");
  const data = document.getElementById("queue-data");
  if (!root || !data) return;

  const PAGE = 50; // entries per fetch
  const FETCH_AHEAD = 5; // fetch the next page when this close to the end of what is loaded
  const DISPLAY_WIDTH = 1600; // the widest rendition the preview loads: never a large original
  const BASE_FORMATS = ["jpeg", "png"];
  const WAITING = ["pending", "flagged"]; // statuses that keep an item in the queue whatever its reports

  const first = JSON.parse(data.textContent);
  const state = {
    items: first.items,
    index: 0,
    serverTotal: first.total, // the queue's size at the last fetch
    leftAtFetch: 0, // `left` at the last fetch
    left: 0, // loaded items a decision took out of the queue
    outcomes: new Map(), // id -> {status, left}
    fetching: null,
    exhausted: first.items.length >= first.total,
  };

  const $ = (id) => document.getElementById(id);

  function remaining() {
    return Math.max(0, state.serverTotal - (state.left - state.leftAtFetch));
  }

  function showRemaining() {
    $("remaining-count").textContent = String(remaining());
  }

  function when(iso) {
    return `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  function baseFormat(item) {
    return BASE_FORMATS.find((fmt) => Object.values(item.variants).some((byFormat) => byFormat[fmt])) || null;
  }

  /* A still of the item no wider than DISPLAY_WIDTH: from its srcset (whole-picture sizes), else (a video's
     poster) the widest rendition of the item's shape. */
  function still(item) {
    const fmt = baseFormat(item);
    const srcset = item.srcset && fmt ? item.srcset[fmt] : null;
    if (srcset) {
      const candidates = srcset.split(", ").map((candidate) => {
        const [url, width] = candidate.split(" ");
        return { url, width: parseInt(width, 10) };
      });
      const fitting = candidates.filter((c) => c.width <= DISPLAY_WIDTH);
      return { url: (fitting.length ? fitting[fitting.length - 1] : candidates[0]).url, srcset };
    }
    const shape = item.width && item.height ? item.width / item.height : null;
    const stills = Object.values(item.variants).map((byFormat) => byFormat[fmt]).filter((v) => v
      && v.width <= DISPLAY_WIDTH && (!shape || Math.abs(v.width / v.height - shape) < 0.02));
    stills.sort((a, b) => a.width - b.width);
    return stills.length ? { url: stills[stills.length - 1].url, srcset: null } : null;
  }

  /* The smallest rendition (the square thumbnail, where there is one), for the list. */
  function thumbnail(item) {
    const fmt = baseFormat(item);
    const renditions = Object.values(item.variants).map((byFormat) => byFormat[fmt]).filter(Boolean);
    renditions.sort((a, b) => a.width * a.height - b.width * b.height);
    return renditions.length ? renditions[0].url : null;
  }

  function libraryUrl(path) {
    return `${root.dataset.libraryUrl}${path}`;
  }

  function entityUrl(item) {
    const url = libraryUrl(`/${item.entity_type}/${encodeURIComponent(item.entity_id)}`);
    return item.parent_id ? `${url}?parent_id=${encodeURIComponent(item.parent_id)}` : url;
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function statusOf(item) {
    const outcome = state.outcomes.get(item.id);
    return outcome ? outcome.status : item.moderation_status;
  }

  function waiting(item) {
    const outcome = state.outcomes.get(item.id);
    return !outcome || !outcome.left;
  }

  /* ---- Rendering ---- */

  function renderPreview(item) {
    const preview = $("preview");
    preview.replaceChildren();
    const picture = still(item);
    if (item.media_type === "video") {
      const web = (item.variants.web || {}).mp4;
      const video = element("video", { controls: "", preload: "metadata",
        "aria-label": item.alt_text || `Video ${item.id}` });
      if (picture) video.poster = picture.url;
      video.src = web ? web.url : item.url || "";
      preview.append(video);
    } else if (picture) {
      const img = element("img", { src: picture.url, alt: item.alt_text || "" });
      if (picture.srcset) {
        img.srcset = picture.srcset;
        img.sizes = "(max-width: 900px) 100vw, 60vw";
      }
      if (item.width && item.height) {
        img.width = item.width;
        img.height = item.height;
      }
      preview.append(img);
    } else {
      preview.append(element("p", {}, "Still being processed: no picture to show yet."));
    }
  }

  function fact(list, name, value) {
    if (value === null || value === undefined || value === "") return;
    list.append(element("dt", {}, name), element("dd", {}, value));
  }

  function renderFacts(item) {
    const facts = $("current-facts");
    facts.replaceChildren();
    fact(facts, "Uploaded", `${when(item.created_at)}${item.uploaded_by ? ` by ${item.uploaded_by}` : ""}`);
    fact(facts, "Type", `${item.media_type} · ${item.content_type}`);
    if (item.width && item.height) fact(facts, "Dimensions", `${item.width}×${item.height}`);
    fact(facts, "Original", formatBytes(item.byte_size));
    fact(facts, "Alt text", item.alt_text);
    fact(facts, "Caption", item.caption);
    fact(facts, "Tags", item.tags.join(", "));
    fact(facts, "Reason", item.moderation_reason);
  }

  function renderReports(item) {
    const list = $("reports-list");
    list.replaceChildren();
    const open = item.open_reports;
    const shown = item.reports.length;
    let count = open === 0 ? "No open reports." : `${open} open report${open === 1 ? "" : "s"}`;
    if (open > shown) count += `; the oldest ${shown} are listed`;
    $("reports-count").textContent = open === 0 ? count : `${count}.`;
    for (const report of item.reports) {
      const entry = element("li");
      entry.append(element("strong", {}, report.reporter), ` · ${when(report.created_at)}: `,
        element("span", {}, report.reason || "no reason given"));
      list.append(entry);
    }
    $("dismiss").disabled = open === 0 || state.outcomes.has(item.id);
  }

  function renderCurrent() {
    const item = state.items[state.index];
    if (!item) return;
    const status = statusOf(item);
    const kind = item.media_type === "video" ? "Video" : "Picture";
    const where = `${item.entity_type} ${item.entity_id} · ${item.entity_field}`;
    $("current-heading").textContent = `${kind} ${item.id} · ${where}`;
    $("current-position").textContent = `${state.index + 1} of ${state.items.length} loaded`;
    const badge = $("current-status");
    badge.textContent = status;
    badge.className = `badge ${status}`;
    const outcome = state.outcomes.get(item.id);
    $("current-outcome").textContent = outcome ? (outcome.left ? "Decided" : "Reports dismissed; still waiting") : "";
    renderPreview(item);
    renderFacts(item);
    renderReports(item);
    $("open-item").href = libraryUrl(`/media/${item.id}`);
    $("open-entity").href = entityUrl(item);
    $("previous").disabled = state.index === 0;
    $("next").disabled = state.index >= state.items.length - 1 && state.exhausted;
    closeReject();
    setStatus("");
    renderStrip();
  }

  function stripEntry(item, position) {
    const status = statusOf(item);
    const button = element("button", { type: "button", "data-index": String(position) });
    if (position === state.index) button.setAttribute("aria-current", "true");
    const thumb = thumbnail(item);
    if (thumb) button.append(element("img", { "data-src": thumb, alt: "", width: "64", height: "64" }));
    const label = element("span", { class: "strip-label" });
    label.append(element("span", {}, `#${item.id}`), element("span", { class: `badge ${status}` }, status));
    if (item.open_reports) {
      label.append(element("span", {}, `${item.open_reports} report${item.open_reports === 1 ? "" : "s"}`));
    }
    button.append(label);
    const entry = element("li", waiting(item) ? {} : { class: "is-decided" });
    entry.append(button);
    return entry;
  }

  function renderStrip() {
    const strip = $("strip");
    strip.replaceChildren(...state.items.map(stripEntry));
    watchThumbnails(strip);
    const current = strip.querySelector('[aria-current="true"]');
    if (current) current.scrollIntoView({ block: "nearest", inline: "nearest" });
    $("strip-more").textContent = state.exhausted ? "" : "More are loaded as you go.";
  }

  function showEmpty() {
    $("workspace").hidden = true;
    $("empty").hidden = false;
    $("empty-heading").focus();
  }

  function setStatus(text, failed) {
    const status = $("decide-status");
    status.textContent = text;
    status.classList.toggle("failed", Boolean(failed));
  }

  /* ---- Loading more ---- */

  async function fetchMore() {
    if (state.exhausted) return;
    if (state.fetching) return state.fetching;
    const offset = state.items.length - state.left; // loaded items still in the queue come first in it
    state.fetching = (async () => {
      const answer = await api("GET", `${root.dataset.queueUrl}?offset=${offset}&limit=${PAGE}`);
      state.fetching = null;
      if (!answer.ok) {
        setStatus(`Could not load more: ${MediaHub.problem(answer)}.`, true);
        return;
      }
      const known = new Set(state.items.map((item) => item.id));
      const fresh = answer.data.items.filter((item) => !known.has(item.id));
      state.items.push(...fresh);
      state.serverTotal = answer.data.total;
      state.leftAtFetch = state.left;
      state.exhausted = answer.data.items.length < PAGE;
      showRemaining();
      renderStrip();
    })();
    return state.fetching;
  }

  function nearTheEnd() {
    if (state.index >= state.items.length - FETCH_AHEAD) fetchMore();
  }

  /* ---- Moving ---- */

  function go(index) {
    if (index < 0 || index >= state.items.length) return;
    state.index = index;
    renderCurrent();
    nearTheEnd();
  }

  async function next() {
    if (state.index >= state.items.length - 1) await fetchMore();
    go(state.index + 1);
  }

  /* After a decision: the next item still waiting, after this one, else before it; none: the empty state. */
  async function nextWaiting() {
    for (;;) {
      const after = state.items.findIndex((item, i) => i > state.index && waiting(item));
      if (after !== -1) return go(after);
      if (state.exhausted) break;
      const before = state.items.length;
      await fetchMore();
      if (state.items.length === before) break;
    }
    const earlier = state.items.findIndex((item) => waiting(item));
    if (earlier !== -1 && remaining() > 0) return go(earlier);
    showEmpty();
    announce("Nothing left to moderate.");
  }

  /* ---- Deciding ---- */

  function record(item, answer) {
    const left = !WAITING.includes(answer.moderation_status);
    const before = state.outcomes.get(item.id);
    if (left && !(before && before.left)) state.left += 1;
    if (!left && before && before.left) state.left -= 1;
    state.outcomes.set(item.id, { status: answer.moderation_status, left });
    item.moderation_reason = answer.moderation_reason;
    showRemaining();
    return left;
  }

  async function decide(path, body, done) {
    const item = state.items[state.index];
    if (!item) return;
    setStatus("Saving…");
    const answer = await api("POST", `${root.dataset.mediaUrl}/${item.id}/${path}`, body);
    if (!answer.ok) {
      setStatus(`Not done: ${MediaHub.problem(answer)}.`, true);
      return;
    }
    const left = record(item, answer.data);
    if (path === "reports/dismiss") item.open_reports = 0;
    announce(`${done} item ${item.id}. ${remaining()} left.`);
    if (left) {
      await nextWaiting();
    } else {
      renderCurrent();
      setStatus(`${done}; the item still waits for a decision.`);
    }
  }

  function approve() {
    decide("moderation", { status: "approved" }, "Approved");
  }

  function openReject() {
    $("reject-box").hidden = false;
    $("reject").setAttribute("aria-expanded", "true");
    $("reject-reason").focus();
  }

  function closeReject() {
    $("reject-box").hidden = true;
    $("reject").setAttribute("aria-expanded", "false");
    $("reject-error").hidden = true;
    $("reject-reason").value = "";
    $("reject-reason").removeAttribute("aria-invalid");
  }

  function reject() {
    const field = $("reject-reason");
    const reason = field.value.trim();
    if (!reason) {
      const error = $("reject-error");
      error.textContent = "Give a reason: the uploader sees it.";
      error.hidden = false;
      field.setAttribute("aria-invalid", "true");
      field.focus();
      return;
    }
    $("current-heading").focus();
    decide("moderation", { status: "rejected", reason }, "Rejected");
  }

  function dismiss() {
    if (!$("dismiss").disabled) decide("reports/dismiss", undefined, "Dismissed the reports of");
  }

  /* ---- Keys ---- */

  function typing(target) {
    return target instanceof Element && target.closest("input, textarea, select, [contenteditable]") !== null;
  }

  const keys = $("keys-dialog");

  function showKeys() {
    if (!keys.open) keys.showModal();
  }

  const SHORTCUTS = {
    a: approve,
    r: openReject,
    d: dismiss,
    j: next,
    k: () => go(state.index - 1),
    "?": showKeys,
  };

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (keys.open) return;
    const action = SHORTCUTS[event.key];
    if (!action) return;
    if (event.key !== "?" && $("workspace").hidden) return;
    event.preventDefault();
    action();
  });

  $("reject-reason").addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      closeReject();
      $("reject").focus();
    }
  });
  $("decide-form").addEventListener("submit", (event) => {
    event.preventDefault();
    reject();
  });
  $("approve").addEventListener("click", approve);
  $("reject").addEventListener("click", openReject);
  $("reject-cancel").addEventListener("click", () => { closeReject(); $("reject").focus(); });
  $("dismiss").addEventListener("click", dismiss);
  $("next").addEventListener("click", next);
  $("previous").addEventListener("click", () => go(state.index - 1));
  $("strip").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-index]");
    if (button) go(Number(button.dataset.index));
  });
  $("show-keys").addEventListener("click", showKeys);
  $("close-keys").addEventListener("click", () => keys.close());

  if (state.items.length) {
    renderCurrent();
    nearTheEnd();
  } else {  // the queue emptied between its count and its page
    $("workspace").hidden = true;
    $("empty").hidden = false;
  }
})();
