/* What every library page shares: calls to the API with the session's CSRF token, thumbnails loaded a
   few at a time, and announcements for screen readers. Pages add their own scripts. */
(function () {
  "use strict";

  // Thumbnails load when they come into view, at most this many at once: a page of hundreds never sends
  // hundreds of requests together (which trips rate limits and starves the first visible ones).
  const MAX_THUMBNAIL_REQUESTS = 4;

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /* One API call with the session cookie; resolves to {ok, status, data} (data: parsed JSON or null). */
  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf(), "Accept": "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return { ok: false, status: 0, data: { detail: "the server could not be reached", code: "network_error" } };
    }
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try { data = await response.json(); } catch (error) { data = null; }
    }
    return { ok: response.ok, status: response.status, data };
  }

  /* What a failed call's answer says went wrong: the problem's detail, else its status. */
  function problem(answer) {
    return (answer.data && answer.data.detail) || `the server answered ${answer.status}`;
  }

  function announce(text) {
    const region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(() => { region.textContent = text; }, 50);
  }

  const waiting = [];
  let loading = 0;

  function loadNext() {
    while (loading < MAX_THUMBNAIL_REQUESTS && waiting.length) {
      const img = waiting.shift();
      const src = img.dataset.src;
      if (!src) continue;
      loading += 1;
      const done = () => {
        loading -= 1;
        img.classList.remove("is-loading");
        loadNext();
      };
      img.addEventListener("load", done, { once: true });
      img.addEventListener("error", () => { img.classList.add("is-broken"); done(); }, { once: true });
      delete img.dataset.src;
      img.src = src;
    }
  }

  const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      waiting.push(entry.target);
    }
    loadNext();
  }, { rootMargin: "200px" }) : null;

  /* Start loading the thumbnails (img[data-src]) under `root` as they come into view. */
  function watchThumbnails(root) {
    for (const img of (root || document).querySelectorAll("img[data-src]")) {
      img.classList.add("is-loading");
      if (observer) observer.observe(img); else waiting.push(img);
    }
    loadNext();
  }

  /* A byte count as the pages' templates write it (Jinja's filesizeformat: decimal units). */
  function formatBytes(bytes) {
    if (bytes < 1000) return `${bytes} Bytes`;
    const units = ["kB", "MB", "GB", "TB"];
    let value = bytes / 1000;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return `${value.toFixed(1)} ${units[unit]}`;
  }

  /* Quick-choice buttons (`data-reason-for` = a field's id, `data-reason` = the text) fill their field. */
  function fillFromChoice(event) {
    const choice = event.target instanceof Element ? event.target.closest("button[data-reason-for]") : null;
    if (!choice) return;
    const field = document.getElementById(choice.dataset.reasonFor);
    if (!field) return;
    field.value = choice.dataset.reason;
    field.removeAttribute("aria-invalid");
    field.focus();
  }

  window.MediaHub = { api, csrf, problem, announce, watchThumbnails, formatBytes, MAX_THUMBNAIL_REQUESTS };
  document.addEventListener("click", fillFromChoice);
  document.addEventListener("DOMContentLoaded", () => watchThumbnails(document));
})();
