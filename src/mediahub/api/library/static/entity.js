/* An entity's page: more tiles a page at a time, selection and bulk actions, gallery order, uploads.
   Every change is a call to the public API with the session (MediaHub.api), which decides it. */
(function () {
  "use strict";

  const root = document.getElementById("entity");
  if (!root) return;
  const config = root.dataset;
  const apiRoot = config.apiRoot || "";
  const manage = config.manage === "true";
  const BATCH_MAX = 100; // ids per batch request (the API refuses more)
  const TUS_VERSION = "1.0.0";
  const DONE_TEXT = { approve: "Approved", reject: "Rejected", delete: "Deleted", tag: "Tags added",
    set_primary: "Now the primary" };

  function entityQuery(extra) {
    const query = new URLSearchParams(extra || {});
    if (config.parentId) query.set("parent_id", config.parentId);
    const text = query.toString();
    return text ? `?${text}` : "";
  }

  function plural(count, word) {
    return `${count} ${word}${count === 1 ? "" : "s"}`;
  }

  function tileOf(id) {
    return document.getElementById(`tile-${id}`);
  }

  function setCount(field, change) {
    const count = document.querySelector(`section.field[data-field="${field}"] .count`);
    if (!count) return;
    const total = Math.max(0, Number(count.dataset.count) + change);
    count.dataset.count = String(total);
    count.textContent = plural(total, "item");
  }

  function tilesFrom(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    const holder = template.content.querySelector(".more-tiles");
    return { tiles: holder ? Array.from(holder.querySelectorAll(":scope > .tile")) : [],
             next: holder ? holder.dataset.next : "" };
  }

  async function fetchTiles(query) {
    const filter = new URLSearchParams(entityQuery(query));
    for (const tag of JSON.parse(config.tags || "[]")) filter.append("tag", tag);  // the page's tag filter
    const response = await fetch(`${config.tilesUrl}?${filter}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`the tiles could not be loaded (${response.status})`);
    return tilesFrom(await response.text());
  }

  /* ---------------------------------------------------------------- Show more */

  async function showMore(button) {
    const field = button.dataset.field;
    const grid = document.getElementById(`grid-${field}`);
    button.disabled = true;
    try {
      const { tiles, next } = await fetchTiles({ field, after: button.dataset.next, per_page: config.perPage });
      for (const tile of tiles) grid.append(tile);
      window.MediaHub.watchThumbnails(grid);
      if (next) {
        button.dataset.next = next;
        button.disabled = false;
      } else {
        button.remove();
      }
      if (tiles.length) tiles[0].querySelector("a").focus();
      window.MediaHub.announce(`${plural(tiles.length, "more item")} shown`);
    } catch (error) {
      button.disabled = false;
      window.MediaHub.announce(error.message);
    }
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest(".show-more");
    if (button) showMore(button);
  });

  /* ---------------------------------------------------------------- Selection */

  const bulk = document.getElementById("bulk");
  let lastChecked = null;

  function checkboxes() {
    return Array.from(root.querySelectorAll(".tile:not(.is-deleted) input.select"));
  }

  function selectedIds() {
    return checkboxes().filter((box) => box.checked).map((box) => Number(box.value));
  }

  function setChecked(box, checked) {
    box.checked = checked;
    box.closest(".tile").classList.toggle("is-selected", checked);
  }

  function selectionChanged() {
    if (!bulk) return;
    const count = selectedIds().length;
    document.getElementById("selected-count").textContent = `${count} selected`;
    document.getElementById("select-none").disabled = count === 0;
    for (const button of bulk.querySelectorAll("button[data-action]")) {
      button.disabled = button.dataset.action === "set_primary" ? count !== 1 : count === 0;
    }
  }

  if (bulk) {
    root.addEventListener("click", (event) => {
      const box = event.target.closest("input.select");
      if (!box) return;
      // Shift-click: every tile between the last one clicked and this one takes this one's state.
      if (event.shiftKey && lastChecked && lastChecked !== box && lastChecked.isConnected) {
        const boxes = checkboxes();
        const [from, to] = [boxes.indexOf(lastChecked), boxes.indexOf(box)].sort((a, b) => a - b);
        if (from >= 0) for (const other of boxes.slice(from, to + 1)) setChecked(other, box.checked);
      }
      setChecked(box, box.checked);
      lastChecked = box;
      selectionChanged();
    });
    document.getElementById("select-all").addEventListener("click", () => {
      for (const box of checkboxes()) setChecked(box, true);
      selectionChanged();
    });
    document.getElementById("select-none").addEventListener("click", () => {
      for (const box of checkboxes()) setChecked(box, false);
      selectionChanged();
    });
    bulk.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) startAction(button.dataset.action);
    });
    selectionChanged();
  }

  /* ---------------------------------------------------------------- Bulk actions */

  function ask(dialogId, count) {
    const dialog = document.getElementById(dialogId);
    for (const span of dialog.querySelectorAll(".dialog-count")) span.textContent = plural(count, "item");
    for (const field of dialog.querySelectorAll("input, textarea")) field.value = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  async function startAction(action) {
    const ids = selectedIds();
    if (!ids.length) return;
    const extra = {};
    if (action === "reject") {
      if (!(await ask("reject-dialog", ids.length))) return;
      extra.reason = document.getElementById("reject-reason").value.trim();
    } else if (action === "tag") {
      if (!(await ask("tag-dialog", ids.length))) return;
      extra.tags = document.getElementById("tag-input").value.split(",").map((tag) => tag.trim()).filter(Boolean);
      if (!extra.tags.length) return;
    } else if (action === "delete") {
      if (!(await ask("delete-dialog", ids.length))) return;
    }
    await runAction(action, ids, extra);
  }

  function showResult(tile, ok, text) {
    const result = tile.querySelector(".result");
    result.textContent = text;
    result.classList.toggle("done", ok);
    result.classList.toggle("failed", !ok);
  }

  function setStatus(tile, status) {
    tile.dataset.status = status;
    const badge = tile.querySelector(".badge.status");
    badge.className = `badge status ${status}`;
    badge.textContent = status;
  }

  function setPrimary(tile) {
    const grid = tile.closest(".grid");
    for (const other of grid.querySelectorAll(".tile.is-primary")) {
      other.classList.remove("is-primary");
      other.querySelector(".badge.primary")?.remove();
      for (const button of other.querySelectorAll(".move button")) button.disabled = false;
    }
    tile.classList.add("is-primary");
    const badge = document.createElement("span");
    badge.className = "badge primary";
    badge.textContent = "primary";
    tile.querySelector(".meta").prepend(badge);
    for (const button of tile.querySelectorAll(".move button")) button.disabled = true;
    grid.prepend(tile); // the primary is always first
  }

  function markDeleted(tile) {
    tile.classList.add("is-deleted");
    tile.classList.remove("is-selected");
    const box = tile.querySelector("input.select");
    box.checked = false;
    box.disabled = true;
    for (const button of tile.querySelectorAll(".move button")) button.remove();
    setCount(tile.dataset.field, -1);
  }

  function applyResult(action, result) {
    const tile = tileOf(result.id);
    if (!tile) return;
    if (!result.ok) { // the failed ones stay selected, for another try
      showResult(tile, false, result.error ? result.error.message : "failed");
      return;
    }
    setChecked(tile.querySelector("input.select"), false);
    showResult(tile, true, DONE_TEXT[action]);
    if (action === "delete") {
      markDeleted(tile);
      return;
    }
    const item = result.item;
    if (item) {
      setStatus(tile, item.moderation_status);
      if (item.is_primary && !tile.classList.contains("is-primary")) setPrimary(tile);
      if (action === "tag") showResult(tile, true, `Tags: ${item.tags.join(", ")}`);
    }
  }

  async function runAction(action, ids, extra) {
    let done = 0;
    let failed = 0;
    for (let start = 0; start < ids.length; start += BATCH_MAX) {
      const chunk = ids.slice(start, start + BATCH_MAX);
      const answer = await window.MediaHub.api("POST", `${apiRoot}/v1/media/batch`, { action, ids: chunk, ...extra });
      if (!answer.ok) { // nothing was done: every tile keeps its selection
        const why = MediaHub.problem(answer);
        for (const id of chunk) { const tile = tileOf(id); if (tile) showResult(tile, false, why); }
        failed += chunk.length;
        continue;
      }
      for (const result of answer.data.results) {
        applyResult(action, result);
        if (result.ok) done += 1; else failed += 1;
      }
    }
    selectionChanged();
    window.MediaHub.announce(`${DONE_TEXT[action]}: ${done}${failed ? `; ${failed} failed and stay selected` : ""}`);
  }

  /* ---------------------------------------------------------------- Gallery order */

  function orderedTiles(grid) {
    return Array.from(grid.querySelectorAll(":scope > .tile:not(.is-deleted)"));
  }

  async function saveOrder(grid) {
    const primary = grid.querySelector(":scope > .tile.is-primary");
    if (primary && grid.firstElementChild !== primary) grid.prepend(primary);
    const ids = orderedTiles(grid).map((tile) => Number(tile.dataset.id));
    // The loaded tiles only: the API moves them among the places they hold and leaves the rest be.
    const url = `${apiRoot}/v1/media/entity/${encodeURIComponent(config.entityType)}/` +
      `${encodeURIComponent(config.entityId)}/order${entityQuery()}`;
    const answer = await window.MediaHub.api("PUT", url, { field: grid.dataset.field, ids, partial: true });
    if (!answer.ok) {
      const why = MediaHub.problem(answer);
      window.MediaHub.announce(`The order was not saved: ${why}`);
      grid.closest("section").querySelector(".order-status").textContent = `The order was not saved: ${why}`;
      return false;
    }
    grid.closest("section").querySelector(".order-status").textContent = "Order saved";
    return true;
  }

  function moveTile(button) {
    const tile = button.closest(".tile");
    const grid = tile.closest(".grid");
    const earlier = Number(button.dataset.move) < 0;
    const tiles = orderedTiles(grid);
    const index = tiles.indexOf(tile);
    const target = tiles[index + (earlier ? -1 : 1)];
    if (!target || target.classList.contains("is-primary")) {
      window.MediaHub.announce(`Item ${tile.dataset.id} is already ${earlier ? "first" : "last"}` +
        (target ? " after the primary" : ""));
      return;
    }
    if (earlier) target.before(tile); else target.after(tile);
    button.focus();
    window.MediaHub.announce(`Item ${tile.dataset.id} moved to position ${orderedTiles(grid).indexOf(tile) + 1}`);
    saveOrder(grid);
  }

  if (manage) {
    for (const grid of root.querySelectorAll(".grid.sortable")) {
      const status = document.createElement("p");
      status.className = "order-status muted";
      status.setAttribute("role", "status");
      grid.after(status);
      if (window.Sortable) {
        window.Sortable.create(grid, {
          animation: 150, draggable: ".tile", filter: ".is-primary, .is-deleted, input, button",
          preventOnFilter: false, onEnd: (event) => { if (event.oldIndex !== event.newIndex) saveOrder(grid); },
        });
      }
    }
    root.addEventListener("click", (event) => {
      const button = event.target.closest(".move button");
      if (button) moveTile(button);
    });
  }

  /* ---------------------------------------------------------------- Uploads */

  function thumbnailOf(item) {
    const renditions = (item.variants || {}).thumbnail || {};
    const rendition = renditions.jpeg || Object.values(renditions)[0];
    return rendition ? rendition.url : null;
  }

  function picture(src, alt) {
    const img = document.createElement("img");
    img.src = src;
    img.alt = alt;
    img.width = 64;
    img.height = 64;
    return img;
  }

  function detailLink(id, text) {
    const link = document.createElement("a");
    link.href = `${document.body.dataset.library}/media/${id}`;
    link.textContent = text;
    return link;
  }

  async function addTile(item) {
    const grid = document.getElementById(`grid-${item.entity_field}`);
    if (!grid || tileOf(item.id)) return;
    try {
      const { tiles } = await fetchTiles({ field: item.entity_field, media_id: item.id });
      for (const tile of tiles) {
        if (tile.classList.contains("is-primary")) setPrimary(tile); else grid.append(tile);
      }
      grid.closest("section").querySelector(".empty")?.remove();
      window.MediaHub.watchThumbnails(grid);
      setCount(item.entity_field, tiles.length);
    } catch (error) {
      window.MediaHub.announce(`${error.message}: reload the page to see the new item`);
    }
  }

  async function outcome(uploadUrl) {
    // The upload's outcome: the item (200), its refusal (a problem), or 202 while it is being ingested.
    for (;;) {
      let response;
      try {
        response = await fetch(uploadUrl, { credentials: "same-origin",
          headers: { "Tus-Resumable": TUS_VERSION, "Accept": "application/json" } });
      } catch (error) {
        return { ok: false, problem: { detail: "the server could not be reached" } };
      }
      let body = null;
      try { body = await response.json(); } catch (error) { body = null; }
      if (response.status === 202) { await new Promise((wait) => window.setTimeout(wait, 1000)); continue; }
      return response.ok ? { ok: true, item: body } : { ok: false, problem: body || { detail: `error ${response.status}` } };
    }
  }

  function problemOf(error) {
    // tus-js-client names the answer's body in its message (the request is aborted by then, its body gone).
    const message = (error && error.message) || "";
    const body = /response text: (\{.*\}), request id/.exec(message);
    if (body) {
      try { return JSON.parse(body[1]); } catch (ignored) { /* not JSON */ }
    }
    return { detail: message || "the upload failed" };
  }

  function setupUploads() {
    const dropzone = document.getElementById("dropzone");
    const input = document.getElementById("file-input");
    const list = document.getElementById("uploads");
    const fieldSelect = document.getElementById("upload-field");
    if (!dropzone || !window.Uppy) return;
    const rows = new Map(); // Uppy file id -> its row in the list
    const target = { entity_type: config.entityType, entity_id: config.entityId };
    if (config.parentId) target.parent_id = config.parentId;
    const uppy = new window.Uppy.Uppy({ autoProceed: true, allowMultipleUploadBatches: true });
    uppy.use(window.Uppy.Tus, {
      endpoint: `${apiRoot}/v1/media/tus/`,
      headers: { "X-CSRF-Token": window.MediaHub.csrf() },
      chunkSize: 8 * 1024 * 1024, // each chunk a request: an interrupted upload resumes from the last one
      retryDelays: [0, 1000, 3000, 5000],
      removeFingerprintOnSuccess: true,
      allowedMetaFields: [...Object.keys(target), "entity_field", "filename"],
    });

    function row(file) {
      return rows.get(file.id);
    }

    function finish(file, ok, state, ...extra) {
      const entry = row(file);
      if (!entry) return;
      entry.progress.value = 100;
      entry.progress.hidden = true;
      entry.state.textContent = state;
      entry.state.classList.toggle("done", ok);
      entry.state.classList.toggle("failed", !ok);
      for (const node of extra) entry.details.append(node);
      entry.li.classList.add(ok ? "is-stored" : "is-refused");
      uppy.removeFile(file.id);
      window.MediaHub.announce(`${file.name}: ${state}`);
    }

    async function showProblem(file, problem) {
      if (problem && problem.code === "duplicate") {
        const existing = problem.duplicate_id;
        const nodes = [];
        let text = "Duplicate: this picture is already stored here";
        if (existing) {
          text = `Duplicate of item ${existing}`;
          const answer = await window.MediaHub.api("GET", `${apiRoot}/v1/media/${existing}`);
          const figure = document.createElement("span");
          figure.className = "existing";
          if (answer.ok && thumbnailOf(answer.data)) {
            figure.append(picture(thumbnailOf(answer.data), answer.data.alt_text || `Item ${existing}, already stored`));
          }
          figure.append(detailLink(existing, `See item ${existing}`));
          nodes.push(figure);
        }
        finish(file, false, text, ...nodes);
        return;
      }
      finish(file, false, `Refused: ${(problem && problem.detail) || "the upload failed"}`);
    }

    function add(files) {
      const field = fieldSelect.value;
      for (const data of files) {
        let id;
        try {
          id = uppy.addFile({ name: data.name, type: data.type, data, source: "Local",
            meta: { ...target, entity_field: field, filename: data.name } });
        } catch (error) {
          window.MediaHub.announce(`${data.name}: ${error.message}`);
          continue;
        }
        const li = document.createElement("li");
        li.className = "upload";
        const preview = data.type.startsWith("image/") ? picture(URL.createObjectURL(data), `${data.name} (your file)`) : null;
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = data.name;
        const progress = document.createElement("progress");
        progress.max = 100;
        progress.value = 0;
        progress.setAttribute("aria-label", `Uploading ${data.name}`);
        const state = document.createElement("span");
        state.className = "state";
        state.setAttribute("role", "status");
        state.textContent = `Uploading to ${field}`;
        const details = document.createElement("span");
        details.className = "details";
        li.append(...(preview ? [preview] : []), name, progress, state, details);
        list.prepend(li);
        rows.set(id, { li, progress, state, details });
      }
    }

    uppy.on("upload-progress", (file, progress) => {
      const entry = file && row(file);
      if (entry && progress.bytesTotal) entry.progress.value = Math.round(100 * progress.bytesUploaded / progress.bytesTotal);
    });
    uppy.on("upload-success", async (file, response) => {
      row(file).state.textContent = "Checking…";
      const result = await outcome(response.uploadURL);
      if (!result.ok) { await showProblem(file, result.problem); return; }
      const item = result.item;
      const nodes = [detailLink(item.id, `Item ${item.id}`)];
      const thumbnail = thumbnailOf(item);
      if (thumbnail) nodes.unshift(picture(thumbnail, item.alt_text || `Item ${item.id}`));
      finish(file, true, `Stored (${item.moderation_status})`, ...nodes);
      addTile(item);
    });
    uppy.on("upload-error", async (file, error) => {
      if (!file || !row(file)) return;
      const current = uppy.getFile(file.id) || file;
      const uploadUrl = current.tus && current.tus.uploadUrl;
      // The outcome the server recorded for an upload it received whole says why it was refused.
      const recorded = uploadUrl ? await outcome(uploadUrl) : null;
      await showProblem(file, recorded && !recorded.ok && recorded.problem.code ? recorded.problem : problemOf(error));
    });

    input.addEventListener("change", () => { add(Array.from(input.files)); input.value = ""; });
    dropzone.addEventListener("dragover", (event) => { event.preventDefault(); dropzone.classList.add("is-over"); });
    dropzone.addEventListener("dragleave", () => dropzone.classList.remove("is-over"));
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      dropzone.classList.remove("is-over");
      if (event.dataTransfer && event.dataTransfer.files.length) add(Array.from(event.dataTransfer.files));
    });
  }

  if (manage) setupUploads();
})();
