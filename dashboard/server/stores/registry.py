"""Which backend a ``TRACES_DB_URL`` names, by its scheme: one line per backend, imported only when used."""

from __future__ import annotations

import importlib
from types import MappingProxyType

from .protocol import Backend, StoreError, StoreOptions

# scheme -> "module:function"; the function takes (url, StoreOptions) and returns a Backend.
BACKENDS = MappingProxyType({
    "sqlite": "dashboard.server.stores.sqlite:open_sqlite",
    "postgresql": "dashboard.server.stores.postgres:open_postgres",
    "postgres": "dashboard.server.stores.postgres:open_postgres",
    "supabase": "dashboard.server.stores.supabase:open_supabase",
})

WHOLE_VALUES = frozenset({"supabase"})  # values that are the whole setting, not a URL's scheme (SUPABASE_URL says where)


def scheme_of(db_url: str) -> str:
    return db_url.split(":", 1)[0].lower() if ":" in db_url else db_url.lower()


def open_backend(db_url: str, options: StoreOptions | None = None) -> Backend:
    """The (not yet opened) backend for ``db_url``; ``StoreError`` naming the choices for anything else."""
    target = BACKENDS.get(scheme_of(db_url))
    if target is None:
        choices = ", ".join(scheme if scheme in WHOLE_VALUES else f"{scheme}://…" for scheme in BACKENDS)
        raise StoreError(f"TRACES_DB_URL {scheme_of(db_url)!r} is not supported; use one of: {choices}"
                         " (for example sqlite:///path/to/traces.db)")
    module_name, function = target.split(":")
    return getattr(importlib.import_module(module_name), function)(db_url, options or StoreOptions())
