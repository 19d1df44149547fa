"""A course's teacher rolls an environment back to an earlier version,
archives it and makes it current again — through the API with the page's
session (and its CSRF token) and through the page's forms — and `/v2/`'s
`latest` tag follows; a student cannot, and an exam whose window opened
does not change."""

import json
import re

import requests
from support import call, wait_built

from conftest import set_user, sign_in


def csrf_of(session, page):
    return re.search(r'name="csrf" value="([0-9a-f]+)"', session.get(page, timeout=30).text).group(
        1
    )


def submit(service, name, packages, **extra):
    spec = f"name: {name}\nchannels: ['{service.channel}']\ndependencies: [{', '.join(packages)}]\n"
    body = json.dumps({"spec": spec, **extra}).encode()
    url = f"{service.page}api/v1/courses/math1/environments"
    created = call(url, service.admin, "POST", body, "application/json")
    return wait_built(service.page.rstrip("/"), service.admin, created, seconds=120)


def latest(service, name):
    answer = requests.get(f"{service.page}v2/math1/{name}/manifests/latest", timeout=30)
    return answer.headers.get("Docker-Content-Digest") if answer.ok else answer.status_code


def test_a_teacher_rolls_back_archives_and_restores(service):
    first = submit(service, "week3", ["greet"])
    second = submit(service, "week3", ["greeting-data"])
    assert first["id"] == second["id"] and first["digest"] != second["digest"]
    assert latest(service, "week3") == second["digest"]
    set_user(service.provider, "erin", groups=["math1-teachers"])
    erin = sign_in(service.page, "erin")
    token = {"X-CSRF-Token": csrf_of(erin, service.page)}
    env = f"{service.page}api/v1/environments/{first['id']}"
    versions = erin.get(f"{env}/versions", timeout=30).json()["versions"]
    assert [v["digest"] for v in versions] == [second["digest"], first["digest"]]
    back = erin.post(f"{env}/current", json={"digest": first["digest"]}, headers=token, timeout=30)
    assert back.status_code == 200 and back.json()["digest"] == first["digest"], back.text
    assert latest(service, "week3") == first["digest"]
    # archived: no longer current, no longer pulled by `latest`, not offered to students
    archived = erin.post(f"{env}/archive", headers=token, timeout=30).json()
    assert archived["current"] is False and latest(service, "week3") == 404
    # the page's own form makes it current again
    form = {"csrf": token["X-CSRF-Token"]}
    again = erin.post(f"{service.page}environments/{first['id']}/current", data=form, timeout=30)
    assert again.status_code == 200 and "week3" in again.text
    assert latest(service, "week3") == first["digest"]


def test_a_student_cannot_and_an_open_exam_does_not_change(service):
    exam = submit(service, "quiz", ["greet"], exam=True, opens="2020-01-01T00:00:00Z")
    set_user(service.provider, "fred", groups=["math1-students"])
    fred = sign_in(service.page, "fred")
    token = {"X-CSRF-Token": csrf_of(fred, service.page)}
    env = f"{service.page}api/v1/environments/{exam['id']}"
    assert fred.post(f"{env}/archive", headers=token, timeout=30).status_code == 403
    set_user(service.provider, "gina", groups=["math1-teachers"])
    gina = sign_in(service.page, "gina")
    token = {"X-CSRF-Token": csrf_of(gina, service.page)}
    refused = gina.post(f"{env}/current", headers=token, timeout=30)
    assert refused.status_code == 409 and "window has opened" in refused.json()["message"]
