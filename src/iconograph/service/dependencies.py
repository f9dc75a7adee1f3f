"""FastAPI dependencies: the service state, the token check, the collection a path names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from iconograph.search import SearchCollection
from iconograph.service.auth import request_token, token_matches
from iconograph.service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]


def require_token(request: Request, state: State) -> None:
    if not token_matches(request_token(request.headers, request.cookies), state.config.token):
        raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})


def get_collection(name: Annotated[str, Path(description="The collection's name.")], state: State) -> SearchCollection:
    return state.collection(name)


NamedCollection = Annotated[SearchCollection, Depends(get_collection)]
