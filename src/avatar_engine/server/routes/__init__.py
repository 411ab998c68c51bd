"""The HTTP and WebSocket routes, one module per resource; ``create_app`` mounts them.

Every module has its handlers at module level and an ``add_routes(api, statuses)`` that
declares them on an :class:`~fastapi.APIRouter` (paths, methods, statuses, OpenAPI
entries; ``create_app`` passes the app's own router, so the route table is flat as the
error handlers expect, and a test can pass a fresh one). Handlers get the
:class:`~avatar_engine.server.runtime.Runtime` as a dependency
(:func:`~avatar_engine.server.routes.deps.get_runtime`) and call only its methods: they
authenticate, validate, call the runtime and shape the answer. A handler whose operation has
no OpenAPI description is private and has no docstring (FastAPI would publish one).
"""
