/* The item page's actions, each a call to the public API (window.MediaHub.api sends the session's CSRF
   token): text, focal point, moderation, reports, delete; and copy buttons. */
(function () {
  "use strict";

  const { api, announce, formatBytes } = window.MediaHub;
  const root = document.getElementById("item");
  if (!root) return;
  const itemUrl = root.dataset.api;

  const STEP = 0.01; // arrow keys move the focal point by 1 % of the picture, Shift by 10 %
  const BIG_STEP = 0.1;
  const POLL_MS = 800; // how often a re-render is checked on
  const POLL_LIMIT_MS = 120000; // then the page says so and stops asking

  const problemText = MediaHub.problem;

  function setStatus(element, text, state) {
    if (!element) return;
    element.textContent = text;
    element.classList.toggle("failed", state === "failed");
    element.classList.toggle("done", state === "done");
  }

  function showStatus(status, reason) {
    const badge = document.getElementById("status-badge");
    badge.textContent = status;
    badge.className = `badge ${status}`;
    document.getElementById("status-text").textContent = status;
    document.getElementById("reason-text").textContent = reason || "—";
  }

  /* ---- Alt text, caption, tags ---- */

  const textForm = document.getElementById("text-form");
  const FIELDS = { alt_text: "alt-text", caption: "caption", tags: "tags" };

  function clearFieldErrors() {
    for (const id of Object.values(FIELDS)) {
      const error = document.getElementById(`${id}-error`);
      error.hidden = true;
      error.textContent = "";
      document.getElementById(id).removeAttribute("aria-invalid");
    }
  }

  /* Field errors of a 422 problem (`errors[].loc` = ["body", field, ...]) next to their fields; true if any. */
  function showFieldErrors(data) {
    let first = null;
    for (const error of (data && data.errors) || []) {
      const id = FIELDS[(error.loc || [])[1]];
      if (!id) continue;
      const message = document.getElementById(`${id}-error`);
      message.textContent = error.msg;
      message.hidden = false;
      const field = document.getElementById(id);
      field.setAttribute("aria-invalid", "true");
      first = first || field;
    }
    if (first) first.focus();
    return first !== null;
  }

  if (textForm) {
    textForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const status = document.getElementById("text-status");
      clearFieldErrors();
      const value = (id) => document.getElementById(id).value;
      const body = {
        alt_text: value("alt-text").trim() || null,
        caption: value("caption").trim() || null,
        tags: value("tags"), // comma-separated text: the API splits it
      };
      const before = document.getElementById("status-badge").textContent;
      setStatus(status, "Saving…");
      const answer = await api("PATCH", itemUrl, body);
      if (!answer.ok) {
        const inPlace = answer.status === 422 && showFieldErrors(answer.data);
        const why = inPlace ? "see the fields marked" : problemText(answer);
        setStatus(status, `Not saved: ${why}.`, "failed");
        return;
      }
      const item = answer.data;
      document.getElementById("tags").value = item.tags.join(", ");
      document.getElementById("display-image")?.setAttribute("alt", item.alt_text || "");
      showStatus(item.moderation_status, item.moderation_reason);
      const waits = before === "approved" && item.moderation_status === "pending"
        ? " It waits for a moderator before it is public again." : "";
      setStatus(status, `Saved.${waits}`, "done");
      announce(`Saved.${waits}`);
    });
  }

  /* ---- Focal point ---- */

  const picker = document.getElementById("focal-picker");
  const marker = document.getElementById("focal-marker");
  const point = picker ? { x: Number(picker.dataset.x), y: Number(picker.dataset.y) } : null;

  function placeMarker() {
    if (!marker) return;
    marker.style.left = `${point.x * 100}%`;
    marker.style.top = `${point.y * 100}%`;
  }

  function clamp(value) {
    return Math.min(1, Math.max(0, Math.round(value * 1000) / 1000));
  }

  function describe(p) {
    return `x ${p.x.toFixed(2)}, y ${p.y.toFixed(2)}`;
  }

  async function waitForRender() {
    const deadline = Date.now() + POLL_LIMIT_MS;
    while (Date.now() < deadline) {
      await new Promise((resolve) => window.setTimeout(resolve, POLL_MS));
      const answer = await api("GET", itemUrl);
      if (!answer.ok) return null;
      if (!answer.data.pending.includes("reprocess")) return answer.data;
    }
    return null;
  }

  function showRenditions(item) {
    for (const img of document.querySelectorAll("img[data-crop]")) {
      const variant = (item.variants[img.dataset.crop] || {})[img.dataset.format];
      if (variant) img.src = variant.url;
    }
    for (const row of document.querySelectorAll("tr[data-rendition]")) {
      const [name, format] = row.dataset.rendition.split("/");
      const variant = (item.variants[name] || {})[format];
      if (!variant) continue;
      row.querySelector("a").href = variant.url;
      row.querySelector('[data-cell="dimensions"]').textContent = `${variant.width}×${variant.height}`;
      row.querySelector('[data-cell="size"]').textContent = formatBytes(variant.size);
      const field = document.getElementById(`url-${name}-${format}`);
      if (field) field.value = variant.url;
    }
  }

  async function saveFocalPoint() {
    const status = document.getElementById("focal-status");
    setStatus(status, `Saving the focal point (${describe(point)})…`);
    const answer = await api("PATCH", itemUrl, { focal_point: { x: point.x, y: point.y } });
    if (!answer.ok) {
      setStatus(status, `Not saved: ${problemText(answer)}.`, "failed");
      return;
    }
    marker.classList.remove("is-moved");
    const saved = answer.data.focal_point;
    document.getElementById("focal-value").textContent = `${describe(saved)} (${saved.source})`;
    if (!answer.data.pending.includes("reprocess")) {
      setStatus(status, "Saved; the crops were centred there already.", "done");
      return;
    }
    setStatus(status, "Saved. Making the crops again…");
    const item = await waitForRender();
    if (!item) {
      setStatus(status, "Saved, but the new crops are not ready yet; reload the page later.", "failed");
      return;
    }
    showRenditions(item);
    setStatus(status, "Saved: the crops are centred on the new focal point.", "done");
    announce("The crops are centred on the new focal point.");
  }

  if (picker && picker.classList.contains("editable")) {
    placeMarker();
    picker.addEventListener("click", (event) => {
      const box = picker.getBoundingClientRect();
      point.x = clamp((event.clientX - box.left) / box.width);
      point.y = clamp((event.clientY - box.top) / box.height);
      placeMarker();
      saveFocalPoint();
    });
    picker.addEventListener("keydown", (event) => {
      const step = event.shiftKey ? BIG_STEP : STEP;
      const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
      if (event.key === "Enter") {
        event.preventDefault();
        saveFocalPoint();
        return;
      }
      const move = moves[event.key];
      if (!move) return;
      event.preventDefault();
      point.x = clamp(point.x + move[0]);
      point.y = clamp(point.y + move[1]);
      placeMarker();
      marker.classList.add("is-moved");
      setStatus(document.getElementById("focal-status"), `Marker at ${describe(point)}; press Enter to save.`);
    });
  } else if (picker && marker) {
    placeMarker();
  }

  /* ---- Moderation ---- */

  function closeOpenReports(outcome) {
    for (const cell of document.querySelectorAll("[data-open-report]")) {
      cell.textContent = outcome;
      cell.removeAttribute("data-open-report");
    }
    document.getElementById("dismiss-reports")?.remove();
  }

  const moderateForm = document.getElementById("moderate-form");
  if (moderateForm) {
    const status = document.getElementById("moderate-status");
    const reasonField = document.getElementById("moderation-reason");
    moderateForm.addEventListener("submit", (event) => event.preventDefault());
    for (const button of moderateForm.querySelectorAll("[data-decision]")) {
      button.addEventListener("click", async () => {
        const decision = button.dataset.decision;
        const reason = reasonField.value.trim();
        if (decision === "rejected" && !reason) {
          setStatus(status, "Give a reason to reject: the uploader sees it.", "failed");
          reasonField.focus();
          return;
        }
        const answer = await api("POST", `${itemUrl}/moderation`, { status: decision, reason: reason || null });
        if (!answer.ok) {
          setStatus(status, `Not done: ${problemText(answer)}.`, "failed");
          return;
        }
        showStatus(answer.data.moderation_status, answer.data.moderation_reason);
        closeOpenReports(answer.data.moderation_status);
        setStatus(status, `Done: ${answer.data.moderation_status}.`, "done");
        announce(`The item is ${answer.data.moderation_status}.`);
      });
    }
    document.getElementById("dismiss-reports")?.addEventListener("click", async () => {
      const answer = await api("POST", `${itemUrl}/reports/dismiss`);
      if (!answer.ok) {
        setStatus(status, `Not done: ${problemText(answer)}.`, "failed");
        return;
      }
      showStatus(answer.data.moderation_status, answer.data.moderation_reason);
      closeOpenReports("dismissed");
      setStatus(status, "The reports are dismissed.", "done");
      announce("The reports are dismissed.");
    });
  }

  const reportForm = document.getElementById("report-form");
  if (reportForm) {
    reportForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const status = document.getElementById("report-status");
      const reason = document.getElementById("report-reason").value.trim();
      const answer = await api("POST", `${itemUrl}/flag`, { reason: reason || null });
      if (!answer.ok) {
        setStatus(status, `Not sent: ${problemText(answer)}.`, "failed");
        return;
      }
      reportForm.querySelector("button[type=submit]").disabled = true;
      setStatus(status, "Reported. The moderators will look at it.", "done");
      announce("Reported. The moderators will look at it.");
    });
  }

  /* ---- Delete ---- */

  const deleteStart = document.getElementById("delete-start");
  if (deleteStart) {
    const confirmBox = document.getElementById("delete-confirm");
    deleteStart.addEventListener("click", () => {
      confirmBox.hidden = false;
      deleteStart.hidden = true;
      document.getElementById("delete-no").focus();
    });
    document.getElementById("delete-no").addEventListener("click", () => {
      confirmBox.hidden = true;
      deleteStart.hidden = false;
      deleteStart.focus();
    });
    document.getElementById("delete-yes").addEventListener("click", async () => {
      const status = document.getElementById("delete-status");
      const answer = await api("DELETE", itemUrl);
      if (!answer.ok) {
        setStatus(status, `Not deleted: ${problemText(answer)}.`, "failed");
        return;
      }
      setStatus(status, "Deleted. Back to the entity…", "done");
      window.location.assign(root.dataset.entityUrl);
    });
  }

  /* ---- Copy buttons: the clipboard where the browser allows it, else the text selected for Ctrl+C ---- */

  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(field.value);
        const label = button.firstChild;
        label.textContent = "Copied";
        window.setTimeout(() => { label.textContent = "Copy"; }, 2000);
        announce("Copied to the clipboard.");
      } catch (error) {
        field.focus();
        field.select();
        announce("Selected: press Ctrl+C (or Cmd+C) to copy.");
      }
    });
  }
})();
