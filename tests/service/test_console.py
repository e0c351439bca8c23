"""The web console in a real browser against the real stack (issue 26): real Redis, the real API
process, a real worker running the zoo pair; Debian's chromium driven by selenium through Debian's
chromium-driver.

One story in order, as a team member lives it: alice signs in, submits a zoo comparison through the
form and watches its progress bar reach done without a reload, opens its report from the job page,
gets a bad field back on the form with its fix and her input kept, uploads a dataset with a bad
line, creates a watch and pauses it, then signs out; bob signs in and sees none of it, with a 404 on
each of alice's URLs. No page logs a console error or asks another host for anything. Every page is
saved as a 1400 px wide screenshot (the test's tmp dir, and $CIRCUITDIFF_SCREENSHOTS when set).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from circuitdiff.catalogue import zoo_path
from jobs.commands import beat_argv, watcher_argv
from tests.conftest import require_zoo
from tests.console_browser import ConsoleBrowser, screenshot_folders
from tests.service_fixtures import ALICE_KEY, BOB_KEY, Proc, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def world(tmp_path_factory, svc_api, svc_worker, svc_env, svc_data):
    """One browser for the module (its cookies are the session), the watch worker and beat that a
    watch needs, and what each step leaves for the next."""
    require_zoo("gpt-teacher", "gpt-student")
    tmp = tmp_path_factory.mktemp("console")
    procs = [Proc(watcher_argv("console-watcher"), svc_env, tmp / "watcher.log"),
             Proc(beat_argv(tmp / "beat.schedule"), svc_env, tmp / "beat.log")]
    b = ConsoleBrowser(tmp / "profile", screenshot_folders(tmp))
    state = {"browser": b, "base": svc_api, "data": svc_data, "tmp": tmp, "allowed_404": [], "procs": procs}
    try:
        yield state
    finally:
        b.close()
        for p in procs:
            p.stop()


def _wait(b: ConsoleBrowser, cond, timeout: float = 30, what: str = ""):
    return WebDriverWait(b.driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(lambda d: cond(d), message=what)


def _click(b: ConsoleBrowser, element_id: str) -> None:
    """Click a button that sends a form, and wait until the page it answers has replaced this one."""
    page = b.driver.find_element(By.TAG_NAME, "html")
    b.driver.find_element(By.ID, element_id).click()
    WebDriverWait(b.driver, 60, poll_frequency=0.1).until(_gone(page), message=f"{element_id} answered")


def _gone(element):
    """Selenium's ``staleness_of``, also when chromedriver asks about the old page's node while the new
    page replaces it: it then answers a generic error ("Node with given id does not belong to the
    document") instead of a stale reference, which means the same thing."""
    def check(_driver) -> bool:
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
    return check


def _type(b: ConsoleBrowser, element_id: str, text: str) -> None:
    el = b.driver.find_element(By.ID, element_id)
    el.clear()
    el.send_keys(text)


def _sign_in(b: ConsoleBrowser, base: str, key: str, next_path: str = "/") -> None:
    b.driver.get(base + next_path)
    assert "/sign-in" in b.driver.current_url
    _type(b, "key", key)
    _click(b, "sign-in")
    _wait(b, lambda d: "/sign-in" not in d.current_url, what="signed in")


def _clean(b: ConsoleBrowser, base: str, allowed: list[str]) -> None:
    assert b.console_errors(tuple(allowed)) == []
    assert b.offsite(base) == []


def test_sign_in_with_a_key(world):
    b, base = world["browser"], world["base"]
    b.driver.get(base + "/")
    assert "/sign-in?next=%2F" in b.driver.current_url  # no session: the form, then back
    b.shot("01-sign-in")
    _type(b, "key", "not-a-key")
    _click(b, "sign-in")
    err = _wait(b, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-error-field=Authorization]"), what="refused")[0]
    assert "unknown API key" in err.text and "fix:" in err.text
    world["allowed_404"].append(base + "/sign-in")  # the refused key answers 401
    b.shot("02-sign-in-refused")
    _type(b, "key", ALICE_KEY)
    _click(b, "sign-in")
    _wait(b, lambda d: d.current_url == base + "/", what="back on the jobs page")
    cookie = b.driver.get_cookie("cd_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie.get("expiry")
    assert ALICE_KEY not in cookie["value"]
    assert b.driver.find_element(By.ID, "sign-out")
    _clean(b, base, world["allowed_404"] + ["401"])


def test_submit_through_the_form_and_watch_it_finish_without_a_reload(world):
    b, base = world["browser"], world["base"]
    b.driver.get(base + "/jobs/new")
    b.shot("03-new-comparison")
    _type(b, "teacher", "zoo:gpt-teacher")
    _type(b, "student", "zoo:gpt-student")
    Select(b.driver.find_element(By.ID, "task")).select_by_value("ioi")
    _type(b, "n_prompts", "8")
    _type(b, "seed", "26")  # a comparison no other test of the session asked for: never an earlier job's answer
    _click(b, "submit")
    _wait(b, lambda d: "/jobs/" in d.current_url and not d.current_url.endswith("/new"), what="the job page")
    job_id = b.driver.current_url.rsplit("/", 1)[1]
    world["job"] = job_id
    job_tab = b.driver.current_window_handle
    b.driver.execute_script("window.__sameDocument = 'yes'")  # gone if the page reloads
    first = b.driver.find_element(By.ID, "job").get_attribute("data-status")
    assert first in ("queued", "running")
    # the jobs list in a second tab, live at the same time
    b.driver.switch_to.new_window("tab")
    list_tab = b.driver.current_window_handle
    b.driver.get(base + "/")
    b.driver.execute_script("window.__sameDocument = 'yes'")
    row = f"tr[data-job='{job_id}']"
    listed_first = b.driver.find_element(By.CSS_SELECTOR, row).get_attribute("data-status")
    b.driver.switch_to.window(job_tab)
    seen: list[str] = []

    def finished(d):
        text = d.find_element(By.CSS_SELECTOR, "[data-field=ptext]").text
        if "/" in text and not any("/" in t for t in seen):
            b.shot("04-job-running")  # a stage with its done/total, on the way
        seen.append(text)
        return d.find_element(By.ID, "job").get_attribute("data-status") in ("succeeded", "failed", "cancelled")

    WebDriverWait(b.driver, 600, poll_frequency=0.2).until(finished, message="the job finished")
    assert b.driver.find_element(By.ID, "job").get_attribute("data-status") == "succeeded", seen
    assert b.driver.execute_script("return window.__sameDocument") == "yes"  # never reloaded
    bar = b.driver.find_element(By.CSS_SELECTOR, "[data-field=bar]")
    assert float(bar.get_attribute("value")) == 100
    stages = [t for t in seen if "/" in t]
    assert stages or first == "queued", seen  # a stage's done/total was shown on the way
    # the list tab caught up by itself: status, a full bar, the links, no cancel button
    b.driver.switch_to.window(list_tab)
    _wait(b, lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-status") == "succeeded",
          what="the jobs list caught up")
    assert listed_first in ("queued", "running")
    assert b.driver.execute_script("return window.__sameDocument") == "yes"
    assert float(b.driver.find_element(By.CSS_SELECTOR, row + " [data-field=bar]").get_attribute("value")) == 100
    assert b.driver.find_elements(By.CSS_SELECTOR, row + " [data-link=report]")
    assert not b.driver.find_elements(By.CSS_SELECTOR, row + " [data-field=cancel]")
    b.driver.close()
    b.driver.switch_to.window(job_tab)
    # the result section came in by itself: verdict, score, chance and both models' performance
    _wait(b, lambda d: d.find_elements(By.ID, "score"), what="the headline")
    result = httpx.get(f"{base}/v1/comparisons/{job_id}/result", headers={"Authorization": f"Bearer {ALICE_KEY}"}).json()
    assert b.driver.find_element(By.ID, "score").text == f"{result['alignment']['score']:.3f}"
    text = b.driver.find_element(By.ID, "headline").text
    assert "zoo:gpt-teacher" in text and "zoo:gpt-student" in text and "chance" in text
    assert b.driver.execute_script("return window.__sameDocument") == "yes"
    # the resolved spec, as JSON and as the command line
    assert json.loads(b.driver.find_element(By.ID, "spec-json").text)["seed"] == 26
    assert b.driver.find_element(By.ID, "spec-cli").text.startswith("circuitdiff compare --teacher zoo:gpt-teacher")
    b.driver.get(base + f"/jobs/{job_id}")  # as it looks when opened later
    _wait(b, lambda d: d.execute_script(
        "const f = document.getElementById('report-frame'); return f.contentDocument && f.contentDocument.readyState === 'complete' && f.contentDocument.body.innerText.length > 100"),
        what="the embedded report")
    b.shot("05-job")
    _clean(b, base, world["allowed_404"])


def test_open_the_report_from_the_job_page_and_the_jobs_list(world):
    b, base, job_id = world["browser"], world["base"], world["job"]
    href = b.driver.find_element(By.ID, "open-report").get_attribute("href")
    assert href == f"{base}/v1/comparisons/{job_id}/report"
    b.driver.get(href)  # the cookie authorises the report in the browser
    assert b.driver.find_element(By.ID, "alignment-score").text
    b.shot("06-report")
    b.driver.get(base + "/")
    row = b.driver.find_element(By.CSS_SELECTOR, f"tr[data-job='{job_id}']")
    assert row.get_attribute("data-status") == "succeeded"
    links = {a.get_attribute("data-link"): a.get_attribute("href") for a in row.find_elements(By.CSS_SELECTOR, "[data-link]")}
    assert set(links) == {"report", "result", "artifacts"}
    b.driver.get(base + "/?status=failed")
    assert not b.driver.find_elements(By.CSS_SELECTOR, f"tr[data-job='{job_id}']")  # the filter applies
    b.driver.get(base + "/")
    b.shot("07-jobs")
    for name in ("result", "artifacts"):
        assert httpx.get(links[name], cookies={"cd_session": b.driver.get_cookie("cd_session")["value"]}).status_code == 200
    _clean(b, base, world["allowed_404"])


def test_a_bad_field_comes_back_with_its_fix_and_the_input_kept(world):
    b, base = world["browser"], world["base"]
    b.driver.get(base + "/jobs/new")
    _type(b, "teacher", "zoo:gpt-teachr")
    _type(b, "n_prompts", "lots")
    _click(b, "submit")
    _wait(b, lambda d: d.find_elements(By.ID, "problem"), what="the form with its errors")
    teacher_err = b.driver.find_element(By.CSS_SELECTOR, ".field [data-error-field='teacher.id']").text
    assert "unknown zoo model 'gpt-teachr'" in teacher_err and "fix: use one of: zoo:gpt-teacher" in teacher_err
    prompts_err = b.driver.find_element(By.CSS_SELECTOR, ".field [data-error-field='n_prompts']").text
    assert "fix: give a whole number" in prompts_err
    assert b.driver.find_element(By.ID, "teacher").get_attribute("value") == "zoo:gpt-teachr"
    assert b.driver.find_element(By.ID, "n_prompts").get_attribute("value") == "lots"
    assert b.driver.find_element(By.ID, "student").get_attribute("value") == "zoo:gpt-student"
    b.shot("08-new-comparison-error")
    world["allowed_404"].append(base + "/jobs/new")  # the refused form answers 422
    _clean(b, base, world["allowed_404"])


def test_the_screened_scan_options_reach_the_spec_and_a_misplaced_one_names_its_fix(world):
    """The form's estimator and screen_top go into the job's spec as the API takes them; an estimator
    with a scan that estimates nothing comes back on the estimator field with the API's fix."""
    b, base = world["browser"], world["base"]
    b.driver.get(base + "/jobs/new")
    assert b.driver.find_element(By.ID, "screen_top").get_attribute("placeholder") == "default 20"
    Select(b.driver.find_element(By.ID, "scan")).select_by_visible_text("exact")
    Select(b.driver.find_element(By.ID, "estimator")).select_by_visible_text("relp")
    _click(b, "submit")
    err = _wait(b, lambda d: d.find_elements(By.CSS_SELECTOR, ".field [data-error-field='estimator']"),
                what="the estimator's error")[0].text
    assert "estimator only applies to" in err and "fix:" in err, err
    assert Select(b.driver.find_element(By.ID, "estimator")).first_selected_option.text == "relp"  # kept
    b.shot("08b-new-comparison-estimator-error")
    world["allowed_404"].append(base + "/jobs/new")  # the refused form answers 422
    Select(b.driver.find_element(By.ID, "scan")).select_by_visible_text("screened")
    _type(b, "screen_top", "5")
    _type(b, "n_prompts", "8")
    _type(b, "seed", "27")
    _click(b, "submit")
    _wait(b, lambda d: d.find_elements(By.ID, "spec-json"), what="the job page")
    spec = json.loads(b.driver.find_element(By.ID, "spec-json").text)
    assert (spec["scan"], spec["estimator"], spec["screen_top"], spec["n_prompts"]) == ("screened", "relp", 5, 8)
    assert "--estimator relp" in b.driver.find_element(By.ID, "spec-cli").text
    _clean(b, base, world["allowed_404"])


GOOD = ('{"prompt": "When Mary and John went to the store, John gave a drink to", "answer": " Mary", "distractor": " John"}\n'
        '{"prompt": "When Tom went to the park", "answer": 3}\n'
        '{"prompt": "When Anna and Paul went to the park, Paul gave a ball to", "answer": " Anna", "distractor": " Paul"}\n')


def test_upload_a_dataset_see_its_rejected_line_view_and_download_it(world):
    b, base = world["browser"], world["base"]
    b.driver.get(base + "/datasets")
    b.driver.execute_script("document.getElementById('jsonl').value = arguments[0]",
                            '{"prompt": "x", "answer": " a"}\nnot json\n')
    _click(b, "upload")
    _wait(b, lambda d: d.find_elements(By.ID, "problem"), what="the refused upload")
    lines = [li.get_attribute("data-error-field") for li in b.driver.find_elements(By.CSS_SELECTOR, "#problem li")]
    assert lines == ["lines[1].distractor", "lines[2]"], lines  # each line, where and why
    assert "not json" in b.driver.find_element(By.ID, "jsonl").get_attribute("value")  # kept
    world["allowed_404"].append(base + "/datasets")  # the refused upload answers 422
    b.shot("09-dataset-upload-refused")
    upload = world["tmp"] / "my_task.jsonl"
    upload.write_text(GOOD)
    b.driver.find_element(By.ID, "file").send_keys(str(upload))  # the page's script reads it into the form
    _wait(b, lambda d: d.find_element(By.ID, "jsonl").get_attribute("value") == GOOD, what="the file read in")
    _click(b, "upload")
    _wait(b, lambda d: d.find_elements(By.ID, "uploaded"), what="the dataset page")
    did = b.driver.current_url.split("/datasets/")[1].split("?")[0]
    world["dataset"] = did
    assert "2 items stored, 1 lines rejected" in b.driver.find_element(By.ID, "uploaded").text
    rejected = b.driver.find_element(By.CSS_SELECTOR, "#rejected tr[data-line='2']").text
    assert "2" in rejected and rejected.strip() != "2"
    assert len(b.driver.find_elements(By.CSS_SELECTOR, "#items tbody tr")) == 2
    b.shot("10-dataset")
    cookie = {"cd_session": b.driver.get_cookie("cd_session")["value"]}
    r = httpx.get(f"{base}/v1/datasets/{did}/download", cookies=cookie)
    assert r.status_code == 200 and r.text.count("\n") == 2 and "Mary" in r.text
    b.driver.get(base + "/datasets")
    assert b.driver.find_element(By.CSS_SELECTOR, f"tr[data-dataset='{did}']")
    b.shot("09-datasets-list")
    _clean(b, base, world["allowed_404"])


def test_create_a_watch_follow_its_checkpoint_pause_and_resume_it(world):
    b, base, data = world["browser"], world["base"], world["data"]
    run = data / "models" / "console-run"
    run.mkdir(parents=True, exist_ok=True)
    shutil.copytree(zoo_path("gpt-student"), run / ".step-1.tmp")
    (run / ".step-1.tmp").rename(run / "step-1")  # one checkpoint of the run, written in one move
    b.driver.get(base + "/watches/new")
    b.shot("11-watch-new")
    _type(b, "name", "console-run")
    _type(b, "directory", str(run))
    _type(b, "settle_seconds", "0")
    _type(b, "n_prompts", "8")
    _type(b, "interval_seconds", "1")
    _type(b, "webhook_url", "http://127.0.0.1:9/hook")
    _type(b, "webhook_secret", "short")
    _click(b, "create-watch")
    err = _wait(b, lambda d: d.find_elements(By.CSS_SELECTOR, ".field [data-error-field=interval_seconds]"),
                what="the refusal")
    assert "fix: give a value >= 10" in err[0].text
    assert b.driver.find_element(By.CSS_SELECTOR, ".field [data-error-field='alerts.webhook.secret']")
    for field, typed in (("name", "console-run"), ("directory", str(run)), ("interval_seconds", "1"), ("n_prompts", "8")):
        assert b.driver.find_element(By.ID, field).get_attribute("value") == typed  # kept
    world["allowed_404"].append(base + "/watches/new")  # the refused form answers 422
    b.shot("12-watch-new-error")
    _type(b, "interval_seconds", "3600")
    _type(b, "webhook_url", "")
    _type(b, "webhook_secret", "")
    _click(b, "create-watch")
    _wait(b, lambda d: d.find_elements(By.ID, "watch-status"), what="the watch page")
    wid = world["watch"] = b.driver.current_url.rsplit("/", 1)[1]
    assert b.driver.find_element(By.ID, "watch-status").text == "active"
    # the watch worker compares step-1 (the one more real comparison of this module) and beat judges it
    alice = {"Authorization": f"Bearer {ALICE_KEY}"}

    def judged():
        items = httpx.get(f"{base}/v1/watches/{wid}/history", headers=alice).json()["items"]
        return next((h for h in items if h["regression"] is not None or h["status"] in ("failed", "cancelled")), None)

    entry = wait_for(judged, 600, "step-1 compared and judged", world["procs"][0], interval=1)
    assert entry["status"] == "succeeded", entry
    b.driver.get(base + f"/watches/{wid}")
    row = b.driver.find_element(By.CSS_SELECTOR, "#history tbody tr")
    assert "step-1" in row.text and f"{entry['alignment']:.3f}" in row.text
    links = {a.text: a.get_attribute("href") for a in row.find_elements(By.TAG_NAME, "a")}
    assert links == {"job": f"{base}/jobs/{entry['job_id']}", "report": f"{base}/v1/comparisons/{entry['job_id']}/report"}
    _wait(b, lambda d: d.execute_script(
        "const f = document.getElementById('trend-frame'); return f.contentDocument && f.contentDocument.body.innerText.includes('step-1')"),
        what="the trend report with the checkpoint")
    b.shot("13-watch")
    b.driver.get(links["job"])
    assert b.driver.find_element(By.ID, "job").get_attribute("data-status") == "succeeded"
    assert "from watch" in b.driver.find_element(By.TAG_NAME, "main").text
    b.driver.get(base + f"/watches/{wid}")
    _click(b, "pause-resume")
    _wait(b, lambda d: d.find_element(By.ID, "watch-status").text == "paused", what="paused")
    assert not b.driver.find_elements(By.ID, "check-now")
    _click(b, "pause-resume")
    _wait(b, lambda d: d.find_element(By.ID, "watch-status").text == "active", what="resumed")
    _click(b, "check-now")
    _wait(b, lambda d: d.find_elements(By.ID, "trend-frame"), what="back on the watch page")
    b.driver.get(base + "/watches")
    assert "1/1" in b.driver.find_element(By.CSS_SELECTOR, f"tr[data-watch='{wid}']").text
    b.shot("14-watches")
    _clean(b, base, world["allowed_404"])


def test_forms_need_their_csrf_token_and_the_cookie_changes_nothing_through_the_api(world):
    b, base = world["browser"], world["base"]
    cookies = {c["name"]: c["value"] for c in b.driver.get_cookies()}
    with httpx.Client(base_url=base, cookies=cookies) as c:
        r = c.post("/jobs/new", data={"teacher": "zoo:gpt-teacher", "student": "zoo:gpt-student", "task": "ioi"})
        assert r.status_code == 403 and "csrf_failed" in r.text
        r = c.post(f"/jobs/{world['job']}/cancel", data={"csrf": "0" * 64})
        assert r.status_code == 403
        assert c.get(f"/v1/comparisons/{world['job']}").status_code == 200  # reading: yes
        r = c.delete(f"/v1/comparisons/{world['job']}")  # changing through the API: the bearer key only
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert c.get("/v1/datasets").json()["items"][0]["id"] == world["dataset"]


def test_sign_out_then_a_second_key_sees_nothing_of_the_first(world, svc_api_proc):
    b, base = world["browser"], world["base"]
    old = b.driver.get_cookie("cd_session")["value"]
    _click(b, "sign-out")
    _wait(b, lambda d: "/sign-in" in d.current_url, what="signed out")
    assert b.driver.get_cookie("cd_session") is None
    b.driver.get(base + "/")
    assert "/sign-in" in b.driver.current_url
    _sign_in(b, base, BOB_KEY)
    assert not b.driver.find_elements(By.CSS_SELECTOR, f"tr[data-job='{world['job']}']")
    b.shot("15-second-key-jobs")
    b.driver.get(base + "/datasets")
    assert not b.driver.find_elements(By.CSS_SELECTOR, f"tr[data-dataset='{world['dataset']}']")
    b.driver.get(base + "/watches")
    assert not b.driver.find_elements(By.CSS_SELECTOR, f"tr[data-watch='{world['watch']}']")
    job, ds, watch = world["job"], world["dataset"], world["watch"]
    urls = [f"/jobs/{job}", f"/v1/comparisons/{job}", f"/v1/comparisons/{job}/report",
            f"/v1/comparisons/{job}/artifacts/result.json", f"/datasets/{ds}", f"/v1/datasets/{ds}/download",
            f"/watches/{watch}", f"/v1/watches/{watch}/report"]
    for path in urls:
        b.driver.get(base + path)
        world["allowed_404"].append(base + path)
        body = b.driver.find_element(By.TAG_NAME, "body").text
        assert "404" in body or '"status":404' in body.replace(" ", ""), (path, body[:300])
        if path == f"/jobs/{job}":
            b.shot("16-second-key-404")
    bob = {"cd_session": b.driver.get_cookie("cd_session")["value"]}
    for path in urls:
        assert httpx.get(base + path, cookies=bob).status_code == 404, path
    assert httpx.get(base + "/v1/comparisons", cookies={"cd_session": old}).status_code == 401  # signed out for good
    b.driver.get(base + "/")
    _click(b, "sign-out")
    _wait(b, lambda d: "/sign-in" in d.current_url, what="signed out")
    _clean(b, base, world["allowed_404"])
    maps = Path(f"/proc/{svc_api_proc[0].pid}/maps").read_text()  # every console page served: still no torch
    assert "libtorch" not in maps and "/torch/" not in maps
