"""Logging in and out of the web view: the session cookie's attributes, a safe `next`, CSRF on logout,
and pages closed to anyone without a live session."""

from fastapi.testclient import TestClient

from respmon.web.app import safe_next
from tests.test_web.conftest import PASSWORD, csrf_of, logged_in


def test_a_page_without_a_session_sends_to_the_login_form(web_app: TestClient) -> None:
    answer = TestClient(web_app.app).get("/patients/NORTH-00001?x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fpatients%2FNORTH-00001%3Fx%3D1"


def test_login_sets_a_strict_httponly_cookie_and_goes_to_next(web_app: TestClient) -> None:
    client = TestClient(web_app.app)
    answer = client.post("/login", data={"member_id": "nurse-north", "password": PASSWORD, "next": "/?severity=high"},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/?severity=high"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # http on loopback


def test_wrong_password_answers_401_on_the_form_without_a_cookie(web_app: TestClient) -> None:
    answer = TestClient(web_app.app).post("/login", data={"member_id": "nurse-north", "password": "wrong password!"})
    assert answer.status_code == 401
    assert "Unknown member or wrong password." in answer.text and "set-cookie" not in answer.headers


def test_next_never_leaves_the_site() -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", ""):
        assert safe_next(target) == "/"
    assert safe_next("/patients/P1?from=2025-01-01") == "/patients/P1?from=2025-01-01"


def test_logout_needs_the_csrf_token_and_ends_the_session(web_app: TestClient) -> None:
    client = logged_in(web_app, "nurse-north")
    page = client.get("/login")  # any page of ours carries the token once logged in? the login page does not
    assert page.status_code == 200
    refused = client.post("/logout", data={"csrf": "0" * 64}, follow_redirects=False)
    assert refused.status_code == 403
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 200
    ended = client.post("/logout", data={"csrf": csrf_of(home.text)}, follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_every_answer_carries_a_csp_without_inline_scripts(web_app: TestClient) -> None:
    csp = TestClient(web_app.app).get("/login").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
