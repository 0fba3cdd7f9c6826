"""Hostile text in every place a page shows it, in a real browser: it is shown as text, no script of it runs, and
the pages' Content-Security-Policy is never violated (the pages need no inline script, style element or handler)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.conftest import api, mint, no_script_errors, sign_in, unique, upload_file
from tests.reliability.harness import ServerProcess

# Markup that runs a script wherever it is put into a page as HTML (or ends the script element it is in).
HOSTILE = '</script><script>window.hacked=1</script><img src=x onerror="window.hacked=2">"\'><b>bold</b>'
WATCH_CSP = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}:${event.lineNumber}`);
});
"""


def _hostile_jpeg(folder: Path) -> Path:
    """A picture whose camera make and model (EXIF) are markup: the item page shows them to its owners."""
    colours = np.random.default_rng(7).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    picture = Image.fromarray(colours, "RGB").resize((320, 240), Image.Resampling.NEAREST)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = f"Make{HOSTILE}", f"Model{HOSTILE}"
    path = folder / "hostile.jpg"
    picture.save(path, exif=exif, quality=90)
    return path


def _visit(page: Page, path: str, dialogs: list[str]) -> None:
    page.goto(path)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.hacked === undefined"), path
    assert page.evaluate("window.cspViolations") == [], path
    assert dialogs == [], path
    assert page.locator("b", has_text="bold").count() == 0, path  # never markup


def test_hostile_text_is_shown_as_text_on_every_page(page: Page, library_server: ServerProcess,
                                                     tmp_path: Path) -> None:
    property_id = unique("P")
    owner = mint(f"USR-{property_id}", "user", verified=True, grants=(f"property:{property_id}",))
    item = upload_file(library_server, owner, f"/v1/media/properties/{property_id}/photos", _hostile_jpeg(tmp_path),
                       alt_text=f"alt{HOSTILE}", caption=f"caption{HOSTILE}", tags=f"tag{HOSTILE[:40]}")
    reported = api(library_server, "POST", f"/v1/media/{item['id']}/flag", mint(unique("USR")),
                   json={"reason": f"reason{HOSTILE}"})
    assert reported.status_code == 200, reported.text  # an open report: the item is in the queue
    page.context.add_init_script(WATCH_CSP)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    sign_in(page, owner)
    _visit(page, f"/library/media/{item['id']}", dialogs)
    expect(page.locator("#metadata-private")).to_contain_text(f"Make{HOSTILE}")
    expect(page.locator("#caption")).to_have_value(f"caption{HOSTILE}")

    page.context.clear_cookies()
    sign_in(page, mint(unique("MOD"), "user", "moderator"))
    _visit(page, f"/library/media/{item['id']}", dialogs)
    expect(page.locator("#reports")).to_contain_text(f"reason{HOSTILE}")
    _visit(page, "/library/moderation", dialogs)
    expect(page.locator("#current-facts")).to_contain_text(f"caption{HOSTILE}")
    expect(page.locator("#reports-list")).to_contain_text(f"reason{HOSTILE}")
    for path in ("/library/duplicates", "/library/duplicates?kind=near", "/library/analytics",
                 "/library/media/999999999", "/library/open?label=property:%3Cb%3Ebold%3C/b%3E", "/library/nowhere"):
        _visit(page, path, dialogs)
    no_script_errors(page)
