"""The application factory: routes, dependencies, errors, OpenAPI, lifespan of pool and storage."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ControllerRouterHandler

from backend.adapters.storage import Storage
from backend.auth.routes import AuthController
from backend.cameras.routes import CameraAdminController
from backend.core.config import Settings, load_settings
from backend.core.db import create_pool, provide_connection, release_leftover_connections
from backend.core.errors import EXCEPTION_HANDLERS
from backend.core.logging import configure_logging, get_logger, request_id_middleware
from backend.core.openapi import answer_options_truthfully, close_request_schemas, document_problems
from backend.core.security import ops_guard, security_headers
from backend.core.sessions import SessionCache
from backend.core.wire import MAX_JSON_BYTES, guard_json_body
from backend.detections.overload import Admission
from backend.detections.routes import ROUTES as DETECTION_ROUTES
from backend.detections.service import CameraKeys
from backend.dispatch.routes import EscalationPolicyAdminController
from backend.edge.routes import ROUTES as EDGE_ROUTES
from backend.health.routes import ROUTES as HEALTH_ROUTES
from backend.history.routes import HistoryController
from backend.incidents.routes import LegalHoldController
from backend.liveview.routes import ROUTES as LIVE_VIEW_ROUTES
from backend.models.routes import TrainingConsentController
from backend.sms.routes import PhoneAdminController
from backend.users.routes import UserAdminController
from backend.venues.routes import VenueAdminController
from backend.webhooks.routes import WebhookAdminController

log = get_logger(__name__)

BACKEND_ROUTES: list[ControllerRouterHandler] = [
    *HEALTH_ROUTES,
    *DETECTION_ROUTES,
    AuthController,
    VenueAdminController,
    CameraAdminController,
    UserAdminController,
    PhoneAdminController,
    EscalationPolicyAdminController,
    WebhookAdminController,
    HistoryController,
    LegalHoldController,
    TrainingConsentController,
    *LIVE_VIEW_ROUTES,
    *EDGE_ROUTES,
]


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Kuzet",
        version="1.0.0",
        description="Alert backend for nightlife safety: camera detections, incidents, responders' phones.",
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                "CameraKey": SecurityScheme(
                    type="http", scheme="bearer", description="The camera's own key, issued once at registration"
                ),
                "EdgeBoxKey": SecurityScheme(
                    type="http", scheme="bearer", description="An edge box's own key, issued once at enrolment"
                ),
            }
        ),
    )


def create_app(
    settings: Settings | None = None,
    *,
    extra_routes: Sequence[ControllerRouterHandler] = (),
    extra_state: dict[str, Any] | None = None,
) -> Litestar:
    """Build the app. ``extra_routes`` lets the composition root mount the phone-facing API."""
    settings = settings or load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        app.state.db_pool = await create_pool(settings.database_url, max_size=settings.database_pool_max)
        async with Storage(settings) as storage:
            app.state.storage = storage
            for key, value in (extra_state or {}).items():
                app.state[key] = value
            log.info("api_started", environment=settings.environment)
            try:
                yield
            finally:
                await app.state.db_pool.close()

    prometheus = PrometheusConfig(app_name="kuzet", group_path=True, exclude=["/metrics", "/healthz"])
    app = Litestar(
        route_handlers=[*BACKEND_ROUTES, *extra_routes],
        dependencies={"db": Provide(provide_connection)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[ops_guard(settings), request_id_middleware, prometheus.middleware, release_leftover_connections],
        before_send=[security_headers(settings)],
        lifespan=[lifespan],
        openapi_config=openapi_config(),
        state=State(
            {
                "settings": settings,
                "session_cache": SessionCache(settings.session_check_cache_s),
                "admission": Admission(settings),
                "camera_keys": CameraKeys(settings.camera_key_cache_s),
            }
        ),
        debug=False,
        request_max_body_size=MAX_JSON_BYTES,
        before_request=guard_json_body,
    )
    document_problems(app)
    close_request_schemas(app)
    answer_options_truthfully(app)
    return app
