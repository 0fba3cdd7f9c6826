/* Duplicate review: keep one, keep all, or resolve every exact group, through the API's duplicate endpoints.
   Each item's result is shown where it is; a group where something failed stays, saying what failed. */
(function () {
  "use strict";

  const root = document.querySelector("[data-duplicates]");
  if (!root) return;
  const API = root.dataset.api;
  const BATCH = 50; // exact groups resolved per request by "resolve all"

  const problem = MediaHub.problem;

  function plural(count, one, many) {
    return `${count} ${count === 1 ? one : many}`;
  }

  function sectionOf(key) {
    for (const section of root.querySelectorAll("[data-group]")) {
      if (section.dataset.group === key) return section;
    }
    return null;
  }

  function memberOf(section, id) {
    return section.querySelector(`.dup-member[data-id="${id}"]`);
  }

  function remaining(section) {
    return [...section.querySelectorAll(".dup-member:not(.is-deleted)")];
  }

  function say(section, text, failed) {
    const line = section.querySelector("[data-group-result]");
    line.textContent = text;
    line.classList.toggle("failed", Boolean(failed));
    MediaHub.announce(text);
  }

  function busy(section, on) {
    for (const button of section.querySelectorAll(".group-actions button")) button.disabled = on;
    section.setAttribute("aria-busy", on ? "true" : "false");
  }

  function done(section, text) {
    section.classList.add("is-done");
    for (const control of section.querySelectorAll("button, input")) control.disabled = true;
    say(section, text, false);
  }

  /* Mark each item deleted or failed (with why); the failures. */
  function showResults(section, results) {
    const failures = [];
    for (const result of results) {
      const member = memberOf(section, result.id);
      if (!member) continue;
      const line = member.querySelector("[data-result]");
      if (result.ok) {
        member.classList.add("is-deleted");
        member.querySelector('input[type="radio"]').disabled = true;
        line.textContent = "Deleted";
        line.className = "result done";
      } else {
        line.textContent = `Not deleted: ${result.error ? result.error.message : "unknown error"}`;
        line.className = "result failed";
        failures.push(result);
      }
    }
    return failures;
  }

  function reportGroup(section, kept, results) {
    const failures = showResults(section, results);
    const deleted = results.length - failures.length;
    if (failures.length) {
      say(section, `${plural(deleted, "item", "items")} deleted; ${failures.length} could not be: `
        + "see each item. The group stays for another try.", true);
    } else {
      done(section, `Kept item ${kept.join(", ")}; deleted ${plural(deleted, "item", "items")}.`);
    }
  }

  async function resolve(section) {
    const chosen = section.querySelector('input[type="radio"]:checked');
    if (!chosen) {
      say(section, "Choose the item to keep first.", true);
      return;
    }
    const keep = Number(chosen.value);
    const others = remaining(section).map((member) => Number(member.dataset.id)).filter((id) => id !== keep);
    if (!others.length) {
      done(section, `Only item ${keep} is left.`);
      return;
    }
    busy(section, true);
    const answer = await MediaHub.api("POST", `${API}/resolve`, { group: section.dataset.group, keep, delete: others });
    busy(section, false);
    if (!answer.ok) {
      say(section, `Nothing was deleted: ${problem(answer)}`, true);
      return;
    }
    reportGroup(section, answer.data.kept, answer.data.results);
  }

  async function keepAll(section) {
    const ids = remaining(section).map((member) => Number(member.dataset.id));
    busy(section, true);
    const answer = await MediaHub.api("POST", `${API}/keep-all`, { group: section.dataset.group, ids });
    busy(section, false);
    if (!answer.ok) {
      say(section, `Not recorded: ${problem(answer)}`, true);
      return;
    }
    done(section, `Kept all ${plural(ids.length, "item", "items")}: `
      + "this group is not listed again unless a newer copy joins it.");
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    const section = button.closest("[data-group]");
    if (button.dataset.action === "resolve") resolve(section);
    else if (button.dataset.action === "keep-all") keepAll(section);
  });

  // Resolve all exact groups: the count is asked for when the button is pressed, confirmed in a dialog,
  // then the groups are resolved BATCH at a time, each shown group updated in place.
  const start = root.querySelector("[data-resolve-all]");
  const dialog = root.querySelector("[data-resolve-all-dialog]");
  if (!start || !dialog) return;
  const confirm = dialog.querySelector("[data-resolve-all-confirm]");
  const progress = root.querySelector("[data-resolve-all-progress]");

  function tell(text, failed) {
    progress.textContent = text;
    progress.classList.toggle("failed", Boolean(failed));
  }

  start.addEventListener("click", async () => {
    start.disabled = true;
    const answer = await MediaHub.api("GET", `${API}/summary`);
    start.disabled = false;
    if (!answer.ok) {
      tell(`Could not count the exact copies: ${problem(answer)}`, true);
      return;
    }
    const { groups, deletes } = answer.data;
    if (!groups) {
      tell("There are no exact copies left to resolve.", false);
      return;
    }
    dialog.querySelector("[data-resolve-all-text]").textContent =
      `This deletes ${plural(deletes, "item", "items")} in ${plural(groups, "group", "groups")} of exact copies. `
      + "Each group keeps its primary, else its oldest approved item, else its oldest. "
      + "Deleted items cannot be restored.";
    confirm.textContent = `Delete ${plural(deletes, "item", "items")}`;
    dialog.showModal();
  });

  confirm.addEventListener("click", async () => {
    dialog.close();
    start.disabled = true;
    let after = null;
    let groups = 0;
    let deleted = 0;
    let failed = 0;
    tell("Resolving…", false);
    do {
      const answer = await MediaHub.api("POST", `${API}/resolve-all-exact`, { after, limit: BATCH });
      if (!answer.ok) {
        tell(`Stopped after ${plural(groups, "group", "groups")}: ${problem(answer)}`, true);
        start.disabled = false;
        return;
      }
      for (const group of answer.data.groups) {
        groups += 1;
        const ok = group.results.filter((result) => result.ok).length;
        deleted += ok;
        failed += group.results.length - ok;
        const section = sectionOf(group.group);
        if (section) reportGroup(section, group.kept, group.results);
      }
      after = answer.data.next;
      tell(`Resolved ${plural(groups, "group", "groups")}, deleted ${plural(deleted, "item", "items")}…`, false);
    } while (after);
    const text = `Done: ${plural(groups, "group", "groups")} resolved, ${plural(deleted, "item", "items")} deleted`
      + (failed ? `; ${failed} could not be deleted (see the groups below, or reload).` : ".");
    tell(text, failed > 0);
    MediaHub.announce(text);
    start.disabled = false;
  });
})();
