"""Authentication at the edge: the Bearer token becomes a Principal, the request's declared basis is
read, and the request gets a Repository bound to one AccessPolicy."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from starlette.requests import Request

from kjerne.access.context import AccessRecord
from kjerne.access.devissuer import DevIssuer
from kjerne.access.policy import AccessPolicy, RequestInfo
from kjerne.access.principal import Principal
from kjerne.access.tokens import AuthError, TokenVerifier, load_issuers
from kjerne.audit.events import Actor
from kjerne.audit.log import append
from kjerne.config import Settings
from kjerne.fhir.outcome import FhirError, Issue
from kjerne.store.repository import Repository

DEV_ISSUER = "urn:kjerne:dev-issuer"


def dev_issuer(settings: Settings) -> DevIssuer:
    return DevIssuer(
        settings.var_dir / "keys", issuer=settings.public_base() + "/dev-issuer", audience=settings.audience
    )


def build_verifier(settings: Settings) -> TokenVerifier:
    issuers = load_issuers(settings.issuers_file) if settings.issuers_file else []
    if settings.dev:
        issuers.append(dev_issuer(settings).issuer_config())
    return TokenVerifier(issuers)


def request_info(request: Request, channel: str = "api") -> RequestInfo:
    h = request.headers
    return RequestInfo(
        access_basis=h.get("nhn-access-basis") or h.get("access-basis"),
        person_id=h.get("person-id"),
        reason=h.get("nhn-access-reason"),
        channel=channel,
    )


@dataclass
class Gate:
    engine: Engine
    verifier: TokenVerifier
    fhir_base: str

    def principal(self, request: Request) -> Principal:
        try:
            return self.verifier.verify(request.headers.get("authorization"))
        except AuthError as err:
            self._record_refusal(request, err)
            raise FhirError(
                err.status,
                [Issue("login" if err.status == 401 else "transient", err.message)],
                headers={"WWW-Authenticate": err.www_authenticate} if err.status == 401 else {},
            ) from None

    def repository(self, request: Request) -> Repository:
        principal = self.principal(request)
        info = request_info(request)
        try:
            policy = AccessPolicy(self.engine, principal, info)
        except FhirError as err:
            # The request was refused before a policy existed (an unknown access basis): audit it all the same.
            rec = AccessRecord("read", None, "denied", [], detail=f"{request.method} {request.url.path}: {err}"[:500])
            self._append(
                Actor(
                    kind=principal.kind,
                    hpr=principal.hpr,
                    pid=principal.pid,
                    name=principal.name,
                    org=principal.org,
                    access_basis=None,
                    channel=info.channel,
                ),
                rec,
            )
            err.audited = True
            raise
        request.state.policy = policy
        repo = Repository(self.engine, policy, base_url=self.fhir_base)
        request.state.repository = repo
        return repo

    def _append(self, actor: Actor, rec: AccessRecord) -> None:
        with self.engine.connect() as conn:
            conn.info["sqlite_write"] = True
            with conn.begin():
                append(conn, actor, rec)

    def _record_refusal(self, request: Request, err: AuthError) -> None:
        rec = AccessRecord(
            "login", None, "denied", [], detail=f"{request.method} {request.url.path}: {err.message}"[:500]
        )
        with self.engine.connect() as conn:
            conn.info["sqlite_write"] = True
            with conn.begin():
                append(conn, Actor(kind="anonymous", channel="api"), rec)
