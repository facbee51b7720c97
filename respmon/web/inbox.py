"""The inbox (`GET /`): the member's patients, those whose alerts need looking at first, then the others by
risk; and the alert actions of its rows (`POST /alerts/{id}/acknowledge|resolve|assign|snooze|note`).

Every action is a plain form (CSRF token, 303 back to the inbox with its filters) that htmx posts instead
when it runs, getting the patient's row back to swap in place. The reads and writes are
`respmon.queries.inbox`; the look at the patients shown is recorded in `access_log` (action `inbox`).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alerts.access import memberships, record, roles_that
from respmon.queries.inbox import (
    PER_PAGE,
    SNOOZE_MAX_DAYS,
    Filters,
    InboxPage,
    InboxRow,
    Refused,
    Verb,
    act,
    alert_patient,
    assignable,
    choices,
    detail_rows,
    inbox_page,
    member_teams,
)
from respmon.web.auth import Person
from respmon.web.context import Web, looked
from respmon.web.render import html, is_htmx, page
from respmon.web.svg import sparkline

TABLE_ID = "inbox-table"
ROW_HEADER = "X-Inbox-Row"
"""Marks an answer that is a row of the inbox, which /static/inbox.js lets htmx swap in even on a 4xx."""


def today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class View:
    """What the table's rows need besides the rows: who looks, whom alerts can be assigned to, where to go back."""

    person: Person
    today: date
    acts_in: frozenset[str]
    assignees: dict[str, list[str]]
    back: str

    @property
    def snooze_from(self) -> date:
        return self.today + timedelta(1)

    @property
    def snooze_to(self) -> date:
        return self.today + timedelta(SNOOZE_MAX_DAYS)

    def may_act(self, row: InboxRow) -> bool:
        return any(team in self.acts_in for team in row.teams)

    def context(self) -> dict[str, Any]:
        """The rows' template context (`person` is given by `page`, or added for a fragment)."""
        return {"today": self.today, "view": self, "sparkline": sparkline,
                "snooze_max": SNOOZE_MAX_DAYS}


def _acting_teams(conn: Any, member_id: str) -> frozenset[str]:
    """The member's teams in which their role may act on alerts (clinician)."""
    acting = roles_that("acknowledge")
    return frozenset(m["team"] for m in memberships(conn, member_id) if m["role"] in acting)


def filters_of(conn: Any, who: Person, category: str | None, severity: str | None, team: str | None,
               stale: int | None) -> tuple[Filters, list[str]]:
    """The filters asked for (empty = all); 422 for a value that is not one of the choices."""
    fixed = choices()
    teams = member_teams(conn, who.member_id)
    for value, allowed, name in ((category, fixed["categories"], "category"),
                                 (severity, fixed["severities"], "severity"), (team, teams, "team")):
        if value and value not in allowed:
            raise HTTPException(422, f"Unknown {name}: choose one from the list.")
    return Filters(category or None, severity or None, team or None, stale), teams


def back_url(target: str | None) -> str:
    """Where an action's 303 goes: the inbox with its filters, never another site."""
    if target and target.startswith("/?") and "\\" not in target and "//" not in target:
        return target
    return "/"


def inbox_routes(web: Web) -> APIRouter:
    router = APIRouter()
    Who = Annotated[Person, Depends(web.person)]
    Posted = Annotated[Person, Depends(web.posted)]
    Back = Annotated[str | None, Form(max_length=500)]

    @router.get("/", response_class=HTMLResponse)
    async def inbox(request: Request, who: Who, category: str | None = None, severity: str | None = None,
                    team: str | None = None, stale: Annotated[int | None, Query(ge=1, le=183)] = None,
                    page_no: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1) -> HTMLResponse:
        """The whole page, or only the table when htmx asks for it (the filter form, the page links)."""
        day = today()
        asked = {k: v for k, v in (("category", category), ("severity", severity), ("team", team),
                                   ("stale", stale)) if v}

        def read() -> tuple[InboxPage, list[str], View, Filters]:
            with web.pool.connection() as conn:
                filters, teams = filters_of(conn, who, category, severity, team, stale)
                found = inbox_page(conn, who.member_id, day, filters, page_no, web.settings.inbox_rank_keep_s)
                shown = [row.patient_id for row in found.rows]
                with conn.transaction():
                    record(conn, looked(request, who, "inbox"), shown)
                view = View(who, day, _acting_teams(conn, who.member_id), assignable(conn, shown),
                            "/?" + urlencode({**asked, "page": found.page}))
                return found, teams, view, filters

        found, teams, view, filters = await run_in_threadpool(read)
        context = {**view.context(), "found": found, "filters": filters, "teams": teams, "choices": choices(),
                   "asked": asked, "per_page": PER_PAGE, "table_id": TABLE_ID}
        if is_htmx(request) and request.headers.get("hx-target") == TABLE_ID:
            return html("fragments/inbox_table.html", person=who, **context)
        return page(request, "inbox.html", who, "Inbox", **context)

    def action(verb: Verb) -> Any:
        async def handle(request: Request, alert_id: int, who: Posted, back: Back = None,
                         note: Annotated[str, Form(max_length=2000)] = "",
                         assignee: Annotated[str, Form(max_length=200)] = "",
                         until: Annotated[date | None, Form()] = None) -> Response:
            return await run_in_threadpool(
                _act, web, request, who, alert_id, verb, back_url(back),
                {"note": note.replace("\x00", ""), "assignee": assignee or None, "until": until})

        handle.__name__ = f"alert_{verb}"
        handle.__doc__ = f"{verb.capitalize()} an alert from its inbox row (clinicians of the patient's teams)."
        return handle

    for verb in ("acknowledge", "resolve", "assign", "snooze", "note"):
        router.add_api_route(f"/alerts/{{alert_id}}/{verb}", action(verb), methods=["POST"],
                             response_model=None)
    return router


def _act(web: Web, request: Request, who: Person, alert_id: int, verb: Verb, back: str,
         given: dict[str, Any]) -> Response:
    """Do the action; answer 303 back to the inbox, or to htmx the patient's row (with the refusal's
    message and status when refused)."""
    day = today()
    with web.pool.connection() as conn:
        try:
            patient_id: str | None = act(conn, alert_id, who.member_id, verb, looked(request, who, verb),
                                         today=day, settings=web.settings, **given)
            refused: Refused | None = None
        except Refused as exc:
            patient_id, refused = None, exc
        if not is_htmx(request):
            if refused is not None:
                raise HTTPException(refused.status, refused.message)
            return RedirectResponse(back, status_code=303)
        return _row_answer(conn, who, day, back, patient_id or _patient_of(conn, who, alert_id, refused), refused)


def _patient_of(conn: Any, who: Person, alert_id: int, refused: Refused | None) -> str | None:
    """The patient of a refused action's alert, when the member sees it (a 404 shows no row)."""
    if refused is None or refused.status == 404:
        return None
    return alert_patient(conn, alert_id)


def _row_answer(conn: Any, who: Person, day: date, back: str, patient_id: str | None,
                refused: Refused | None) -> Response:
    rows = detail_rows(conn, who.member_id, day, [patient_id]) if patient_id else []
    status = refused.status if refused else 200
    message = refused.message if refused else None
    if not rows:
        return HTMLResponse(html("fragments/inbox_message.html", message=message or "Not found.").body,
                            status_code=status, headers={ROW_HEADER: "1"})
    view = View(who, day, _acting_teams(conn, who.member_id), assignable(conn, [rows[0].patient_id]), back)
    body = html("fragments/inbox_row.html", row=rows[0], message=message, person=who, **view.context()).body
    return HTMLResponse(body, status_code=status, headers={ROW_HEADER: "1"})
