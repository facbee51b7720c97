"""The respiratory team's web view: inbox, patient trends, night view, printable report.

Server-rendered pages (Jinja2) on the team service, for people logged in with a session cookie; htmx
(pinned 2.x) swaps fragments after an action, uPlot draws the charts, both served from `static/vendor`.
Every read goes through `respmon.queries` inside a transaction that records the look in `access_log`.
"""
