"""Care teams: which teams a patient belongs to (`patient_teams`, with who assigned it and when, and who
ended it) and the routes of each team (`team_routes`): an alert goes to every route of every team of its
patient, besides the routes of the routing file."""

from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from alerts.access import roles_that
from alerts.routing import Route
from schemas.findings import CATEGORIES


def assign(conn: psycopg.Connection[Any], patient_id: str, team: str, by: str) -> bool:
    """Put the patient in the team's care; False when they already were."""
    return conn.execute("INSERT INTO patient_teams (patient_id, team, assigned_by) VALUES (%s, %s, %s)"
                        " ON CONFLICT (patient_id, team) WHERE ended_at IS NULL DO NOTHING",
                        (patient_id, team, by)).rowcount > 0


def unassign(conn: psycopg.Connection[Any], patient_id: str, team: str, by: str) -> bool:
    """End the team's care of the patient (the row stays, with who ended it); False when there was none."""
    return conn.execute("UPDATE patient_teams SET ended_at = now(), ended_by = %s"
                        " WHERE patient_id = %s AND team = %s AND ended_at IS NULL",
                        (by, patient_id, team)).rowcount > 0


def readers(conn: psycopg.Connection[Any], team: str) -> int:
    """How many members can read the team's patients (a typo in a team name shows as 0)."""
    row = conn.cursor(row_factory=tuple_row).execute(
        "SELECT count(DISTINCT member_id) FROM team_memberships WHERE team = %s AND role = ANY(%s)",
        (team, roles_that("read"))).fetchone()
    return int(row[0]) if row else 0


def set_route(conn: psycopg.Connection[Any], route: Route, by: str) -> None:
    """Add or replace a route of `route.team` (its name is unique within the team). A route of every
    category is stored as NULL, so it also takes categories added later."""
    categories = None if set(route.categories) >= set(CATEGORIES) else list(route.categories)
    conn.execute(
        "INSERT INTO team_routes (team, name, channel, target, categories, min_severity, created_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (team, name) DO UPDATE SET channel = EXCLUDED.channel,"
        " target = EXCLUDED.target, categories = EXCLUDED.categories, min_severity = EXCLUDED.min_severity,"
        " created_at = now(), created_by = EXCLUDED.created_by",
        (route.team, route.name, route.channel, route.target, categories, route.min_severity, by))


def remove_route(conn: psycopg.Connection[Any], team: str, name: str) -> bool:
    return conn.execute("DELETE FROM team_routes WHERE team = %s AND name = %s", (team, name)).rowcount > 0


async def patient_routes(conn: AsyncConnection[Any], patient_id: str, category: str, severity: str) -> list[Route]:
    """The routes of the patient's current care teams that take this category and severity. A route is
    named `<team>/<name>` in deliveries, so two teams' routes never share an idempotency key."""
    cur = conn.cursor(row_factory=tuple_row)
    rows = await (await cur.execute(
        "SELECT r.team, r.name, r.channel, r.target, r.categories, r.min_severity FROM team_routes r"
        " JOIN patient_teams pt ON pt.team = r.team AND pt.ended_at IS NULL WHERE pt.patient_id = %s"
        " ORDER BY r.team, r.name", (patient_id,))).fetchall()
    routes = [_route(*row) for row in rows]
    return [route for route in routes if route.matches(category, severity)]


def _route(team: str, name: str, channel: str, target: str, categories: list[str] | None,
           min_severity: str) -> Route:
    fields: dict[str, Any] = {"name": f"{team}/{name}", "channel": channel, "target": target, "team": team,
                              "min_severity": min_severity}
    if categories is not None:
        fields["categories"] = tuple(categories)
    return Route.model_validate(fields)
