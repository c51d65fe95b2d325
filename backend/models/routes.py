"""A venue's consent to model training: its owner (or an administrator) sets it."""

from __future__ import annotations

import msgspec
from litestar import Controller, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from backend.core.auth import Principal, require_role
from backend.core.errors import problem_responses
from backend.core.params import Db, PathId
from backend.models import service


class TrainingConsent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    consent: bool


class TrainingConsentController(Controller):
    path = "/v1/venues"
    tags = ["venues"]
    dependencies = {"actor": Provide(require_role("owner", "admin"))}
    security = [{"BearerAuth": []}]

    @put(
        "/{venue_id:uuid}/model-training-consent",
        summary="Let the venue's resolved incidents' clips train the confirmation model (or withdraw)",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def set_consent(
        self, db: Db, actor: NamedDependency[Principal], venue_id: PathId, data: JSONBody[TrainingConsent]
    ) -> TrainingConsent:
        await service.set_training_consent(db, actor, venue_id, consent=data.consent)
        return TrainingConsent(consent=data.consent)
