"""(being written: issue 15)"""

from fastapi import APIRouter

from respmon.web.context import Web


def inbox_routes(web: Web) -> APIRouter:
    return APIRouter()
