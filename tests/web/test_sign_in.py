"""Signing in to the page with a real OpenID Connect provider, and the
rights a session gets: a teacher manages, a student reads, and neither acts
beyond their courses or without the form's CSRF token."""

import re

from conftest import browser_session, set_user, sign_in


def csrf_of(html):
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_a_teacher_signs_in_and_sees_the_courses_they_teach_and_take(service):
    set_user(
        service.provider,
        "alice",
        name="Alice Martin",
        groups=["math1-teachers", "phys2-students"],
    )
    alice = sign_in(service.page, "alice")
    cookies = alice.last_sign_in.headers["Set-Cookie"]
    for attribute in (
        "trousse-session=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ):
        assert attribute in cookies, cookies
    home = alice.get(service.page, headers={"Accept-Language": "en"}, timeout=30)
    assert "Alice Martin" in home.text and "Teaching" in home.text and "Taking" in home.text
    assert "default-src 'none'" in home.headers["Content-Security-Policy"]
    assert alice.get(f"{service.page}api/v1/courses", timeout=30).json() == {
        "role": "teacher",
        "teaching": ["math1"],
        "taking": ["phys2"],
        "others": [],
    }
    course = alice.get(
        f"{service.page}courses/math1", headers={"Accept-Language": "fr"}, timeout=30
    )
    assert course.status_code == 200
    assert "week1" in course.text and "final" in course.text and "Vous enseignez" in course.text
    assert 'lang="fr"' in course.text
    # she takes phys2: she may not act on it, by the API or by the page's forms
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', home.text).group(1)
    for url, kwargs in (
        (
            f"{service.page}api/v1/courses/phys2/environments",
            {
                "data": "name: x\ndependencies: [greet]\n",
                "headers": {"Content-Type": "application/yaml", "X-CSRF-Token": csrf},
            },
        ),
        (
            f"{service.page}courses/phys2/build",
            {"data": {"csrf": csrf, "name": "x", "packages": "greet"}},
        ),
        (
            f"{service.page}courses/phys2/preview",
            {"data": {"csrf": csrf, "name": "x", "packages": "greet"}},
        ),
    ):
        refused = alice.post(url, timeout=30, **kwargs)
        assert refused.status_code == 403, (url, refused.status_code)


def test_a_student_reads_their_course_without_the_exam_and_is_refused_the_rest(service):
    set_user(service.provider, "bob", name="Bob", groups=["math1-students"])
    bob = sign_in(service.page, "bob")
    course = bob.get(f"{service.page}courses/math1", headers={"Accept-Language": "en"}, timeout=30)
    assert course.status_code == 200 and "read only" in course.text
    assert "week1" in course.text and "final" not in course.text
    assert bob.get(f"{service.page}courses/phys2", timeout=30).status_code == 403
    listed = bob.get(f"{service.page}api/v1/courses/math1/environments", timeout=30).json()
    assert [e["sealed"] for e in listed["environments"] if e["name"] == "final"] == [True]
    # a teacher action by direct HTTP calls with the student's cookie
    csrf = csrf_of(bob.get(service.page, timeout=30).text)
    spec = "name: mine\ndependencies: [greet]\n"
    refused = bob.post(
        f"{service.page}api/v1/courses/math1/environments",
        data=spec,
        headers={"Content-Type": "application/yaml", "X-CSRF-Token": csrf},
        timeout=30,
    )
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden", refused.text


def test_changes_need_the_csrf_token_and_sign_out_ends_the_session(service):
    set_user(service.provider, "carol", groups=["math1-teachers"])
    carol = sign_in(service.page, "carol")
    no_token = carol.post(
        f"{service.page}api/v1/courses/math1/environments",
        data="name: x\ndependencies: [greet]\n",
        headers={"Content-Type": "application/yaml"},
        timeout=30,
    )
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["message"]
    assert (
        carol.post(f"{service.page}sign-out", data={"csrf": "0" * 64}, timeout=30).status_code
        == 403
    )
    csrf = csrf_of(carol.get(service.page, timeout=30).text)
    out = carol.post(
        f"{service.page}sign-out",
        data={"csrf": csrf},
        allow_redirects=False,
        timeout=30,
    )
    assert out.status_code == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    # the old cookie, replayed, is no session any more
    replay = browser_session()
    replay.cookies.update({"trousse-session": "0" * 64})
    assert replay.get(f"{service.page}api/v1/courses", timeout=30).status_code == 401
    assert carol.get(f"{service.page}api/v1/courses", timeout=30).status_code == 401


def test_a_callback_this_browser_did_not_start_is_refused(service):
    set_user(service.provider, "dan", groups=["math1-teachers"])
    victim = browser_session()
    started = victim.get(f"{service.page}sign-in/oidc", allow_redirects=False, timeout=30)
    state = re.search(r"state=([^&]+)", started.headers["Location"]).group(1)
    # an attacker's browser brings the state back: it has no sign-in cookie for it
    attacker = browser_session()
    answer = attacker.get(f"{service.page}sign-in/oidc/callback?code=x&state={state}", timeout=30)
    assert answer.status_code == 400 and "state" in answer.text
    # and a state that was never given is refused too
    wrong = victim.get(f"{service.page}sign-in/oidc/callback?code=x&state=forged", timeout=30)
    assert wrong.status_code == 400
